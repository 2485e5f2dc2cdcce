/* kone_ws: one client WebSocket over a TLS byte stream (kone_tls.h), framed by wslay (Debian's
 * libwslay1): the opening handshake (kone_wshs.h), then wslay's event API for what we send (it
 * masks our frames and queues pongs and close frames; a text frame with nothing of wslay's
 * before it is framed into the output directly), and wslay's frame layer for what we
 * receive, under a message layer of ours (kone_wsmsg.h: fragments put back together in one
 * buffer per connection, control frames, close codes, the length limit, the UTF-8 of text
 * messages checked 16 ASCII bytes at a time; wslay's event layer checked it a byte at a time and
 * allocated per frame: docs/performance.md).
 *
 * Why not libwebsockets' own WebSocket client: its receive path walks every byte through a
 * state machine (~89 instructions a byte, docs/performance.md); wslay reads headers and copies
 * payloads (about 5x cheaper a frame). libwebsockets still runs the loop and the timers.
 *
 * Contract: the owner (kone_conn.c) calls kd_ws_open before the stream is up (the request
 * waits in the output), feeds what it reads to kd_ws_rx, queues text frames with kd_ws_send,
 * and when the socket is writable writes what kd_ws_pending gives and tells kd_ws_consumed
 * how much the socket took, asking to be called again while kd_ws_want_write. Messages
 * reach on_msg (valid during the call only, not NUL-terminated);
 * a close frame, a malformed frame or a too long message ends the stream: kd_ws_rx returns
 * KD_WS_END with the code and reason in the kd_ws, and after the close frame we answer with
 * is written the owner drops the connection. Loop thread only; nothing here logs (the token
 * is in the request: kd_ws_consumed wipes it once written). No I/O here.
 */
#ifndef KD_WORKER_KONE_WS_H
#define KD_WORKER_KONE_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wslay/wslay.h>

#include "kone_wshs.h"
#include "kone_wsmsg.h"

typedef void (*kd_ws_msg_fn)(const char *msg, size_t len, void *user);

typedef struct kd_ws {
    kd_wshs *hs;                /* during the handshake; NULL once upgraded */
    wslay_event_context_ptr ev; /* once upgraded */
    const unsigned char *in;    /* what kd_ws_rx is handing wslay's recv callback */
    size_t in_len;
    char *out; /* what waits for the socket: out[out_off..out_len) (kd_buf) */
    size_t out_off, out_len, out_cap;
    bool out_secret; /* out holds the request (the token): wipe it once written */
    size_t max_msg;  /* a longer message ends the stream (code 1009) */
    kd_ws_msg_fn on_msg;
    wslay_frame_context_ptr rx; /* once upgraded: wslay's frame layer, for receiving */
    kd_wsmsg m;                 /* the message layer over it (kone_wsmsg.h) */
    bool rx_done;               /* a close came or was refused: nothing more is read */
    void *user;
    /* why the stream ended (KD_WS_END) */
    bool peer_closed; /* KONE sent a close frame: code is its code (1005: none given) */
    int code;         /* the close code, ours (1002, 1007, 1009) or KONE's */
    int http_status;  /* a refused upgrade: its status (0: none) */
    char why[KD_WSHS_WHY_MAX];
    uint8_t mask_pool[256]; /* random bytes for the frames' masks, drawn 256 at a time */
    size_t mask_used;
    uint64_t n_sent; /* messages kd_ws_send took */
} kd_ws;

typedef enum {
    KD_WS_OK = 0, /* go on */
    KD_WS_OPENED, /* the upgrade completed with these bytes (frames after it are handled) */
    KD_WS_END,    /* the stream is over: why, code, peer_closed, http_status say how */
} kd_ws_result;

/* Starts the handshake: the request for path on host:port is queued. False when out of
 * memory (or no random key). */
bool kd_ws_open(kd_ws *w, const char *host, int port, const char *path, const char *protocol,
                size_t max_msg, kd_ws_msg_fn on_msg, void *user);
kd_ws_result kd_ws_rx(kd_ws *w, const void *in, size_t len);
/* Queues one text frame (copied: framed into the output at once when nothing of wslay's waits
 * before it, else queued in wslay); false when the stream cannot take it any more. */
bool kd_ws_send(kd_ws *w, const char *text, size_t len);
/* The bytes to write next (*n 0: none); false when wslay failed (drop the connection). */
bool kd_ws_pending(kd_ws *w, const unsigned char **p, size_t *n);
void kd_ws_consumed(kd_ws *w, size_t n); /* the socket took n of them */
bool kd_ws_want_write(const kd_ws *w);
uint64_t kd_ws_sent(const kd_ws *w); /* messages kd_ws_send took since kd_ws_open */
bool kd_ws_upgraded(const kd_ws *w);
/* A close frame (ours or KONE's) went out, or the stream ended otherwise: nothing more to say. */
bool kd_ws_done(const kd_ws *w);
void kd_ws_free(kd_ws *w); /* w may be opened again */

#endif
