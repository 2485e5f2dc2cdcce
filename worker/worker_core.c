/* worker_core.c: the main loop of kone-worker.
 *
 * Invariants:
 *   - every delivery becomes exactly one wk_run, and every run ends in exactly one of:
 *     acked once everything it needs is durable (its result in Kafka, and/or its retry or
 *     dead-letter copy confirmed by RabbitMQ), or handed back (nacked to the queue: Kafka
 *     or RabbitMQ refused something, or the worker is shutting down before KONE answered),
 *     or dropped because its channel died (the broker redelivers it; nothing is sent for
 *     it on the new channel);
 *   - acks only ever happen on this thread, with the channel epoch of the delivery: a
 *     delivery from a channel that has since died is never acked on the new one;
 *   - `inflight` counts runs between delivery and ack/nack; prefetch = worker.inflight,
 *     so the broker never gives us more than that;
 *   - this thread never blocks on the broker: confirms of the side channel are read
 *     while consuming and matched through the retry_pub table.
 * The KONE thread hands runs back only through kd_kafka_produce_nowait (result produced, the
 * delivery report arrives here; or librdkafka's local queue full: the message waits in the
 * locked produce queue for this thread to produce it once there is room, so the KONE loop
 * never waits for Kafka), through the locked `handback` list (not produced, or
 * shutdown), through the locked `decide` list (a transient failure: retry, dead-letter
 * or expire, decided here because it publishes to RabbitMQ), or, with the call ledger,
 * through the locked `record` list (an outcome to record before it is produced).
 *
 * The call ledger (worker/ledger.h; off with ledger.url=none) is used on this thread only:
 *   - a valid job is claimed before it goes to KONE; the claim's verdict decides: call, produce
 *     the recorded result again (redelivered), follow the accepted call, report `unknown`
 *     for a call written and never answered, or wait for another delivery holding the job;
 *   - KONE's acceptance (session id) is recorded as it comes (the `accepted` list);
 *   - an outcome is recorded (`done`, with the result) before its result is produced, so a
 *     redelivery after a crash or a Kafka failure produces it again instead of calling;
 *   - a transient failure before acceptance marks the row `retry`; a hand-back releases it
 *     (a call never written) or ends its lease (written or accepted: the next worker decides);
 *   - while the ledger does not answer, no job is taken (as while Kafka is unusable).
 */
#include "worker_core.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_amqp.h"
#include "kd_event.h"
#include "kd_kafka.h"
#include "kd_limits.h"
#include "kd_list.h"
#include "kd_log.h"
#include "kd_tls.h"
#include "kd_retry.h"
#include "kd_run.h"
#include "kone.h"
#include "ledger.h"
#include "metrics_catalog.h"
#include "retry_pub.h"
#include "run.h"
#include "kd_str.h"
#include "kone_jw.h"

#define KD_WORKER_SETTLE_GRACE_US 5000000  /* after drain_ms: results and confirms */
#define KD_WORKER_BUSY_RECHECK_US 1000000  /* a job another delivery holds: ask again */
#define KD_WORKER_REMOTE_CANCEL_US 5000000 /* a cancel the call's worker must send by then */
#define KD_WORKER_KAFKA_FULL_US                                                                    \
    2000000 /* a message waiting for room in Kafka's queue: given up                               \
             */

/* A message that found librdkafka's local queue full, waiting for room in the produce queue
 * (FIFO, so the order of one building's messages is kept). Served by the main thread, the
 * poller: the delivery reports it serves are what makes room. */
typedef struct wk_pending {
    struct wk_pending *next;
    const char *topic;
    char key[KD_JOB_BUILDING_MAX + 1];
    struct wk_run *r; /* a result: its run (the report's opaque); NULL: a call event */
    char job_id[KD_JOB_ID_MAX + 1];
    int64_t since;
    size_t len;
    unsigned char buf[];
} wk_pending;

struct kd_worker {
    const kd_config *cfg;
    char id[128];
    int64_t inflight_limit;
    int64_t default_ttl_ms;
    int64_t max_deliveries; /* worker.max_deliveries: park a job handed out this often */
    int64_t max_age_ms;     /* job.max_age_ms: a deadline is capped to this after creation */
    int64_t drain_ms;
    int64_t max_undelivered;
    const char *topic_results;
    const char *topic_events;
    kd_retry_policy policy;
    uint64_t rng;

    kd_amqp *amqp; /* NULL while disconnected */
    kd_kafka *kafka;
    kd_kone *kone;
    kd_ledger *ledger; /* NULL: ledger.url=none */
    kd_rpub pub;       /* unconfirmed retry / dead-letter copies */
    bool paused;       /* consumer cancelled: Kafka lags or is unusable, or the ledger is down */
    const char *pause_why;
    bool stopping; /* draining: deliveries racing the cancel go straight back */

    int inflight;

    pthread_mutex_t lock;    /* guards handback, decide, record and accepted */
    pthread_mutex_t pq_lock; /* guards the produce queue */
    wk_pending *pq_head, *pq_tail;
    uint64_t n_pq_waits; /* messages that waited for room in Kafka's queue */
    int wake_fd;         /* eventfd: the KONE thread handed something over (wakes the loop) */
    atomic_bool woken;   /* wake_fd written since the loop last looked at the lists */
    wk_run *handback;    /* runs whose result could not be produced, or shutdown */
    wk_run *decide;      /* transient failures waiting for the retry decision */
    wk_run *record;      /* outcomes to record in the ledger, then produce */
    struct wk_accept *accepted; /* calls KONE accepted, to record in the ledger */
    wk_run *busy;               /* (this thread) jobs another delivery holds: claimed again later */
    wk_run *remote; /* (this thread) cancels another worker sends: polled for its answer */
    wk_run *spare;  /* (this thread) runs given back, for the next delivery (run_new) */
    int n_spare;

    FILE *timings; /* worker.timings_file, NULL when off (see write_timings) */

    /* what the loop's last wait found (wait_io): RabbitMQ's socket readable, or its bytes
     * already read; the time (ms, monotonic) rabbitmq-c was last asked for a frame */
    bool amqp_due;
    int64_t amqp_asked_ms;

    /* counters for the final log line */
    uint64_t n_acked, n_nacked, n_dropped, n_retried, n_dead, n_undecodable;
    uint64_t n_by_outcome[KD_OUTCOME_UNKNOWN + 1];
};

/* A call KONE accepted, as told by the KONE thread (which still owns the run). */
typedef struct wk_accept {
    char job_id[KD_JOB_ID_MAX + 1];
    char kone_session[64];
    int attempt;
    int64_t session_id;
    struct wk_accept *next;
} wk_accept;

static void to_kone(kd_worker *w, wk_run *r);

/* Runs are kept for reuse (kd_list.h, KD_SPARE_TAKE): a run is 1.4 KiB. Runs are made and
 * freed on this thread only. */
#define WK_SPARE_RUNS 64

static wk_run *run_new(kd_worker *w)
{
    wk_run *r;
    KD_SPARE_TAKE(w->spare, w->n_spare, spare_next, r);
    return r;
}

static void run_free(kd_worker *w, wk_run *r)
{
    KD_SPARE_GIVE(w->spare, w->n_spare, WK_SPARE_RUNS, spare_next, r);
}

/* Runs parked on a list until their busy_until: due(w, r) for each whose time came (for all
 * when `all`), in the list's order; the others stay. due may park a run on the list again. */
static void serve_parked(kd_worker *w, wk_run **list, bool all,
                         void (*due)(kd_worker *w, wk_run *r))
{
    int64_t now = kd_mono_us();
    wk_run *l = *list, *keep = NULL;
    *list = NULL;
    while (l) {
        wk_run *next = (wk_run *)l->run.next;
        if (all || now >= l->busy_until) {
            due(w, l);
        } else {
            l->run.next = (kd_run *)keep;
            keep = l;
        }
        l = next;
    }
    while (keep) { /* back, behind what due parked meanwhile */
        wk_run *next = (wk_run *)keep->run.next;
        keep->run.next = (kd_run *)*list;
        *list = keep;
        keep = next;
    }
}

static kd_log_ctx run_ctx(const kd_run *run)
{
    return (kd_log_ctx){run->job.job_id, run->job.trace_id, run->job.building_id};
}

/* ---- lists handed over by the KONE thread ---- */

/* Wakes the main loop out of its wait (from any thread): once until the loop looks at its
 * lists again (turn() clears `woken` before it takes them, so what is handed over after that
 * wakes it anew). The KONE thread hands over a few runs per job; a write and the wake-up it
 * causes each time cost more system time than the job's own work (issue 17). */
static void wake(kd_worker *w)
{
    uint64_t one = 1;
    if (atomic_exchange(&w->woken, true))
        return; /* written already, not yet looked at */
    if (w->wake_fd >= 0 && write(w->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        /* GCOVR_EXCL_START: an eventfd write fails (but EAGAIN) only on counter overflow */
        kd_debug("wake-up of the main loop failed: %s", kd_strerror(errno));
    /* GCOVR_EXCL_STOP */
}

static void push(kd_worker *w, wk_run **list, wk_run *r)
{
    pthread_mutex_lock(&w->lock);
    r->run.next = (kd_run *)*list; /* run is wk_run's first member */
    *list = r;
    pthread_mutex_unlock(&w->lock);
    wake(w);
}

static wk_run *take(kd_worker *w, wk_run **list)
{
    pthread_mutex_lock(&w->lock);
    wk_run *l = *list;
    *list = NULL;
    pthread_mutex_unlock(&w->lock);
    return l;
}

/* ---- results: encode and produce (called on the KONE thread and on this one) ---- */

/* Produces now, or queues the message behind those already waiting for room (the order is
 * kept). Any thread; never waits. Returns 0 (produced or queued) or an error (not
 * produced). r: the result's run (the report's opaque), NULL for a call event. */
static int produce_nb(kd_worker *w, const char *topic, const char *key, const void *buf, size_t len,
                      wk_run *r, const char *job_id, kd_err *err)
{
    bool full = false, queued = false;
    int rc = 0;
    pthread_mutex_lock(&w->pq_lock);
    if (!w->pq_head)
        rc =
            kd_kafka_produce_nowait(w->kafka, topic, key, buf, len, r ? &r->run : NULL, &full, err);
    if (!rc && (full || w->pq_head)) {
        wk_pending *p = malloc(sizeof *p + len);
        if (!p) {
            /* GCOVR_EXCL_START: allocation failure */
            rc = kd_err_set(err, KD_ERR_NOMEM, "out of memory queueing a message for Kafka");
            /* GCOVR_EXCL_STOP */
        } else {
            memset(p, 0, sizeof *p);
            p->topic = topic;
            kd_str_copy(p->key, sizeof p->key, key ? key : "");
            kd_str_copy(p->job_id, sizeof p->job_id, job_id ? job_id : "");
            p->r = r;
            p->since = kd_mono_us();
            p->len = len;
            memcpy(p->buf, buf, len);
            KD_SLIST_APPEND(w->pq_head, w->pq_tail, p, next);
            w->n_pq_waits++;
            queued = true;
        }
    }
    pthread_mutex_unlock(&w->pq_lock);
    if (queued)
        wake(w);
    return rc;
}

static void pq_give_up(kd_worker *w, wk_pending *p, const char *why)
{
    if (p->r) {
        kd_log_ctx ctx = run_ctx(&p->r->run);
        kd_log(KD_LOG_ERROR, &ctx, "result not produced, handing the job back: %s", why);
        push(w, &w->handback, p->r);
    } else {
        kd_log_ctx ctx = {p->job_id, NULL, p->key};
        kd_log(KD_LOG_ERROR, &ctx, "call event not produced: %s", why);
    }
    free(p);
}

/* Main thread, every turn: produces what waits for room, oldest first, until the queue is
 * full again; a message that waited KD_WORKER_KAFKA_FULL_US is given up (its job handed
 * back, as when Kafka refuses it). */
static void serve_produce_queue(kd_worker *w)
{
    for (;;) {
        kd_err err;
        kd_err_clear(&err);
        bool full = false;
        pthread_mutex_lock(&w->pq_lock);
        wk_pending *p = w->pq_head;
        if (!p) {
            pthread_mutex_unlock(&w->pq_lock);
            return;
        }
        if (p->r) /* stamped before: once produced, the report may free the run */
            p->r->run.produced_us = kd_now_us();
        int rc = kd_kafka_produce_nowait(w->kafka, p->topic, p->key[0] ? p->key : NULL, p->buf,
                                         p->len, p->r ? &p->r->run : NULL, &full, &err);
        if (!rc && full) {
            if (kd_mono_us() - p->since < KD_WORKER_KAFKA_FULL_US) {
                pthread_mutex_unlock(&w->pq_lock);
                return; /* the next delivery reports make room */
            }
            rc = kd_err_set(&err, KD_ERR_IO,
                            "kafka: local queue full for %d ms (%d undelivered): is Kafka "
                            "reachable?",
                            KD_WORKER_KAFKA_FULL_US / 1000, kd_kafka_undelivered(w->kafka));
        }
        w->pq_head = p->next;
        if (!w->pq_head)
            w->pq_tail = NULL;
        pthread_mutex_unlock(&w->pq_lock);
        if (rc)
            pq_give_up(w, p, err.msg);
        else
            free(p);
    }
}

static bool pq_waiting(kd_worker *w)
{
    pthread_mutex_lock(&w->pq_lock);
    bool any = w->pq_head != NULL;
    pthread_mutex_unlock(&w->pq_lock);
    return any;
}

/* Produces the result: `encoded` when the caller has it already (the bytes recorded in the
 * ledger), else encoded here. */
static void produce_encoded(kd_worker *w, wk_run *r, const void *encoded, size_t len)
{
    kd_run *run = &r->run;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    kd_err err;
    kd_err_clear(&err);
    /* set before producing: the report may be served before kd_kafka_produce returns */
    r->waits |= WK_WAIT_KAFKA;
    r->claimed = false; /* its outcome is recorded (or there is no ledger) */
    int rc = 0;
    if (!encoded) {
        rc = kd_event_encode_result(run, w->id, &sb, &err);
        encoded = sb.data, len = sb.size;
    }
    if (!rc) {
        /* stamped before: once produced, the report may settle and free the run at once */
        run->produced_us = kd_now_us();
        rc = produce_nb(w, w->topic_results, run->job.building_id, encoded, len, r, run->job.job_id,
                        &err);
    }
    msgpack_sbuffer_destroy(&sb);
    if (rc) {
        kd_log_ctx ctx = run_ctx(run);
        kd_log(KD_LOG_ERROR, &ctx, "result not produced, handing the job back: %s", err.msg);
        push(w, &w->handback, r);
    }
}

static void produce_result(kd_worker *w, wk_run *r)
{
    produce_encoded(w, r, NULL, 0);
}

/* The outcome is in the ledger (or could not be put there): produce the bytes recorded. */
static void on_recorded(bool ok, const void *result, size_t len, void *ctx)
{
    wk_run *r = ctx;
    (void)ok; /* not recorded (the ledger refused it repeatedly): produced all the same */
    /* still in flight until now: a dead-letter copy confirmed meanwhile did not settle it */
    r->waits &= ~WK_WAIT_LEDGER;
    produce_encoded(r->owner, r, result, len);
}

/* An outcome that ends the job: recorded in the ledger first when the run holds a claim
 * (this thread only), produced at once otherwise. */
static void finish_result(kd_worker *w, wk_run *r)
{
    if (!w->ledger || !r->claimed) {
        produce_result(w, r);
        return;
    }
    kd_run *run = &r->run;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    kd_err err;
    kd_err_clear(&err);
    if (kd_event_encode_result(run, w->id, &sb, &err)) {
        msgpack_sbuffer_destroy(&sb);
        produce_result(w, r); /* fails the same way and hands the job back */
        return;
    }
    r->waits |= WK_WAIT_LEDGER;
    kd_ledger_done(w->ledger, run, sb.data, sb.size, on_recorded, r);
    msgpack_sbuffer_destroy(&sb);
}

static bool is_shutdown_handback(const kd_run *run)
{
    return run->outcome == KD_OUTCOME_FAILED && strcmp(run->error_code, "shutdown") == 0;
}

static bool needs_decision(const kd_run *run)
{
    kd_failure_class f =
        run->failure != KD_FAIL_NONE ? run->failure : kd_retry_classify(run->error_code);
    return run->outcome == KD_OUTCOME_FAILED && f == KD_FAIL_TRANSIENT;
}

static void on_kone_done(kd_run *run, void *arg)
{
    kd_worker *w = arg;
    wk_run *r = (wk_run *)run;
    if (run->internal) { /* a cancel asked by another worker: its answer goes back */
        push(w, &w->record, r);
        return;
    }
    if (is_shutdown_handback(run)) {
        r->nack = true;
        push(w, &w->handback, r);
        return;
    }
    kd_log_ctx ctx = run_ctx(run);
    kd_log(run->outcome == KD_OUTCOME_SUCCEEDED ? KD_LOG_DEBUG : KD_LOG_INFO, &ctx,
           "job %s: %s%s%s (attempt %d)", kd_op_name(run->job.op), kd_outcome_name(run->outcome),
           run->error_message[0] ? ": " : "", run->error_message, run->attempt);
    if (needs_decision(run))
        push(w, &w->decide, r);
    else if (w->ledger && r->claimed)
        push(w, &w->record, r); /* recorded on the main thread, then produced */
    else
        produce_result(w, r);
}

/* KONE thread: the call was accepted; the main thread records it. */
static void on_kone_accepted(const kd_run *run, const char *kone_session, void *arg)
{
    kd_worker *w = arg;
    if (!w->ledger)
        return;
    wk_accept *a = calloc(1, sizeof *a);
    if (!a) {
        /* GCOVR_EXCL_START: allocation failure */
        kd_error("out of memory; acceptance of job %s not recorded in the ledger", run->job.job_id);
        return;
        /* GCOVR_EXCL_STOP */
    }
    kd_str_copy(a->job_id, sizeof a->job_id, run->job.job_id);
    kd_str_copy(a->kone_session, sizeof a->kone_session, kone_session ? kone_session : "");
    a->attempt = run->attempt;
    a->session_id = run->session_id;
    pthread_mutex_lock(&w->lock);
    a->next = w->accepted;
    w->accepted = a;
    pthread_mutex_unlock(&w->lock);
    wake(w);
}

static void on_kone_call_event(kd_run *run, const kd_call_event *ev, void *arg)
{
    kd_worker *w = arg;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    kd_err err;
    kd_err_clear(&err);
    int rc = kd_event_encode_call(ev, w->id, &sb, &err);
    if (!rc)
        rc = produce_nb(w, w->topic_events, run->job.building_id, sb.data, sb.size, NULL,
                        run->job.job_id, &err);
    msgpack_sbuffer_destroy(&sb);
    if (rc) {
        kd_log_ctx ctx = run_ctx(run);
        kd_log(KD_LOG_ERROR, &ctx, "call event %s not produced: %s", ev->state, err.msg);
    }
}

/* ---- settling: acks and nacks, only on this thread ---- */

static bool epoch_live(const kd_worker *w, const kd_run *run)
{
    return w->amqp && kd_amqp_epoch(w->amqp) == run->channel_epoch;
}

static void count_acked(kd_worker *w, const wk_run *r)
{
    if (r->fate == WK_FATE_RETRY)
        kd_wm_retry(r->run.error_code);
    else if (r->fate != WK_FATE_UNDECODABLE)
        kd_wm_job_done(&r->run);
    if (r->fate == WK_FATE_DEAD || r->fate == WK_FATE_UNDECODABLE)
        kd_wm_dead_letter(r->fate == WK_FATE_UNDECODABLE                 ? "undecodable"
                          : !strcmp(r->run.error_code, "delivery_limit") ? "delivery_limit"
                          : !strcmp(r->run.error_code, "requeue_limit")  ? "requeue_limit"
                                                                         : "failed");
    w->n_acked++;
    switch (r->fate) {
    case WK_FATE_RETRY: w->n_retried++; return;
    case WK_FATE_UNDECODABLE: w->n_undecodable++; return;
    case WK_FATE_DEAD: w->n_dead++; break;
    case WK_FATE_RESULT: break;
    }
    if (r->run.outcome <= KD_OUTCOME_UNKNOWN)
        w->n_by_outcome[r->run.outcome]++;
}

/* put: text and numbers into a line without printf's format machinery (the timings are
 * written for every job of a benchmark run, and fprintf cost about 4k instructions a job,
 * inflating the very figure the benchmark measures) */
static char *put_int(char *p, int64_t v)
{
    p += kd_jw_int_text(p, v);
    *p++ = ' ';
    return p;
}

static char *put_str(char *p, const char *s)
{
    while (*s) /* each a string whose length the line's size allows for */
        *p++ = *s++;
    *p++ = ' ';
    return p;
}

/* worker.timings_file: one line per acked delivery for scripts/bench (docs/performance.md):
 * "received started finished produced acked building outcome fate claim_pg done_pg", times
 * in µs since the epoch (0 where a step did not happen), fate "final" (its result or
 * dead-letter copy went out: the job is done) or "requeue" (handed to a retry tier or parked:
 * it comes back), then the µs its ledger claim and its outcome record waited for PostgreSQL
 * (0 without the ledger) and the µs KONE's admission held its request back (kd_run
 * kone_held_us): what the bench takes out of the worker's own latency.
 * Written on this thread only, into stdio's buffer (flushed when the worker stops): no lock
 * and no system call per job; when off, the cost is the NULL test. */
static void write_timings(kd_worker *w, const wk_run *r)
{
    if (!w->timings)
        return;
    const kd_run *run = &r->run;
    bool final =
        r->fate == WK_FATE_RESULT || r->fate == WK_FATE_DEAD || r->fate == WK_FATE_UNDECODABLE;
    char line[8 * KD_JW_INT_TEXT + KD_JOB_BUILDING_MAX + 64], *p = line;
    p = put_int(p, run->received_us);
    p = put_int(p, run->started_us);
    p = put_int(p, run->finished_us);
    p = put_int(p, run->produced_us);
    p = put_int(p, kd_now_us());
    p = put_str(p, run->job.building_id[0] ? run->job.building_id : "-");
    p = put_str(p, kd_outcome_name(run->outcome));
    p = put_str(p, final ? "final" : "requeue");
    p = put_int(p, run->ledger_claim_us);
    p = put_int(p, run->ledger_done_us);
    p = put_int(p, run->kone_held_us);
    p[-1] = '\n';
    fwrite(line, 1, (size_t)(p - line), w->timings);
}

static void settle(kd_worker *w, wk_run *r)
{
    kd_run *run = &r->run;
    bool ack = !r->nack;
    if (!epoch_live(w, run)) {
        /* Its channel died: the broker redelivers it. Nothing goes to the new channel. */
        w->n_dropped++;
    } else {
        kd_err err;
        kd_err_clear(&err);
        int rc = ack ? kd_amqp_ack(w->amqp, run->delivery_tag, run->channel_epoch, &err)
                     : kd_amqp_nack(w->amqp, run->delivery_tag, run->channel_epoch, true, &err);
        if (rc) {
            kd_log_ctx ctx = run_ctx(run);
            kd_log(KD_LOG_WARN, &ctx, "%s failed, the broker will redeliver: %s",
                   ack ? "ack" : "nack", err.msg);
            w->n_dropped++;
        } else if (ack) {
            count_acked(w, r);
            write_timings(w, r);
        } else {
            w->n_nacked++;
        }
    }
    w->inflight--;
    run_free(w, r);
}

/* One of the things a run waits for is done (ok or not); settles it when none is left. */
static void part_done(kd_worker *w, wk_run *r, unsigned what, bool ok)
{
    r->waits &= ~what;
    if (!ok)
        r->nack = true;
    if (r->waits == 0)
        settle(w, r);
}

static void on_delivery_report(void *opaque, int err_code, const char *errstr, void *arg)
{
    kd_worker *w = arg;
    wk_run *r = opaque;
    /* Call events and metric snapshots carry no delivery (NULL opaque); both count under
     * the events topic. */
    kd_wm_kafka_delivery(r ? w->topic_results : w->topic_events, err_code == 0);
    if (!r)
        return;
    if (err_code) {
        kd_log_ctx ctx = run_ctx(&r->run);
        kd_log(KD_LOG_ERROR, &ctx, "Kafka refused the result (%s); handing the job back", errstr);
    }
    part_done(w, r, WK_WAIT_KAFKA, err_code == 0);
}

static void on_copy_confirmed(wk_run *r, bool ok, void *arg)
{
    part_done(arg, r, WK_WAIT_AMQP, ok);
}

/* ---- the retry decision (transient failures) ---- */

static void expire_run(kd_run *run, int next_attempt)
{
    char last[sizeof run->error_message];
    kd_rpub_error_text(run, last, sizeof last);
    kd_run_finish(run, KD_OUTCOME_EXPIRED, KD_FAIL_FINAL, "expired",
                  "deadline leaves no time for attempt %d (last error %s)", next_attempt, last);
}

/* retry.max_requeues reached (a job parked again and again while its building's circuit
 * stays open): it ends here, failed (dead-lettered, replayable) or expired. */
static void requeue_limit(kd_run *run, kd_retry_action a)
{
    char last[sizeof run->error_message];
    kd_rpub_error_text(run, last, sizeof last);
    if (a == KD_RETRY_EXPIRED)
        kd_run_finish(run, KD_OUTCOME_EXPIRED, KD_FAIL_FINAL, "expired",
                      "deadline passed after %d re-queues (last error %s)", run->requeues, last);
    else
        kd_run_finish(run, KD_OUTCOME_FAILED, KD_FAIL_FINAL, "requeue_limit",
                      "re-queued %d times (retry.max_requeues); last error %s", run->requeues,
                      last);
}

static void decide_one(kd_worker *w, wk_run *r)
{
    kd_run *run = &r->run;
    kd_log_ctx ctx = run_ctx(run);
    if (run->adopt) {
        /* following a call accepted on a gone worker failed before it started (no
         * connection): never retried as a call; the next delivery follows it again */
        kd_log(KD_LOG_INFO, &ctx,
               "could not follow the accepted call (%s); handing the job "
               "back",
               run->error_code);
        kd_ledger_release(w->ledger, run, true);
        r->claimed = false;
        r->nack = true;
        settle(w, r);
        return;
    }
    kd_retry_decision d = kd_retry_decide(&w->policy, run, kd_now_us() / 1000, &w->rng);
    if (d.requeue_limit)
        requeue_limit(run, d.action);
    if (d.action == KD_RETRY_RESULT || d.action == KD_RETRY_EXPIRED) {
        if (d.action == KD_RETRY_EXPIRED && !d.requeue_limit) {
            expire_run(run, d.next_attempt);
            kd_log(KD_LOG_INFO, &ctx, "job expired: %s", run->error_message);
        }
        finish_result(w, r);
        return;
    }
    if (r->claimed && (d.action == KD_RETRY_AGAIN || !epoch_live(w, run))) {
        /* failed before KONE accepted anything: the next attempt (or delivery) may call */
        kd_ledger_retry(w->ledger, run);
        r->claimed = false;
    }
    if (!epoch_live(w, run)) {
        kd_log(KD_LOG_INFO, &ctx,
               "attempt %d failed after its channel died; the broker "
               "redelivers the job",
               run->attempt);
        r->nack = true;
        settle(w, r);
        return;
    }
    kd_err err;
    kd_err_clear(&err);
    int rc;
    if (d.action == KD_RETRY_AGAIN) {
        r->fate = WK_FATE_RETRY;
        rc = kd_rpub_retry(&w->pub, w->amqp, r, &d, &err);
        if (!rc)
            kd_log(KD_LOG_INFO, &ctx,
                   "attempt %d failed (%s); attempt %d in %lld ms (tier %lld ms)", run->attempt,
                   run->error_code, d.next_attempt, (long long)d.delay_ms,
                   (long long)w->policy.tiers_ms[d.tier]);
    } else {
        r->fate = WK_FATE_DEAD;
        char text[sizeof run->error_code + sizeof run->error_message + 2];
        kd_rpub_error_text(run, text, sizeof text);
        rc = kd_rpub_dead(&w->pub, w->amqp, r, d.requeue_limit ? "requeue_limit" : "failed", text,
                          NULL, 0, run->job.job_id, &err);
        if (!rc && d.requeue_limit) {
            kd_log(KD_LOG_WARN, &ctx, "%s; job failed and parked in the dead-letter queue", text);
            finish_result(w, r);
        } else if (!rc) {
            kd_log(KD_LOG_WARN, &ctx,
                   "attempt %d of %d failed (%s); job failed and parked in "
                   "the dead-letter queue",
                   run->attempt, w->policy.max_attempts, text);
            finish_result(w, r);
        }
    }
    if (rc) {
        kd_log(KD_LOG_ERROR, &ctx, "could not publish the job's %s copy, handing it back: %s",
               d.action == KD_RETRY_AGAIN ? "retry" : "dead-letter", err.msg);
        if (r->claimed) {
            kd_ledger_release(w->ledger, run, false);
            r->claimed = false;
        }
        r->nack = true;
        settle(w, r);
    }
}

/* ---- cancels across workers (docs/failure-handling.md, "Cancels across workers") ---- */

/* Owner side: a cancel another worker asked of this one, for a call one of its sessions made.
 * It runs as an internal run (no delivery, no result): the KONE client sends the delete on the
 * session that made the call (its affinity), and KONE's answer goes back through the ledger. */
static void on_cancel_asked(const char *cancel_job_id, int64_t call_session_id,
                            const char *building, const char *group, void *ctx)
{
    kd_worker *w = ctx;
    wk_run *r = run_new(w);
    if (!r) {
        /* GCOVR_EXCL_START: allocation failure */
        kd_error("out of memory; cancel %s asked by another worker not sent", cancel_job_id);
        kd_ledger_cancel_answer(w->ledger, cancel_job_id, 0, "out of memory on the owner");
        return;
        /* GCOVR_EXCL_STOP */
    }
    kd_run *run = &r->run;
    r->owner = w;
    run->internal = true;
    run->job_valid = true;
    run->attempt = 1;
    run->job.op = KD_OP_CANCEL;
    run->job.session_id = call_session_id;
    kd_str_copy(run->job.job_id, sizeof run->job.job_id, cancel_job_id);
    kd_str_copy(run->job.building_id, sizeof run->job.building_id, building);
    kd_str_copy(run->job.group_id, sizeof run->job.group_id, *group ? group : "1");
    run->received_us = kd_now_us();
    run->job.deadline = run->received_us / 1000 + 30000;
    kd_log_ctx lc = run_ctx(run);
    kd_log(KD_LOG_INFO, &lc,
           "another worker asks to cancel call %lld, made on this worker's "
           "session; sending the delete",
           (long long)call_session_id);
    to_kone(w, r);
}

static void cancel_answered(kd_worker *w, wk_run *r)
{
    kd_run *run = &r->run;
    /* the message alone (it names KONE's status): the asking worker reports it as it is */
    kd_ledger_cancel_answer(w->ledger, run->job.job_id, run->kone_status,
                            run->error_message[0] ? run->error_message : run->error_code);
    run_free(w, r);
}

/* Canceler side: the owner sent the delete (or not yet). */
static void on_cancel_polled(bool ok, bool answered, int status, const char *message, void *ctx);

static void remote_wait(kd_worker *w, wk_run *r)
{
    r->busy_until = kd_mono_us() + 250000;
    r->run.next = (kd_run *)w->remote;
    w->remote = r;
}

static void on_cancel_polled(bool ok, bool answered, int status, const char *message, void *ctx)
{
    wk_run *r = ctx;
    kd_worker *w = r->owner;
    kd_run *run = &r->run;
    kd_log_ctx lc = run_ctx(run);
    if (!answered) {
        if (kd_mono_us() < r->remote_until && w->kone) {
            remote_wait(w, r);
            return;
        }
        /* the owner did not answer in time (it may have stopped): send it ourselves */
        kd_log(KD_LOG_WARN, &lc,
               "the worker that made call %lld did not send its delete in "
               "time%s; sending it on this worker's session",
               (long long)run->job.session_id, ok ? "" : " (the ledger did not answer)");
        to_kone(w, r);
        return;
    }
    run->kone_status = status;
    run->finished_us = kd_now_us();
    char code[16];
    snprintf(code, sizeof code, "%d", status);
    if (status >= 200 && status < 300)
        kd_run_finish(run, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "",
                      "delete sent on the session that made the call (by its worker): KONE "
                      "answered %d",
                      status);
    else if (status >= 400 && status < 500 && status != 408 && status != 429 && status != 401)
        kd_run_finish(run, KD_OUTCOME_REJECTED, KD_FAIL_FINAL, code, "%s", message);
    else
        kd_run_finish(run, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, status ? code : "no_answer",
                      "the worker that made the call could not cancel it: %s", message);
    kd_log(KD_LOG_INFO, &lc, "cancel of call %lld: %s", (long long)run->job.session_id,
           run->error_message);
    if (run->outcome == KD_OUTCOME_FAILED) {
        push(w, &w->decide, r); /* transient: the retry policy decides */
        return;
    }
    finish_result(w, r);
}

static void on_routed(const kd_ledger_call_owner *o, void *ctx)
{
    wk_run *r = ctx;
    kd_worker *w = r->owner;
    kd_run *run = &r->run;
    if (!o->ok || !o->found || o->mine || !o->alive) {
        /* unknown to the ledger, made here, or its worker is gone: send it ourselves */
        to_kone(w, r);
        return;
    }
    kd_log_ctx lc = run_ctx(run);
    kd_log(KD_LOG_INFO, &lc,
           "call %lld was made by %s on KONE session %s; asking it to send "
           "the delete",
           (long long)run->job.session_id, o->owner, o->kone_session);
    kd_ledger_cancel_request(w->ledger, run->job.job_id, run->job.session_id, run->job.building_id,
                             run->job.group_id, o->owner);
    run->started_us = kd_now_us();
    r->remote_until = kd_mono_us() + KD_WORKER_REMOTE_CANCEL_US;
    remote_wait(w, r);
}

/* A cancel waiting for another worker's answer: poll (the KONE client gone: now). */
static void remote_due(kd_worker *w, wk_run *r)
{
    kd_ledger_cancel_poll(w->ledger, r->run.job.job_id, on_cancel_polled, r);
}

static void serve_remote(kd_worker *w)
{
    serve_parked(w, &w->remote, !w->kone, remote_due);
}

/* Hand-backs and retry decisions queued by the KONE thread (or by produce_result). */
static void serve_lists(kd_worker *w)
{
    pthread_mutex_lock(&w->lock);
    wk_accept *a = w->accepted;
    w->accepted = NULL;
    pthread_mutex_unlock(&w->lock);
    while (a) {
        wk_accept *next = a->next;
        kd_ledger_accept(w->ledger, a->job_id, a->session_id, a->kone_session);
        free(a);
        a = next;
    }
    wk_run *l = take(w, &w->handback);
    while (l) {
        wk_run *next = (wk_run *)l->run.next;
        if (l->claimed && w->ledger) {
            /* shutdown: a call never written is released; one written (unanswered) or
             * accepted keeps its row, and its lease ends: the next worker decides */
            kd_ledger_release(w->ledger, &l->run, l->run.written || l->run.adopt);
            l->claimed = false;
        }
        part_done(w, l, WK_WAIT_KAFKA, false);
        l = next;
    }
    l = take(w, &w->record);
    while (l) {
        wk_run *next = (wk_run *)l->run.next;
        if (l->run.internal)
            cancel_answered(w, l);
        else
            finish_result(w, l);
        l = next;
    }
    l = take(w, &w->decide);
    while (l) {
        wk_run *next = (wk_run *)l->run.next;
        decide_one(w, l);
        l = next;
    }
}

/* ---- the AMQP connection ---- */

static void flush_acks(kd_worker *w);

static void conn_lost(kd_worker *w, const char *why)
{
    kd_warn("RabbitMQ connection lost (%s); %d jobs in flight will be redelivered, %d "
            "unconfirmed retry/dead-letter copies count as not published",
            why, w->inflight, kd_rpub_pending(&w->pub));
    kd_wm_amqp_reconnect();
    flush_acks(w); /* counts the held acks that die with it */
    kd_amqp_close(w->amqp);
    w->amqp = NULL;
    /* their originals were never acked: the broker redelivers them */
    kd_rpub_fail_all(&w->pub);
}

static void serve_side_events(kd_worker *w)
{
    kd_amqp_event ev;
    while (w->amqp && kd_amqp_side_event(w->amqp, &ev))
        if (ev.channel == 2) /* the side channel: our retry and dead-letter copies */
            kd_rpub_event(&w->pub, &ev);
}

static int consume(kd_worker *w, kd_err *err)
{
    if (kd_amqp_consume_start(w->amqp, (int)w->inflight_limit, err))
        return -1;
    kd_info("consuming %s (prefetch %lld)", kd_cfg_str(w->cfg, KD_CFG_AMQP_QUEUE),
            (long long)w->inflight_limit);
    return 0;
}

static void flow_control(kd_worker *w);

static int amqp_open(kd_worker *w, kd_err *err)
{
    /* paused first if no job may start (the ledger away since the start): consuming, only to
     * hand back every delivery unclaimed, would churn the queue */
    flow_control(w);
    if (kd_amqp_connect(&w->amqp, w->cfg, err))
        return -1;
    kd_amqp_hold_acks(w->amqp); /* sent once per turn: flush_acks in turn() */
    if (!w->paused && consume(w, err)) {
        kd_amqp_close(w->amqp);
        w->amqp = NULL;
        return -1;
    }
    return 0;
}

/* Backpressure: results Kafka has not confirmed pile up in librdkafka (no delivery
 * deadline). Past kafka.max_undelivered the consumer is cancelled, so no new job starts
 * (and none is taken from other workers); heartbeats, reports, acks and confirms go on.
 * Below half of it, consuming resumes. */
static void flow_control(kd_worker *w)
{
    int n = kd_kafka_undelivered(w->kafka);
    kd_err err;
    kd_err_clear(&err);
    /* Why no job may start now. A job whose call cannot be claimed in the ledger, or whose
     * result cannot reach Kafka, must not be called: it waits in the queue instead. */
    const char *why = w->ledger && !kd_ledger_up(w->ledger) ? "the call ledger does not answer"
                      : !kd_kafka_usable(w->kafka)          ? "Kafka is unusable"
                      : n > w->max_undelivered              ? "results wait for Kafka"
                                                            : NULL;
    if (!w->paused && why) {
        w->paused = true;
        w->pause_why = why;
        kd_warn("pausing consumption: %s (%d results wait for Kafka, kafka.max_undelivered "
                "%lld); no job is taken until it recovers",
                why, n, (long long)w->max_undelivered);
        if (w->amqp && kd_amqp_consuming(w->amqp) && kd_amqp_consume_cancel(w->amqp, &err))
            conn_lost(w, err.msg);
    } else if (w->paused && !why && n <= w->max_undelivered / 2 && !w->stopping) {
        w->paused = false;
        kd_info("resuming consumption (%s is over; %d results wait for Kafka)", w->pause_why, n);
        if (w->amqp && consume(w, &err))
            conn_lost(w, err.msg);
    }
}

/* ---- deliveries ---- */

static void dead_letter_undecodable(kd_worker *w, wk_run *r, const kd_delivery *d, const char *why)
{
    char mid[80];
    if (d->message_id[0])
        kd_str_copy(mid, sizeof mid, d->message_id);
    else
        snprintf(mid, sizeof mid, "kd-undecodable-%llu-%llu", (unsigned long long)d->epoch,
                 (unsigned long long)d->delivery_tag);
    r->fate = WK_FATE_UNDECODABLE;
    kd_err err;
    kd_err_clear(&err);
    /* An empty body arrives as NULL; kd_rpub_dead reads NULL as "re-encode the job", which
     * an undecodable message cannot be, so pass an empty buffer instead. */
    const void *body = d->body ? d->body : "";
    if (kd_rpub_dead(&w->pub, w->amqp, r, "undecodable", why, body, d->len, mid, &err)) {
        kd_error("undecodable message not dead-lettered, handing it back: %s", err.msg);
        r->nack = true;
        settle(w, r);
    }
}

/* A job the broker handed out worker.max_deliveries times without any worker settling it:
 * each time, the worker holding it died or lost its connection (x-delivery-count counts
 * those returns). One job that crashes workers would otherwise take every worker down in
 * turn for ever; it gets outcome `failed` (delivery_limit) and is parked with its body for
 * a human, before any call is made. Checked after decoding so the result names the job: a
 * message the decoder cannot read goes to the dead-letter queue anyway. */
static void park_delivery_limit(kd_worker *w, wk_run *r, int64_t returned)
{
    kd_run *run = &r->run;
    kd_log_ctx ctx = run_ctx(run);
    kd_run_finish(run, KD_OUTCOME_FAILED, KD_FAIL_FINAL, "delivery_limit",
                  "delivered %lld times without an outcome (each time the worker holding it "
                  "stopped or lost its connection); parked, not called",
                  (long long)returned + 1);
    r->fate = WK_FATE_DEAD;
    kd_err err;
    kd_err_clear(&err);
    if (kd_rpub_dead(&w->pub, w->amqp, r, "delivery_limit", run->error_message, NULL, 0,
                     run->job.job_id, &err)) {
        kd_log(KD_LOG_ERROR, &ctx, "could not park the job, handing it back: %s", err.msg);
        r->nack = true;
        settle(w, r);
        return;
    }
    kd_log(KD_LOG_ERROR, &ctx, "job %s; moved to the dead-letter queue", run->error_message);
    finish_result(w, r);
}

/* ---- the ledger's verdict on a delivery ---- */

/* Hands a run to the KONE client; once the client is stopped (a ledger answer that came in
 * during shutdown), the job goes back to the queue instead, its claim released. */
static void to_kone(kd_worker *w, wk_run *r)
{
    if (w->kone && !(w->stopping && r->run.internal)) {
        kd_kone_submit(w->kone, &r->run);
        return;
    }
    if (r->run.internal) {
        kd_ledger_cancel_answer(w->ledger, r->run.job.job_id, 0, "its worker is stopping");
        run_free(w, r);
        return;
    }
    if (r->claimed) {
        kd_ledger_release(w->ledger, &r->run, r->run.adopt);
        r->claimed = false;
    }
    r->nack = true;
    settle(w, r);
}

static void busy_wait(kd_worker *w, wk_run *r)
{
    r->busy_until = kd_mono_us() + KD_WORKER_BUSY_RECHECK_US;
    r->run.next = (kd_run *)w->busy;
    w->busy = r;
}

/* A job that ended before: its recorded outcome is produced again, marked redelivered. */
static void reproduce(kd_worker *w, wk_run *r, const kd_ledger_found *f)
{
    kd_run *run = &r->run;
    kd_run_finish(run, f->outcome ? f->outcome : KD_OUTCOME_UNKNOWN, f->failure, f->error_code,
                  "%s", f->error_message);
    run->kone_status = f->kone_status;
    run->session_id = f->session_id;
    run->started_us = f->started_us;
    run->finished_us = f->finished_us;
    run->kone_rtt_us = f->kone_rtt_us;
    if (f->attempt > 0)
        run->attempt = f->attempt;
    run->redelivered = true;
    produce_result(w, r);
}

static void on_claimed(const kd_ledger_found *f, void *ctx)
{
    wk_run *r = ctx;
    kd_worker *w = r->owner;
    kd_run *run = &r->run;
    kd_log_ctx lc = run_ctx(run);
    switch (f->verdict) {
    case KD_LEDGER_CALL:
        r->claimed = true;
        if (w->max_deliveries > 0 && r->delivery_count >= w->max_deliveries) {
            park_delivery_limit(w, r, r->delivery_count);
            return;
        }
        if (run->job.op == KD_OP_CANCEL) {
            /* the delete must reach the KONE session that made the call */
            kd_ledger_route(w->ledger, run->job.session_id, run->job.building_id, on_routed, r);
            return;
        }
        to_kone(w, r);
        return;
    case KD_LEDGER_FOLLOW:
        kd_wm_ledger_duplicate("accepted");
        kd_log(KD_LOG_INFO, &lc,
               "KONE accepted this job's call before (session %lld, on %s, "
               "which is gone); following that call instead of calling again",
               (long long)f->session_id, f->worker);
        r->claimed = true;
        run->session_id = f->session_id;
        run->adopt = true;
        run->written = true;
        to_kone(w, r);
        return;
    case KD_LEDGER_DONE:
        kd_wm_ledger_duplicate("done");
        kd_log(KD_LOG_INFO, &lc,
               "job ended before (%s); producing its recorded result again, "
               "not calling",
               kd_outcome_name(f->outcome));
        reproduce(w, r, f);
        return;
    case KD_LEDGER_AMBIGUOUS:
        kd_wm_ledger_duplicate("ambiguous");
        r->claimed = true;
        kd_run_finish(run, KD_OUTCOME_UNKNOWN, KD_FAIL_FINAL, "ambiguous",
                      "the call may have been placed: attempt %d was written to KONE by %s, "
                      "which stopped before KONE's answer was recorded; not called again "
                      "(ledger.ambiguous=unknown)",
                      f->attempt, f->worker);
        kd_log(KD_LOG_WARN, &lc, "outcome unknown: %s", run->error_message);
        finish_result(w, r);
        return;
    case KD_LEDGER_BUSY:
        if (!r->busy_until) {
            kd_wm_ledger_duplicate("inflight");
            kd_log(KD_LOG_INFO, &lc,
                   "another delivery of this job is being worked on; "
                   "waiting for its outcome");
        }
        if (w->stopping) {
            r->nack = true;
            settle(w, r);
            return;
        }
        busy_wait(w, r);
        return;
    case KD_LEDGER_FAILED:
        kd_log(KD_LOG_WARN, &lc, "the call ledger did not answer; job handed back, not called");
        r->nack = true;
        settle(w, r);
        return;
    }
}

/* A job another delivery held: ask the ledger again (at shutdown: hand it back). */
static void busy_due(kd_worker *w, wk_run *r)
{
    if (w->stopping) {
        r->nack = true;
        settle(w, r);
        return;
    }
    kd_ledger_claim(w->ledger, &r->run, on_claimed, r);
}

static void serve_busy(kd_worker *w)
{
    serve_parked(w, &w->busy, w->stopping, busy_due);
}

static void on_delivery(kd_worker *w, const kd_delivery *d)
{
    kd_err err;
    kd_err_clear(&err);
    if (w->stopping) {
        kd_amqp_nack(w->amqp, d->delivery_tag, d->epoch, true, &err);
        return;
    }
    wk_run *r = run_new(w);
    if (!r) {
        /* GCOVR_EXCL_START: allocation failure */
        kd_error("out of memory for a delivery; handing it back");
        kd_amqp_nack(w->amqp, d->delivery_tag, d->epoch, true, &err);
        return;
        /* GCOVR_EXCL_STOP */
    }
    kd_run *run = &r->run;
    r->owner = w;
    w->inflight++;
    run->delivery_tag = d->delivery_tag;
    run->channel_epoch = d->epoch;
    run->redelivered = d->redelivered || d->delivery_count > 0;
    run->attempt = d->kd.attempt > 0 ? d->kd.attempt : 1;
    run->requeues = d->kd.requeues;
    run->replayed = d->kd.replayed_ms > 0;
    run->received_us = kd_now_us();
    r->first_seen_ms = d->kd.first_seen_ms > 0 ? d->kd.first_seen_ms : run->received_us / 1000;

    int rc = kd_job_decode(d->body, d->len, w->default_ttl_ms, &run->job, &err);
    kd_wm_job_received(run);
    kd_log_ctx ctx = run_ctx(run);
    if (rc == KD_ERR_DECODE) {
        kd_log(KD_LOG_ERROR, &ctx,
               "undecodable message (%zu bytes, content type '%s'): %s; moved to the "
               "dead-letter queue",
               d->len, d->content_type, err.msg);
        kd_run_finish(run, KD_OUTCOME_REJECTED, KD_FAIL_UNDECODABLE, "undecodable", "%s", err.msg);
        dead_letter_undecodable(w, r, d, err.msg);
        return;
    }
    if (rc) {
        kd_log(KD_LOG_WARN, &ctx, "invalid job: %s", err.msg);
        kd_run_finish(run, KD_OUTCOME_REJECTED, KD_FAIL_FINAL, "invalid_job", "%s", err.msg);
        produce_result(w, r);
        return;
    }
    run->job_valid = true;
    if (w->max_age_ms > 0 && kd_job_cap_deadline(&run->job, w->max_age_ms, run->received_us / 1000))
        kd_log(KD_LOG_DEBUG, &ctx, "deadline capped to %lld ms after creation (job.max_age_ms)",
               (long long)w->max_age_ms);
    r->delivery_count = d->delivery_count;
    /* With the ledger, the limit is checked once the ledger said the job needs a new call:
     * a job that ended before (its result refused by Kafka each time) or whose call is
     * followed must not be parked as failed. */
    if (!w->ledger && w->max_deliveries > 0 && d->delivery_count >= w->max_deliveries) {
        park_delivery_limit(w, r, d->delivery_count);
        return;
    }
    if (run->job.deadline <= run->received_us / 1000) {
        kd_log(KD_LOG_INFO, &ctx, "job expired before attempt %d could run (deadline %lld ms ago)",
               run->attempt, (long long)(run->received_us / 1000 - run->job.deadline));
        /* the last error says why it waited (a held group's mode, an open circuit) */
        kd_run_finish(run, KD_OUTCOME_EXPIRED, KD_FAIL_FINAL, "expired",
                      "deadline passed before attempt %d was made%s%s%s", run->attempt,
                      d->kd.last_error[0] ? " (last error " : "", d->kd.last_error,
                      d->kd.last_error[0] ? ")" : "");
        produce_result(w, r);
        return;
    }
    if (w->ledger) {
        kd_ledger_claim(w->ledger, run, on_claimed, r);
        return;
    }
    kd_kone_submit(w->kone, run);
}

/* Heartbeat for /healthz, gauges and readiness for /readyz, and the periodic snapshot
 * to Kafka: once per turn of the loop, also while waiting to reconnect. */
static void metrics_turn(kd_worker *w)
{
    kd_wm_turn(&(kd_wm_state){
        .inflight = w->inflight,
        .undelivered = kd_kafka_undelivered(w->kafka),
        .amqp_consuming = w->amqp && kd_amqp_consuming(w->amqp),
        /* paused for the ledger is not Kafka's fault */
        .kafka_ok = kd_kafka_usable(w->kafka) &&
                    !(w->paused && w->pause_why && strstr(w->pause_why, "Kafka")),
        .ledger_down = w->ledger && !kd_ledger_up(w->ledger),
        .kone_ready = w->kone && kd_kone_ready(w->kone),
    });
    kd_wm_publish(w->kafka, w->id);
}

/* Waits up to wait_ms for something to do: a frame from RabbitMQ, the answer of the ledger's
 * batch in flight, or a hand-over from the KONE thread (its eventfd). Without the ledger the
 * loop only waited on RabbitMQ's socket; with it, each job crosses two commits, and waiting
 * out the RabbitMQ timeout before reading a commit would add milliseconds to every job. */
static void wait_io(kd_worker *w, int wait_ms)
{
    w->amqp_due = true;
    if (kd_amqp_buffered(w->amqp) || kd_ledger_buffered(w->ledger))
        return; /* rabbitmq-c or libpq's TLS holds bytes already: no wait */
    struct pollfd p[3];
    int n = 0;
    p[n++] = (struct pollfd){.fd = kd_amqp_fd(w->amqp), .events = POLLIN};
    int pg = kd_ledger_wait_fd(w->ledger);
    if (pg >= 0)
        p[n++] = (struct pollfd){.fd = pg, .events = POLLIN};
    if (w->wake_fd >= 0)
        p[n++] = (struct pollfd){.fd = w->wake_fd, .events = POLLIN};
    int ready = poll(p, n, wait_ms);
    if (ready > 0) {
        /* Woken by one socket: the others are not read this turn. Asking rabbitmq-c for a
         * frame on a silent socket is a recv that fails EAGAIN and a poll of its own, and
         * libpq's read another recv: at full load the loop wakes once or twice a job, and
         * those were a third of its system calls (issue 17). */
        w->amqp_due = p[0].revents != 0;
        if (pg >= 0 && !p[1].revents)
            kd_ledger_quiet(w->ledger);
    }
    if (ready > 0 && w->wake_fd >= 0 && (p[n - 1].revents & POLLIN)) {
        uint64_t v;
        if (read(w->wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
            /* GCOVR_EXCL_START: the loop is the only reader, after poll said readable */
            kd_debug("reading the wake-up eventfd: %s", kd_strerror(errno));
        /* GCOVR_EXCL_STOP */
    }
}

/* The acks settled this turn go out together (shared/src/amqp_acks.c). Those lost with the
 * connection were counted as acked: the broker delivers their jobs again and the ledger
 * answers them from their recorded outcome (or, without it, they run again). */
static void flush_acks(kd_worker *w)
{
    kd_err err;
    kd_err_clear(&err);
    int lost = 0;
    if (w->amqp && kd_amqp_flush_acks(w->amqp, &lost, &err)) {
        kd_warn("%d acks not sent, the broker will redeliver their jobs: %s", lost, err.msg);
        w->n_dropped += (uint64_t)lost;
    }
}

/* The main loop's wait while jobs are in flight, when an eventfd wakes it (kd_worker_run) */
#define WK_TICK_INFLIGHT_MS 50

/* Deliveries taken in one turn at most (what rabbitmq-c has read already): a bound so that
 * Kafka's reports and the ledger's answers are served between clumps. */
#define TURN_DELIVERIES 64

/* RabbitMQ's socket is read when the wait found it readable, and at least this often
 * (rabbitmq-c's heartbeats are sent and checked only while it is asked for frames) */
#define AMQP_ASK_EVERY_MS 500

/* One turn of the loop: one wait on the sockets, then everything that became due. */
static void turn(kd_worker *w, int wait_ms)
{
    kd_err err;
    kd_err_clear(&err);
    if (w->amqp) {
        kd_delivery d;
        /* messages waiting for room in Kafka's queue: wait on its delivery reports instead */
        bool pq = pq_waiting(w);
        wait_io(w, pq ? 0 : wait_ms);
        /* Every delivery rabbitmq-c already holds, before the ledger's turn: RabbitMQ hands
         * paced jobs over in clumps, and their claims then go to PostgreSQL as one batch (one
         * commit) instead of one batch each, the first four of them taking every slot of the
         * ledger's pipeline while the rest wait (docs/performance.md, issue 17). */
        int rc = 0;
        /* a silent socket is still asked now and then: rabbitmq-c sends its heartbeats and
         * notices the broker's absence only while it is asked for frames */
        int64_t now_ms = kd_mono_us() / 1000;
        if (w->amqp_due || now_ms - w->amqp_asked_ms >= AMQP_ASK_EVERY_MS) {
            w->amqp_asked_ms = now_ms;
            int n = 0;
            do {
                rc = kd_amqp_consume_next(w->amqp, 0, &d, &err);
                if (rc == 1)
                    on_delivery(w, &d);
            } while (rc == 1 && ++n < TURN_DELIVERIES && w->amqp && kd_amqp_buffered(w->amqp));
        }
        serve_side_events(w);
        if (rc < 0)
            conn_lost(w, err.msg);
        kd_kafka_poll(w->kafka, pq ? (wait_ms < 20 ? wait_ms : 20) : 0);
    } else {
        kd_kafka_poll(w->kafka, wait_ms);
    }
    atomic_store(&w->woken, false); /* before taking the lists: see wake() */
    serve_produce_queue(w);
    serve_lists(w);
    if (w->ledger) {
        serve_busy(w);
        serve_remote(w);
        kd_ledger_turn(w->ledger);
    }
    flush_acks(w);
    flow_control(w);
    metrics_turn(w);
}

static void amqp_reconnect_wait(kd_worker *w, int64_t *backoff_ms,
                                const volatile sig_atomic_t *stop)
{
    /* Keep serving Kafka while waiting, so results of jobs in flight still settle. */
    int64_t until = kd_mono_us() + *backoff_ms * 1000;
    while (!*stop && kd_mono_us() < until)
        turn(w, 50);
    *backoff_ms = *backoff_ms * 2 > 10000 ? 10000 : *backoff_ms * 2;
}

/* The KONE client's hooks: its metrics (the client itself knows no catalogue). */
_Static_assert(KD_KONE_STATUS_ERROR == KD_WM_STATUS_ERROR &&
                   KD_KONE_STATUS_TIMEOUT == KD_WM_STATUS_TIMEOUT,
               "the client's statuses without an answer are the catalogue's");
_Static_assert((int)KD_KONE_CIRCUIT_CLOSED == (int)KD_WM_CIRCUIT_CLOSED &&
                   (int)KD_KONE_CIRCUIT_HALF_OPEN == (int)KD_WM_CIRCUIT_HALF_OPEN &&
                   (int)KD_KONE_CIRCUIT_OPEN == (int)KD_WM_CIRCUIT_OPEN,
               "one numbering of circuit states");
static void kone_api_request_hook(const char *call_type, int status, int64_t rtt_us, void *arg)
{
    (void)arg;
    kd_wm_api_request(call_type, status, rtt_us);
}
static void kone_token_hook(int http_status, int64_t rtt_us, int64_t expires_at_s, void *arg)
{
    (void)arg;
    kd_wm_token_refresh(http_status, rtt_us, expires_at_s);
}
static void kone_connections_hook(int n, void *arg)
{
    (void)arg;
    kd_wm_ws_connections(n);
}
static void kone_reconnect_hook(void *arg)
{
    (void)arg;
    kd_wm_ws_reconnect();
}
static void kone_protocol_error_hook(int code, void *arg)
{
    (void)arg;
    kd_wm_ws_protocol_error(code);
}
static void kone_circuit_hook(const char *building, kd_kone_circuit from, kd_kone_circuit to,
                              void *arg)
{
    (void)arg;
    kd_wm_circuit_change(building, (kd_wm_circuit)from, (kd_wm_circuit)to);
}
static void kone_rate_wait_hook(const char *building, void *arg)
{
    (void)arg;
    kd_wm_rate_limit_wait(building);
}
static void kone_concurrency_hook(const char *building, int limit, void *arg)
{
    (void)arg;
    kd_wm_concurrency_limit(building, limit);
}
static void kone_local_reject_hook(const char *reason, void *arg)
{
    (void)arg;
    kd_wm_kone_local_reject(reason);
}
static void kone_unvalidated_hook(void *arg)
{
    (void)arg;
    kd_wm_kone_unvalidated();
}
static const kd_kone_metrics kone_metrics = {
    .api_request = kone_api_request_hook,
    .token_refresh = kone_token_hook,
    .ws_connections = kone_connections_hook,
    .ws_reconnect = kone_reconnect_hook,
    .ws_protocol_error = kone_protocol_error_hook,
    .circuit_change = kone_circuit_hook,
    .rate_limit_wait = kone_rate_wait_hook,
    .concurrency_limit = kone_concurrency_hook,
    .local_reject = kone_local_reject_hook,
    .unvalidated = kone_unvalidated_hook,
};

static int ledger_open(kd_worker *w, const kd_config *cfg, kd_err *err)
{
    /* the ledger's hooks: its metrics */
    kd_ledger_hooks h = {kd_wm_ledger_up, kd_wm_ledger_op, kd_wm_ledger_commit, kd_wm_ledger_rows};
    if (kd_ledger_open(&w->ledger, cfg, w->id, &h, err))
        return -1;
    kd_wm_ledger_enabled(w->ledger != NULL);
    if (!w->ledger)
        kd_warn("ledger.url=none: running WITHOUT the call ledger. A job can then reach KONE "
                "twice: when it is redelivered after a crash or a lost connection, when its "
                "result cannot be produced to Kafka, when a worker is stopped while following "
                "a call, and when the same job is published twice (docs/failure-handling.md)");
    return 0;
}

int kd_worker_new(kd_worker **out, const kd_config *cfg, kd_err *err)
{
    kd_worker *w = calloc(1, sizeof *w);
    if (!w)
        /* GCOVR_EXCL_START: allocation failure */
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    /* GCOVR_EXCL_STOP */
    w->cfg = cfg;
    pthread_mutex_init(&w->lock, NULL);
    pthread_mutex_init(&w->pq_lock, NULL);
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->wake_fd < 0)
        /* GCOVR_EXCL_START: eventfd fails only with EMFILE, ENFILE or ENOMEM */
        kd_warn("no eventfd (%s): the main loop notices hand-overs and Kafka's reports within 2 ms "
                "instead of at once",
                kd_strerror(errno));
    /* GCOVR_EXCL_STOP */
    const char *id = kd_cfg_str(cfg, KD_CFG_WORKER_ID);
    if (*id) {
        kd_str_copy(w->id, sizeof w->id, id);
    } else {
        char host[64] = "worker";
        gethostname(host, sizeof host - 1);
        snprintf(w->id, sizeof w->id, "%s-%d", host, (int)getpid());
    }
    kd_log_set_instance(w->id); /* kd.worker on every line from here: logs of replicas part */
    w->topic_results = kd_cfg_str(cfg, KD_CFG_KAFKA_TOPIC_RESULTS);
    w->topic_events = kd_cfg_str(cfg, KD_CFG_KAFKA_TOPIC_EVENTS);
    w->rng = (uint64_t)kd_now_us() ^ ((uint64_t)getpid() << 32);
    kd_amqp_topology topo;
    kd_limits lim;
    /* settings that could hold a delivery past RabbitMQ's consumer_timeout are refused */
    if (kd_limits_check(cfg, err) || kd_limits_compute(cfg, &lim, err))
        goto fail;
    /* a bad certificate file is a config error now, not a reconnect loop later (kd_tls.h);
     * Kafka's files are checked when its producer is made, below */
    if (kd_tls_check_files(cfg, KD_CFG_AMQP_CA_FILE, KD_CFG_AMQP_CERT_FILE, KD_CFG_AMQP_KEY_FILE,
                           err))
        goto fail;
    w->max_age_ms = lim.job_max_age_ms;
    w->inflight_limit = kd_cfg_int(cfg, KD_CFG_WORKER_INFLIGHT);
    w->default_ttl_ms = kd_cfg_int(cfg, KD_CFG_JOB_DEFAULT_TTL_MS);
    w->drain_ms = kd_cfg_int(cfg, KD_CFG_WORKER_DRAIN_MS);
    w->max_deliveries = kd_cfg_int(cfg, KD_CFG_WORKER_MAX_DELIVERIES);
    w->max_undelivered = kd_cfg_int(cfg, KD_CFG_KAFKA_MAX_UNDELIVERED);
    if (kd_retry_policy_load(&w->policy, cfg, err) || kd_amqp_topology_load(&topo, cfg, err))
        goto fail;
    const char *timings = kd_cfg_str(cfg, KD_CFG_WORKER_TIMINGS_FILE);
    if (*timings && !(w->timings = fopen(timings, "a"))) {
        kd_err_set(err, KD_ERR_IO, "worker.timings_file: cannot open %s: %s", timings,
                   kd_strerror(errno));
        goto fail;
    }
    if (w->timings)
        setvbuf(w->timings, NULL, _IOFBF, 1 << 16);
    if (kd_rpub_init(&w->pub, (int)w->inflight_limit, on_copy_confirmed, w)) {
        /* GCOVR_EXCL_START: kd_rpub_init fails only when allocation fails */
        kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        goto fail;
        /* GCOVR_EXCL_STOP */
    }
    if (kd_kafka_producer_new(&w->kafka, cfg, on_delivery_report, w, err))
        goto fail;
    /* delivery reports wake the loop as the KONE thread's hand-overs do: see kd_worker_run */
    if (w->wake_fd >= 0 && kd_kafka_wake_fd(w->kafka, w->wake_fd, err))
        goto fail; /* GCOVR_EXCL_LINE: a producer always has its main queue */
    if (ledger_open(w, cfg, err))
        goto fail;
    kd_kone_hooks hooks = {.done = on_kone_done,
                           .call_event = on_kone_call_event,
                           .accepted = on_kone_accepted,
                           .metrics = kone_metrics,
                           .arg = w};
    if (kd_kone_start(&w->kone, cfg, &hooks, err))
        goto fail;
    if (w->ledger) /* cancels other workers ask of this one's KONE sessions */
        kd_ledger_on_cancel(w->ledger, on_cancel_asked, w);
    *out = w;
    return 0;
fail:
    kd_worker_free(w);
    return err ? err->code : KD_ERR_INTERNAL;
}

/* Graceful shutdown (SIGTERM): stop taking jobs, let in-flight ones finish for up to
 * worker.drain_ms, hand the rest back, then give results and copies already sent up to
 * KD_WORKER_SETTLE_GRACE_US to be confirmed so their jobs are acked. */
static void drain(kd_worker *w)
{
    kd_err err;
    kd_err_clear(&err);
    w->stopping = true;
    if (w->amqp && kd_amqp_consuming(w->amqp) && kd_amqp_consume_cancel(w->amqp, &err))
        conn_lost(w, err.msg);
    kd_info("draining %d in-flight jobs (up to %lld ms)", w->inflight, (long long)w->drain_ms);
    int64_t until = kd_mono_us() + w->drain_ms * 1000;
    while (w->inflight > 0 && kd_mono_us() < until)
        turn(w, 10);
    kd_kone_stop(w->kone); /* remaining runs come back as "shutdown" hand-backs */
    w->kone = NULL;
    serve_lists(w);
    until = kd_mono_us() + KD_WORKER_SETTLE_GRACE_US;
    while (w->inflight > 0 && kd_mono_us() < until)
        turn(w, 10);
    /* releases and outcomes recorded, this worker's leases ended: the next worker takes
     * over written and accepted calls at once instead of after ledger.lease_ms */
    kd_ledger_drain(w->ledger, KD_WORKER_SETTLE_GRACE_US);
}

int kd_worker_run(kd_worker *w, volatile sig_atomic_t *stop)
{
    kd_info("worker %s started (retry: %d attempts, backoff %lld..%lld ms over %d tiers)", w->id,
            w->policy.max_attempts, (long long)w->policy.base_ms, (long long)w->policy.cap_ms,
            w->policy.n_tiers);
    int64_t backoff_ms = 100;
    int rc = 0;
    kd_err err;
    kd_err_clear(&err);
    while (!*stop) {
        if (!w->amqp) {
            if (amqp_open(w, &err)) {
                kd_warn("RabbitMQ unavailable, retrying in %lld ms: %s", (long long)backoff_ms,
                        err.msg);
                amqp_reconnect_wait(w, &backoff_ms, stop);
                continue;
            }
            backoff_ms = 100;
        }
        /* Everything a job in flight waits for wakes the loop: RabbitMQ's frames (its
         * socket), the ledger's answers (PostgreSQL's socket, or libpq's buffer), the KONE
         * thread's hand-overs and Kafka's delivery reports (the eventfd). What is left are
         * the timers of the turn (a busy job's recheck at 250 ms, the ledger's reconnect),
         * which a longer wait serves late by at most the wait. Without the eventfd the loop
         * looks every 2 ms (issue 17: that tick was 500 wake-ups a second under load). */
        turn(w, w->inflight == 0 ? 100 : w->wake_fd >= 0 ? WK_TICK_INFLIGHT_MS : 2);
        if (kd_ledger_fatal(w->ledger)) {
            /* refused at a first connection that came after the start: as at the start */
            kd_error("cannot go on: %s", kd_ledger_fatal(w->ledger));
            rc = 2;
            break;
        }
    }
    drain(w);
    /* the tail ("N handed back, M unsettled") is read by tests/integration/it_fault_sigterm.sh */
    kd_info("worker %s stopped: %llu acked (%llu succeeded, %llu rejected, %llu failed of "
            "which %llu dead-lettered, %llu expired; %llu sent to retry, %llu undecodable "
            "dead-lettered), %llu left to the broker with a lost connection, %llu handed back, "
            "%d unsettled",
            w->id, (unsigned long long)w->n_acked,
            (unsigned long long)w->n_by_outcome[KD_OUTCOME_SUCCEEDED],
            (unsigned long long)w->n_by_outcome[KD_OUTCOME_REJECTED],
            (unsigned long long)w->n_by_outcome[KD_OUTCOME_FAILED], (unsigned long long)w->n_dead,
            (unsigned long long)w->n_by_outcome[KD_OUTCOME_EXPIRED],
            (unsigned long long)w->n_retried, (unsigned long long)w->n_undecodable,
            (unsigned long long)w->n_dropped, (unsigned long long)w->n_nacked, w->inflight);
    return rc;
}

void kd_worker_free(kd_worker *w)
{
    if (!w)
        return;
    if (w->kone)
        kd_kone_stop(w->kone);
    serve_produce_queue(w);
    while (w->pq_head) { /* still no room: their jobs go back, their events are lost */
        wk_pending *p = w->pq_head;
        w->pq_head = p->next;
        pq_give_up(w, p, "shutting down with Kafka's local queue full");
    }
    w->pq_tail = NULL;
    serve_lists(w);
    w->stopping = true;
    serve_busy(w);      /* jobs waiting for another delivery: handed back */
    while (w->remote) { /* cancels waiting for another worker: handed back */
        wk_run *r = w->remote;
        w->remote = (wk_run *)r->run.next;
        if (r->claimed && w->ledger)
            kd_ledger_release(w->ledger, &r->run, false);
        r->nack = true;
        settle(w, r);
    }
    /* statements the ledger never committed answer now (claims failed, outcomes produced) */
    kd_ledger_close(w->ledger);
    w->ledger = NULL;
    /* Copies still unconfirmed count as failed: their jobs go back to the queue. */
    kd_rpub_fail_all(&w->pub);
    if (w->kafka) /* flushes (bounded), purges the rest: their reports hand jobs back */
        kd_kafka_destroy(w->kafka);
    serve_lists(w);
    if (w->amqp)
        kd_amqp_close(w->amqp);
    while (w->accepted) {
        wk_accept *a = w->accepted;
        w->accepted = a->next;
        free(a);
    }
    KD_SLIST_FREE(w->spare, spare_next);
    kd_rpub_free(&w->pub);
    if (w->timings)
        fclose(w->timings);
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    pthread_mutex_destroy(&w->lock);
    pthread_mutex_destroy(&w->pq_lock);
    free(w);
}
