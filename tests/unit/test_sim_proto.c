/* test_sim_proto: kone-sim's stream-v2 requests through the hub, without sockets.
 *
 * Each test row feeds a JSON request to a fake connection and checks the frames it gets:
 * this is the "How KONE rejects calls" table of docs/kone-sim.md, row by row, plus the
 * session, monitoring and robustness rules.
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
#include "hub.h"
#include "proto.h"

#define MAX_FRAMES 256

typedef struct fake {
    json_t *frames[MAX_FRAMES];
    size_t n;
    int closed_code;
    char closed_reason[64];
} fake;

static int fake_send(void *t, const char *text, size_t len)
{
    fake *f = t;
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je);
    assert_non_null(o); /* every frame we send is valid JSON */
    if (f->n < MAX_FRAMES)
        f->frames[f->n++] = o;
    else
        json_decref(o);
    return 0;
}

static void fake_close(void *t, int code, const char *reason)
{
    fake *f = t;
    f->closed_code = code;
    snprintf(f->closed_reason, sizeof f->closed_reason, "%s", reason);
}

static const sim_conn_ops fake_ops = {fake_send, fake_close, NULL, NULL};

typedef struct fx {
    sim_world w;
    sim_auth a;
    sim_hub *h;
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

static const sim_token *token_for(fx *x, const char *basic)
{
    json_t *ans;
    const char *body = "grant_type=client_credentials";
    assert_int_equal(sim_auth_token_request(&x->a, basic, body, strlen(body), 0, &ans), 200);
    const sim_token *t =
        sim_auth_lookup(&x->a, json_string_value(json_object_get(ans, "access_token")), 1);
    json_decref(ans);
    assert_non_null(t);
    return t;
}

#define DEV "Basic a2QtZGV2OmtkLWRldi1zZWNyZXQtY2hhbmdlLW1l"            /* kd-dev */
#define ANNEX "Basic a2QtYW5uZXg6a2QtYW5uZXgtc2VjcmV0LWNoYW5nZS1tZQ=="  /* kd-annex */
#define NOLIST "Basic a2Qtbm9saXN0OmtkLW5vbGlzdC1zZWNyZXQtY2hhbmdlLW1l" /* kd-nolist */

static int setup(void **state)
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
    x->c1 = sim_hub_conn_open(x->h, token_for(x, DEV), &fake_ops, &x->f1);
    assert_non_null(x->c1);
    x->rid = 100;
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    fx *x = *state;
    clear(&x->f1);
    clear(&x->f2);
    sim_hub_free(x->h);
    sim_auth_free(&x->a);
    sim_world_free(&x->w);
    free(x);
    return 0;
}

/* Sends text on c; returns the frames received (cleared first). */
static fake *send_on(fx *x, sim_conn *c, const char *text)
{
    fake *f = c->t;
    clear(f);
    sim_proto_handle(x->h, c, text, strlen(text));
    return f;
}

static fake *sendj(fx *x, sim_conn *c, json_t *req)
{
    char *t = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    fake *f = send_on(x, c, t);
    free(t);
    return f;
}

/* Runs the model for `ms` of real time (the fake clock runs at speed 10). */
static void run(fx *x, int64_t ms)
{
    for (int64_t t = 0; t < ms; t += 50) {
        sim_clock_fake_advance(&x->h->clock, 50);
        sim_hub_tick(x->h);
    }
}

static json_t *call_req(fx *x, const char *building, const char *group, int64_t area,
                        int64_t action, int64_t dest)
{
    json_t *call = json_pack("{s:I}", "action", (json_int_t)action);
    if (dest)
        json_object_set_new(call, "destination", json_integer(dest));
    return json_pack("{s:s,s:s,s:s,s:s,s:{s:I,s:I,s:s,s:i,s:o}}", "type", "lift-call-api-v2",
                     "buildingId", building, "callType", "action", "groupId", group, "payload",
                     "request_id", (json_int_t)++x->rid, "area", (json_int_t)area, "time",
                     "2020-10-10T07:17:33.298515Z", "terminal", 1, "call", call);
}

#define B1 "building:9990000951"
#define B2 "building:9990000952"

static int status_of(const fake *f, size_t i)
{
    assert_true(i < f->n);
    int st = (int)json_integer_value(json_object_get(f->frames[i], "statusCode"));
    /* every answer says ok/error in `type`, as KONE's own client expects */
    assert_string_equal(json_string_value(json_object_get(f->frames[i], "type")),
                        st >= 200 && st < 300 ? "ok" : "error");
    return st;
}

static const char *message_of(const fake *f, size_t i)
{
    return json_string_value(json_object_get(f->frames[i], "message"));
}

static const json_t *data_of(const fake *f, size_t i)
{
    return json_object_get(f->frames[i], "data");
}

/* 201 then a success:false second frame carrying `error`. */
static void expect_refused(fake *f, const char *error)
{
    assert_int_equal(f->n, 2);
    assert_int_equal(status_of(f, 0), 201);
    assert_string_equal(json_string_value(json_object_get(f->frames[1], "callType")), "action");
    assert_false(json_is_true(json_object_get(data_of(f, 1), "success")));
    assert_string_equal(json_string_value(json_object_get(data_of(f, 1), "error")), error);
}

/* 201 then success:true with a session id; returns it. */
static int64_t expect_accepted(fake *f)
{
    assert_true(f->n >= 2);
    assert_int_equal(status_of(f, 0), 201);
    assert_true(json_is_true(json_object_get(data_of(f, 1), "success")));
    int64_t sid = json_integer_value(json_object_get(data_of(f, 1), "session_id"));
    assert_true(sid > 0);
    return sid;
}

static void expect_400(fake *f)
{
    assert_int_equal(f->n, 1);
    assert_int_equal(status_of(f, 0), 400);
    assert_non_null(message_of(f, 0));
    assert_true(strncmp(message_of(f, 0), "Invalid json payload", 20) == 0);
}

static fake *monitor(fx *x, sim_conn *c, const char *b, const char *g, const char *topic)
{
    char id[32];
    snprintf(id, sizeof id, "m%lld", (long long)++x->rid);
    return sendj(x, c,
                 json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:s,s:i,s:[s]}}", "type", "site-monitoring",
                           "requestId", id, "buildingId", b, "callType", "monitor", "groupId", g,
                           "payload", "sub", "t", "duration", 300, "subtopics", topic));
}

/* The last call-state frame for sid among f's frames, or NULL. */
static const json_t *last_state(const fake *f, int64_t sid)
{
    const json_t *found = NULL;
    for (size_t i = 0; i < f->n; i++) {
        const json_t *fr = f->frames[i];
        if (json_is_string(json_object_get(fr, "callType")) &&
            strcmp(json_string_value(json_object_get(fr, "callType")), "monitor-call-state") == 0 &&
            json_integer_value(json_object_get(json_object_get(fr, "data"), "session_id")) == sid)
            found = json_object_get(fr, "data");
    }
    return found;
}

/* Accepted, then cancelled at once with this reason (the frames of a subscribed connection);
 * returns the call's session id. */
static int64_t expect_cancelled(fake *f, const char *reason)
{
    int64_t sid = expect_accepted(f);
    const json_t *d = last_state(f, sid);
    assert_non_null(d);
    assert_string_equal(json_string_value(json_object_get(d, "state")), "cancelled");
    assert_string_equal(json_string_value(json_object_get(d, "cancel_reason")), reason);
    return sid;
}

/* ---- the rejection table ---- */

static void test_unknown_and_disabled_actions(void **state)
{
    fx *x = *state;
    expect_refused(sendj(x, x->c1, call_req(x, B1, "1", 3000, 200, 5000)),
                   "Ignoring call, unknown call action: 200");
    expect_refused(sendj(x, x->c1, call_req(x, B1, "1", 3000, 0, 5000)),
                   "Ignoring call, unknown call action: UNDEFINED");
    expect_refused(sendj(x, x->c1, call_req(x, B1, "1", 3000, 4, 5000)),
                   "Ignoring call, disabled call action: 4");
    /* the answer frame echoes the request id as sent, and the second frame too */
    fake *f = sendj(x, x->c1, call_req(x, B1, "1", 3000, 200, 5000));
    assert_int_equal(json_integer_value(json_object_get(f->frames[0], "requestId")), x->rid);
    assert_int_equal(json_integer_value(json_object_get(data_of(f, 1), "request_id")), x->rid);
    assert_non_null(json_object_get(f->frames[0], "connectionId"));
}

static void test_invalid_direction(void **state)
{
    fx *x = *state;
    /* landing call down at the lowest floor, up at the group's top floor */
    expect_refused(sendj(x, x->c1, call_req(x, B1, "1", 1000, 2002, 0)), "INVALID_DIRECTION");
    expect_refused(sendj(x, x->c1, call_req(x, B1, "1", 11000, 2001, 0)), "INVALID_DIRECTION");
    expect_refused(sendj(x, x->c1, call_req(x, B1, "2", 20000, 2001, 0)), "INVALID_DIRECTION");
    expect_accepted(sendj(x, x->c1, call_req(x, B1, "1", 1000, 2001, 0)));
}

static void test_invalid_payload(void **state)
{
    fx *x = *state;
    json_t *r = call_req(x, B1, "1", 3000, 2, 5000);
    json_object_set_new(json_object_get(json_object_get(r, "payload"), "call"), "delay",
                        json_integer(31));
    expect_400(sendj(x, x->c1, r));
    r = call_req(x, B1, "1", 3000, 2, 5000);
    json_object_set_new(json_object_get(json_object_get(r, "payload"), "call"), "group_size",
                        json_integer(0));
    expect_400(sendj(x, x->c1, r));
    r = call_req(x, B1, "1", 3000, 2, 5000);
    json_object_set_new(json_object_get(r, "payload"), "area", json_string("3000"));
    expect_400(sendj(x, x->c1, r));
    r = call_req(x, B1, "1", 3000, 2, 5000);
    json_object_del(json_object_get(r, "payload"), "call");
    expect_400(sendj(x, x->c1, r));
    r = call_req(x, B1, "1", 3000, 2, 5000);
    json_object_set_new(json_object_get(json_object_get(r, "payload"), "call"),
                        "call_replacement_priority", json_string("MEDIUM"));
    expect_400(sendj(x, x->c1, r));
    r = call_req(x, B1, "1", 3000, 2, 5000);
    json_object_set_new(json_object_get(json_object_get(r, "payload"), "call"), "allowed_lifts",
                        json_pack("[s]", "lift_1"));
    expect_400(sendj(x, x->c1, r));
    /* delay 30 is fine */
    r = call_req(x, B1, "1", 3000, 2, 5000);
    json_object_set_new(json_object_get(json_object_get(r, "payload"), "call"), "delay",
                        json_integer(30));
    expect_accepted(sendj(x, x->c1, r));
}

static void test_same_floor(void **state)
{
    fx *x = *state;
    /* front and rear door of the lobby: one floor. A subscriber from before the call sees the
     * instant cancellation */
    fake *f = monitor(x, x->c1, B1, "1", "call_state/+/+");
    assert_int_equal(status_of(f, 0), 201);
    int64_t sid = expect_cancelled(sendj(x, x->c1, call_req(x, B1, "1", 1000, 2, 1010)),
                                   "SAME_SOURCE_AND_DEST_FLOOR");
    const json_t *d;
    /* one arriving after it gets nothing: KONE documents no snapshot on subscribe */
    char topic[64];
    snprintf(topic, sizeof topic, "call_state/%lld/+", (long long)sid);
    x->c2 = sim_hub_conn_open(x->h, token_for(x, DEV), &fake_ops, &x->f2);
    assert_non_null(x->c2);
    f = monitor(x, x->c2, B1, "1", topic);
    assert_int_equal(status_of(f, 0), 201);
    assert_null(last_state(f, sid));
    /* ... unless the simulator's kinder snapshot mode is on (sim.snapshot) */
    x->h->snapshot = true;
    f = monitor(x, x->c2, B1, "1", topic);
    x->h->snapshot = false;
    d = last_state(f, sid);
    assert_non_null(d);
    assert_string_equal(json_string_value(json_object_get(d, "state")), "cancelled");
    sim_hub_conn_closed(x->h, x->c2);
}

static void test_unresolvable_areas(void **state)
{
    fx *x = *state;
    expect_refused(sendj(x, x->c1, call_req(x, B1, "1", 3000, 2, 99000)),
                   "Ignoring call, unable to resolve destination: area:99000");
    expect_refused(sendj(x, x->c1, call_req(x, B1, "1", 3000, 2, 0)),
                   "Ignoring call, destination not defined");
    expect_refused(sendj(x, x->c1, call_req(x, B1, "1", 99000, 2, 5000)),
                   "Ignoring call, unable to resolve area: area:99000");
    /* the rear lobby door exists, but group 2 has no rear doors */
    expect_refused(sendj(x, x->c1, call_req(x, B1, "2", 1010, 2, 15000)),
                   "Ignoring call, unable to resolve area: area:1010");
}

static void test_unknown_building_and_scopes(void **state)
{
    fx *x = *state;
    fake *f = sendj(x, x->c1, call_req(x, "building:123", "1", 3000, 2, 5000));
    assert_int_equal(f->n, 1);
    assert_int_equal(status_of(f, 0), 404);
    assert_string_equal(message_of(f, 0), "Building data not found for ID building:123");
    f = sendj(x, x->c1, call_req(x, B1, "7", 3000, 2, 5000));
    assert_int_equal(status_of(f, 0), 404);

    x->c2 = sim_hub_conn_open(x->h, token_for(x, ANNEX), &fake_ops, &x->f2);
    f = sendj(x, x->c2, call_req(x, B1, "1", 3000, 2, 5000));
    assert_int_equal(f->n, 1);
    assert_int_equal(status_of(f, 0), 403);
    f = monitor(x, x->c2, B1, "1", "call_state/+/+");
    assert_int_equal(status_of(f, 0), 403);
    sim_hub_conn_closed(x->h, x->c2);
    clear(&x->f2);

    /* a group scope covers only that group */
    x->c2 = sim_hub_conn_open(x->h, token_for(x, NOLIST), &fake_ops, &x->f2);
    expect_accepted(sendj(x, x->c2, call_req(x, B1, "1", 3000, 2, 5000)));
    f = sendj(x, x->c2, call_req(x, B1, "2", 15000, 2, 16000));
    assert_int_equal(status_of(f, 0), 403);
    sim_hub_conn_closed(x->h, x->c2);
}

static void test_group_modes_and_locks(void **state)
{
    fx *x = *state;
    /* a group out of service: no text of kone-sim's own, the call goes as one no lift can
     * serve (accepted, cancelled NO_LIFT_AVAILABLE); the mode shows as the spec's lift_mode */
    monitor(x, x->c1, B2, "1", "call_state/+/+");
    expect_cancelled(sendj(x, x->c1, call_req(x, B2, "1", 1000, 2, 3000)), "NO_LIFT_AVAILABLE");
    x->h->snapshot = true; /* sim.snapshot: the current status comes with the answer */
    fake *f = monitor(x, x->c1, B2, "1", "+/status");
    x->h->snapshot = false;
    assert_int_equal(f->n, 2);
    assert_int_equal(json_integer_value(json_object_get(data_of(f, 1), "lift_mode")), -1);
    assert_null(json_object_get(data_of(f, 1), "lift_mode_name"));
    /* a locked floor, as KONE's guide has it: accepted, then cancelled FLOOR_IS_LOCKED */
    monitor(x, x->c1, B1, "1", "call_state/+/+");
    int64_t from[2] = {9000, 3000}, to[2] = {3000, 9000};
    for (int i = 0; i < 2; i++)
        expect_cancelled(sendj(x, x->c1, call_req(x, B1, "1", from[i], 2, to[i])),
                         "FLOOR_IS_LOCKED");
}

static void test_no_lift_available(void **state)
{
    fx *x = *state;
    monitor(x, x->c1, B1, "2", "call_state/+/+");
    json_t *r = call_req(x, B1, "2", 1000, 2, 18000);
    json_object_set_new(json_object_get(json_object_get(r, "payload"), "call"), "allowed_lifts",
                        json_pack("[i]", 1002020));
    clear(&x->f1);
    int64_t sid = expect_accepted(sendj(x, x->c1, r));
    run(x, 200);
    const json_t *d = last_state(&x->f1, sid);
    assert_non_null(d);
    assert_string_equal(json_string_value(json_object_get(d, "cancel_reason")),
                        "NO_LIFT_AVAILABLE");
}

static void test_site_link_down(void **state)
{
    fx *x = *state;
    fake *f = monitor(x, x->c1, B2, "2", "call_state/+/+");
    assert_int_equal(f->n, 1);
    f = sendj(x, x->c1, call_req(x, B2, "2", 1000, 2, 3000));
    assert_int_equal(f->n, 1); /* 201 and nothing else */
    assert_int_equal(status_of(f, 0), 201);
    clear(f);
    run(x, 5000);
    assert_int_equal(x->f1.n, 0); /* no event ever */
    f = sendj(x, x->c1,
              json_pack("{s:s,s:s,s:s,s:s,s:{s:i}}", "type", "common-api", "buildingId", B2,
                        "callType", "ping", "groupId", "2", "payload", "request_id", 77));
    assert_int_equal(status_of(f, 0), 500);
    assert_int_equal(json_integer_value(json_object_get(data_of(f, 0), "error")), 1005);
    /* the same building's other group answers pings */
    f = sendj(x, x->c1,
              json_pack("{s:s,s:s,s:s,s:s,s:{s:i}}", "type", "common-api", "buildingId", B2,
                        "callType", "ping", "groupId", "1", "payload", "request_id", 78));
    assert_int_equal(status_of(f, 0), 200);
    assert_int_equal(json_integer_value(json_object_get(data_of(f, 0), "request_id")), 78);
    /* the spec requires buildingId on common-api, pings included: KONE's own keep-alive is a
     * ping to a building, so one without is refused, not answered as a special case */
    f = send_on(x, x->c1,
                "{\"type\":\"common-api\",\"callType\":\"ping\","
                "\"payload\":{\"request_id\":79}}");
    assert_int_equal(status_of(f, 0), 400);
}

/* Random corruption of valid requests: always exactly one answer, never a crash. */
static void test_mutations(void **state)
{
    fx *x = *state;
    const char *seeds[] = {
        "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"" B1 "\",\"callType\":\"action\","
        "\"groupId\":\"1\",\"payload\":{\"request_id\":1,\"area\":3000,\"terminal\":1,"
        "\"call\":{\"action\":2,\"destination\":5000,\"allowed_lifts\":[1001010]}}}",
        "{\"type\":\"site-monitoring\",\"requestId\":\"m\",\"buildingId\":\"" B1 "\","
        "\"callType\":\"monitor\",\"groupId\":\"1\",\"payload\":{\"sub\":\"s\","
        "\"duration\":30,\"subtopics\":[\"call_state/+/+\",\"lift_1/position\"]}}",
        "{\"type\":\"resume-session\",\"requestId\":\"r\",\"sessionId\":\"abc\","
        "\"resendLatestStateUpToSeconds\":30}",
    };
    unsigned seed = 12345;
    char buf[512];
    for (int i = 0; i < 3000; i++) {
        const char *s = seeds[i % 3];
        size_t n = strlen(s);
        memcpy(buf, s, n + 1);
        for (int k = 0; k < 1 + i % 4; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % n;
            seed = seed * 1103515245u + 12345u;
            static const char alphabet[] = " {}[]\":,0123456789axn-+/\\";
            buf[pos] = alphabet[(seed >> 8) % (sizeof alphabet - 1)];
        }
        fake *f = send_on(x, x->c1, buf);
        if (f->n < 1 || !json_object_get(f->frames[0], "statusCode"))
            fail_msg("mutation %d: no answer for %s", i, buf);
        run(x, 0);
    }
    run(x, 10000);
}

static void test_transfer_event(void **state)
{
    fx *x = *state;
    monitor(x, x->c1, B1, "1", "call_state/+/+");
    int64_t sid = expect_accepted(sendj(x, x->c1, call_req(x, B1, "1", 3000, 2, 15000)));
    fake *f = &x->f1;
    const json_t *d = last_state(f, sid);
    assert_non_null(d); /* being_allocated follows the two answer frames */
    assert_string_equal(json_string_value(json_object_get(d, "state")), "being_allocated");
    assert_int_equal(json_integer_value(json_object_get(d, "modified_destination")), 11000);
    assert_string_equal(json_string_value(json_object_get(d, "modified_reason")),
                        "AutomaticTransfer");
    assert_int_equal(status_of(f, 0), 201); /* answer first */
    clear(f);
    run(x, 3000);
    d = last_state(f, sid);
    assert_non_null(d);
    assert_string_equal(json_string_value(json_object_get(d, "state")), "served");
    assert_int_equal(
        json_integer_value(json_array_get(json_object_get(d, "allocated_lift_deck"), 0)), 1001010);
}

/* ---- request ids, robustness ---- */

static void test_request_ids(void **state)
{
    fx *x = *state;
    json_t *rj = call_req(x, B1, "1", 3000, 2, 5000);
    char *r = json_dumps(rj, JSON_COMPACT);
    json_decref(rj);
    expect_accepted(send_on(x, x->c1, r));
    fake *f = send_on(x, x->c1, r);
    assert_int_equal(f->n, 1);
    assert_int_equal(status_of(f, 0), 409);
    /* another connection may use it */
    x->c2 = sim_hub_conn_open(x->h, token_for(x, DEV), &fake_ops, &x->f2);
    expect_accepted(send_on(x, x->c2, r));
    sim_hub_conn_closed(x->h, x->c2);
    free(r);
    /* string ids of other requests, echoed as sent */
    f = send_on(x, x->c1, "{\"type\":\"create-session\",\"requestId\":\"abc\"}");
    assert_string_equal(json_string_value(json_object_get(f->frames[0], "requestId")), "abc");
    f = send_on(x, x->c1, "{\"type\":\"create-session\",\"requestId\":\"abc\"}");
    assert_int_equal(status_of(f, 0), 409);
}

static void test_garbage(void **state)
{
    fx *x = *state;
    const char *bad[] = {
        "{",
        "[]",
        "\"x\"",
        "{\"type\":42}",
        "{\"type\":\"nope\"}",
        "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"" B1 "\",\"callType\":\"action\"}",
        "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"" B1 "\",\"callType\":\"dance\","
        "\"payload\":{\"request_id\":1}}",
        "{\"type\":\"lift-call-api-v2\",\"callType\":\"action\",\"payload\":{\"request_id\":2}}",
        "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"" B1 "\",\"callType\":\"action\","
        "\"payload\":{\"request_id\":\"x1\",\"area\":3000,\"call\":{\"action\":2}}}",
        "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"" B1 "\",\"callType\":\"action\","
        "\"payload\":[1,2]}",
        "{\"type\":\"common-api\",\"buildingId\":\"" B1 "\",\"callType\":\"what\"}",
        "{\"type\":\"site-monitoring\",\"buildingId\":\"" B1 "\",\"callType\":\"monitor\","
        "\"payload\":{\"sub\":\"s\",\"duration\":301,\"subtopics\":[\"call_state/+/+\"]}}",
        "{\"type\":\"site-monitoring\",\"buildingId\":\"" B1 "\",\"callType\":\"monitor\","
        "\"payload\":{\"sub\":\"s\",\"subtopics\":[\"lift_9/position\"]}}",
        "{\"type\":\"site-monitoring\",\"buildingId\":\"" B1 "\",\"callType\":\"monitor\","
        "\"payload\":{\"sub\":\"s\",\"subtopics\":[\"call_state/+/+\", 5]}}",
        "{\"type\":\"resume-session\"}",
        "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"" B1 "\",\"callType\":\"delete\","
        "\"payload\":{\"request_id\":3,\"session_id\":\"1\"}}",
        "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"" B1 "\",\"callType\":\"hold_open\","
        "\"payload\":{\"request_id\":4,\"lift_deck\":1001010,\"served_area\":1000,"
        "\"hard_time\":11}}",
        "{\"requestId\":{\"a\":1},\"type\":\"create-session\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fake *f = send_on(x, x->c1, bad[i]);
        if (f->n != 1 || status_of(f, 0) != 400)
            fail_msg("request %zu: expected one 400 answer, got %zu frames", i, f->n);
    }
    /* invalid UTF-8 and an embedded NUL */
    fake *f = send_on(x, x->c1, "{\"type\":\"\xff\xfe\"}");
    assert_int_equal(status_of(f, 0), 400);
    char nul[] = "{\"type\":\"a\0b\"}";
    clear(&x->f1);
    sim_proto_handle(x->h, x->c1, nul, sizeof nul - 1);
    assert_int_equal(status_of(&x->f1, 0), 400);
    /* a huge frame */
    size_t big = SIM_MAX_FRAME + 10;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    huge[big] = '\0';
    f = send_on(x, x->c1, huge);
    free(huge);
    assert_int_equal(status_of(f, 0), 400);
    clear(&x->f1);
    sim_proto_too_large(x->h, x->c1);
    assert_int_equal(status_of(&x->f1, 0), 400);
    assert_true(json_is_null(json_object_get(x->f1.frames[0], "requestId")));
}

static void test_common_api(void **state)
{
    fx *x = *state;
    fake *f = send_on(x, x->c1,
                      "{\"type\":\"common-api\",\"requestId\":\"c1\",\"buildingId\":\"" B1
                      "\",\"callType\":\"config\",\"groupId\":\"1\"}");
    assert_int_equal(status_of(f, 0), 200);
    const json_t *d = data_of(f, 0);
    assert_int_equal(json_array_size(json_object_get(d, "lifts")), 2);
    assert_int_equal(json_array_size(json_object_get(d, "floors")), 11);
    f = send_on(x, x->c1,
                "{\"type\":\"common-api\",\"requestId\":\"c2\",\"buildingId\":\"" B1
                "\",\"callType\":\"actions\",\"groupId\":\"1\"}");
    assert_int_equal(status_of(f, 0), 200);
    const json_t *list = json_object_get(data_of(f, 0), "call_types");
    assert_int_equal(json_array_size(list), 6);
    size_t i;
    const json_t *a;
    bool disabled_seen = false;
    json_array_foreach(list, i, a) disabled_seen |= json_is_true(json_object_get(a, "disabled"));
    assert_true(disabled_seen);
}

/* ---- sessions ---- */

static void test_session_resume(void **state)
{
    fx *x = *state;
    fake *f = send_on(x, x->c1, "{\"type\":\"create-session\",\"requestId\":\"s1\"}");
    assert_int_equal(status_of(f, 0), 201);
    char sid_text[64];
    snprintf(sid_text, sizeof sid_text, "%s",
             json_string_value(json_object_get(data_of(f, 0), "sessionId")));
    f = send_on(x, x->c1, "{\"type\":\"create-session\",\"requestId\":\"s2\"}");
    assert_int_equal(status_of(f, 0), 400); /* one session per connection */
    monitor(x, x->c1, B1, "1", "call_state/+/+");
    int64_t call = expect_accepted(sendj(x, x->c1, call_req(x, B1, "1", 3000, 2, 5000)));
    run(x, 100);

    /* a second connection of the same client takes the session over */
    x->c2 = sim_hub_conn_open(x->h, token_for(x, DEV), &fake_ops, &x->f2);
    char req[256];
    snprintf(req, sizeof req,
             "{\"type\":\"resume-session\",\"requestId\":\"r1\",\"sessionId\":\"%s\","
             "\"resendLatestStateUpToSeconds\":30}",
             sid_text);
    f = send_on(x, x->c2, req);
    assert_int_equal(status_of(f, 0), 201);
    assert_int_equal(x->f1.closed_code, 1000); /* the old connection is closed */
    const json_t *d = last_state(f, call);     /* latest state re-sent */
    assert_non_null(d);
    /* later events of the call go to the new connection only (its monitoring moved too) */
    clear(&x->f1);
    clear(f);
    run(x, 3000);
    assert_int_equal(x->f1.n, 0);
    d = last_state(f, call);
    assert_non_null(d);
    assert_string_equal(json_string_value(json_object_get(d, "state")), "served");
    /* the old connection's requests are ignored while it closes */
    clear(&x->f1);
    sim_proto_handle(x->h, x->c1, "{}", 2);
    assert_int_equal(x->f1.n, 0);
    /* resuming one's own session, an unknown one */
    f = send_on(x, x->c2, req);
    assert_int_equal(status_of(f, 0), 409); /* same request id */
    snprintf(req, sizeof req,
             "{\"type\":\"resume-session\",\"requestId\":\"r2\",\"sessionId\":\"%s\"}", sid_text);
    f = send_on(x, x->c2, req);
    assert_int_equal(status_of(f, 0), 400);
    f = send_on(x, x->c2, "{\"type\":\"resume-session\",\"requestId\":\"r3\",\"sessionId\":\"x\"}");
    assert_int_equal(status_of(f, 0), 404);
    /* only the owner may delete the call; it is served by now */
    snprintf(req, sizeof req,
             "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"" B1 "\",\"callType\":\"delete\","
             "\"groupId\":\"1\",\"payload\":{\"request_id\":9,\"session_id\":%lld}}",
             (long long)call);
    f = send_on(x, x->c2, req);
    assert_int_equal(status_of(f, 0), 409);
    sim_hub_conn_closed(x->h, x->c1);
    sim_hub_conn_closed(x->h, x->c2);
    x->c1 = x->c2 = NULL;
}

static void test_delete_and_hold_open(void **state)
{
    fx *x = *state;
    int64_t call = expect_accepted(sendj(x, x->c1, call_req(x, B1, "1", 8000, 2, 2000)));
    run(x, 100);
    char req[320];
    snprintf(req, sizeof req,
             "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"" B1 "\",\"callType\":\"delete\","
             "\"groupId\":\"1\",\"payload\":{\"request_id\":900,\"session_id\":%lld}}",
             (long long)call);
    fake *f = send_on(x, x->c1, req);
    assert_int_equal(status_of(f, 0), 202);
    snprintf(req, sizeof req,
             "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"" B1 "\",\"callType\":\"delete\","
             "\"groupId\":\"1\",\"payload\":{\"request_id\":901,\"session_id\":%lld}}",
             (long long)call + 1000);
    f = send_on(x, x->c1, req);
    assert_int_equal(status_of(f, 0), 404);
    f = send_on(x, x->c1,
                "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"" B1 "\",\"callType\":"
                "\"hold_open\",\"groupId\":\"1\",\"payload\":{\"request_id\":902,\"lift_deck\":"
                "1001010,\"served_area\":1000,\"hard_time\":5,\"soft_time\":10}}");
    assert_int_equal(status_of(f, 0), 201);
    assert_true(json_is_true(json_object_get(data_of(f, 1), "success")));
    f = send_on(x, x->c1,
                "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"" B1 "\",\"callType\":"
                "\"hold_open\",\"groupId\":\"1\",\"payload\":{\"request_id\":903,\"lift_deck\":"
                "1002010,\"served_area\":1000,\"hard_time\":5}}");
    assert_false(json_is_true(json_object_get(data_of(f, 1), "success")));
}

static void test_lift_events(void **state)
{
    fx *x = *state;
    x->h->snapshot = true; /* sim.snapshot */
    fake *f = monitor(x, x->c1, B1, "1", "lift_1/position");
    x->h->snapshot = false;
    assert_int_equal(f->n, 2); /* answer and the current position */
    monitor(x, x->c1, B1, "1", "+/doors");
    monitor(x, x->c1, B1, "1", "+/next_stop_eta");
    monitor(x, x->c1, B1, "1", "+/stopping");
    monitor(x, x->c1, B1, "1", "action/+/+");
    clear(&x->f1);
    int64_t call = expect_accepted(sendj(x, x->c1, call_req(x, B1, "1", 3000, 2, 5000)));
    run(x, 1500);
    int seen[8] = {0};
    const char *types[] = {"monitor-lift-position", "monitor-door-state", "monitor-next-stop-eta",
                           "monitor-lift-stopping", "monitor-action"};
    for (size_t i = 0; i < x->f1.n; i++) {
        const char *ct = json_string_value(json_object_get(x->f1.frames[i], "callType"));
        for (int k = 0; ct && k < 5; k++)
            if (strcmp(ct, types[k]) == 0)
                seen[k]++;
        if (ct && strcmp(ct, "monitor-lift-stopping") == 0) {
            const json_t *door = json_array_get(
                json_object_get(json_object_get(data_of(&x->f1, i), "decks"), "doors"), 0);
            assert_non_null(door);
        }
    }
    for (int k = 0; k < 5; k++)
        if (!seen[k])
            fail_msg("no %s event", types[k]);
    (void)call;
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_unknown_and_disabled_actions),
        T(test_invalid_direction),
        T(test_invalid_payload),
        T(test_same_floor),
        T(test_unresolvable_areas),
        T(test_unknown_building_and_scopes),
        T(test_group_modes_and_locks),
        T(test_no_lift_available),
        T(test_site_link_down),
        T(test_transfer_event),
        T(test_request_ids),
        T(test_garbage),
        T(test_common_api),
        T(test_session_resume),
        T(test_delete_and_hold_open),
        T(test_lift_events),
        T(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
