/* stream.c: the koneapi WebSocket protocol: frames in and out, connection rules.
 *
 * Each connection has a queue of outgoing text frames; the hub queues (sim_conn_ops.send)
 * from anywhere on the service thread and this file writes exactly one frame per
 * WRITEABLE callback, as libwebsockets requires. A connection whose queue passes
 * SIM_QUEUE_MAX_BYTES (a client not reading) is closed rather than allowed to eat memory.
 *
 * Incoming fragments are gathered up to SIM_MAX_FRAME; a larger message is discarded and
 * answered with 400. The connection rules of KONE are kept here: close after
 * sim.idle_timeout_s without a data frame from the client and after sim.max_conn_s in any
 * case, each with a close frame (1001 and a reason); a session takeover closes with 1000.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "kd_log.h"
#include "kd_list.h"
#include "proto.h"
#include "server.h"
#include "stream.h"

typedef struct qframe {
    struct qframe *next;
    size_t len;
    size_t off;          /* sent so far, when fragmented */
    bool raw;            /* injected bytes (POST /sim/ws-inject): written as they are */
    unsigned char buf[]; /* LWS_PRE + len */
} qframe;

typedef struct sim_ws {
    struct lws *wsi;
    sim_server *srv;
    sim_conn *conn;
    qframe *head, *tail;
    size_t queued;
    char *rx;
    size_t rx_len;
    bool rx_overflow, rx_binary;
    int64_t opened_ms, last_rx_ms;
    bool closing;
    bool dropped; /* injected drop: no close frame */
    int close_code;
    char close_reason[64];
    size_t fragment; /* send text frames in fragments of this size (0: whole) */
    char token[SIM_TOKEN_LEN + 1];
    struct sim_ws *next, *prev;
} sim_ws;

static void request_close(void *t, int code, const char *reason)
{
    sim_ws *w = t;
    if (w->closing)
        return;
    w->closing = true;
    w->close_code = code;
    snprintf(w->close_reason, sizeof w->close_reason, "%s", reason);
    lws_callback_on_writable(w->wsi);
}

static int queue_frame(sim_ws *w, const void *data, size_t len, bool raw);

static int queue_send(void *t, const char *text, size_t len)
{
    return queue_frame(t, text, len, false);
}

static int queue_frame(sim_ws *w, const void *data, size_t len, bool raw)
{
    if (w->closing)
        return -1;
    if (w->queued + len > (size_t)SIM_QUEUE_MAX_BYTES) {
        kd_warn("connection %s: client not reading (%zu bytes queued), closing", w->conn->id,
                w->queued);
        request_close(w, 1008, "Too many unread frames");
        return -1;
    }
    qframe *f = malloc(sizeof *f + LWS_PRE + len);
    if (!f)
        return -1;
    f->len = len;
    f->off = 0;
    f->raw = raw;
    memcpy(f->buf + LWS_PRE, data, len);
    KD_SLIST_APPEND(w->head, w->tail, f, next);
    w->queued += len;
    lws_callback_on_writable(w->wsi);
    return 0;
}

/* An injected network failure: the socket is shut down under TLS and WebSocket, so the
 * client sees the stream end without a close frame (1006 on its side). */
static void drop_now(void *t)
{
    sim_ws *w = t;
    w->closing = true;
    w->dropped = true;
    shutdown(lws_get_socket_fd(w->wsi), SHUT_RDWR);
    lws_callback_on_writable(w->wsi);
}

/* WebSocket faults: raw bytes (a malformed frame, a ping, ...) and fragmented frames. */
static void inject(void *t, const unsigned char *bytes, size_t len, int fragment)
{
    sim_ws *w = t;
    if (fragment >= 0)
        w->fragment = (size_t)fragment;
    if (len)
        queue_frame(w, bytes, len, true);
    kd_info("fault ws-inject: connection %s: %zu raw bytes, fragments of %zu", w->conn->id, len,
            w->fragment);
}

static const sim_conn_ops ws_ops = {queue_send, request_close, drop_now, inject};

/* Writes (part of) the head frame: raw bytes straight into TLS (libwebsockets' queue is empty
 * in WRITEABLE, so they follow the frames before them), a text frame whole or, with
 * w->fragment, one fragment per callback. 1: more of it to write, 0: done, -1: failed. */
static int write_head(sim_ws *w, qframe *f)
{
    unsigned char *p = f->buf + LWS_PRE + f->off;
    size_t left = f->len - f->off;
    if (f->raw) {
        SSL *ssl = lws_get_ssl(w->wsi);
        int n =
            ssl ? SSL_write(ssl, p, (int)left) : (int)send(lws_get_socket_fd(w->wsi), p, left, 0);
        return n == (int)left ? 0 : -1;
    }
    if (!f->off && (!w->fragment || f->len <= w->fragment))
        return lws_write(w->wsi, p, left, LWS_WRITE_TEXT) < (int)left ? -1 : 0;
    /* lws writes a fragment's header into the LWS_PRE bytes before it: those of the frame
     * already sent, free to reuse */
    size_t k = w->fragment && left > w->fragment ? w->fragment : left;
    int flags =
        (f->off ? LWS_WRITE_CONTINUATION : LWS_WRITE_TEXT) | (k < left ? LWS_WRITE_NO_FIN : 0);
    if (lws_write(w->wsi, p, k, (enum lws_write_protocol)flags) < (int)k)
        return -1;
    f->off += k;
    return f->off < f->len;
}

static void free_queue(sim_ws *w)
{
    KD_SLIST_FREE(w->head, next);
    w->tail = NULL;
    w->queued = 0;
}

static int on_writeable(sim_ws *w)
{
    if (w->dropped)
        return -1;
    if (w->head) {
        qframe *f = w->head;
        int r = write_head(w, f);
        if (r < 0)
            return -1;
        if (r) {
            lws_callback_on_writable(w->wsi);
            return 0;
        }
        w->head = f->next;
        if (!w->head)
            w->tail = NULL;
        w->queued -= f->len;
        free(f);
        if (w->head || w->closing)
            lws_callback_on_writable(w->wsi);
        return 0;
    }
    if (w->closing) {
        lws_close_reason(w->wsi, (enum lws_close_status)w->close_code,
                         (unsigned char *)w->close_reason, strlen(w->close_reason));
        return -1;
    }
    return 0;
}

static int on_receive(sim_ws *w, const void *in, size_t len)
{
    sim_server *s = w->srv;
    w->last_rx_ms = sim_clock_real_ms(&s->hub->clock);
    if (lws_is_first_fragment(w->wsi)) {
        w->rx_len = 0;
        w->rx_overflow = false;
        w->rx_binary = lws_frame_is_binary(w->wsi);
    }
    if (!w->rx_overflow) {
        if (w->rx_len + len > (size_t)SIM_MAX_FRAME) {
            w->rx_overflow = true;
        } else {
            if (!w->rx) {
                w->rx = malloc(SIM_MAX_FRAME + 1);
                if (!w->rx)
                    return -1;
            }
            memcpy(w->rx + w->rx_len, in, len);
            w->rx_len += len;
        }
    }
    if (!lws_is_final_fragment(w->wsi) || lws_remaining_packet_payload(w->wsi))
        return 0;
    if (w->closing)
        return 0;
    if (w->rx_overflow)
        sim_proto_too_large(s->hub, w->conn);
    else if (w->rx_binary)
        sim_proto_handle(s->hub, w->conn, "binary", 6); /* answered as invalid JSON */
    else
        sim_proto_handle(s->hub, w->conn, w->rx, w->rx_len);
    w->rx_len = 0;
    sim_server_arm_flush(s);
    return 0;
}

static int stream_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len)
{
    sim_ws *w = user;
    sim_server *s = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        /* headers are still here: keep the token for ESTABLISHED (checked at upgrade) */
        char buf[256];
        const char *tok = lws_get_urlarg_by_name(wsi, "accessToken=", buf, sizeof buf);
        if (!tok || strlen(tok) != SIM_TOKEN_LEN)
            return -1;
        memcpy(w->token, tok, SIM_TOKEN_LEN + 1);
        explicit_bzero(buf, sizeof buf);
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED: {
        const sim_token *t = sim_auth_lookup(s->auth, w->token, sim_clock_real_ms(&s->hub->clock));
        explicit_bzero(w->token, sizeof w->token);
        if (!t)
            return -1;
        w->wsi = wsi;
        w->srv = s;
        w->conn = sim_hub_conn_open(s->hub, t, &ws_ops, w);
        if (!w->conn)
            return -1;
        w->opened_ms = w->last_rx_ms = sim_clock_real_ms(&s->hub->clock);
        w->next = s->conns;
        if (s->conns)
            s->conns->prev = w;
        s->conns = w;
        kd_info("connection %s opened client=%s", w->conn->id, w->conn->client_id);
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        if (!w->conn)
            return -1;
        return on_receive(w, in, len);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: /* the client's close code, for the tests */
        if (w->conn && len >= 2)
            kd_info("connection %s: client closed with code %d", w->conn->id,
                    (((const unsigned char *)in)[0] << 8) | ((const unsigned char *)in)[1]);
        return 0;
    case LWS_CALLBACK_RECEIVE_PONG: /* what a test of the client's pong looks for */
        if (w->conn)
            kd_info("connection %s: pong received (%zu bytes)", w->conn->id, len);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!w->conn)
            return -1;
        return on_writeable(w);
    case LWS_CALLBACK_CLOSED:
        if (w->conn) {
            kd_info("connection %s closed%s%s", w->conn->id, w->closing ? ": " : "",
                    w->dropped   ? "dropped (fault injection)"
                    : w->closing ? w->close_reason
                                 : "");
            sim_hub_conn_closed(s->hub, w->conn);
            w->conn = NULL;
            KD_DLIST_UNLINK(s->conns, w, prev, next);
        }
        free_queue(w);
        free(w->rx);
        w->rx = NULL;
        return 0;
    default: return 0;
    }
}

void sim_stream_sweep(sim_server *s)
{
    int64_t now = sim_clock_real_ms(&s->hub->clock);
    for (sim_ws *w = s->conns; w; w = w->next) {
        if (w->closing)
            continue;
        if (s->max_ms > 0 && now - w->opened_ms >= s->max_ms)
            request_close(w, 1001, "Maximum connection duration reached");
        else if (s->idle_ms > 0 && now - w->last_rx_ms >= s->idle_ms)
            request_close(w, 1001, "Idle timeout");
    }
}

struct lws_protocols sim_stream_protocol(void)
{
    return (struct lws_protocols){.name = "koneapi",
                                  .callback = stream_callback,
                                  .per_session_data_size = sizeof(sim_ws),
                                  .rx_buffer_size = 16384};
}
