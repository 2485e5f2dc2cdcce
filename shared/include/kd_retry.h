/**
 * @file kd_retry.h
 * @brief kd_retry: the retry policy as pure functions (no I/O, no clock, no global state).
 *
 * A job whose attempt failed transiently is not retried from worker memory: the worker
 * publishes it to one of a few fixed-delay "tier" queues (TTL queues that dead-letter back
 * to the work queue, declared by kd_amqp_connect), so a delay survives a worker restart.
 * This module decides what happens to a finished run, and nothing else:
 *   - the failure taxonomy: which error codes are final and which are transient
 *     (docs/failure-handling.md holds the same table, tests/unit/test_retry.c checks it
 *     against every code the KONE client produces);
 *   - the delay before the next attempt: exponential backoff with full jitter,
 *     uniform in [0, min(cap, base * 2^(attempt-1))] ms, from a caller-owned RNG state so
 *     a test can seed it;
 *   - the tier that delay maps to (the smallest tier at least as long);
 *   - the decision: result as it is, retry (which tier, which attempt number),
 *     dead-letter after the last attempt, or expired because the deadline leaves no room.
 */
#ifndef KD_RETRY_H
#define KD_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#include "kd_config.h"
#include "kd_err.h"
#include "kd_run.h"

/** Most retry tiers (retry.tiers_ms entries). */
#define KD_RETRY_MAX_TIERS 16
/** Longest retry tier, retry.base_ms and retry.cap_ms: one day (longer is no longer a
 * "retry"). */
#define KD_RETRY_TIER_MAX_MS 86400000
/** Highest retry.max_attempts. */
#define KD_RETRY_MAX_ATTEMPTS 100

/** The retry settings: backoff with full jitter, rounded up to a tier. */
typedef struct kd_retry_policy {
    int64_t base_ms;                      /**< retry.base_ms */
    int64_t cap_ms;                       /**< retry.cap_ms */
    int max_attempts;                     /**< retry.max_attempts: 1 = never retry */
    int max_requeues;                     /**< retry.max_requeues: trips through a tier */
    int n_tiers;                          /**< entries used in tiers_ms */
    int64_t tiers_ms[KD_RETRY_MAX_TIERS]; /**< retry.tiers_ms, strictly ascending */
} kd_retry_policy;

/** Parses "1000,5000,30000" (strictly ascending, 1..86400000 ms each, 1..16 of them). */
int kd_retry_parse_tiers(const char *text, int64_t *tiers, int *n, kd_err *err);
/** Reads retry.base_ms, retry.cap_ms, retry.max_attempts and retry.tiers_ms. */
int kd_retry_policy_load(kd_retry_policy *p, const kd_config *cfg, kd_err *err);

/** splitmix64: the RNG behind the jitter; *state is any seed. */
uint64_t kd_retry_rand(uint64_t *state);
/** The ceiling before attempt `attempt`+1: min(cap, base * 2^(attempt-1)), attempt >= 1. */
int64_t kd_retry_ceiling_ms(const kd_retry_policy *p, int attempt);
/** Full jitter: uniform in [0, kd_retry_ceiling_ms(p, attempt)]. */
int64_t kd_retry_backoff_ms(const kd_retry_policy *p, int attempt, uint64_t *rng);
/** Index of the smallest tier >= delay_ms (the last tier when none is that long). */
int kd_retry_tier_for(const kd_retry_policy *p, int64_t delay_ms);

/** True when an error code is a status of KONE's answer (digits only, e.g. "429", "1005"),
 * not a word of KONE's or the worker's own (e.g. "NO_LIFT_AVAILABLE", "timeout"). */
bool kd_retry_code_is_status(const char *code);

/** The taxonomy. Codes are kd_run.error_code values. */
kd_failure_class kd_retry_classify(const char *error_code);
/** false for codes that say the job was not tried at all ("circuit_open": the building's
 * circuit is open; "group_mode_held": its group is in a refused lift mode; the call was
 * never sent): such a retry keeps its attempt number. */
bool kd_retry_consumes_attempt(const char *error_code);

/** The decision's kind. */
typedef enum {
    KD_RETRY_RESULT = 0, /**< produce the result as it is (success, final, not retryable) */
    KD_RETRY_AGAIN,      /**< publish to tier `tier` with x-kd-attempt = next_attempt */
    KD_RETRY_DEAD,       /**< last attempt failed: `failed` result + dead-letter queue */
    KD_RETRY_EXPIRED,    /**< the deadline passes before another attempt could run */
} kd_retry_action;

/** What to do with a finished attempt, and where a retry goes. */
typedef struct kd_retry_decision {
    kd_retry_action action; /**< what to do */
    int next_attempt;       /**< AGAIN: the attempt number the retry copy carries */
    int tier;               /**< AGAIN: index into p->tiers_ms */
    int64_t delay_ms;       /**< AGAIN: the drawn delay (the tier is >= it, or the longest) */
    int next_requeues;      /**< AGAIN: x-kd-requeues of the copy (run->requeues + 1) */
    bool requeue_limit;     /**< DEAD: because of retry.max_requeues, not the attempts */
} kd_retry_decision;

/** What to do with a finished run: only FAILED runs with failure TRANSIENT are retried.
 * The tier is the one for the drawn delay, shortened to the longest tier that still ends
 * before the deadline; when even the shortest does not, EXPIRED. now_ms: wall clock.
 * A run not tried at all (`circuit_open`) is parked instead: its delay is run->park_ms (the
 * time to its building's next ping) when known, so it comes back when the circuit may let
 * it through rather than bouncing through the shortest tier. Every copy counts a re-queue;
 * a run re-queued retry.max_requeues times already is DEAD (requeue_limit) instead. */
kd_retry_decision kd_retry_decide(const kd_retry_policy *p, const kd_run *run, int64_t now_ms,
                                  uint64_t *rng);

#endif
