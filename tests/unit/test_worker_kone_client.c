/* End-to-end tests of the worker's KONE client (worker/kone*.c) against a small fake KONE
 * in the same process: an lws server with TLS (a throwaway self-signed certificate made
 * with OpenSSL at start-up, trusted through kone.ca_file), the OAuth2 token endpoint and
 * stream-v2 with sessions, call answers, call results and call-state events.
 *
 * The fake runs in a forked child (shared-memory counters), so that under ASan only the
 * client's own memory is checked. Its behaviour is chosen by the job's call action (see
 * fk_action); kone-sim is
 * the full simulator, this is the smallest thing that exercises every branch of the
 * client: acceptance, refusals of every kind, tracking, 401 at the upgrade and on a
 * request, a connection lost before the answer (resume-session), timeouts, keep-alive
 * pings, connection replacement and shutdown.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_config.h"
#include "kd_log.h"
#include "kd_run.h"
#include "kone.h"
#include "test_cert.h"

#define CLIENT_ID "client-1"
#define SECRET "fake-secret-XYZ"
#define MAXQ 256

/* ================================================================== fake KONE */

typedef struct fk_conn {
    struct lws *wsi;
    int sess; /* index into fk->sessions, -1 none */
    char *q[MAXQ];
    int qh, qn;
    bool close_now;
    char *rx;
    size_t rx_len;
    int n_requests;
    int conn_no;
    bool subscribed; /* holds a call_state/+/+ subscription (as KONE, per conn) */
} fk_conn;

typedef struct fk_call {
    int64_t sid;
    int action;
    int sess;
    bool dropped; /* action 9: its first state ended the connection */
    bool pending; /* accepted, its states not delivered yet */
} fk_call;

typedef struct fk_deferred {
    int sess;
    json_t *request_id;
    int64_t sid;
    bool used;
} fk_deferred;

/* The fake runs in a child process (so that what libwebsockets' server side and OpenSSL
 * keep at exit is not counted against the client under ASan); this state is in shared
 * memory: the child serves, the test reads the counters and flips the switches. Pointers
 * in it (connections, JSON) are the child's own. */
typedef struct fk_shared {
    pthread_mutex_t mu; /* process-shared */
    pid_t pid;
    struct lws_context *ctx;
    int port;
    char dir[64], cert[96], key[96];

    /* token endpoint */
    int token_no;
    char valid_token[32];
    bool token_refuse;
    int token_fetches;
    int token_lifetime;

    /* stream */
    int n_conns; /* connections ever upgraded */
    int n_refused_upgrades;
    int n_pings, n_creates, n_resumes, n_monitors;
    int n_pings_no_building;  /* pings without buildingId (the spec requires one) */
    int n_calls_unsubscribed; /* calls on a connection not subscribed to their states */
    char sessions[32][24];
    fk_conn *session_conn[32];
    int n_sessions;
    fk_call calls[256];
    int n_calls;
    int64_t next_sid;
    fk_deferred deferred[16];
    int n_deferred;
    bool refused_401_once;
    int64_t refuse_until_ms; /* upgrades answered 503 until then (CLOCK_MONOTONIC) */
    int n_refused_503;
    int conn_requests[64];    /* per connection number: requests received */
    int64_t held_rid;         /* action 12: a request held unanswered (0: none) */
    int64_t late_sid;         /* action 13: the session id given in the late answer */
    int n_deletes;            /* lift-call-api-v2 deletes received */
    int n_site_fetches;       /* common-api requests other than ping (config, actions) */
    int n_unanswered_deletes; /* action 18: deletes left unanswered */
    int dropped_cfg;          /* building:dropcfg's first fetch dropped its connection */
    int n_calls_total;        /* lift-call-api-v2 action requests, whatever their fate */
    int n_pings_mute;         /* pings of building:mute, never answered */
    int dropped_sub;          /* building:dropsub's first subscription dropped its connection */
    /* calls parked unanswered until gate_calls of them have arrived, then answered in order:
     * calls that must be in flight together (test_many_spread), however slow the machine */
    int gate_calls, n_parked;
    fk_conn *parked_conn[8];
    json_t *parked_rid[8];
    int parked_action[8];
} fk_shared;

static fk_shared *fk;

static void fk_send(fk_conn *c, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s || c->qn >= MAXQ) {
        free(s);
        return;
    }
    c->q[(c->qh + c->qn++) % MAXQ] = s;
    lws_callback_on_writable(c->wsi);
}

static json_t *fk_answer(const json_t *rid, int status, const char *message)
{
    json_t *o = json_pack("{s:i,s:s,s:O}", "statusCode", status, "connectionId", "c1", "requestId",
                          rid ? rid : json_null());
    if (message)
        json_object_set_new(o, "message", json_string(message));
    else
        json_object_set_new(o, "data", json_pack("{s:s}", "time", "2026-01-01T00:00:00.000Z"));
    return o;
}

static json_t *fk_result(const json_t *rid, bool ok, int64_t sid, const char *error)
{
    json_t *d = json_pack("{s:O,s:b}", "request_id", rid, "success", ok);
    if (sid)
        json_object_set_new(d, "session_id", json_integer(sid));
    if (error)
        json_object_set_new(d, "error", json_string(error));
    return json_pack("{s:s,s:s,s:s,s:o}", "callType", "action", "buildingId", "building:1",
                     "groupId", "1", "data", d);
}

static json_t *fk_call_state(int64_t sid, const char *state, const char *reason)
{
    char topic[64];
    snprintf(topic, sizeof topic, "call_state/%lld/%s", (long long)sid, state);
    json_t *d =
        json_pack("{s:s,s:I,s:s}", "time", state, "session_id", (json_int_t)sid, "state", state);
    if (!strcmp(state, "being_served")) {
        json_object_set_new(d, "allocated_lift_deck", json_pack("[i]", 1001010));
        json_object_set_new(d, "eta", json_string("2026-01-01T00:00:09.000Z"));
    }
    if (reason)
        json_object_set_new(d, "cancel_reason", json_string(reason));
    return json_pack("{s:s,s:s,s:s,s:s,s:o}", "callType", "monitor-call-state", "buildingId",
                     "building:1", "groupId", "1", "subtopic", topic, "data", d);
}

/* What the fake does with a call, by action:
 *   2    accepted; being_allocated, being_served, served_soon, served
 *   3    accepted; cancelled SAME_SOURCE_AND_DEST_FLOOR
 *   5    accepted; no events at all (call stays 'created')
 *   6    201 and nothing else: no call result (site link down, as kone-sim does it)
 *   8    accepted, but the connection drops before the answer; answered after resume
 *   200  201, then success=false "Ignoring call, unknown call action: 200"
 *   401  401 once (token revoked), then as 2
 *   404  404 "Building data not found for ID building:1"
 *   429  429
 *   7    never answered
 *   9    accepted; being_allocated, then the connection drops; the rest of its states go
 *        only to a connection of its session that subscribes after that
 * States go only to a connection that subscribed to call_state/+/+ before the call (KONE
 * sends no snapshot); a call whose states could not be delivered (its connection dropped)
 * gets them when a connection of its session subscribes again (KONE's resend on resume).
 *   10   as 8, and upgrades are refused (503) for 2.5 s: the resume comes late
 *   11   the connection drops before the answer, which is lost for good; upgrades refused
 *        (503) for 2.5 s
 *   14   the connection drops before the answer and KONE forgets the session (a restart):
 *        resume-session is answered 404
 *   15   201, then the connection drops before the call result; the session forgotten
 *   16   accepted, no events; its delete drops the connection, the session forgotten
 *   17   accepted, no events; its delete is refused (409)
 *   18   accepted, no events; its delete is never answered
 *   19   frames that are no job's first (an answer without a request id, a state of a
 *        call made elsewhere), then the call's result inside its 201 answer; states as 2
 *   20   201, then a result success=true without a session_id
 *   21   the call result before the 201 answer; states as 2
 *   22   accepted; being_allocated, being_served, then nothing
 * Subscriptions are answered 201, except those of building:403 and building:503 (refused with
 * that status) and the first of building:dropsub (the connection dropped, no answer).
 * Pings are answered 200, except those of building:mute (never) and building:ping1005 (500,
 * KONE's link-down error 1005).
 * A group's configuration and actions (common-api) are refused 400, except for building:garbled
 * (201 with neither areas nor call types) and building:dropcfg (its first fetch drops the
 * connection). */
static int64_t fk_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Drops c after what is queued on it; with forget, KONE forgets its session too, as after a
 * restart of KONE's side: a resume-session naming it is answered 404. */
static void fk_drop(fk_conn *c, bool forget)
{
    if (forget && c->sess >= 0)
        snprintf(fk->sessions[c->sess], sizeof fk->sessions[c->sess], "forgotten");
    c->close_now = true;
    lws_callback_on_writable(c->wsi);
}

static void fk_events(fk_conn *c, fk_call *call)
{
    call->pending = false;
    if (call->action == 9 && !call->dropped) {
        call->dropped = true;
        call->pending = true;
        fk_send(c, fk_call_state(call->sid, "being_allocated", NULL));
        c->close_now = true;
        lws_callback_on_writable(c->wsi);
        return;
    }
    if (call->action == 3) {
        fk_send(c, fk_call_state(call->sid, "cancelled", "SAME_SOURCE_AND_DEST_FLOOR"));
    } else if (call->action == 22) { /* its lift is coming, and never arrives */
        fk_send(c, fk_call_state(call->sid, "being_allocated", NULL));
        fk_send(c, fk_call_state(call->sid, "being_served", NULL));
    } else if (call->action != 5 && (call->action < 16 || call->action > 18)) {
        fk_send(c, fk_call_state(call->sid, "being_allocated", NULL));
        fk_send(c, fk_call_state(call->sid, "being_served", NULL));
        fk_send(c, fk_call_state(call->sid, "being_served", NULL)); /* a re-send: no change */
        fk_send(c, fk_call_state(call->sid, "served_soon", NULL));
        fk_send(c, fk_call_state(call->sid, "served", NULL));
    }
}

static void fk_action(fk_conn *c, const json_t *rid, int action)
{
    switch (action) {
    case 404: fk_send(c, fk_answer(rid, 404, "Building data not found for ID building:1")); return;
    case 429: fk_send(c, fk_answer(rid, 429, "Too many requests")); return;
    case 7: return;
    case 12: /* held: answered late, by action 13 */ fk->held_rid = json_integer_value(rid); return;
    case 13: /* first the late answer (and call result) of the held request, then this one's */
        if (fk->held_rid) {
            json_t *late = json_integer(fk->held_rid);
            fk->late_sid = ++fk->next_sid;
            fk_send(c, fk_answer(late, 201, NULL));
            fk_send(c, fk_result(late, true, fk->late_sid, NULL));
            json_decref(late);
            fk->held_rid = 0;
        }
        break;
    case 11:
        fk->refuse_until_ms = fk_now_ms() + 2500;
        c->close_now = true;
        lws_callback_on_writable(c->wsi);
        return;
    case 6: fk_send(c, fk_answer(rid, 201, NULL)); return;
    case 14: fk_drop(c, true); return;
    case 15:
        fk_send(c, fk_answer(rid, 201, NULL));
        fk_drop(c, true);
        return;
    case 20:
        fk_send(c, fk_answer(rid, 201, NULL));
        fk_send(c, fk_result(rid, true, 0, NULL));
        return;
    case 401:
        if (!fk->refused_401_once) {
            fk->refused_401_once = true;
            fk->valid_token[0] = '\0'; /* revoked: the next upgrade needs a new one */
            fk_send(c, fk_answer(rid, 401, "Token expired"));
            return;
        }
        break;
    case 200:
        fk_send(c, fk_answer(rid, 201, NULL));
        fk_send(c, fk_result(rid, false, 0, "Ignoring call, unknown call action: 200"));
        return;
    default: break;
    }
    int64_t sid = ++fk->next_sid;
    if (!c->subscribed)
        fk->n_calls_unsubscribed++;
    fk_call *call = NULL;
    if (fk->n_calls < 256) {
        call = &fk->calls[fk->n_calls++];
        *call = (fk_call){sid, action, c->sess, false, true};
    }
    if ((action == 8 || action == 10) && fk->n_deferred < 16) {
        fk->deferred[fk->n_deferred++] = (fk_deferred){c->sess, json_deep_copy(rid), sid, false};
        if (action == 10)
            fk->refuse_until_ms = fk_now_ms() + 2500;
        c->close_now = true;
        lws_callback_on_writable(c->wsi);
        return;
    }
    if (action == 19) {
        fk_send(c, fk_answer(NULL, 201, NULL));
        fk_send(c, fk_call_state(1, "being_served", NULL));
        json_t *a = fk_answer(rid, 201, NULL);
        json_object_set_new(a, "data", json_pack("{s:b,s:I}", "success", 1, "session_id", sid));
        fk_send(c, a);
    } else if (action == 21) {
        fk_send(c, fk_result(rid, true, sid, NULL));
        fk_send(c, fk_answer(rid, 201, NULL));
    } else {
        fk_send(c, fk_answer(rid, 201, NULL));
        fk_send(c, fk_result(rid, true, sid, NULL));
    }
    if (call && c->subscribed)
        fk_events(c, call);
}

static void fk_frame(fk_conn *c, const char *text, size_t len)
{
    if (c->close_now)
        return; /* dropped: like a server that closed, it reads and answers nothing more (the
                 * worker may have written more frames in the same TLS record) */
    json_t *o = json_loadb(text, len, 0, NULL);
    if (!o)
        return;
    const char *type = json_string_value(json_object_get(o, "type"));
    const char *ct = json_string_value(json_object_get(o, "callType"));
    json_t *p = json_object_get(o, "payload");
    const json_t *rid = json_object_get(p, "request_id");
    if (!rid)
        rid = json_object_get(o, "requestId");
    c->n_requests++;
    if (c->conn_no < 64)
        fk->conn_requests[c->conn_no]++;
    if (!type) {
    } else if (!strcmp(type, "create-session")) {
        fk->n_creates++;
        int s = fk->n_sessions++ % 32;
        snprintf(fk->sessions[s], sizeof fk->sessions[s], "sess-%d", s);
        fk->session_conn[s] = c;
        c->sess = s;
        fk_send(c, json_pack("{s:i,s:O,s:{s:s}}", "statusCode", 201, "requestId", rid, "data",
                             "sessionId", fk->sessions[s]));
    } else if (!strcmp(type, "resume-session")) {
        fk->n_resumes++;
        const char *sid = json_string_value(json_object_get(o, "sessionId"));
        int s = -1;
        for (int i = 0; sid && i < fk->n_sessions && i < 32; i++)
            if (!strcmp(fk->sessions[i], sid))
                s = i;
        if (s < 0) {
            fk_send(c, fk_answer(rid, 404, "Session not found"));
        } else {
            fk_conn *old = fk->session_conn[s];
            if (old && old != c) { /* as KONE: the previous connection is closed */
                old->sess = -1;
                old->close_now = true;
                lws_callback_on_writable(old->wsi);
            }
            fk->session_conn[s] = c;
            c->sess = s;
            fk_send(c, json_pack("{s:i,s:O,s:{s:s}}", "statusCode", 201, "requestId", rid, "data",
                                 "sessionId", sid));
            for (int i = 0; i < fk->n_deferred; i++) {
                fk_deferred *d = &fk->deferred[i];
                if (d->sess == s && !d->used) {
                    d->used = true;
                    fk_send(c, fk_answer(d->request_id, 201, NULL));
                    fk_send(c, fk_result(d->request_id, true, d->sid, NULL));
                }
            }
        }
    } else if (!strcmp(type, "common-api") && ct && !strcmp(ct, "ping")) {
        fk->n_pings++;
        const char *b = json_string_value(json_object_get(o, "buildingId"));
        if (!b)
            fk->n_pings_no_building++;
        if (b && !strcmp(b, "building:mute")) /* its pings go unanswered */
            fk->n_pings_mute++;
        else if (b && !strcmp(b, "building:ping1005")) /* its link is down */
            fk_send(c, fk_answer(rid, 500, "Error 1005: building link down"));
        else
            fk_send(c, fk_answer(rid, 200, NULL));
    } else if (!strcmp(type, "common-api")) { /* config, actions */
        fk->n_site_fetches++;
        const char *b = json_string_value(json_object_get(o, "buildingId"));
        if (b && !strcmp(b, "building:garbled")) /* 201 without areas or call types */
            fk_send(c, fk_answer(rid, 201, NULL));
        else if (b && !strcmp(b, "building:dropcfg") && !fk->dropped_cfg) {
            fk->dropped_cfg = true; /* the first fetch ends the connection */
            fk_drop(c, false);
        } else /* not served here */
            fk_send(c, fk_answer(rid, 400, "Invalid json payload"));
    } else if (!strcmp(type, "site-monitoring")) {
        fk->n_monitors++;
        /* buildings 403 and 503 refuse subscriptions with that status */
        const char *b = json_string_value(json_object_get(o, "buildingId"));
        int refuse = !b                           ? 0
                     : !strcmp(b, "building:403") ? 403
                     : !strcmp(b, "building:503") ? 503
                                                  : 0;
        if (refuse) {
            fk_send(c, fk_answer(rid, refuse, refuse == 403 ? "Forbidden" : "Unavailable"));
            json_decref(o);
            return;
        }
        if (b && !strcmp(b, "building:dropsub") && !fk->dropped_sub) {
            fk->dropped_sub = 1; /* its first subscription ends the connection, unanswered */
            fk_drop(c, false);
            json_decref(o);
            return;
        }
        fk_send(c, fk_answer(rid, 201, NULL));
        const char *topic = json_string_value(json_array_get(json_object_get(p, "subtopics"), 0));
        if (topic && !strcmp(topic, "call_state/+/+")) {
            c->subscribed = true;
            for (int i = 0; i < fk->n_calls; i++) /* undelivered states of its session */
                if (fk->calls[i].pending && fk->calls[i].sess == c->sess && c->sess >= 0)
                    fk_events(c, &fk->calls[i]);
        }
    } else if (!strcmp(type, "lift-call-api-v2") && ct && !strcmp(ct, "action")) {
        fk->n_calls_total++;
        int action = (int)json_integer_value(json_object_get(json_object_get(p, "call"), "action"));
        if (fk->n_parked < fk->gate_calls) {
            int n = fk->n_parked++;
            fk->parked_conn[n] = c;
            fk->parked_rid[n] = json_deep_copy(rid);
            fk->parked_action[n] = action;
            if (fk->n_parked == fk->gate_calls)
                for (int i = 0; i < n + 1; i++) {
                    fk_action(fk->parked_conn[i], fk->parked_rid[i], fk->parked_action[i]);
                    json_decref(fk->parked_rid[i]);
                }
        } else {
            fk_action(c, rid, action);
        }
    } else if (!strcmp(type, "lift-call-api-v2") && ct && !strcmp(ct, "hold_open")) {
        fk_send(c, fk_answer(rid, 202, NULL));
    } else if (!strcmp(type, "lift-call-api-v2") && ct && !strcmp(ct, "delete")) {
        int64_t sid = json_integer_value(json_object_get(p, "session_id"));
        int owner = -2, action = 0;
        for (int i = 0; i < fk->n_calls; i++)
            if (fk->calls[i].sid == sid) {
                owner = fk->calls[i].sess;
                action = fk->calls[i].action;
            }
        fk->n_deletes++;
        if (action == 16)
            fk_drop(c, true);
        else if (action == 18) /* never answered */
            fk->n_unanswered_deletes++;
        else if (sid == 999 || action == 17)
            fk_send(c, fk_answer(rid, 409, "Request was not in cancellable state"));
        else if (owner != -2 && owner != c->sess) /* as kone-sim: sessions own calls */
            fk_send(c, fk_answer(rid, 404, "Call not found in this session"));
        else
            fk_send(c, fk_answer(rid, 202, NULL));
    } else {
        fk_send(c, fk_answer(rid, 400, "Invalid json payload"));
    }
    json_decref(o);
}

static int fk_ws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    fk_conn *c = user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        pthread_mutex_lock(&fk->mu);
        memset(c, 0, sizeof *c);
        c->wsi = wsi;
        c->sess = -1;
        c->conn_no = fk->n_conns++;
        pthread_mutex_unlock(&fk->mu);
        break;
    case LWS_CALLBACK_RECEIVE: {
        char *nb = realloc(c->rx, c->rx_len + len + 1);
        if (!nb)
            return -1;
        c->rx = nb;
        memcpy(c->rx + c->rx_len, in, len);
        c->rx_len += len;
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            pthread_mutex_lock(&fk->mu);
            fk_frame(c, c->rx, c->rx_len);
            pthread_mutex_unlock(&fk->mu);
            c->rx_len = 0;
        }
        break;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        pthread_mutex_lock(&fk->mu);
        bool close_now = c->close_now && c->qn == 0;
        char *s = NULL;
        if (c->qn) {
            s = c->q[c->qh];
            c->qh = (c->qh + 1) % MAXQ;
            c->qn--;
        }
        bool more = c->qn > 0 || c->close_now;
        pthread_mutex_unlock(&fk->mu);
        if (close_now)
            return -1;
        if (s) {
            size_t n = strlen(s);
            unsigned char *b = malloc(LWS_PRE + n);
            memcpy(b + LWS_PRE, s, n);
            int w = lws_write(wsi, b + LWS_PRE, n, LWS_WRITE_TEXT);
            free(b);
            free(s);
            if (w < (int)n)
                return -1;
        }
        if (more)
            lws_callback_on_writable(wsi);
        break;
    }
    case LWS_CALLBACK_CLOSED:
        pthread_mutex_lock(&fk->mu);
        for (int i = 0; i < 32; i++)
            if (fk->session_conn[i] == c)
                fk->session_conn[i] = NULL;
        while (c->qn) {
            free(c->q[c->qh]);
            c->qh = (c->qh + 1) % MAXQ;
            c->qn--;
        }
        free(c->rx);
        c->rx = NULL;
        pthread_mutex_unlock(&fk->mu);
        break;
    default: break;
    }
    return 0;
}

typedef struct fk_http {
    char body[512];
    int status;
} fk_http;

static int fk_http_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len)
{
    fk_http *h = user;
    (void)in;
    (void)len;
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
        char tok[64] = "";
        const char *v = lws_get_urlarg_by_name(wsi, "accessToken=", tok, sizeof tok);
        pthread_mutex_lock(&fk->mu);
        bool down = fk_now_ms() < fk->refuse_until_ms;
        bool ok = v && fk->valid_token[0] && !strcmp(v, fk->valid_token);
        if (down)
            fk->n_refused_503++;
        else if (!ok)
            fk->n_refused_upgrades++;
        pthread_mutex_unlock(&fk->mu);
        if (down) {
            lws_return_http_status(wsi, 503, NULL);
            return 1;
        }
        if (ok)
            return 0;
        lws_return_http_status(wsi, 401, NULL);
        return 1;
    }
    case LWS_CALLBACK_HTTP: return 0; /* wait for the body */
    case LWS_CALLBACK_HTTP_BODY: return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION: {
        char auth[256] = "", want[256] = "Basic ";
        lws_hdr_copy(wsi, auth, sizeof auth, WSI_TOKEN_HTTP_AUTHORIZATION);
        lws_b64_encode_string(CLIENT_ID ":" SECRET, (int)strlen(CLIENT_ID ":" SECRET), want + 6,
                              (int)sizeof want - 6);
        pthread_mutex_lock(&fk->mu);
        fk->token_fetches++;
        if (fk->token_refuse || strcmp(auth, want) != 0) {
            h->status = 401;
            snprintf(h->body, sizeof h->body, "{\"error\":\"invalid_client\"}");
        } else {
            h->status = 200;
            snprintf(fk->valid_token, sizeof fk->valid_token, "tok-%d", ++fk->token_no);
            snprintf(h->body, sizeof h->body,
                     "{\"access_token\":\"%s\",\"token_type\":\"Bearer\",\"expires_in\":%d}",
                     fk->valid_token, fk->token_lifetime);
        }
        pthread_mutex_unlock(&fk->mu);
        unsigned char hb[LWS_PRE + 512];
        unsigned char *start = hb + LWS_PRE, *p = start, *end = hb + sizeof hb - 1;
        if (lws_add_http_common_headers(wsi, (unsigned)h->status, "application/json",
                                        strlen(h->body), &p, end) ||
            lws_finalize_write_http_header(wsi, start, &p, end))
            return 1;
        lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_HTTP_WRITEABLE: {
        if (!h || !h->status)
            return 0;
        size_t n = strlen(h->body);
        unsigned char b[LWS_PRE + 512];
        memcpy(b + LWS_PRE, h->body, n);
        if (lws_write(wsi, b + LWS_PRE, n, LWS_WRITE_HTTP_FINAL) != (int)n)
            return 1;
        h->status = 0;
        if (lws_http_transaction_completed(wsi))
            return -1;
        return 0;
    }
    default: break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols fk_protocols[] = {
    {"http", fk_http_cb, sizeof(fk_http), 0, 0, NULL, 0},
    {"koneapi", fk_ws_cb, sizeof(fk_conn), 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static int fk_get(const int *field)
{
    pthread_mutex_lock(&fk->mu);
    int v = *field;
    pthread_mutex_unlock(&fk->mu);
    return v;
}

/* The child: makes the certificate, serves until killed. */
static void fk_child(void)
{
    tc_make_cert(fk->cert, fk->key, "fake-kone");
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = 0;
    info.iface = "127.0.0.1";
    info.protocols = fk_protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.ssl_cert_filepath = fk->cert;
    info.ssl_private_key_filepath = fk->key;
    info.alpn = "http/1.1";
    info.gid = -1;
    info.uid = -1;
    fk->ctx = lws_create_context(&info);
    if (!fk->ctx)
        _exit(1);
    int port = lws_get_vhost_listen_port(lws_get_vhost_by_name(fk->ctx, "default"));
    pthread_mutex_lock(&fk->mu);
    fk->port = port;
    pthread_mutex_unlock(&fk->mu);
    for (;;)
        lws_service(fk->ctx, 0);
}

static void fk_start(void)
{
    fk = mmap(NULL, sizeof *fk, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(fk != MAP_FAILED);
    memset(fk, 0, sizeof *fk);
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&fk->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    fk->token_lifetime = 3600;
    fk->next_sid = 1000;
    snprintf(fk->dir, sizeof fk->dir, "/tmp/kd-kone-test-XXXXXX");
    assert_non_null(mkdtemp(fk->dir));
    snprintf(fk->cert, sizeof fk->cert, "%s/cert.pem", fk->dir);
    snprintf(fk->key, sizeof fk->key, "%s/key.pem", fk->dir);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        kd_log_init("fake-kone", "error");
        lws_set_log_level(LLL_ERR, NULL);
        fk_child();
        _exit(0);
    }
    fk->pid = pid;
    for (int i = 0; i < 1000 && fk_get(&fk->port) == 0; i++)
        usleep(10000);
    assert_true(fk_get(&fk->port) > 0);
}

static void fk_stop(void)
{
    kill(fk->pid, SIGKILL);
    waitpid(fk->pid, NULL, 0);
    unlink(fk->cert);
    unlink(fk->key);
    rmdir(fk->dir);
    pthread_mutex_destroy(&fk->mu);
    munmap(fk, sizeof *fk);
    fk = NULL;
}

/* ================================================================== the client side */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    char states[64][32];
    int n_states;
} obs = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {{0}}, 0};

static void on_done(kd_run *run, void *arg)
{
    (void)arg;
    (void)run;
    pthread_mutex_lock(&obs.mu);
    obs.done++;
    pthread_cond_broadcast(&obs.cv);
    pthread_mutex_unlock(&obs.mu);
}

static void on_event(kd_run *run, const kd_call_event *ev, void *arg)
{
    (void)arg;
    assert_ptr_equal(ev->run, run);
    pthread_mutex_lock(&obs.mu);
    if (obs.n_states < 64)
        snprintf(obs.states[obs.n_states++], 32, "%s", ev->state);
    pthread_mutex_unlock(&obs.mu);
}

static bool wait_done(int n, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&obs.mu);
    while (obs.done < n)
        if (pthread_cond_timedwait(&obs.cv, &obs.mu, &ts))
            break;
    bool ok = obs.done >= n;
    pthread_mutex_unlock(&obs.mu);
    return ok;
}

typedef struct client {
    kd_config cfg;
    kd_kone *k;
} client;

/* extra1, extra2: NULL, or one or more flags separated by spaces */
static void client_start(client *c, const char *extra1, const char *extra2)
{
    char a[16][300];
    int n = 0;
    snprintf(a[n++], 300, "test");
    snprintf(a[n++], 300, "--kone-token-url=https://127.0.0.1:%d/api/v2/oauth2/token", fk->port);
    snprintf(a[n++], 300, "--kone-ws-url=wss://127.0.0.1:%d/stream-v2", fk->port);
    snprintf(a[n++], 300, "--kone-client-id=" CLIENT_ID);
    snprintf(a[n++], 300, "--kone-client-secret=" SECRET);
    snprintf(a[n++], 300, "--kone-ca-file=%s", fk->cert);
    snprintf(a[n++], 300, "--kone-request-timeout-ms=1500");
    snprintf(a[n++], 300, "--kone-call-timeout-ms=700");
    const char *extra[] = {extra1, extra2};
    for (int e = 0; e < 2; e++)
        for (const char *p = extra[e]; p && *p && n < 16;) {
            size_t len = strcspn(p, " ");
            if (len)
                snprintf(a[n++], 300, "%.*s", (int)len, p);
            p += len + (p[len] == ' ');
        }
    char *argv[16];
    for (int i = 0; i < n; i++)
        argv[i] = a[i];
    kd_err err = {0};
    if (kd_config_load(&c->cfg, KD_PROG_WORKER, "test", n, argv, &err))
        fail_msg("config: %s", err.msg);
    pthread_mutex_lock(&obs.mu);
    obs.done = 0;
    obs.n_states = 0;
    pthread_mutex_unlock(&obs.mu);
    kd_kone_hooks hooks = {.done = on_done, .call_event = on_event, .arg = NULL};
    if (kd_kone_start(&c->k, &c->cfg, &hooks, &err))
        fail_msg("kd_kone_start: %s", err.msg);
    for (int i = 0; i < 2000 && !kd_kone_ready(c->k); i++)
        usleep(10000);
    assert_true(kd_kone_ready(c->k));
}

static void client_stop(client *c)
{
    kd_kone_stop(c->k);
    kd_config_free(&c->cfg);
}

static kd_run *new_run(kd_op op, int action, bool track)
{
    kd_run *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->job_valid = true;
    r->job.v = 1;
    snprintf(r->job.job_id, sizeof r->job.job_id, "job-%d", action);
    r->job.op = op;
    snprintf(r->job.building_id, sizeof r->job.building_id, "building:1");
    snprintf(r->job.group_id, sizeof r->job.group_id, "1");
    r->job.created_at = kd_now_us() / 1000;
    r->job.deadline = r->job.created_at + 60000;
    r->job.area = 3000;
    r->job.action = action;
    r->job.has_destination = true;
    r->job.destination = 5000;
    r->job.track = track;
    r->attempt = 1;
    return r;
}

/* Submits one run and waits for its outcome. */
static kd_run *run_one(client *c, kd_run *r, int ms)
{
    int before;
    pthread_mutex_lock(&obs.mu);
    before = obs.done;
    pthread_mutex_unlock(&obs.mu);
    kd_kone_submit(c->k, r);
    if (!wait_done(before + 1, ms))
        fail_msg("job %s: no outcome within %d ms", r->job.job_id, ms);
    return r;
}

static void expect(const kd_run *r, kd_outcome o, kd_failure_class f, const char *code)
{
    if (r->outcome != o || r->failure != f || strcmp(r->error_code, code) != 0)
        fail_msg("job %s: got %s/%d '%s' (%s), expected %s/%d '%s'", r->job.job_id,
                 kd_outcome_name(r->outcome), r->failure, r->error_code, r->error_message,
                 kd_outcome_name(o), f, code);
}

/* ================================================================== tests */

static int setup(void **state)
{
    (void)state;
    fk_start();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fk_stop();
    return 0;
}

static void test_outcomes(void **state)
{
    (void)state;
    client c;
    client_start(&c, NULL, NULL);
    /* the client is ready with one connection; the second one's session may come a moment
     * later on a loaded machine (ctest -j2 saw 1 here) */
    for (int i = 0; i < 300 && fk_get(&fk->n_creates) < 2; i++)
        usleep(10000);
    assert_int_equal(fk_get(&fk->n_creates), 2); /* two connections, two sessions */

    kd_run *r = run_one(&c, new_run(KD_OP_CALL, 2, false), 5000);
    expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
    assert_true(r->session_id > 1000);
    assert_int_equal(r->kone_status, 201);
    assert_true(r->started_us > 0);
    assert_true(r->kone_rtt_us > 0);
    assert_true(r->finished_us >= r->started_us);
    free(r);

    /* cancelled at once: seen only because the subscription came before the call */
    r = run_one(&c, new_run(KD_OP_CALL, 3, false), 5000);
    expect(r, KD_OUTCOME_REJECTED, KD_FAIL_FINAL, "SAME_SOURCE_AND_DEST_FLOOR");
    assert_non_null(strstr(r->error_message, "SAME_SOURCE_AND_DEST_FLOOR"));
    free(r);

    r = run_one(&c, new_run(KD_OP_CALL, 200, false), 5000);
    expect(r, KD_OUTCOME_REJECTED, KD_FAIL_FINAL, "ignored_call");
    assert_string_equal(r->error_message, "Ignoring call, unknown call action: 200");
    free(r);

    r = run_one(&c, new_run(KD_OP_CALL, 404, false), 5000);
    expect(r, KD_OUTCOME_REJECTED, KD_FAIL_FINAL, "404");
    assert_int_equal(r->kone_status, 404);
    assert_non_null(strstr(r->error_message, "Building data not found"));
    free(r);

    r = run_one(&c, new_run(KD_OP_CALL, 429, false), 5000);
    expect(r, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "429");
    free(r);

    /* accepted, never progresses: it is deleted first (202), and only then may be retried */
    r = run_one(&c, new_run(KD_OP_CALL, 5, false), 5000);
    expect(r, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "1005");
    assert_non_null(strstr(r->error_message, "cancelled (delete answered 202)"));
    assert_true(r->session_id > 0);
    free(r);

    r = run_one(&c, new_run(KD_OP_CALL, 6, false), 5000); /* 201, then nothing */
    expect(r, KD_OUTCOME_UNKNOWN, KD_FAIL_FINAL, "1005");
    assert_int_equal(r->kone_status, 201);
    free(r);

    r = run_one(&c, new_run(KD_OP_CALL, 7, false), 5000); /* never answered */
    expect(r, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "timeout");
    free(r);

    kd_run *h = new_run(KD_OP_HOLD_OPEN, 0, false);
    h->job.lift_deck = 1001010;
    h->job.served_area = 5000;
    r = run_one(&c, h, 5000);
    expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
    assert_int_equal(r->kone_status, 202);
    free(r);

    kd_run *x = new_run(KD_OP_CANCEL, 0, false);
    x->job.session_id = 999;
    r = run_one(&c, x, 5000);
    expect(r, KD_OUTCOME_REJECTED, KD_FAIL_FINAL, "409");
    free(r);
    x = new_run(KD_OP_CANCEL, 0, false);
    x->job.session_id = 1001;
    r = run_one(&c, x, 5000);
    expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
    free(r);

    kd_run *old = new_run(KD_OP_CALL, 2, false);
    old->job.deadline = kd_now_us() / 1000 - 1;
    r = run_one(&c, old, 5000);
    expect(r, KD_OUTCOME_EXPIRED, KD_FAIL_FINAL, "expired");
    free(r);
    /* every call went out on a connection already subscribed to its building's states,
     * and one subscription per connection served all of them */
    assert_int_equal(fk_get(&fk->n_calls_unsubscribed), 0);
    assert_true(fk_get(&fk->n_monitors) <= 2);
    client_stop(&c);
}

/* A subscription refused for good (403) lets the call go out, its states unfollowed: the
 * accepted call succeeds with a note. One that fails transiently (503) fails the call
 * before it is made, so retrying it is safe. */
static void test_subscription_refused(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-connections=1", NULL);
    int unsubscribed = fk_get(&fk->n_calls_unsubscribed), calls = fk_get(&fk->n_calls);
    const struct {
        const char *building, *note;
        kd_outcome o;
        kd_failure_class f;
        const char *code;
    } cases[] = {
        {"building:403", "call state not followed", KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, ""},
        {"building:503", "not made", KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "monitor_failed"},
    };
    for (int i = 0; i < 2; i++) {
        kd_run *r = new_run(KD_OP_CALL, 2, false);
        snprintf(r->job.building_id, sizeof r->job.building_id, "%s", cases[i].building);
        r = run_one(&c, r, 5000);
        expect(r, cases[i].o, cases[i].f, cases[i].code);
        assert_non_null(strstr(r->error_message, cases[i].note));
        assert_non_null(strstr(r->error_message, cases[i].building + 9)); /* the status */
        free(r);
    }
    assert_int_equal(fk_get(&fk->n_calls_unsubscribed), unsubscribed + 1);
    assert_int_equal(fk_get(&fk->n_calls), calls + 1); /* only the 403 building's call */
    client_stop(&c);
}

static void test_tracked(void **state)
{
    (void)state;
    client c;
    client_start(&c, NULL, NULL);
    kd_run *r = run_one(&c, new_run(KD_OP_CALL, 2, true), 5000);
    expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
    /* asserted on a copy: a failed assertion must not leave obs.mu held */
    pthread_mutex_lock(&obs.mu);
    __typeof__(obs) o = obs;
    pthread_mutex_unlock(&obs.mu);
    /* every state change in order; the duplicate being_served is not a change */
    assert_int_equal(o.n_states, 4);
    assert_string_equal(o.states[0], "being_allocated");
    assert_string_equal(o.states[1], "being_served");
    assert_string_equal(o.states[2], "served_soon");
    assert_string_equal(o.states[3], "served");
    free(r);
    client_stop(&c);
}

static void test_many_spread(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-connections=3", NULL);
    /* all three sessions open in the client: a group whose first call finds a connection not
     * yet ready is homed on another */
    for (int i = 0; i < 1000 && kd_kone_links_ready(c.k) < 3; i++)
        usleep(10000);
    assert_int_equal(kd_kone_links_ready(c.k), 3);
    /* the three groups' first calls are answered only once all three have arrived: a first
     * call answered before the next group is routed would leave its connection the least
     * loaded again (a preempted test thread did that under ASan in CI) */
    pthread_mutex_lock(&fk->mu);
    fk->gate_calls = 3;
    fk->n_parked = 0;
    pthread_mutex_unlock(&fk->mu);
    int before = fk_get(&fk->n_conns);
    kd_run *runs[30];
    for (int i = 0; i < 30; i++) { /* three groups: each gets a connection of its own (its home) */
        runs[i] = new_run(KD_OP_CALL, 2, i % 2 == 0);
        snprintf(runs[i]->job.group_id, sizeof runs[i]->job.group_id, "%d", 1 + i % 3);
        kd_kone_submit(c.k, runs[i]);
    }
    assert_true(wait_done(30, 10000));
    for (int i = 0; i < 30; i++) {
        expect(runs[i], KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
        free(runs[i]);
    }
    pthread_mutex_lock(&fk->mu);
    int used = 0;
    for (int i = 0; i < 64; i++)
        used += fk->conn_requests[i] > 5;
    pthread_mutex_unlock(&fk->mu);
    assert_true(used >= 3); /* the groups were spread over the connections */
    assert_int_equal(fk_get(&fk->n_conns), before); /* no connection per job */
    client_stop(&c);
}

static void test_cancel_affinity(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-connections=3", NULL);
    for (int i = 0; i < 1000 && kd_kone_links_ready(c.k) < 3; i++) /* all three sessions open */
        usleep(10000);
    assert_int_equal(kd_kone_links_ready(c.k), 3);
    int64_t sids[6];
    for (int i = 0; i < 6; i++) {
        kd_run *r = run_one(&c, new_run(KD_OP_CALL, 2, false), 5000);
        expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
        sids[i] = r->session_id;
        free(r);
    }
    /* three slots, six calls: without affinity most deletes would land on another session */
    for (int i = 0; i < 6; i++) {
        kd_run *x = new_run(KD_OP_CANCEL, 0, false);
        x->job.session_id = sids[i];
        kd_run *r = run_one(&c, x, 5000);
        expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
        free(r);
    }
    client_stop(&c);
}

static void test_401_on_request(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-connections=1", NULL);
    int fetches = fk_get(&fk->token_fetches);
    kd_run *r = run_one(&c, new_run(KD_OP_CALL, 401, false), 8000);
    expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
    assert_true(fk_get(&fk->token_fetches) > fetches); /* a fresh token was fetched */
    assert_true(fk_get(&fk->n_resumes) >= 1);          /* and the session resumed */
    free(r);
    client_stop(&c);
}

static void test_401_at_upgrade(void **state)
{
    (void)state;
    pthread_mutex_lock(&fk->mu);
    snprintf(fk->valid_token, sizeof fk->valid_token, "none-yet");
    fk->token_lifetime = 3600;
    pthread_mutex_unlock(&fk->mu);
    client c;
    client_start(&c, "--kone-connections=1", NULL);
    /* revoke the token and drop the connection: the reconnect is refused with 401 */
    pthread_mutex_lock(&fk->mu);
    fk->valid_token[0] = '\0';
    int fetches = fk->token_fetches;
    int refused = fk->n_refused_upgrades;
    pthread_mutex_unlock(&fk->mu);
    kd_run *r = run_one(&c, new_run(KD_OP_CALL, 8, false), 8000);
    /* the connection dropped before the answer; the reconnect was refused (401), a new
     * token fetched, the session resumed and the late answer matched */
    expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
    assert_true(fk_get(&fk->n_refused_upgrades) > refused);
    assert_true(fk_get(&fk->token_fetches) > fetches);
    free(r);
    client_stop(&c);
}

static void test_resume_after_drop(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-connections=1", NULL);
    int resumes = fk_get(&fk->n_resumes);
    kd_run *r = run_one(&c, new_run(KD_OP_CALL, 8, true), 8000);
    expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
    assert_int_equal(fk_get(&fk->n_resumes), resumes + 1);
    free(r);
    client_stop(&c);
}

/* Subscriptions live on a connection: after a resume every followed call subscribes again
 * on the new one, and only that brings the rest of its states. */
static void test_resubscribe_after_resume(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-connections=1", "--kone-call-timeout-ms=3000");
    int resumes = fk_get(&fk->n_resumes), monitors = fk_get(&fk->n_monitors);
    kd_run *r = run_one(&c, new_run(KD_OP_CALL, 9, true), 8000);
    expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
    assert_int_equal(fk_get(&fk->n_resumes), resumes + 1);
    assert_int_equal(fk_get(&fk->n_monitors), monitors + 2);
    pthread_mutex_lock(&obs.mu);
    __typeof__(obs) o = obs;
    pthread_mutex_unlock(&obs.mu);
    assert_int_equal(o.n_states, 4); /* being_allocated once, though sent twice */
    assert_string_equal(o.states[0], "being_allocated");
    assert_string_equal(o.states[3], "served");
    free(r);
    client_stop(&c);
}

/* The connection drops after the request is written and the session can only be resumed
 * after kone.request_timeout_ms (1.5 s) has passed: the request waits for the resumed
 * session and its late answer still matches. */
static void test_late_answer_after_slow_resume(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-connections=1", NULL);
    int64_t t0 = kd_mono_us();
    kd_run *r = run_one(&c, new_run(KD_OP_CALL, 10, false), 10000);
    int64_t took = kd_mono_us() - t0;
    expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
    assert_true(took >= 2500000);
    assert_true(fk_get(&fk->n_refused_503) >= 1);
    assert_true(fk_get(&fk->n_resumes) >= 1);
    free(r);
    client_stop(&c);
}

/* As above, but the answer never comes: the request is transient ("timeout") only after
 * the resumed session had kone.request_timeout_ms to deliver it, not when the connection
 * dropped nor while it was down. */
static void test_unanswered_after_resume(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-connections=1", NULL);
    int resumes = fk_get(&fk->n_resumes);
    int64_t t0 = kd_mono_us();
    kd_run *r = run_one(&c, new_run(KD_OP_CALL, 11, false), 12000);
    int64_t took = kd_mono_us() - t0;
    expect(r, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "timeout");
    assert_non_null(strstr(r->error_message, "connection was lost"));
    assert_int_equal(fk_get(&fk->n_resumes), resumes + 1);
    assert_true(took >= 2500000 + 1500000);
    free(r);
    client_stop(&c);
}

/* KONE's side forgot the session (a restart) while the client waited on it: the resume is
 * refused (404) and a new session made. What the job waited for is lost with the old session:
 * a request not yet answered fails transient (it was not accepted: safe to retry), a call
 * accepted (201) whose result was lost is unknown and final (it may have been placed: never
 * called twice), and so is a call whose delete was lost, with the reason it was deleted. */
static void test_session_lost(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-connections=1", NULL);
    int creates = fk_get(&fk->n_creates), resumes = fk_get(&fk->n_resumes);
    kd_run *r = run_one(&c, new_run(KD_OP_CALL, 14, false), 5000);
    expect(r, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "session_lost");
    assert_non_null(strstr(r->error_message, "lost before the answer"));
    free(r);
    r = run_one(&c, new_run(KD_OP_CALL, 15, false), 5000);
    expect(r, KD_OUTCOME_UNKNOWN, KD_FAIL_FINAL, "session_lost");
    assert_int_equal(r->kone_status, 201);
    assert_non_null(strstr(r->error_message, "not called again"));
    free(r);
    int deletes = fk_get(&fk->n_deletes);
    r = run_one(&c, new_run(KD_OP_CALL, 16, false), 5000);
    expect(r, KD_OUTCOME_UNKNOWN, KD_FAIL_FINAL, "1005");
    assert_non_null(strstr(r->error_message, "made no progress"));
    assert_non_null(strstr(r->error_message, "its delete was lost with the session"));
    assert_int_equal(fk_get(&fk->n_deletes), deletes + 1);
    free(r);
    assert_true(fk_get(&fk->n_resumes) >= resumes + 3);    /* each loss: a resume tried */
    assert_int_equal(fk_get(&fk->n_creates), creates + 3); /* refused: a new session */
    r = run_one(&c, new_run(KD_OP_CALL, 2, false), 5000);  /* which works */
    expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
    free(r);
    client_stop(&c);
}

/* A call that makes no progress is deleted before its job may be retried; when KONE refuses
 * the delete (409) or never answers it, the call may still be placed: the job is unknown and
 * final (not called again), and says why. */
static void test_delete_not_done(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-connections=1", NULL);
    kd_run *r = run_one(&c, new_run(KD_OP_CALL, 17, false), 5000);
    expect(r, KD_OUTCOME_UNKNOWN, KD_FAIL_FINAL, "1005");
    assert_non_null(strstr(r->error_message, "cancelling it failed (delete answered 409"));
    free(r);
    r = run_one(&c, new_run(KD_OP_CALL, 18, false), 5000);
    expect(r, KD_OUTCOME_UNKNOWN, KD_FAIL_FINAL, "1005");
    assert_non_null(strstr(r->error_message, "its delete got no answer within 1500 ms"));
    assert_int_equal(fk_get(&fk->n_unanswered_deletes), 1);
    free(r);
    client_stop(&c);
}

/* The call's result in the other forms KONE may send it, among frames that are no job's:
 * inside the 201 answer (the states are followed: exactly the call's own four, not the
 * state of a call made elsewhere, and the answer without a request id changes nothing),
 * without a session_id (accepted; the job says its states were not followed), and before
 * the answer (accepted, its session id kept). */
static void test_result_forms(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-connections=1", NULL);
    kd_run *r = run_one(&c, new_run(KD_OP_CALL, 19, true), 5000);
    expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
    pthread_mutex_lock(&fk->mu);
    int64_t sid = fk->next_sid; /* the call's own, not the other call's session 1 */
    pthread_mutex_unlock(&fk->mu);
    assert_int_equal(r->session_id, sid);
    pthread_mutex_lock(&obs.mu);
    __typeof__(obs) o = obs;
    pthread_mutex_unlock(&obs.mu);
    assert_int_equal(o.n_states, 4);
    assert_string_equal(o.states[0], "being_allocated");
    assert_string_equal(o.states[3], "served");
    free(r);

    r = run_one(&c, new_run(KD_OP_CALL, 20, false), 5000);
    expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
    assert_int_equal(r->session_id, 0);
    assert_non_null(strstr(r->error_message, "KONE gave no session_id; state not followed"));
    free(r);

    r = run_one(&c, new_run(KD_OP_CALL, 21, false), 5000);
    expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
    pthread_mutex_lock(&fk->mu);
    sid = fk->next_sid;
    pthread_mutex_unlock(&fk->mu);
    assert_int_equal(r->session_id, sid);
    assert_true(r->kone_rtt_us > 0);
    free(r);

    /* and a job that is not valid is refused before anything is sent */
    int calls = fk_get(&fk->n_calls);
    r = new_run(KD_OP_CALL, 2, false);
    r->job_valid = false;
    r = run_one(&c, r, 5000);
    expect(r, KD_OUTCOME_REJECTED, KD_FAIL_FINAL, "invalid_job");
    assert_non_null(strstr(r->error_message, "not sent to KONE"));
    assert_int_equal(fk_get(&fk->n_calls), calls);
    free(r);
    client_stop(&c);
}

/* Calls n buildings never met before (building:m<first>...), batch by batch (the fake's
 * queues are bounded), each answered 201 and a result; all must succeed. */
static void call_buildings(client *c, int first, int n)
{
    for (int i = 0; i < n;) {
        kd_run *runs[128];
        int m = 0;
        for (; m < 128 && i < n; m++, i++) {
            runs[m] = new_run(KD_OP_CALL, 20, false);
            snprintf(runs[m]->job.building_id, sizeof runs[m]->job.building_id, "building:m%d",
                     first + i);
        }
        pthread_mutex_lock(&obs.mu);
        int want = obs.done + m;
        pthread_mutex_unlock(&obs.mu);
        for (int x = 0; x < m; x++)
            kd_kone_submit(c->k, runs[x]);
        assert_true(wait_done(want, 10000));
        for (int x = 0; x < m; x++) {
            expect(runs[x], KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
            free(runs[x]);
        }
    }
}

static bool known(client *c, int building)
{
    char id[32];
    kd_kone_building_stats bs;
    snprintf(id, sizeof id, "building:m%d", building);
    return kd_kone_building(c->k, id, &bs);
}

/* The client's memory of buildings is bounded (KK_MAX_BUILDINGS, KK_MAX_SITES: 4096 each).
 * Full, a new building still gets its call through: it takes the place of the building used
 * longest ago (that one's circuit breaker and rate limit are forgotten), and the groups whose
 * configuration went unused for kone.config_ttl_s are forgotten, so the new group's is asked;
 * when none is that old, the new group's call goes out unchecked. */
static void test_many_buildings(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-config-ttl-s=1", NULL);
    call_buildings(&c, 0, 4096);
    assert_true(known(&c, 0));
    int fetches = fk_get(&fk->n_site_fetches);
    assert_true(fetches >= 4096); /* each group's configuration asked (and refused) */
    usleep(1100000);              /* every entry unused for kone.config_ttl_s */
    call_buildings(&c, 4096, 1);
    assert_true(fk_get(&fk->n_site_fetches) > fetches);
    assert_true(known(&c, 4096));
    assert_false(known(&c, 0)); /* the oldest, forgotten */
    assert_true(known(&c, 1));
    call_buildings(&c, 4097, 1);
    assert_false(known(&c, 1)); /* then the next oldest */
    assert_true(known(&c, 2));
    client_stop(&c);

    /* every group's configuration used within kone.config_ttl_s: no room for one more, whose
     * call goes out unchecked, without a fetch */
    client_start(&c, NULL, NULL);
    call_buildings(&c, 0, 4096);
    fetches = fk_get(&fk->n_site_fetches);
    call_buildings(&c, 4096, 1);
    assert_int_equal(fk_get(&fk->n_site_fetches), fetches);
    client_stop(&c);
}

/* A group's configuration that KONE answers in a shape not understood checks nothing, and
 * is not asked again at the next call (only a TTL later). A call held for a fetch whose answer
 * was lost with its connection gives up transient "timeout" (KONE did not answer what it
 * waited for), not "no_connection": the connection was back at once. Nothing was sent, and
 * the next call there goes out (the fetch given up, unchecked for a while). */
static void test_site_config_odd(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-connections=1", NULL);
    int fetches = fk_get(&fk->n_site_fetches), calls = fk_get(&fk->n_calls_total);
    for (int i = 0; i < 2; i++) {
        kd_run *r = new_run(KD_OP_CALL, 20, false);
        snprintf(r->job.building_id, sizeof r->job.building_id, "building:garbled");
        r = run_one(&c, r, 5000);
        expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
        free(r);
    }
    assert_int_equal(fk_get(&fk->n_site_fetches), fetches + 2); /* config and actions, once */
    assert_int_equal(fk_get(&fk->n_calls_total), calls + 2);

    int conns = fk_get(&fk->n_conns);
    kd_run *r = new_run(KD_OP_CALL, 20, false);
    snprintf(r->job.building_id, sizeof r->job.building_id, "building:dropcfg");
    r = run_one(&c, r, 8000);
    expect(r, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "timeout");
    assert_non_null(strstr(r->error_message, "configuration fetch or subscription of "
                                             "building:dropcfg group 1"));
    assert_false(r->written);
    free(r);
    assert_true(fk_get(&fk->dropped_cfg));
    assert_true(fk_get(&fk->n_conns) > conns);
    assert_int_equal(fk_get(&fk->n_calls_total), calls + 2);
    r = new_run(KD_OP_CALL, 20, false);
    snprintf(r->job.building_id, sizeof r->job.building_id, "building:dropcfg");
    r = run_one(&c, r, 5000);
    expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
    free(r);
    assert_int_equal(fk_get(&fk->n_calls_total), calls + 3);
    client_stop(&c);
}

static kd_run *call_at(client *c, const char *building, int action, int ms)
{
    kd_run *r = new_run(KD_OP_CALL, action, false);
    snprintf(r->job.building_id, sizeof r->job.building_id, "%s", building);
    return run_one(c, r, ms);
}

static kd_kone_building_stats stats_of(client *c, const char *building)
{
    kd_kone_building_stats bs = {0};
    assert_true(kd_kone_building(c->k, building, &bs));
    return bs;
}

/* A building's circuit opens when its calls fail for its link (here one in a window of one:
 * accepted, never a result, 1005); its calls then fail "circuit_open" at once, not sent.
 * A ping of an open circuit that goes unanswered keeps it open, and it is pinged again. */
static void test_circuit_ping_unanswered(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-connections=1 --kone-breaker-min-calls=1",
                 "--kone-breaker-window-calls=1 --kone-breaker-probe-base-ms=10");
    kd_run *r = call_at(&c, "building:mute", 6, 5000);
    expect(r, KD_OUTCOME_UNKNOWN, KD_FAIL_FINAL, "1005");
    free(r);
    assert_int_equal(kd_kone_circuit_state(c.k, "building:mute"), KD_KONE_CIRCUIT_OPEN);
    int calls = fk_get(&fk->n_calls_total);
    r = call_at(&c, "building:mute", 2, 5000);
    expect(r, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "circuit_open");
    free(r);
    assert_int_equal(fk_get(&fk->n_calls_total), calls);
    /* the first ping unanswered within kone.request_timeout_ms (1.5 s): pinged again */
    for (int i = 0; i < 500 && fk_get(&fk->n_pings_mute) < 2; i++)
        usleep(10000);
    assert_true(fk_get(&fk->n_pings_mute) >= 2);
    kd_kone_building_stats bs = stats_of(&c, "building:mute");
    assert_int_equal(bs.circuit, KD_KONE_CIRCUIT_OPEN);
    assert_int_equal(bs.circuit_opens, 1);
    assert_int_equal(bs.circuit_closes, 0);
    client_stop(&c);
}

/* Calls that make no progress for kone.stall_probe_ms get their building pinged: a ping that
 * fails with KONE's link-down error 1005 opens the circuit at once; one unanswered says
 * nothing about the link and leaves it closed. */
static void test_stall_pings(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-connections=1 --kone-stall-probe-ms=100",
                 "--kone-call-timeout-ms=2000");
    kd_run *a = new_run(KD_OP_CALL, 6, false), *b = new_run(KD_OP_CALL, 6, false);
    snprintf(a->job.building_id, sizeof a->job.building_id, "building:ping1005");
    snprintf(b->job.building_id, sizeof b->job.building_id, "building:mute");
    kd_kone_submit(c.k, a);
    kd_kone_submit(c.k, b);
    assert_true(wait_done(2, 8000));
    expect(a, KD_OUTCOME_UNKNOWN, KD_FAIL_FINAL, "1005");
    expect(b, KD_OUTCOME_UNKNOWN, KD_FAIL_FINAL, "1005");
    free(a);
    free(b);
    kd_kone_building_stats bs = stats_of(&c, "building:ping1005");
    assert_int_equal(bs.circuit_opens, 1);
    bs = stats_of(&c, "building:mute");
    assert_int_equal(bs.circuit, KD_KONE_CIRCUIT_CLOSED);
    assert_int_equal(bs.circuit_opens, 0);
    assert_true(fk_get(&fk->n_pings_mute) >= 1);
    client_stop(&c);
}

/* A tracked call whose lift is coming (being_served) when kone.track_timeout_ms runs out
 * succeeds, saying tracking stopped in that state: it is not cancelled (the lift is on its
 * way). A call whose building's subscription was lost with its connection waits for it to be
 * made again on the new one, then goes out and is followed. */
static void test_track_timeout_and_subscription_lost(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-connections=1 --kone-track-timeout-ms=300", NULL);
    int deletes = fk_get(&fk->n_deletes);
    kd_run *r = run_one(&c, new_run(KD_OP_CALL, 22, true), 5000);
    expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "track_timeout");
    assert_string_equal(r->error_message, "tracking stopped after 300 ms in state 'being_served'");
    free(r);
    assert_int_equal(fk_get(&fk->n_deletes), deletes); /* not cancelled */

    int monitors = fk_get(&fk->n_monitors), conns = fk_get(&fk->n_conns);
    r = call_at(&c, "building:dropsub", 2, 8000);
    expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
    free(r);
    assert_true(fk_get(&fk->dropped_sub));
    assert_true(fk_get(&fk->n_conns) > conns);
    assert_true(fk_get(&fk->n_monitors) >= monitors + 2); /* asked again after the drop */
    client_stop(&c);
}

static void test_keepalive_and_replacement(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-buildings=1", "--kone-keepalive-s=1");
    int pings = fk_get(&fk->n_pings);
    sleep(3);
    assert_true(fk_get(&fk->n_pings) >= pings + 2);
    assert_int_equal(fk_get(&fk->n_pings_no_building), 0); /* a ping names its building */
    client_stop(&c);

    client_start(&c, "--kone-connections=1", "--kone-max-conn-age-s=5");
    int conns = fk_get(&fk->n_conns), resumes = fk_get(&fk->n_resumes);
    sleep(6);
    assert_true(fk_get(&fk->n_conns) >= conns + 1);
    assert_true(fk_get(&fk->n_resumes) >= resumes + 1);
    assert_true(kd_kone_ready(c.k));
    kd_run *r = run_one(&c, new_run(KD_OP_CALL, 2, false), 5000);
    expect(r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
    free(r);
    client_stop(&c);
}

/* A request that timed out is answered late, just before another job's request is answered:
 * the late answer is credited to nobody (ids are unique per process and matched within the
 * session they arrive on), and the other job gets its own answer and its own session id. */
static void test_late_answer_not_credited(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-connections=2", NULL);
    kd_run *a = run_one(&c, new_run(KD_OP_CALL, 12, false), 5000);
    expect(a, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "timeout");
    kd_run *b = run_one(&c, new_run(KD_OP_CALL, 13, false), 5000);
    expect(b, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "");
    pthread_mutex_lock(&fk->mu);
    int64_t late = fk->late_sid, last = fk->next_sid;
    pthread_mutex_unlock(&fk->mu);
    assert_true(late > 0); /* the late answer was sent */
    assert_int_not_equal(b->session_id, late);
    assert_int_equal(b->session_id, last); /* b's own call */
    assert_int_equal(a->session_id, 0);    /* and a stays what it was */
    usleep(200000);
    pthread_mutex_lock(&obs.mu);
    int done = obs.done;
    pthread_mutex_unlock(&obs.mu);
    assert_int_equal(done, 2); /* no third outcome from the late answer */
    free(a);
    free(b);
    client_stop(&c);
}

static void test_shutdown_fails_pending(void **state)
{
    (void)state;
    client c;
    client_start(&c, NULL, NULL);
    kd_run *r1 = new_run(KD_OP_CALL, 7, false); /* never answered */
    kd_run *r2 = new_run(KD_OP_CALL, 5, true);  /* accepted, followed */
    kd_kone_submit(c.k, r1);
    kd_kone_submit(c.k, r2);
    usleep(300000);
    client_stop(&c);
    assert_int_equal(obs.done, 2);
    expect(r1, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "shutdown");
    expect(r2, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "shutdown");
    assert_string_equal(r1->error_message, "worker shutting down");
    free(r1);
    free(r2);
}

/* Jobs still waiting when the client stops get their answer too ("shutdown", never sent):
 * one queued behind its building's concurrency ceiling (kone.concurrency_building_max: at
 * most that many of its requests out unanswered), and one waiting for a connection. */
static void test_shutdown_fails_waiting(void **state)
{
    (void)state;
    client c;
    client_start(&c, "--kone-connections=1 --kone-concurrency-building-max=1", NULL);
    int calls = fk_get(&fk->n_calls_total);
    kd_run *r1 = new_run(KD_OP_CALL, 7, false); /* never answered */
    kd_run *r2 = new_run(KD_OP_CALL, 2, false);
    kd_kone_submit(c.k, r1);
    for (int i = 0; i < 500 && fk_get(&fk->n_calls_total) == calls; i++)
        usleep(10000);
    kd_kone_submit(c.k, r2);
    usleep(200000);
    assert_int_equal(fk_get(&fk->n_calls_total), calls + 1); /* r2 held back */
    kd_kone_building_stats bs = stats_of(&c, "building:1");
    assert_int_equal(bs.concurrency_limit, 1);
    assert_int_equal(bs.concurrency_inflight, 1);
    client_stop(&c);
    assert_int_equal(obs.done, 2);
    expect(r1, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "shutdown");
    expect(r2, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "shutdown");
    free(r1);
    free(r2);

    client_start(&c, "--kone-connections=1", NULL);
    calls = fk_get(&fk->n_calls_total);
    int refused = fk_get(&fk->n_refused_503);
    r1 = new_run(KD_OP_CALL, 11, false); /* drops the connection; upgrades refused 2.5 s */
    kd_kone_submit(c.k, r1);
    for (int i = 0; i < 200 && fk_get(&fk->n_refused_503) == refused; i++)
        usleep(10000);
    assert_true(fk_get(&fk->n_refused_503) > refused); /* no connection now */
    r2 = new_run(KD_OP_CALL, 2, false);
    kd_kone_submit(c.k, r2);
    usleep(100000);
    client_stop(&c);
    assert_int_equal(obs.done, 2);
    expect(r1, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "shutdown");
    expect(r2, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "shutdown");
    assert_int_equal(fk_get(&fk->n_calls_total), calls + 1); /* r2 never sent */
    free(r1);
    free(r2);
}

static void test_bad_config(void **state)
{
    (void)state;
    kd_config cfg;
    kd_err err = {0};
    char *argv[] = {"test", "--kone-ws-url=ws://127.0.0.1:1/stream-v2", "--kone-client-id=x",
                    "--kone-client-secret=" SECRET};
    assert_int_equal(kd_config_load(&cfg, KD_PROG_WORKER, "test", 4, argv, &err), 0);
    kd_kone *k = NULL;
    kd_kone_hooks hooks = {.done = on_done};
    assert_int_equal(kd_kone_start(&k, &cfg, &hooks, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "kone.ws_url"));
    assert_null(strstr(err.msg, SECRET));
    kd_config_set(&cfg, KD_CFG_KONE_WS_URL, "wss://127.0.0.1:1/stream-v2", NULL);
    kd_config_set(&cfg, KD_CFG_KONE_TOKEN_URL, "http://127.0.0.1:1/token", NULL);
    assert_int_equal(kd_kone_start(&k, &cfg, &hooks, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "kone.token_url"));
    kd_config_set(&cfg, KD_CFG_KONE_TOKEN_URL, "https://127.0.0.1:1/token", NULL);
    kd_config_set(&cfg, KD_CFG_KONE_CLIENT_SECRET, "", NULL);
    assert_int_equal(kd_kone_start(&k, &cfg, &hooks, &err), KD_ERR_INVALID);
    /* more buildings than the tokens one client may hold can serve */
    kd_config_set(&cfg, KD_CFG_KONE_CLIENT_SECRET, SECRET, NULL);
    kd_config_set(&cfg, KD_CFG_KONE_BUILDINGS, "1,2,3,4,5,6,7,8,9", NULL);
    kd_config_set(&cfg, KD_CFG_KONE_BUILDINGS_PER_TOKEN, "1", NULL);
    assert_int_equal(kd_kone_start(&k, &cfg, &hooks, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "9 buildings at 1 per token need 9 tokens; at most 8"));
    /* a kone.ca_file that is readable but holds no certificate: a start-up error naming the
     * file, as for AMQP's and Kafka's, rather than every connection refused later */
    kd_config_set(&cfg, KD_CFG_KONE_BUILDINGS, "", NULL);
    char ca[] = "/tmp/kd-bad-ca-XXXXXX";
    int fd = mkstemp(ca);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "not a certificate\n", 18), 18);
    close(fd);
    kd_config_set(&cfg, KD_CFG_KONE_CA_FILE, ca, NULL);
    assert_int_equal(kd_kone_start(&k, &cfg, &hooks, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "kone.ca_file"));
    assert_non_null(strstr(err.msg, "holds no PEM certificate"));
    unlink(ca);
    kd_config_free(&cfg);
}

int main(void)
{
    kd_log_init("test", getenv("KD_TEST_LOG") ? getenv("KD_TEST_LOG") : "error");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test_setup_teardown(test_outcomes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tracked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscription_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_spread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_affinity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_401_on_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_401_at_upgrade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_after_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resubscribe_after_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_answer_after_slow_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unanswered_after_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_not_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_result_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_buildings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_site_config_odd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_circuit_ping_unanswered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stall_pings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_track_timeout_and_subscription_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_and_replacement, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_answer_not_credited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_fails_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_fails_waiting, setup, teardown),
    };
    if (getenv("KD_TEST_FILTER")) /* one test: KD_TEST_FILTER=test_session_lost */
        cmocka_set_test_filter(getenv("KD_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
