/* test_worker_kone_dns_sim: the KONE loop never blocks (issue 11, item 5), against the real
 * kone-sim.
 *
 * kone.ws_url names the simulator by host name (localhost), so the client resolves it on its
 * resolver thread (kone_dns.c). The resolution is replaced by one that can be held at a gate:
 * it lets the first resolution through (the connection opens), then holds the next one for as
 * long as the test wants, as a DNS server that stopped answering would. The next one comes when
 * the connection reaches kone.max_conn_age_s and its replacement needs the address again
 * (kone.dns_ttl_s has passed by then).
 *
 * Meanwhile the outcome hook produces every result into a real librdkafka producer whose
 * local queue is full (one message allowed; librdkafka's mock cluster with its broker down,
 * brought up again at the end so the producer closes at once): the hook uses
 * kd_kafka_produce_nowait, as the worker's does, and hands a message that finds the queue full
 * back to the test's main thread instead of waiting.
 *
 * While the resolution is held: jobs submitted on the open connection are answered (they
 * succeed), and timers fire (kone.rate_per_s 2 with a burst of 1 makes every job after the
 * first wait for a token that only the loop's timer releases). The resolution is checked to be
 * still held after the last outcome, so everything happened during the stall. Then it is let
 * go and the replacement connection takes over.
 *
 * A name that does not resolve fails the connection transiently (the slot backs off and asks
 * again; a job waiting for KONE ends no_connection).
 *
 * The name check still uses the host name: test_worker_kone_tls_sim (by_name) shows a
 * certificate for another name refused when the client connects to the resolved address.
 */
#include "kone_sim_fixture.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "../../shared/src/kafka_test.h"
#include "kd_kafka.h"
#include "kone_dns.h"

/* ------------------------------------------------------------------ the gated resolver */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls; /* resolutions started */
    bool hold; /* resolutions after the first wait while set */
    bool held; /* one is waiting at the gate now */
    char addr[64];
} gate = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static int gated_resolve(const char *host, char *addr, size_t len, char *why, size_t wlen)
{
    pthread_mutex_lock(&gate.mu);
    int n = ++gate.calls;
    while (n > 1 && gate.hold) {
        gate.held = true;
        pthread_cond_broadcast(&gate.cv);
        pthread_cond_wait(&gate.cv, &gate.mu);
    }
    gate.held = false;
    pthread_mutex_unlock(&gate.mu);
    int rc = kd_kone_dns_getaddrinfo(host, addr, len, why, wlen);
    pthread_mutex_lock(&gate.mu);
    if (!rc)
        snprintf(gate.addr, sizeof gate.addr, "%s", addr);
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    return rc;
}

/* Waits (up to ms) until pred holds under the gate's lock. */
static bool gate_wait(bool (*pred)(void), int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000 + 1;
    pthread_mutex_lock(&gate.mu);
    while (!pred())
        if (pthread_cond_timedwait(&gate.cv, &gate.mu, &ts))
            break;
    bool ok = pred();
    pthread_mutex_unlock(&gate.mu);
    return ok;
}

static bool is_held(void)
{
    return gate.held;
}

static bool second_done(void)
{
    return gate.calls >= 2 && !gate.held && !gate.hold;
}

/* ------------------------------------------------------------------ a full Kafka queue */

static struct {
    rd_kafka_t *mock_owner;
    rd_kafka_mock_cluster_t *mc;
    kd_kafka *kafka;
    pthread_mutex_t mu;
    int produced, full, errors; /* outcomes the hook tried to produce */
    kd_run *handed[16];         /* runs handed to the "main thread" (this test) */
    int n_handed;
} kq = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* The outcome hook, on the KONE loop: one produce attempt that never waits, as
 * worker_core.c's; a full queue hands the run over instead. */
static void on_done_kafka(kd_run *run, void *arg)
{
    (void)arg;
    bool full = false;
    kd_err err = {0};
    int rc = kd_kafka_produce_nowait(kq.kafka, "kone.call.results", run->job.building_id,
                                     run->job.job_id, strlen(run->job.job_id), NULL, &full, &err);
    pthread_mutex_lock(&kq.mu);
    if (rc)
        kq.errors++;
    else if (full && kq.n_handed < 16)
        kq.handed[kq.n_handed++] = run;
    else if (!full)
        kq.produced++;
    kq.full += full;
    pthread_mutex_unlock(&kq.mu);
    on_done(run, NULL); /* the fixture's count and signal */
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk, (void)level, (void)fac, (void)buf;
}

static void kafka_full_start(kd_config *cfg)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    char why[256];
    kq.mock_owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    assert_non_null(kq.mock_owner);
    kq.mc = rd_kafka_mock_cluster_new(kq.mock_owner, 1);
    assert_non_null(kq.mc);
    assert_int_equal(rd_kafka_mock_topic_create(kq.mc, "kone.call.results", 1, 1), 0);
    assert_int_equal(rd_kafka_mock_broker_set_down(kq.mc, 1), 0);

    kd_err err = {0};
    char *argv[] = {"test", NULL};
    assert_int_equal(kd_config_load(cfg, KD_PROG_WORKER, "test", 1, argv, &err), 0);
    assert_int_equal(
        kd_config_set(cfg, KD_CFG_KAFKA_BROKERS, rd_kafka_mock_cluster_bootstraps(kq.mc), NULL), 0);
    assert_int_equal(kd_config_set(cfg, KD_CFG_KAFKA_SECURITY_PROTOCOL, "plaintext", NULL), 0);
    static const char *const one[] = {"queue.buffering.max.messages", "1",
                                      "reconnect.backoff.max.ms", "200", NULL};
    if (kd_kafka_producer_new_ex(&kq.kafka, cfg, NULL, NULL, one, &err))
        fail_msg("producer: %s", err.msg);
    bool full = true;
    assert_int_equal(
        kd_kafka_produce_nowait(kq.kafka, "kone.call.results", NULL, "x", 1, NULL, &full, &err), 0);
    assert_false(full); /* the one message it holds, not delivered while the broker is down */
    assert_int_equal(
        kd_kafka_produce_nowait(kq.kafka, "kone.call.results", NULL, "y", 1, NULL, &full, &err), 0);
    assert_true(full); /* from now on the queue is full */
}

static void kafka_full_end(kd_config *cfg)
{
    assert_int_equal(rd_kafka_mock_broker_set_up(kq.mc, 1), 0);
    kd_kafka_destroy(kq.kafka); /* delivers its one message, then closes */
    rd_kafka_mock_cluster_destroy(kq.mc);
    rd_kafka_destroy(kq.mock_owner);
    kd_config_free(cfg);
}

/* ------------------------------------------------------------------ the tests */

/* The flags of a client of the test's kone-sim with kone.ws_url naming host; returns their
 * count (a[0] is the program name). */
static int base_args(char (*a)[300], const char *host)
{
    int n = 0;
    snprintf(a[n++], 300, "test");
    snprintf(a[n++], 300, "--kone-token-url=https://127.0.0.1:%d/api/v2/oauth2/token", sim.port);
    snprintf(a[n++], 300, "--kone-ws-url=wss://%s:%d/stream-v2", host, sim.port);
    snprintf(a[n++], 300, "--kone-client-id=kd-dev");
    snprintf(a[n++], 300, "--kone-client-secret=kd-dev-secret-change-me");
    snprintf(a[n++], 300, "--kone-scope=callgiving/building:9990000951");
    snprintf(a[n++], 300, "--kone-ca-file=%s", sim.cert);
    snprintf(a[n++], 300, "--kone-connections=1");
    return n;
}

static void test_loop_serves_while_dns_and_kafka_stall(void **state)
{
    (void)state;
    NEED_SIM();
    kd_config kcfg;
    kafka_full_start(&kcfg);

    pthread_mutex_lock(&gate.mu);
    gate.calls = 0;
    gate.hold = true;
    pthread_mutex_unlock(&gate.mu);
    kd_kone_dns_set_resolver(gated_resolve);

    client c;
    char a[16][300];
    int n = base_args(a, "localhost");
    snprintf(a[n++], 300, "--kone-dns-ttl-s=1");
    snprintf(a[n++], 300, "--kone-max-conn-age-s=5"); /* the replacement resolves again */
    snprintf(a[n++], 300, "--kone-rate-per-s=2");
    snprintf(a[n++], 300, "--kone-rate-burst=1");
    kd_err err = {0};
    char *argv[16];
    for (int i = 0; i < n; i++)
        argv[i] = a[i];
    if (kd_config_load(&c.cfg, KD_PROG_WORKER, "test", n, argv, &err))
        fail_msg("config: %s", err.msg);
    pthread_mutex_lock(&obs.mu);
    obs.done = 0;
    pthread_mutex_unlock(&obs.mu);
    kd_kone_hooks hooks = {.done = on_done_kafka, .call_event = on_event, .arg = NULL};
    if (kd_kone_start(&c.k, &c.cfg, &hooks, &err))
        fail_msg("kd_kone_start: %s", err.msg);
    for (int i = 0; i < 2000 && !kd_kone_ready(c.k); i++)
        usleep(10000);
    assert_true(kd_kone_ready(c.k));
    pthread_mutex_lock(&gate.mu);
    printf("    connected through the resolver: localhost -> %s\n", gate.addr);
    assert_int_equal(gate.calls, 1);
    pthread_mutex_unlock(&gate.mu);

    /* the connection reaches its age: the replacement's resolution is held */
    assert_true(gate_wait(is_held, 15000));
    printf("    a resolution is held; submitting jobs\n");

    enum { JOBS = 4 };
    pthread_mutex_lock(&obs.mu);
    int want = obs.done + JOBS;
    pthread_mutex_unlock(&obs.mu);
    kd_run *runs[JOBS];
    for (int i = 0; i < JOBS; i++) {
        runs[i] = call(B951, "1", 1000, 2, (2 + i) * 1000, false);
        snprintf(runs[i]->job.job_id, sizeof runs[i]->job.job_id, "dns-stall-%d", i);
        kd_kone_submit(c.k, runs[i]);
    }
    assert_true(wait_for(&obs.done, want, 20000));

    /* every outcome came while the resolution was still held */
    pthread_mutex_lock(&gate.mu);
    bool still_held = gate.held;
    pthread_mutex_unlock(&gate.mu);
    assert_true(still_held);
    for (int i = 0; i < JOBS; i++)
        if (runs[i]->outcome != KD_OUTCOME_SUCCEEDED)
            fail_msg("job %d: %s %s (%s)", i, kd_outcome_name(runs[i]->outcome),
                     runs[i]->error_code, runs[i]->error_message);
    /* the timer released the jobs that waited for a rate token */
    uint64_t waits = kd_kone_rate_limit_waits(c.k);
    printf("    %d jobs succeeded, %llu waited for a rate token (released by a timer)\n", JOBS,
           (unsigned long long)waits);
    assert_true(waits >= JOBS - 1);
    /* and every result found Kafka's queue full, and was handed over, not waited for */
    pthread_mutex_lock(&kq.mu);
    printf("    results: %d handed over (queue full), %d produced, %d errors\n", kq.n_handed,
           kq.produced, kq.errors);
    assert_int_equal(kq.full, JOBS);
    assert_int_equal(kq.n_handed, JOBS);
    assert_int_equal(kq.errors, 0);
    pthread_mutex_unlock(&kq.mu);

    /* DNS answers again: the replacement resolves and takes over; the client stays ready */
    pthread_mutex_lock(&gate.mu);
    gate.hold = false;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    assert_true(gate_wait(second_done, 10000));
    kd_run *r = run_one(&c, call(B951, "1", 1000, 2, 7000, false), 20000);
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);

    client_stop(&c);
    kd_kone_dns_set_resolver(NULL);
    for (int i = 0; i < JOBS; i++)
        free(runs[i]);
    kafka_full_end(&kcfg);
}

/* A name that does not resolve is a transient connection failure: the slot backs off and
 * asks again, a job waiting for KONE ends failed/transient no_connection. */
static int failing_resolve(const char *host, char *addr, size_t len, char *why, size_t wlen)
{
    (void)host, (void)addr, (void)len;
    pthread_mutex_lock(&gate.mu);
    gate.calls++;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    snprintf(why, wlen, "Name or service not known");
    return -1;
}

static bool asked_again(void)
{
    return gate.calls >= 2;
}

static void test_unresolvable_name_is_transient(void **state)
{
    (void)state;
    NEED_SIM();
    pthread_mutex_lock(&gate.mu);
    gate.calls = 0;
    pthread_mutex_unlock(&gate.mu);
    kd_kone_dns_set_resolver(failing_resolve);
    client c;
    char a[16][300];
    int n = base_args(a, "kone.invalid");
    snprintf(a[n++], 300, "--kone-request-timeout-ms=1000");
    client_launch(&c, a, n);
    kd_run *r = run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000);
    assert_int_equal(r->failure, KD_FAIL_TRANSIENT);
    expect(r, KD_OUTCOME_FAILED, "no_connection", NULL);
    assert_true(gate_wait(asked_again, 5000)); /* backed off, then asked again */
    assert_false(kd_kone_ready(c.k));
    client_stop(&c);
    kd_kone_dns_set_resolver(NULL);
}

KS_MAIN(cmocka_unit_test_setup_teardown(test_loop_serves_while_dns_and_kafka_stall, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unresolvable_name_is_transient, setup, teardown))
