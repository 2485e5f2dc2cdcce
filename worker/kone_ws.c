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

static ssize_t on_recv(wslay_event_context_ptr ev, uint8_t *buf, size_t len, int flags, void *user)
{
    (void)flags;
    kd_ws *w = user;
    if (!w->in_len) {
        wslay_event_set_error(ev, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = w->in_len < len ? w->in_len : len;
    memcpy(buf, w->in, n);
    w->in += n;
    w->in_len -= n;
    return (ssize_t)n;
}

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

/* A message's frames, without wslay's buffering (wslay_event_config_set_no_buffering): wslay
 * would malloc a chunk for every frame and a second buffer for every message and free both (a
 * third of its cost per frame, docs/performance.md); here the payload goes straight into one
 * buffer kept for the connection's life. wslay still checks what it checked: the frame layer,
 * the order of fragments and control frames, the UTF-8 of text messages (before the chunk
 * callback and again at a message's end, before on_frame_end), the length of one frame
 * (max_recv_msg_length); the length of a whole message is checked here. Control frames are
 * buffered by wslay whatever the setting and come to on_msg. */
static void on_frame_start(wslay_event_context_ptr ev,
                           const struct wslay_event_on_frame_recv_start_arg *a, void *user)
{
    kd_ws *w = user;
    w->in_data = !(a->opcode & 0x8); /* text, binary or a continuation of one */
    if (!w->in_data)
        return;
    if (a->opcode != WSLAY_CONTINUATION_FRAME)
        w->msg_len = 0; /* a new message (wslay refused a new one inside a fragmented one) */
    w->msg_fin = a->fin;
    if (a->payload_length > w->max_msg - w->msg_len) {
        /* as wslay does for one frame over the limit: its close frame, and no more reading */
        w->in_data = false;
        w->msg_len = 0;
        wslay_event_queue_close(ev, WSLAY_CODE_MESSAGE_TOO_BIG, NULL, 0);
        wslay_event_shutdown_read(ev);
    }
}

static void on_frame_chunk(wslay_event_context_ptr ev,
                           const struct wslay_event_on_frame_recv_chunk_arg *a, void *user)
{
    kd_ws *w = user;
    if (!w->in_data || !a->data_length)
        return;
    if (kd_buf_append(&w->msg, &w->msg_len, &w->msg_cap, a->data, a->data_length)) {
        w->in_data = false;
        w->nomem = true; /* kd_ws_rx ends the stream */
        wslay_event_shutdown_read(ev);
    }
}

static void on_frame_end(wslay_event_context_ptr ev, void *user)
{
    (void)ev;
    kd_ws *w = user;
    if (!w->in_data || !w->msg_fin)
        return;
    w->in_data = false;
    size_t n = w->msg_len;
    w->msg_len = 0;
    w->on_msg(n ? w->msg : "", n, w->user);
}

static void on_msg(wslay_event_context_ptr ev, const struct wslay_event_on_msg_recv_arg *a,
                   void *user)
{
    (void)ev;
    kd_ws *w = user;
    /* text and binary messages went to on_frame_end (msg_length 0 here, not buffered) */
    if (a->opcode == WSLAY_CONNECTION_CLOSE) {
        w->peer_closed = true;
        w->code = a->status_code ? a->status_code : WSLAY_CODE_NO_STATUS_RCVD;
    } /* pings are answered by wslay itself; pongs need nothing */
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = on_recv,
    .send_callback = on_send,
    .genmask_callback = on_genmask,
    .on_msg_recv_callback = on_msg,
    .on_frame_recv_start_callback = on_frame_start,
    .on_frame_recv_chunk_callback = on_frame_chunk,
    .on_frame_recv_end_callback = on_frame_end,
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
    if (wslay_event_context_client_init(&w->ev, &ws_callbacks, w))
        return end(w, WSLAY_CODE_INTERNAL_SERVER_ERROR, "out of memory opening the WebSocket");
    wslay_event_config_set_max_recv_msg_length(w->ev, w->max_msg); /* per frame, unbuffered */
    wslay_event_config_set_no_buffering(w->ev, 1);
    /* frames that came with the answer wait for the owner's kd_ws_rx(w, NULL, 0) */
    w->in = (const unsigned char *)in + used;
    w->in_len = len - used;
    return KD_WS_OPENED;
}

kd_ws_result kd_ws_rx(kd_ws *w, const void *in, size_t len)
{
    if (w->hs)
        return in ? upgrade_rx(w, in, len) : KD_WS_OK;
    if (!w->ev)
        return end(w, 0, "no WebSocket");
    if (in) {
        w->in = in;
        w->in_len = len;
    }
    int rc = wslay_event_recv(w->ev);
    w->in_len = 0;
    if (rc == WSLAY_ERR_NOMEM || w->nomem)
        return end(w, WSLAY_CODE_INTERNAL_SERVER_ERROR, "out of memory reading a frame");
    if (rc < 0) /* our recv callback never fails: wslay's frame layer refused the bytes */
        return end(w, WSLAY_CODE_PROTOCOL_ERROR, "malformed frame from KONE");
    if (wslay_event_get_read_enabled(w->ev))
        return KD_WS_OK;
    if (w->peer_closed)
        return end(w, 0, "KONE closed the connection");
    /* wslay refused something and queued its close frame: its code says what */
    wslay_event_send(w->ev);
    int sent = wslay_event_get_status_code_sent(w->ev);
    if (sent == WSLAY_CODE_MESSAGE_TOO_BIG)
        return end(w, sent, "message from KONE longer than the limit");
    if (sent == WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA)
        return end(w, sent, "text frame from KONE that is not UTF-8");
    return end(w, WSLAY_CODE_PROTOCOL_ERROR, "malformed frame from KONE");
}

bool kd_ws_send(kd_ws *w, const char *text, size_t len)
{
    if (!w->ev)
        return false;
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)text, len};
    return wslay_event_queue_msg(w->ev, &m) == 0;
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
    free(w->out);
    free(w->msg);
    free(w->hs);
    w->ev = NULL;
    w->hs = NULL;
    w->out = NULL;
    w->out_len = w->out_off = w->out_cap = 0;
    w->msg = NULL;
    w->msg_len = w->msg_cap = 0;
    w->in_data = w->msg_fin = w->nomem = false;
    w->out_secret = false;
    w->in_len = 0;
    w->peer_closed = false;
    w->code = w->http_status = 0;
    w->why[0] = '\0';
}
