/* worker_core.c: the main loop of kone-worker.
 *
 * Invariants:
 *   - every delivery becomes exactly one kd_run, and every run ends in exactly one of:
 *     acked after Kafka confirmed its result, or nacked back to the queue (Kafka refused
 *     it, or the worker is shutting down before KONE answered);
 *   - acks only ever happen on this thread, with the channel epoch of the delivery: a
 *     delivery from a channel that has since died is never acked on the new one (the
 *     broker redelivers it, marked redelivered);
 *   - `inflight` counts runs between delivery and ack/nack; prefetch = worker.inflight,
 *     so the broker never gives us more than that.
 * The KONE thread hands runs back only through kd_kafka_produce (result produced, the
 * delivery report arrives here) or through the locked `handback` list (not produced).
 */
#include "worker_core.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_amqp.h"
#include "kd_event.h"
#include "kd_kafka.h"
#include "kd_log.h"
#include "kd_run.h"
#include "kone.h"

struct kd_worker {
    const kd_config *cfg;
    char id[128];
    int64_t inflight_limit;
    int64_t default_ttl_ms;
    int64_t drain_ms;
    const char *topic_results;
    const char *topic_events;

    kd_amqp *amqp;        /* NULL while disconnected */
    kd_kafka *kafka;
    kd_kone *kone;

    int inflight;

    pthread_mutex_t lock; /* guards handback */
    kd_run *handback;     /* runs the KONE thread could not produce a result for */

    /* counters for the final log line */
    uint64_t n_acked, n_nacked, n_by_outcome[KD_OUTCOME_EXPIRED + 1];
};

static kd_log_ctx run_ctx(const kd_run *run)
{
    return (kd_log_ctx){run->job.job_id, run->job.trace_id, run->job.building_id};
}

/* ---- results: encode and produce (called on the KONE thread and on this one) ---- */

static void push_handback(kd_worker *w, kd_run *run)
{
    pthread_mutex_lock(&w->lock);
    run->next = w->handback;
    w->handback = run;
    pthread_mutex_unlock(&w->lock);
}

static void produce_result(kd_worker *w, kd_run *run)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    kd_err err = {0};
    int rc = kd_event_encode_result(run, w->id, &sb, &err);
    if (!rc)
        rc = kd_kafka_produce(w->kafka, w->topic_results, run->job.building_id, sb.data, sb.size,
                              run, &err);
    msgpack_sbuffer_destroy(&sb);
    if (rc) {
        kd_log_ctx ctx = run_ctx(run);
        kd_log(KD_LOG_ERROR, &ctx, "result not produced, handing the job back: %s", err.msg);
        push_handback(w, run);
    }
}

static bool is_shutdown_handback(const kd_run *run)
{
    return run->outcome == KD_OUTCOME_FAILED && strcmp(run->error_code, "shutdown") == 0;
}

static void on_kone_done(kd_run *run, void *arg)
{
    kd_worker *w = arg;
    if (is_shutdown_handback(run)) {
        push_handback(w, run);
        return;
    }
    kd_log_ctx ctx = run_ctx(run);
    kd_log(run->outcome == KD_OUTCOME_SUCCEEDED ? KD_LOG_DEBUG : KD_LOG_INFO, &ctx,
           "job %s: %s%s%s", kd_op_name(run->job.op), kd_outcome_name(run->outcome),
           run->error_message[0] ? ": " : "", run->error_message);
    produce_result(w, run);
}

static void on_kone_call_event(kd_run *run, const kd_call_event *ev, void *arg)
{
    kd_worker *w = arg;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    kd_err err = {0};
    int rc = kd_event_encode_call(ev, w->id, &sb, &err);
    if (!rc)
        rc = kd_kafka_produce(w->kafka, w->topic_events, run->job.building_id, sb.data, sb.size,
                              NULL, &err);
    msgpack_sbuffer_destroy(&sb);
    if (rc) {
        kd_log_ctx ctx = run_ctx(run);
        kd_log(KD_LOG_ERROR, &ctx, "call event %s not produced: %s", ev->state, err.msg);
    }
}

/* ---- acks: delivery reports and hand-backs, both on this thread ---- */

static void settle(kd_worker *w, kd_run *run, bool ack)
{
    kd_err err = {0};
    int rc = 0;
    if (w->amqp)
        rc = ack ? kd_amqp_ack(w->amqp, run->delivery_tag, run->channel_epoch, &err)
                 : kd_amqp_nack(w->amqp, run->delivery_tag, run->channel_epoch, true, &err);
    if (rc) {
        /* The channel died under us: the broker redelivers the job. */
        kd_log_ctx ctx = run_ctx(run);
        kd_log(KD_LOG_WARN, &ctx, "%s failed, the broker will redeliver: %s",
               ack ? "ack" : "nack", err.msg);
    }
    if (ack) {
        w->n_acked++;
        if (run->outcome <= KD_OUTCOME_EXPIRED)
            w->n_by_outcome[run->outcome]++;
    } else {
        w->n_nacked++;
    }
    w->inflight--;
    free(run);
}

static void on_delivery_report(void *opaque, int err_code, const char *errstr, void *arg)
{
    kd_worker *w = arg;
    kd_run *run = opaque;
    if (!run)
        return; /* call events carry no delivery */
    if (err_code) {
        kd_log_ctx ctx = run_ctx(run);
        kd_log(KD_LOG_ERROR, &ctx, "Kafka refused the result (%s); handing the job back", errstr);
    }
    settle(w, run, err_code == 0);
}

static void drain_handback(kd_worker *w)
{
    pthread_mutex_lock(&w->lock);
    kd_run *list = w->handback;
    w->handback = NULL;
    pthread_mutex_unlock(&w->lock);
    while (list) {
        kd_run *next = list->next;
        settle(w, list, false);
        list = next;
    }
}

/* ---- deliveries ---- */

static void on_delivery(kd_worker *w, const kd_delivery *d)
{
    kd_run *run = calloc(1, sizeof *run);
    if (!run) {
        kd_error("out of memory for a delivery; handing it back");
        kd_err err = {0};
        kd_amqp_nack(w->amqp, d->delivery_tag, d->epoch, true, &err);
        return;
    }
    w->inflight++;
    run->delivery_tag = d->delivery_tag;
    run->channel_epoch = d->epoch;
    run->redelivered = d->redelivered;
    run->attempt = (int)d->delivery_count + 1;
    run->received_us = kd_now_us();

    kd_err err = {0};
    int rc = kd_job_decode(d->body, d->len, w->default_ttl_ms, &run->job, &err);
    kd_log_ctx ctx = run_ctx(run);
    if (rc == KD_ERR_DECODE) {
        kd_log(KD_LOG_ERROR, &ctx, "undecodable message (%zu bytes, content type '%s'): %s",
               d->len, d->content_type, err.msg);
        kd_run_finish(run, KD_OUTCOME_REJECTED, KD_FAIL_UNDECODABLE, "undecodable", "%s",
                      err.msg);
        produce_result(w, run);
        return;
    }
    if (rc) {
        kd_log(KD_LOG_WARN, &ctx, "invalid job: %s", err.msg);
        kd_run_finish(run, KD_OUTCOME_REJECTED, KD_FAIL_FINAL, "invalid_job", "%s", err.msg);
        produce_result(w, run);
        return;
    }
    run->job_valid = true;
    if (run->job.deadline <= run->received_us / 1000) {
        kd_log(KD_LOG_INFO, &ctx, "job expired before it could run (deadline %lld ms ago)",
               (long long)(run->received_us / 1000 - run->job.deadline));
        kd_run_finish(run, KD_OUTCOME_EXPIRED, KD_FAIL_FINAL, "expired",
                      "deadline passed before the call was made");
        produce_result(w, run);
        return;
    }
    kd_kone_submit(w->kone, run);
}

/* ---- connection management ---- */

static int amqp_open(kd_worker *w, kd_err *err)
{
    if (kd_amqp_connect(&w->amqp, w->cfg, err))
        return -1;
    if (kd_amqp_consume_start(w->amqp, (int)w->inflight_limit, err)) {
        kd_amqp_close(w->amqp);
        w->amqp = NULL;
        return -1;
    }
    kd_info("consuming %s (prefetch %lld)", kd_config_get(w->cfg, "amqp.queue"),
            (long long)w->inflight_limit);
    return 0;
}

static void amqp_reconnect_wait(kd_worker *w, int64_t *backoff_ms, volatile sig_atomic_t *stop)
{
    /* Keep serving Kafka while waiting, so results of jobs in flight still settle. */
    int64_t until = kd_mono_us() + *backoff_ms * 1000;
    while (!*stop && kd_mono_us() < until) {
        kd_kafka_poll(w->kafka, 50);
        drain_handback(w);
    }
    *backoff_ms = *backoff_ms * 2 > 10000 ? 10000 : *backoff_ms * 2;
}

int kd_worker_new(kd_worker **out, const kd_config *cfg, kd_err *err)
{
    kd_worker *w = calloc(1, sizeof *w);
    if (!w)
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    w->cfg = cfg;
    pthread_mutex_init(&w->lock, NULL);
    const char *id = kd_config_get(cfg, "worker.id");
    if (*id) {
        snprintf(w->id, sizeof w->id, "%s", id);
    } else {
        char host[64] = "worker";
        gethostname(host, sizeof host - 1);
        snprintf(w->id, sizeof w->id, "%s-%d", host, (int)getpid());
    }
    w->topic_results = kd_config_get(cfg, "kafka.topic_results");
    w->topic_events = kd_config_get(cfg, "kafka.topic_events");
    if (kd_config_int(cfg, "worker.inflight", 1, 65535, &w->inflight_limit, err) ||
        kd_config_int(cfg, "job.default_ttl_ms", 1, INT64_MAX / 2, &w->default_ttl_ms, err) ||
        kd_config_int(cfg, "worker.drain_ms", 0, 3600000, &w->drain_ms, err) ||
        kd_kafka_producer_new(&w->kafka, cfg, on_delivery_report, w, err))
        goto fail;
    kd_kone_hooks hooks = {.done = on_kone_done, .call_event = on_kone_call_event, .arg = w};
    if (kd_kone_start(&w->kone, cfg, &hooks, err))
        goto fail;
    *out = w;
    return 0;
fail:
    kd_worker_free(w);
    return err ? err->code : KD_ERR_INTERNAL;
}

/* Waits for in-flight jobs (up to worker.drain_ms), then hands the rest back. */
static void drain(kd_worker *w)
{
    kd_err err = {0};
    if (w->amqp && kd_amqp_consume_cancel(w->amqp, &err))
        kd_warn("cancelling the consumer failed: %s", err.msg);
    kd_info("draining %d in-flight jobs (up to %lld ms)", w->inflight, (long long)w->drain_ms);
    int64_t until = kd_mono_us() + w->drain_ms * 1000;
    while (w->inflight > 0 && kd_mono_us() < until) {
        kd_kafka_poll(w->kafka, 20);
        drain_handback(w);
        if (w->amqp) {
            kd_delivery d;
            /* serve heartbeats; a delivery racing the cancel goes straight back */
            if (kd_amqp_consume_next(w->amqp, 0, &d, &err) == 1)
                kd_amqp_nack(w->amqp, d.delivery_tag, d.epoch, true, &err);
        }
    }
    kd_kone_stop(w->kone); /* remaining runs come back as "shutdown" hand-backs */
    w->kone = NULL;
    drain_handback(w);
    /* Results already produced: wait for their reports so their jobs get acked. */
    while (w->inflight > 0 && kd_kafka_undelivered(w->kafka) > 0 &&
           kd_mono_us() < until + 5000000)
        kd_kafka_poll(w->kafka, 50);
}

int kd_worker_run(kd_worker *w, volatile sig_atomic_t *stop)
{
    kd_info("worker %s started", w->id);
    int64_t backoff_ms = 100;
    kd_err err = {0};
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
        kd_delivery d;
        /* Short waits while jobs are in flight so delivery reports are acked promptly. */
        int rc = kd_amqp_consume_next(w->amqp, w->inflight > 0 ? 2 : 100, &d, &err);
        if (rc == 1)
            on_delivery(w, &d);
        else if (rc < 0) {
            kd_warn("RabbitMQ connection lost (%s); %d jobs in flight will be redelivered",
                    err.msg, w->inflight);
            kd_amqp_close(w->amqp);
            w->amqp = NULL;
        }
        kd_kafka_poll(w->kafka, 0);
        drain_handback(w);
    }
    drain(w);
    kd_info("worker %s stopped: %llu acked (%llu succeeded, %llu rejected, %llu failed, "
            "%llu expired), %llu handed back, %d unsettled",
            w->id, (unsigned long long)w->n_acked,
            (unsigned long long)w->n_by_outcome[KD_OUTCOME_SUCCEEDED],
            (unsigned long long)w->n_by_outcome[KD_OUTCOME_REJECTED],
            (unsigned long long)w->n_by_outcome[KD_OUTCOME_FAILED],
            (unsigned long long)w->n_by_outcome[KD_OUTCOME_EXPIRED],
            (unsigned long long)w->n_nacked, w->inflight);
    return 0;
}

void kd_worker_free(kd_worker *w)
{
    if (!w)
        return;
    if (w->kone)
        kd_kone_stop(w->kone);
    drain_handback(w);
    if (w->kafka) {
        kd_kafka_flush(w->kafka, 5000);
        kd_kafka_destroy(w->kafka);
    }
    if (w->amqp)
        kd_amqp_close(w->amqp);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
