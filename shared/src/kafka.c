/* kafka.c: the worker's Kafka producer (see kd_kafka.h).
 *
 * Why these settings: a result event is the durable record that lets the worker ack a
 * job, so nothing may be dropped quietly. enable.idempotence + acks=all make retries free
 * of duplicates and reordering per partition; message.timeout.ms=0 means librdkafka
 * retries a message until it is delivered, so an absent Kafka stalls the worker (its
 * in-flight limit fills, it stops taking jobs) instead of losing results. The key is the
 * building id: one building's events stay in one partition, in order.
 *
 * Threads: delivery reports and error callbacks run inside rd_kafka_poll(), and the worker
 * wants them on its AMQP thread (it acks from the callback). So one thread is "the poller":
 * the first that calls kd_kafka_poll(), or until then the thread that created the producer.
 * kd_kafka_produce() may be called from any thread; when librdkafka's local queue is full it
 * polls only if it runs on the poller (a single-threaded tool), other threads sleep and let
 * the poller free the queue. Either way it gives up with KD_ERR_IO after
 * KD_KAFKA_FULL_WAIT_MS. A thread that must never wait (the KONE event loop) calls
 * kd_kafka_produce_nowait() instead and hands a message that found the queue full to the
 * poller (worker_core.c).
 *
 * Usable (kd_kafka_usable, the worker's /readyz): librdkafka keeps retrying by itself and
 * never says a broker came back, only that all went away (the error callback's
 * _ALL_BROKERS_DOWN). So that error sets `brokers_down`, and two signs of a live broker clear
 * it: a successful delivery report, or, for an idle producer that has nothing to deliver,
 * the statistics (statistics.interval.ms) listing a broker in state UP. The statistics
 * are only parsed while the flag is set. A fatal error (idempotence broken) is final.
 *
 * socket.nagle.disable: librdkafka 2.0 (Debian 12) leaves Nagle's algorithm on and writes a
 * request over TLS one buffer segment at a time (a payload is often a segment of its own).
 * The first write goes out, the rest wait for its ACK, and the broker delays that ACK (40 ms
 * on Linux) while it waits for the rest of the request: every produce took ~40 ms longer, so
 * a job's result was acked ~40 ms later and one worker's rate was capped at ~620 jobs/s
 * (docs/performance.md). librdkafka's default is still false.
 *
 * Config values are never logged or put into errors: librdkafka's own error text for a
 * rejected property quotes the value, so errors name the property only.
 */
#include "kd_kafka.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "kd_log.h"
#include "kd_time.h"
#include "kafka_test.h"

#define KD_KAFKA_FULL_WAIT_MS 2000     /* produce: longest wait for room in the local queue */
#define KD_KAFKA_DESTROY_FLUSH_MS 5000 /* destroy: longest wait for outstanding deliveries */
#define KD_KAFKA_STATS_MS "2000"       /* statistics: how soon a returning broker is seen */

struct kd_kafka {
    rd_kafka_t *rk;
    kd_kafka_dr_fn dr;
    void *arg;
    pthread_t creator;     /* the poller until a kd_kafka_poll() call claims the role */
    atomic_int poll_claim; /* 0 unclaimed, 1 being claimed, 2 claimed: `poller` is set */
    pthread_t poller;
    atomic_bool brokers_down; /* _ALL_BROKERS_DOWN seen, no broker seen up since */
    atomic_bool fatal;        /* a fatal error: the producer is unusable for good */
};

/* ---- callbacks (run inside rd_kafka_poll / librdkafka threads) ---- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    kd_kafka *k = opaque;
    if (!m->err && atomic_exchange(&k->brokers_down, false))
        kd_info("kafka: a broker acknowledged a message: connected again");
    if (k->dr)
        k->dr(m->_private, (int)m->err, rd_kafka_err2str(m->err), k->arg);
}

static void on_error(rd_kafka_t *rk, int code, const char *reason, void *opaque)
{
    kd_kafka *k = opaque;
    if (code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        atomic_store(&k->brokers_down, true);
    if (code == RD_KAFKA_RESP_ERR__FATAL) {
        atomic_store(&k->fatal, true);
        char why[512];
        rd_kafka_resp_err_t fe = rd_kafka_fatal_error(rk, why, sizeof why);
        kd_error("kafka: fatal error %s: %s", rd_kafka_err2name(fe), why);
        return;
    }
    /* broker down, all brokers down, ...: librdkafka keeps retrying on its own */
    kd_warn("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)code), reason);
}

/* Statistics (every KD_KAFKA_STATS_MS): only looked at while all brokers were down, for a
 * broker in state UP. Returns 0: librdkafka frees the text. */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    kd_kafka *k = opaque;
    if (!atomic_load(&k->brokers_down))
        return 0;
    json_t *root = json_loadb(json, len, 0, NULL);
    const char *name;
    json_t *b;
    bool up = false;
    json_object_foreach(json_object_get(root, "brokers"), name, b)
    {
        const char *st = json_string_value(json_object_get(b, "state"));
        up = up || (st && strcmp(st, "UP") == 0);
    }
    json_decref(root);
    if (up && atomic_exchange(&k->brokers_down, false))
        kd_info("kafka: a broker is up: connected again");
    return 0;
}

/* librdkafka's internal log lines (syslog levels), routed into our JSON log. A FAIL line
 * repeats what on_error reports anyway, so it only shows at debug level. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    kd_log_level l = level <= 4 ? KD_LOG_WARN : level <= 6 ? KD_LOG_INFO : KD_LOG_DEBUG;
    if (strcmp(fac, "FAIL") == 0)
        l = KD_LOG_DEBUG;
    kd_log(l, NULL, "kafka %s: %s", fac, buf);
}

/* ---- construction ---- */

static int build_conf(rd_kafka_conf_t *conf, const kd_config *cfg, kd_err *err)
{
    int64_t linger = kd_cfg_int(cfg, KD_CFG_KAFKA_LINGER_MS);
    int rc;
    char linger_s[24], queue_s[24];
    snprintf(linger_s, sizeof linger_s, "%lld", (long long)linger);
    snprintf(queue_s, sizeof queue_s, "%lld",
             (long long)kd_cfg_int(cfg, KD_CFG_KAFKA_QUEUE_MAX_MESSAGES));
    const char *brokers = kd_cfg_str(cfg, KD_CFG_KAFKA_BROKERS);
    if (!brokers[0])
        return kd_err_set(err, KD_ERR_INVALID, "kafka.brokers: must not be empty");

    const char *props[][2] = {
        {"bootstrap.servers", brokers},
        {"client.id", cfg->prog_name ? cfg->prog_name : "kone-dispatch"},
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"socket.nagle.disable", "true"},
        {"message.timeout.ms", "0"},
        {"linger.ms", linger_s},
        {"queue.buffering.max.messages", queue_s},
        {"statistics.interval.ms", KD_KAFKA_STATS_MS},
    };
    for (size_t i = 0; i < sizeof props / sizeof props[0]; i++)
        if ((rc = kd_kafka_conf_set(conf, props[i][0], props[i][1], err)))
            return rc;
    if ((rc = kd_kafka_conf_security(conf, cfg, err)))
        return rc;
    /* kafka.compression: lz4 by default. librdkafka 2.0 writes a produce request one buffer
     * segment at a time, one SSL_write and so one TLS record each, and an uncompressed batch
     * has about one segment per message: 656 records for 600 jobs at full load, 9.4k
     * instructions a job. Compressed, the batch is one buffer: 27 records, and lz4 costs 1.1k a
     * job (callgrind, 2026-12-05). When the worker was slow a batch held one result and the
     * codec's set-up cost ~40k a job (docs/performance.md); at such rates CPU is idle. */
    return kd_kafka_conf_set(conf, "compression.codec", kd_cfg_str(cfg, KD_CFG_KAFKA_COMPRESSION),
                             err);
}

static int apply_extra(rd_kafka_conf_t *conf, const char *const *extra, kd_err *err)
{
    for (size_t i = 0; extra && extra[i]; i += 2) {
        if (!extra[i + 1])
            return kd_err_set(err, KD_ERR_INTERNAL, "kafka: property %s without a value", extra[i]);
        int rc = kd_kafka_conf_set(conf, extra[i], extra[i + 1], err);
        if (rc)
            return rc;
    }
    return 0;
}

void *kd_kafka_owner_new(size_t size, rd_kafka_conf_t **conf, kd_err *err)
{
    void *owner = calloc(1, size);
    *conf = rd_kafka_conf_new();
    if (!owner || !*conf) {
        /* GCOVR_EXCL_START: allocation failure (no test injects one) */
        free(owner);
        if (*conf)
            rd_kafka_conf_destroy(*conf);
        *conf = NULL;
        kd_err_set(err, KD_ERR_NOMEM, "kafka: out of memory");
        return NULL;
        /* GCOVR_EXCL_STOP */
    }
    return owner;
}

int kd_kafka_producer_new_ex(kd_kafka **out, const kd_config *cfg, kd_kafka_dr_fn dr, void *arg,
                             const char *const *extra_props, kd_err *err)
{
    *out = NULL;
    rd_kafka_conf_t *conf;
    kd_kafka *k = kd_kafka_owner_new(sizeof *k, &conf, err);
    if (!k)
        return KD_ERR_NOMEM; /* GCOVR_EXCL_LINE: allocation failure (no test injects one) */
    k->dr = dr;
    k->arg = arg;
    k->creator = pthread_self();
    int rc = build_conf(conf, cfg, err);
    if (!rc)
        rc = apply_extra(conf, extra_props, err);
    if (rc) {
        rd_kafka_conf_destroy(conf);
        free(k);
        return rc;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    k->rk = kd_kafka_client_new(RD_KAFKA_PRODUCER, conf, k, on_error, "producer", err);
    if (!k->rk) {
        /* GCOVR_EXCL_START: kd_kafka_conf_security checked what rd_kafka_new checks (TLS files) */
        free(k);
        return err ? err->code : KD_ERR_INVALID;
        /* GCOVR_EXCL_STOP */
    }
    *out = k;
    return 0;
}

rd_kafka_t *kd_kafka_client_new(int type, rd_kafka_conf_t *conf, void *opaque,
                                kd_kafka_error_fn on_error, const char *what, kd_err *err)
{
    rd_kafka_conf_set_opaque(conf, opaque);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    char why[512];
    rd_kafka_t *rk = rd_kafka_new((rd_kafka_type_t)type, conf, why, sizeof why);
    if (!rk) {
        /* GCOVR_EXCL_START: kd_kafka_conf_security checked what rd_kafka_new checks (TLS files) */
        /* rd_kafka_new failed before taking conf over */
        rd_kafka_conf_destroy(conf);
        kd_err_set(err, KD_ERR_INVALID, "kafka: cannot create the %s", what);
        /* GCOVR_EXCL_STOP */
    }
    return rk;
}

int kd_kafka_producer_new(kd_kafka **out, const kd_config *cfg, kd_kafka_dr_fn dr, void *arg,
                          kd_err *err)
{
    return kd_kafka_producer_new_ex(out, cfg, dr, arg, NULL, err);
}

/* ---- producing ---- */

static bool on_poller_thread(kd_kafka *k)
{
    int claim = atomic_load(&k->poll_claim);
    if (claim == 1)
        return false; /* a poller is being registered right now: not us */
    return pthread_equal(claim == 2 ? k->poller : k->creator, pthread_self());
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int produce_error(rd_kafka_resp_err_t e, const char *topic, kd_err *err)
{
    int code = (e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) ? KD_ERR_INVALID : KD_ERR_IO;
    return kd_err_set(err, code, "kafka: cannot produce to %s: %s", topic, rd_kafka_err2str(e));
}

static rd_kafka_resp_err_t produce_once(kd_kafka *k, const char *topic, const char *key,
                                        const void *buf, size_t len, void *opaque)
{
    /* no building (an undecodable job): no key, so librdkafka picks a random partition */
    size_t klen = key ? strlen(key) : 0;
    const char *kptr = klen ? key : NULL;
    return rd_kafka_producev(k->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(kptr, klen),
                             RD_KAFKA_V_VALUE((void *)buf, len),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(opaque),
                             RD_KAFKA_V_END);
}

int kd_kafka_produce_nowait(kd_kafka *k, const char *topic, const char *key, const void *buf,
                            size_t len, void *opaque, bool *full, kd_err *err)
{
    *full = false;
    rd_kafka_resp_err_t e = produce_once(k, topic, key, buf, len, opaque);
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        *full = true;
        return 0;
    }
    return e == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : produce_error(e, topic, err);
}

int kd_kafka_produce(kd_kafka *k, const char *topic, const char *key, const void *buf, size_t len,
                     void *opaque, kd_err *err)
{
    int64_t deadline = kd_mono_us() + (int64_t)KD_KAFKA_FULL_WAIT_MS * 1000;
    for (;;) {
        rd_kafka_resp_err_t e = produce_once(k, topic, key, buf, len, opaque);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            return produce_error(e, topic, err);
        if (kd_mono_us() >= deadline)
            return kd_err_set(err, KD_ERR_IO,
                              "kafka: local queue full for %d ms (%d undelivered): is Kafka "
                              "reachable?",
                              KD_KAFKA_FULL_WAIT_MS, rd_kafka_outq_len(k->rk));
        if (on_poller_thread(k))
            rd_kafka_poll(k->rk, 10);
        else
            sleep_ms(10);
    }
}

int kd_kafka_poll(kd_kafka *k, int timeout_ms)
{
    int expected = 0;
    if (atomic_load(&k->poll_claim) == 0 &&
        atomic_compare_exchange_strong(&k->poll_claim, &expected, 1)) {
        k->poller = pthread_self();
        atomic_store(&k->poll_claim, 2); /* publishes `poller` to producing threads */
    }
    return rd_kafka_poll(k->rk, timeout_ms);
}

int kd_kafka_wake_fd(kd_kafka *k, int efd, kd_err *err)
{
    /* an eventfd takes writes of exactly 8 bytes: the counter's increment, 1 */
    static const uint64_t one = 1;
    rd_kafka_queue_t *q = rd_kafka_queue_get_main(k->rk);
    if (!q)
        /* GCOVR_EXCL_START: a producer always has its main queue */
        return kd_err_set(err, KD_ERR_INTERNAL, "kafka: no main queue to watch");
    /* GCOVR_EXCL_STOP */
    /* librdkafka writes when it queues an event for the poller; the reader drains the
     * eventfd's counter, so many writes before one read cost one wake-up */
    rd_kafka_queue_io_event_enable(q, efd, &one, sizeof one);
    rd_kafka_queue_destroy(q); /* the reference only: the queue lives with the producer */
    return 0;
}

int kd_kafka_flush(kd_kafka *k, int timeout_ms)
{
    rd_kafka_resp_err_t e = rd_kafka_flush(k->rk, timeout_ms);
    return e == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : KD_ERR_TIMEOUT;
}

bool kd_kafka_usable(kd_kafka *k)
{
    return k && !atomic_load(&k->fatal) && !atomic_load(&k->brokers_down);
}

int kd_kafka_undelivered(kd_kafka *k)
{
    return rd_kafka_outq_len(k->rk);
}

/* Flushes for a bounded time; what is still queued then is purged, and its delivery
 * reports (with a purge error) are served so the owner can release what the opaques
 * point to: the callback must stay valid until destroy returns. */
void kd_kafka_destroy(kd_kafka *k)
{
    if (!k)
        return;
    if (rd_kafka_flush(k->rk, KD_KAFKA_DESTROY_FLUSH_MS) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kd_warn("kafka: %d messages not delivered after %d ms; dropping them on exit",
                rd_kafka_outq_len(k->rk), KD_KAFKA_DESTROY_FLUSH_MS);
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(k->rk, 1000); /* serves the purged messages' reports */
    }
    rd_kafka_destroy(k->rk);
    free(k);
}
