/* The worker's KONE client against the real kone-sim binary (docs/kone-sim.md): every row of
 * the simulator's rejection table that a job can reach, tracking with transfers, hold_open,
 * delete, a simulator restart (tokens and sessions gone), connections closed by the server's
 * age limit mid-call, and keep-alive against the idle limit.
 *
 * kone-sim is looked up next to this test binary (both are built into the same directory);
 * without it every test is skipped. A throwaway self-signed certificate for 127.0.0.1 is
 * made with OpenSSL at start (in a child process) and trusted through kone.ca_file:
 * verification stays on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kd_config.h"
#include "kd_log.h"
#include "kd_run.h"
#include "kone.h"

extern char **environ;

#define B951 "building:9990000951"
#define B952 "building:9990000952"

static struct {
    char bin[512], src[512];
    char dir[64], cert[96], key[96], log[96];
    int port;
    pid_t pid;
    bool have;
} sim;

/* Runs in a child process, so that OpenSSL state it leaves behind is not counted against
 * the client under ASan; failures exit non-zero. */
static void make_cert(const char *cert_path, const char *key_path)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    if (!pk)
        _exit(2);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pk);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"kone-sim-test",
                               -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name,
                                            "IP:127.0.0.1,DNS:localhost");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    e = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    if (X509_sign(x, pk, EVP_sha256()) <= 0)
        _exit(2);
    FILE *f = fopen(cert_path, "w");
    if (!f)
        _exit(2);
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(key_path, "w");
    if (!f)
        _exit(2);
    PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(fd, (struct sockaddr *)&a, &l)) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Starts kone-sim with extra flags (NULL-terminated), stderr to sim.log. */
static void sim_start(const char *extra1, const char *extra2)
{
    char port[32], cert[128], key[128], bld[600], cli[600];
    snprintf(port, sizeof port, "--sim-port=%d", sim.port);
    snprintf(cert, sizeof cert, "--sim-cert=%s", sim.cert);
    snprintf(key, sizeof key, "--sim-key=%s", sim.key);
    snprintf(bld, sizeof bld, "--sim-buildings=%s/sim/buildings.json", sim.src);
    snprintf(cli, sizeof cli, "--sim-clients=%s/sim/clients.json", sim.src);
    char *argv[] = {sim.bin, port, cert, key, bld, cli, "--sim-speed=20", "--log-level=info",
                    (char *)extra1, (char *)extra2, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, sim.log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawn(&sim.pid, sim.bin, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    assert_int_equal(rc, 0);
    for (int i = 0; i < 500 && !port_open(sim.port); i++)
        usleep(10000);
    assert_true(port_open(sim.port));
}

static void sim_stop(void)
{
    if (sim.pid > 0) {
        kill(sim.pid, SIGTERM);
        int st;
        waitpid(sim.pid, &st, 0);
        sim.pid = 0;
    }
}

static int count_in_log(const char *needle)
{
    FILE *f = fopen(sim.log, "r");
    if (!f)
        return 0;
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* POSTs a JSON body to the simulator's control endpoint (/sim/...); returns the status. */
static long sim_post(const char *path, const char *body)
{
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[256];
    snprintf(url, sizeof url, "https://127.0.0.1:%d%s", sim.port, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    FILE *devnull = fopen("/dev/null", "w");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, sim.cert);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, devnull);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (devnull)
        fclose(devnull);
    return status;
}

/* ------------------------------------------------------------------ the client */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    char states[64][32];
    int64_t session_ids[64];
    bool has_mod[64];
    int64_t mod[64];
    int n;
} obs = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void on_done(kd_run *run, void *arg)
{
    (void)arg;
    (void)run;
    pthread_mutex_lock(&obs.mu);
    obs.done++;
    pthread_cond_broadcast(&obs.cv);
    pthread_mutex_unlock(&obs.mu);
}

static void on_event(kd_run *run, const kd_call_event *ev, void *arg)
{
    (void)arg;
    (void)run;
    pthread_mutex_lock(&obs.mu);
    if (obs.n < 64) {
        snprintf(obs.states[obs.n], 32, "%s", ev->state);
        obs.session_ids[obs.n] = ev->session_id;
        obs.has_mod[obs.n] = ev->has_modified_destination;
        obs.mod[obs.n] = ev->modified_destination;
        obs.n++;
    }
    pthread_cond_broadcast(&obs.cv);
    pthread_mutex_unlock(&obs.mu);
}

static bool wait_for(int *field, int n, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&obs.mu);
    while (*field < n)
        if (pthread_cond_timedwait(&obs.cv, &obs.mu, &ts))
            break;
    bool ok = *field >= n;
    pthread_mutex_unlock(&obs.mu);
    return ok;
}

typedef struct client {
    kd_config cfg;
    kd_kone *k;
} client;

static void client_start(client *c, const char *extra)
{
    char a[12][300];
    int n = 0;
    snprintf(a[n++], 300, "test");
    snprintf(a[n++], 300, "--kone-token-url=https://127.0.0.1:%d/api/v2/oauth2/token", sim.port);
    snprintf(a[n++], 300, "--kone-ws-url=wss://127.0.0.1:%d/stream-v2", sim.port);
    snprintf(a[n++], 300, "--kone-client-id=kd-dev");
    snprintf(a[n++], 300, "--kone-client-secret=kd-dev-secret-change-me");
    snprintf(a[n++], 300, "--kone-scope=callgiving/building:9990000951 "
                          "callgiving/building:9990000952");
    snprintf(a[n++], 300, "--kone-ca-file=%s", sim.cert);
    snprintf(a[n++], 300, "--kone-request-timeout-ms=5000");
    snprintf(a[n++], 300, "--kone-call-timeout-ms=2000");
    if (extra)
        snprintf(a[n++], 300, "%s", extra);
    char *argv[12];
    for (int i = 0; i < n; i++)
        argv[i] = a[i];
    kd_err err = {0};
    if (kd_config_load(&c->cfg, KD_PROG_WORKER, "test", n, argv, &err))
        fail_msg("config: %s", err.msg);
    pthread_mutex_lock(&obs.mu);
    obs.done = 0;
    obs.n = 0;
    pthread_mutex_unlock(&obs.mu);
    kd_kone_hooks hooks = {.done = on_done, .call_event = on_event, .arg = NULL};
    if (kd_kone_start(&c->k, &c->cfg, &hooks, &err))
        fail_msg("kd_kone_start: %s", err.msg);
    for (int i = 0; i < 500 && !kd_kone_ready(c->k); i++)
        usleep(10000);
    assert_true(kd_kone_ready(c->k));
}

static void client_stop(client *c)
{
    kd_kone_stop(c->k);
    kd_config_free(&c->cfg);
}

static kd_run *call(const char *building, const char *group, int64_t area, int64_t action,
                    int64_t destination, bool track)
{
    kd_run *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->job_valid = true;
    r->job.v = 1;
    snprintf(r->job.job_id, sizeof r->job.job_id, "sim-%lld-%lld-%lld", (long long)area,
             (long long)action, (long long)destination);
    r->job.op = KD_OP_CALL;
    snprintf(r->job.building_id, sizeof r->job.building_id, "%s", building);
    snprintf(r->job.group_id, sizeof r->job.group_id, "%s", group);
    r->job.created_at = kd_now_us() / 1000;
    r->job.deadline = r->job.created_at + 120000;
    r->job.area = area;
    r->job.action = action;
    if (destination) {
        r->job.has_destination = true;
        r->job.destination = destination;
    }
    r->job.has_terminal = true;
    r->job.terminal = 1;
    r->job.track = track;
    r->attempt = 1;
    return r;
}

static kd_run *run_one(client *c, kd_run *r, int ms)
{
    pthread_mutex_lock(&obs.mu);
    int want = obs.done + 1;
    pthread_mutex_unlock(&obs.mu);
    kd_kone_submit(c->k, r);
    if (!wait_for(&obs.done, want, ms))
        fail_msg("job %s: no outcome within %d ms", r->job.job_id, ms);
    return r;
}

static void expect(kd_run *r, kd_outcome o, const char *code, const char *msg_part)
{
    if (r->outcome != o || strcmp(r->error_code, code) != 0 ||
        (msg_part && !strstr(r->error_message, msg_part)))
        fail_msg("job %s: got %s '%s' (%s), expected %s '%s' (%s)", r->job.job_id,
                 kd_outcome_name(r->outcome), r->error_code, r->error_message,
                 kd_outcome_name(o), code, msg_part ? msg_part : "");
    free(r);
}

/* ------------------------------------------------------------------ tests */

static int setup(void **state)
{
    (void)state;
    if (!sim.have)
        return 0;
    sim.port = free_port();
    assert_true(sim.port > 0);
    unlink(sim.log);   /* each test reads only its own simulator log */
    sim_start(NULL, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sim_stop();
    return 0;
}

#define NEED_SIM()                                                                            \
    do {                                                                                      \
        if (!sim.have)                                                                        \
            skip();                                                                           \
    } while (0)

static void test_rejection_table(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, NULL);
    kd_run *r = run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000);
    assert_true(r->session_id > 0);
    assert_int_equal(r->kone_status, 201);
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);

    expect(run_one(&c, call(B951, "1", 1000, 200, 5000, false), 10000), KD_OUTCOME_REJECTED,
           "ignored_call", "Ignoring call, unknown call action: 200");
    expect(run_one(&c, call(B951, "1", 1000, 0, 5000, false), 10000), KD_OUTCOME_REJECTED,
           "ignored_call", "UNDEFINED");
    expect(run_one(&c, call(B951, "1", 1000, 4, 5000, false), 10000), KD_OUTCOME_REJECTED,
           "ignored_call", "disabled call action: 4");
    expect(run_one(&c, call(B951, "1", 1000, 2002, 0, false), 10000), KD_OUTCOME_REJECTED,
           "INVALID_DIRECTION", NULL);
    kd_run *d = call(B951, "1", 1000, 2, 5000, false);
    d->job.has_delay = true;
    d->job.delay = 31;
    expect(run_one(&c, d, 10000), KD_OUTCOME_REJECTED, "400", "Invalid json payload");
    expect(run_one(&c, call(B951, "1", 3000, 2, 3000, false), 10000), KD_OUTCOME_REJECTED,
           "SAME_SOURCE_AND_DEST_FLOOR", NULL);
    expect(run_one(&c, call(B951, "1", 1000, 2, 1010, false), 10000), KD_OUTCOME_REJECTED,
           "SAME_SOURCE_AND_DEST_FLOOR", NULL);
    expect(run_one(&c, call(B951, "1", 1000, 2, 99000, false), 10000), KD_OUTCOME_REJECTED,
           "ignored_call", "unable to resolve destination: area:99000");
    expect(run_one(&c, call(B951, "1", 1000, 2, 0, false), 10000), KD_OUTCOME_REJECTED,
           "ignored_call", "destination not defined");
    expect(run_one(&c, call(B951, "1", 98000, 2, 5000, false), 10000), KD_OUTCOME_REJECTED,
           "ignored_call", "unable to resolve area: area:98000");
    expect(run_one(&c, call("building:9990000999", "1", 1000, 2, 5000, false), 10000),
           KD_OUTCOME_REJECTED, "404", "Building data not found");
    expect(run_one(&c, call(B951, "7", 1000, 2, 5000, false), 10000), KD_OUTCOME_REJECTED,
           "404", "Group data not found");
    expect(run_one(&c, call(B952, "1", 1000, 2, 3000, false), 10000), KD_OUTCOME_REJECTED,
           "ignored_call", "OSS");
    expect(run_one(&c, call(B951, "1", 9000, 2, 5000, false), 10000), KD_OUTCOME_REJECTED,
           "ignored_call", "area locked");
    kd_run *nl = call(B951, "1", 1000, 2, 5000, false);
    nl->job.n_allowed_lifts = 1;
    nl->job.allowed_lifts[0] = 1002010;
    expect(run_one(&c, nl, 10000), KD_OUTCOME_REJECTED, "NO_LIFT_AVAILABLE", NULL);
    /* site link down: 201 and nothing else */
    r = run_one(&c, call(B952, "2", 1000, 2, 3000, false), 10000);
    assert_int_equal(r->kone_status, 201);
    expect(r, KD_OUTCOME_FAILED, "1005", "link");

    kd_run *h = call(B951, "1", 0, 0, 0, false);
    h->job.op = KD_OP_HOLD_OPEN;
    h->job.lift_deck = 1001010;
    h->job.served_area = 5000;
    h->job.has_hard_time = true;
    h->job.hard_time = 2;
    h->job.has_soft_time = true;
    h->job.soft_time = 2;
    expect(run_one(&c, h, 10000), KD_OUTCOME_SUCCEEDED, "", NULL);
    client_stop(&c);
}

static void test_tracked_transfer(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, NULL);
    kd_run *r = run_one(&c, call(B951, "1", 3000, 2, 15000, true), 20000);
    int64_t sid = r->session_id;
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);
    pthread_mutex_lock(&obs.mu);
    const char *want[] = {"being_allocated", "being_served", "served_soon", "served"};
    int w = 0;
    for (int i = 0; i < obs.n; i++) {
        assert_int_equal(obs.session_ids[i], sid);
        assert_true(obs.has_mod[i]);
        assert_int_equal(obs.mod[i], 11000);
        if (w < 4 && !strcmp(obs.states[i], want[w]))
            w++;
    }
    assert_int_equal(w, 4);
    assert_string_equal(obs.states[obs.n - 1], "served");
    pthread_mutex_unlock(&obs.mu);
    client_stop(&c);
}

static void test_delete(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, NULL);
    kd_run *r = call(B951, "1", 1000, 2, 5000, true);
    r->job.has_delay = true;
    r->job.delay = 30;   /* 1.5 s at speed 20: still being allocated when the delete comes */
    kd_kone_submit(c.k, r);
    assert_true(wait_for(&obs.n, 1, 10000));
    pthread_mutex_lock(&obs.mu);
    int64_t sid = obs.session_ids[0];
    pthread_mutex_unlock(&obs.mu);
    kd_run *x = call(B951, "1", 0, 0, 0, false);
    x->job.op = KD_OP_CANCEL;
    x->job.session_id = sid;
    kd_kone_submit(c.k, x);
    assert_true(wait_for(&obs.done, 2, 10000));
    expect(x, KD_OUTCOME_SUCCEEDED, "", NULL);
    expect(r, KD_OUTCOME_REJECTED, "CALL_DELETED", NULL);
    client_stop(&c);
}

static void test_many_in_flight(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, "--kone-connections=3");
    /* KD_SIM_LOAD_N=5000 turns this into a small load test */
    int n = getenv("KD_SIM_LOAD_N") ? atoi(getenv("KD_SIM_LOAD_N")) : 40;
    if (n < 1)
        n = 40;
    kd_run **runs = calloc((size_t)n, sizeof *runs);
    assert_non_null(runs);
    int64_t t0 = kd_mono_us();
    for (int i = 0; i < n; i++) {   /* floors 1-4 to 5-7 (9000 is locked) */
        runs[i] = call(B951, "1", 1000 * (1 + i % 4), 2, 5000 + 1000 * (i % 3), i % 4 == 0);
        kd_kone_submit(c.k, runs[i]);
    }
    assert_true(wait_for(&obs.done, n, 60000 + n * 20));
    int64_t rtt_sum = 0;
    for (int i = 0; i < n; i++) {
        rtt_sum += runs[i]->kone_rtt_us;
        expect(runs[i], KD_OUTCOME_SUCCEEDED, "", NULL);
    }
    if (n > 40)
        fprintf(stderr, "%d calls in %.2f s, mean answer time %.2f ms\n", n,
                (double)(kd_mono_us() - t0) / 1e6, (double)rtt_sum / n / 1000.0);
    free(runs);
    assert_int_equal(count_in_log("opened client=kd-dev"), 3);   /* no connection per job */
    client_stop(&c);
}

static void test_sim_restart(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, "--kone-connections=1");
    expect(run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000), KD_OUTCOME_SUCCEEDED, "",
           NULL);
    /* tokens and sessions live in the simulator's memory only: a restart loses both */
    sim_stop();
    sim_start(NULL, NULL);
    expect(run_one(&c, call(B951, "1", 2000, 2, 6000, false), 15000), KD_OUTCOME_SUCCEEDED, "",
           NULL);
    assert_true(kd_kone_ready(c.k));
    client_stop(&c);
}

static void test_server_closes_mid_call(void **state)
{
    (void)state;
    NEED_SIM();
    sim_stop();
    /* every connection closed by the server after 2 s; the model at speed 2, so the call
     * below (6 s delay, 5 floors of travel) lives through several closes */
    sim_start("--sim-max-conn-s=2", "--sim-speed=2");
    client c;
    client_start(&c, "--kone-connections=1");
    kd_run *r = call(B951, "1", 6000, 2, 1000, true);
    r->job.has_delay = true;
    r->job.delay = 6;
    r = run_one(&c, r, 30000);
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);
    pthread_mutex_lock(&obs.mu);
    const char *want[] = {"being_allocated", "being_served", "served_soon", "served"};
    int w = 0;
    for (int i = 0; i < obs.n; i++)
        if (w < 4 && !strcmp(obs.states[i], want[w]))
            w++;
    assert_int_equal(w, 4);
    pthread_mutex_unlock(&obs.mu);
    assert_true(count_in_log("Maximum connection duration reached") >= 2);
    assert_true(count_in_log("session taken over") + count_in_log("opened client=kd-dev") >= 3);
    client_stop(&c);
}

static void test_keepalive(void **state)
{
    (void)state;
    NEED_SIM();
    sim_stop();
    sim_start("--sim-idle-timeout-s=2", NULL);
    client c;
    client_start(&c, "--kone-keepalive-s=1");
    for (int i = 0; i < 300 && count_in_log("opened client=kd-dev") < 2; i++)
        usleep(10000);   /* both connections of the default pool */
    int opened = count_in_log("opened client=kd-dev");
    assert_int_equal(opened, 2);
    sleep(5);
    assert_int_equal(count_in_log("Idle timeout"), 0);
    assert_int_equal(count_in_log("opened client=kd-dev"), opened);
    expect(run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000), KD_OUTCOME_SUCCEEDED, "",
           NULL);
    client_stop(&c);
}

static void test_faults(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, "--kone-connections=2");

    /* call errors: 429 and 500 are transient */
    assert_int_equal(sim_post("/sim/faults", "{\"call_error\":{\"share\":1,\"status\":429}}"),
                     200);
    kd_run *r = run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000);
    assert_int_equal(r->kone_status, 429);
    expect(r, KD_OUTCOME_FAILED, "429", NULL);
    assert_int_equal(sim_post("/sim/faults", "{\"call_error\":{\"share\":1,\"status\":500}}"),
                     200);
    expect(run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000), KD_OUTCOME_FAILED, "500",
           NULL);
    assert_int_equal(sim_post("/sim/faults", "{\"call_error\":null}"), 200);

    /* latency: measured in kone_rtt_us */
    assert_int_equal(sim_post("/sim/faults", "{\"latency_ms\":300}"), 200);
    r = run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000);
    assert_true(r->kone_rtt_us >= 300000);
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);
    assert_int_equal(sim_post("/sim/faults", "{\"latency_ms\":0}"), 200);

    /* a dropped connection (no close frame) in the middle of a tracked call */
    r = call(B951, "1", 1000, 2, 8000, true);
    r->job.has_delay = true;
    r->job.delay = 20;   /* 1 s at speed 20 */
    kd_kone_submit(c.k, r);
    assert_true(wait_for(&obs.n, 1, 10000));
    pthread_mutex_lock(&obs.mu);
    int want = obs.done + 1;
    pthread_mutex_unlock(&obs.mu);
    assert_int_equal(sim_post("/sim/drop-connections", NULL), 200);
    assert_true(wait_for(&obs.done, want, 20000));
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);

    /* an outage: connections dropped and upgrades refused (503). Jobs wait, then fail
     * transient when no connection comes within kone.request_timeout_ms (5 s); once the
     * simulator takes connections again the client is back on its own. */
    assert_int_equal(sim_post("/sim/faults", "{\"refuse_upgrades\":true}"), 200);
    assert_int_equal(sim_post("/sim/drop-connections", NULL), 200);
    for (int i = 0; i < 200 && kd_kone_ready(c.k); i++)
        usleep(10000);
    assert_false(kd_kone_ready(c.k));
    expect(run_one(&c, call(B951, "1", 1000, 2, 5000, false), 15000), KD_OUTCOME_FAILED,
           "no_connection", NULL);
    kd_run *w = call(B951, "1", 2000, 2, 5000, false);   /* waits through the end of it */
    pthread_mutex_lock(&obs.mu);
    want = obs.done + 1;
    pthread_mutex_unlock(&obs.mu);
    kd_kone_submit(c.k, w);
    usleep(500000);
    assert_int_equal(sim_post("/sim/faults", "{\"refuse_upgrades\":false}"), 200);
    assert_true(wait_for(&obs.done, want, 15000));
    expect(w, KD_OUTCOME_SUCCEEDED, "", NULL);
    assert_true(kd_kone_ready(c.k));
    client_stop(&c);

    /* short-lived tokens: refreshed before they lapse (margin capped at half the life) */
    assert_int_equal(sim_post("/sim/faults", "{\"token_ttl_s\":4}"), 200);
    int fetched = count_in_log("oauth2/token 200");
    client_start(&c, "--kone-connections=1");
    sleep(5);
    assert_true(count_in_log("oauth2/token 200") >= fetched + 3);
    /* the token endpoint down: the token held still serves; a reconnect still works */
    assert_int_equal(sim_post("/sim/faults", "{\"token_ttl_s\":0,\"token_down\":true}"), 200);
    expect(run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000), KD_OUTCOME_SUCCEEDED, "",
           NULL);
    assert_int_equal(sim_post("/sim/faults", "{\"token_down\":false}"), 200);
    client_stop(&c);

    /* random drops: every job gets exactly one outcome, transient when it failed (frames
     * written into a dropped connection are never executed and never answered), and the
     * client keeps going */
    assert_int_equal(sim_post("/sim/faults", "{\"drop_probability\":0.03,\"seed\":7}"), 200);
    client_start(&c, "--kone-connections=2");
    enum { N = 60 };
    kd_run *runs[N];
    for (int i = 0; i < N; i++) {
        runs[i] = call(B951, "1", 1000 * (1 + i % 4), 2, 5000 + 1000 * (i % 3), false);
        kd_kone_submit(c.k, runs[i]);
    }
    assert_true(wait_for(&obs.done, N, 60000));
    for (int i = 0; i < N; i++) {
        kd_run *x = runs[i];
        bool fine = x->outcome == KD_OUTCOME_SUCCEEDED ||
                    (x->outcome == KD_OUTCOME_FAILED && x->failure == KD_FAIL_TRANSIENT &&
                     (!strcmp(x->error_code, "timeout") || !strcmp(x->error_code, "result_lost") ||
                      !strcmp(x->error_code, "no_connection") ||
                      !strcmp(x->error_code, "session_lost")));
        if (!fine || getenv("KD_TEST_VERBOSE"))
            fprintf(stderr, "drop run %d: %s %s (%s)\n", i, kd_outcome_name(x->outcome),
                    x->error_code, x->error_message);
        assert_true(fine);
        free(x);
    }
    assert_int_equal(sim_post("/sim/faults", "{\"drop_probability\":0}"), 200);
    expect(run_one(&c, call(B951, "1", 1000, 2, 5000, false), 15000), KD_OUTCOME_SUCCEEDED, "",
           NULL);
    assert_int_equal(sim_post("/sim/faults/reset", NULL), 200);
    client_stop(&c);
}

int main(int argc, char **argv)
{
    (void)argc;
    kd_log_init("test", getenv("KD_TEST_LOG") ? getenv("KD_TEST_LOG") : "error");
    char self[512];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        snprintf(sim.bin, sizeof sim.bin, "%s/kone-sim", dirname(self));
    } else {
        snprintf(sim.bin, sizeof sim.bin, "%s", argv[0]);
    }
    const char *src = getenv("KD_SRC_DIR");
    if (src) {
        snprintf(sim.src, sizeof sim.src, "%s", src);
    } else {   /* this file is tests/unit/ of the source tree */
        char here[512];
        snprintf(here, sizeof here, "%s", __FILE__);
        snprintf(sim.src, sizeof sim.src, "%s/../..", dirname(here));
    }
    sim.have = access(sim.bin, X_OK) == 0;
    if (!sim.have)
        fprintf(stderr, "kone-sim not built next to this test (%s): skipping\n", sim.bin);
    snprintf(sim.dir, sizeof sim.dir, "/tmp/kd-kone-sim-XXXXXX");
    if (!mkdtemp(sim.dir))
        return 1;
    snprintf(sim.cert, sizeof sim.cert, "%s/cert.pem", sim.dir);
    snprintf(sim.key, sizeof sim.key, "%s/key.pem", sim.dir);
    snprintf(sim.log, sizeof sim.log, "%s/sim.log", sim.dir);
    if (sim.have) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            make_cert(sim.cert, sim.key);
            _exit(0);
        }
        int st = 1;
        if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "could not make the test certificate\n");
            return 1;
        }
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rejection_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tracked_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sim_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_closes_mid_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_faults, setup, teardown),
    };
    if (getenv("KD_TEST_FILTER"))
        cmocka_set_test_filter(getenv("KD_TEST_FILTER"));
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (getenv("KD_KEEP_SIM_LOG"))
        fprintf(stderr, "sim log kept in %s\n", sim.log);
    else {
        unlink(sim.log);
        unlink(sim.cert);
        unlink(sim.key);
        rmdir(sim.dir);
    }
    return rc;
}
