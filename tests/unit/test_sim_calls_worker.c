/* test_sim_calls_worker: a job's media_id reaches kone-sim's call log, through the worker's
 * own frames.
 *
 * Tests count calls per job by setting a job's media_id to its job id (docs/kone-sim.md,
 * "Counting calls per job"). This follows that id the whole way without brokers: a job line
 * as kone-producer reads it (kd_job_from_json), encoded to the msgpack body and decoded as
 * the worker decodes a delivery (kd_job_encode, kd_job_decode), turned into the KONE frame
 * by the worker's own builder (worker/kone_msg.c: kd_kone_msg_job), handed to kone-sim's
 * request layer, and read back from GET /sim/calls: payload.media_id and the entry's
 * media_id are the job id, and a cancel job's delete names the call's session_id.
 *
 * Test programs named test_sim_* link kone-sim's modules only (CMakeLists.txt), so the
 * worker's two pure frame modules are compiled into this file by inclusion; they depend on
 * nothing else of the worker.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../worker/kone_jview.c"
#include "../../worker/kone_jw.c"
#include "../../worker/kone_msg.c"

#include "auth.h"
#include "building.h"
#include "control.h"
#include "hub.h"
#include "kd_job.h"
#include "proto.h"

#define DEV "Basic a2QtZGV2OmtkLWRldi1zZWNyZXQtY2hhbmdlLW1l" /* kd-dev */

typedef struct fake {
    json_t *last[4];
    size_t n;
} fake;

static int fake_send(void *t, const char *text, size_t len)
{
    fake *f = t;
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je);
    assert_non_null(o);
    if (f->n < 4)
        f->last[f->n++] = o;
    else
        json_decref(o);
    return 0;
}

static void fake_close(void *t, int code, const char *reason)
{
    (void)t, (void)code, (void)reason;
}

static const sim_conn_ops fake_ops = {fake_send, fake_close, NULL, NULL};

static void clear(fake *f)
{
    for (size_t i = 0; i < f->n; i++)
        json_decref(f->last[i]);
    f->n = 0;
}

typedef struct fx {
    sim_world w;
    sim_auth a;
    sim_hub *h;
    sim_control ctl;
    fake f;
    sim_conn *c;
} fx;

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
    assert_int_equal(sim_control_init(&x->ctl, x->h, 3600, NULL), 0);
    json_t *ans;
    const char *body = "grant_type=client_credentials";
    assert_int_equal(sim_auth_token_request(&x->a, DEV, body, strlen(body), 0, &ans), 200);
    const sim_token *t =
        sim_auth_lookup(&x->a, json_string_value(json_object_get(ans, "access_token")), 1);
    json_decref(ans);
    x->c = sim_hub_conn_open(x->h, t, &fake_ops, &x->f);
    assert_non_null(x->c);
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    fx *x = *state;
    clear(&x->f);
    sim_control_free(&x->ctl);
    sim_hub_free(x->h);
    sim_auth_free(&x->a);
    sim_world_free(&x->w);
    free(x);
    return 0;
}

/* A job line as kone-producer reads it, through msgpack and back as the worker gets it. */
static void job_from_line(const char *line, kd_job *job)
{
    json_error_t je;
    json_t *o = json_loads(line, 0, &je);
    assert_non_null(o);
    kd_job in;
    kd_err err = {0};
    if (kd_job_from_json(o, 1700000000000, 60000, &in, &err))
        fail_msg("job line: %s", err.msg);
    json_decref(o);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (kd_job_encode(&in, &sb, &err))
        fail_msg("encode: %s", err.msg);
    if (kd_job_decode(sb.data, sb.size, 60000, job, &err))
        fail_msg("decode: %s", err.msg);
    msgpack_sbuffer_destroy(&sb);
}

/* Sends the worker's frame for the job; returns the answer frames. */
static fake *send_job(fx *x, const kd_job *job, int64_t request_id)
{
    kd_err err = {0};
    char *frame = kd_kone_msg_job(job, request_id, 1700000000000000LL, &err);
    if (!frame)
        fail_msg("kd_kone_msg_job: %s", err.msg);
    clear(&x->f);
    sim_proto_handle(x->h, x->c, frame, strlen(frame));
    free(frame);
    return &x->f;
}

static json_t *calls(fx *x)
{
    json_t *ans = NULL;
    assert_int_equal(sim_control_request(&x->ctl, "GET", "/sim/calls", NULL, NULL, 0, &ans), 200);
    return ans;
}

static void test_media_id_is_the_job_id(void **state)
{
    fx *x = *state;
    kd_job job;
    job_from_line("{\"v\":1,\"job_id\":\"it-calls-1700-42:job.7\",\"op\":\"call\","
                  "\"building_id\":\"building:9990000951\",\"area\":1000,\"action\":2,"
                  "\"destination\":5000,\"media_id\":\"it-calls-1700-42:job.7\"}",
                  &job);
    assert_string_equal(job.media_id, job.job_id);
    fake *f = send_job(x, &job, 1);
    assert_true(f->n >= 2);
    int64_t sid =
        json_integer_value(json_object_get(json_object_get(f->last[1], "data"), "session_id"));
    assert_true(sid > 0);

    /* the cancel of that call, as the worker sends it */
    job_from_line("{\"v\":1,\"job_id\":\"it-calls-1700-42:cancel.7\",\"op\":\"cancel\","
                  "\"building_id\":\"building:9990000951\",\"session_id\":1}",
                  &job);
    job.session_id = sid;
    send_job(x, &job, 2);

    /* a job without media_id: the entry says null */
    job_from_line("{\"v\":1,\"job_id\":\"no-media\",\"op\":\"call\","
                  "\"building_id\":\"building:9990000951\",\"area\":1000,\"action\":2,"
                  "\"destination\":3000,\"media_id\":\"\"}",
                  &job);
    send_job(x, &job, 3);

    json_t *ans = calls(x);
    const json_t *list = json_object_get(ans, "calls");
    assert_int_equal(json_array_size(list), 3);
    const json_t *e = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(e, "call_type")), "action");
    assert_string_equal(json_string_value(json_object_get(e, "media_id")),
                        "it-calls-1700-42:job.7");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(e, "payload"), "media_id")),
        "it-calls-1700-42:job.7");
    assert_int_equal(json_integer_value(json_object_get(e, "session_id")), sid);
    assert_int_equal(json_integer_value(json_object_get(e, "request_id")), 1);
    e = json_array_get(list, 1);
    assert_string_equal(json_string_value(json_object_get(e, "call_type")), "delete");
    assert_int_equal(json_integer_value(json_object_get(e, "status")), 202);
    assert_int_equal(json_integer_value(json_object_get(e, "session_id")), sid);
    assert_true(json_is_true(json_object_get(e, "cancelled")));
    e = json_array_get(list, 2);
    assert_true(json_is_null(json_object_get(e, "media_id")));
    assert_null(json_object_get(json_object_get(e, "payload"), "media_id"));
    json_decref(ans);

    /* the per-job filter tests use */
    ans = NULL;
    assert_int_equal(sim_control_request(&x->ctl, "GET",
                                         "/sim/calls?call_type=action&media_id_prefix=it-calls-",
                                         NULL, NULL, 0, &ans),
                     200);
    assert_int_equal(json_integer_value(json_object_get(ans, "count")), 1);
    json_decref(ans);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_media_id_is_the_job_id, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
