/* test_worker_kone_tls_sim: the worker's KONE client refuses a server it must not trust,
 * on both of its TLS paths: the OAuth2 token endpoint (libcurl, kone_token.c) and the
 * stream-v2 WebSocket (libwebsockets, kone_conn.c). The servers are real kone-sim
 * processes, each given one certificate:
 *
 *   good        signed by the CA in kone.ca_file, for 127.0.0.1 and localhost
 *   unknown CA  a valid certificate for 127.0.0.1 from a CA the client does not trust
 *   wrong host  signed by the trusted CA, but for kone.other.example only
 *   expired     signed by the trusted CA, for 127.0.0.1, expired yesterday
 *
 * For each refusal: the fetch or the connection fails with one line that says why (the
 * verifier's own words), a job waiting for KONE ends FAILED/transient "no_connection" (the
 * retry policy hands it back; nothing crashes), and the client stays up, backing off. The
 * same setup with the good certificate gets through TLS, so a refusal is the certificate's
 * doing and nothing else's.
 *
 * The WebSocket cases need a token first: it comes from a second kone-sim with the good
 * certificate (kone.token_url and kone.ws_url point at different simulators). That
 * simulator's tokens are unknown to the WebSocket one, so with the good certificate the
 * upgrade is answered 401: proof that TLS was accepted.
 */
#include "kone_sim_fixture.h"
#include "kone_token.h"

#include <sys/stat.h>

#define SECRET "kd-dev-secret-change-me"

typedef struct cert_case {
    const char *name;
    const char *cert; /* file names in sim.dir */
    const char *key;
    const char *token_says; /* part of libcurl's error */
    const char *ws_says;    /* part of libwebsockets' error */
} cert_case;

/* What each verifier reports (OpenSSL's X509_V_ERR texts, libcurl's host-name message). */
static const cert_case refusals[] = {
    {"unknown CA", "foreign.pem", "foreign.key", "unable to get local issuer certificate",
     "TLS: KONE's certificate refused: unable to get local issuer certificate"},
    {"wrong host", "wronghost.pem", "wronghost.key", "no alternative certificate subject name",
     "TLS: KONE's certificate refused: IP address mismatch"},
    {"expired", "expired.pem", "expired.key", "certificate has expired",
     "TLS: KONE's certificate refused: certificate has expired"},
};

static char ca_path[128], cap_path[128];

static const char *in_dir(const char *name)
{
    static char buf[4][160];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s", sim.dir, name);
    return buf[i];
}

/* Makes the CAs and certificates in a child process (see test_cert.h). */
static int make_pki(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        tc_make_ca(in_dir("ca.pem"), in_dir("ca.key"), "kd-test-trusted-ca");
        tc_make_ca(in_dir("other-ca.pem"), in_dir("other-ca.key"), "kd-test-unknown-ca");
        const char *san = "IP:127.0.0.1,DNS:localhost";
        tc_make_leaf(in_dir("ca.pem"), in_dir("ca.key"), in_dir("good.pem"), in_dir("good.key"),
                     "127.0.0.1", san, -3600, 86400);
        tc_make_leaf(in_dir("other-ca.pem"), in_dir("other-ca.key"), in_dir("foreign.pem"),
                     in_dir("foreign.key"), "127.0.0.1", san, -3600, 86400);
        tc_make_leaf(in_dir("ca.pem"), in_dir("ca.key"), in_dir("wronghost.pem"),
                     in_dir("wronghost.key"), "kone.other.example", "DNS:kone.other.example", -3600,
                     86400);
        tc_make_leaf(in_dir("ca.pem"), in_dir("ca.key"), in_dir("expired.pem"),
                     in_dir("expired.key"), "127.0.0.1", san, -2 * 86400, -86400);
        _exit(0);
    }
    int st = 1;
    if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return 1;
    snprintf(ca_path, sizeof ca_path, "%s", in_dir("ca.pem"));
    snprintf(cap_path, sizeof cap_path, "%s", in_dir("client.log"));
    return 0;
}

static void remove_pki(void)
{
    const char *files[] = {"ca.pem",        "ca.key",        "other-ca.pem", "other-ca.key",
                           "good.pem",      "good.key",      "foreign.pem",  "foreign.key",
                           "wronghost.pem", "wronghost.key", "expired.pem",  "expired.key",
                           "client.log",    "sim2.log"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        unlink(in_dir(files[i]));
}

/* ------------------------------------------------------------------ simulators */

typedef struct sim_proc {
    int port;
    pid_t pid;
} sim_proc;

/* Starts one more kone-sim with the given certificate (the fixture's helpers drive the
 * `sim` record, so it is borrowed for the start and given back). */
static sim_proc sim_with(const char *cert, const char *key, const char *log)
{
    char c0[sizeof sim.cert], k0[sizeof sim.key], l0[sizeof sim.log];
    memcpy(c0, sim.cert, sizeof c0);
    memcpy(k0, sim.key, sizeof k0);
    memcpy(l0, sim.log, sizeof l0);
    int port0 = sim.port;
    pid_t pid0 = sim.pid;
    snprintf(sim.cert, sizeof sim.cert, "%s", in_dir(cert));
    snprintf(sim.key, sizeof sim.key, "%s", in_dir(key));
    snprintf(sim.log, sizeof sim.log, "%s", in_dir(log));
    sim.port = free_port();
    assert_true(sim.port > 0);
    sim_start(NULL, NULL);
    sim_proc p = {sim.port, sim.pid};
    memcpy(sim.cert, c0, sizeof c0);
    memcpy(sim.key, k0, sizeof k0);
    memcpy(sim.log, l0, sizeof l0);
    sim.port = port0;
    sim.pid = pid0;
    return p;
}

static void sim_end(sim_proc *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGTERM);
        int st;
        waitpid(p->pid, &st, 0);
        p->pid = 0;
    }
}

/* ------------------------------------------------------------------ the client's log */

static int saved_stderr = -1;

/* kd_log writes to stderr: while a client runs, its lines go to cap_path. */
static void capture_start(void)
{
    fflush(stderr);
    saved_stderr = dup(2);
    int fd = open(cap_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved_stderr >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
}

static void capture_stop(void)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    saved_stderr = -1;
}

/* The first captured line holding both parts, in out (empty when none). */
static bool captured_line(const char *a, const char *b, char *out, size_t len)
{
    FILE *f = fopen(cap_path, "r");
    out[0] = '\0';
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        if (strstr(line, a) && strstr(line, b)) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(out, len, "%s", line);
            found = true;
        }
    }
    fclose(f);
    return found;
}

static bool captured_anywhere(const char *needle)
{
    char line[4096];
    return captured_line(needle, needle, line, sizeof line);
}

/* ------------------------------------------------------------------ the client */

static void client_open_host(client *c, int token_port, const char *ws_host, int ws_port)
{
    char a[10][300];
    int n = 0;
    snprintf(a[n++], 300, "test");
    snprintf(a[n++], 300, "--kone-token-url=https://127.0.0.1:%d/api/v2/oauth2/token", token_port);
    snprintf(a[n++], 300, "--kone-ws-url=wss://%s:%d/stream-v2", ws_host, ws_port);
    snprintf(a[n++], 300, "--kone-client-id=kd-dev");
    snprintf(a[n++], 300, "--kone-client-secret=" SECRET);
    snprintf(a[n++], 300, "--kone-scope=callgiving/building:9990000951");
    snprintf(a[n++], 300, "--kone-ca-file=%s", ca_path);
    snprintf(a[n++], 300, "--kone-connections=1");
    /* how long a job waits for a connection before it fails */
    snprintf(a[n++], 300, "--kone-request-timeout-ms=1500");
    client_launch(c, a, n);
}

static void client_open(client *c, int token_port, int ws_port)
{
    client_open_host(c, token_port, "127.0.0.1", ws_port);
}

/* A job submitted while KONE cannot be reached: FAILED, transient, "no_connection". */
static void expect_no_connection(client *c, const char *msg_part)
{
    kd_run *r = run_one(c, call(B951, "1", 1000, 2, 5000, false), 15000);
    assert_int_equal(r->failure, KD_FAIL_TRANSIENT);
    printf("    job: %s %s: %s\n", kd_outcome_name(r->outcome), r->error_code, r->error_message);
    assert_null(strstr(r->error_message, SECRET));
    expect(r, KD_OUTCOME_FAILED, "no_connection", msg_part);
}

/* ------------------------------------------------------------------ token endpoint */

static int fetch_from(int port, kd_err *err)
{
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/api/v2/oauth2/token", port);
    kd_kone_token_cfg cfg = {.token_url = url,
                             .client_id = "kd-dev",
                             .client_secret = SECRET,
                             .scope = "",
                             .ca_file = ca_path,
                             .timeout_ms = 5000};
    kd_kone_token t = {0};
    int rc = kd_kone_token_fetch(&cfg, &t, err);
    kd_kone_token_clear(&t);
    return rc;
}

static void test_token_endpoint(void **state)
{
    (void)state;
    NEED_SIM();
    kd_err err = {0};
    sim_proc good = sim_with("good.pem", "good.key", "sim2.log");
    assert_int_equal(fetch_from(good.port, &err), 0);
    sim_end(&good);

    for (size_t i = 0; i < sizeof refusals / sizeof *refusals; i++) {
        const cert_case *cc = &refusals[i];
        sim_proc bad = sim_with(cc->cert, cc->key, "sim2.log");
        memset(&err, 0, sizeof err);
        int rc = fetch_from(bad.port, &err);
        printf("    %s: %s\n", cc->name, err.msg);
        assert_int_equal(rc, KD_ERR_IO);
        assert_null(strchr(err.msg, '\n'));
        assert_null(strstr(err.msg, SECRET));
        assert_non_null(strstr(err.msg, "token request to https://127.0.0.1:"));
        assert_non_null(strstr(err.msg, cc->token_says));

        /* the whole client: no token, so no connection; the job fails with the reason */
        client c;
        capture_start();
        client_open(&c, bad.port, bad.port);
        expect_no_connection(&c, cc->token_says);
        assert_false(kd_kone_ready(c.k));
        client_stop(&c);
        capture_stop();
        char line[4096];
        assert_true(captured_line("kone: token fetch failed", cc->token_says, line, sizeof line));
        printf("    log: %s\n", line);
        assert_false(captured_anywhere(SECRET));
        sim_end(&bad);
    }
}

/* ------------------------------------------------------------------ WebSocket */

static void test_websocket(void **state)
{
    (void)state;
    NEED_SIM();
    sim_proc tokens = sim_with("good.pem", "good.key", "sim.log");

    /* the good certificate: TLS passes, the upgrade is refused for the foreign token */
    sim_proc ws = sim_with("good.pem", "good.key", "sim2.log");
    client c;
    capture_start();
    client_open(&c, tokens.port, ws.port);
    expect_no_connection(&c, NULL);
    client_stop(&c);
    capture_stop();
    char line[4096];
    assert_true(captured_line("kone: slot 0: conn 0:", "(HTTP 401)", line, sizeof line));
    printf("    good certificate, foreign token: %s\n", line);
    sim_end(&ws);

    for (size_t i = 0; i < sizeof refusals / sizeof *refusals; i++) {
        const cert_case *cc = &refusals[i];
        ws = sim_with(cc->cert, cc->key, "sim2.log");
        capture_start();
        client_open(&c, tokens.port, ws.port);
        expect_no_connection(&c, NULL);
        assert_false(kd_kone_ready(c.k));
        client_stop(&c);
        capture_stop();
        assert_true(captured_anywhere("kone: token refreshed"));
        if (!captured_line("kone: slot 0: conn 0:", cc->ws_says, line, sizeof line)) {
            captured_line("kone: slot 0:", "reconnecting", line, sizeof line);
            fail_msg("%s: no refusal naming '%s' in the log; first connection line: %s", cc->name,
                     cc->ws_says, line);
        }
        printf("    %s: %s\n", cc->name, line);
        assert_false(captured_anywhere("(HTTP 401)")); /* never got as far as HTTP */
        assert_false(captured_anywhere(SECRET));
        sim_end(&ws);
    }
    sim_end(&tokens);
}

/* kone.ws_url by host name: the resolver thread (kone_dns.c) finds the address and the
 * connection goes to it, while the certificate is still checked against the name. A
 * certificate for another name is refused ("hostname mismatch", where an address in the URL
 * gives "IP address mismatch" above); the good one (DNS:localhost) gets through TLS (401). */
static void test_websocket_by_name(void **state)
{
    (void)state;
    NEED_SIM();
    sim_proc tokens = sim_with("good.pem", "good.key", "sim.log");
    const struct {
        const char *cert, *key, *says;
    } cases[] = {
        {"good.pem", "good.key", "(HTTP 401)"},
        {"wronghost.pem", "wronghost.key", "TLS: KONE's certificate refused: hostname mismatch"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sim_proc ws = sim_with(cases[i].cert, cases[i].key, "sim2.log");
        client c;
        capture_start();
        client_open_host(&c, tokens.port, "localhost", ws.port);
        expect_no_connection(&c, NULL);
        client_stop(&c);
        capture_stop();
        char line[4096];
        if (!captured_line("kone: slot 0: conn 0:", cases[i].says, line, sizeof line)) {
            captured_line("kone: slot 0:", "reconnecting", line, sizeof line);
            fail_msg("%s: no line naming '%s'; first connection line: %s", cases[i].cert,
                     cases[i].says, line);
        }
        printf("    localhost, %s: %s\n", cases[i].cert, line);
        assert_false(captured_anywhere(SECRET));
        sim_end(&ws);
    }
    sim_end(&tokens);
}

int main(int argc, char **argv)
{
    (void)argc;
    kd_log_init("test", "info");
    if (sim_init(argv[0]) || make_pki())
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_endpoint),
        cmocka_unit_test(test_websocket),
        cmocka_unit_test(test_websocket_by_name),
    };
    if (getenv("KD_TEST_FILTER"))
        cmocka_set_test_filter(getenv("KD_TEST_FILTER"));
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    remove_pki();
    sim_finish();
    return rc;
}
