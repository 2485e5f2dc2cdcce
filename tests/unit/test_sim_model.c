/* test_sim_model: kone-sim's lift model on a fake clock, with the default buildings file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "building.h"
#include "model.h"
#include "proto.h"

#define MAX_EV 512

typedef struct ev {
    int64_t sid;
    sim_call_state state;
    int64_t at;
    char reason[48];
} ev;

typedef struct fx {
    sim_world w;
    sim_model *m;
    ev ev[MAX_EV];
    size_t n;
    int doors_opened;
} fx;

static void on_call(void *arg, const sim_call *c, int64_t now)
{
    fx *f = arg;
    if (f->n < MAX_EV) {
        f->ev[f->n] = (ev){c->session_id, c->state, now, ""};
        snprintf(f->ev[f->n].reason, sizeof f->ev[f->n].reason, "%s", c->cancel_reason);
        f->n++;
    }
}

static void on_door(void *arg, const sim_lift_state *ls, int side, const char *st, int64_t now)
{
    (void)ls, (void)side, (void)now;
    fx *f = arg;
    if (strcmp(st, "OPENED") == 0)
        f->doors_opened++;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    const char *src = getenv("KD_SRC_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/sim/buildings.json", src ? src : ".");
    kd_err err = {0};
    if (sim_world_load(&f->w, path, &err))
        fail_msg("%s", err.msg);
    sim_model_sink sink = {.call_state = on_call, .door = on_door, .arg = f};
    assert_int_equal(sim_model_create(&f->m, &f->w, &sink), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sim_model_free(f->m);
    sim_world_free(&f->w);
    free(f);
    return 0;
}

static sim_call_req dest_call(int b, int g, int64_t src, int64_t dst)
{
    sim_call_req r = {.b = b,
                      .g = g,
                      .src_area = src,
                      .dst_area = dst,
                      .action = 2,
                      .terminal = 1,
                      .group_size = 1};
    return r;
}

/* States seen for one session id, in order. */
static size_t states_of(const fx *f, int64_t sid, sim_call_state *out, int64_t *at, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < f->n && n < max; i++)
        if (f->ev[i].sid == sid) {
            if (at)
                at[n] = f->ev[i].at;
            out[n++] = f->ev[i].state;
        }
    return n;
}

static void run_to(fx *f, int64_t until, int64_t step)
{
    for (int64_t t = sim_model_now(f->m) + step; t <= until; t += step)
        sim_model_advance(f->m, t);
}

static void check_full_life(fx *f, int64_t step)
{
    sim_call_req r = dest_call(0, 0, 3000, 5000);
    int64_t sid = sim_model_add_call(f->m, &r);
    assert_true(sid > 0);
    assert_int_equal(f->n, 0); /* announced only on flush/advance */
    sim_model_flush(f->m);
    run_to(f, 60000, step);
    sim_call_state st[8];
    int64_t at[8];
    size_t n = states_of(f, sid, st, at, 8);
    assert_int_equal(n, 4);
    assert_int_equal(st[0], SIM_CALL_BEING_ALLOCATED);
    assert_int_equal(st[1], SIM_CALL_BEING_SERVED);
    assert_int_equal(st[2], SIM_CALL_SERVED_SOON);
    assert_int_equal(st[3], SIM_CALL_SERVED);
    const sim_call *c = sim_model_call(f->m, sid);
    assert_non_null(c);
    /* lift_1 waits at floor 1, lift_2 at floor 11: floor 3 is nearer to lift_1 */
    assert_int_equal(c->lift, 0);
    /* allocated at 300 ms; two floors of 2 s: at floor 3 at 4300, doors open 1 s later */
    assert_int_equal(at[1], 300);
    assert_int_equal(c->eta_ms, 4300);
    assert_int_equal(at[3], 5300);
    assert_false(c->boarded);
    const sim_lift_state *ls = sim_model_lift(f->m, 0, 0, 0);
    assert_int_equal(f->w.b[0]->floors[ls->pos].id, 5); /* rode to the destination */
    for (size_t i = 0; i < f->w.b[0]->n_floors; i++) {
        assert_int_equal(ls->pick[i], 0);
        assert_int_equal(ls->drop[i], 0);
    }
    assert_int_equal(ls->phase, SIM_PHASE_IDLE);
}

static void test_call_to_served_fine_steps(void **state)
{
    check_full_life(*state, 50);
}

static void test_call_to_served_one_step(void **state)
{
    check_full_life(*state, 60000); /* same events however coarse the clock */
}

static void test_transfer_call(void **state)
{
    fx *f = *state;
    const sim_building *b = f->w.b[0];
    sim_call_decision d;
    json_t *p = json_pack("{s:i,s:i,s:{s:i,s:i}}", "request_id", 1, "area", 3000, "call", "action",
                          2, "destination", 15000);
    sim_proto_check_call(b, 0, 0, p, &d);
    json_decref(p);
    assert_int_equal(d.verdict, SIM_CALL_ACCEPTED);
    assert_int_equal(d.req.mod_dst, 11000);
    assert_string_equal(d.req.mod_reason, "AutomaticTransfer");
    int64_t sid = sim_model_add_call(f->m, &d.req);
    sim_model_flush(f->m);
    run_to(f, 120000, 100);
    const sim_call *c = sim_model_call(f->m, sid);
    assert_int_equal(c->state, SIM_CALL_SERVED);
    assert_int_equal(c->mod_dst, 11000);
    assert_int_equal(sim_call_dropoff_area(c), 11000);
    const sim_lift_state *ls = sim_model_lift(f->m, 0, 0, c->lift);
    assert_int_equal(b->floors[ls->pos].id, 11); /* left at the transfer floor */

    /* the other way round, group 2's transfer is manual */
    p = json_pack("{s:i,s:i,s:{s:i,s:i}}", "request_id", 2, "area", 15000, "call", "action", 2,
                  "destination", 5000);
    sim_proto_check_call(b, 0, 1, p, &d);
    json_decref(p);
    assert_int_equal(d.verdict, SIM_CALL_ACCEPTED);
    assert_int_equal(d.req.mod_dst, 11000);
    assert_string_equal(d.req.mod_reason, "ManualTransfer");
}

static void test_no_lift_available(void **state)
{
    fx *f = *state;
    /* lift_4 (deck 1002020) does not serve floor 18 */
    sim_call_req r = dest_call(0, 1, 1000, 18000);
    r.n_allowed = 1;
    r.allowed[0] = 1002020;
    int64_t sid = sim_model_add_call(f->m, &r);
    run_to(f, 2000, 100);
    const sim_call *c = sim_model_call(f->m, sid);
    assert_int_equal(c->state, SIM_CALL_CANCELLED);
    assert_string_equal(c->cancel_reason, "NO_LIFT_AVAILABLE");
    /* allowed lift that does serve it */
    r.allowed[0] = 1002010;
    sid = sim_model_add_call(f->m, &r);
    run_to(f, 4000, 100);
    assert_int_not_equal(sim_model_call(f->m, sid)->state, SIM_CALL_CANCELLED);
    assert_int_equal(sim_model_call(f->m, sid)->lift, 0);
}

static void test_same_floor_cancelled(void **state)
{
    fx *f = *state;
    sim_call_req r = dest_call(0, 0, 1000, 1010);
    r.cancel_reason = "SAME_SOURCE_AND_DEST_FLOOR";
    int64_t sid = sim_model_add_call(f->m, &r);
    sim_model_flush(f->m);
    assert_int_equal(f->n, 1);
    assert_int_equal(f->ev[0].state, SIM_CALL_CANCELLED);
    assert_string_equal(f->ev[0].reason, "SAME_SOURCE_AND_DEST_FLOOR");
    assert_int_equal(f->ev[0].sid, sid);
}

static void test_delete(void **state)
{
    fx *f = *state;
    sim_call_req r = dest_call(0, 0, 8000, 2000);
    int64_t sid = sim_model_add_call(f->m, &r);
    run_to(f, 1000, 100);
    assert_int_equal(sim_model_call(f->m, sid)->state, SIM_CALL_BEING_SERVED);
    assert_int_equal(sim_model_delete_call(f->m, sid, "CALL_DELETED"), 0);
    const sim_call *c = sim_model_call(f->m, sid);
    assert_int_equal(c->state, SIM_CALL_CANCELLED);
    assert_string_equal(c->cancel_reason, "CALL_DELETED");
    assert_int_equal(sim_model_delete_call(f->m, sid, "CALL_DELETED"), 409);
    assert_int_equal(sim_model_delete_call(f->m, 999999, "CALL_DELETED"), 404);
    run_to(f, 60000, 500);
    for (int l = 0; l < 2; l++) { /* the lift lost its pickup and went idle */
        const sim_lift_state *ls = sim_model_lift(f->m, 0, 0, l);
        assert_int_equal(ls->pick[7], 0);
        assert_int_equal(ls->phase, SIM_PHASE_IDLE);
    }
    /* served calls are not cancellable */
    sid = sim_model_add_call(
        f->m, &(sim_call_req){.b = 0, .g = 0, .src_area = 2000, .dst_area = 3000, .action = 2});
    run_to(f, 120000, 500);
    assert_int_equal(sim_model_call(f->m, sid)->state, SIM_CALL_SERVED);
    assert_int_equal(sim_model_delete_call(f->m, sid, "CALL_DELETED"), 409);
}

static void test_landing_call_and_rear_door(void **state)
{
    fx *f = *state;
    sim_call_req r = {.b = 0, .g = 0, .src_area = 6000, .dir = -1, .action = 2002};
    int64_t sid = sim_model_add_call(f->m, &r);
    run_to(f, 60000, 250);
    assert_int_equal(sim_model_call(f->m, sid)->state, SIM_CALL_SERVED);
    /* a call from the rear lobby door needs a lift with rear doors: group 1 has them */
    sid = sim_model_add_call(
        f->m, &(sim_call_req){.b = 0, .g = 0, .src_area = 1010, .dst_area = 4000, .action = 2});
    run_to(f, 120000, 250);
    assert_int_equal(sim_model_call(f->m, sid)->state, SIM_CALL_SERVED);
}

static void test_hold_open_and_retention(void **state)
{
    fx *f = *state;
    /* lift_1 stands at floor 1 (index 0): hold its doors 10 s */
    assert_int_equal(sim_model_hold_open(f->m, 0, 0, 0, 0, 1, 10000), 0);
    run_to(f, 5000, 100);
    const sim_lift_state *ls = sim_model_lift(f->m, 0, 0, 0);
    assert_int_equal(ls->phase, SIM_PHASE_OPEN); /* 1 s opening + 2 s + 10 s held */
    run_to(f, 20000, 100);
    assert_int_equal(ls->phase, SIM_PHASE_IDLE);
    assert_int_equal(f->doors_opened, 1);
    assert_int_equal(sim_model_hold_open(f->m, 0, 0, 9, 0, 1, 1000), -1);

    sim_model_set_retain(f->m, 10000);
    int64_t sid = sim_model_add_call(
        f->m,
        &(sim_call_req){
            .b = 0, .g = 0, .src_area = 1000, .dst_area = 1010, .action = 2, .cancel_reason = "X"});
    run_to(f, 25000, 1000);
    assert_non_null(sim_model_call(f->m, sid));
    run_to(f, 40000, 1000);
    assert_null(sim_model_call(f->m, sid));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_call_to_served_fine_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_to_served_one_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transfer_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_lift_available, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_floor_cancelled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_landing_call_and_rear_door, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_open_and_retention, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
