/* kone_breaker: the circuit breaker of one building, as a pure state machine.
 *
 *            N consecutive failures               ping answers 200
 *   CLOSED ─────────────────────────> OPEN ──────────────────────────> HALF_OPEN
 *     ▲                                ▲ │ ping fails: next ping after         │
 *     │                                │ └ base·2^n (capped, jittered)         │
 *     │ a call since it succeeds       │ a call since it fails                 │
 *     └────────────────────────────────┼───────────────────────────────────────┘
 *                                      └───────────────────────────────────────┘
 *
 * CLOSED lets every call through and counts consecutive failures that the building itself
 * caused (kd_brk_verdict_of: 1005 / no progress, 5xx, 408, a request unanswered on a
 * connection that stayed up); a success resets the count. OPEN refuses every call (the
 * client finishes them "circuit_open" without a request) and pings the building
 * (`common-api` ping with its buildingId) with exponential backoff until one answers 200.
 * HALF_OPEN (the ping answered: the building is reachable again) lets every call through,
 * on probation: the first verdict of a call admitted since decides, success closes the
 * circuit, failure opens it again (the backoff goes on growing); calls without a verdict
 * (connection lost, 429, shutdown) leave the decision to later ones.
 *
 * No clock, no randomness, no I/O: the caller passes `now` (monotonic µs) and a random
 * number for the jitter, so every transition is unit-tested with a fake clock
 * (tests/unit/test_worker_kone_breaker.c). Outcomes of calls sent before the circuit
 * opened (still in flight when it did) change nothing while it is open or half-open.
 */
#ifndef KD_WORKER_KONE_BREAKER_H
#define KD_WORKER_KONE_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#include "kd_run.h"

typedef enum { KD_BRK_CLOSED = 0, KD_BRK_HALF_OPEN = 1, KD_BRK_OPEN = 2 } kd_brk_state;

/* What one finished call says about its building. */
typedef enum {
    KD_BRK_NEUTRAL = 0, /* nothing (local decision, connection-wide failure, 429) */
    KD_BRK_SUCCESS,     /* the building answered */
    KD_BRK_FAILURE,     /* the building did not: link down, 5xx, unanswered */
} kd_brk_verdict;

typedef struct kd_brk_cfg {
    int failures;    /* consecutive failures that open the circuit; 0: never opens */
    int64_t base_us; /* first ping delay after opening */
    int64_t cap_us;  /* longest ping delay */
} kd_brk_cfg;

typedef struct kd_breaker {
    kd_brk_state st;
    int fails;        /* CLOSED: consecutive failures */
    int probe_fails;  /* failed pings (and probations) since it last closed: backoff exponent */
    bool probing;     /* OPEN: a ping is out */
    int64_t probe_at; /* OPEN: when the next ping is due */
    int64_t since;    /* when the current state began */
    uint64_t opens;   /* times it opened (CLOSED or HALF_OPEN -> OPEN) */
} kd_breaker;

void kd_brk_init(kd_breaker *b, int64_t now);
const char *kd_brk_state_name(kd_brk_state s);

/* May a call for this building be sent now? CLOSED and HALF_OPEN: yes; OPEN: no.
 * *trial is set when it is admitted while HALF_OPEN (pass it back to kd_brk_record). */
bool kd_brk_admit(kd_breaker *b, const kd_brk_cfg *c, bool *trial);

/* A call of this building finished with verdict v (trial: it was admitted while HALF_OPEN).
 * Returns true when the state changed. */
bool kd_brk_record(kd_breaker *b, const kd_brk_cfg *c, kd_brk_verdict v, bool trial, int64_t now,
                   uint64_t rnd);

/* OPEN, no ping out and the next one is due. */
bool kd_brk_probe_due(const kd_breaker *b, int64_t now);
void kd_brk_probe_sent(kd_breaker *b);
/* The ping's verdict: SUCCESS (200) -> HALF_OPEN; FAILURE -> next ping after the grown
 * backoff; NEUTRAL (not sent or its connection lost) -> again after the base delay.
 * Returns true when the state changed. */
bool kd_brk_probe_done(kd_breaker *b, const kd_brk_cfg *c, kd_brk_verdict v, int64_t now,
                       uint64_t rnd);

/* The delay before ping n (0 first): d = min(cap, base·2^n), uniform in [d/2, d]. */
int64_t kd_brk_backoff_us(const kd_brk_cfg *c, int n, uint64_t rnd);

/* What a finished run says about its building. conn_lost: the connection that carried the
 * request was lost before the outcome (a timeout or a stall then is the connection's
 * fault, not the building's). */
kd_brk_verdict kd_brk_verdict_of(kd_outcome o, const char *code, bool conn_lost);

#endif
