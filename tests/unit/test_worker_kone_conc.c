/* Unit tests for worker/kone_conc.c, the adaptive concurrency limit (AIMD): every transition
 * (start at max, room and take, +1 per success never above max, × decrease_pct per drop
 * never below min, both only while the limit is in use, neutral answers change nothing,
 * decrease_pct 100 turns it off), what a finished run signals, and then a pool of requests
 * on a fake clock (a backlog larger than the limit, KONE answering each after 20-60 ms):
 * 20% of answers 500 keep the limit well above its floor, 100% drive it to the minimum
 * within a few dozen answers, and recovery raises it back to the maximum. The maximum comes
 * from kone.concurrency_max, capped by worker.inflight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

#include "kone_conc.h"
#include "test_xorshift.h"

/* the defaults (kone.concurrency_min, kone.concurrency_max, kone.concurrency_decrease_pct) */
static const kd_cc_cfg cfg = {.min = 4, .max = 64, .decrease_pct = 90};

static void fill(kd_cc *c)
{
    while (kd_cc_room(c))
        kd_cc_take(c);
}

static void test_transitions(void **state)
{
    (void)state;
    kd_cc c;
    kd_cc_init(&c, &cfg);
    assert_int_equal(kd_cc_limit(&c), 64); /* no slow start: fault-free runs as before */
    fill(&c);
    assert_int_equal(c.inflight, 64);
    assert_false(kd_cc_room(&c));
    /* a success at max stays at max */
    assert_false(kd_cc_done(&c, &cfg, KD_CC_SUCCESS));
    assert_int_equal(kd_cc_limit(&c), 64);
    assert_true(kd_cc_room(&c));
    /* a drop: × 0.9 -> 57.6; the 63 out stay out, none more admitted until 57 are left */
    assert_true(kd_cc_done(&c, &cfg, KD_CC_DROP));
    assert_int_equal(kd_cc_limit(&c), 57);
    assert_int_equal(c.drops, 1);
    assert_false(kd_cc_room(&c));
    /* neutral: nothing changes but the request's place */
    assert_false(kd_cc_done(&c, &cfg, KD_CC_NEUTRAL));
    assert_int_equal(kd_cc_limit(&c), 57);
    assert_int_equal(c.inflight, 61);
    /* successes while in use: +1 each, up to max */
    assert_true(kd_cc_done(&c, &cfg, KD_CC_SUCCESS));
    assert_int_equal(kd_cc_limit(&c), 58);
    /* drops (the limit kept full) down to the floor, never below */
    for (int i = 0; i < 100; i++) {
        fill(&c);
        kd_cc_done(&c, &cfg, KD_CC_DROP);
    }
    assert_int_equal(kd_cc_limit(&c), 4);
    /* the limit unused (less than half taken): neither a success nor a drop changes it */
    while (c.inflight > 1)
        kd_cc_done(&c, &cfg, KD_CC_NEUTRAL);
    assert_false(kd_cc_done(&c, &cfg, KD_CC_SUCCESS));
    assert_int_equal(kd_cc_limit(&c), 4);
    assert_int_equal(c.inflight, 0);
    assert_false(kd_cc_done(&c, &cfg, KD_CC_DROP)); /* done never goes below 0 either */
    assert_int_equal(c.inflight, 0);
    kd_cc_take(&c);
    assert_false(kd_cc_done(&c, &cfg, KD_CC_SUCCESS));
    assert_int_equal(kd_cc_limit(&c), 4);
    /* ... with half of it taken, a success raises it */
    kd_cc_take(&c);
    kd_cc_take(&c);
    assert_true(kd_cc_done(&c, &cfg, KD_CC_SUCCESS));
    assert_int_equal(kd_cc_limit(&c), 5);
    /* a trickle of drops on a quiet limit leaves it (a rate held down by 429s) */
    kd_cc_init(&c, &cfg);
    for (int i = 0; i < 100; i++) {
        kd_cc_take(&c);
        assert_false(kd_cc_done(&c, &cfg, KD_CC_DROP));
    }
    assert_int_equal(kd_cc_limit(&c), 64);
    /* decrease_pct 100: adaptive concurrency off, the limit stays at max */
    const kd_cc_cfg off = {.min = 4, .max = 64, .decrease_pct = 100};
    kd_cc_init(&c, &off);
    fill(&c);
    for (int i = 0; i < 64; i++)
        assert_false(kd_cc_done(&c, &off, KD_CC_DROP));
    assert_int_equal(kd_cc_limit(&c), 64);
    assert_int_equal(c.drops, 0);
}

static void test_signal_of(void **state)
{
    (void)state;
    assert_int_equal(kd_cc_signal_of(KD_OUTCOME_SUCCEEDED, "", false), KD_CC_SUCCESS);
    assert_int_equal(kd_cc_signal_of(KD_OUTCOME_REJECTED, "SAME_SOURCE_AND_DEST_FLOOR", false),
                     KD_CC_SUCCESS); /* the building's controller answered */
    assert_int_equal(kd_cc_signal_of(KD_OUTCOME_REJECTED, "403", false), KD_CC_NEUTRAL);
    assert_int_equal(kd_cc_signal_of(KD_OUTCOME_FAILED, "500", false), KD_CC_DROP);
    assert_int_equal(kd_cc_signal_of(KD_OUTCOME_FAILED, "503", false), KD_CC_DROP);
    assert_int_equal(kd_cc_signal_of(KD_OUTCOME_FAILED, "429", false), KD_CC_DROP);
    assert_int_equal(kd_cc_signal_of(KD_OUTCOME_FAILED, "408", false), KD_CC_DROP);
    assert_int_equal(kd_cc_signal_of(KD_OUTCOME_FAILED, "timeout", false), KD_CC_DROP);
    /* a timeout on a connection that went down says nothing about KONE's load */
    assert_int_equal(kd_cc_signal_of(KD_OUTCOME_FAILED, "timeout", true), KD_CC_NEUTRAL);
    /* the link's trouble is the breaker's, not the limit's */
    assert_int_equal(kd_cc_signal_of(KD_OUTCOME_FAILED, "1005", false), KD_CC_NEUTRAL);
    assert_int_equal(kd_cc_signal_of(KD_OUTCOME_FAILED, "circuit_open", false), KD_CC_NEUTRAL);
    assert_int_equal(kd_cc_signal_of(KD_OUTCOME_FAILED, "no_connection", false), KD_CC_NEUTRAL);
    assert_int_equal(kd_cc_signal_of(KD_OUTCOME_EXPIRED, "expired", false), KD_CC_NEUTRAL);
}

/* A pool on a fake clock, 1 ms a step: a backlog bigger than any limit, each request
 * answered 20-60 ms after it went out, a drop with probability fail_pct. Runs `ms` and
 * reports the lowest limit after the first second, the mean, and the answers until the
 * limit first reached cfg.min (-1: never). */
#define POOL 128
typedef struct {
    int lowest, answers_to_min;
    double mean, below_quarter; /* share of the time under max / 4 */
} pool_run;

static pool_run run_pool(kd_cc *c, int fail_pct, int ms)
{
    int64_t due[POOL];
    int n = 0, answers = 0;
    pool_run r = {.lowest = 1 << 30, .answers_to_min = -1};
    double sum = 0;
    for (int64_t now = 0; now < ms; now++) {
        for (int i = 0; i < n;) {
            if (due[i] > now) {
                i++;
                continue;
            }
            bool drop = (int)(xorshift() % 100) < fail_pct;
            kd_cc_done(c, &cfg, drop ? KD_CC_DROP : KD_CC_SUCCESS);
            answers++;
            if (r.answers_to_min < 0 && kd_cc_limit(c) == cfg.min)
                r.answers_to_min = answers;
            due[i] = due[--n];
        }
        while (kd_cc_room(c) && n < POOL) {
            kd_cc_take(c);
            due[n++] = now + 20 + (int64_t)(xorshift() % 41);
        }
        if (now >= 1000) {
            if (kd_cc_limit(c) < r.lowest)
                r.lowest = kd_cc_limit(c);
            sum += kd_cc_limit(c);
            if (kd_cc_limit(c) < cfg.max / 4)
                r.below_quarter += 1;
        }
    }
    r.mean = sum / (ms - 1000);
    r.below_quarter /= (ms - 1000);
    /* let the requests out end, as a pool would (their answers are this run's) */
    while (n > 0) {
        kd_cc_done(c, &cfg, (int)(xorshift() % 100) < fail_pct ? KD_CC_DROP : KD_CC_SUCCESS);
        n--;
    }
    return r;
}

static void test_pool_20pct_keeps_above_floor(void **state)
{
    (void)state;
    for (int seed = 1; seed <= 5; seed++) {
        xs = 88172645463325252ULL * (uint64_t)seed;
        kd_cc c;
        kd_cc_init(&c, &cfg);
        pool_run r = run_pool(&c, 20, 60000); /* a minute, ~100,000 answers */
        print_message("20%% drops, seed %d: limit lowest %d, mean %.1f, under %d %.2f%% of the "
                      "time (max %d)\n",
                      seed, r.lowest, r.mean, cfg.max / 4, 100 * r.below_quarter, cfg.max);
        /* the equilibrium is (1 - p) / (p (1 - d)) = 40: it stays near, rarely dips under a
         * quarter of max and never to the floor */
        assert_true(r.lowest >= 2 * cfg.min);
        assert_true(r.mean >= 30);
        assert_true(r.below_quarter < 0.01);
        assert_int_equal(r.answers_to_min, -1);
    }
}

static void test_pool_100pct_to_min_then_recovers(void **state)
{
    (void)state;
    xs = 88172645463325252ULL;
    kd_cc c;
    kd_cc_init(&c, &cfg);
    pool_run r = run_pool(&c, 100, 5000);
    print_message("100%% drops: limit at its minimum after %d answers\n", r.answers_to_min);
    /* 64 · 0.9^k <= 4 at k = 27: the first 64 out bring it there, none more needed */
    assert_true(r.answers_to_min > 0 && r.answers_to_min <= 64);
    assert_int_equal(r.lowest, cfg.min);
    assert_int_equal(kd_cc_limit(&c), cfg.min);
    /* KONE recovers: every answer a success, the limit climbs back to max */
    r = run_pool(&c, 0, 3000);
    print_message("recovered: limit %d after 3 s (lowest after the first second %d)\n",
                  kd_cc_limit(&c), r.lowest);
    assert_int_equal(kd_cc_limit(&c), cfg.max);
    assert_int_equal(r.lowest, cfg.max); /* back within the first second */
}

/* The worker's KONE requests: kone.concurrency_max, unless worker.inflight (the jobs it holds)
 * is smaller; 256 jobs held by default, 64 requests out of them. */
static void test_max_of_config(void **state)
{
    (void)state;
    static const struct {
        const char *held, *kone;
        int max;
    } cases[] = {
        {NULL, NULL, 64}, {"16", NULL, 16}, {NULL, "200", 200}, {"100", "200", 100}, {"1", "1", 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kd_config conf;
        kd_err err = {0};
        char *argv[] = {"kone-worker"};
        unsetenv("KD_WORKER_INFLIGHT");
        unsetenv("KD_KONE_CONCURRENCY_MAX");
        if (cases[i].held)
            setenv("KD_WORKER_INFLIGHT", cases[i].held, 1);
        if (cases[i].kone)
            setenv("KD_KONE_CONCURRENCY_MAX", cases[i].kone, 1);
        assert_int_equal(kd_config_load(&conf, KD_PROG_WORKER, "test", 1, argv, &err), 0);
        assert_int_equal(kd_cc_max_of(&conf), cases[i].max);
        kd_config_free(&conf);
    }
    unsetenv("KD_WORKER_INFLIGHT");
    unsetenv("KD_KONE_CONCURRENCY_MAX");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transitions),
        cmocka_unit_test(test_max_of_config),
        cmocka_unit_test(test_signal_of),
        cmocka_unit_test(test_pool_20pct_keeps_above_floor),
        cmocka_unit_test(test_pool_100pct_to_min_then_recovers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
