/**
 * @file kd_limits.h
 * @brief kd_limits: the worker's settings against RabbitMQ's limits (docs/failure-handling.md,
 * "Broker limits"). Pure: reads the configuration, does no I/O.
 *
 * consumer_timeout. RabbitMQ closes a channel whose delivery stays unacked longer than its
 * consumer_timeout (30 min by default) and redelivers everything on it. A worker holds a
 * delivery from its arrival until the job's outcome is durable, so the longest hold its
 * settings allow must stay below amqp.consumer_timeout_ms (which the operator sets to the
 * broker's value). The hold is bounded by (R = kone.request_timeout_ms, C =
 * kone.call_timeout_ms, T = kone.track_timeout_ms):
 *
 *   ledger  ledger.lease_ms + 2 × ledger.timeout_ms   (when ledger.url is not none: the claim
 *           may wait for a dead worker's lease to lapse; the claim and the outcome are one
 *           statement each)
 *   kone    3 R                        the first send: rate limit, a connection, the answer
 *         + 2 × 2 R                    up to 2 re-sends after a 401: a connection, the answer
 *         + 30 s + R                   a lost connection: the resume window, then R of grace
 *         + C                          accepted: waiting for the call's result
 *         + max(T, 2 × (C + 30 s))     following: a tracked call up to T; an untracked one
 *                                      until a decisive state (two progress windows of C plus
 *                                      the call's delay, at most 30 s)
 *   finish  10 s                       at shutdown: confirms and the Kafka flush
 *
 * With the defaults: 25 s + 740 s + 10 s = 775 s, well below 30 min. Not bounded by any
 * setting, and so not counted: a Kafka outage (results wait for Kafka, their jobs stay
 * unacked), and worker.drain_ms, which only cuts holds short. The constants mirror
 * worker/kone_conn.h (KK_RESEND_STATE_S) and worker/kone_int.h (KK_MAX_AUTH_RETRIES) and the job
 * format (delay ≤ 30 s); tests/unit/test_limits.c checks them against those files.
 *
 * Delivery limits. The worker parks a job it receives with x-delivery-count ≥
 * worker.max_deliveries; the work queue's x-delivery-limit (amqp.delivery_limit) is the
 * broker's backstop for a job that never reaches that check, so it must be the higher.
 */
#ifndef KD_LIMITS_H
#define KD_LIMITS_H

#include <stdint.h>

#include "kd_config.h"
#include "kd_err.h"

#define KD_LIMITS_KONE_RESUME_MS 30000 /**< KK_RESEND_STATE_S × 1000 */
#define KD_LIMITS_KONE_AUTH_RETRIES 2  /**< KK_MAX_AUTH_RETRIES */
#define KD_LIMITS_JOB_DELAY_MS 30000   /**< a call's delay: 0..30 s */
#define KD_LIMITS_FINISH_MS 10000      /**< shutdown: 5 s of confirms + 5 s of Kafka flush */
#define KD_LIMITS_MAX_AGE_MAX_MS INT64_C(31536000000) /**< job.max_age_ms: a year */
/** Highest amqp.consumer_timeout_ms: a year. */
#define KD_LIMITS_CONSUMER_TIMEOUT_MAX_MS INT64_C(31536000000)

/** The limits the settings imply: what bounds how long a worker holds a delivery. */
typedef struct kd_limits {
    int64_t consumer_timeout_ms; /**< amqp.consumer_timeout_ms (0: the broker has none) */
    int64_t delivery_limit;      /**< amqp.delivery_limit */
    int64_t max_deliveries;      /**< worker.max_deliveries (0: off) */
    int64_t job_max_age_ms;      /**< job.max_age_ms (0: no cap): for kd_job_cap_deadline */
    int64_t hold_ms;             /**< the longest hold: ledger + kone + finish */
    int64_t hold_ledger_ms;      /**< the ledger's share of hold_ms */
    int64_t hold_kone_ms;        /**< KONE's share: deadline, retries, resume */
    int64_t hold_finish_ms;      /**< shutdown's share: KD_LIMITS_FINISH_MS */
} kd_limits;

/** Reads the keys above and computes the hold. KD_ERR_INVALID naming the key when one is not
 * a number in its range. */
int kd_limits_compute(const kd_config *cfg, kd_limits *out, kd_err *err);

/** For the worker's start: 0 when the settings fit the broker's limits; KD_ERR_INVALID with a
 * message naming the keys (and what to change) when the worker could hold a delivery longer
 * than amqp.consumer_timeout_ms, when worker.max_deliveries is not below amqp.delivery_limit,
 * or when job.default_ttl_ms exceeds job.max_age_ms. */
int kd_limits_check(const kd_config *cfg, kd_err *err);

#endif
