/* kone_tls.c: see kone_tls.h. */
#include "kone_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "kd_err.h"

SSL_CTX *kd_tls_ctx_new(const char *ca_file, char *why, size_t why_cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(why, why_cap, "TLS: cannot create a context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* a write that the socket takes in part is a success for what it took (kd_tls_write) */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        snprintf(why, why_cap, "TLS: cannot load the CA file %s", ca_file ? ca_file : "(system)");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static bool fail(kd_tls *t, const char *what, int err)
{
    snprintf(t->why, sizeof t->why, "%s: %s", what, kd_strerror(err));
    return false;
}

/* Size of the read buffer: what one recv takes at most (a full TLS record is 16 KiB + 256) */
#define KD_TLS_RBUF 32768

/* Reads go through a buffering BIO, writes straight to the socket. The buffer reads what the
 * socket has in one recv, not each record's header and body in two, and the reader stops
 * when nothing is left in it (kd_tls_pending) instead of asking once more to be told "want
 * read" (issue 17). Not OpenSSL's read-ahead, which did the same: with bytes of a following
 * record in its buffer, OpenSSL 3.0 moves them all to the buffer's start before each record
 * (to align the payload), so a burst of N frames cost N^2/2 record lengths of memmove (6.5k
 * instructions a job, callgrind, 2026-12-05). The BIO copies each record's bytes once. */
static bool set_bios(SSL *ssl, int fd)
{
    BIO *sock = BIO_new_socket(fd, BIO_NOCLOSE);
    BIO *buf = BIO_new(BIO_f_buffer());
    if (!sock || !buf || BIO_set_read_buffer_size(buf, KD_TLS_RBUF) != 1 || !BIO_up_ref(sock)) {
        /* GCOVR_EXCL_START: fails only without memory */
        BIO_free(buf);
        BIO_free(sock);
        return false;
        /* GCOVR_EXCL_STOP */
    }
    BIO_push(buf, sock);
    SSL_set_bio(ssl, buf, sock); /* takes a reference each: sock's second is buf's link */
    return true;
}

bool kd_tls_connect(kd_tls *t, SSL_CTX *ctx, const char *address, int port, const char *host)
{
    memset(t, 0, sizeof *t);
    t->fd = -1;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    if (getaddrinfo(address, ps, &hints, &ai) || !ai) {
        snprintf(t->why, sizeof t->why, "not a numeric address: %s", address);
        return false;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return fail(t, "socket", errno);
    }
    int one = 1; /* frames are small and latency counts: no Nagle, as lws set it */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    int err = errno;
    freeaddrinfo(ai);
    if (rc && err != EINPROGRESS) {
        close(fd);
        return fail(t, "connect", err);
    }
    t->ssl = SSL_new(ctx);
    t->fd = fd;
    if (!t->ssl || !set_bios(t->ssl, fd)) {
        kd_tls_free(t, true);
        snprintf(t->why, sizeof t->why, "TLS: out of memory");
        return false;
    }
    /* The name checks libwebsockets made: an IP address against the certificate's IP SANs,
     * a name against its DNS names (and sent as SNI). */
    X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
    if (!X509_VERIFY_PARAM_set1_ip_asc(vp, host) &&
        (!SSL_set_tlsext_host_name(t->ssl, host) || !SSL_set1_host(t->ssl, host))) {
        /* GCOVR_EXCL_START: fails only without memory */
        /* without the name to check, any certificate of the CA would pass: refuse instead */
        kd_tls_free(t, true);
        snprintf(t->why, sizeof t->why, "TLS: out of memory");
        return false;
        /* GCOVR_EXCL_STOP */
    }
    SSL_set_connect_state(t->ssl);
    t->want_write = true; /* the connect completes when the socket becomes writable */
    return true;
}

kd_tls_state kd_tls_step(kd_tls *t)
{
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->want_write = false;
        return KD_TLS_UP;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        t->want_write = e == SSL_ERROR_WANT_WRITE;
        return KD_TLS_AGAIN;
    }
    long v = SSL_get_verify_result(t->ssl);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (v != X509_V_OK)
        snprintf(t->why, sizeof t->why, "TLS: KONE's certificate refused: %s",
                 X509_verify_cert_error_string(v));
    else if (!getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) && soerr)
        fail(t, "connect", soerr);
    else if (e == SSL_ERROR_SYSCALL && errno)
        fail(t, "connect", errno);
    else
        snprintf(t->why, sizeof t->why, "TLS handshake failed (%s)",
                 ERR_reason_error_string(ERR_peek_last_error()) ?: "connection closed");
    return KD_TLS_FAILED;
}

/* SSL_get_error needs this thread's error queue empty before the call; peeking is a fraction
 * of what clearing an empty queue costs (~800 instructions a read, several reads a job). */
static void err_clear(void)
{
    if (ERR_peek_error())
        ERR_clear_error();
}

ssize_t kd_tls_read(kd_tls *t, void *buf, size_t cap)
{
    err_clear();
    int r = SSL_read(t->ssl, buf, cap > 1 << 30 ? 1 << 30 : (int)cap);
    if (r > 0)
        return r;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return 0;
    if (e == SSL_ERROR_WANT_WRITE) {
        t->want_write = true;
        return 0;
    }
    snprintf(t->why, sizeof t->why, "%s",
             e == SSL_ERROR_ZERO_RETURN ? "KONE ended the TLS stream" : "connection lost");
    return -1;
}

bool kd_tls_pending(const kd_tls *t)
{
    /* a record read in part by the last SSL_read, or bytes in the read BIO's buffer */
    return SSL_has_pending(t->ssl) == 1 || BIO_ctrl_pending(SSL_get_rbio(t->ssl)) > 0;
}

ssize_t kd_tls_write(kd_tls *t, const void *buf, size_t len)
{
    err_clear();
    int r = SSL_write(t->ssl, buf, len > 1 << 30 ? 1 << 30 : (int)len);
    if (r > 0) {
        t->want_write = (size_t)r < len;
        return r;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        t->want_write = e == SSL_ERROR_WANT_WRITE;
        return 0;
    }
    snprintf(t->why, sizeof t->why, "write failed");
    return -1;
}

void kd_tls_closed(kd_tls *t)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (!t->why[0] && t->fd >= 0 && !getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) && soerr)
        fail(t, "connect", soerr);
}

void kd_tls_free(kd_tls *t, bool close_fd)
{
    if (t->ssl)
        SSL_free(t->ssl);
    if (close_fd && t->fd >= 0)
        close(t->fd);
    t->ssl = NULL;
    t->fd = -1;
}
