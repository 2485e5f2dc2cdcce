/* Unit tests for worker/kone_timer.c, the KONE loop's timer heap, run by kk_timers_run with
 * no libwebsockets context:
 *   - timers fire once each, earliest first, equal deadlines in the order they were set, and
 *     only those due;
 *   - a random mix of 20,000 sets, moves, cancels and runs, checked step by step against a
 *     plain list of what is set (the model): what fires and the next deadline returned;
 *   - a callback that sets timers (itself again, for a time already past, or another one) does
 *     not hold the run: they wait for the next one;
 *   - after kk_timers_stop, timers freed in any order and cancelled first (as the client comes
 *     down) never read the heap: AddressSanitizer's build catches a read of a freed one;
 *   - a real libwebsockets context fires a timer from its loop, also after a later deadline
 *     replaced the one the loop was armed for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "kd_time.h"
#include "kone_timer.h"
#include "test_xorshift.h"

#define N 400

typedef struct {
    kk_tmr t;
    int id;
} item;

static int fired[N * 4], n_fired;

static void on_fire(kk_tmr *t)
{
    fired[n_fired++] = ((item *)t)->id;
}

static void test_order_and_ties(void **state)
{
    (void)state;
    kk_timers ts;
    kk_timers_init(&ts, NULL);
    item it[6];
    /* deadlines 30 10 20 10 30 5: fire 5, then the 10s in order set, the 20, the 30s */
    const int64_t at[6] = {30, 10, 20, 10, 30, 5};
    for (int i = 0; i < 6; i++) {
        memset(&it[i], 0, sizeof it[i]);
        it[i].id = i;
        kk_tmr_at(&ts, &it[i].t, on_fire, at[i]);
        assert_true(kk_tmr_is_set(&it[i].t));
    }
    n_fired = 0;
    assert_int_equal(kk_timers_run(&ts, 4), 5); /* nothing due yet */
    assert_int_equal(n_fired, 0);
    assert_int_equal(kk_timers_run(&ts, 10), 20);
    assert_int_equal(n_fired, 3);
    assert_int_equal(fired[0], 5);
    assert_int_equal(fired[1], 1);
    assert_int_equal(fired[2], 3);
    assert_false(kk_tmr_is_set(&it[1].t));
    assert_int_equal(kk_timers_run(&ts, 100), 0);
    assert_int_equal(n_fired, 6);
    assert_int_equal(fired[3], 2);
    assert_int_equal(fired[4], 0);
    assert_int_equal(fired[5], 4);
    assert_int_equal(ts.n, 0);
    assert_int_equal(kk_timers_run(&ts, 1000), 0); /* each fired once */
    assert_int_equal(n_fired, 6);
    /* a timer set again moves (not twice in the heap); a cancelled one never fires */
    kk_tmr_at(&ts, &it[0].t, on_fire, 50);
    kk_tmr_at(&ts, &it[0].t, on_fire, 40);
    kk_tmr_at(&ts, &it[1].t, on_fire, 45);
    kk_tmr_cancel(&it[1].t);
    kk_tmr_cancel(&it[1].t); /* twice: nothing */
    assert_int_equal(ts.n, 1);
    assert_int_equal(kk_timers_run(&ts, 100), 0);
    assert_int_equal(n_fired, 7);
    assert_int_equal(fired[6], 0);
}

/* the model: what is set, with its deadline and the order set */
static struct {
    bool set;
    int64_t at;
    uint64_t seq;
} model[N];

static void test_against_model(void **state)
{
    (void)state;
    xs = 0x9e3779b97f4a7c15ULL;
    kk_timers ts;
    kk_timers_init(&ts, NULL);
    static item it[N];
    memset(it, 0, sizeof it);
    memset(model, 0, sizeof model);
    for (int i = 0; i < N; i++)
        it[i].id = i;
    uint64_t seq = 0;
    int64_t now = 0;
    for (int step = 0; step < 20000; step++) {
        int i = (int)(xorshift() % N);
        unsigned op = (unsigned)(xorshift() % 10);
        if (op < 5) { /* set or move */
            int64_t at = now + (int64_t)(xorshift() % 1000);
            kk_tmr_at(&ts, &it[i].t, on_fire, at);
            model[i].set = true;
            model[i].at = at;
            model[i].seq = seq++;
        } else if (op < 8) {
            kk_tmr_cancel(&it[i].t);
            model[i].set = false;
        } else {
            now += (int64_t)(xorshift() % 300);
            /* the model's order: every set timer due by now, by (at, seq) */
            int want[N], nw = 0;
            for (int j = 0; j < N; j++)
                if (model[j].set && model[j].at <= now)
                    want[nw++] = j;
            for (int a = 1; a < nw; a++) /* insertion sort by (at, seq) */
                for (int b = a; b > 0; b--) {
                    int x = want[b - 1], y = want[b];
                    if (model[x].at < model[y].at ||
                        (model[x].at == model[y].at && model[x].seq < model[y].seq))
                        break;
                    want[b - 1] = y;
                    want[b] = x;
                }
            n_fired = 0;
            int64_t next = kk_timers_run(&ts, now);
            assert_int_equal(n_fired, nw);
            for (int k = 0; k < nw; k++) {
                assert_int_equal(fired[k], want[k]);
                model[want[k]].set = false;
            }
            int64_t mnext = 0;
            size_t left = 0;
            for (int j = 0; j < N; j++)
                if (model[j].set) {
                    left++;
                    if (!mnext || model[j].at < mnext)
                        mnext = model[j].at;
                }
            assert_int_equal(next, mnext);
            assert_int_equal(ts.n, left);
        }
        for (int j = 0; j < N; j++)
            assert_int_equal(kk_tmr_is_set(&it[j].t), model[j].set);
    }
}

static kk_timers *g_ts;
static item g_other;
static int self_fires;

static void rearm_self(kk_tmr *t)
{
    self_fires++;
    kk_tmr_at(g_ts, t, rearm_self, 0); /* itself, for a time long past */
    if (self_fires == 1)
        kk_tmr_at(g_ts, &g_other.t, on_fire, 0); /* and, the first time, another due too */
}

static void test_callback_sets_timers(void **state)
{
    (void)state;
    kk_timers ts;
    kk_timers_init(&ts, NULL);
    g_ts = &ts;
    item me = {.id = 1};
    memset(&g_other, 0, sizeof g_other);
    g_other.id = 2;
    self_fires = n_fired = 0;
    kk_tmr_at(&ts, &me.t, rearm_self, 10);
    /* one run fires it once: what it set waits for the next run, which it reports as due */
    assert_int_equal(kk_timers_run(&ts, 100), 0);
    assert_int_equal(self_fires, 1);
    assert_int_equal(n_fired, 0);
    assert_int_equal(ts.n, 2);
    assert_int_equal(kk_timers_run(&ts, 100), 0);
    assert_int_equal(self_fires, 2);
    assert_int_equal(n_fired, 1);
    kk_tmr_cancel(&me.t);
    kk_tmr_cancel(&g_other.t);
    assert_int_equal(ts.n, 0);
}

static void test_stop_then_free_in_any_order(void **state)
{
    (void)state;
    xs = 12345;
    kk_timers ts;
    kk_timers_init(&ts, NULL);
    item *it[64];
    for (int i = 0; i < 64; i++) {
        it[i] = calloc(1, sizeof *it[i]);
        assert_non_null(it[i]);
        kk_tmr_at(&ts, &it[i]->t, on_fire, (int64_t)(xorshift() % 50));
    }
    n_fired = 0;
    kk_timers_run(&ts, 10); /* a few fired: the heap has its shape of after a removal */
    kk_timers_stop(&ts);
    for (int i = 63; i >= 0; i -= 2) { /* every other one, the last first */
        kk_tmr_cancel(&it[i]->t);
        assert_false(kk_tmr_is_set(&it[i]->t));
        free(it[i]);
    }
    for (int i = 0; i < 64; i += 2) {
        kk_tmr_cancel(&it[i]->t);
        free(it[i]);
    }
    item late = {.id = 9};
    kk_tmr_at(&ts, &late.t, on_fire, 1); /* stopped: not kept, never fires */
    assert_false(kk_tmr_is_set(&late.t));
    int before = n_fired;
    assert_int_equal(kk_timers_run(&ts, 1000), 0);
    assert_int_equal(n_fired, before);
}

static int lws_fired;
static struct lws_context *lws_ctx;

static void on_lws_fire(kk_tmr *t)
{
    (void)t;
    lws_fired++;
    /* with no timer left, the lws_service that fired it would wait out lws's 30 s poll */
    lws_cancel_service(lws_ctx);
}

static void test_fires_from_the_lws_loop(void **state)
{
    (void)state;
    lws_set_log_level(0, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    struct lws_context *ctx = lws_ctx = lws_create_context(&info);
    assert_non_null(ctx);
    kk_timers ts;
    kk_timers_init(&ts, ctx);
    item a = {.id = 1}, b = {.id = 2};
    /* armed for 5 ms, then that timer moved to 60 ms and another set for 20 ms: the loop,
     * armed early, fires b at 20 ms and a at 60 ms, each once */
    kk_tmr_in(&ts, &a.t, on_lws_fire, 5000);
    kk_tmr_in(&ts, &a.t, on_lws_fire, 60000);
    int64_t t0 = kd_mono_us();
    kk_tmr_in(&ts, &b.t, on_lws_fire, 20000);
    lws_fired = 0;
    while (lws_fired < 2 && kd_mono_us() - t0 < 5000000)
        lws_service(ctx, 0);
    assert_int_equal(lws_fired, 2);
    assert_false(kk_tmr_is_set(&a.t));
    assert_false(kk_tmr_is_set(&b.t));
    assert_true(kd_mono_us() - t0 >= 60000);
    assert_true(kd_mono_us() - t0 < 5000000);
    kk_tmr_in(&ts, &a.t, on_lws_fire, 1000000); /* left set: stop cancels the loop's timer */
    kk_timers_stop(&ts);
    lws_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_ties),
        cmocka_unit_test(test_against_model),
        cmocka_unit_test(test_callback_sets_timers),
        cmocka_unit_test(test_stop_then_free_in_any_order),
        cmocka_unit_test(test_fires_from_the_lws_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
