/* test_sim_calls_sim: GET /sim/calls of the real kone-sim, over TLS and WebSocket.
 *
 * test_sim_calls checks the call log through the control function; this one runs the
 * kone-sim binary built next to it (skipped without it) on a free port with a throwaway
 * certificate, as kone_sim_fixture.h does for the worker's client tests, places calls and a
 * delete over a real stream-v2 connection (a small libwebsockets client below), and reads the
 * log with libcurl: the query string reaching the endpoint (since, limit, filters, url
 * encoding), listings far larger than one socket write, reset, and sim.control_token.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kone_sim_proc.h"
#include "test_cert.h"

#define B1 "building:9990000951"
#define CONTROL_TOKEN "calls-control-secret"

/* A clean stop: kone-sim exits 0 on SIGTERM. */
static void sim_stop_clean(void)
{
    int st = sim_stop();
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- HTTP (libcurl) ---- */

typedef struct buf {
    char *p;
    size_t n;
} buf;

static size_t on_body(char *d, size_t size, size_t n, void *arg)
{
    buf *b = arg;
    char *np = realloc(b->p, b->n + size * n + 1);
    if (!np)
        return 0;
    memcpy(np + b->n, d, size * n);
    b->p = np;
    b->n += size * n;
    b->p[b->n] = '\0';
    return size * n;
}

/* method GET or POST on path; *out the parsed JSON answer (NULL when not JSON). */
static long http(const char *method, const char *path, const char *bearer, const char *userpwd,
                 const char *form, json_t **out)
{
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[1024];
    snprintf(url, sizeof url, "https://127.0.0.1:%d%s", sim.port, path);
    struct curl_slist *h = NULL;
    if (bearer) {
        char authz[200];
        snprintf(authz, sizeof authz, "Authorization: Bearer %s", bearer);
        h = curl_slist_append(h, authz);
    }
    buf b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, sim.cert);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    if (userpwd)
        curl_easy_setopt(c, CURLOPT_USERPWD, userpwd);
    if (strcmp(method, "POST") == 0)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, form ? form : "");
    long status = 0;
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    else
        fprintf(stderr, "%s %s: %s\n", method, path, curl_easy_strerror(rc));
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    json_error_t je;
    json_t *o = b.p ? json_loadb(b.p, b.n, 0, &je) : NULL;
    free(b.p);
    if (out)
        *out = o;
    else
        json_decref(o);
    return status;
}

/* GET /sim/calls?query (200 expected), with the control token when the sim has one. */
static json_t *calls(const char *query, const char *bearer)
{
    char path[300];
    snprintf(path, sizeof path, "/sim/calls%s%s", query ? "?" : "", query ? query : "");
    json_t *o = NULL;
    long st = http("GET", path, bearer, NULL, NULL, &o);
    if (st != 200)
        fail_msg("GET %s: %ld", path, st);
    assert_non_null(o);
    return o;
}

static int64_t num(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

/* ---- a minimal stream-v2 client ---- */

#include "sim_ws_client.h"

static char *token(void)
{
    json_t *o = NULL;
    assert_int_equal(http("POST", "/api/v2/oauth2/token", NULL, "kd-dev:kd-dev-secret-change-me",
                          "grant_type=client_credentials", &o),
                     200);
    char *t = strdup(json_string_value(json_object_get(o, "access_token")));
    json_decref(o);
    return t;
}

static void queue_action(wsc *w, int64_t rid, int64_t dest, const char *media)
{
    char f[1600];
    snprintf(f, sizeof f,
             "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"" B1 "\",\"callType\":\"action\","
             "\"groupId\":\"1\",\"payload\":{\"request_id\":%lld,\"area\":1000,\"terminal\":1,"
             "\"media_id\":\"%s\",\"call\":{\"action\":2,\"destination\":%lld}}}",
             (long long)rid, media, (long long)dest);
    ws_queue(w, f);
}

/* The frame of w->in answering request id rid (first frame with that requestId). */
static const json_t *answer_of(const wsc *w, int64_t rid)
{
    for (size_t i = 0; i < w->n_in; i++)
        if (json_integer_value(json_object_get(w->in[i], "requestId")) == rid &&
            json_object_get(w->in[i], "statusCode"))
            return w->in[i];
    return NULL;
}

static int64_t session_of(const wsc *w, int64_t rid)
{
    for (size_t i = 0; i < w->n_in; i++) {
        const json_t *d = json_object_get(w->in[i], "data");
        if (json_object_get(w->in[i], "callType") &&
            json_integer_value(json_object_get(d, "request_id")) == rid)
            return json_integer_value(json_object_get(d, "session_id"));
    }
    return 0;
}

#define NEED_SIM()                                                                                 \
    do {                                                                                           \
        if (!sim.have)                                                                             \
            skip();                                                                                \
    } while (0)

/* ---- tests ---- */

static int setup(void **state)
{
    (void)state;
    if (!sim.have)
        return 0;
    sim.port = free_port();
    assert_true(sim.port > 0);
    unlink(sim.log);
    sim_start(NULL, NULL);
    return 0;
}

static int setup_token(void **state)
{
    (void)state;
    if (!sim.have)
        return 0;
    sim.port = free_port();
    assert_true(sim.port > 0);
    unlink(sim.log);
    sim_start("--sim-control-token=" CONTROL_TOKEN, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sim_stop_clean();
    return 0;
}

static void test_calls_over_the_wire(void **state)
{
    (void)state;
    NEED_SIM();
    char *tok = token();
    wsc w;
    ws_open(&w, tok);
    ws_queue(&w, "{\"type\":\"create-session\",\"requestId\":\"s1\"}");
    assert_true(ws_wait(&w, 1, 5000));
    char ksid[64];
    snprintf(ksid, sizeof ksid, "%s",
             json_string_value(json_object_get(json_object_get(w.in[0], "data"), "sessionId")));
    queue_action(&w, 11, 5000, "it:job-1");
    queue_action(&w, 12, 6000, "it:job-2");
    queue_action(&w, 13, 7000, "other-3");
    assert_true(ws_wait(&w, 7, 5000)); /* session + 3 x (answer, result) */
    int64_t sid = session_of(&w, 11);
    assert_true(sid > 0);
    char del[300];
    snprintf(del, sizeof del,
             "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"" B1 "\",\"callType\":\"delete\","
             "\"groupId\":\"1\",\"payload\":{\"request_id\":14,\"session_id\":%lld}}",
             (long long)sid);
    ws_queue(&w, del);
    size_t before = w.n_in;
    assert_true(ws_wait(&w, before + 1, 5000));
    assert_non_null(answer_of(&w, 14));

    json_t *o = calls(NULL, NULL);
    assert_int_equal(num(o, "count"), 4);
    assert_int_equal(num(o, "last_seq"), 4);
    const json_t *list = json_object_get(o, "calls");
    const json_t *e = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(e, "kone_session_id")), ksid);
    assert_string_equal(json_string_value(json_object_get(e, "client_id")), "kd-dev");
    assert_string_equal(json_string_value(json_object_get(e, "media_id")), "it:job-1");
    assert_int_equal(num(e, "session_id"), sid);
    assert_int_equal(num(e, "status"), 201);
    assert_non_null(json_string_value(json_object_get(e, "connection_id")));
    e = json_array_get(list, 3);
    assert_string_equal(json_string_value(json_object_get(e, "call_type")), "delete");
    assert_int_equal(num(e, "session_id"), sid);
    /* the log says whether the delete cancelled a live call: true when job-1 was still on
     * its way, false when it was already served (at speed 20 a slow build, such as the
     * ThreadSanitizer one in CI, may get there first); it_ledger_cancel checks the cancel */
    assert_true(json_is_boolean(json_object_get(e, "cancelled")));
    json_decref(o);

    /* the query string reaches the endpoint, url-decoded */
    o = calls("since=1&call_type=action", NULL);
    assert_int_equal(num(o, "count"), 2);
    json_decref(o);
    o = calls("media_id_prefix=it%3Ajob-", NULL);
    assert_int_equal(num(o, "count"), 2);
    json_decref(o);
    assert_int_equal(http("GET", "/sim/calls?limit=0", NULL, NULL, NULL, NULL), 400);
    assert_int_equal(http("GET", "/sim/calls?bogus=1", NULL, NULL, NULL, NULL), 400);
    /* a filter that does not fit is refused, never dropped */
    char longq[700] = "/sim/calls?media_id_prefix=";
    memset(longq + strlen(longq), 'x', 600);
    longq[sizeof longq - 1] = '\0';
    assert_int_equal(http("GET", longq, NULL, NULL, NULL, NULL), 414);

    /* reset: empty, sequence numbers go on */
    json_t *r = NULL;
    assert_int_equal(http("POST", "/sim/calls/reset", NULL, NULL, NULL, &r), 200);
    assert_int_equal(num(r, "cleared"), 4);
    json_decref(r);
    o = calls(NULL, NULL);
    assert_int_equal(num(o, "count"), 0);
    assert_int_equal(num(o, "last_seq"), 4);
    json_decref(o);

    /* many calls: a listing of megabytes, in one answer and in pages */
    enum { N = 3000 };
    char media[1100];
    char pad[1001]; /* large entries: the one-page listing is about 8 MB */
    memset(pad, 'p', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < N; i++) {
        snprintf(media, sizeof media, "bulk-%d-%s", i, pad);
        queue_action(&w, 100 + i, (i % 8 + 2) * 1000, media);
    }
    before = w.n_in;
    assert_true(ws_wait(&w, before + 2 * N < MAX_IN ? before + 2 * N : MAX_IN, 60000));
    o = calls("limit=100000", NULL);
    assert_int_equal(num(o, "count"), N);
    assert_int_equal(json_array_size(json_object_get(o, "calls")), N);
    assert_int_equal(num(json_array_get(json_object_get(o, "calls"), N - 1), "seq"), 4 + N);
    json_decref(o);
    int pages = 0, seen = 0;
    uint64_t since = 0;
    for (bool more = true; more; pages++) {
        char q[64];
        snprintf(q, sizeof q, "since=%llu&limit=1000", (unsigned long long)since);
        o = calls(q, NULL);
        seen += (int)num(o, "count");
        since = (uint64_t)num(o, "next_since");
        more = json_is_true(json_object_get(o, "more"));
        json_decref(o);
        assert_true(pages < 10);
    }
    assert_int_equal(seen, N);
    assert_int_equal(pages, 3);
    ws_close(&w);
    free(tok);
}

static void test_control_token(void **state)
{
    (void)state;
    NEED_SIM();
    assert_int_equal(http("GET", "/sim/calls", NULL, NULL, NULL, NULL), 401);
    assert_int_equal(http("GET", "/sim/calls", "wrong", NULL, NULL, NULL), 401);
    assert_int_equal(http("POST", "/sim/calls/reset", NULL, NULL, NULL, NULL), 401);
    json_t *o = calls("since=0", CONTROL_TOKEN);
    assert_int_equal(num(o, "count"), 0);
    json_decref(o);
    assert_int_equal(http("POST", "/sim/calls/reset", CONTROL_TOKEN, NULL, NULL, NULL), 200);
}

int main(int argc, char **argv)
{
    (void)argc;
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
    } else {
        char here[512];
        snprintf(here, sizeof here, "%s", __FILE__);
        snprintf(sim.src, sizeof sim.src, "%s/../..", dirname(here));
    }
    sim.have = access(sim.bin, X_OK) == 0;
    if (!sim.have)
        fprintf(stderr, "kone-sim not built next to this test (%s): skipping\n", sim.bin);
    snprintf(sim.dir, sizeof sim.dir, "/tmp/kd-sim-calls-XXXXXX");
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
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_calls_over_the_wire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control_token, setup_token, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    if (getenv("KD_KEEP_SIM_LOG")) {
        fprintf(stderr, "sim log kept in %s\n", sim.log);
    } else {
        unlink(sim.log);
        unlink(sim.cert);
        unlink(sim.key);
        rmdir(sim.dir);
    }
    return rc;
}
