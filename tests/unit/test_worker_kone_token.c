/* Unit tests for worker/kone_token.c: token answers (good, refused, malformed), the refresh
 * rule on a fake clock, the token thread with a fake fetch, and that neither the client
 * secret nor a token ever shows up in an error message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <signal.h>
#include <sys/wait.h>

#include "kd_log.h"
#include "kd_run.h"
#include "kone_inventory.h"
#include "kone_token.h"
#include "test_cert.h"

#define SECRET "s3cr3t-Zq9-very-private"
#define SEC 1000000LL

static int parse(const char *body, long status, kd_kone_token *t, kd_err *err)
{
    return kd_kone_token_parse(body, body ? strlen(body) : 0, status, SECRET, t, err);
}

static void test_parse_good(void **state)
{
    (void)state;
    kd_kone_token t;
    kd_err err = {0};
    assert_int_equal(parse("{\"access_token\":\"eyJ.abc.def\",\"token_type\":\"Bearer\","
                           "\"expires_in\":3600,\"scope\":\"callgiving/building:1\"}",
                           200, &t, &err),
                     0);
    assert_string_equal(t.access_token, "eyJ.abc.def");
    assert_int_equal(t.expires_in_s, 3600);
    kd_kone_token_clear(&t);
    assert_null(t.access_token);

    /* expires_in quoted, token_type in another case, or absent */
    assert_int_equal(parse("{\"access_token\":\"x\",\"token_type\":\"bearer\","
                           "\"expires_in\":\"120\"}",
                           200, &t, &err),
                     0);
    assert_int_equal(t.expires_in_s, 120);
    kd_kone_token_clear(&t);
    assert_int_equal(parse("{\"access_token\":\"x\",\"expires_in\":60.0}", 200, &t, &err), 0);
    assert_int_equal(t.expires_in_s, 60);
    kd_kone_token_clear(&t);

    /* a lifetime beyond a year is taken as a year: a float past int64's range, or the largest
     * integer, must not overflow (found by scripts/fuzz kone_token; UBSan flags the old cast) */
    assert_int_equal(parse("{\"access_token\":\"x\",\"expires_in\":6.4e57}", 200, &t, &err), 0);
    assert_int_equal(t.expires_in_s, 365LL * 24 * 3600);
    kd_kone_token_clear(&t);
    assert_int_equal(
        parse("{\"access_token\":\"x\",\"expires_in\":9223372036854775807}", 200, &t, &err), 0);
    assert_int_equal(t.expires_in_s, 365LL * 24 * 3600);
    assert_false(kd_kone_token_needs_refresh(&t, 0, 60));
    kd_kone_token_clear(&t);
}

static void test_parse_bad(void **state)
{
    (void)state;
    static const char *bodies[] = {
        "",
        "not json",
        "[]",
        "{\"access_token\":\"x\"}",
        "{\"access_token\":\"\",\"expires_in\":5}",
        "{\"access_token\":5,\"expires_in\":5}",
        "{\"access_token\":\"x\",\"expires_in\":0}",
        "{\"access_token\":\"x\",\"expires_in\":-5}",
        "{\"access_token\":\"x\",\"expires_in\":\"soon\"}",
        "{\"access_token\":\"x\",\"expires_in\":5,\"token_type\":\"mac\"}",
        "{\"access_token\":\"x\",\"expires_in\":5",
        NULL,
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        kd_kone_token t;
        kd_err err = {0};
        int rc = parse(bodies[i], 200, &t, &err);
        if (rc != KD_ERR_DECODE)
            fail_msg("body %zu ('%s') gave %d, expected decode", i, bodies[i] ? bodies[i] : "NULL",
                     rc);
        assert_null(t.access_token);
        assert_true(err.msg[0] != '\0');
    }
    /* a huge token is refused */
    size_t n = KD_KONE_TOKEN_MAX + 100;
    char *big = malloc(n + 64);
    assert_non_null(big);
    strcpy(big, "{\"access_token\":\"");
    size_t o = strlen(big);
    memset(big + o, 'a', n);
    strcpy(big + o + n, "\",\"expires_in\":5}");
    kd_kone_token t;
    kd_err err = {0};
    assert_int_equal(parse(big, 200, &t, &err), KD_ERR_DECODE);
    free(big);
}

static void test_parse_refused_without_secret(void **state)
{
    (void)state;
    kd_kone_token t;
    kd_err err = {0};
    /* a server that echoes the secret back in its error must not leak it through us */
    assert_int_equal(
        parse("{\"error\":\"invalid_client\",\"error_description\":\"bad secret " SECRET
              " for client\"}",
              401, &t, &err),
        KD_ERR_AUTH);
    assert_null(strstr(err.msg, SECRET));
    assert_non_null(strstr(err.msg, "401"));
    assert_non_null(strstr(err.msg, "invalid_client"));
    assert_non_null(strstr(err.msg, "***"));

    assert_int_equal(parse("{\"message\":\"" SECRET "\"}", 403, &t, &err), KD_ERR_AUTH);
    assert_null(strstr(err.msg, SECRET));
    assert_int_equal(parse("<html>oops " SECRET "</html>", 500, &t, &err), KD_ERR_IO);
    assert_null(strstr(err.msg, SECRET));
    assert_non_null(strstr(err.msg, "500"));

    /* nor in a token_type it quotes, even where the cut to 32 bytes would split the secret
     * (found by scripts/fuzz kone_token) */
    assert_int_equal(parse("{\"access_token\":\"x\",\"expires_in\":60,"
                           "\"token_type\":\"Mac " SECRET "\"}",
                           200, &t, &err),
                     KD_ERR_DECODE);
    assert_null(strstr(err.msg, SECRET));
    assert_null(strstr(err.msg, "s3cr3t"));
    assert_non_null(strstr(err.msg, "Mac ***"));
    assert_int_equal(parse("{\"access_token\":\"x\",\"expires_in\":60,"
                           "\"token_type\":\"0123456789012345678901234567" SECRET "\"}",
                           200, &t, &err),
                     KD_ERR_DECODE);
    assert_null(strstr(err.msg, "s3cr"));

    /* the token of a malformed 200 answer is not echoed either */
    assert_int_equal(parse("{\"access_token\":\"tok-ABC\",\"expires_in\":\"x\"}", 200, &t, &err),
                     KD_ERR_DECODE);
    assert_null(strstr(err.msg, "tok-ABC"));
}

static void test_mask(void **state)
{
    (void)state;
    char b[64];
    snprintf(b, sizeof b, "a SECRET b SECRET");
    kd_kone_mask(b, sizeof b, "SECRET");
    assert_string_equal(b, "a *** b ***");
    snprintf(b, sizeof b, "xy");
    kd_kone_mask(b, sizeof b, "");
    assert_string_equal(b, "xy");
    snprintf(b, sizeof b, "ab"); /* secret shorter than the mask, in a tiny buffer */
    char tiny[4] = "ab";
    kd_kone_mask(tiny, sizeof tiny, "ab");
    assert_null(strstr(tiny, "ab"));
    char s[8] = "aaaaaaa";
    kd_kone_mask(s, sizeof s, "a");
    assert_null(strchr(s, 'a'));
}

/* ------------------------------------------------------------------ refresh rule */

static void test_refresh_rule(void **state)
{
    (void)state;
    kd_kone_token t = {0};
    assert_true(kd_kone_token_needs_refresh(&t, 0, 60)); /* none held */
    t.access_token = strdup("x");
    t.expires_in_s = 3600;
    t.obtained_us = 1000 * SEC;
    /* refresh at obtained + expires_in - margin = 1000 + 3600 - 60 s */
    assert_int_equal(kd_kone_token_refresh_at(&t, 60), 4540 * SEC);
    assert_false(kd_kone_token_needs_refresh(&t, 1000 * SEC, 60));
    assert_false(kd_kone_token_needs_refresh(&t, 4540 * SEC - 1, 60));
    assert_true(kd_kone_token_needs_refresh(&t, 4540 * SEC, 60));
    assert_true(kd_kone_token_needs_refresh(&t, 9999 * SEC, 60));
    /* margin 0: right at expiry */
    assert_false(kd_kone_token_needs_refresh(&t, 4600 * SEC - 1, 0));
    assert_true(kd_kone_token_needs_refresh(&t, 4600 * SEC, 0));
    /* a margin longer than the lifetime is capped at half of it (no refresh loop) */
    t.expires_in_s = 30;
    assert_int_equal(kd_kone_token_refresh_at(&t, 60), 1015 * SEC);
    assert_false(kd_kone_token_needs_refresh(&t, 1014 * SEC, 60));
    assert_true(kd_kone_token_needs_refresh(&t, 1015 * SEC, 60));
    kd_kone_token_clear(&t);
}

static void test_backoff(void **state)
{
    (void)state;
    assert_int_equal(kd_kone_token_backoff_us(1), 1 * SEC);
    assert_int_equal(kd_kone_token_backoff_us(2), 2 * SEC);
    assert_int_equal(kd_kone_token_backoff_us(3), 4 * SEC);
    assert_int_equal(kd_kone_token_backoff_us(6), 30 * SEC);
    assert_int_equal(kd_kone_token_backoff_us(100), 30 * SEC);
}

/* ------------------------------------------------------------------ the thread */

static atomic_int fetches, notifies;
static atomic_int fail_mode;
static atomic_int lifetime_s;

static int fake_fetch(const kd_kone_token_cfg *cfg, kd_kone_token *out, kd_err *err)
{
    int n = atomic_fetch_add(&fetches, 1) + 1;
    memset(out, 0, sizeof *out);
    if (atomic_load(&fail_mode))
        return kd_err_set(err, KD_ERR_AUTH, "refused for %s:%s", cfg->client_id,
                          cfg->client_secret); /* a careless message: must be masked */
    char tok[32];
    snprintf(tok, sizeof tok, "tok-%d", n);
    out->access_token = strdup(tok);
    out->expires_in_s = atomic_load(&lifetime_s);
    return 0;
}

static void on_notify(void *arg)
{
    (void)arg;
    atomic_fetch_add(&notifies, 1);
}

static kd_kone_token_cfg fake_cfg(void)
{
    kd_kone_token_cfg c = {0};
    c.token_url = "https://127.0.0.1:1/api/v2/oauth2/token";
    c.client_id = "client-1";
    c.client_secret = SECRET;
    c.scope = "callgiving/building:1";
    c.ca_file = "";
    c.timeout_ms = 1000;
    c.margin_s = 60;
    c.fetch = fake_fetch;
    return c;
}

static bool wait_for(atomic_int *v, int at_least, int ms)
{
    for (int i = 0; i < ms / 5; i++) {
        if (atomic_load(v) >= at_least)
            return true;
        usleep(5000);
    }
    return atomic_load(v) >= at_least;
}

static void test_thread_fetch_and_invalidate(void **state)
{
    (void)state;
    atomic_store(&fetches, 0);
    atomic_store(&notifies, 0);
    atomic_store(&fail_mode, 0);
    atomic_store(&lifetime_s, 3600);
    kd_kone_token_cfg c = fake_cfg();
    kd_kone_tokens *t;
    kd_err err = {0};
    assert_int_equal(kd_kone_tokens_start(&t, &c, on_notify, NULL, &err), 0);
    assert_true(wait_for(&notifies, 1, 2000));
    char buf[64];
    int64_t exp = 0;
    uint64_t g1 = kd_kone_tokens_get(t, buf, sizeof buf, &exp);
    assert_int_equal(g1, 1);
    assert_string_equal(buf, "tok-1");
    assert_int_equal(exp, 3600);
    assert_true(kd_kone_tokens_have(t));
    assert_int_equal(kd_kone_tokens_gen(t), 1);
    /* a buffer too small gets nothing rather than a truncated token */
    char small[3];
    assert_int_equal(kd_kone_tokens_get(t, small, sizeof small, NULL), 0);

    /* 401 with the current token: dropped, fetched again */
    kd_kone_tokens_invalidate(t, g1);
    assert_true(wait_for(&notifies, 2, 2000));
    assert_int_equal(kd_kone_tokens_get(t, buf, sizeof buf, NULL), 2);
    assert_string_equal(buf, "tok-2");
    /* a stale generation is ignored */
    kd_kone_tokens_invalidate(t, g1);
    usleep(50000);
    assert_int_equal(atomic_load(&fetches), 2);
    assert_int_equal(kd_kone_tokens_gen(t), 2);
    kd_kone_tokens_stop(t);
}

static void test_thread_refreshes_before_expiry(void **state)
{
    (void)state;
    atomic_store(&fetches, 0);
    atomic_store(&notifies, 0);
    atomic_store(&fail_mode, 0);
    atomic_store(&lifetime_s, 2); /* margin 60 is capped to 1 s: refresh every ~1 s */
    kd_kone_token_cfg c = fake_cfg();
    kd_kone_tokens *t;
    kd_err err = {0};
    assert_int_equal(kd_kone_tokens_start(&t, &c, on_notify, NULL, &err), 0);
    assert_true(wait_for(&fetches, 3, 4000));
    assert_true(kd_kone_tokens_gen(t) >= 2);
    kd_kone_tokens_stop(t);
}

static void test_thread_failure_is_masked(void **state)
{
    (void)state;
    atomic_store(&fetches, 0);
    atomic_store(&notifies, 0);
    atomic_store(&fail_mode, 1);
    kd_kone_token_cfg c = fake_cfg();
    kd_kone_tokens *t;
    kd_err err = {0};
    assert_int_equal(kd_kone_tokens_start(&t, &c, on_notify, NULL, &err), 0);
    assert_true(wait_for(&notifies, 1, 2000));
    assert_false(kd_kone_tokens_have(t));
    char buf[64];
    assert_int_equal(kd_kone_tokens_get(t, buf, sizeof buf, NULL), 0);
    char why[300];
    kd_kone_tokens_last_error(t, why, sizeof why);
    assert_non_null(strstr(why, "refused for client-1"));
    assert_null(strstr(why, SECRET));
    /* backoff: no second attempt within the first second */
    usleep(300000);
    assert_int_equal(atomic_load(&fetches), 1);
    kd_kone_tokens_stop(t); /* stops promptly while waiting out the backoff */
}

/* The real fetch against a port where nothing listens: a clean error, no secret. */
static void test_real_fetch_unreachable(void **state)
{
    (void)state;
    kd_kone_token_cfg c = fake_cfg();
    c.fetch = NULL;
    kd_kone_token t;
    kd_err err = {0};
    int rc = kd_kone_token_fetch(&c, &t, &err);
    assert_true(rc == KD_ERR_IO || rc == KD_ERR_TIMEOUT);
    assert_null(t.access_token);
    assert_null(strstr(err.msg, SECRET));
    assert_non_null(strstr(err.msg, "127.0.0.1"));
    /* plain http is refused: TLS is required */
    c.token_url = "http://127.0.0.1:1/token";
    rc = kd_kone_token_fetch(&c, &t, &err);
    assert_int_not_equal(rc, 0);
    assert_null(strstr(err.msg, SECRET));
}

/* kone.discover_buildings: KONE's resources answer read, its URL made from the token URL. */
static void test_inventory_parse(void **state)
{
    (void)state;
    char *list = NULL;
    kd_err err = {0};
    const char *good = "{\"buildings\":[{\"id\":\"building:9990000951\"},{\"id\":\"77\"}],"
                       "\"equipments\":[]}";
    assert_int_equal(kd_kone_inventory_parse(good, strlen(good), &list, &err), 0);
    assert_string_equal(list, "building:9990000951,77");
    free(list);
    const char *none = "{\"buildings\":[]}";
    assert_int_equal(kd_kone_inventory_parse(none, strlen(none), &list, &err), 0);
    assert_string_equal(list, "");
    free(list);
    const char *bad[] = {"",
                         "[]",
                         "{\"buildings\":{}}",
                         "{\"buildings\":[{\"name\":\"x\"}]}",
                         "{\"buildings\":[{\"id\":\"a b\"}]}",
                         "{\"buildings\":[{\"id\":7}]}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(kd_kone_inventory_parse(bad[i], strlen(bad[i]), &list, &err),
                         KD_ERR_DECODE);
        assert_null(list);
    }
    char *u = kd_kone_inventory_url("https://h:8443/api/v2/oauth2/token");
    assert_string_equal(u, "https://h:8443/api/v2/application/self/resources");
    free(u);
    u = kd_kone_inventory_url("https://h/oauth/x?y");
    assert_string_equal(u, "https://h/api/v2/application/self/resources");
    free(u);
}

/* A stand-in for a misbehaving KONE API, over TLS (python3's http.server with a throwaway
 * certificate): its token endpoint under /big answers more than the worker reads, its
 * resources endpoint answers 500 then 403, each body repeating the client secret. */
static const char py_api[] =
    "import http.server, ssl, sys\n"
    "gets = [0]\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def log_message(self, *a): pass\n"
    "    def reply(self, code, body):\n"
    "        self.send_response(code)\n"
    "        self.send_header('Content-Type', 'application/json')\n"
    "        self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def do_POST(self):\n"
    "        self.rfile.read(int(self.headers.get('Content-Length', 0)))\n"
    "        if self.path.startswith('/big/'):\n"
    "            self.reply(200, b'{\"access_token\":\"' + b'x' * 70000 + b'\"}')\n"
    "        else:\n"
    "            self.reply(200, b'{\"access_token\":\"t0k\",\"token_type\":\"Bearer\","
    "\"expires_in\":3600}')\n"
    "    def do_GET(self):\n"
    "        gets[0] += 1\n"
    "        self.reply(500 if gets[0] == 1 else 403, ('no resources for ' + "
    "sys.argv[3]).encode())\n"
    "s = http.server.HTTPServer(('127.0.0.1', 0), H)\n"
    "c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "c.load_cert_chain(sys.argv[1], sys.argv[2])\n"
    "s.socket = c.wrap_socket(s.socket, server_side=True)\n"
    "print(s.server_address[1], flush=True)\n"
    "s.serve_forever()\n";

static void test_misbehaving_api(void **state)
{
    (void)state;
    if (access("/usr/bin/python3", X_OK) != 0)
        skip();
    char dir[] = "/tmp/kd-token-api-XXXXXX", cert[64], key[64];
    assert_non_null(mkdtemp(dir));
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    fflush(NULL);
    pid_t mk = fork();
    if (mk == 0) { /* OpenSSL state of its own, as test_cert.h asks */
        tc_make_cert(cert, key, "token-api-test");
        _exit(0);
    }
    int st = 1;
    assert_int_equal(waitpid(mk, &st, 0), mk);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    int out[2];
    assert_int_equal(pipe(out), 0);
    pid_t py = fork();
    if (py == 0) {
        dup2(out[1], 1);
        close(out[0]);
        execl("/usr/bin/python3", "python3", "-c", py_api, cert, key, SECRET, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char line[16] = "";
    FILE *f = fdopen(out[0], "r");
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    int port = atoi(line);
    assert_true(port > 0);

    char url[128];
    kd_kone_token_cfg c = fake_cfg();
    c.fetch = NULL;
    c.ca_file = cert;
    c.timeout_ms = 5000;
    kd_kone_token t;
    kd_err err = {0};
    snprintf(url, sizeof url, "https://127.0.0.1:%d/big/oauth2/token", port);
    c.token_url = url;
    assert_int_equal(kd_kone_token_fetch(&c, &t, &err), KD_ERR_DECODE);
    assert_string_equal(err.msg, "token answer longer than 65536 bytes");
    assert_null(t.access_token);

    /* kone.discover_buildings: the token comes, the resources list does not */
    snprintf(url, sizeof url, "https://127.0.0.1:%d/api/v2/oauth2/token", port);
    char *list = NULL;
    memset(&err, 0, sizeof err);
    assert_int_equal(kd_kone_inventory_fetch(&c, &list, &err), KD_ERR_IO);
    assert_null(list);
    assert_non_null(strstr(err.msg, "no resources for"));
    assert_null(strstr(err.msg, SECRET));
    memset(&err, 0, sizeof err);
    assert_int_equal(kd_kone_inventory_fetch(&c, &list, &err), KD_ERR_AUTH);
    assert_null(strstr(err.msg, SECRET));

    kill(py, SIGTERM);
    waitpid(py, NULL, 0);
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

int main(void)
{
    kd_log_init("test", "error");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_inventory_parse),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_parse_refused_without_secret),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_refresh_rule),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_thread_fetch_and_invalidate),
        cmocka_unit_test(test_thread_refreshes_before_expiry),
        cmocka_unit_test(test_thread_failure_is_masked),
        cmocka_unit_test(test_real_fetch_unreachable),
        cmocka_unit_test(test_misbehaving_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
