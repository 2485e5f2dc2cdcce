/* kone_wshs: the client side of the WebSocket opening handshake (RFC 6455 section 4), done by
 * the worker itself since its connections to KONE are raw TLS streams framed by wslay
 * (kone_ws.h): the request it writes and the check of the answer it reads.
 *
 * Contract: kd_wshs_start draws a fresh Sec-WebSocket-Key (OpenSSL's RAND_bytes) and writes the
 * request; kd_wshs_feed takes the answer's bytes as they come, keeps at most KD_WSHS_MAX of
 * them (a longer header block is refused: a server cannot make the worker hold more) and, once
 * the header block is whole, checks it (kd_wshs_check). The bytes after the header block are
 * already WebSocket frames: *used says where they start. No I/O, no thread, no lws here: the
 * parser is fuzzed as it is (tests/fuzz/fuzz_wshs.c). The request holds the token (in the
 * path's ?accessToken=): the caller wipes it once written, and nothing here logs.
 */
#ifndef KD_WORKER_KONE_WSHS_H
#define KD_WORKER_KONE_WSHS_H

#include <stdbool.h>
#include <stddef.h>

#define KD_WSHS_MAX 8192    /* the longest upgrade answer header block accepted */
#define KD_WSHS_KEY_LEN 24  /* base64 of 16 bytes */
#define KD_WSHS_WHY_MAX 120 /* the reason of a refusal, for the log */

typedef struct kd_wshs {
    char key[KD_WSHS_KEY_LEN + 1];
    const char *protocol; /* the subprotocol asked for (a static string) */
    size_t len;           /* bytes of the answer kept so far */
    char buf[KD_WSHS_MAX];
} kd_wshs;

typedef enum {
    KD_WSHS_MORE = 0, /* the header block is not whole yet */
    KD_WSHS_OK,       /* upgraded: frames start at in + *used */
    KD_WSHS_REFUSED,  /* status (0 when there is none to tell) and why say what went wrong */
} kd_wshs_result;

/* Draws the key and writes the GET request for path (with its query) on host:port into out;
 * returns its length, or 0 when it does not fit or no random key could be drawn. */
size_t kd_wshs_start(kd_wshs *h, const char *host, int port, const char *path, const char *protocol,
                     char *out, size_t cap);

kd_wshs_result kd_wshs_feed(kd_wshs *h, const char *in, size_t len, size_t *used, int *status,
                            char *why, size_t why_cap);

/* Checks a whole header block (up to and including its blank line) against key and protocol:
 * status 101, Upgrade: websocket, Connection: upgrade, the Sec-WebSocket-Accept of key, the
 * subprotocol (absent or the one asked for) and no extension. *status is the answer's status
 * code (0 when the status line is unreadable). */
kd_wshs_result kd_wshs_check(const char *hdr, size_t len, const char *key, const char *protocol,
                             int *status, char *why, size_t why_cap);

/* The Sec-WebSocket-Accept of key: base64(SHA-1(key + RFC 6455's GUID)) (28 chars + NUL). */
bool kd_wshs_accept_of(const char *key, char out[29]);

#endif
