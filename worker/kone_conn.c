/* kone_conn.c: the pool of WebSocket connections to KONE; the contract is kone_conn.h.
 *
 * Life of a connection: IDLE -> CONNECTING (TLS, then the WebSocket upgrade with ?accessToken=
 * written by us over libwebsockets' raw client: kone_ws.h) ->
 * SESSION (create-session, or resume-session when the link already has a session) ->
 * READY (carries the upper layers' frames) -> closed -> IDLE. A 401 at the upgrade invalidates the
 * token and the link waits for the next one; any other failure or an unexpected close reconnects
 * after a backoff of 100 ms doubling to 10 s (+ up to 50 % jitter), reset once a session
 * is held. Written-but-unanswered requests stay with the link: the session is resumed and
 * late answers still match by request id. Unwritten ones are the layers above's to move
 * elsewhere (kk_conn_ops.released).
 *
 * One timer per link does the housekeeping: connect when due, ping a connection idle for
 * kone.keepalive_s (KONE drops idle ones after ~60 s; the ping is a common-api ping to a
 * building the connection serves, as KONE documents it: a subscribed one, else the first
 * of kone.buildings; a connection serving none is not pinged, and when KONE closes it for
 * idleness it is opened again), drop one whose ping or session
 * request goes unanswered for kone.request_timeout_ms, and replace one older than
 * kone.max_conn_age_s (KONE drops every one after 2 h): the link's second conn opens,
 * resumes the session (KONE then closes the old one), takes over, and the old one is let
 * go. Once the replacement is upgraded the old conn writes nothing new, and the resume waits
 * until the old conn's outstanding requests are answered (at most kone.request_timeout_ms):
 * KONE drops a conn's in-flight frames when its session moves away.
 *
 * Writes happen only in LWS_CALLBACK_RAW_WRITEABLE_FILE (conn_writeable_raw): one frame of the
 * layers above per callback, with wslay's pongs and close frames, as much as the socket takes;
 * the rest waits for the next callback. A close frame from KONE,
 * a malformed frame or a message longer than KK_RX_MAX ends the connection: wslay's close
 * frame goes out, the conn is dropped, and the link reconnects as after any loss.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_log.h"
#include "kd_time.h"
#include "kone_conn.h"
#include "kd_str.h"

#define SEC 1000000LL

static void link_timer(kk_tmr *tm);

static void rearm_write(kk_tmr *tm)
{
    kk_conn *c = lws_container_of(tm, kk_conn, wtmr);
    if (c->wsi && c->st != KC_IDLE)
        lws_callback_on_writable(c->wsi);
}

/* Asks for a RAW_WRITEABLE_FILE on c's socket. libwebsockets 4.1 clears a raw descriptor's
 * POLLOUT after its WRITEABLE callback returns, so a request made during that callback (by
 * us or by the layers above, through kk_link_want_write) would be lost: it is made from a
 * timer due at once instead, which runs after the callback. */
static void conn_want_write(kk_conn *c)
{
    if (!c->wsi)
        return;
    if (c->in_writeable)
        kk_tmr_in(&c->link->pool->timers, &c->wtmr, rearm_write, 1);
    else
        lws_callback_on_writable(c->wsi);
}

/* n_ready is what kd_kone_ready() reads from other threads: recounted after every change
 * rather than incremented, so no path can leave it wrong. */
static void recount(kk_pool *p)
{
    int n = 0;
    for (int i = 0; i < p->n_links; i++)
        n += kk_link_ready(p->links[i]);
    atomic_store(&p->n_ready, n);
    p->ops.ready_count(n, p->user);
}

int64_t kk_pool_next_id(kk_pool *p)
{
    /* unique in the whole process, not only on the link: an answer can then never be
     * mistaken for another connection's request (they are matched per link anyway) */
    return ++p->next_req_id;
}

void kk_link_init(kk_pool *p, kk_link *l, int idx)
{
    memset(l, 0, sizeof *l);
    l->pool = p;
    l->idx = idx;
    l->active = -1;
    l->backoff_ms = KK_BACKOFF_MIN_MS;
    for (int i = 0; i < 2; i++) {
        l->conn[i].link = l;
        l->conn[i].idx = i;
    }
    p->links[idx] = l;
}

void kk_pool_free(kk_pool *p)
{
    free(p->ws_host);
    free(p->ws_path);
    if (p->tls_ctx)
        kd_tls_ctx_free(p->tls_ctx);
    p->tls_ctx = NULL;
    for (int i = 0; i < KK_MAX_SLOTS; i++)
        if (p->links[i])
            for (int c = 0; c < 2; c++)
                kd_ws_free(&p->links[i]->conn[c].ws);
}

kk_conn *kk_link_active(kk_link *l)
{
    if (l->active < 0 || l->conn[l->active].st != KC_READY)
        return NULL;
    return &l->conn[l->active];
}

bool kk_link_ready(const kk_link *l)
{
    return l->active >= 0 && l->conn[l->active].st == KC_READY;
}

int64_t kk_pool_jitter(kk_pool *p, int64_t max)
{
    if (max <= 1)
        return 0;
    return (int64_t)(((uint64_t)rand_r(&p->rand_state) << 16 ^ (uint64_t)rand_r(&p->rand_state)) %
                     (uint64_t)max);
}

void kk_link_kick(kk_link *l)
{
    kk_tmr_in(&l->pool->timers, &l->tmr, link_timer, 1);
}

void kk_link_want_write(kk_link *l)
{
    kk_conn *c = kk_link_active(l);
    if (c && c->wsi)
        conn_want_write(c);
}

void kk_pool_kick_all(kk_pool *p)
{
    for (int i = 0; i < p->n_links; i++)
        kk_link_kick(p->links[i]);
}

void kk_pool_shutdown(kk_pool *p)
{
    for (int i = 0; i < p->n_links; i++) {
        kk_tmr_cancel(&p->links[i]->tmr);
        for (int c = 0; c < 2; c++)
            kk_tmr_cancel(&p->links[i]->conn[c].wtmr);
    }
    atomic_store(&p->n_ready, 0);
}

void kk_conn_kill(kk_conn *c)
{
    if (c->wsi && c->st != KC_IDLE && c->st != KC_CLOSING) {
        c->st = KC_CLOSING;
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        recount(c->link->pool);
    }
}

int kk_conn_send_owned(kk_conn *c, char *text)
{
    /* framed into the WebSocket's output (copied, masked; or queued in wslay behind a pong or
     * a partly written frame): the WRITEABLE callback that called us writes it
     * (conn_writeable_raw) */
    if (!kd_ws_send(&c->ws, text, strlen(text))) {
        kd_warn("kone: slot %d: cannot queue a frame, dropping the connection", c->link->idx);
        free(text);
        return -1;
    }
    c->last_tx_mono = kd_mono_us();
    if (kd_log_enabled(KD_LOG_DEBUG))
        kd_debug("kone: slot %d conn %d tx %s", c->link->idx, c->idx, text);
    free(text);
    return 0;
}

/* ------------------------------------------------------------------ opening */

static void conn_gone(kk_conn *c, const struct lws *wsi, const char *why, int http_status);
static void conn_msg(const char *buf, size_t len, void *user);

/* What a connection knows of its session and its end, forgotten when it opens and when it
 * is gone (conn_reset). */
static void conn_fresh(kk_conn *c)
{
    c->retiring = false;
    c->sess.write = false;
    c->sess.id = 0;
    c->ping.write = false;
    c->ping.id = 0;
    c->ending = false;
    c->tls_up = false;
}

/* Starts a connection on c; false when no token is held yet (the link is kicked again
 * when one arrives). */
static bool conn_open(kk_conn *c)
{
    kk_link *l = c->link;
    kk_pool *p = l->pool;
    /* The address first, resolved off the loop (kone_dns.h): while a resolution runs the
     * conn stays IDLE and the link is kicked when it ends. TLS and the Host header keep the
     * name, so SNI and the certificate's name check are what they were. */
    char addr[64];
    const char *address = p->ws_host;
    if (p->dns) {
        char why[200];
        kd_kone_dns_state ds = kd_kone_dns_get(p->dns, addr, sizeof addr, why, sizeof why);
        if (ds == KD_DNS_PENDING)
            return true;
        if (ds == KD_DNS_FAILED) { /* a transient connection failure: the link backs off */
            c->st = KC_CONNECTING;
            conn_gone(c, NULL, why, 0);
            return true;
        }
        address = addr;
    }
    /* Off the stack (tens of KB), but per thread: two KONE clients in one process (the
     * tests run several) each open connections from their own loop (TSan found the race). */
    static _Thread_local char tok[KD_KONE_TOKEN_MAX], esc[3 * KD_KONE_TOKEN_MAX + 1];
    static _Thread_local char path[3 * KD_KONE_TOKEN_MAX + 512];
    uint64_t gen = kd_kone_tokens_get(l->token, tok, sizeof tok, NULL);
    if (!gen)
        return false;
    kd_kone_url_escape(tok, esc, sizeof esc);
    snprintf(path, sizeof path, "%s%caccessToken=%s", p->ws_path,
             strchr(p->ws_path, '?') ? '&' : '?', esc);
    explicit_bzero(tok, sizeof tok);
    explicit_bzero(esc, strlen(esc));

    /* The upgrade request (with the token) waits in the conn's WebSocket for the first
     * RAW_WRITEABLE_FILE after TLS is up; it is wiped once written (kone_ws.c). */
    bool queued =
        kd_ws_open(&c->ws, p->ws_host, p->ws_port, path, "koneapi", KK_RX_MAX, conn_msg, c);
    explicit_bzero(path, strlen(path));
    if (!queued) {
        kd_ws_free(&c->ws);
        c->st = KC_CONNECTING;
        conn_gone(c, NULL, "out of memory opening a connection", 0);
        return true;
    }
    /* TLS is ours (kone_tls.h says why not libwebsockets' raw client); libwebsockets' loop
     * watches the socket, adopted as a raw descriptor: it polls, we read and write. */
    char why[160];
    c->st = KC_CONNECTING;
    if (!p->tls_ctx && !(p->tls_ctx = kd_tls_ctx_new(p->ca_file, why, sizeof why))) {
        conn_gone(c, NULL, why, 0);
        return true;
    }
    conn_fresh(c);
    c->token_gen = gen;
    if (!kd_tls_connect(&c->tls, p->tls_ctx, address, p->ws_port, p->ws_host)) {
        kd_str_copy(why, sizeof why, c->tls.why);
        conn_gone(c, NULL, why, 0);
        return true;
    }
    lws_sock_file_fd_type fd = {.filefd = c->tls.fd};
    struct lws_vhost *vh = lws_get_vhost_by_name(p->ctx, "default");
    struct lws *wsi =
        vh ? lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, fd, kk_protocols[0].name, NULL)
           : NULL;
    if (!wsi) {
        kd_tls_free(&c->tls, true);
        conn_gone(c, NULL, "could not start the connection", 0);
        return true;
    }
    lws_set_wsi_user(wsi, c);
    c->wsi = wsi;
    /* connect, TLS and the upgrade's answer within kone.request_timeout_ms (5 to 60 s, as
     * libwebsockets' own connect timeout was); conn_established clears it */
    int64_t to = p->request_timeout_us / SEC;
    lws_set_timeout(wsi, PENDING_TIMEOUT_SENT_CLIENT_HANDSHAKE,
                    to < 5    ? 5
                    : to > 60 ? 60
                              : (int)to);
    conn_want_write(c); /* the connect completes when the socket is writable */
    kd_debug("kone: slot %d conn %d connecting to %s:%d (%s)", l->idx, c->idx, p->ws_host,
             p->ws_port, address);
    return true;
}

static void schedule_reconnect(kk_link *l, const char *why)
{
    kk_pool *p = l->pool;
    int64_t d = (int64_t)l->backoff_ms * 1000;
    d += kk_pool_jitter(p, d / 2 + 1);
    l->reconnect_at = kd_mono_us() + d;
    l->backoff_ms = l->backoff_ms * 2 > KK_BACKOFF_MAX_MS ? KK_BACKOFF_MAX_MS : l->backoff_ms * 2;
    kd_warn("kone: slot %d: %s; reconnecting in %lld ms", l->idx, why, (long long)(d / 1000));
}

/* ------------------------------------------------------------------ closing */

static void conn_reset(kk_conn *c)
{
    c->wsi = NULL;
    c->st = KC_IDLE;
    conn_fresh(c);
    c->in_writeable = false;
    kk_tmr_cancel(&c->wtmr);
    kd_ws_free(&c->ws);
    kd_tls_free(&c->tls, false); /* the socket is libwebsockets' (it closes it) */
}

static void conn_gone(kk_conn *c, const struct lws *wsi, const char *why, int http_status)
{
    if (c->st == KC_IDLE || (wsi && c->wsi && c->wsi != wsi))
        return; /* already handled, or a callback for a connection we forgot */
    kk_link *l = c->link;
    kk_pool *p = l->pool;
    bool was_active = l->active == c->idx;
    bool retiring = c->retiring;
    conn_reset(c);
    if (was_active) {
        p->ops.lost(l, p->user);
        l->active = -1;
        l->losses++;
        l->lost_mono = kd_mono_us();
        if (!p->exiting)
            p->ops.reconnecting(p->user); /* an unplanned loss: the link reconnects */
    }
    recount(p);
    if (p->exiting) /* closed by shutdown (the token source may be gone already) */
        return;
    if (http_status == 401)
        kd_kone_tokens_invalidate(c->link->token, c->token_gen);

    char what[200];
    if (http_status)
        snprintf(what, sizeof what, "conn %d: %s (HTTP %d)", c->idx, why, http_status);
    else
        snprintf(what, sizeof what, "conn %d: %s", c->idx, why);
    kk_conn *o = &l->conn[!c->idx];
    if (l->active >= 0) {
        if (!retiring) { /* a replacement that did not make it: try again later */
            l->replace_retry_at = kd_mono_us() + 5 * SEC + kk_pool_jitter(p, 5 * SEC);
            kd_warn("kone: slot %d: replacement %s; keeping the current connection", l->idx, what);
        } else {
            kd_info("kone: slot %d: old connection retired", l->idx);
        }
    } else if (o->st == KC_CONNECTING || o->st == KC_SESSION) {
        kd_info("kone: slot %d: %s; the replacement connection takes over", l->idx, what);
    } else {
        schedule_reconnect(l, what);
        p->ops.released(l, p->user);
    }
    kk_link_kick(l);
}

/* ------------------------------------------------------------------ session */

static void conn_established(kk_conn *c, struct lws *wsi)
{
    kk_link *l = c->link;
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0); /* the opening's (conn_open) */
    c->wsi = wsi;
    c->st = KC_SESSION;
    c->opened_mono = c->last_tx_mono = kd_mono_us();
    c->sess.write = true;
    c->sess_resume = l->session_id[0] != '\0';
    char tls[64];
    kd_info("kone: slot %d conn %d: connected (%s), %s session", l->idx, c->idx,
            kd_tls_params(&c->tls, tls, sizeof tls),
            c->sess_resume ? "resuming the" : "creating a");
    conn_want_write(c);
}

static void session_answer(kk_conn *c, const kd_kone_msg *m)
{
    kk_link *l = c->link;
    kk_pool *p = l->pool;
    c->sess.id = 0;
    kd_kone_status_class cls = kd_kone_status_classify(m->status);
    if (cls == KD_KONE_ST_OK) {
        if (!c->sess_resume || m->session_id[0]) {
            if (!m->session_id[0]) {
                kd_warn("kone: slot %d: create-session answer has no sessionId", l->idx);
                kk_conn_kill(c);
                return;
            }
            kd_str_copy(l->session_id, sizeof l->session_id, m->session_id);
            l->session_numeric = m->session_numeric;
        }
        bool resumed = c->sess_resume;
        c->st = KC_READY;
        int old = l->active;
        l->active = c->idx;
        if (old >= 0 && old != c->idx) {
            l->conn[old].retiring = true;
            kk_conn_kill(&l->conn[old]);
        }
        recount(p);
        l->backoff_ms = KK_BACKOFF_MIN_MS;
        kd_info("kone: slot %d: session %s %s", l->idx, l->session_id,
                resumed ? "resumed" : "created");
        p->ops.session_restored(l, resumed, p->user);
        kk_link_want_write(l);
        kk_link_kick(l);
        return;
    }
    if (cls == KD_KONE_ST_AUTH) {
        kd_warn("kone: slot %d: session request refused (401); refreshing the token", l->idx);
        kd_kone_tokens_invalidate(c->link->token, c->token_gen);
        kk_conn_kill(c);
        return;
    }
    if (c->sess_resume && cls == KD_KONE_ST_REJECTED) {
        /* 404 (session unknown) or 400: start over with a fresh session on this conn */
        kd_warn("kone: slot %d: could not resume session %s (%d %s); creating a new one", l->idx,
                l->session_id, m->status, m->message);
        l->session_id[0] = '\0';
        c->sess_resume = false;
        c->sess.write = true;
        conn_want_write(c);
        return;
    }
    kd_warn("kone: slot %d: session request failed (%d %s)", l->idx, m->status, m->message);
    kk_conn_kill(c);
}

/* Sends a frame built by kone_msg (NULL when building failed, with the reason in *e) and
 * frees it; -1 when it was not queued. */
static int send_built(kk_conn *c, char *text, const kd_err *e)
{
    if (!text) {
        kd_error("kone: slot %d: %s", c->link->idx, e->msg);
        return -1;
    }
    return kk_conn_send_owned(c, text);
}

/* Sends text (NULL when it could not be built), the request r the connection makes for itself
 * with request id `id`: written, r is outstanding from now. */
static int send_own(kk_conn *c, kk_own_req *r, int64_t id, char *text, const kd_err *e)
{
    if (send_built(c, text, e))
        return -1;
    r->write = false;
    r->id = id;
    r->sent_mono = kd_mono_us();
    kk_link_kick(c->link);
    return 0;
}

static int write_session(kk_conn *c)
{
    kk_link *l = c->link;
    kd_err e;
    kd_err_clear(&e);
    int64_t id = kk_pool_next_id(l->pool);
    char *text = c->sess_resume ? kd_kone_msg_resume_session(id, l->session_id, l->session_numeric,
                                                             KK_RESEND_STATE_S, &e)
                                : kd_kone_msg_create_session(id, &e);
    return send_own(c, &c->sess, id, text, &e);
}

static int write_ping(kk_conn *c)
{
    kk_link *l = c->link;
    kd_err e;
    kd_err_clear(&e);
    const char *building, *group;
    if (!l->pool->ops.ping_target(l, &building, &group, l->pool->user)) {
        c->ping.write = false; /* it lost its last building meanwhile */
        return 0;
    }
    int64_t id = kk_pool_next_id(l->pool);
    /* Any answer keeps the connection: a building whose link is down answers 500 (1005),
     * which is the circuit breaker's business (its own probes), not the connection's. */
    char *text = kd_kone_msg_common("ping", building, group, id, &e);
    return send_own(c, &c->ping, id, text, &e);
}

/* ------------------------------------------------------------------ frames */

/* kd_kone_msg_read's question, put to the call layer (kk_conn_ops.state_in) with the frame,
 * which it keeps briefly when the call's result has not come yet. */
struct state_ask {
    kk_link *l;
    const char *buf;
    size_t len;
};

static bool state_keep(int64_t sid, void *user)
{
    struct state_ask *a = user;
    return a->l->pool->ops.state_in(a->l, sid, a->buf, a->len, a->l->pool->user);
}

static void dispatch(kk_conn *c, const char *buf, size_t len)
{
    kk_link *l = c->link;
    kk_pool *p = l->pool;
    kd_kone_msg m;
    kd_err e;
    kd_err_clear(&e);
    if (kd_log_enabled(KD_LOG_DEBUG))
        kd_debug("kone: slot %d conn %d rx %.*s", l->idx, c->idx, (int)(len > 900 ? 900 : len),
                 buf);
    /* a call state nobody follows is dropped once its JSON is read, before its fields are */
    struct state_ask ask = {l, buf, len};
    bool kept;
    if (kd_kone_msg_read(buf, len, state_keep, &ask, &kept, &m, &e)) {
        kd_warn("kone: slot %d: dropped a malformed frame: %s", l->idx, e.msg);
        return;
    }
    if (!kept)
        return;
    if (m.kind == KD_KONE_MSG_ANSWER && m.has_request_id) { /* the connection's own? */
        if (c->sess.id && m.request_id == c->sess.id) {
            session_answer(c, &m);
            return;
        }
        for (int i = 0; i < 2; i++) {
            kk_conn *pc = &l->conn[i];
            if (pc->ping.id && m.request_id == pc->ping.id) {
                pc->ping.id = 0; /* any answer proves the connection alive */
                return;
            }
        }
    }
    p->ops.frame_in(l, &m, buf, len, p->user);
}

/* A whole message from wslay (fragments put back together). */
static void conn_msg(const char *buf, size_t len, void *user)
{
    kk_conn *c = user;
    if (c->st == KC_SESSION || c->st == KC_READY || c->st == KC_CLOSING)
        dispatch(c, buf, len);
}

/* The stream ended (kd_ws_rx): KONE's close frame, or ours for what KONE sent wrong. Its
 * close frame goes out with the next WRITEABLE, then the conn is dropped; the reason is
 * logged now and reaches conn_gone's line when the socket closes. */
static void conn_ended(kk_conn *c)
{
    kd_ws *w = &c->ws;
    c->ending = true;
    if (w->http_status || !kd_ws_upgraded(w)) {
        kk_conn_kill(c); /* a refused upgrade: nothing to say on that socket */
        return;
    }
    if (w->peer_closed)
        kd_info("kone: slot %d conn %d: KONE closed the connection (code %d)", c->link->idx, c->idx,
                w->code);
    else
        kd_warn("kone: slot %d conn %d: %s: closing the connection (code %d)", c->link->idx, c->idx,
                w->why, w->code);
    if (kd_ws_want_write(w))
        conn_want_write(c);
    else
        kk_conn_kill(c);
}

static void conn_rx(kk_conn *c, struct lws *wsi, const void *in, size_t len)
{
    if (c->ending)
        return; /* the rest of a stream already given up */
    kd_ws_result r = kd_ws_rx(&c->ws, in, len);
    if (r == KD_WS_OPENED) {
        conn_established(c, wsi);
        r = kd_ws_rx(&c->ws, NULL, 0); /* frames that came with the upgrade's answer */
    }
    if (r == KD_WS_END)
        conn_ended(c);
    else if (kd_ws_want_write(&c->ws))
        conn_want_write(c); /* wslay's pong to a ping */
}

/* The socket is readable or writable before TLS is up: the connect and the handshake go
 * on; once up, the upgrade request (queued by conn_open) goes out. -1: close it. */
static int tls_progress(kk_conn *c)
{
    kd_tls_state st = kd_tls_step(&c->tls);
    if (st == KD_TLS_FAILED)
        return -1; /* conn_closed reads c->tls.why */
    if (st == KD_TLS_UP)
        c->tls_up = true;
    if (st == KD_TLS_UP || c->tls.want_write)
        conn_want_write(c);
    return 0;
}

/* RAW_RX_FILE: read what TLS has (until it wants more from the socket). -1: close it. */
static int conn_readable(kk_conn *c, struct lws *wsi)
{
    if (!c->tls_up)
        return tls_progress(c);
    static _Thread_local char buf[16384]; /* a TLS record at most */
    while (!c->ending) {
        ssize_t n = kd_tls_read(&c->tls, buf, sizeof buf);
        if (n < 0)
            return -1;
        if (!n)
            break;
        conn_rx(c, wsi, buf, (size_t)n);
        if (!kd_tls_pending(&c->tls))
            break; /* the rest, if any, is in the socket: its poll says when */
    }
    if (c->tls.want_write)
        conn_want_write(c);
    return 0;
}

/* A replacement conn resumes the session only once the old conn's requests are answered
 * (or kone.request_timeout_ms passed): KONE drops the old conn's in-flight frames when the
 * session moves, and the old conn writes nothing new meanwhile. */
static bool replacement_must_wait(kk_conn *c)
{
    kk_link *l = c->link;
    bool replacing = c->sess_resume && l->active >= 0 && l->active != c->idx;
    return replacing && l->pool->ops.outstanding(l, l->pool->user) > 0 &&
           kd_mono_us() < c->opened_mono + l->pool->request_timeout_us;
}

void kk_link_answered(kk_link *l)
{
    for (int i = 0; i < 2; i++) {
        kk_conn *c = &l->conn[i];
        if (c->st == KC_SESSION && c->sess.write && c->wsi)
            conn_want_write(c);
    }
}

/* Frames the layers above may write per WRITEABLE: ~300 bytes each, so one TLS record. */
#define WRITES_PER_CALL 32

static int conn_writeable(kk_conn *c)
{
    kk_link *l = c->link;
    if (c->st == KC_CLOSING)
        return -1;
    if (c->st == KC_CONNECTING || c->ending)
        return 0; /* the upgrade request, or a close frame: only what is queued goes */
    if (c->st == KC_SESSION) {
        if (c->sess.write && !replacement_must_wait(c))
            return write_session(c);
        return 0;
    }
    if (c->st != KC_READY || l->active != c->idx)
        return 0;
    kk_conn *o = &l->conn[!c->idx];
    if (c->ping.write) {
        if (write_ping(c))
            return -1;
    } else if (o->st == KC_SESSION) {
        return 0; /* the replacement is resuming the session: hold writes */
    } else {
        /* the frames the layers above have ready, up to a bound, in one call: they leave in
         * one TLS write (a record, a system call) instead of one poll round each, so a clump
         * of calls does not wait a round per call before it (issue 17) */
        for (int i = 0; i < WRITES_PER_CALL; i++) {
            uint64_t sent = kd_ws_sent(&c->ws);
            if (l->pool->ops.writable(l, c, l->pool->user) < 0)
                return -1;
            if (kd_ws_sent(&c->ws) == sent || c->st != KC_READY || l->active != c->idx ||
                c->ping.write || !l->pool->ops.want_write(l, l->pool->user))
                break; /* nothing more to write now, or the conn changed under it */
        }
    }
    if (c->ping.write || (l->pool->ops.want_write(l, l->pool->user) && o->st != KC_SESSION))
        conn_want_write(c);
    return 0;
}

/* RAW_WRITEABLE_FILE: once what the socket did not take last time is written, the layers
 * above's frame (conn_writeable) and whatever wslay has queued (pongs, close frames) go out,
 * as much as the socket takes; the rest waits for the next call. After the close frame of an
 * ended stream went out, the conn is dropped. -1: close it. */
static int conn_writeable_raw_in(kk_conn *c);

static int conn_writeable_raw(kk_conn *c)
{
    c->in_writeable = true;
    int rc = conn_writeable_raw_in(c);
    c->in_writeable = false;
    return rc;
}

static int conn_writeable_raw_in(kk_conn *c)
{
    if (!c->tls_up)
        return tls_progress(c);
    c->tls.want_write = false;
    const unsigned char *out;
    size_t n;
    if (!kd_ws_pending(&c->ws, &out, &n))
        return -1;
    if (!n && conn_writeable(c) < 0)
        return -1;
    for (;;) {
        if (!n && !kd_ws_pending(&c->ws, &out, &n))
            return -1;
        if (!n)
            break;
        ssize_t w = kd_tls_write(&c->tls, out, n);
        if (w < 0) {
            kd_warn("kone: slot %d: write failed, dropping the connection", c->link->idx);
            return -1;
        }
        if (!w)
            break; /* the socket is full: wait for it */
        kd_ws_consumed(&c->ws, (size_t)w);
        n = 0;
    }
    if (c->ending && !kd_ws_want_write(&c->ws))
        kk_conn_kill(c);
    else if (kd_ws_want_write(&c->ws) || c->tls.want_write)
        conn_want_write(c);
    return 0;
}

/* ------------------------------------------------------------------ housekeeping */

static int64_t earlier(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static void link_timer(kk_tmr *tm)
{
    kk_link *l = lws_container_of(tm, kk_link, tmr);
    kk_pool *p = l->pool;
    if (p->exiting)
        return;
    int64_t now = kd_mono_us();
    int64_t next = now + SEC;
    kk_conn *c0 = &l->conn[0], *c1 = &l->conn[1];

    if (l->active < 0 && c0->st == KC_IDLE && c1->st == KC_IDLE) {
        if (now >= l->reconnect_at)
            conn_open(c0); /* false: no token yet, kicked when one arrives */
        else
            next = earlier(next, l->reconnect_at);
    }
    for (int i = 0; i < 2; i++) {
        kk_conn *c = &l->conn[i];
        if (c->st == KC_SESSION && c->sess.write && c->wsi)
            conn_want_write(c); /* a replacement waiting for the drain */
        if (c->st == KC_SESSION && c->sess.id) {
            if (now - c->sess.sent_mono >= p->request_timeout_us) {
                kd_warn("kone: slot %d conn %d: session request unanswered", l->idx, i);
                kk_conn_kill(c);
            } else {
                next = earlier(next, c->sess.sent_mono + p->request_timeout_us);
            }
        }
    }
    kk_conn *a = kk_link_active(l);
    if (a) {
        kk_conn *o = &l->conn[!a->idx];
        if (a->ping.id) {
            if (now - a->ping.sent_mono >= p->request_timeout_us) {
                kd_warn("kone: slot %d: keep-alive ping unanswered, dropping the connection",
                        l->idx);
                kk_conn_kill(a);
                a = NULL;
            } else {
                next = earlier(next, a->ping.sent_mono + p->request_timeout_us);
            }
        } else if (!a->ping.write) {
            const char *pb, *pg;
            if (now - a->last_tx_mono >= p->keepalive_us &&
                !p->ops.ping_target(l, &pb, &pg, p->user)) {
                next = earlier(next, now + p->keepalive_us); /* nothing to ping yet */
            } else if (now - a->last_tx_mono >= p->keepalive_us) {
                a->ping.write = true;
                conn_want_write(a);
            } else {
                next = earlier(next, a->last_tx_mono + p->keepalive_us);
            }
        }
        if (a && o->st == KC_IDLE) {
            int64_t due = a->opened_mono + p->max_age_us;
            if (due < l->replace_retry_at)
                due = l->replace_retry_at;
            if (now >= due) {
                kd_info("kone: slot %d: connection older than %lld s, replacing it", l->idx,
                        (long long)(p->max_age_us / SEC));
                conn_open(o);
            } else {
                next = earlier(next, due);
            }
        }
    }
    if (next < now + 1000)
        next = now + 1000;
    kk_tmr_at(&p->timers, &l->tmr, link_timer, next);
}

/* ------------------------------------------------------------------ lws callback */

/* RAW_CLOSE: the socket is gone; why, from what ended the stream if anything did. */
static void conn_closed(kk_conn *c, const struct lws *wsi)
{
    char why[KD_WSHS_WHY_MAX + 40];
    int status = c->ws.http_status;
    if (!c->tls_up)
        kd_tls_closed(&c->tls);
    if (c->tls.why[0])
        kd_str_copy(why, sizeof why, c->tls.why);
    else if (c->ws.why[0] && c->ws.peer_closed)
        snprintf(why, sizeof why, "%s (code %d)", c->ws.why, c->ws.code);
    else if (c->ws.why[0])
        kd_str_copy(why, sizeof why, c->ws.why);
    else
        snprintf(why, sizeof why, "%s",
                 c->st == KC_CONNECTING ? "connection closed or timed out before the upgrade"
                                        : "connection closed");
    /* our refusal of KONE's frames (kone_wsmsg.c), whatever then ended the socket (a reset
     * may follow the garbage and fail our close frame's write): a KONE, or a proxy before it,
     * that breaks RFC 6455 shows as its own metric, not only as reconnects */
    if (c->ws.why[0] && !c->ws.peer_closed &&
        (c->ws.code == WSLAY_CODE_PROTOCOL_ERROR ||
         c->ws.code == WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA ||
         c->ws.code == WSLAY_CODE_MESSAGE_TOO_BIG) &&
        c->link->pool->ops.protocol_error)
        c->link->pool->ops.protocol_error(c->ws.code, c->link->pool->user);
    conn_gone(c, wsi, why, status);
}

static int kk_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    (void)in, (void)len;
    kk_conn *c = user;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED: {
        struct lws_context *ctx = wsi ? lws_get_context(wsi) : NULL;
        kk_pool *p = ctx ? lws_context_user(ctx) : NULL;
        if (p)
            p->ops.wakeup(p->user);
        break;
    }
    case LWS_CALLBACK_RAW_RX_FILE:
        if (c && c->wsi == wsi && c->st != KC_IDLE)
            return conn_readable(c, wsi);
        break;
    case LWS_CALLBACK_RAW_WRITEABLE_FILE:
        if (c && c->wsi == wsi && c->st != KC_IDLE)
            return conn_writeable_raw(c);
        break;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        if (c)
            conn_closed(c, wsi);
        break;
    default: break;
    }
    return 0;
}

const struct lws_protocols kk_protocols[] = {
    {"koneapi", kk_callback, 0, 16384, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};
