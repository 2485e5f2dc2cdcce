/* kone_ws.c: see kone_ws.h. */
#include "kone_ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "kd_buf.h"
#include "kd_str.h"

/* What the output buffer takes from wslay at most: the rest of wslay's queue waits until
 * the socket took this, so a burst never grows the buffer without bound. */
#define WS_OUT_MAX ((size_t)64 * 1024)

/* wslay hands over framed (masked) bytes: they wait in out for the socket (kd_ws_pending). */
static ssize_t on_send(wslay_event_context_ptr ev, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    (void)flags;
    kd_ws *w = user;
    size_t room = w->out_len < WS_OUT_MAX ? WS_OUT_MAX - w->out_len : 0;
    if (!room) {
        wslay_event_set_error(ev, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (len > room)
        len = room;
    if (kd_buf_append(&w->out, &w->out_len, &w->out_cap, data, len)) {
        wslay_event_set_error(ev, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

/* A client's frames are masked with a key the server cannot predict (RFC 6455 5.3): OpenSSL's
 * generator, drawn 256 bytes at a time so a frame does not pay for a RAND_bytes call. */
static int on_genmask(wslay_event_context_ptr ev, uint8_t *buf, size_t len, void *user)
{
    (void)ev;
    kd_ws *w = user;
    if (len > sizeof w->mask_pool)
        return -1;
    if (w->mask_used + len > sizeof w->mask_pool) {
        if (RAND_bytes(w->mask_pool, sizeof w->mask_pool) != 1)
            return -1;
        w->mask_used = 0;
    }
    memcpy(buf, w->mask_pool + w->mask_used, len);
    w->mask_used += len;
    return 0;
}

/* wslay's frame layer asks for bytes: those kd_ws_rx was handed (0: none left, it waits). */
static ssize_t on_frame_in(uint8_t *buf, size_t len, int flags, void *user)
{
    (void)flags;
    kd_ws *w = user;
    size_t n = w->in_len < len ? w->in_len : len;
    memcpy(buf, w->in, n);
    w->in += n;
    w->in_len -= n;
    return (ssize_t)n;
}

static const struct wslay_frame_callbacks rx_callbacks = {.recv_callback = on_frame_in};

/* wslay's event layer is only for sending (kd_ws_rx reads through its frame layer and
 * kone_wsmsg.c): pongs, closes and refusals are queued on it, and a text frame when one of
 * those waits before it (kd_ws_send frames the others itself). wslay_event_recv is never
 * called, so it needs no receive callbacks. */
static const struct wslay_event_callbacks ws_callbacks = {
    .send_callback = on_send,
    .genmask_callback = on_genmask,
};

bool kd_ws_open(kd_ws *w, const char *host, int port, const char *path, const char *protocol,
                size_t max_msg, kd_ws_msg_fn on_msg_fn, void *user)
{
    kd_ws_free(w);
    w->max_msg = max_msg;
    w->on_msg = on_msg_fn;
    w->user = user;
    w->mask_used = sizeof w->mask_pool; /* drawn at the first frame */
    w->hs = malloc(sizeof *w->hs);
    size_t cap = strlen(path) + strlen(host) * 2 + 512;
    char *req = malloc(cap);
    size_t n = w->hs && req ? kd_wshs_start(w->hs, host, port, path, protocol, req, cap) : 0;
    w->out_secret = true; /* the request holds the token: wiped once written, or freed */
    bool ok = n && !kd_buf_append(&w->out, &w->out_len, &w->out_cap, req, n);
    if (req)
        explicit_bzero(req, cap);
    free(req);
    return ok;
}

static kd_ws_result end(kd_ws *w, int code, const char *why)
{
    if (!w->code)
        w->code = code;
    if (!w->why[0])
        kd_str_copy(w->why, sizeof w->why, why);
    return KD_WS_END;
}

static kd_ws_result upgrade_rx(kd_ws *w, const char *in, size_t len)
{
    size_t used = 0;
    kd_wshs_result r = kd_wshs_feed(w->hs, in, len, &used, &w->http_status, w->why, sizeof w->why);
    if (r == KD_WSHS_MORE)
        return KD_WS_OK;
    free(w->hs);
    w->hs = NULL;
    if (r == KD_WSHS_REFUSED)
        return KD_WS_END;
    w->http_status = 0;
    if (wslay_event_context_client_init(&w->ev, &ws_callbacks, w) ||
        wslay_frame_context_init(&w->rx, &rx_callbacks, w))
        return end(w, WSLAY_CODE_INTERNAL_SERVER_ERROR, "out of memory opening the WebSocket");
    w->m.max = w->max_msg;
    /* frames that came with the answer wait for the owner's kd_ws_rx(w, NULL, 0) */
    w->in = (const unsigned char *)in + used;
    w->in_len = len - used;
    return KD_WS_OPENED;
}

/* The stream is over on our side: kone_wsmsg's refusal, with the close frame that says it. */
static kd_ws_result refuse(kd_ws *w, int code, const char *why)
{
    w->rx_done = true;
    wslay_event_queue_close(w->ev, (uint16_t)code, NULL, 0);
    return end(w, code, why);
}

kd_ws_result kd_ws_rx(kd_ws *w, const void *in, size_t len)
{
    if (w->hs)
        return in ? upgrade_rx(w, in, len) : KD_WS_OK;
    if (!w->ev || !w->rx)
        return end(w, 0, "no WebSocket");
    if (w->rx_done)
        return KD_WS_END;
    if (in) {
        w->in = in;
        w->in_len = len;
    }
    for (;;) {
        struct wslay_frame_iocb io;
        memset(&io, 0, sizeof io);
        ssize_t r = wslay_frame_recv(w->rx, &io);
        if (r == WSLAY_ERR_WANT_READ && w->in_len)
            continue; /* wslay took a piece of a header: the rest is here */
        if (r == WSLAY_ERR_WANT_READ)
            break; /* all of it read: the rest of a frame comes with the next read */
        if (r < 0) /* wslay's frame layer refused the bytes (a header it does not allow) */
            return refuse(w, WSLAY_CODE_PROTOCOL_ERROR, "malformed frame from KONE");
        switch (kd_wsmsg_chunk(&w->m, &io)) {
        case KD_WSMSG_MORE: break;
        case KD_WSMSG_MESSAGE:
            w->on_msg(w->m.msg_len ? w->m.msg : "", w->m.msg_len, w->user);
            break;
        case KD_WSMSG_PING: {
            struct wslay_event_msg pong = {WSLAY_PONG, w->m.ctl, w->m.ctl_len};
            wslay_event_queue_msg(w->ev, &pong); /* refused only once our close is queued */
            break;
        }
        case KD_WSMSG_CLOSE:
            /* answered with its code (none: an empty close), as RFC 6455 5.5.1 asks */
            w->rx_done = w->peer_closed = true;
            w->code = w->m.code ? w->m.code : WSLAY_CODE_NO_STATUS_RCVD;
            wslay_event_queue_close(w->ev, (uint16_t)w->m.code, NULL, 0);
            return end(w, 0, "KONE closed the connection");
        case KD_WSMSG_FAIL: return refuse(w, w->m.code, w->m.why);
        }
    }
    w->in_len = 0;
    return KD_WS_OK;
}

/* XORs n bytes at p with the 4-byte mask, 8 bytes at a time (p need not be aligned). */
static void mask_bytes(uint8_t *p, size_t n, const uint8_t mask[4])
{
    uint32_t m32;
    memcpy(&m32, mask, 4);
    uint64_t m64 = (uint64_t)m32 << 32 | m32, x;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&x, p + i, 8);
        x ^= m64;
        memcpy(p + i, &x, 8);
    }
    for (; i < n; i++)
        p[i] ^= mask[i % 4];
}

/* One text message framed straight into out, as wslay frames it (RFC 6455 5.2: FIN, opcode
 * text, the shortest length form, masked with 4 bytes from the pool). Why not wslay's queue:
 * it copied each message into an allocated event, then masked it a byte at a time into our
 * on_send (~2.5k instructions a call, issue 17). */
static bool frame_text(kd_ws *w, const char *text, size_t len)
{
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = 0x81;
    if (len < 126) {
        h[hl++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        h[hl++] = 0x80 | 126;
        h[hl++] = (uint8_t)(len >> 8);
        h[hl++] = (uint8_t)len;
    } else {
        h[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            h[hl++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint8_t *mask = h + hl;
    if (on_genmask(w->ev, mask, 4, w))
        return false;
    hl += 4;
    size_t at = w->out_len + hl;
    if (kd_buf_append(&w->out, &w->out_len, &w->out_cap, h, hl))
        return false;
    if (kd_buf_append(&w->out, &w->out_len, &w->out_cap, text, len)) {
        w->out_len = at - hl; /* the header alone would corrupt the stream */
        return false;
    }
    mask_bytes((uint8_t *)w->out + at, len, mask);
    return true;
}

bool kd_ws_send(kd_ws *w, const char *text, size_t len)
{
    if (!w->ev)
        return false;
    w->n_sent++;
    /* Straight into out unless something of wslay's must go first: a queued pong or close,
     * or a frame it has only partly handed over (want_write), or a close already sent (its
     * queue refuses then too). Past WS_OUT_MAX the message waits in wslay's queue, as before,
     * until the socket has taken the rest. */
    if (wslay_event_get_write_enabled(w->ev) && !wslay_event_get_close_sent(w->ev) &&
        !wslay_event_want_write(w->ev) && w->out_len + len + 14 <= WS_OUT_MAX)
        return frame_text(w, text, len);
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)text, len};
    return wslay_event_queue_msg(w->ev, &m) == 0;
}

uint64_t kd_ws_sent(const kd_ws *w)
{
    return w->n_sent;
}

bool kd_ws_want_write(const kd_ws *w)
{
    return w->out_off < w->out_len || (w->ev && wslay_event_want_write(w->ev));
}

bool kd_ws_upgraded(const kd_ws *w)
{
    return w->ev != NULL;
}

bool kd_ws_done(const kd_ws *w)
{
    return w->ev && !wslay_event_get_write_enabled(w->ev) && w->out_off == w->out_len;
}

bool kd_ws_pending(kd_ws *w, const unsigned char **p, size_t *n)
{
    /* new bytes from wslay only once the socket took all of the previous ones: a partial
     * write leaves the rest where it is, for the next try (kd_ws_consumed) */
    if (w->out_off == w->out_len && w->ev && wslay_event_send(w->ev) < 0)
        return false;
    *p = (const unsigned char *)w->out + w->out_off;
    *n = w->out_len - w->out_off;
    return true;
}

void kd_ws_consumed(kd_ws *w, size_t n)
{
    w->out_off += n;
    if (w->out_off < w->out_len)
        return;
    if (w->out_secret) {
        explicit_bzero(w->out, w->out_len);
        w->out_secret = false;
    }
    w->out_off = w->out_len = 0;
}

void kd_ws_free(kd_ws *w)
{
    if (w->ev)
        wslay_event_context_free(w->ev);
    if (w->out && w->out_secret)
        explicit_bzero(w->out, w->out_cap);
    if (w->rx)
        wslay_frame_context_free(w->rx);
    kd_wsmsg_free(&w->m);
    free(w->out);
    free(w->hs);
    w->ev = NULL;
    w->hs = NULL;
    w->out = NULL;
    w->out_len = w->out_off = w->out_cap = 0;
    w->rx = NULL;
    w->rx_done = false;
    w->out_secret = false;
    w->in_len = 0;
    w->peer_closed = false;
    w->code = w->http_status = 0;
    w->why[0] = '\0';
    w->n_sent = 0;
}
