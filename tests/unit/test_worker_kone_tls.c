/* test_worker_kone_tls: the worker's own TLS client stream (kone_tls.c) where it fails before
 * any KONE is involved: a CA file that does not load, an address that is not numeric, a port
 * nobody listens on (the connect refused, said as such), and a peer that accepts the TCP
 * connection and closes it before TLS (the handshake failed). Real sockets on loopback; the
 * certificate checks against a real server are test_worker_kone_tls_sim.c's. */
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "kone_tls.h"

/* A listening loopback socket; its port in *port. */
static int listener(int *port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s, 4), 0);
    socklen_t l = sizeof a;
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &l), 0);
    *port = ntohs(a.sin_port);
    return s;
}

/* Steps t as the loop would, polling its socket, until it is up or failed (at most 5 s). */
static kd_tls_state run(kd_tls *t)
{
    kd_tls_state st = KD_TLS_AGAIN;
    for (int i = 0; i < 100 && st == KD_TLS_AGAIN; i++) {
        struct pollfd p = {.fd = t->fd, .events = POLLIN | (t->want_write ? POLLOUT : 0)};
        poll(&p, 1, 50);
        st = kd_tls_step(t);
    }
    return st;
}

static void test_bad_ca_file(void **state)
{
    (void)state;
    char why[120] = "";
    assert_null(kd_tls_ctx_new("/nonexistent/ca.pem", why, sizeof why));
    assert_non_null(strstr(why, "cannot load the CA file /nonexistent/ca.pem"));
}

static void test_not_numeric(void **state)
{
    (void)state;
    char why[120];
    kd_tls_ctx *ctx = kd_tls_ctx_new(NULL, why, sizeof why);
    assert_non_null(ctx);
    kd_tls t;
    assert_false(kd_tls_connect(&t, ctx, "kone.example", 443, "kone.example"));
    assert_non_null(strstr(t.why, "not a numeric address"));
    assert_int_equal(t.fd, -1);
    kd_tls_ctx_free(ctx);
}

static void test_connect_refused(void **state)
{
    (void)state;
    char why[120];
    kd_tls_ctx *ctx = kd_tls_ctx_new(NULL, why, sizeof why);
    assert_non_null(ctx);
    int port, s = listener(&port);
    close(s); /* nobody listens there now */
    kd_tls t;
    if (kd_tls_connect(&t, ctx, "127.0.0.1", port, "127.0.0.1")) {
        struct pollfd p = {.fd = t.fd, .events = POLLOUT};
        poll(&p, 1, 2000);
        kd_tls_closed(&t); /* what the loop's hang-up gives */
        if (!t.why[0])
            assert_int_equal(run(&t), KD_TLS_FAILED);
        kd_tls_free(&t, true);
    }
    assert_non_null(strstr(t.why, "connect: Connection refused"));
    kd_tls_ctx_free(ctx);
}

static void test_closed_before_tls(void **state)
{
    (void)state;
    char why[120];
    kd_tls_ctx *ctx = kd_tls_ctx_new(NULL, why, sizeof why);
    assert_non_null(ctx);
    int port, s = listener(&port);
    kd_tls t;
    assert_true(kd_tls_connect(&t, ctx, "127.0.0.1", port, "127.0.0.1"));
    int a = accept(s, NULL, NULL);
    assert_true(a >= 0);
    close(a); /* accepted, then closed without a word of TLS */
    assert_int_equal(run(&t), KD_TLS_FAILED);
    assert_non_null(strstr(t.why, "TLS handshake failed") ? t.why : strstr(t.why, "connect:"));
    kd_tls_free(&t, true);
    close(s);
    kd_tls_ctx_free(ctx);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as kone-worker's main does: a write to a closed peer fails */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_ca_file),
        cmocka_unit_test(test_not_numeric),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_closed_before_tls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
