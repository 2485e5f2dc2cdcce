/* Unit tests for worker/kone_ratelimit.c on a fake clock: the token math (burst, refill,
 * waits), no limit, the 429 decrease (halved, floored, once per gap, starting from the rate
 * actually sent when no limit is configured) and the additive recovery. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "kone_ratelimit.h"

#define MS 1000LL
#define SEC 1000000LL

static void near(double got, double want)
{
    if (fabs(got - want) > 1e-6)
        fail_msg("got %.9f, want %.9f", got, want);
}

static void test_burst_then_rate(void **state)
{
    (void)state;
    kd_rl r;
    int64_t now = 1000 * SEC;
    kd_rl_init(&r, 5, 5, now);
    for (int i = 0; i < 5; i++)
        assert_true(kd_rl_take(&r, now));
    assert_false(kd_rl_take(&r, now));
    /* one token every 200 ms */
    assert_int_equal(kd_rl_wait_us(&r, now), 200 * MS + 1);
    assert_false(kd_rl_take(&r, now + 199 * MS));
    assert_true(kd_rl_take(&r, now + 200 * MS + 1));
    assert_false(kd_rl_take(&r, now + 200 * MS + 1));
    /* 20 requests at 5/s with a burst of 5: 15 wait, the last one 3 s after the first */
    kd_rl_init(&r, 5, 5, now);
    int waited = 0;
    int64_t t = now;
    for (int i = 0; i < 20; i++) {
        if (!kd_rl_take(&r, t)) {
            waited++;
            t += kd_rl_wait_us(&r, t);
            assert_true(kd_rl_take(&r, t));
        }
    }
    assert_int_equal(waited, 15);
    assert_true(t - now >= 3 * SEC);
    assert_true(t - now <= 3 * SEC + 20);
    /* idle refills to the burst, not beyond */
    t += 60 * SEC;
    for (int i = 0; i < 5; i++)
        assert_true(kd_rl_take(&r, t));
    assert_false(kd_rl_take(&r, t));
}

static void test_default_burst(void **state)
{
    (void)state;
    kd_rl r;
    kd_rl_init(&r, 3, 0, 0); /* burst 0: one second's worth */
    for (int i = 0; i < 3; i++)
        assert_true(kd_rl_take(&r, 0));
    assert_false(kd_rl_take(&r, 0));
    kd_rl_init(&r, 0.5, 0, 0); /* but at least one */
    assert_true(kd_rl_take(&r, 0));
    assert_false(kd_rl_take(&r, 0));
    assert_int_equal(kd_rl_wait_us(&r, 0), 2 * SEC + 1);
}

static void test_unlimited(void **state)
{
    (void)state;
    kd_rl r;
    kd_rl_init(&r, 0, 0, 0);
    for (int i = 0; i < 100000; i++)
        assert_true(kd_rl_take(&r, i));
    assert_int_equal(kd_rl_wait_us(&r, 0), 0);
    near(kd_rl_rate(&r, 0), 0);
    assert_true(kd_rl_idle(&r, 0));
}

static void test_429_halves_and_recovers(void **state)
{
    (void)state;
    kd_rl r;
    int64_t now = 50 * SEC;
    kd_rl_init(&r, 8, 0, now);
    assert_true(kd_rl_idle(&r, now));
    assert_true(kd_rl_slow_down(&r, now));
    near(kd_rl_rate(&r, now), 4);
    assert_int_equal(r.slowdowns, 1);
    /* the bucket is emptied: the next request waits 1/rate */
    assert_false(kd_rl_take(&r, now));
    assert_int_equal(kd_rl_wait_us(&r, now), 250 * MS + 1);
    /* more 429s within a second (requests already in flight) count once */
    assert_false(kd_rl_slow_down(&r, now + 999 * MS));
    assert_int_equal(r.slowdowns, 1);
    /* additive recovery: max(0.5, 8/20) = 0.5 per second */
    near(kd_rl_rate(&r, now + 2 * SEC), 5);
    assert_false(kd_rl_idle(&r, now + 2 * SEC));
    /* a second 429 a second later: halved again, from the recovered rate */
    assert_true(kd_rl_slow_down(&r, now + 1 * SEC));
    near(kd_rl_rate(&r, now + 1 * SEC), 2.25);
    /* floor: never below 1/s */
    for (int i = 2; i < 10; i++)
        kd_rl_slow_down(&r, now + i * SEC);
    near(kd_rl_rate(&r, now + 9 * SEC), 1);
    /* back to the limit in (8 - 1) / 0.5 = 14 s, and no further */
    near(kd_rl_rate(&r, now + 9 * SEC + 7 * SEC), 4.5);
    near(kd_rl_rate(&r, now + 9 * SEC + 14 * SEC), 8);
    near(kd_rl_rate(&r, now + 9 * SEC + 100 * SEC), 8);
    assert_true(kd_rl_idle(&r, now + 9 * SEC + 100 * SEC));
}

static void test_429_tokens_follow_rate(void **state)
{
    (void)state;
    kd_rl r;
    kd_rl_init(&r, 10, 10, 0);
    assert_true(kd_rl_slow_down(&r, 0)); /* 5/s now */
    /* in the next second the rate climbs from 5 to 5.5: 5.25 tokens */
    kd_rl_advance(&r, 1 * SEC);
    near(r.tokens, 5.25);
    int n = 0;
    while (kd_rl_take(&r, 1 * SEC))
        n++;
    assert_int_equal(n, 5);
}

static void test_429_without_a_limit(void **state)
{
    (void)state;
    kd_rl r;
    int64_t now = 10 * SEC;
    kd_rl_init(&r, 0, 0, now);
    /* 40 requests in the last second */
    for (int i = 0; i < 40; i++)
        assert_true(kd_rl_take(&r, now + i * 25 * MS));
    now += 1 * SEC;
    assert_true(kd_rl_take(&r, now)); /* a new second starts */
    assert_true(kd_rl_slow_down(&r, now));
    near(kd_rl_rate(&r, now), 20); /* half of what was sent */
    assert_false(kd_rl_idle(&r, now));
    /* recovery at max(0.5, 40/20) = 2/s up to 40/s, then no limit again */
    near(kd_rl_rate(&r, now + 5 * SEC), 30);
    near(kd_rl_rate(&r, now + 10 * SEC), 0);
    assert_true(kd_rl_idle(&r, now + 10 * SEC));
    kd_rl_advance(&r, now + 10 * SEC);
    for (int i = 0; i < 1000; i++)
        assert_true(kd_rl_take(&r, now + 10 * SEC));

    /* nothing sent lately: from 2/s, to 1/s */
    kd_rl_init(&r, 0, 0, 0);
    assert_true(kd_rl_slow_down(&r, 100 * SEC));
    near(kd_rl_rate(&r, 100 * SEC), 1);
    assert_true(kd_rl_take(&r, 101 * SEC));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_rate),
        cmocka_unit_test(test_default_burst),
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_429_halves_and_recovers),
        cmocka_unit_test(test_429_tokens_follow_rate),
        cmocka_unit_test(test_429_without_a_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
