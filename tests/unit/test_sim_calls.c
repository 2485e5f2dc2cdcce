/* test_sim_calls: kone-sim's call log (GET /sim/calls, POST /sim/calls/reset), without sockets.
 *
 * Requests go through the request layer (proto.c) on fake connections, as in test_sim_proto;
 * the log is read through the control endpoint function (control.c), as http.c serves it.
 * Checked: every lift-call-api-v2 request is recorded once with what it asked and what it
 * got (accepted, refused, invalid, injected errors, a site that never hears of the call,
 * deletes that cancel or not, a reused request id), and nothing else is; the listing's
 * paging (since, limit, next_since, more) and filters; the bounds (entry cap, byte budget,
 * dropped, missed); reset; and the endpoint's errors and authorization.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "building.h"
#include "calls.h"
#include "control.h"
#include "hub.h"
#include "proto.h"

#define B1 "building:9990000951"
#define B2 "building:9990000952"
#define MAX_FRAMES 256
#define DEV "Basic a2QtZGV2OmtkLWRldi1zZWNyZXQtY2hhbmdlLW1l" /* kd-dev */

/* ---- fixture ---- */

typedef struct fake {
    json_t *frames[MAX_FRAMES];
    size_t n;
} fake;

static int fake_send(void *t, const char *text, size_t len)
{
    fake *f = t;
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je);
    assert_non_null(o);
    if (f->n < MAX_FRAMES)
        f->frames[f->n++] = o;
    else
        json_decref(o);
    return 0;
}

static void fake_close(void *t, int code, const char *reason)
{
    (void)t, (void)code, (void)reason;
}

static const sim_conn_ops fake_ops = {fake_send, fake_close, NULL, NULL};

typedef struct fx {
    sim_world w;
    sim_auth a;
    sim_hub *h;
    sim_control ctl;
    fake f1, f2;
    sim_conn *c1, *c2;
    int64_t rid;
} fx;

static void clear(fake *f)
{
    for (size_t i = 0; i < f->n; i++)
        json_decref(f->frames[i]);
    f->n = 0;
}

static const sim_token *token(fx *x)
{
    json_t *ans;
    const char *body = "grant_type=client_credentials";
    assert_int_equal(sim_auth_token_request(&x->a, DEV, body, strlen(body), 0, &ans), 200);
    const sim_token *t =
        sim_auth_lookup(&x->a, json_string_value(json_object_get(ans, "access_token")), 1);
    json_decref(ans);
    assert_non_null(t);
    return t;
}

static int setup_with(void **state, const char *control_token)
{
    fx *x = calloc(1, sizeof *x);
    assert_non_null(x);
    const char *src = getenv("KD_SRC_DIR");
    char path[512];
    kd_err err = {0};
    snprintf(path, sizeof path, "%s/sim/buildings.json", src ? src : ".");
    if (sim_world_load(&x->w, path, &err))
        fail_msg("%s", err.msg);
    snprintf(path, sizeof path, "%s/sim/clients.json", src ? src : ".");
    if (sim_auth_load(&x->a, path, 3600, &err))
        fail_msg("%s", err.msg);
    sim_clock clk;
    sim_clock_set_fake(&clk, 10, 1700000000000);
    assert_int_equal(sim_hub_create(&x->h, &x->w, &x->a, &clk), 0);
    assert_int_equal(sim_control_init(&x->ctl, x->h, 3600, control_token), 0);
    x->c1 = sim_hub_conn_open(x->h, token(x), &fake_ops, &x->f1);
    x->c2 = sim_hub_conn_open(x->h, token(x), &fake_ops, &x->f2);
    assert_non_null(x->c1);
    assert_non_null(x->c2);
    x->rid = 100;
    *state = x;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, NULL);
}

static int setup_token(void **state)
{
    return setup_with(state, "s3cret-control");
}

static int teardown(void **state)
{
    fx *x = *state;
    clear(&x->f1);
    clear(&x->f2);
    sim_control_free(&x->ctl);
    sim_hub_free(x->h);
    sim_auth_free(&x->a);
    sim_world_free(&x->w);
    free(x);
    return 0;
}

static fake *send_on(fx *x, sim_conn *c, const char *text)
{
    fake *f = c->t;
    clear(f);
    sim_proto_handle(x->h, c, text, strlen(text));
    return f;
}

static fake *sendj(fx *x, sim_conn *c, json_t *req)
{
    assert_non_null(req);
    char *t = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    fake *f = send_on(x, c, t);
    free(t);
    return f;
}

static void run(fx *x, int64_t ms)
{
    for (int64_t t = 0; t < ms; t += 10) {
        sim_clock_fake_advance(&x->h->clock, 10);
        sim_hub_tick(x->h);
    }
}

/* An action request from `area` to `dest` (group 1 of B1 unless building/group say otherwise),
 * with payload.media_id when media is not NULL. */
static json_t *action(fx *x, const char *building, const char *group, int64_t area, int64_t act,
                      int64_t dest, const char *media)
{
    json_t *r =
        json_pack("{s:s,s:s,s:s,s:s,s:{s:I,s:I,s:i,s:{s:I,s:I}}}", "type", "lift-call-api-v2",
                  "buildingId", building, "callType", "action", "groupId", group, "payload",
                  "request_id", (json_int_t)++x->rid, "area", (json_int_t)area, "terminal", 1,
                  "call", "action", (json_int_t)act, "destination", (json_int_t)dest);
    if (media)
        json_object_set_new(json_object_get(r, "payload"), "media_id", json_string(media));
    return r;
}

static json_t *delete_req(fx *x, int64_t sid)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:{s:I,s:I}}", "type", "lift-call-api-v2", "buildingId", B1,
                     "callType", "delete", "groupId", "1", "payload", "request_id",
                     (json_int_t)++x->rid, "session_id", (json_int_t)sid);
}

static int64_t accepted_sid(const fake *f)
{
    assert_true(f->n >= 2);
    assert_int_equal(json_integer_value(json_object_get(f->frames[0], "statusCode")), 201);
    const json_t *d = json_object_get(f->frames[1], "data");
    assert_true(json_is_true(json_object_get(d, "success")));
    return json_integer_value(json_object_get(d, "session_id"));
}

/* GET /sim/calls[?query]: the answer (200 expected). */
static json_t *list(fx *x, const char *query)
{
    char path[300];
    snprintf(path, sizeof path, "/sim/calls%s%s", query ? "?" : "", query ? query : "");
    json_t *ans = NULL;
    int st = sim_control_request(&x->ctl, "GET", path, NULL, NULL, 0, &ans);
    if (st != 200)
        fail_msg("GET %s: %d %s", path, st, json_string_value(json_object_get(ans, "message")));
    assert_non_null(ans);
    return ans;
}

static const json_t *entry(const json_t *ans, size_t i)
{
    const json_t *calls = json_object_get(ans, "calls");
    assert_true(json_is_array(calls));
    assert_true(i < json_array_size(calls));
    return json_array_get(calls, i);
}

static int64_t num(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    if (!json_is_integer(v))
        fail_msg("%s: not an integer", k);
    return json_integer_value(v);
}

static const char *str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static bool is_null(const json_t *o, const char *k)
{
    return json_is_null(json_object_get(o, k));
}

/* Every entry has every field (null where it does not apply). */
static void check_shape(const json_t *e)
{
    static const char *keys[] = {
        "seq",        "call_type",   "received",   "connection_id", "client_id", "kone_session_id",
        "request_id", "building_id", "group_id",   "media_id",      "status",    "message",
        "success",    "error",       "session_id", "cancelled",     "payload"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!json_object_get(e, keys[i]))
            fail_msg("entry without %s", keys[i]);
    assert_int_equal(json_object_size(e), sizeof keys / sizeof keys[0]);
}

/* ---- what is recorded ---- */

static void test_records_each_request(void **state)
{
    fx *x = *state;
    fake *f = send_on(x, x->c1, "{\"type\":\"create-session\",\"requestId\":\"s1\"}");
    const char *ksid = str(json_object_get(f->frames[0], "data"), "sessionId");
    assert_non_null(ksid);
    char kone_session[40];
    snprintf(kone_session, sizeof kone_session, "%s", ksid);

    /* 1: accepted, with a media id */
    int64_t sid = accepted_sid(sendj(x, x->c1, action(x, B1, "1", 1000, 2, 5000, "job-1")));
    int64_t rid1 = x->rid;
    /* 2: refused (unknown action) */
    sendj(x, x->c1, action(x, B1, "1", 1000, 200, 5000, "job-2"));
    /* 3: invalid payload: 400, never reaches the site */
    json_t *bad = action(x, B1, "1", 1000, 2, 5000, NULL);
    json_object_set_new(json_object_get(json_object_get(bad, "payload"), "call"), "delay",
                        json_integer(31));
    sendj(x, x->c1, bad);
    /* 4: unknown building: 404 */
    sendj(x, x->c1, action(x, "building:9990000999", "1", 1000, 2, 5000, NULL));
    /* 5: hold_open on the other connection (anonymous session) */
    sendj(x, x->c2,
          json_pack("{s:s,s:s,s:s,s:s,s:{s:I,s:i,s:i,s:i}}", "type", "lift-call-api-v2",
                    "buildingId", B1, "callType", "hold_open", "groupId", "1", "payload",
                    "request_id", (json_int_t)++x->rid, "lift_deck", 1001010, "served_area", 1000,
                    "hard_time", 2));
    /* 6: delete that cancels; 7: the same again (409); 8: a session nobody has (404) */
    f = sendj(x, x->c1, delete_req(x, sid));
    assert_int_equal(json_integer_value(json_object_get(f->frames[0], "statusCode")), 202);
    f = sendj(x, x->c1, delete_req(x, sid));
    assert_int_equal(json_integer_value(json_object_get(f->frames[0], "statusCode")), 409);
    sendj(x, x->c1, delete_req(x, 999999));
    /* 9: a reused request id (409 before anything else) */
    json_t *again = action(x, B1, "1", 1000, 2, 5000, "job-1");
    json_object_set_new(json_object_get(again, "payload"), "request_id", json_integer(rid1));
    f = sendj(x, x->c1, again);
    assert_int_equal(json_integer_value(json_object_get(f->frames[0], "statusCode")), 409);

    /* not recorded: other request types, frames that do not parse, a broken frame */
    send_on(x, x->c1, "{\"type\":\"common-api\",\"callType\":\"ping\",\"requestId\":\"p1\"}");
    send_on(x, x->c1,
            "{\"type\":\"common-api\",\"callType\":\"config\",\"requestId\":\"p2\","
            "\"buildingId\":\"" B1 "\"}");
    send_on(x, x->c1, "not json at all");
    send_on(x, x->c1, "[\"lift-call-api-v2\"]");
    sim_proto_too_large(x->h, x->c1);

    json_t *ans = list(x, NULL);
    assert_int_equal(num(ans, "count"), 9);
    assert_int_equal(num(ans, "held"), 9);
    assert_int_equal(num(ans, "last_seq"), 9);
    assert_int_equal(num(ans, "first_seq"), 1);
    assert_int_equal(num(ans, "next_since"), 9);
    assert_int_equal(num(ans, "since"), 0);
    assert_int_equal(num(ans, "dropped"), 0);
    assert_int_equal(num(ans, "missed"), 0);
    assert_int_equal(num(ans, "capacity"), SIM_CALLS_MAX);
    assert_false(json_is_true(json_object_get(ans, "more")));
    for (size_t i = 0; i < 9; i++) {
        check_shape(entry(ans, i));
        assert_int_equal(num(entry(ans, i), "seq"), (int64_t)i + 1);
    }

    const json_t *e = entry(ans, 0); /* accepted */
    assert_string_equal(str(e, "call_type"), "action");
    assert_string_equal(str(e, "connection_id"), x->c1->id);
    assert_string_equal(str(e, "client_id"), "kd-dev");
    assert_string_equal(str(e, "kone_session_id"), kone_session);
    assert_int_equal(num(e, "request_id"), rid1);
    assert_string_equal(str(e, "building_id"), B1);
    assert_string_equal(str(e, "group_id"), "1");
    assert_string_equal(str(e, "media_id"), "job-1");
    assert_int_equal(num(e, "status"), 201);
    assert_true(is_null(e, "message"));
    assert_true(json_is_true(json_object_get(e, "success")));
    assert_true(is_null(e, "error"));
    assert_int_equal(num(e, "session_id"), sid);
    assert_true(is_null(e, "cancelled"));
    const json_t *p = json_object_get(e, "payload");
    assert_int_equal(num(p, "request_id"), rid1);
    assert_int_equal(num(p, "area"), 1000);
    assert_string_equal(str(p, "media_id"), "job-1");
    assert_int_equal(num(json_object_get(p, "call"), "destination"), 5000);
    assert_string_equal(str(e, "received"), "2023-11-14T22:13:20.000Z"); /* the fake clock */

    e = entry(ans, 1); /* refused: 201 + success false */
    assert_int_equal(num(e, "status"), 201);
    assert_false(json_is_true(json_object_get(e, "success")));
    assert_true(json_is_false(json_object_get(e, "success")));
    assert_string_equal(str(e, "error"), "Ignoring call, unknown call action: 200");
    assert_true(is_null(e, "session_id"));
    assert_string_equal(str(e, "media_id"), "job-2");

    e = entry(ans, 2); /* 400 */
    assert_int_equal(num(e, "status"), 400);
    assert_non_null(strstr(str(e, "message"), "delay"));
    assert_true(is_null(e, "success"));
    assert_true(is_null(e, "session_id"));
    assert_true(is_null(e, "media_id"));
    assert_int_equal(num(json_object_get(json_object_get(e, "payload"), "call"), "delay"), 31);

    e = entry(ans, 3); /* 404 */
    assert_int_equal(num(e, "status"), 404);
    assert_string_equal(str(e, "building_id"), "building:9990000999");
    assert_non_null(strstr(str(e, "message"), "Building data not found"));

    e = entry(ans, 4); /* hold_open on c2 */
    assert_string_equal(str(e, "call_type"), "hold_open");
    assert_string_equal(str(e, "connection_id"), x->c2->id);
    assert_true(is_null(e, "kone_session_id"));
    assert_int_equal(num(e, "status"), 201);
    assert_true(json_is_true(json_object_get(e, "success")));
    assert_true(is_null(e, "session_id"));

    e = entry(ans, 5); /* delete that cancelled */
    assert_string_equal(str(e, "call_type"), "delete");
    assert_int_equal(num(e, "status"), 202);
    assert_int_equal(num(e, "session_id"), sid);
    assert_true(json_is_true(json_object_get(e, "cancelled")));
    assert_true(is_null(e, "success"));
    e = entry(ans, 6); /* not cancellable any more */
    assert_int_equal(num(e, "status"), 409);
    assert_int_equal(num(e, "session_id"), sid);
    assert_true(json_is_false(json_object_get(e, "cancelled")));
    e = entry(ans, 7); /* nothing to cancel */
    assert_int_equal(num(e, "status"), 404);
    assert_int_equal(num(e, "session_id"), 999999);
    assert_true(json_is_false(json_object_get(e, "cancelled")));

    e = entry(ans, 8); /* reused request id */
    assert_int_equal(num(e, "status"), 409);
    assert_string_equal(str(e, "message"), "Request id already used in this connection");
    assert_string_equal(str(e, "media_id"), "job-1");
    assert_true(is_null(e, "success"));
    json_decref(ans);
}

static void test_faults_and_odd_requests(void **state)
{
    fx *x = *state;
    char msg[300];
    /* an injected error: answered 429, never executed */
    assert_int_equal(sim_control_apply_text(&x->ctl,
                                            "{\"call_error\":{\"share\":1,\"status\":429}}", "test",
                                            msg, sizeof msg),
                     0);
    sendj(x, x->c1, action(x, B1, "1", 1000, 2, 5000, "m-err"));
    assert_int_equal(
        sim_control_apply_text(&x->ctl, "{\"call_error\":null}", "test", msg, sizeof msg), 0);
    /* the site link down (annex group 2): 201 and nothing else, no session id given */
    fake *f = sendj(x, x->c1, action(x, B2, "2", 1000, 2, 3000, "m-down"));
    assert_int_equal(f->n, 1);
    /* a group in OSS: 201, then cancelled NO_LIFT_AVAILABLE */
    sendj(x, x->c1, action(x, B2, "1", 1000, 2, 3000, NULL));
    /* odd but parsed: no callType, a number as groupId, a string request id, no payload */
    send_on(x, x->c1,
            "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"" B1 "\","
            "\"requestId\":\"odd-1\"}");
    send_on(x, x->c1,
            "{\"type\":\"lift-call-api-v2\",\"callType\":\"teleport\",\"buildingId\":"
            "\"" B1 "\",\"groupId\":1,\"payload\":{\"request_id\":7,\"media_id\":5}}");
    send_on(x, x->c1,
            "{\"type\":\"lift-call-api-v2\",\"callType\":\"action\",\"buildingId\":"
            "\"" B1 "\",\"payload\":{\"request_id\":-3}}");

    json_t *ans = list(x, NULL);
    assert_int_equal(num(ans, "count"), 6);
    const json_t *e = entry(ans, 0);
    assert_int_equal(num(e, "status"), 429);
    assert_string_equal(str(e, "message"), "Too Many Requests");
    assert_true(is_null(e, "success"));
    assert_true(is_null(e, "session_id"));
    e = entry(ans, 1);
    assert_int_equal(num(e, "status"), 201);
    assert_true(is_null(e, "success"));
    assert_true(is_null(e, "session_id"));
    assert_string_equal(str(e, "building_id"), B2);
    assert_string_equal(str(e, "group_id"), "2");
    e = entry(ans, 2); /* accepted, then cancelled NO_LIFT_AVAILABLE (no text of our own) */
    assert_true(json_is_true(json_object_get(e, "success")));
    assert_true(is_null(e, "error"));
    e = entry(ans, 3);
    assert_true(is_null(e, "call_type"));
    assert_string_equal(str(e, "request_id"), "odd-1");
    assert_true(is_null(e, "payload"));
    assert_true(is_null(e, "group_id"));
    assert_int_equal(num(e, "status"), 400);
    e = entry(ans, 4);
    assert_string_equal(str(e, "call_type"), "teleport");
    assert_int_equal(num(e, "group_id"), 1);
    assert_true(is_null(e, "media_id")); /* not a string: not a media id */
    assert_int_equal(num(e, "status"), 400);
    e = entry(ans, 5);
    assert_int_equal(num(e, "request_id"), -3);
    assert_int_equal(num(e, "status"), 400);
    json_decref(ans);
}

/* ---- reading it ---- */

static void test_since_limit_and_filters(void **state)
{
    fx *x = *state;
    for (int i = 1; i <= 10; i++) {
        char media[32];
        snprintf(media, sizeof media, "%s-%d", i % 2 ? "odd" : "even", i);
        sendj(x, x->c1, action(x, B1, "1", 1000, 2, (i % 8 + 2) * 1000, media));
    }
    sendj(x, x->c1, delete_req(x, 1));
    sendj(x, x->c1, action(x, B1, "1", 1000, 2, 3000, NULL));

    json_t *ans = list(x, "since=4");
    assert_int_equal(num(ans, "count"), 8);
    assert_int_equal(num(entry(ans, 0), "seq"), 5);
    assert_int_equal(num(ans, "next_since"), 12);
    json_decref(ans);

    /* paging: limit 5, then on from next_since until more is false */
    uint64_t since = 0;
    int pages = 0, seen = 0;
    for (;;) {
        char q[64];
        snprintf(q, sizeof q, "since=%llu&limit=5", (unsigned long long)since);
        ans = list(x, q);
        seen += (int)num(ans, "count");
        assert_int_equal(num(entry(ans, 0), "seq"), (int64_t)since + 1);
        since = (uint64_t)num(ans, "next_since");
        bool more = json_is_true(json_object_get(ans, "more"));
        json_decref(ans);
        pages++;
        if (!more)
            break;
        assert_true(pages < 10);
    }
    assert_int_equal(pages, 3);
    assert_int_equal(seen, 12);
    assert_int_equal(since, 12);
    ans = list(x, "since=12");
    assert_int_equal(num(ans, "count"), 0);
    assert_int_equal(json_array_size(json_object_get(ans, "calls")), 0);
    assert_int_equal(num(ans, "next_since"), 12);
    json_decref(ans);
    /* since past the end (a restarted kone-sim): nothing, next_since back to the last */
    ans = list(x, "since=500");
    assert_int_equal(num(ans, "count"), 0);
    assert_int_equal(num(ans, "next_since"), 12);
    assert_int_equal(num(ans, "missed"), 0);
    json_decref(ans);

    /* filters */
    ans = list(x, "media_id_prefix=odd-");
    assert_int_equal(num(ans, "count"), 5);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(strncmp(str(entry(ans, i), "media_id"), "odd-", 4), 0);
    json_decref(ans);
    ans = list(x, "call_type=delete");
    assert_int_equal(num(ans, "count"), 1);
    assert_int_equal(num(entry(ans, 0), "seq"), 11);
    json_decref(ans);
    ans = list(x, "call_type=action&media_id_prefix=even-1&since=3");
    assert_int_equal(num(ans, "count"), 1);
    assert_string_equal(str(entry(ans, 0), "media_id"), "even-10");
    json_decref(ans);
    ans = list(x, "media_id_prefix=even-&limit=2");
    assert_int_equal(num(ans, "count"), 2);
    assert_int_equal(num(ans, "next_since"), 4);
    assert_true(json_is_true(json_object_get(ans, "more")));
    json_decref(ans);
    ans = list(x, "media_id_prefix="); /* any media id, none without */
    assert_int_equal(num(ans, "count"), 10);
    json_decref(ans);
}

static void test_bounds(void **state)
{
    fx *x = *state;
    sim_calls_free(&x->h->calls);
    sim_calls_init(&x->h->calls, 3, 0);
    for (int i = 0; i < 5; i++)
        sendj(x, x->c1, action(x, B1, "1", 1000, 2, 5000, "cap"));
    json_t *ans = list(x, NULL);
    assert_int_equal(num(ans, "held"), 3);
    assert_int_equal(num(ans, "capacity"), 3);
    assert_int_equal(num(ans, "dropped"), 2);
    assert_int_equal(num(ans, "missed"), 2); /* seq 1 and 2 are gone */
    assert_int_equal(num(ans, "first_seq"), 3);
    assert_int_equal(num(ans, "count"), 3);
    assert_int_equal(num(entry(ans, 0), "seq"), 3);
    json_decref(ans);
    ans = list(x, "since=1");
    assert_int_equal(num(ans, "missed"), 1);
    json_decref(ans);
    ans = list(x, "since=2");
    assert_int_equal(num(ans, "missed"), 0);
    assert_int_equal(num(ans, "count"), 3);
    json_decref(ans);

    /* the byte budget: room for about two entries of this size */
    sim_calls_free(&x->h->calls);
    sim_calls_init(&x->h->calls, 100, 1200);
    char media[64];
    for (int i = 0; i < 6; i++) {
        snprintf(media, sizeof media, "bytes-%d", i);
        sendj(x, x->c1, action(x, B1, "1", 1000, 2, 5000, media));
    }
    ans = list(x, NULL);
    int64_t held = num(ans, "held");
    assert_true(held >= 1 && held < 6);
    assert_int_equal(num(ans, "dropped"), 6 - held);
    assert_int_equal(num(ans, "missed"), 6 - held);
    assert_true(x->h->calls.bytes <= 1200);
    snprintf(media, sizeof media, "bytes-%d", 5);
    assert_string_equal(str(entry(ans, (size_t)held - 1), "media_id"), media);
    json_decref(ans);

    /* one entry larger than the whole budget is still kept (alone) */
    json_t *big = action(x, B1, "1", 1000, 2, 5000, "big");
    char pad[2000];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    json_object_set_new(json_object_get(big, "payload"), "media_type", json_string(pad));
    sendj(x, x->c1, big);
    ans = list(x, NULL);
    assert_int_equal(num(ans, "held"), 1);
    assert_string_equal(str(entry(ans, 0), "media_id"), "big");
    json_decref(ans);
}

static void test_reset(void **state)
{
    fx *x = *state;
    for (int i = 0; i < 4; i++)
        sendj(x, x->c1, action(x, B1, "1", 1000, 2, 5000, "r"));
    sim_calls_free(&x->h->calls);
    sim_calls_init(&x->h->calls, 2, 0);
    for (int i = 0; i < 4; i++)
        sendj(x, x->c1, action(x, B1, "1", 1000, 2, 5000, "r"));
    json_t *ans = NULL;
    assert_int_equal(sim_control_request(&x->ctl, "POST", "/sim/calls/reset", NULL, NULL, 0, &ans),
                     200);
    assert_int_equal(num(ans, "cleared"), 2);
    assert_int_equal(num(ans, "last_seq"), 4); /* seq restarted with the re-init above */
    json_decref(ans);
    ans = list(x, NULL);
    assert_int_equal(num(ans, "count"), 0);
    assert_int_equal(num(ans, "held"), 0);
    assert_int_equal(num(ans, "dropped"), 0);
    assert_int_equal(num(ans, "missed"), 0); /* cleared is not missed */
    assert_true(is_null(ans, "first_seq"));
    assert_int_equal(num(ans, "last_seq"), 4);
    assert_int_equal(num(ans, "next_since"), 4);
    json_decref(ans);
    /* sequence numbers go on after a reset */
    sendj(x, x->c1, action(x, B1, "1", 1000, 2, 5000, "after"));
    ans = list(x, "since=2");
    assert_int_equal(num(ans, "count"), 1);
    assert_int_equal(num(entry(ans, 0), "seq"), 5);
    assert_int_equal(num(ans, "missed"), 0);
    json_decref(ans);
    run(x, 100);
}

/* ---- the endpoint ---- */

static void test_endpoint_errors(void **state)
{
    fx *x = *state;
    static const struct {
        const char *method, *path;
        int status;
    } rows[] = {
        {"GET", "/sim/calls?since=-1", 400},
        {"GET", "/sim/calls?since=abc", 400},
        {"GET", "/sim/calls?since=", 400},
        {"GET", "/sim/calls?since=1234567890123456789", 400},
        {"GET", "/sim/calls?limit=0", 400},
        {"GET", "/sim/calls?limit=100001", 400},
        {"GET", "/sim/calls?sinse=1", 400},
        {"GET", "/sim/calls?call_type=", 400},
        {"GET", "/sim/calls?since=1&limit=100000", 200},
        {"GET", "/sim/calls?", 200},
        {"POST", "/sim/calls", 405},
        {"DELETE", "/sim/calls", 405},
        {"GET", "/sim/calls/reset", 405},
        {"GET", "/sim/calls/other", 404},
        {"GET", "/sim/callsx", 404},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        json_t *ans = NULL;
        int st = sim_control_request(&x->ctl, rows[i].method, rows[i].path, NULL, NULL, 0, &ans);
        if (st != rows[i].status)
            fail_msg("%s %s: %d, expected %d", rows[i].method, rows[i].path, st, rows[i].status);
        assert_non_null(ans);
        if (st != 200)
            assert_non_null(str(ans, "message"));
        json_decref(ans);
    }
    char longq[700] = "/sim/calls?media_id_prefix=";
    memset(longq + strlen(longq), 'x', 600);
    json_t *lans = NULL;
    assert_int_equal(sim_control_request(&x->ctl, "GET", longq, NULL, NULL, 0, &lans), 400);
    assert_non_null(strstr(str(lans, "message"), "too long"));
    json_decref(lans);
    /* the text form answers the same */
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(
        sim_control_request_text(&x->ctl, "GET", "/sim/calls?limit=0", NULL, NULL, 0, &text, &len),
        400);
    assert_non_null(strstr(text, "limit"));
    free(text);
    sendj(x, x->c1, action(x, B1, "1", 1000, 2, 5000, "t"));
    assert_int_equal(
        sim_control_request_text(&x->ctl, "GET", "/sim/calls", NULL, NULL, 0, &text, &len), 200);
    assert_int_equal(strlen(text), len);
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    assert_non_null(o);
    assert_int_equal(num(o, "count"), 1);
    json_decref(o);
    free(text);
    /* other endpoints still work through the text form */
    assert_int_equal(
        sim_control_request_text(&x->ctl, "GET", "/sim/faults", NULL, NULL, 0, &text, &len), 200);
    assert_non_null(strstr(text, "latency_ms"));
    free(text);
}

static void test_endpoint_token(void **state)
{
    fx *x = *state;
    json_t *ans = NULL;
    assert_int_equal(sim_control_request(&x->ctl, "GET", "/sim/calls", NULL, NULL, 0, &ans), 401);
    json_decref(ans);
    assert_int_equal(
        sim_control_request(&x->ctl, "POST", "/sim/calls/reset", "Bearer nope", NULL, 0, &ans),
        401);
    json_decref(ans);
    assert_int_equal(sim_control_request(&x->ctl, "GET", "/sim/calls?since=0",
                                         "Bearer s3cret-control", NULL, 0, &ans),
                     200);
    json_decref(ans);
    assert_int_equal(sim_control_request(&x->ctl, "POST", "/sim/calls/reset",
                                         "Bearer s3cret-control", NULL, 0, &ans),
                     200);
    json_decref(ans);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_records_each_request),
        T(test_faults_and_odd_requests),
        T(test_since_limit_and_filters),
        T(test_bounds),
        T(test_reset),
        T(test_endpoint_errors),
        cmocka_unit_test_setup_teardown(test_endpoint_token, setup_token, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
