/* kone_tls.c: see kone_tls.h. */
#include "kone_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "kd_err.h"

struct kd_tls_ctx {
    gnutls_certificate_credentials_t cred;
    gnutls_priority_t prio;
};

/* TLS 1.3 and 1.2 only, GnuTLS's usual ciphers and groups otherwise. */
#define KD_TLS_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

kd_tls_ctx *kd_tls_ctx_new(const char *ca_file, char *why, size_t why_cap)
{
    kd_tls_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx || gnutls_certificate_allocate_credentials(&ctx->cred) < 0 ||
        gnutls_priority_init(&ctx->prio, KD_TLS_PRIORITY, NULL) < 0) {
        /* GCOVR_EXCL_START: fails only without memory */
        snprintf(why, why_cap, "TLS: cannot create a context");
        kd_tls_ctx_free(ctx);
        return NULL;
        /* GCOVR_EXCL_STOP */
    }
    /* the number of certificates loaded: none is as bad as a file that does not parse */
    int n = ca_file
                ? gnutls_certificate_set_x509_trust_file(ctx->cred, ca_file, GNUTLS_X509_FMT_PEM)
                : gnutls_certificate_set_x509_system_trust(ctx->cred);
    if (n <= 0) {
        snprintf(why, why_cap, "TLS: cannot load the CA file %s", ca_file ? ca_file : "(system)");
        kd_tls_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

void kd_tls_ctx_free(kd_tls_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->cred)
        gnutls_certificate_free_credentials(ctx->cred);
    if (ctx->prio)
        gnutls_priority_deinit(ctx->prio);
    free(ctx);
}

static bool fail(kd_tls *t, const char *what, int err)
{
    snprintf(t->why, sizeof t->why, "%s: %s", what, kd_strerror(err));
    return false;
}

/* ------------------------------------------------------------------ the transport */

/* GnuTLS asks for a record's header, then its body: both come from rbuf, filled by one recv
 * of whatever the socket has (the reader stops when nothing is left in it, kd_tls_pending,
 * instead of asking once more to be told "again"). */
static ssize_t pull(gnutls_transport_ptr_t p, void *to, size_t n)
{
    kd_tls *t = p;
    if (!t->r_len) {
        ssize_t r = recv(t->fd, t->rbuf, KD_TLS_RBUF, 0);
        if (r <= 0) {
            if (r < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    t->sys_err = errno;
                gnutls_transport_set_errno(t->ssl, errno);
            }
            return r; /* 0: the peer closed the TCP stream */
        }
        t->r_off = 0;
        t->r_len = (size_t)r;
    }
    if (n > t->r_len)
        n = t->r_len;
    memcpy(to, t->rbuf + t->r_off, n);
    t->r_off += n;
    t->r_len -= n;
    t->r_taken += n;
    return (ssize_t)n;
}

static ssize_t push(gnutls_transport_ptr_t p, const void *from, size_t n)
{
    kd_tls *t = p;
    ssize_t r = send(t->fd, from, n, MSG_NOSIGNAL);
    if (r < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            t->sys_err = errno;
        gnutls_transport_set_errno(t->ssl, errno);
    }
    return r;
}

/* ------------------------------------------------------------------ connecting */

bool kd_tls_connect(kd_tls *t, kd_tls_ctx *ctx, const char *address, int port, const char *host)
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
    t->fd = fd;
    unsigned char ip[16];
    t->host_is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    /* The name checks libwebsockets made: an IP address against the certificate's IP SANs,
     * a name against its DNS names (and sent as SNI, never an address: RFC 6066). */
    if (!(t->rbuf = malloc(KD_TLS_RBUF)) ||
        gnutls_init(&t->ssl, GNUTLS_CLIENT | GNUTLS_NONBLOCK) < 0 ||
        gnutls_priority_set(t->ssl, ctx->prio) < 0 ||
        gnutls_credentials_set(t->ssl, GNUTLS_CRD_CERTIFICATE, ctx->cred) < 0 ||
        (!t->host_is_ip &&
         gnutls_server_name_set(t->ssl, GNUTLS_NAME_DNS, host, strlen(host)) < 0)) {
        /* GCOVR_EXCL_START: fails only without memory */
        kd_tls_free(t, true);
        snprintf(t->why, sizeof t->why, "TLS: out of memory");
        return false;
        /* GCOVR_EXCL_STOP */
    }
    /* without the name to check, any certificate of the CA would pass: it is always given
     * (GnuTLS keeps the pointer: the copy lives as long as the session) */
    if (!(t->host = strdup(host))) {
        /* GCOVR_EXCL_START: fails only without memory */
        kd_tls_free(t, true);
        snprintf(t->why, sizeof t->why, "TLS: out of memory");
        return false;
        /* GCOVR_EXCL_STOP */
    }
    gnutls_session_set_verify_cert(t->ssl, t->host, 0);
    gnutls_transport_set_ptr(t->ssl, t);
    gnutls_transport_set_pull_function(t->ssl, pull);
    gnutls_transport_set_push_function(t->ssl, push);
    t->want_write = true; /* the connect completes when the socket becomes writable */
    return true;
}

/* What a refused certificate's status says, in the words the logs and RUNBOOK use. */
static const char *refused_why(const kd_tls *t, unsigned st)
{
    if (st & GNUTLS_CERT_EXPIRED)
        return "certificate has expired";
    if (st & GNUTLS_CERT_NOT_ACTIVATED)
        return "certificate is not yet valid";
    if (st & GNUTLS_CERT_REVOKED)
        return "certificate revoked";
    if (st & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA))
        return "unable to get local issuer certificate";
    if (st & GNUTLS_CERT_UNEXPECTED_OWNER)
        return t->host_is_ip ? "IP address mismatch" : "hostname mismatch";
    if (st & GNUTLS_CERT_INSECURE_ALGORITHM)
        return "insecure signature algorithm";
    return "certificate not trusted";
}

kd_tls_state kd_tls_step(kd_tls *t)
{
    int r;
    /* a warning alert is not fatal; what follows it may be in rbuf already: go on (a peer
     * that sends more than four in a row fails the handshake, as a fatal error would) */
    int warnings = 0;
    while ((r = gnutls_handshake(t->ssl)) == GNUTLS_E_WARNING_ALERT_RECEIVED && ++warnings <= 4)
        ;
    if (r == GNUTLS_E_SUCCESS) {
        t->want_write = false;
        return KD_TLS_UP;
    }
    if (!gnutls_error_is_fatal(r) && r != GNUTLS_E_WARNING_ALERT_RECEIVED) { /* again */
        t->want_write = gnutls_record_get_direction(t->ssl) == 1;
        return KD_TLS_AGAIN;
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR)
        snprintf(t->why, sizeof t->why, "TLS: KONE's certificate refused: %s",
                 refused_why(t, gnutls_session_get_verify_cert_status(t->ssl)));
    else if (!getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) && soerr)
        fail(t, "connect", soerr);
    else if (t->sys_err)
        fail(t, "connect", t->sys_err);
    else
        snprintf(t->why, sizeof t->why, "TLS handshake failed (%s)",
                 r == GNUTLS_E_PREMATURE_TERMINATION || r == GNUTLS_E_PULL_ERROR
                     ? "connection closed"
                     : gnutls_strerror(r));
    return KD_TLS_FAILED;
}

const char *kd_tls_params(const kd_tls *t, char *buf, size_t len)
{
    snprintf(buf, len, "%s %s",
             gnutls_protocol_get_name(gnutls_protocol_get_version(t->ssl)) ?: "?",
             gnutls_cipher_get_name(gnutls_cipher_get(t->ssl)) ?: "?");
    return buf;
}

/* ------------------------------------------------------------------ the stream */

ssize_t kd_tls_read(kd_tls *t, void *buf, size_t cap)
{
    /* Records that are not data end a call too: GnuTLS 3.7 answers "again" after a TLS 1.3
     * session ticket or key update, a warning alert or a TLS 1.2 renegotiation request (refused
     * by ignoring it) is non-fatal. With bytes left in rbuf nobody would be told to come back
     * (the socket may have nothing more), so the reader goes on while each call takes some. */
    for (int k = 0; k < 4;) {
        size_t before = t->r_taken;
        ssize_t r = gnutls_record_recv(t->ssl, buf, cap);
        if (r > 0)
            return r;
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
            if (t->r_len && t->r_taken != before)
                continue;
            t->want_write = gnutls_record_get_direction(t->ssl) == 1; /* a key update's answer */
            return 0;
        }
        if (r != 0 && !t->sys_err && !gnutls_error_is_fatal((int)r)) {
            k++; /* a warning alert, a renegotiation request: read past it */
            continue;
        }
        if (r == 0)
            snprintf(t->why, sizeof t->why, "KONE ended the TLS stream");
        else if (t->sys_err)
            fail(t, "connection lost", t->sys_err);
        else
            snprintf(t->why, sizeof t->why, "connection lost (%s)",
                     r == GNUTLS_E_PREMATURE_TERMINATION ? "closed without a TLS close"
                                                         : gnutls_strerror((int)r));
        return -1;
    }
    return 0; /* GCOVR_EXCL_LINE: four non-fatal alerts in a row */
}

bool kd_tls_pending(const kd_tls *t)
{
    /* a record read in part by the last read, or bytes in rbuf */
    return t->r_len > 0 || gnutls_record_check_pending(t->ssl) > 0;
}

ssize_t kd_tls_write(kd_tls *t, const void *buf, size_t len)
{
    /* One record a call, so that a record GnuTLS could not send whole holds exactly what it
     * was given: the caller offers the same bytes again (it was told none were taken), and
     * gnutls_record_send(NULL, 0) sends the record first. Its count is ours to keep: a key
     * update KONE asked for meanwhile goes out in that flush, after which GnuTLS refuses the
     * empty send (GNUTLS_E_INVALID_REQUEST) though the record went. */
    size_t max = gnutls_record_get_max_size(t->ssl);
    if (len > max)
        len = max;
    ssize_t r = t->send_pending ? gnutls_record_send(t->ssl, NULL, 0)
                                : gnutls_record_send(t->ssl, buf, len);
    if (t->send_pending && r == GNUTLS_E_INVALID_REQUEST)
        r = (ssize_t)t->send_pending;
    if (r > 0) {
        t->send_pending = 0;
        t->want_write = false;
        return r;
    }
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
        if (!t->send_pending)
            t->send_pending = len;
        t->want_write = gnutls_record_get_direction(t->ssl) == 1;
        return 0;
    }
    if (t->sys_err)
        fail(t, "write failed", t->sys_err);
    else
        snprintf(t->why, sizeof t->why, "write failed (%s)", gnutls_strerror((int)r));
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
        gnutls_deinit(t->ssl);
    free(t->rbuf);
    free(t->host);
    t->host = NULL;
    if (close_fd && t->fd >= 0)
        close(t->fd);
    t->ssl = NULL;
    t->rbuf = NULL;
    t->r_len = t->r_off = 0;
    t->send_pending = 0;
    t->fd = -1;
}
