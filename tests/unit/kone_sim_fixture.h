/* kone_sim_fixture.h: the harness of the KONE client's tests against the real kone-sim
 * (test_worker_kone_sim.c, test_worker_kone_circuit_sim.c): kone-sim looked up next to the
 * test binary (every test skips without it), a throwaway certificate made in a child
 * process and trusted through kone.ca_file, a private simulator per test (setup/teardown)
 * on a free port with its log in a temporary directory, its /sim/ control endpoint, and a
 * client with hooks that count outcomes and record call events.
 *
 * Included by exactly one test file each; everything is static.
 */
#ifndef KD_TEST_KONE_SIM_FIXTURE_H
#define KD_TEST_KONE_SIM_FIXTURE_H

#define KS_UNUSED __attribute__((unused))

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
#include "kone_sim_proc.h"
#include "test_cert.h"

#define B951 "building:9990000951"
#define B952 "building:9990000952"

KS_UNUSED static int count_in_log(const char *needle)
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

static size_t ks_collect(char *ptr, size_t size, size_t n, void *arg)
{
    char *buf = arg;
    size_t have = strlen(buf), add = size * n;
    if (have + add < 4096) {
        memcpy(buf + have, ptr, add);
        buf[have + add] = '\0';
    }
    return size * n;
}

/* One request to the simulator's control endpoint (/sim/...): a POST of body (JSON) when it
 * is not NULL, else a GET; the answer's first 4 KiB in out. Returns the status (0: none). */
static long sim_http(const char *path, const char *body, char out[4096])
{
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[256];
    snprintf(url, sizeof url, "https://127.0.0.1:%d%s", sim.port, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    out[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, sim.cert);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ks_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

/* POSTs a JSON body to the simulator's control endpoint (/sim/...); returns the status. */
KS_UNUSED static long sim_post(const char *path, const char *body)
{
    char out[4096];
    return sim_http(path, body ? body : "", out);
}

/* How many lift-call-api-v2 requests kone-sim received so far (its call log's last_seq):
 * "not called" is counted where the call would land. -1 when the log cannot be read. */
KS_UNUSED static long sim_calls_received(void)
{
    char out[4096];
    long status = sim_http("/sim/calls?limit=1", NULL, out);
    const char *p = strstr(out, "\"last_seq\":");
    return status == 200 && p ? atol(p + 11) : -1;
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
    int protocol_errors[3]; /* the client's kone_ws_protocol_errors: codes 1002, 1007, 1009 */
} obs = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

KS_UNUSED static void on_done(kd_run *run, void *arg)
{
    (void)arg;
    (void)run;
    pthread_mutex_lock(&obs.mu);
    obs.done++;
    pthread_cond_broadcast(&obs.cv);
    pthread_mutex_unlock(&obs.mu);
}

KS_UNUSED static void on_protocol_error(int code, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&obs.mu);
    obs.protocol_errors[code == 1002 ? 0 : code == 1007 ? 1 : 2]++;
    pthread_mutex_unlock(&obs.mu);
}

/* How many connections the client closed for KONE's frames with this code (obs). */
KS_UNUSED static int protocol_errors(int code)
{
    pthread_mutex_lock(&obs.mu);
    int n = obs.protocol_errors[code == 1002 ? 0 : code == 1007 ? 1 : 2];
    pthread_mutex_unlock(&obs.mu);
    return n;
}

KS_UNUSED static void on_event(kd_run *run, const kd_call_event *ev, void *arg)
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

KS_UNUSED static bool wait_for(const int *field, int n, int ms)
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

/* Loads the configuration of the n flags in a (a[0] is the program name), resets the
 * observations and starts the client; does not wait for it to be ready. */
KS_UNUSED static void client_launch(client *c, char (*a)[300], int n)
{
    char *argv[24];
    for (int i = 0; i < n && i < 24; i++)
        argv[i] = a[i];
    kd_err err = {0};
    if (kd_config_load(&c->cfg, KD_PROG_WORKER, "test", n, argv, &err))
        fail_msg("config: %s", err.msg);
    pthread_mutex_lock(&obs.mu);
    obs.done = 0;
    obs.n = 0;
    memset(obs.protocol_errors, 0, sizeof obs.protocol_errors);
    pthread_mutex_unlock(&obs.mu);
    kd_kone_hooks hooks = {.done = on_done,
                           .call_event = on_event,
                           .metrics = {.ws_protocol_error = on_protocol_error},
                           .arg = NULL};
    if (kd_kone_start(&c->k, &c->cfg, &hooks, &err))
        fail_msg("kd_kone_start: %s", err.msg);
}

KS_UNUSED static void client_start(client *c, const char *extra)
{
    char a[24][300];
    int n = 0;
    snprintf(a[n++], 300, "test");
    snprintf(a[n++], 300, "--kone-token-url=https://127.0.0.1:%d/api/v2/oauth2/token", sim.port);
    snprintf(a[n++], 300, "--kone-ws-url=wss://127.0.0.1:%d/stream-v2", sim.port);
    snprintf(a[n++], 300, "--kone-client-id=kd-dev");
    snprintf(a[n++], 300, "--kone-client-secret=kd-dev-secret-change-me");
    snprintf(a[n++], 300,
             "--kone-scope=callgiving/building:9990000951 "
             "callgiving/building:9990000952");
    snprintf(a[n++], 300, "--kone-ca-file=%s", sim.cert);
    snprintf(a[n++], 300, "--kone-request-timeout-ms=5000");
    snprintf(a[n++], 300, "--kone-call-timeout-ms=2000");
    /* extra: one or more flags separated by spaces */
    for (const char *p = extra; p && *p && n < 24;) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, " ");
        if (len)
            snprintf(a[n++], 300, "%.*s", (int)len, p);
        p += len;
    }
    client_launch(c, a, n);
    for (int i = 0; i < 2000 && !kd_kone_ready(c->k); i++)
        usleep(10000);
    assert_true(kd_kone_ready(c->k));
}

KS_UNUSED static void client_stop(client *c)
{
    kd_kone_stop(c->k);
    kd_config_free(&c->cfg);
}

KS_UNUSED static kd_run *call(const char *building, const char *group, int64_t area, int64_t action,
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

/* Submits r without waiting; returns the obs.done count its outcome brings (for wait_for). */
KS_UNUSED static int submit(client *c, kd_run *r)
{
    pthread_mutex_lock(&obs.mu);
    int want = obs.done + 1;
    pthread_mutex_unlock(&obs.mu);
    kd_kone_submit(c->k, r);
    return want;
}

KS_UNUSED static kd_run *run_one(client *c, kd_run *r, int ms)
{
    int want = submit(c, r);
    if (!wait_for(&obs.done, want, ms))
        fail_msg("job %s: no outcome within %d ms", r->job.job_id, ms);
    return r;
}

KS_UNUSED static void expect(kd_run *r, kd_outcome o, const char *code, const char *msg_part)
{
    if (r->outcome != o || strcmp(r->error_code, code) != 0 ||
        (msg_part && !strstr(r->error_message, msg_part)))
        fail_msg("job %s: got %s '%s' (%s), expected %s '%s' (%s)", r->job.job_id,
                 kd_outcome_name(r->outcome), r->error_code, r->error_message, kd_outcome_name(o),
                 code, msg_part ? msg_part : "");
    free(r);
}

/* Submits the same call until it succeeds (a fault being lifted, a backoff running out), at
 * most `tries` times 100 ms apart; fails the test otherwise. */
KS_UNUSED static void expect_success_within(client *c, const char *building, const char *group,
                                            int64_t area, int64_t destination, int tries)
{
    kd_run *r = run_one(c, call(building, group, area, 2, destination, false), 10000);
    for (int i = 1; i < tries && r->outcome != KD_OUTCOME_SUCCEEDED; i++) {
        free(r);
        usleep(100000);
        r = run_one(c, call(building, group, area, 2, destination, false), 10000);
    }
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);
}

/* ------------------------------------------------------------------ tests */

/* Starts kone-sim on a free port with one extra flag (or none); each test reads only its own
 * simulator log. */
KS_UNUSED static int setup_with2(const char *extra1, const char *extra2)
{
    if (!sim.have)
        return 0;
    sim.port = free_port();
    assert_true(sim.port > 0);
    unlink(sim.log);
    sim_start(extra1, extra2);
    return 0;
}

KS_UNUSED static int setup_with(const char *extra)
{
    return setup_with2(extra, NULL);
}

KS_UNUSED static int setup(void **state)
{
    (void)state;
    return setup_with(NULL);
}

KS_UNUSED static int teardown(void **state)
{
    (void)state;
    sim_stop();
    return 0;
}

#define NEED_SIM()                                                                                 \
    do {                                                                                           \
        if (!sim.have)                                                                             \
            skip();                                                                                \
    } while (0)

/* Finds kone-sim and the sources, makes the certificate. Returns 0, or 1 when the test
 * cannot run at all. */
KS_UNUSED static int sim_init(const char *argv0)
{
    char self[512];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        snprintf(sim.bin, sizeof sim.bin, "%s/kone-sim", dirname(self));
    } else {
        snprintf(sim.bin, sizeof sim.bin, "%s", argv0);
    }
    const char *src = getenv("KD_SRC_DIR");
    if (src) {
        snprintf(sim.src, sizeof sim.src, "%s", src);
    } else { /* this file is tests/unit/ of the source tree */
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
            tc_make_cert(sim.cert, sim.key, "kone-sim-test");
            _exit(0);
        }
        int st = 1;
        if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "could not make the test certificate\n");
            return 1;
        }
    }
    return 0;
}

/* Removes the temporary files (keeps the simulator's log with KD_KEEP_SIM_LOG=1). */
KS_UNUSED static void sim_finish(void)
{
    if (getenv("KD_KEEP_SIM_LOG"))
        fprintf(stderr, "sim log kept in %s\n", sim.log);
    else {
        unlink(sim.log);
        unlink(sim.cert);
        unlink(sim.key);
        rmdir(sim.dir);
    }
}

/* The main of a kone-sim test: log level from KD_TEST_LOG (default error), the simulator
 * looked up (tests skip without it), KD_TEST_FILTER to run one test. */
#define KS_MAIN(...)                                                                               \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        (void)argc;                                                                                \
        kd_log_init("test", getenv("KD_TEST_LOG") ? getenv("KD_TEST_LOG") : "error");              \
        if (sim_init(argv[0]))                                                                     \
            return 1;                                                                              \
        const struct CMUnitTest tests[] = {__VA_ARGS__};                                           \
        if (getenv("KD_TEST_FILTER"))                                                              \
            cmocka_set_test_filter(getenv("KD_TEST_FILTER"));                                      \
        int rc = cmocka_run_group_tests(tests, NULL, NULL);                                        \
        sim_finish();                                                                              \
        return rc;                                                                                 \
    }

#endif
