/* kone_tls: one non-blocking TLS client stream over a TCP socket, GnuTLS driven by hand, for
 * the worker's KONE connections (kone_conn.c), whose socket libwebsockets' loop only watches
 * (adopted as a raw descriptor: it polls, we read and write).
 *
 * Why GnuTLS here when the rest of the process (libwebsockets' token fetch, libpq,
 * rabbitmq-c, librdkafka) uses OpenSSL: KONE sends one TLS record per frame, six or more a
 * job, and Debian 12's OpenSSL 3.0 spends ~6.6k instructions reading each small record (it
 * re-initialises the cipher through provider parameter lookups per record); GnuTLS 3.7
 * ~4.8k, the same records and ciphers (docs/perf/tls_records, docs/performance.md, issue 17).
 * The checks are the same in both: TLS 1.2 at least, the peer's chain verified against the
 * CA file or the system's store, its name or IP address, SNI for a name.
 *
 * Why not libwebsockets' raw client with TLS: in lws 4.1.6 (Debian's) a "RAW" client with
 * LCCSCF_USE_SSL starts its TLS handshake before the socket exists and fails every time
 * ("lws_tls_client_connect: n -1, m 5, errno 9"; fixed in later lws, which skip early TLS for
 * raw-skt). So the connect and TLS are ours, with the checks lws made: the CA file (or the
 * system's), the peer's certificate verified, its name (SNI + host name) or IP address.
 *
 * Contract: kd_tls_ctx_new once per client; kd_tls_connect starts a non-blocking connect to a
 * numeric address; then the owner calls kd_tls_step whenever the socket is readable or
 * writable until it says KD_TLS_UP, and kd_tls_read / kd_tls_write after. Each call says what
 * the socket must be polled for next (want_write). Loop thread only; nothing here logs. The
 * process ignores SIGPIPE (kone-worker's main): a write to a peer that closed fails (EPIPE)
 * instead of killing it.
 */
#ifndef KD_WORKER_KONE_TLS_H
#define KD_WORKER_KONE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <gnutls/gnutls.h>

/* The client's credentials (the CA store), shared by its connections; loop thread only. */
typedef struct kd_tls_ctx kd_tls_ctx;

/* Bytes read from the socket and not yet taken by GnuTLS: one recv takes what the socket
 * has, not each record's header and body in two (a full TLS record is 16 KiB + 256). */
#define KD_TLS_RBUF 32768

typedef struct kd_tls {
    int fd;               /* -1: none (the owner's loop closes it once adopted) */
    gnutls_session_t ssl; /* NULL until kd_tls_connect made it */
    bool want_write;      /* poll for POLLOUT before the next step/read/write */
    bool host_is_ip;      /* the name checked is an IP address (says which mismatch) */
    size_t send_pending;  /* GnuTLS holds a record of this many of the caller's bytes (E_AGAIN) */
    char *host;           /* the name checked, GnuTLS keeps a pointer to it: ours to keep */
    int sys_err;          /* the last socket error the transport met (errno), 0: none */
    size_t r_off, r_len;  /* rbuf[r_off, r_off + r_len): read, not yet taken */
    size_t r_taken;       /* bytes GnuTLS took from rbuf so far (did a call take any) */
    char why[120];        /* why it failed */
    unsigned char *rbuf;  /* KD_TLS_RBUF bytes, allocated with the session */
} kd_tls;

typedef enum {
    KD_TLS_AGAIN = 0, /* in progress (connect or handshake): wait for the socket */
    KD_TLS_UP,        /* the handshake completed */
    KD_TLS_FAILED,    /* why says why */
} kd_tls_state;

/* A client context: TLS 1.2 at least, the peer verified against ca_file (NULL: the system's
 * store). NULL when the CA file does not load (or holds no certificate). */
kd_tls_ctx *kd_tls_ctx_new(const char *ca_file, char *why, size_t why_cap);
void kd_tls_ctx_free(kd_tls_ctx *ctx); /* after every kd_tls made with it is freed */
/* Starts connecting to address (numeric) and port; the certificate must name host. false
 * (why set) when it failed at once. t->fd is then the socket to watch. */
bool kd_tls_connect(kd_tls *t, kd_tls_ctx *ctx, const char *address, int port, const char *host);
kd_tls_state kd_tls_step(kd_tls *t);
/* What the handshake agreed, for the log: "TLS1.3 AES-128-GCM". */
const char *kd_tls_params(const kd_tls *t, char *buf, size_t len);
/* >0 bytes read, 0 nothing more for now, -1 closed or failed (why says which). */
ssize_t kd_tls_read(kd_tls *t, void *buf, size_t cap);
/* TLS holds bytes already read from the socket (a record, or part of one): kd_tls_read may
 * return more without the socket being readable. When false, wait for the socket. */
bool kd_tls_pending(const kd_tls *t);
/* bytes taken (0: none for now, try when writable), -1 failed. */
ssize_t kd_tls_write(kd_tls *t, const void *buf, size_t len);
/* The loop closed the socket before TLS was up (poll said hang-up or error): why becomes the
 * socket's error (a refused connect), when it has one and nothing else was said. */
void kd_tls_closed(kd_tls *t);
/* Frees the TLS state; the socket itself is closed by its owner (close_fd: not adopted). */
void kd_tls_free(kd_tls *t, bool close_fd);

#endif
