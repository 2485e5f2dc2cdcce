/* retry_pub: the worker's own publishes (retry copies, dead letters) and their confirms.
 *
 * A run whose job goes to a retry tier or to the dead-letter queue must not be acked until
 * the broker confirmed the copy, and the main thread must never block waiting for that
 * confirm (it also serves heartbeats, deliveries and Kafka reports). So each copy is
 * published on the side channel without waiting, and recorded here with its publish tag;
 * kd_rpub_event applies the broker's basic.ack/nack/return to the recorded runs as they
 * are read. A run has at most one copy in flight, so the table never holds more entries
 * than worker.inflight.
 *
 * The runs it holds are the worker's wk_run (worker/run.h).
 */
#ifndef KD_WORKER_RETRY_PUB_H
#define KD_WORKER_RETRY_PUB_H

#include <stdbool.h>
#include <stdint.h>

#include "kd_amqp.h"
#include "kd_retry.h"
#include "run.h"

typedef void (*kd_rpub_done_fn)(wk_run *r, bool ok, void *arg);

typedef struct kd_rpub_entry {
    uint64_t tag;
    wk_run *run;
    bool returned; /* basic.return came: unroutable, count the ack as a failure */
    char message_id[80];
} kd_rpub_entry;

typedef struct kd_rpub {
    kd_rpub_entry *e; /* in publish (tag) order */
    int n, cap;
    kd_rpub_done_fn done;
    void *arg;
} kd_rpub;

int kd_rpub_init(kd_rpub *t, int cap, kd_rpub_done_fn done, void *arg);
void kd_rpub_free(kd_rpub *t);
int kd_rpub_pending(const kd_rpub *t);

/* Publishes r's job to the retry tier of d (x-kd-attempt = d->next_attempt, last error,
 * first seen) and records it. On failure nothing is recorded (the caller hands r back). */
int kd_rpub_retry(kd_rpub *t, kd_amqp *a, wk_run *r, const kd_retry_decision *d, kd_err *err);
/* Publishes a dead letter: body (the job re-encoded when body is NULL) with x-kd-reason,
 * x-kd-error, x-kd-attempt, x-kd-first-seen. */
int kd_rpub_dead(kd_rpub *t, kd_amqp *a, wk_run *r, const char *reason, const char *error,
                 const void *body, size_t len, const char *message_id, kd_err *err);

/* Applies one side-channel event: done(run, ok) for each run it settles. */
void kd_rpub_event(kd_rpub *t, const kd_amqp_event *ev);
/* The connection died: every recorded publish counts as failed (done(run, false)). */
void kd_rpub_fail_all(kd_rpub *t);

/* "<code>: <message>" of a finished run, for x-kd-last-error / x-kd-error. */
void kd_rpub_error_text(const kd_run *run, char *buf, size_t len);

#endif
