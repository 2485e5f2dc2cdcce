/* Unit tests for worker/kone_breaker.c: every transition of the per-building circuit breaker
 * on a fake clock (closed -> open after N consecutive failures, pings with a growing and
 * capped, jittered backoff, open -> half-open on a ping answered 200, calls on probation,
 * half-open -> closed / open by the first verdict of a call admitted since), what counts as a
 * failure of the building, and the backoff bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "kone_breaker.h"

#define MS 1000LL
#define SEC 1000000LL

static const kd_brk_cfg cfg = {.failures = 3, .base_us = 1 * SEC, .cap_us = 8 * SEC};

static void test_closed_counts_consecutive_failures(void **state)
{
    (void)state;
    kd_breaker b;
    bool trial;
    int64_t now = 100 * SEC;
    kd_brk_init(&b, now);
    assert_int_equal(b.st, KD_BRK_CLOSED);
    assert_true(kd_brk_admit(&b, &cfg, &trial));
    assert_false(trial);
    /* two failures, a success: the count starts again */
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, false, now, 0));
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, false, now, 0));
    assert_int_equal(b.fails, 2);
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_SUCCESS, false, now, 0));
    assert_int_equal(b.fails, 0);
    /* neutral outcomes neither count nor reset */
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, false, now, 0));
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_NEUTRAL, false, now, 0));
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, false, now, 0));
    assert_int_equal(b.fails, 2);
    assert_int_equal(b.st, KD_BRK_CLOSED);
    /* the third in a row opens it */
    assert_true(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, false, now, 0));
    assert_int_equal(b.st, KD_BRK_OPEN);
    assert_int_equal(b.opens, 1);
    assert_int_equal(b.since, now);
    /* rnd 0: the lowest delay of [base/2, base] */
    assert_int_equal(b.probe_at, now + 500 * MS);
}

static void open_breaker(kd_breaker *b, int64_t now)
{
    kd_brk_init(b, now);
    for (int i = 0; i < cfg.failures; i++)
        kd_brk_record(b, &cfg, KD_BRK_FAILURE, false, now, 0);
    assert_int_equal(b->st, KD_BRK_OPEN);
}

static void test_open_refuses_and_pings_with_backoff(void **state)
{
    (void)state;
    kd_breaker b;
    bool trial;
    int64_t now = 0;
    open_breaker(&b, now);
    assert_false(kd_brk_admit(&b, &cfg, &trial));
    assert_false(trial);
    /* outcomes of calls still in flight when it opened change nothing */
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_SUCCESS, false, now, 0));
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, false, now, 0));
    assert_int_equal(b.st, KD_BRK_OPEN);

    /* pings: due at probe_at, one at a time; failures grow the delay 1, 2, 4, 8, 8 s
     * (rnd = UINT64_MAX % (d/2 + 1) picks some point of [d/2, d]; rnd 0 the lowest) */
    assert_false(kd_brk_probe_due(&b, now + 499 * MS));
    now += 500 * MS;
    assert_true(kd_brk_probe_due(&b, now));
    const int64_t want_max[] = {2 * SEC, 4 * SEC, 8 * SEC, 8 * SEC, 8 * SEC};
    for (int i = 0; i < 5; i++) {
        kd_brk_probe_sent(&b);
        assert_false(kd_brk_probe_due(&b, now + 100 * SEC)); /* one ping out at a time */
        assert_false(kd_brk_probe_done(&b, &cfg, KD_BRK_FAILURE, now, 0));
        assert_int_equal(b.st, KD_BRK_OPEN);
        assert_int_equal(b.probe_at - now, want_max[i] / 2);
        assert_false(kd_brk_probe_due(&b, now + want_max[i] / 2 - 1));
        now = b.probe_at;
        assert_true(kd_brk_probe_due(&b, now));
    }
    assert_int_equal(b.probe_fails, 5);
    /* a ping that could not be sent (no connection): again after the base delay, and the
     * backoff does not grow */
    kd_brk_probe_sent(&b);
    assert_false(kd_brk_probe_done(&b, &cfg, KD_BRK_NEUTRAL, now, 0));
    assert_int_equal(b.probe_at - now, 500 * MS);
    assert_int_equal(b.probe_fails, 5);
    /* a ping answered 200: half-open */
    now = b.probe_at;
    kd_brk_probe_sent(&b);
    assert_true(kd_brk_probe_done(&b, &cfg, KD_BRK_SUCCESS, now, 0));
    assert_int_equal(b.st, KD_BRK_HALF_OPEN);
    assert_int_equal(b.since, now);
    assert_false(kd_brk_probe_due(&b, now + 100 * SEC));
}

static void half_open(kd_breaker *b, int64_t now)
{
    open_breaker(b, now);
    kd_brk_probe_sent(b);
    assert_true(kd_brk_probe_done(b, &cfg, KD_BRK_SUCCESS, now, 0));
    assert_int_equal(b->st, KD_BRK_HALF_OPEN);
}

static void test_half_open_success_closes(void **state)
{
    (void)state;
    kd_breaker b;
    bool trial, t2;
    half_open(&b, 0);
    assert_true(kd_brk_admit(&b, &cfg, &trial));
    assert_true(trial);
    /* every call flows while half-open, each on probation */
    assert_true(kd_brk_admit(&b, &cfg, &t2));
    assert_true(t2);
    /* the outcome of a call admitted before the ping answered does not decide */
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_SUCCESS, false, 1 * SEC, 0));
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, false, 1 * SEC, 0));
    assert_int_equal(b.st, KD_BRK_HALF_OPEN);
    assert_true(kd_brk_record(&b, &cfg, KD_BRK_SUCCESS, true, 2 * SEC, 0));
    assert_int_equal(b.st, KD_BRK_CLOSED);
    assert_int_equal(b.since, 2 * SEC);
    assert_int_equal(b.probe_fails, 0);
    assert_int_equal(b.fails, 0);
    assert_true(kd_brk_admit(&b, &cfg, &trial));
    assert_false(trial);
}

static void test_half_open_failure_reopens(void **state)
{
    (void)state;
    kd_breaker b;
    bool trial;
    half_open(&b, 0);
    int pf = b.probe_fails;
    assert_true(kd_brk_admit(&b, &cfg, &trial));
    assert_true(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, true, 3 * SEC, 0));
    assert_int_equal(b.st, KD_BRK_OPEN);
    assert_int_equal(b.opens, 2);
    /* the other calls admitted on probation change nothing once it reopened */
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_SUCCESS, true, 3 * SEC, 0));
    assert_int_equal(b.st, KD_BRK_OPEN);
    /* the backoff goes on growing: the building answers pings but not calls */
    assert_int_equal(b.probe_fails, pf + 1);
    assert_int_equal(b.probe_at, 3 * SEC + kd_brk_backoff_us(&cfg, pf + 1, 0));
    assert_false(kd_brk_admit(&b, &cfg, &trial));
}

static void test_half_open_without_verdict(void **state)
{
    (void)state;
    kd_breaker b;
    bool trial;
    half_open(&b, 0);
    assert_true(kd_brk_admit(&b, &cfg, &trial));
    /* a 429 or a lost connection says nothing: a later call decides */
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_NEUTRAL, true, 1 * SEC, 0));
    assert_int_equal(b.st, KD_BRK_HALF_OPEN);
    assert_true(kd_brk_admit(&b, &cfg, &trial));
    assert_true(trial);
    assert_true(kd_brk_record(&b, &cfg, KD_BRK_SUCCESS, true, 2 * SEC, 0));
    assert_int_equal(b.st, KD_BRK_CLOSED);
}

static void test_disabled(void **state)
{
    (void)state;
    kd_brk_cfg off = cfg;
    off.failures = 0;
    kd_breaker b;
    bool trial;
    kd_brk_init(&b, 0);
    for (int i = 0; i < 100; i++)
        assert_false(kd_brk_record(&b, &off, KD_BRK_FAILURE, false, 0, 0));
    assert_int_equal(b.st, KD_BRK_CLOSED);
    assert_true(kd_brk_admit(&b, &off, &trial));
}

static void test_backoff_bounds(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252ULL;
    for (int n = 0; n < 70; n++) {
        int64_t d = 1 * SEC;
        for (int i = 0; i < n && d < cfg.cap_us; i++)
            d *= 2;
        if (d > cfg.cap_us)
            d = cfg.cap_us;
        for (int k = 0; k < 200; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            int64_t v = kd_brk_backoff_us(&cfg, n, x);
            assert_true(v >= d / 2);
            assert_true(v <= d);
        }
    }
    assert_int_equal(kd_brk_backoff_us(&cfg, 0, 0), 500 * MS);
    assert_int_equal(kd_brk_backoff_us(&cfg, 0, 500 * MS), 1 * SEC);
    assert_int_equal(kd_brk_backoff_us(&cfg, 1000, 0), 4 * SEC); /* capped, no overflow */
}

static void test_verdicts(void **state)
{
    (void)state;
    static const struct {
        kd_outcome o;
        const char *code;
        bool lost;
        kd_brk_verdict v;
    } cases[] = {
        {KD_OUTCOME_SUCCEEDED, "", false, KD_BRK_SUCCESS},
        {KD_OUTCOME_SUCCEEDED, "track_timeout", false, KD_BRK_SUCCESS},
        /* the group controller answered */
        {KD_OUTCOME_REJECTED, "ignored_call", false, KD_BRK_SUCCESS},
        {KD_OUTCOME_REJECTED, "SAME_SOURCE_AND_DEST_FLOOR", false, KD_BRK_SUCCESS},
        {KD_OUTCOME_REJECTED, "NO_LIFT_AVAILABLE", false, KD_BRK_SUCCESS},
        {KD_OUTCOME_REJECTED, "INVALID_DIRECTION", false, KD_BRK_SUCCESS},
        /* the API in front of it, or the worker itself */
        {KD_OUTCOME_REJECTED, "404", false, KD_BRK_NEUTRAL},
        {KD_OUTCOME_REJECTED, "403", false, KD_BRK_NEUTRAL},
        {KD_OUTCOME_REJECTED, "400", false, KD_BRK_NEUTRAL},
        {KD_OUTCOME_REJECTED, "invalid_job", false, KD_BRK_NEUTRAL},
        {KD_OUTCOME_EXPIRED, "expired", false, KD_BRK_NEUTRAL},
        /* the building's own failures */
        {KD_OUTCOME_FAILED, "1005", false, KD_BRK_FAILURE},
        {KD_OUTCOME_UNKNOWN, "1005", false, KD_BRK_FAILURE}, /* accepted, then stuck: link down */
        {KD_OUTCOME_UNKNOWN, "result_lost", true, KD_BRK_NEUTRAL},
        {KD_OUTCOME_FAILED, "timeout", false, KD_BRK_FAILURE},
        {KD_OUTCOME_FAILED, "500", false, KD_BRK_FAILURE},
        {KD_OUTCOME_FAILED, "503", false, KD_BRK_FAILURE},
        {KD_OUTCOME_FAILED, "408", false, KD_BRK_FAILURE},
        /* ... unless the connection went down meanwhile */
        {KD_OUTCOME_FAILED, "1005", true, KD_BRK_NEUTRAL},
        {KD_OUTCOME_FAILED, "timeout", true, KD_BRK_NEUTRAL},
        /* connection-wide or not the building's doing */
        {KD_OUTCOME_FAILED, "429", false, KD_BRK_NEUTRAL},
        {KD_OUTCOME_FAILED, "401", false, KD_BRK_NEUTRAL},
        {KD_OUTCOME_FAILED, "no_connection", false, KD_BRK_NEUTRAL},
        {KD_OUTCOME_FAILED, "session_lost", false, KD_BRK_NEUTRAL},
        {KD_OUTCOME_FAILED, "result_lost", false, KD_BRK_NEUTRAL},
        {KD_OUTCOME_FAILED, "shutdown", false, KD_BRK_NEUTRAL},
        {KD_OUTCOME_FAILED, "nomem", false, KD_BRK_NEUTRAL},
        {KD_OUTCOME_FAILED, "circuit_open", false, KD_BRK_NEUTRAL},
        {KD_OUTCOME_FAILED, "rate_limited", false, KD_BRK_NEUTRAL},
        {KD_OUTCOME_NONE, "", false, KD_BRK_NEUTRAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (kd_brk_verdict_of(cases[i].o, cases[i].code, cases[i].lost) != cases[i].v)
            fail_msg("%s '%s' lost=%d: verdict %d, want %d", kd_outcome_name(cases[i].o),
                     cases[i].code, cases[i].lost,
                     kd_brk_verdict_of(cases[i].o, cases[i].code, cases[i].lost), cases[i].v);
    assert_string_equal(kd_brk_state_name(KD_BRK_CLOSED), "closed");
    assert_string_equal(kd_brk_state_name(KD_BRK_HALF_OPEN), "half-open");
    assert_string_equal(kd_brk_state_name(KD_BRK_OPEN), "open");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_closed_counts_consecutive_failures),
        cmocka_unit_test(test_open_refuses_and_pings_with_backoff),
        cmocka_unit_test(test_half_open_success_closes),
        cmocka_unit_test(test_half_open_failure_reopens),
        cmocka_unit_test(test_half_open_without_verdict),
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_verdicts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
