/* kd-bench-kone: the KONE (kone-sim) baseline of scripts/bench.
 *
 *   kd-bench-kone --count N --inflight M [--connections C] [--timeout-s S]
 *
 * The raw request-answer rate of kone-sim with a minimal client that keeps M requests
 * outstanding: one libwebsockets context serviced on this one thread, C TLS WebSockets
 * (stream-v2, sub-protocol koneapi, the token in ?accessToken= as the worker sends it), a
 * create-session on each, then N destination calls of the jobs_good kind
 * (tests/integration/jobs.sh: building:9990000951 group 1, lobby area 1000 to floors 2..11
 * but 9). A call is counted when its accepting frames have arrived, the 201 answer and the
 * call result with success=true: what the worker waits for before it subscribes to the
 * call's state. Timed from the first call sent to the last call accepted.
 *
 * It is "the same protocol" by construction: the frames are built by the worker's own
 * kd_kone_msg_job from a kd_job, parsed by the worker's kd_kone_msg_parse, and the token is
 * fetched by the worker's kd_kone_token_fetch, all with the worker's kone.* settings. What
 * it leaves out is the worker's bookkeeping (breakers, rate limits, timers, reconnects,
 * following the call), so its rate is what kone-sim and the TLS WebSocket allow.
 *
 * Request ids: 1 is each connection's create-session; call i (0-based) is i + 2, unique on
 * every connection (kone-sim answers a reused id with 409). A refused call, an unexpected
 * close or the deadline ends the run with exit 1; the token never reaches a log line.
 */
#include <curl/curl.h>
#include <inttypes.h>
#include <libwebsockets.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kd_job.h"
#include "kd_log.h"
#include "kd_time.h"
#include "kone_lws.h"
#include "kone_msg.h"
#include "kone_token.h"
#include "kone_wsrx.h"

#define MAX_CONNS 64
#define SESSION_REQ_ID 1
#define FIRST_CALL_ID 2
#define RX_MAX (1024 * 1024)

/* Floors of group 1 that are not locked (jobs.sh JOBS_FLOORS): destinations, in turn. */
static const int floors[] = {2, 3, 4, 5, 6, 7, 8, 10, 11};

enum { CALL_UNSENT = 0, CALL_SENT, CALL_ANSWERED, CALL_DONE };

typedef enum { BC_CONNECTING = 0, BC_SESSION, BC_READY, BC_GONE } bc_state;

typedef struct bconn {
    struct bench_kone *bk;
    int idx;
    struct lws *wsi;
    bc_state st;
    bool session_written;
    kd_wsrx rx; /* the worker's reassembly (kone_wsrx.h) */
} bconn;

typedef struct bench_kone {
    kd_bench *b;
    struct lws_context *ctx;
    lws_sorted_usec_list_t tick;
    bconn conns[MAX_CONNS];
    int n_conns, n_ready;
    uint64_t n, inflight;
    uint64_t next; /* next call to send */
    uint64_t done, failed;
    unsigned char *calls; /* CALL_* per call */
    kd_job job;           /* the call; destination changes per call */
    int64_t t0, t1;
    bool over; /* every call done, or a failure: leave the loop */
    int rc;
    char first_refusal[300];
} bench_kone;

/* ------------------------------------------------------------------ helpers */

static void stop_with(bench_kone *bk, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void stop_with(bench_kone *bk, const char *fmt, ...)
{
    if (bk->over)
        return;
    va_list ap;
    va_start(ap, fmt);
    bk->rc = kd_bench_vfail(bk->b, fmt, ap);
    va_end(ap);
    bk->over = true;
}

static uint64_t outstanding(const bench_kone *bk)
{
    return bk->next - bk->done - bk->failed;
}

/* A request id of ours: the call it belongs to, or -1. */
static int64_t call_of(const bench_kone *bk, const kd_kone_msg *m)
{
    if (!m->has_request_id || m->request_id < FIRST_CALL_ID ||
        (uint64_t)(m->request_id - FIRST_CALL_ID) >= bk->next)
        return -1;
    return m->request_id - FIRST_CALL_ID;
}

static void call_over(bench_kone *bk, bconn *c, int64_t i, bool ok, const char *why)
{
    bk->calls[i] = CALL_DONE;
    if (ok) {
        bk->done++;
    } else if (bk->failed++ == 0) {
        snprintf(bk->first_refusal, sizeof bk->first_refusal, "call %" PRId64 ": %s", i + 1, why);
    }
    if (bk->done + bk->failed == bk->n) {
        bk->t1 = kd_mono_us();
        bk->over = true;
        return;
    }
    if (c->wsi && bk->next < bk->n)
        lws_callback_on_writable(c->wsi); /* room for the next call */
}

/* ------------------------------------------------------------------ frames */

static int send_text(bconn *c, char *text, const kd_err *e)
{
    if (!text) {
        stop_with(c->bk, "building a frame: %s", e->msg);
        return -1;
    }
    size_t n = strlen(text);
    unsigned char *buf = malloc(LWS_PRE + n);
    if (!buf) {
        free(text);
        stop_with(c->bk, "out of memory");
        return -1;
    }
    memcpy(buf + LWS_PRE, text, n);
    free(text);
    int w = lws_write(c->wsi, buf + LWS_PRE, n, LWS_WRITE_TEXT);
    free(buf);
    if (w < (int)n) {
        stop_with(c->bk,
                  "connection %d: write failed (connection lost?) after %llu of %llu "
                  "calls",
                  c->idx, (unsigned long long)(c->bk->done + c->bk->failed),
                  (unsigned long long)c->bk->n);
        return -1;
    }
    return 0;
}

/* One frame per WRITEABLE callback: the session request, or the next call when there is
 * room under the in-flight limit. */
static int on_writeable(bconn *c)
{
    bench_kone *bk = c->bk;
    kd_err e = {0};
    if (bk->over)
        return 0;
    if (c->st == BC_SESSION && !c->session_written) {
        c->session_written = true;
        return send_text(c, kd_kone_msg_create_session(SESSION_REQ_ID, &e), &e);
    }
    if (c->st != BC_READY || bk->n_ready < bk->n_conns || bk->next >= bk->n ||
        outstanding(bk) >= bk->inflight)
        return 0;
    uint64_t i = bk->next;
    bk->job.destination = floors[i % (sizeof floors / sizeof floors[0])] * 1000;
    char *text = kd_kone_msg_job(&bk->job, (int64_t)i + FIRST_CALL_ID, kd_now_us(), &e);
    if (bk->next == 0)
        bk->t0 = kd_mono_us();
    bk->calls[i] = CALL_SENT;
    bk->next++;
    if (send_text(c, text, &e))
        return -1;
    if (bk->next < bk->n && outstanding(bk) < bk->inflight)
        lws_callback_on_writable(c->wsi);
    return 0;
}

static void session_answer(bconn *c, const kd_kone_msg *m)
{
    bench_kone *bk = c->bk;
    if (m->status < 200 || m->status >= 300 || !m->session_id[0]) {
        stop_with(bk, "connection %d: create-session answered %d %s", c->idx, m->status,
                  m->message[0] ? m->message : "(no sessionId)");
        return;
    }
    c->st = BC_READY;
    if (++bk->n_ready < bk->n_conns)
        return;
    kd_bench_note(bk->b, "%d connection(s) ready; sending %llu calls, %llu in flight (timed)",
                  bk->n_conns, (unsigned long long)bk->n, (unsigned long long)bk->inflight);
    for (int i = 0; i < bk->n_conns; i++)
        lws_callback_on_writable(bk->conns[i].wsi);
}

static void dispatch(bconn *c, const char *buf, size_t len)
{
    bench_kone *bk = c->bk;
    kd_kone_msg m;
    kd_err e = {0};
    if (kd_kone_msg_parse(buf, len, &m, &e)) {
        stop_with(bk, "connection %d: malformed frame from kone-sim: %s", c->idx, e.msg);
        return;
    }
    if (m.kind == KD_KONE_MSG_ANSWER && m.has_request_id && m.request_id == SESSION_REQ_ID &&
        c->st == BC_SESSION) {
        session_answer(c, &m);
        return;
    }
    int64_t i = call_of(bk, &m);
    if (i < 0 || bk->calls[i] == CALL_DONE)
        return; /* not a call of ours (an event), or a late frame of a finished call */
    if (m.kind == KD_KONE_MSG_ANSWER) {
        if (m.status >= 200 && m.status < 300) {
            bk->calls[i] = CALL_ANSWERED;
        } else {
            char why[300];
            snprintf(why, sizeof why, "answered %d %s", m.status, m.message);
            call_over(bk, c, i, false, why);
        }
    } else if (m.kind == KD_KONE_MSG_CALL_RESULT) {
        /* a result before its answer implies the answer, as in the worker */
        bool ok = m.has_success ? m.success : m.call_session_id != 0;
        call_over(bk, c, i, ok, m.error[0] ? m.error : "success=false");
    }
}

static void on_receive(bconn *c, struct lws *wsi, const char *in, size_t len)
{
    bool final = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
    if (kd_wsrx_feed(&c->rx, in, len, final) == KD_WSRX_MESSAGE)
        dispatch(c, c->rx.buf, c->rx.len);
    /* a dropped (too big) message is not an answer of ours */
}

/* ------------------------------------------------------------------ lws */

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    bconn *c = user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (c) {
            int status = wsi ? (int)lws_http_client_http_response(wsi) : 0;
            c->st = BC_GONE;
            c->wsi = NULL;
            stop_with(c->bk, "connection %d to kone.ws_url failed: %s%s%s", c->idx,
                      in ? (const char *)in : "connection error",
                      status == 401 ? " (HTTP 401: token refused)" : "",
                      status && status != 401 ? " (HTTP error)" : "");
        }
        break;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (c) {
            c->wsi = wsi;
            c->st = BC_SESSION;
            lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (c && in)
            on_receive(c, wsi, in, len);
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (c && c->wsi == wsi)
            return on_writeable(c);
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c) {
            c->st = BC_GONE;
            c->wsi = NULL;
            stop_with(c->bk, "connection %d closed by kone-sim after %llu of %llu calls", c->idx,
                      (unsigned long long)(c->bk->done + c->bk->failed),
                      (unsigned long long)c->bk->n);
        }
        break;
    default: break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"koneapi", callback, 0, 16384, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* Once a second: the deadline, and a progress line every 5 s. */
static void on_tick(lws_sorted_usec_list_t *sul)
{
    bench_kone *bk = lws_container_of(sul, bench_kone, tick);
    static int ticks;
    if (kd_bench_left_us(bk->b) == 0) {
        stop_with(bk,
                  "timed out after %lld s: %d of %d connections ready, %llu sent, %llu "
                  "accepted, %llu refused of %llu calls",
                  (long long)bk->b->timeout_s, bk->n_ready, bk->n_conns,
                  (unsigned long long)bk->next, (unsigned long long)bk->done,
                  (unsigned long long)bk->failed, (unsigned long long)bk->n);
        return;
    }
    if (++ticks % 5 == 0)
        kd_bench_note(bk->b, "%llu of %llu calls accepted", (unsigned long long)bk->done,
                      (unsigned long long)bk->n);
    lws_sul_schedule(bk->ctx, 0, &bk->tick, on_tick, LWS_US_PER_SEC);
}

/* ------------------------------------------------------------------ setup */

/* The call every request carries: a jobs_good job, validated by the job codec. */
static int make_job(kd_job *job, kd_err *err)
{
    json_t *o = json_pack("{s:i, s:s, s:s, s:s, s:s, s:i, s:i, s:i}", "v", 1, "job_id",
                          "bench-kone", "building_id", "building:9990000951", "group_id", "1", "op",
                          "call", "area", 1000, "action", 2, "destination", 2000);
    if (!o)
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    int64_t now_ms = kd_now_us() / 1000;
    int rc = kd_job_from_json(o, now_ms, 3600000, job, err);
    json_decref(o);
    return rc;
}

static int fetch_token(kd_bench *b, kd_kone_token *tok, kd_err *err)
{
    const kd_config *cfg = &b->cfg;
    int64_t timeout_ms = kd_cfg_int(cfg, KD_CFG_KONE_REQUEST_TIMEOUT_MS);
    kd_kone_token_cfg tc = {
        .token_url = kd_cfg_str(cfg, KD_CFG_KONE_TOKEN_URL),
        .client_id = kd_cfg_str(cfg, KD_CFG_KONE_CLIENT_ID),
        .client_secret = kd_cfg_str(cfg, KD_CFG_KONE_CLIENT_SECRET),
        .scope = kd_cfg_str(cfg, KD_CFG_KONE_SCOPE),
        .ca_file = kd_cfg_str(cfg, KD_CFG_KONE_CA_FILE),
        .timeout_ms = timeout_ms,
    };
    if (!*tc.client_id || !*tc.client_secret)
        return kd_err_set(err, KD_ERR_INVALID,
                          "kone.client_id and kone.client_secret are required (KD_KONE_CLIENT_ID, "
                          "KD_KONE_CLIENT_SECRET_FILE: source $KD_STATE_DIR/env)");
    return kd_kone_token_fetch(&tc, tok, err);
}

/* Creates the context and starts the C connections with the token in the URL. */
static int open_conns(bench_kone *bk, const char *token, kd_err *err)
{
    const kd_config *cfg = &bk->b->cfg;
    const char *url = kd_cfg_str(cfg, KD_CFG_KONE_WS_URL);
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", url);
    const char *prot = NULL, *host = NULL, *path = NULL;
    int port = 0;
    if (lws_parse_uri(copy, &prot, &host, &port, &path) || !prot || strcmp(prot, "wss") || !host ||
        !*host)
        return kd_err_set(err, KD_ERR_INVALID,
                          "kone.ws_url: must be wss://HOST[:PORT]/PATH, got '%s'", url);
    const char *ca = kd_cfg_str(cfg, KD_CFG_KONE_CA_FILE);

    bk->ctx = kk_lws_context(protocols, ca, NULL, 10); /* the worker's context, its log lines */
    if (!bk->ctx)
        return kd_err_set(err, KD_ERR_INTERNAL,
                          "could not create the libwebsockets context (TLS setup or CA file %s?)",
                          *ca ? ca : "(system)");

    static char esc[3 * KD_KONE_TOKEN_MAX + 1], full[3 * KD_KONE_TOKEN_MAX + 1100];
    kd_kone_url_escape(token, esc, sizeof esc);
    snprintf(full, sizeof full, "/%s%caccessToken=%s", path ? path : "",
             path && strchr(path, '?') ? '&' : '?', esc);
    int rc = 0;
    for (int i = 0; i < bk->n_conns && !rc; i++) {
        bconn *c = &bk->conns[i];
        c->bk = bk;
        c->idx = i;
        c->rx.max = RX_MAX;
        c->st = BC_CONNECTING;
        struct lws_client_connect_info ci;
        memset(&ci, 0, sizeof ci);
        ci.context = bk->ctx;
        ci.address = host;
        ci.port = port > 0 ? port : 443;
        ci.path = full;
        ci.host = host;
        ci.origin = host;
        ci.ssl_connection = LCCSCF_USE_SSL; /* certificate verified: no ALLOW_* flags */
        ci.protocol = "koneapi";
        ci.local_protocol_name = "koneapi";
        ci.userdata = c;
        ci.pwsi = &c->wsi;
        if (!lws_client_connect_via_info(&ci) && !bk->over)
            rc = kd_err_set(err, KD_ERR_IO, "connection %d: could not start it", i);
    }
    explicit_bzero(esc, sizeof esc);
    explicit_bzero(full, sizeof full);
    return rc;
}

int main(int argc, char **argv)
{
    kd_bench_opt opts[] = {
        {"count", true, 1, 10000000, 0, false, "elevator calls to send"},
        {"inflight", true, 1, 1000000, 0, false, "calls kept outstanding at once"},
        {"connections", false, 1, MAX_CONNS, 1, false, "WebSockets to spread the calls over"},
    };
    kd_bench b;
    kd_bench_init(&b, "kone", "--count N --inflight M [--connections C]", argc, argv, opts, 3, NULL,
                  0);
    static bench_kone bk;
    bk.b = &b;
    bk.n = (uint64_t)opts[0].value;
    bk.inflight = (uint64_t)opts[1].value;
    bk.n_conns = (int)opts[2].value;
    kd_err err = {0};
    if (make_job(&bk.job, &err)) {
        fprintf(stderr, "%s: the benchmark's call: %s\n", b.prog, err.msg);
        kd_bench_free(&b);
        return 2;
    }
    bk.calls = calloc(bk.n, 1);
    if (!bk.calls || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        kd_bench_fail(&b, "out of memory");
        free(bk.calls);
        kd_bench_free(&b);
        return 1;
    }

    kd_kone_token tok = {0};
    int rc = fetch_token(&b, &tok, &err);
    if (rc) {
        rc = kd_bench_fail(&b, "token: %s", err.msg);
    } else {
        kd_bench_note(&b, "token obtained; opening %d connection(s)", bk.n_conns);
        rc = open_conns(&bk, tok.access_token, &err);
        kd_kone_token_clear(&tok);
        if (rc)
            rc = kd_bench_fail(&b, "%s", err.msg);
    }
    if (!rc) {
        lws_sul_schedule(bk.ctx, 0, &bk.tick, on_tick, LWS_US_PER_SEC);
        while (!bk.over)
            if (lws_service(bk.ctx, 0) < 0) {
                stop_with(&bk, "the libwebsockets service loop failed");
                break;
            }
        rc = bk.rc;
    }
    if (!rc && bk.failed)
        rc = kd_bench_fail(&b, "%llu of %llu calls were refused; first: %s",
                           (unsigned long long)bk.failed, (unsigned long long)bk.n,
                           bk.first_refusal);
    if (!rc)
        kd_bench_report(&b, bk.n, bk.t0, bk.t1);
    if (bk.ctx) {
        lws_sul_cancel(&bk.tick);
        lws_context_destroy(bk.ctx);
    }
    for (int i = 0; i < MAX_CONNS; i++)
        kd_wsrx_free(&bk.conns[i].rx);
    free(bk.calls);
    curl_global_cleanup();
    kd_kone_token_clear(&tok);
    kd_bench_free(&b);
    return rc;
}
