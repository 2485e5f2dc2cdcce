/* test_kafka.c: the producer against librdkafka's mock cluster (rdkafka_mock.h).
 *
 * The mock cluster is owned by a separate, unused librdkafka handle; the producer under
 * test reaches it through kafka.brokers = the mock's bootstrap list, so it is configured
 * exactly as in production (idempotence, acks=all, message.timeout.ms=0). The mock is a
 * test double for the client's side of the protocol, not a broker: real-Kafka behaviour is
 * covered by the integration tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "../../shared/src/kafka_test.h"
#include "kd_kafka.h"
#include "kd_log.h"
#include "kd_run.h"

#define TOPIC "kone.call.results"
#define NBROKERS 3
#define NPARTS 4

typedef struct fixture {
    rd_kafka_t *mock_owner;
    rd_kafka_mock_cluster_t *mc;
    kd_config cfg;
} fixture;

/* What the delivery callback saw. */
typedef struct reports {
    int n;
    int errors;
    int last_err;
    int off_thread; /* callbacks run on a thread other than `owner` */
    pthread_t owner;
    int *seen; /* seen[i]: reports for the message whose opaque is &ids[i] */
    int *ids;
    int nids;
} reports;

static void on_dr(void *opaque, int err_code, const char *errstr, void *arg)
{
    reports *r = arg;
    assert_non_null(errstr);
    r->n++;
    if (err_code) {
        r->errors++;
        r->last_err = err_code;
    }
    if (!pthread_equal(pthread_self(), r->owner))
        r->off_thread++;
    int *id = opaque;
    if (id >= r->ids && id < r->ids + r->nids)
        r->seen[id - r->ids]++;
}

static void reports_init(reports *r, int n)
{
    memset(r, 0, sizeof *r);
    r->owner = pthread_self();
    r->nids = n;
    r->ids = calloc((size_t)n, sizeof *r->ids);
    r->seen = calloc((size_t)n, sizeof *r->seen);
    assert_non_null(r->ids);
    assert_non_null(r->seen);
    for (int i = 0; i < n; i++)
        r->ids[i] = i;
}

static void reports_free(reports *r)
{
    free(r->ids);
    free(r->seen);
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    (void)level;
    (void)fac;
    (void)buf;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    char why[256];
    f->mock_owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    assert_non_null(f->mock_owner);
    f->mc = rd_kafka_mock_cluster_new(f->mock_owner, NBROKERS);
    assert_non_null(f->mc);
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, TOPIC, NPARTS, NBROKERS), 0);

    char *argv[] = {"test_kafka", NULL};
    kd_err err = {0};
    assert_int_equal(kd_config_load(&f->cfg, KD_PROG_WORKER, "test_kafka", 1, argv, &err), 0);
    assert_int_equal(
        kd_config_set(&f->cfg, KD_CFG_KAFKA_BROKERS, rd_kafka_mock_cluster_bootstraps(f->mc), NULL),
        0);
    /* the mock cluster speaks plaintext only (this also logs the INSECURE warning) */
    assert_int_equal(kd_config_set(&f->cfg, KD_CFG_KAFKA_SECURITY_PROTOCOL, "plaintext", NULL), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kd_config_free(&f->cfg);
    rd_kafka_mock_cluster_destroy(f->mc);
    rd_kafka_destroy(f->mock_owner);
    free(f);
    return 0;
}

static void all_brokers(fixture *f, bool up)
{
    for (int b = 1; b <= NBROKERS; b++) {
        rd_kafka_resp_err_t e =
            up ? rd_kafka_mock_broker_set_up(f->mc, b) : rd_kafka_mock_broker_set_down(f->mc, b);
        assert_int_equal(e, 0);
    }
}

/* Polls until `want` reports arrived or timeout_ms passed. */
static void poll_until(kd_kafka *k, reports *r, int want, int timeout_ms)
{
    int64_t end = kd_mono_us() + (int64_t)timeout_ms * 1000;
    while (r->n < want && kd_mono_us() < end)
        kd_kafka_poll(k, 50);
}

static void produce_n(kd_kafka *k, reports *r, int from, int to)
{
    for (int i = from; i < to; i++) {
        char key[32], val[64];
        snprintf(key, sizeof key, "building:%d", i % 10);
        int n = snprintf(val, sizeof val, "message %d", i);
        kd_err err = {0};
        int rc = kd_kafka_produce(k, TOPIC, key, val, (size_t)n, &r->ids[i], &err);
        if (rc)
            fail_msg("produce %d: %s", i, err.msg);
    }
}

/* Reads the topic back from the mock and checks each payload arrived once, and that the
 * messages of one key sit in one partition in the order they were produced. */
static void check_topic(fixture *f, int n)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char why[256];
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers",
                                       rd_kafka_mock_cluster_bootstraps(f->mc), why, sizeof why),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", "check", why, sizeof why), 0);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    assert_non_null(c);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(NPARTS);
    for (int p = 0; p < NPARTS; p++)
        rd_kafka_topic_partition_list_add(l, TOPIC, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(c, l), 0);
    rd_kafka_topic_partition_list_destroy(l);

    int *count = calloc((size_t)n, sizeof *count);
    int last[10], part[10];
    for (int b = 0; b < 10; b++)
        last[b] = -1, part[b] = -1;
    int got = 0;
    int64_t end = kd_mono_us() + 20 * 1000000LL;
    while (got < n && kd_mono_us() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m)
            continue;
        if (!m->err) {
            char buf[64] = {0};
            memcpy(buf, m->payload, m->len < 63 ? m->len : 63);
            int i = -1, b = -1;
            assert_int_equal(sscanf(buf, "message %d", &i), 1);
            assert_int_equal(sscanf((const char *)m->key, "building:%d", &b), 1);
            assert_true(i >= 0 && i < n && b == i % 10);
            count[i]++;
            if (part[b] >= 0)
                assert_int_equal(part[b], m->partition); /* one building, one partition */
            part[b] = m->partition;
            assert_true(i > last[b]); /* in produce order */
            last[b] = i;
            got++;
        }
        rd_kafka_message_destroy(m);
    }
    assert_int_equal(got, n);
    for (int i = 0; i < n; i++)
        assert_int_equal(count[i], 1);
    free(count);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
}

static void test_delivers_all_with_opaque(void **state)
{
    fixture *f = *state;
    enum { N = 2000 };
    reports r;
    reports_init(&r, N);
    kd_kafka *k = NULL;
    kd_err err = {0};
    assert_int_equal(kd_kafka_producer_new(&k, &f->cfg, on_dr, &r, &err), 0);
    produce_n(k, &r, 0, N);
    poll_until(k, &r, N, 30000);
    assert_int_equal(r.n, N);
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.off_thread, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(r.seen[i], 1);
    assert_int_equal(kd_kafka_undelivered(k), 0);
    assert_int_equal(kd_kafka_flush(k, 1000), 0);
    kd_kafka_destroy(k);
    check_topic(f, N);
    reports_free(&r);
}

/* Short reconnect backoff so the outage tests do not wait out librdkafka's 10 s maximum. */
static const char *const fast_reconnect[] = {"reconnect.backoff.max.ms", "200", NULL};
static const char *const small_queue[] = {"queue.buffering.max.messages", "5",
                                          "reconnect.backoff.max.ms", "200", NULL};

/* message.timeout.ms=0: with every broker down nothing fails, it waits; once they are
 * back, everything is delivered. */
static void test_waits_out_broker_outage(void **state)
{
    fixture *f = *state;
    enum { N = 100 };
    reports r;
    reports_init(&r, N);
    kd_kafka *k = NULL;
    assert_int_equal(kd_kafka_producer_new_ex(&k, &f->cfg, on_dr, &r, fast_reconnect, NULL), 0);
    produce_n(k, &r, 0, 10);
    poll_until(k, &r, 10, 10000);
    assert_int_equal(r.n, 10);

    all_brokers(f, false);
    produce_n(k, &r, 10, N);
    poll_until(k, &r, N, 3000);
    assert_int_equal(r.n, 10); /* nothing delivered, nothing failed */
    assert_int_equal(r.errors, 0);
    assert_int_equal(kd_kafka_undelivered(k), N - 10);

    all_brokers(f, true);
    poll_until(k, &r, N, 60000);
    assert_int_equal(r.n, N);
    assert_int_equal(r.errors, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(r.seen[i], 1);
    assert_int_equal(kd_kafka_undelivered(k), 0);
    kd_kafka_destroy(k);
    reports_free(&r);
}

/* Polls until kd_kafka_usable(k) is `want` or timeout_ms passed. */
static bool poll_usable(kd_kafka *k, bool want, int timeout_ms)
{
    int64_t end = kd_mono_us() + (int64_t)timeout_ms * 1000;
    while (kd_kafka_usable(k) != want && kd_mono_us() < end)
        kd_kafka_poll(k, 50);
    return kd_kafka_usable(k) == want;
}

/* The worker's /readyz: an idle producer (nothing to deliver) notices all brokers going away
 * and, with no delivery to prove it, a broker coming back (from the statistics). */
static void test_usable_follows_brokers(void **state)
{
    fixture *f = *state;
    reports r;
    reports_init(&r, 1);
    kd_kafka *k = NULL;
    assert_int_equal(kd_kafka_producer_new_ex(&k, &f->cfg, on_dr, &r, fast_reconnect, NULL), 0);
    produce_n(k, &r, 0, 1);
    poll_until(k, &r, 1, 10000);
    assert_int_equal(r.n, 1);
    assert_true(kd_kafka_usable(k));

    all_brokers(f, false);
    assert_true(poll_usable(k, false, 30000));
    all_brokers(f, true);
    assert_true(poll_usable(k, true, 30000));
    assert_int_equal(kd_kafka_undelivered(k), 0);
    kd_kafka_destroy(k);
    reports_free(&r);
}

/* A full local queue: the producing thread (no other poller) polls to make room; with
 * Kafka away, it gives up with KD_ERR_IO after a bounded wait and loses nothing queued. */
static void test_queue_full(void **state)
{
    fixture *f = *state;
    enum { N = 300 };
    reports r;
    reports_init(&r, N);
    kd_kafka *k = NULL;
    kd_err err = {0};
    assert_int_equal(kd_kafka_producer_new_ex(&k, &f->cfg, on_dr, &r, small_queue, &err), 0);
    produce_n(k, &r, 0, N); /* 60 times the queue size, no explicit poll */
    poll_until(k, &r, N, 30000);
    assert_int_equal(r.n, N);
    assert_int_equal(r.errors, 0);

    reports_free(&r);
    reports_init(&r, N);
    all_brokers(f, false);
    produce_n(k, &r, 0, 5);
    int64_t t0 = kd_mono_us();
    int rc = kd_kafka_produce(k, TOPIC, "building:1", "x", 1, &r.ids[5], &err);
    int64_t waited_ms = (kd_mono_us() - t0) / 1000;
    assert_int_equal(rc, KD_ERR_IO);
    assert_non_null(strstr(err.msg, "queue full"));
    assert_true(waited_ms >= 1500 && waited_ms < 10000);
    assert_int_equal(kd_kafka_undelivered(k), 5);
    /* the non-blocking variant says "full" (one attempt: the waiting one can only give up
     * with KD_ERR_IO), queues nothing and fails nothing */
    bool full = false;
    assert_int_equal(
        kd_kafka_produce_nowait(k, TOPIC, "building:1", "x", 1, &r.ids[5], &full, &err), 0);
    assert_true(full);
    assert_int_equal(kd_kafka_undelivered(k), 5);

    all_brokers(f, true);
    poll_until(k, &r, 5, 60000);
    assert_int_equal(r.n, 5);
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.seen[5], 0); /* the refused one was never reported */
    assert_int_equal(kd_kafka_undelivered(k), 0);
    /* room again: the non-blocking variant produces */
    assert_int_equal(
        kd_kafka_produce_nowait(k, TOPIC, "building:1", "x", 1, &r.ids[6], &full, &err), 0);
    assert_false(full);
    poll_until(k, &r, 6, 60000);
    assert_int_equal(r.seen[6], 1);
    kd_kafka_destroy(k);
    reports_free(&r);
}

typedef struct producer_thread {
    kd_kafka *k;
    reports *r;
    int n;
    int failures;
} producer_thread;

static void *produce_thread(void *arg)
{
    producer_thread *p = arg;
    for (int i = 0; i < p->n; i++) {
        char key[32];
        snprintf(key, sizeof key, "building:%d", i % 10);
        if (kd_kafka_produce(p->k, TOPIC, key, "v", 1, &p->r->ids[i], NULL))
            p->failures++;
    }
    return NULL;
}

/* Another thread producing into a full queue must not serve delivery reports itself:
 * they stay on the thread that polls (the worker acks from them). */
static void test_reports_stay_on_poller_thread(void **state)
{
    fixture *f = *state;
    enum { N = 200 };
    reports r;
    reports_init(&r, N);
    kd_kafka *k = NULL;
    assert_int_equal(kd_kafka_producer_new_ex(&k, &f->cfg, on_dr, &r, small_queue, NULL), 0);
    kd_kafka_poll(k, 0); /* this thread is the poller */
    producer_thread p = {k, &r, N, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, produce_thread, &p), 0);
    poll_until(k, &r, N, 30000);
    pthread_join(t, NULL);
    assert_int_equal(p.failures, 0);
    assert_int_equal(r.n, N);
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.off_thread, 0);
    assert_int_equal(kd_kafka_undelivered(k), 0);
    kd_kafka_destroy(k);
    reports_free(&r);
}

/* A poller that sleeps on an eventfd (the worker's main loop) is woken for its delivery
 * reports (kd_kafka_wake_fd): every report here is served only after a wake-up, never by a
 * timed wait in librdkafka, so a missing wake-up fails the test at the first poll(2). */
static void test_reports_wake_the_eventfd(void **state)
{
    fixture *f = *state;
    enum { N = 300 };
    reports r;
    reports_init(&r, N);
    kd_kafka *k = NULL;
    kd_err err = {0};
    assert_int_equal(kd_kafka_producer_new(&k, &f->cfg, on_dr, &r, &err), 0);
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(efd >= 0);
    assert_int_equal(kd_kafka_wake_fd(k, efd, &err), 0);
    kd_kafka_poll(k, 0); /* this thread is the poller; nothing to report yet */
    produce_n(k, &r, 0, N);
    int wakes = 0;
    while (r.n < N) {
        struct pollfd p = {.fd = efd, .events = POLLIN};
        /* a liveness bound, not a timing check: the reports come within milliseconds */
        assert_int_equal(poll(&p, 1, 30000), 1);
        uint64_t v;
        assert_int_equal(read(efd, &v, sizeof v), (ssize_t)sizeof v);
        wakes++;
        kd_kafka_poll(k, 0);
    }
    assert_int_equal(r.n, N);
    assert_int_equal(r.errors, 0);
    assert_true(wakes >= 1 && wakes <= N);
    kd_kafka_destroy(k);
    close(efd);
    reports_free(&r);
}

/* The producer's connections to the brokers have Nagle's algorithm off (TCP_NODELAY). With
 * it on, librdkafka's segment-by-segment TLS writes waited for the broker's delayed ACK:
 * ~40 ms on every produce (kafka.c). Observed on the sockets themselves: each descriptor of
 * this process whose peer is one of the mock brokers is one of the producer's. */
static void test_broker_sockets_disable_nagle(void **state)
{
    fixture *f = *state;
    enum { N = 50 };
    reports r;
    reports_init(&r, N);
    kd_kafka *k = NULL;
    kd_err err = {0};
    assert_int_equal(kd_kafka_producer_new(&k, &f->cfg, on_dr, &r, &err), 0);
    produce_n(k, &r, 0, N);
    poll_until(k, &r, N, 30000);
    assert_int_equal(r.errors, 0);

    int ports[NBROKERS + 1], np = 0;
    const char *b = rd_kafka_mock_cluster_bootstraps(f->mc);
    for (const char *c = strchr(b, ':'); c && np < NBROKERS + 1; c = strchr(c + 1, ':'))
        ports[np++] = atoi(c + 1);
    assert_int_equal(np, NBROKERS);

    int found = 0, delayed = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        struct sockaddr_in peer;
        socklen_t pl = sizeof peer;
        int nodelay = 0;
        socklen_t nl = sizeof nodelay;
        if (e->d_name[0] == '.' || getpeername(fd, (struct sockaddr *)&peer, &pl) ||
            peer.sin_family != AF_INET || getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &nl))
            continue;
        for (int i = 0; i < np; i++)
            if (ntohs(peer.sin_port) == ports[i]) {
                found++;
                delayed += !nodelay;
            }
    }
    closedir(d);
    assert_true(found >= 1);
    assert_int_equal(delayed, 0);
    kd_kafka_destroy(k);
    reports_free(&r);
}

/* Destroy with Kafka away: bounded, and every message still gets its (failed) report so
 * the owner can release what the opaque points to. */
static void test_destroy_reports_undelivered(void **state)
{
    fixture *f = *state;
    reports r;
    reports_init(&r, 3);
    kd_kafka *k = NULL;
    assert_int_equal(kd_kafka_producer_new(&k, &f->cfg, on_dr, &r, NULL), 0);
    all_brokers(f, false);
    produce_n(k, &r, 0, 3);
    int64_t t0 = kd_mono_us();
    kd_kafka_destroy(k);
    assert_true(kd_mono_us() - t0 < 15 * 1000000LL);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.errors, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r.seen[i], 1);
    all_brokers(f, true);
    reports_free(&r);
}

static void test_bad_config_names_key_not_value(void **state)
{
    fixture *f = *state;
    kd_kafka *k = (kd_kafka *)1;
    kd_err err = {0};
    /* a bad value of ours is refused by the configuration table, naming the key */
    assert_int_equal(kd_config_set(&f->cfg, KD_CFG_KAFKA_LINGER_MS, "soon", &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "kafka.linger_ms"));

    const char *const bad[] = {"sasl.password", "hunter2-secret", "linger.ms", "S3CRET", NULL};
    int rc = kd_kafka_producer_new_ex(&k, &f->cfg, NULL, NULL, bad, &err);
    assert_int_equal(rc, KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "linger.ms"));
    assert_null(strstr(err.msg, "S3CRET"));

    assert_int_equal(kd_config_set(&f->cfg, KD_CFG_KAFKA_BROKERS, "", NULL), 0);
    assert_int_equal(kd_kafka_producer_new(&k, &f->cfg, NULL, NULL, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "kafka.brokers"));
}

/* A result larger than the producer's message.max.bytes: refused at once (KD_ERR_INVALID,
 * naming the topic), by both produce calls; a property list missing a value is a bug. */
static void test_oversized_message_refused(void **state)
{
    fixture *f = *state;
    kd_kafka *k = NULL;
    kd_err err = {0};
    const char *const odd[] = {"linger.ms", NULL};
    assert_int_equal(kd_kafka_producer_new_ex(&k, &f->cfg, NULL, NULL, odd, &err), KD_ERR_INTERNAL);
    assert_non_null(strstr(err.msg, "linger.ms without a value"));
    const char *const small[] = {"message.max.bytes", "1000", NULL};
    assert_int_equal(kd_kafka_producer_new_ex(&k, &f->cfg, NULL, NULL, small, &err), 0);
    static char big[4000];
    memset(big, 'x', sizeof big);
    assert_int_equal(kd_kafka_produce(k, TOPIC, "k", big, sizeof big, NULL, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "cannot produce to " TOPIC));
    bool full = true;
    memset(&err, 0, sizeof err);
    assert_int_equal(kd_kafka_produce_nowait(k, TOPIC, "k", big, sizeof big, NULL, &full, &err),
                     KD_ERR_INVALID);
    assert_false(full);
    assert_non_null(strstr(err.msg, TOPIC));
    assert_int_equal(kd_kafka_produce(k, TOPIC, "k", "small", 5, NULL, &err), 0);
    assert_int_equal(kd_kafka_flush(k, 10000), 0);
    kd_kafka_destroy(k);
}

/* The cluster refuses the idempotent producer its id for good: a fatal error, after which
 * the producer says it is unusable (the worker stops taking jobs and exits to restart). */
static void test_fatal_error_makes_unusable(void **state)
{
    fixture *f = *state;
    kd_kafka *k = NULL;
    kd_err err = {0};
    /* 22: InitProducerId, the Kafka API key (rdkafka_protocol.h, not installed) */
    rd_kafka_mock_push_request_errors(f->mc, 22, 1, RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED);
    assert_int_equal(kd_kafka_producer_new(&k, &f->cfg, NULL, NULL, &err), 0);
    for (int i = 0; i < 500 && kd_kafka_usable(k); i++)
        kd_kafka_poll(k, 20);
    assert_false(kd_kafka_usable(k));
    kd_kafka_destroy(k);
}

/* dr == NULL (tools): fire and forget still delivers. */
static void test_without_callback(void **state)
{
    fixture *f = *state;
    kd_kafka *k = NULL;
    assert_int_equal(kd_kafka_producer_new(&k, &f->cfg, NULL, NULL, NULL), 0);
    assert_int_equal(kd_kafka_produce(k, TOPIC, NULL, "no key", 6, NULL, NULL), 0);
    assert_int_equal(kd_kafka_produce(k, TOPIC, "", "empty key", 9, NULL, NULL), 0);
    assert_int_equal(kd_kafka_flush(k, 10000), 0);
    assert_int_equal(kd_kafka_undelivered(k), 0);
    kd_kafka_destroy(k);
    kd_kafka_destroy(NULL);
}

int main(void)
{
    kd_log_init("test_kafka", getenv("KD_TEST_LOG") ? getenv("KD_TEST_LOG") : "error");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_delivers_all_with_opaque, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waits_out_broker_outage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usable_follows_brokers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reports_stay_on_poller_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_sockets_disable_nagle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reports_wake_the_eventfd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_reports_undelivered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_config_names_key_not_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_without_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_message_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fatal_error_makes_unusable, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
