/* test_sim_faults: kone-sim's fault injection, without sockets.
 *
 * First the pure parts (faults.c): parsing and merging fault specs, their JSON form, the
 * log diff and the decisions (call error share, latency, drop roll). Then the effect of each
 * fault on requests, through the control endpoint function (control.c), the hub and the
 * request layer with fake connections and a fake clock, as test_sim_proto does.
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
#include "control.h"
#include "faults.h"
#include "hub.h"
#include "proto.h"

#define B1 "building:9990000951"
#define B2 "building:9990000952"
#define MAX_FRAMES 256

/* ---- fixture ---- */

typedef struct fake {
    json_t *frames[MAX_FRAMES];
    size_t n;
    int closed_code;
    int dropped;
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
    (void)reason;
    ((fake *)t)->closed_code = code;
}

static void fake_drop(void *t)
{
    ((fake *)t)->dropped++;
}

static const sim_conn_ops fake_ops = {fake_send, fake_close, fake_drop, NULL};

typedef struct fx {
    sim_world w;
    sim_auth a;
    sim_hub *h;
    sim_control ctl;
    fake f1;
    sim_conn *c1;
    int64_t rid;
} fx;

static void clear(fake *f)
{
    for (size_t i = 0; i < f->n; i++)
        json_decref(f->frames[i]);
    f->n = 0;
}

#define DEV "Basic a2QtZGV2OmtkLWRldi1zZWNyZXQtY2hhbmdlLW1l" /* kd-dev */

static int64_t token_ttl(fx *x)
{
    json_t *ans;
    const char *body = "grant_type=client_credentials";
    assert_int_equal(sim_auth_token_request(&x->a, DEV, body, strlen(body), 0, &ans), 200);
    int64_t ttl = json_integer_value(json_object_get(ans, "expires_in"));
    json_decref(ans);
    return ttl;
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
    assert_non_null(x->c1);
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
    sim_control_free(&x->ctl);
    sim_hub_free(x->h);
    sim_auth_free(&x->a);
    sim_world_free(&x->w);
    free(x);
    return 0;
}

static fake *send_text(fx *x, const char *text)
{
    clear(&x->f1);
    sim_proto_handle(x->h, x->c1, text, strlen(text));
    return &x->f1;
}

static fake *sendj(fx *x, json_t *req)
{
    char *t = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    fake *f = send_text(x, t);
    free(t);
    return f;
}

/* Runs the hub for `ms` of real time in 10 ms steps (the fake clock runs at speed 10). */
static void run(fx *x, int64_t ms)
{
    for (int64_t t = 0; t < ms; t += 10) {
        sim_clock_fake_advance(&x->h->clock, 10);
        sim_hub_tick(x->h);
    }
}

static json_t *call_req(fx *x, const char *building, const char *group, int64_t area, int64_t dest)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:{s:I,s:I,s:i,s:{s:i,s:I}}}", "type", "lift-call-api-v2",
                     "buildingId", building, "callType", "action", "groupId", group, "payload",
                     "request_id", (json_int_t)++x->rid, "area", (json_int_t)area, "terminal", 1,
                     "call", "action", 2, "destination", (json_int_t)dest);
}

static json_t *lift_req(fx *x, const char *call_type, json_t *payload)
{
    json_object_set_new(payload, "request_id", json_integer(++x->rid));
    return json_pack("{s:s,s:s,s:s,s:s,s:o}", "type", "lift-call-api-v2", "buildingId", B1,
                     "callType", call_type, "groupId", "1", "payload", payload);
}

static json_t *ping_req(fx *x, const char *building, const char *group)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:{s:I}}", "type", "common-api", "buildingId", building,
                     "callType", "ping", "groupId", group, "payload", "request_id",
                     (json_int_t)++x->rid);
}

static fake *monitor(fx *x, const char *b, const char *g, const char *topic)
{
    char id[32];
    snprintf(id, sizeof id, "m%lld", (long long)++x->rid);
    return sendj(x, json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:s,s:i,s:[s]}}", "type", "site-monitoring",
                              "requestId", id, "buildingId", b, "callType", "monitor", "groupId", g,
                              "payload", "sub", "t", "duration", 300, "subtopics", topic));
}

static int status_of(const fake *f, size_t i)
{
    assert_true(i < f->n);
    int st = (int)json_integer_value(json_object_get(f->frames[i], "statusCode"));
    /* every answer says ok/error in `type`, as KONE's own client expects */
    assert_string_equal(json_string_value(json_object_get(f->frames[i], "type")),
                        st >= 200 && st < 300 ? "ok" : "error");
    return st;
}

static const json_t *data_of(const fake *f, size_t i)
{
    return json_object_get(f->frames[i], "data");
}

static const char *str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void apply(fx *x, const char *spec)
{
    char msg[300];
    if (sim_control_apply_text(&x->ctl, spec, "test", msg, sizeof msg))
        fail_msg("%s: %s", spec, msg);
}

/* The call result frame (second frame) of an accepted call: its session id. */
static int64_t expect_accepted(const fake *f)
{
    assert_true(f->n >= 2);
    assert_int_equal(status_of(f, 0), 201);
    assert_true(json_is_true(json_object_get(data_of(f, 1), "success")));
    return json_integer_value(json_object_get(data_of(f, 1), "session_id"));
}

/* Among f's frames, call sid's state cancelled with this reason. */
static void expect_cancel_state(const fake *f, int64_t sid, const char *reason)
{
    for (size_t i = 0; i < f->n; i++) {
        const json_t *d = data_of(f, i);
        if (json_is_string(json_object_get(f->frames[i], "callType")) &&
            !strcmp(str(f->frames[i], "callType"), "monitor-call-state") &&
            json_integer_value(json_object_get(d, "session_id")) == sid &&
            !strcmp(str(d, "state"), "cancelled")) {
            assert_string_equal(str(d, "cancel_reason"), reason);
            return;
        }
    }
    fail_msg("no cancelled state for session %lld", (long long)sid);
}

/* ---- pure: parsing, merging, JSON, diff ---- */

static sim_fault_state *fresh_state(const sim_world *w)
{
    sim_fault_state *s = malloc(sizeof *s);
    assert_non_null(s);
    sim_fault_global none = {0};
    sim_fault_state_get(s, w, &none);
    return s;
}

static int merge_text(sim_fault_state *s, const sim_world *w, const char *text, char *msg,
                      size_t len)
{
    json_error_t je;
    json_t *spec = json_loads(text, 0, &je);
    if (!spec)
        fail_msg("test spec is not JSON: %s", text);
    bool has_seed;
    uint64_t seed;
    int rc = sim_fault_merge(s, w, spec, msg, len, &has_seed, &seed);
    json_decref(spec);
    return rc;
}

static void test_merge_global_and_groups(void **state)
{
    fx *x = *state;
    sim_fault_state *s = fresh_state(&x->w);
    char msg[300] = "";
    const char *spec =
        "{\"latency_ms\":200,\"jitter_ms\":50,\"call_error\":{\"share\":0.25,\"status\":500},"
        "\"drop_probability\":0.1,\"refuse_upgrades\":true,\"token_down\":502,"
        "\"token_ttl_s\":30,\"buildings\":{\"" B1 "\":{\"no_lift\":true,"
        "\"groups\":{\"2\":{\"mode\":\"FRD\",\"link_down\":true,\"latency_ms\":5,"
        "\"call_error\":{\"share\":1}}}}}}";
    assert_int_equal(merge_text(s, &x->w, spec, msg, sizeof msg), 0);
    const sim_fault_global *g = &s->global;
    assert_int_equal(g->latency_ms, 200);
    assert_int_equal(g->jitter_ms, 50);
    assert_true(g->error_share == 0.25);
    assert_int_equal(g->error_status, 500);
    assert_true(g->drop_probability == 0.1);
    assert_int_equal(g->refuse_upgrades, 503);
    assert_int_equal(g->token_down, 502);
    assert_int_equal(g->token_ttl_s, 30);
    /* building-level fields go to every group; group fields to that group only */
    assert_true(s->group[0][0].no_lift && s->group[0][1].no_lift);
    assert_int_equal(s->group[0][0].mode, SIM_MODE_NOR);
    assert_int_equal(s->group[0][1].mode, SIM_MODE_FRD);
    assert_true(s->group[0][1].link_down);
    assert_false(s->group[0][0].link_down);
    assert_int_equal(s->group[0][1].latency_ms, 5);
    assert_true(s->group[0][1].error_share == 1);
    assert_int_equal(s->group[0][1].error_status, 429); /* default status */
    /* the buildings file's faults are still there */
    assert_int_equal(s->group[1][0].mode, SIM_MODE_OSS);
    assert_true(s->group[1][1].link_down);
    assert_true(sim_faults_locked(&s->group[0][0], 9000));

    /* a second merge changes only what it names */
    assert_int_equal(merge_text(s, &x->w,
                                "{\"latency_ms\":0,\"buildings\":{\"" B1
                                "\":{\"groups\":{\"2\":{\"mode\":null}}}}}",
                                msg, sizeof msg),
                     0);
    assert_int_equal(s->global.latency_ms, 0);
    assert_int_equal(s->global.jitter_ms, 50);
    assert_int_equal(s->group[0][1].mode, SIM_MODE_NOR);
    assert_true(s->group[0][1].link_down);
    assert_int_equal(s->global.token_down, 502);
    free(s);
}

static void test_merge_errors_change_nothing(void **state)
{
    fx *x = *state;
    sim_fault_state *s = fresh_state(&x->w), *before = malloc(sizeof *before);
    assert_non_null(before);
    static const struct {
        const char *spec, *msg_part;
    } bad[] = {
        {"[]", "object"},
        {"{\"latency\":5}", "latency: unknown field"},
        {"{\"latency_ms\":-1}", "latency_ms"},
        {"{\"latency_ms\":60001}", "latency_ms"},
        {"{\"latency_ms\":\"5\"}", "latency_ms"},
        {"{\"call_error\":{\"share\":1.5}}", "call_error.share"},
        {"{\"call_error\":{\"share\":1,\"status\":200}}", "call_error.status"},
        {"{\"call_error\":{\"rate\":1}}", "call_error.rate"},
        {"{\"call_error\":0.5}", "call_error"},
        {"{\"drop_probability\":2}", "drop_probability"},
        {"{\"refuse_upgrades\":301}", "refuse_upgrades"},
        {"{\"token_down\":\"yes\"}", "token_down"},
        {"{\"token_ttl_s\":-5}", "token_ttl_s"},
        {"{\"seed\":-1}", "seed"},
        {"{\"buildings\":[]}", "buildings"},
        {"{\"buildings\":{\"building:1\":{}}}", "building:1"},
        {"{\"buildings\":{\"" B1 "\":{\"groups\":{\"7\":{}}}}}", "groups.7"},
        {"{\"buildings\":{\"" B1 "\":{\"mode\":\"FIRE\"}}}", "mode"},
        {"{\"buildings\":{\"" B1 "\":{\"link_down\":1}}}", "link_down"},
        {"{\"buildings\":{\"" B1 "\":{\"groups\":{\"1\":{\"lock\":[99000]}}}}}", "lock"},
        {"{\"buildings\":{\"" B1 "\":{\"groups\":{\"1\":{\"locked_areas\":5000}}}}}",
         "locked_areas"},
        {"{\"buildings\":{\"" B1 "\":{\"groups\":{\"1\":{\"speed\":1}}}}}", "speed"},
        /* valid first fields, invalid last: still nothing applied */
        {"{\"latency_ms\":100,\"buildings\":{\"" B1 "\":{\"mode\":\"OSS\",\"no_lift\":3}}}",
         "no_lift"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char msg[300] = "";
        memcpy(before, s, sizeof *s);
        if (merge_text(s, &x->w, bad[i].spec, msg, sizeof msg) == 0)
            fail_msg("accepted: %s", bad[i].spec);
        if (!strstr(msg, bad[i].msg_part))
            fail_msg("%s: message '%s' does not name '%s'", bad[i].spec, msg, bad[i].msg_part);
        assert_memory_equal(before, s, sizeof *s);
    }
    free(before);
    free(s);
}

static void test_locks(void **state)
{
    fx *x = *state;
    sim_fault_state *s = fresh_state(&x->w);
    char msg[300];
    const sim_faults *g1 = &s->group[0][0];
    assert_int_equal(g1->n_locked, 1); /* 9000, from the buildings file */
    assert_int_equal(merge_text(s, &x->w,
                                "{\"buildings\":{\"" B1 "\":{\"groups\":{\"1\":"
                                "{\"lock\":[5000,6000,5000],\"unlock\":[9000]}}}}}",
                                msg, sizeof msg),
                     0);
    assert_int_equal(g1->n_locked, 2);
    assert_true(sim_faults_locked(g1, 5000) && sim_faults_locked(g1, 6000));
    assert_false(sim_faults_locked(g1, 9000));
    assert_int_equal(merge_text(s, &x->w,
                                "{\"buildings\":{\"" B1 "\":{\"groups\":{\"1\":"
                                "{\"locked_areas\":[3000]}}}}}",
                                msg, sizeof msg),
                     0);
    assert_int_equal(g1->n_locked, 1);
    assert_true(sim_faults_locked(g1, 3000));
    assert_int_equal(merge_text(s, &x->w, "{\"buildings\":{\"" B1 "\":{\"locked_areas\":null}}}",
                                msg, sizeof msg),
                     0);
    assert_int_equal(g1->n_locked, 0);
    free(s);
}

/* GET's JSON, POSTed back, gives the same state. */
static void test_json_round_trip(void **state)
{
    fx *x = *state;
    sim_fault_state *s = fresh_state(&x->w), *t = fresh_state(&x->w);
    char msg[300];
    assert_int_equal(merge_text(s, &x->w,
                                "{\"latency_ms\":7,\"call_error\":{\"share\":0.5,\"status\":500},"
                                "\"token_down\":true,\"buildings\":{\"" B2 "\":{\"groups\":"
                                "{\"1\":{\"mode\":\"ATS\",\"lock\":[2000]}}}}}",
                                msg, sizeof msg),
                     0);
    json_t *j = sim_fault_state_json(s, &x->w);
    assert_non_null(j);
    const json_t *g1 = json_object_get(
        json_object_get(json_object_get(json_object_get(j, "buildings"), B2), "groups"), "1");
    assert_string_equal(str(g1, "mode"), "ATS");
    assert_int_equal(json_integer_value(json_object_get(j, "token_down")), 503);
    bool has_seed;
    uint64_t seed;
    assert_int_equal(sim_fault_merge(t, &x->w, j, msg, sizeof msg, &has_seed, &seed), 0);
    json_decref(j);
    assert_true(s->global.latency_ms == t->global.latency_ms &&
                s->global.error_share == t->global.error_share &&
                s->global.error_status == t->global.error_status &&
                s->global.token_down == t->global.token_down);
    for (size_t b = 0; b < x->w.n; b++)
        for (size_t g = 0; g < x->w.b[b]->n_groups; g++) {
            const sim_faults *a = &s->group[b][g], *c = &t->group[b][g];
            assert_int_equal(a->mode, c->mode);
            assert_int_equal(a->link_down, c->link_down);
            assert_int_equal(a->n_locked, c->n_locked);
            for (size_t i = 0; i < a->n_locked; i++)
                assert_int_equal(a->locked[i], c->locked[i]);
        }
    free(s);
    free(t);
}

typedef struct lines {
    size_t n;
    char text[16][256];
} lines;

static void collect(void *arg, const char *text)
{
    lines *l = arg;
    if (l->n < 16)
        snprintf(l->text[l->n++], sizeof l->text[0], "%s", text);
}

static void test_diff_lines(void **state)
{
    fx *x = *state;
    sim_fault_state *a = fresh_state(&x->w), *b = fresh_state(&x->w);
    char msg[300];
    lines l = {0};
    assert_int_equal(sim_fault_diff(a, b, &x->w, collect, &l), 0);
    assert_int_equal(merge_text(b, &x->w,
                                "{\"latency_ms\":200,\"buildings\":{\"" B1 "\":{\"groups\":"
                                "{\"1\":{\"mode\":\"FRD\",\"lock\":[5000]}}}}}",
                                msg, sizeof msg),
                     0);
    assert_int_equal(sim_fault_diff(a, b, &x->w, collect, &l), 3);
    assert_string_equal(l.text[0], "latency_ms: 0 -> 200");
    assert_string_equal(l.text[1], B1 " group 1 mode: NOR -> FRD");
    assert_string_equal(l.text[2], B1 " group 1 locked_areas: [9000] -> [9000,5000]");
    free(a);
    free(b);
}

/* ---- pure: decisions ---- */

static void test_call_status_share(void **state)
{
    (void)state;
    sim_fault_global g = {0};
    sim_faults gf = {0};
    sim_rng r;
    sim_rng_seed(&r, 1);
    /* share 0: never; share 1: always, whatever u */
    for (int i = 0; i < 1000; i++)
        assert_int_equal(sim_fault_call_status(&g, &gf, sim_rng_next(&r)), 0);
    g.error_share = 1;
    g.error_status = 429;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(sim_fault_call_status(&g, &gf, sim_rng_next(&r)), 429);
    assert_int_equal(sim_fault_call_status(&g, NULL, 0.999999), 429);
    /* a share is a share */
    g.error_share = 0.3;
    int hits = 0;
    for (int i = 0; i < 10000; i++)
        hits += sim_fault_call_status(&g, &gf, sim_rng_next(&r)) != 0;
    assert_in_range(hits, 2700, 3300);
    assert_int_equal(sim_fault_call_status(&g, &gf, 0.29), 429);
    assert_int_equal(sim_fault_call_status(&g, &gf, 0.30), 0);
    /* the group's setting takes precedence when on */
    gf.error_share = 1;
    gf.error_status = 500;
    assert_int_equal(sim_fault_call_status(&g, &gf, 0.9), 500);
    /* share without status: 429 */
    sim_fault_global h = {.error_share = 1};
    assert_int_equal(sim_fault_call_status(&h, NULL, 0.5), 429);
    assert_true(sim_fault_roll(1, 0.9999));
    assert_false(sim_fault_roll(0, 0));
    assert_string_equal(sim_fault_status_text(429), "Too Many Requests");
    assert_string_equal(sim_fault_status_text(500), "Internal Server Error");
}

static void test_delay(void **state)
{
    (void)state;
    sim_fault_global g = {0};
    assert_int_equal(sim_fault_delay_ms(&g, NULL, 0.7), 0);
    g.latency_ms = 200;
    g.jitter_ms = 100;
    assert_int_equal(sim_fault_delay_ms(&g, NULL, 0), 200);
    assert_int_equal(sim_fault_delay_ms(&g, NULL, 0.5), 250);
    assert_int_equal(sim_fault_delay_ms(&g, NULL, 0.99999), 299);
    sim_faults gf = {.latency_ms = 1000, .jitter_ms = 100};
    assert_int_equal(sim_fault_delay_ms(&g, &gf, 0.5), 1300);
    sim_rng r, r2;
    sim_rng_seed(&r, 42);
    sim_rng_seed(&r2, 42);
    for (int i = 0; i < 1000; i++) {
        double u = sim_rng_next(&r);
        assert_true(u >= 0 && u < 1);
        assert_true(u == sim_rng_next(&r2)); /* same seed, same draws */
    }
}

/* ---- effects on requests ---- */

static void test_call_error_effect(void **state)
{
    fx *x = *state;
    size_t calls = sim_model_call_count(x->h->model);
    apply(x, "{\"call_error\":{\"share\":1,\"status\":429}}");
    for (int i = 0; i < 20; i++) {
        fake *f = sendj(x, call_req(x, B1, "1", 3000, 5000));
        assert_int_equal(f->n, 1);
        assert_int_equal(status_of(f, 0), 429);
        assert_string_equal(str(f->frames[0], "message"), "Too Many Requests");
        assert_int_equal(json_integer_value(json_object_get(f->frames[0], "requestId")), x->rid);
    }
    assert_int_equal(sim_model_call_count(x->h->model), calls); /* never executed */
    fake *f = sendj(x, lift_req(x, "hold_open",
                                json_pack("{s:i,s:i,s:i}", "lift_deck", 1001010, "served_area",
                                          1000, "hard_time", 1)));
    assert_int_equal(f->n, 1);
    assert_int_equal(status_of(f, 0), 429);
    f = sendj(x, lift_req(x, "delete", json_pack("{s:i}", "session_id", 1)));
    assert_int_equal(f->n, 1);
    assert_int_equal(status_of(f, 0), 429);
    /* other request types are not call answers */
    f = sendj(x, ping_req(x, B1, "1"));
    assert_int_equal(status_of(f, 0), 200);

    /* share 0: nothing injected */
    apply(x, "{\"call_error\":{\"share\":0}}");
    for (int i = 0; i < 20; i++)
        expect_accepted(sendj(x, call_req(x, B1, "1", 3000, 5000)));

    /* per group: only group 2 answers 500 */
    apply(x, "{\"buildings\":{\"" B1 "\":{\"groups\":{\"2\":{\"call_error\":"
             "{\"share\":1,\"status\":500}}}}}}");
    f = sendj(x, call_req(x, B1, "2", 12000, 15000));
    assert_int_equal(f->n, 1);
    assert_int_equal(status_of(f, 0), 500);
    expect_accepted(sendj(x, call_req(x, B1, "1", 3000, 5000)));
}

static void test_latency_effect(void **state)
{
    fx *x = *state;
    apply(x, "{\"latency_ms\":300}");
    fake *f = monitor(x, B1, "1", "call_state/+/+");
    assert_int_equal(f->n, 0); /* the monitor answer waits too */
    assert_int_equal(sim_hub_next_due(x->h), 300);
    run(x, 300);
    assert_int_equal(x->f1.n, 1);
    assert_int_equal(status_of(&x->f1, 0), 201);

    f = sendj(x, call_req(x, B1, "1", 3000, 5000));
    assert_int_equal(f->n, 0);
    run(x, 290);
    assert_int_equal(x->f1.n, 0);
    run(x, 10);
    /* the answer, the call result, then being_allocated: order kept behind the delay */
    assert_true(x->f1.n >= 3);
    assert_int_equal(status_of(&x->f1, 0), 201);
    assert_string_equal(str(x->f1.frames[1], "callType"), "action");
    assert_string_equal(str(x->f1.frames[2], "callType"), "monitor-call-state");
    assert_string_equal(str(data_of(&x->f1, 2), "state"), "being_allocated");

    /* group latency adds to the global one; jitter stays within its range */
    apply(x, "{\"latency_ms\":100,\"jitter_ms\":100,\"seed\":7,\"buildings\":{\"" B1
             "\":{\"groups\":{\"2\":{\"latency_ms\":1000}}}}}");
    run(x, 5000);
    int64_t t0 = sim_clock_real_ms(&x->h->clock);
    sendj(x, ping_req(x, B1, "2"));
    int64_t due = sim_hub_next_due(x->h);
    assert_in_range(due - t0, 1100, 1199);
    run(x, 1200);
    clear(&x->f1);
    t0 = sim_clock_real_ms(&x->h->clock);
    sendj(x, ping_req(x, B1, "1"));
    assert_in_range(sim_hub_next_due(x->h) - t0, 100, 199);

    /* off again: answers at once */
    apply(x, "{\"latency_ms\":0,\"jitter_ms\":0}");
    run(x, 300);
    f = sendj(x, ping_req(x, B1, "1"));
    assert_int_equal(f->n, 1);
    assert_int_equal(sim_hub_next_due(x->h), -1);
}

static void test_mode_change(void **state)
{
    fx *x = *state;
    monitor(x, B1, "1", "+/status");
    expect_accepted(sendj(x, call_req(x, B1, "1", 3000, 5000)));
    clear(&x->f1);
    apply(x, "{\"buildings\":{\"" B1 "\":{\"groups\":{\"1\":{\"mode\":\"FRD\"}}}}}");
    /* lift status events report the new mode at once, one per lift */
    assert_int_equal(x->f1.n, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(str(x->f1.frames[i], "callType"), "monitor-lift-status");
        assert_int_equal(json_integer_value(json_object_get(data_of(&x->f1, i), "lift_mode")), 9);
        assert_null(json_object_get(data_of(&x->f1, i), "lift_mode_name")); /* the spec's only */
    }
    /* a call there: accepted, cancelled NO_LIFT_AVAILABLE (no refusal text of our own) */
    monitor(x, B1, "1", "call_state/+/+");
    clear(&x->f1);
    int64_t f_sid = expect_accepted(sendj(x, call_req(x, B1, "1", 3000, 5000)));
    expect_cancel_state(&x->f1, f_sid, "NO_LIFT_AVAILABLE");
    /* the other group is untouched */
    expect_accepted(sendj(x, call_req(x, B1, "2", 12000, 15000)));
    /* common-api config reports it too */
    fake *f = sendj(x, json_pack("{s:s,s:s,s:s,s:s,s:s}", "type", "common-api", "requestId", "cfg",
                                 "buildingId", B1, "callType", "config", "groupId", "1"));
    assert_int_equal(json_integer_value(json_object_get(data_of(f, 0), "lift_mode")), 9);

    clear(&x->f1);
    apply(x, "{\"buildings\":{\"" B1 "\":{\"groups\":{\"1\":{\"mode\":\"NOR\"}}}}}");
    assert_int_equal(x->f1.n, 2);
    assert_int_equal(json_integer_value(json_object_get(data_of(&x->f1, 0), "lift_mode")), 0);
    expect_accepted(sendj(x, call_req(x, B1, "1", 3000, 5000)));
    /* the annex's OSS group comes back to NOR through the control too */
    apply(x, "{\"buildings\":{\"" B2 "\":{\"groups\":{\"1\":{\"mode\":\"NOR\"}}}}}");
    expect_accepted(sendj(x, call_req(x, B2, "1", 1000, 3000)));
}

static void test_link_down_and_up(void **state)
{
    fx *x = *state;
    monitor(x, B1, "1", "call_state/+/+");
    monitor(x, B1, "1", "+/status");
    int64_t before = expect_accepted(sendj(x, call_req(x, B1, "1", 3000, 5000)));
    apply(x, "{\"buildings\":{\"" B1 "\":{\"groups\":{\"1\":{\"link_down\":true}}}}}");
    clear(&x->f1);
    run(x, 3000);
    assert_int_equal(x->f1.n, 0); /* the site's events no longer reach the cloud */
    fake *f = sendj(x, call_req(x, B1, "1", 4000, 6000));
    assert_int_equal(f->n, 1); /* 201 and nothing else */
    assert_int_equal(status_of(f, 0), 201);
    f = sendj(x, ping_req(x, B1, "1"));
    assert_int_equal(status_of(f, 0), 500);
    assert_int_equal(json_integer_value(json_object_get(data_of(f, 0), "error")), 1005);
    f = sendj(x, ping_req(x, B1, "2"));
    assert_int_equal(status_of(f, 0), 200);

    clear(&x->f1);
    apply(x, "{\"buildings\":{\"" B1 "\":{\"groups\":{\"1\":{\"link_down\":false}}}}}");
    assert_int_equal(x->f1.n, 2); /* lift status, once per lift, when the link returns */
    f = sendj(x, ping_req(x, B1, "1"));
    assert_int_equal(status_of(f, 0), 200);
    expect_accepted(sendj(x, call_req(x, B1, "1", 3000, 5000)));
    (void)before;
}

static void test_no_lift(void **state)
{
    fx *x = *state;
    apply(x, "{\"buildings\":{\"" B1 "\":{\"groups\":{\"1\":{\"no_lift\":true}}}}}");
    monitor(x, B1, "1", "call_state/+/+");
    int64_t sid = expect_accepted(sendj(x, call_req(x, B1, "1", 3000, 5000)));
    run(x, 200);
    const json_t *last = NULL;
    for (size_t i = 0; i < x->f1.n; i++)
        if (json_integer_value(json_object_get(data_of(&x->f1, i), "session_id")) == sid)
            last = data_of(&x->f1, i);
    assert_non_null(last);
    assert_string_equal(str(last, "state"), "cancelled");
    assert_string_equal(str(last, "cancel_reason"), "NO_LIFT_AVAILABLE");
    apply(x, "{\"buildings\":{\"" B1 "\":{\"groups\":{\"1\":{\"no_lift\":false}}}}}");
    sid = expect_accepted(sendj(x, call_req(x, B1, "1", 3000, 5000)));
    run(x, 200);
    assert_int_equal(sim_model_call(x->h->model, sid)->state, SIM_CALL_BEING_SERVED);
}

static void test_locked_area(void **state)
{
    fx *x = *state;
    apply(x, "{\"buildings\":{\"" B1 "\":{\"groups\":{\"1\":{\"lock\":[5000]}}}}}");
    int64_t sid = expect_accepted(sendj(x, call_req(x, B1, "1", 3000, 5000)));
    assert_int_equal(sim_model_call(x->h->model, sid)->state, SIM_CALL_CANCELLED);
    sid = expect_accepted(sendj(x, call_req(x, B1, "1", 5000, 3000)));
    assert_int_equal(sim_model_call(x->h->model, sid)->state, SIM_CALL_CANCELLED);
    apply(x, "{\"buildings\":{\"" B1 "\":{\"groups\":{\"1\":{\"unlock\":[5000]}}}}}");
    expect_accepted(sendj(x, call_req(x, B1, "1", 3000, 5000)));
}

static void test_drops(void **state)
{
    fx *x = *state;
    apply(x, "{\"drop_probability\":1}");
    fake *f = sendj(x, ping_req(x, B1, "1"));
    assert_int_equal(f->n, 0); /* lost with the connection */
    assert_int_equal(x->f1.dropped, 1);
    apply(x, "{\"drop_probability\":0}");
    f = sendj(x, ping_req(x, B1, "1"));
    assert_int_equal(f->n, 1);

    json_t *ans;
    assert_int_equal(
        sim_control_request(&x->ctl, "POST", "/sim/drop-connections", NULL, NULL, 0, &ans), 200);
    assert_int_equal(json_integer_value(json_object_get(ans, "dropped")), 1);
    json_decref(ans);
    assert_int_equal(x->f1.dropped, 2);
    const char *body = "{\"code\":1011,\"reason\":\"bye\"}";
    assert_int_equal(sim_control_request(&x->ctl, "POST", "/sim/drop-connections", NULL, body,
                                         strlen(body), &ans),
                     200);
    json_decref(ans);
    assert_int_equal(x->f1.closed_code, 1011);
    body = "{\"client_id\":\"kd-annex\"}";
    assert_int_equal(sim_control_request(&x->ctl, "POST", "/sim/drop-connections", NULL, body,
                                         strlen(body), &ans),
                     200);
    assert_int_equal(json_integer_value(json_object_get(ans, "dropped")), 0);
    json_decref(ans);
    body = "{\"code\":1006}";
    assert_int_equal(sim_control_request(&x->ctl, "POST", "/sim/drop-connections", NULL, body,
                                         strlen(body), &ans),
                     400);
    json_decref(ans);
    /* GET /sim/subscriptions names each subscription's connection; that one alone drops */
    monitor(x, B1, "1", "call_state/+/+");
    assert_int_equal(sim_control_request(&x->ctl, "GET", "/sim/subscriptions", NULL, NULL, 0, &ans),
                     200);
    assert_int_equal(json_integer_value(json_object_get(ans, "count")), 1);
    const json_t *sub = json_array_get(json_object_get(ans, "subscriptions"), 0);
    assert_string_equal(json_string_value(json_object_get(sub, "topic")), "call_state/+/+");
    assert_string_equal(json_string_value(json_object_get(sub, "connection_id")), x->c1->id);
    char one[120];
    snprintf(one, sizeof one, "{\"connection_id\":\"%s\"}", x->c1->id);
    json_decref(ans);
    int dropped = x->f1.dropped;
    assert_int_equal(
        sim_control_request(&x->ctl, "POST", "/sim/drop-connections", NULL, one, strlen(one), &ans),
        200);
    assert_int_equal(json_integer_value(json_object_get(ans, "dropped")), 1);
    json_decref(ans);
    assert_int_equal(x->f1.dropped, dropped + 1);
    const char *bad[] = {"{\"connection_id\":\"nope\"}", "{\"connection_id\":1}",
                         "{\"connection_id\":\"a\",\"client_id\":\"kd-dev\"}"};
    const long want[] = {200, 400, 400}; /* an unknown id drops nothing */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sim_control_request(&x->ctl, "POST", "/sim/drop-connections", NULL, bad[i],
                                             strlen(bad[i]), &ans),
                         want[i]);
        if (i == 0)
            assert_int_equal(json_integer_value(json_object_get(ans, "dropped")), 0);
        json_decref(ans);
    }
    assert_int_equal(
        sim_control_request(&x->ctl, "POST", "/sim/subscriptions", NULL, NULL, 0, &ans), 405);
    json_decref(ans);

    /* ws-inject: a transport without WebSocket faults (this fake) is not counted; every
     * malformed body is refused whole (test_worker_kone_ws_sim.c drives the real one) */
    body = "{\"hex\":\"8900\",\"fragment\":7}";
    assert_int_equal(
        sim_control_request(&x->ctl, "POST", "/sim/ws-inject", NULL, body, strlen(body), &ans),
        200);
    assert_int_equal(json_integer_value(json_object_get(ans, "connections")), 0);
    json_decref(ans);
    const char *bad_inj[] = {"{\"code\":1}",
                             "{\"client_id\":1}",
                             "{\"hex\":\"890\"}",
                             "{\"hex\":\"8g00\"}",
                             "{\"hex\":5}",
                             "{\"fragment\":-1}",
                             "[1"};
    for (size_t i = 0; i < sizeof bad_inj / sizeof bad_inj[0]; i++) {
        assert_int_equal(sim_control_request(&x->ctl, "POST", "/sim/ws-inject", NULL, bad_inj[i],
                                             strlen(bad_inj[i]), &ans),
                         400);
        json_decref(ans);
    }
}

static void test_token_faults(void **state)
{
    fx *x = *state;
    apply(x, "{\"token_ttl_s\":5}");
    assert_int_equal(token_ttl(x), 5);
    apply(x, "{\"token_ttl_s\":0}");
    assert_int_equal(token_ttl(x), 3600);
    apply(x, "{\"token_down\":true,\"refuse_upgrades\":503}");
    assert_int_equal(x->h->faults.token_down, 503);
    assert_int_equal(x->h->faults.refuse_upgrades, 503);
}

/* ---- the endpoint ---- */

static void test_endpoint(void **state)
{
    fx *x = *state;
    json_t *ans;
    assert_int_equal(sim_control_request(&x->ctl, "GET", "/sim/faults", NULL, NULL, 0, &ans), 200);
    assert_int_equal(json_integer_value(json_object_get(ans, "latency_ms")), 0);
    json_decref(ans);

    const char *body = "{\"latency_ms\":50,\"buildings\":{\"" B1 "\":{\"mode\":\"OSS\"}}}";
    assert_int_equal(
        sim_control_request(&x->ctl, "POST", "/sim/faults", NULL, body, strlen(body), &ans), 200);
    assert_int_equal(json_integer_value(json_object_get(ans, "latency_ms")), 50);
    json_decref(ans);
    assert_int_equal(x->w.b[0]->groups[1].faults.mode, SIM_MODE_OSS);

    /* errors: 400 and nothing changed */
    const char *bad[] = {"", "nope", "[1]", "{\"latency_ms\":10,\"mode\":\"OSS\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(
            sim_control_request(&x->ctl, "POST", "/sim/faults", NULL, bad[i], strlen(bad[i]), &ans),
            400);
        assert_non_null(str(ans, "message"));
        json_decref(ans);
    }
    assert_int_equal(x->h->faults.latency_ms, 50);

    /* reset: back to the buildings file, whatever was injected */
    assert_int_equal(sim_control_request(&x->ctl, "POST", "/sim/faults/reset", NULL, NULL, 0, &ans),
                     200);
    json_decref(ans);
    assert_int_equal(x->h->faults.latency_ms, 0);
    assert_int_equal(x->w.b[0]->groups[1].faults.mode, SIM_MODE_NOR);
    assert_int_equal(x->w.b[1]->groups[0].faults.mode, SIM_MODE_OSS);
    assert_true(x->w.b[1]->groups[1].faults.link_down);
    assert_true(sim_faults_locked(&x->w.b[0]->groups[0].faults, 9000));

    assert_int_equal(sim_control_request(&x->ctl, "GET", "/sim/other", NULL, NULL, 0, &ans), 404);
    json_decref(ans);
    assert_int_equal(sim_control_request(&x->ctl, "DELETE", "/sim/faults", NULL, NULL, 0, &ans),
                     405);
    json_decref(ans);
    assert_int_equal(sim_control_request(&x->ctl, "GET", "/sim/faults/reset", NULL, NULL, 0, &ans),
                     405);
    json_decref(ans);
}

static void test_endpoint_token(void **state)
{
    fx *x = *state;
    json_t *ans;
    assert_int_equal(sim_control_request(&x->ctl, "GET", "/sim/faults", NULL, NULL, 0, &ans), 401);
    json_decref(ans);
    assert_int_equal(
        sim_control_request(&x->ctl, "GET", "/sim/faults", "Bearer wrong", NULL, 0, &ans), 401);
    json_decref(ans);
    assert_int_equal(sim_control_request(&x->ctl, "GET", "/sim/faults",
                                         "Bearer s3cret-control-and-more", NULL, 0, &ans),
                     401);
    json_decref(ans);
    assert_int_equal(
        sim_control_request(&x->ctl, "GET", "/sim/faults", "Bearer s3cret-control", NULL, 0, &ans),
        200);
    json_decref(ans);
}

static void test_start_spec(void **state)
{
    fx *x = *state;
    char msg[300];
    assert_int_equal(
        sim_control_apply_text(&x->ctl, "{latency_ms:1}", "sim.faults", msg, sizeof msg), -1);
    assert_non_null(strstr(msg, "not JSON"));
    assert_int_equal(sim_control_apply_text(&x->ctl, "{\"latency_ms\":1,\"latency_ms\":2}",
                                            "sim.faults", msg, sizeof msg),
                     -1);
    assert_int_equal(
        sim_control_apply_text(&x->ctl, "{\"jitter_ms\":3}", "sim.faults", msg, sizeof msg), 0);
    assert_int_equal(x->h->faults.jitter_ms, 3);
}

/* monitor_error: site-monitoring requests answered with a status (global only); its merge,
 * its refusals, GET's JSON, the log's diff and the decision. */
static void test_monitor_error(void **state)
{
    fx *x = *state;
    sim_fault_state *s = fresh_state(&x->w), *before = fresh_state(&x->w);
    char msg[300] = "";
    assert_int_equal(sim_fault_monitor_status(&s->global, 0.0), 0); /* off by default */
    assert_int_equal(
        merge_text(s, &x->w, "{\"monitor_error\":{\"share\":1,\"status\":403}}", msg, sizeof msg),
        0);
    assert_true(s->global.monitor_share == 1);
    assert_int_equal(s->global.monitor_status, 403);
    assert_true(s->global.error_share == 0); /* calls untouched */
    assert_int_equal(sim_fault_monitor_status(&s->global, 0.99), 403);
    json_t *j = sim_fault_state_json(s, &x->w);
    assert_non_null(j);
    const json_t *m = json_object_get(j, "monitor_error");
    assert_int_equal(json_integer_value(json_object_get(m, "status")), 403);
    json_decref(j);
    lines l = {0};
    assert_int_equal(sim_fault_diff(before, s, &x->w, collect, &l), 1);
    assert_non_null(strstr(l.text[0], "monitor_error"));
    assert_non_null(strstr(l.text[0], "status 403"));
    assert_int_equal(merge_text(s, &x->w, "{\"monitor_error\":{\"share\":2}}", msg, sizeof msg),
                     -1);
    assert_non_null(strstr(msg, "monitor_error.share"));
    assert_int_equal(merge_text(s, &x->w, "{\"monitor_error\":5}", msg, sizeof msg), -1);
    assert_non_null(strstr(msg, "monitor_error"));
    assert_int_equal(merge_text(s, &x->w, "{\"monitor_error\":null}", msg, sizeof msg), 0);
    assert_int_equal(sim_fault_monitor_status(&s->global, 0.0), 0);
    free(before);
    free(s);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_merge_global_and_groups),
        T(test_merge_errors_change_nothing),
        T(test_locks),
        T(test_json_round_trip),
        T(test_diff_lines),
        T(test_call_status_share),
        T(test_delay),
        T(test_call_error_effect),
        T(test_latency_effect),
        T(test_mode_change),
        T(test_link_down_and_up),
        T(test_no_lift),
        T(test_locked_area),
        T(test_drops),
        T(test_token_faults),
        T(test_endpoint),
        cmocka_unit_test_setup_teardown(test_endpoint_token, setup_token, teardown),
        T(test_start_spec),
        T(test_monitor_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
