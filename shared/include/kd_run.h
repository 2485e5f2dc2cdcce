/**
 * @file kd_run.h
 * @brief kd_run: one attempt at one job inside a worker, from delivery to ack.
 *
 * Everything the worker learns about a job lives here, in one place: the decoded job,
 * the AMQP delivery it came from, the attempt count, the timings and the outcome with its
 * failure class. The result event is encoded from this struct alone, and retry policy,
 * metrics and dead-lettering read the same fields.
 *
 * Ownership: the AMQP side allocates a run per delivery; the KONE side fills the outcome
 * and hands it back; the run is freed after Kafka confirmed its result and the delivery
 * was acked.
 */
#ifndef KD_RUN_H
#define KD_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "kd_job.h"
#include "kd_time.h" /* the run's timings; its users read the clocks through it */

/** A job's outcome (`outcome` in its result). */
typedef enum {
    KD_OUTCOME_NONE = 0,  /**< not known yet */
    KD_OUTCOME_SUCCEEDED, /**< KONE accepted the request */
    KD_OUTCOME_REJECTED,  /**< final: KONE refused it or the job is invalid */
    KD_OUTCOME_FAILED,    /**< transient failure (retry policy decides later) */
    KD_OUTCOME_EXPIRED,   /**< deadline passed before the call was made */
    KD_OUTCOME_UNKNOWN,   /**< final: the call may have been placed (its worker died after
                           * writing it, or it could not be cancelled); never called twice */
} kd_outcome;

/** How a failure is classed (`failure` in the result). */
typedef enum {
    KD_FAIL_NONE = 0,    /**< no failure */
    KD_FAIL_FINAL,       /**< retrying cannot help */
    KD_FAIL_TRANSIENT,   /**< retrying may help */
    KD_FAIL_UNDECODABLE, /**< not a job at all */
} kd_failure_class;

/** One job's run through a worker: the delivery, the job, timings and the outcome. */
typedef struct kd_run {
    kd_job job;     /**< the decoded job (valid when job_valid) */
    bool job_valid; /**< false: decode/validation failed, see error */

    /* AMQP delivery */
    uint64_t delivery_tag;  /**< the broker's tag, for the ack */
    uint64_t channel_epoch; /**< which channel incarnation delivered it */
    bool redelivered;       /**< the broker delivered it before */
    bool replayed;          /**< moved back by replay-dead (x-kd-replayed) */
    int attempt;            /**< 1 for the first try */
    int requeues;           /**< x-kd-requeues: trips through a retry tier before this one */
    int64_t park_ms;        /**< set with `circuit_open`: ms until its building's next ping
                             * (0: unknown), so the job waits in RabbitMQ until then */

    /* timings, µs since the epoch (wall clock, for the event) */
    int64_t received_us; /**< delivery taken off the socket */
    int64_t started_us;  /**< first KONE request sent */
    int64_t finished_us; /**< outcome known */
    int64_t produced_us; /**< result handed to librdkafka (0: none produced) */
    int64_t kone_rtt_us; /**< request sent → first answer frame */
    /* µs the call ledger's statements for it waited for PostgreSQL, batch sent → commit read
     * (the worker's ledger adds them; diagnostics: worker.timings_file, scripts/bench) */
    int64_t ledger_claim_us; /**< its claim's wait for PostgreSQL */
    int64_t ledger_done_us;  /**< its outcome record's wait for PostgreSQL */
    /** µs its request was held back for room in KONE's concurrency limits or for a rate-limit
     * token (admission, kone_bld.c), i.e. waiting on KONE's answers to earlier requests or on
     * its rate; set by the KONE thread (diagnostics: worker.timings_file, scripts/bench) */
    int64_t kone_held_us;

    /* outcome */
    kd_outcome outcome;       /**< the job's outcome */
    kd_failure_class failure; /**< how the failure is classed */
    int kone_status;          /**< statusCode of the answer, 0 if none */
    int64_t session_id;       /**< KONE session id of an accepted call, 0 if none */
    /** a transfer call: the floor the passenger must leave at to make a second call (the
     * call's states carried it; KONE's modified_destination and its reason) */
    bool has_modified_destination; /**< modified_destination is set */
    int64_t modified_destination;  /**< the area, when has_modified_destination */
    char modified_reason[64];      /**< KONE's reason, "" if none */
    bool written;                  /**< a request for it was written to KONE (set by the KONE
                                    * thread; read by the main thread after the hand-back) */
    bool adopt;                    /**< input: KONE accepted its call before (session_id), on a
                                    * worker that is gone; follow it instead of calling */
    bool internal;                 /**< not a delivery: a cancel another worker asked of this one
                                    * (its outcome goes back through the ledger, not Kafka) */
    bool validated_locally;        /**< rejected by the worker's check against the building's
                                    * cached configuration, with KONE's code, without a call */
    char error_code[48];           /**< "" or e.g. "400", "SAME_SOURCE_AND_DEST_FLOOR" */
    char error_message[256];       /**< text for people, "" if none */

    struct kd_run *next; /**< intrusive list link for the owner's queues */
} kd_run;

const char *kd_outcome_name(kd_outcome o); /**< "succeeded", ... */

/** Sets outcome, failure class, error code and message (message truncated to fit). */
void kd_run_finish(kd_run *run, kd_outcome o, kd_failure_class f, const char *code, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

#endif
