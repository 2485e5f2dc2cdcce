/* test_worker_kone_tls: the worker's own TLS client stream (kone_tls.c) where it fails before
 * any KONE is involved: a CA file that does not load, an address that is not numeric, a port
 * nobody listens on (the connect refused, said as such), and a peer that accepts the TCP
 * connection and closes it before TLS (the handshake failed). Then the stream against a real
 * TLS 1.3 server (OpenSSL, in a child process): data that arrives behind the server's session
 * tickets is read without the socket becoming readable again, and a write larger than the
 * socket takes arrives whole and in order. Real sockets on loopback; the certificate checks
 * against a real server are test_worker_kone_tls_sim.c's. */
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "kone_tls.h"
#include "test_cert.h"

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

/* ------------------------------------------------------------------ against a TLS server */

static char cert_path[64], key_path[64];

/* A TLS 1.3 server for one connection on s, in a child process; serve() runs once its
 * handshake is done and its result is the child's exit status. The parent's end of a pipe
 * to the child is *to_child. */
static pid_t server(int s, int *to_child, int (*serve)(SSL *ssl, int from_parent))
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[1]);
        SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
        if (!ctx || SSL_CTX_use_certificate_file(ctx, cert_path, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1)
            _exit(10);
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
        int a = accept(s, NULL, NULL);
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, a);
        if (SSL_accept(ssl) != 1)
            _exit(11);
        _exit(serve(ssl, p[0]));
    }
    close(p[0]);
    *to_child = p[1];
    return pid;
}

static int child_status(pid_t pid)
{
    int st = -1;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

/* A client of the server on port, up (its handshake done). */
static kd_tls_ctx *client_up(kd_tls *t, int port)
{
    char why[120];
    kd_tls_ctx *ctx = kd_tls_ctx_new(cert_path, why, sizeof why);
    assert_non_null(ctx);
    assert_true(kd_tls_connect(t, ctx, "127.0.0.1", port, "127.0.0.1"));
    assert_int_equal(run(t), KD_TLS_UP);
    return ctx;
}

/* Sends "hello" right after the handshake, which OpenSSL ends with two session tickets, and
 * says so on its pipe; then waits for the client to close. */
static int serve_hello(SSL *ssl, int from_parent)
{
    (void)from_parent;
    if (SSL_write(ssl, "hello", 5) != 5)
        return 12;
    char c;
    while (SSL_read(ssl, &c, 1) > 0)
        ;
    return 0;
}

static void test_data_behind_tickets(void **state)
{
    (void)state;
    int port, s = listener(&port);
    int to_child;
    pid_t pid = server(s, &to_child, serve_hello);
    kd_tls t;
    kd_tls_ctx *ctx = client_up(&t, port);
    /* the tickets and "hello" all in the socket before the first read */
    struct pollfd p = {.fd = t.fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 5000), 1);
    usleep(100000);
    /* one read gives the data: GnuTLS answers "again" for each ticket, and the reader goes on
     * through its buffer; stopping there would wait for a socket with nothing more to say */
    char buf[64];
    ssize_t n = kd_tls_read(&t, buf, sizeof buf);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "hello", 5);
    assert_false(kd_tls_pending(&t));
    kd_tls_free(&t, true);
    close(to_child);
    assert_int_equal(child_status(pid), 0);
    close(s);
    kd_tls_ctx_free(ctx);
}

#define BIG (1 << 20)

/* Reads nothing until its pipe says go (the client's socket fills), then BIG bytes, which
 * must be the pattern of big_byte. */
static unsigned char big_byte(size_t i)
{
    return (unsigned char)((i * 7) % 251);
}

static int serve_big(SSL *ssl, int from_parent)
{
    char go;
    if (read(from_parent, &go, 1) != 1)
        return 13;
    /* 'k': first a TLS 1.3 key update that asks the client for one too, while the client's
     * record waits for its full socket: its answer goes out with that record's flush */
    if (go == 'k' &&
        (SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) != 1 || SSL_do_handshake(ssl) != 1))
        return 16;
    static unsigned char in[65536];
    size_t got = 0;
    while (got < BIG) {
        int r = SSL_read(ssl, in, sizeof in);
        if (r <= 0)
            return 14;
        for (int k = 0; k < r; k++)
            if (in[k] != big_byte(got + (size_t)k))
                return 15;
        got += (size_t)r;
    }
    return 0;
}

/* BIG bytes written through a 4 KiB socket buffer to a server that reads only once told to
 * (go: its letter, see serve_big), the socket's readable side read meanwhile as the loop does. */
static void big_write(char go)
{
    int port, s = listener(&port);
    int small = 4096;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &small, sizeof small); /* the accepted socket's too */
    int to_child;
    pid_t pid = server(s, &to_child, serve_big);
    kd_tls t;
    kd_tls_ctx *ctx = client_up(&t, port);
    setsockopt(t.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    unsigned char *big = malloc(BIG);
    assert_non_null(big);
    for (size_t i = 0; i < BIG; i++)
        big[i] = big_byte(i);
    /* the caller's contract: what was not taken is offered again, from where it stopped */
    size_t off = 0;
    int full = 0;
    bool told = false;
    while (off < BIG) {
        ssize_t w = kd_tls_write(&t, big + off, BIG - off);
        assert_true(w >= 0);
        off += (size_t)w;
        if (w == 0) {
            full++;
            assert_true(t.want_write);
            if (!told) { /* the socket is full: now the server reads */
                assert_int_equal(write(to_child, &go, 1), 1);
                told = true;
            }
            struct pollfd p = {.fd = t.fd, .events = POLLIN | POLLOUT};
            assert_true(poll(&p, 1, 5000) >= 1);
            if (p.revents & POLLIN) { /* a key update, never data */
                char in[64];
                assert_int_equal(kd_tls_read(&t, in, sizeof in), 0);
            }
        }
    }
    assert_true(full > 0); /* the socket did refuse some */
    assert_int_equal(child_status(pid), 0);
    kd_tls_free(&t, true);
    free(big);
    close(to_child);
    close(s);
    kd_tls_ctx_free(ctx);
}

static void test_write_larger_than_the_socket(void **state)
{
    (void)state;
    big_write('g');
}

/* KONE asks for a key update while a record waits in GnuTLS: GnuTLS sends its answer with
 * the record and then refuses the empty send that flushed them; the record still counts. */
static void test_key_update_while_a_record_waits(void **state)
{
    (void)state;
    big_write('k');
}

int main(void)
{
    char dir[] = "/tmp/kd-tls-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        tc_make_cert(cert_path, key_path, "kone-tls-test");
        _exit(0);
    }
    int st = 1;
    if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "could not make the test certificate\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN); /* as kone-worker's main does: a write to a closed peer fails */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_ca_file),
        cmocka_unit_test(test_not_numeric),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_closed_before_tls),
        cmocka_unit_test(test_data_behind_tickets),
        cmocka_unit_test(test_write_larger_than_the_socket),
        cmocka_unit_test(test_key_update_while_a_record_waits),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(cert_path);
    unlink(key_path);
    rmdir(dir);
    return rc;
}
