/* run.h: the worker core's own run type, wk_run, and its settling flags.
 *
 * wk_run is the worker's run: a kd_run (what the KONE client and the result encoder see:
 * shared/include/kd_run.h) plus what the main thread needs to settle it: what it still waits
 * for (its Kafka report, its copy's confirm, its ledger record), whether to ack or hand back,
 * and its fate. Only the main thread (worker_core.c and the modules it calls: retry_pub,
 * ledger hand-offs) reads or writes the fields after `run`.
 */
#ifndef KD_WORKER_RUN_H
#define KD_WORKER_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "kd_run.h"

enum {
    WK_WAIT_KAFKA = 1 << 0,  /* its result is produced, the delivery report is pending */
    WK_WAIT_AMQP = 1 << 1,   /* its retry or dead-letter copy awaits the broker's confirm */
    WK_WAIT_LEDGER = 1 << 2, /* its outcome is being recorded in the call ledger */
};

typedef enum {
    WK_FATE_RESULT = 0,  /* its outcome goes to Kafka and ends the job */
    WK_FATE_RETRY,       /* copied to a retry tier: no result yet */
    WK_FATE_DEAD,        /* last attempt failed: `failed` result + dead-letter copy */
    WK_FATE_UNDECODABLE, /* dead-letter copy only */
} wk_fate;

typedef struct wk_run {
    kd_run run;     /* first: the KONE client and Kafka get &run */
    unsigned waits; /* WK_WAIT_* still pending; settled (ack/nack) at 0 */
    bool nack;      /* something failed: hand the delivery back instead of acking */
    wk_fate fate;
    int64_t first_seen_ms;     /* x-kd-first-seen, or when this worker took it */
    void *owner;               /* the worker (ledger callbacks carry the run only) */
    bool claimed;              /* holds a ledger claim: its outcome is recorded before produced */
    int64_t delivery_count;    /* x-delivery-count: times handed out before without an outcome */
    int64_t busy_until;        /* waiting for another delivery of its job: claim again then */
    int64_t remote_until;      /* a cancel sent by another worker: send it ourselves after */
    struct wk_run *spare_next; /* kept for reuse (worker_core.c run_new) */
} wk_run;

#endif
