/* Unit tests for worker/kone_breaker.c: every transition of the per-building circuit breaker
 * on a fake clock: closed -> open on a failure share over a sliding window with a minimum
 * number of calls (old verdicts age out, a retracted success counts as a failure), pings with
 * a growing, capped and jittered backoff, open -> half-open on a ping answered 200, a bounded
 * half-open trial (further calls held, a trial without verdict gives its place back) decided
 * by its failure share (half-open -> closed / open), tickets that make verdicts of calls
 * admitted before a transition old news; then the statistics: 20% random failures never open
 * it, 100% failures open it within the window, and one outage gives one open and one close;
 * what counts as a failure of the building's link, and the backoff bounds; the suspicion of
 * a closed circuit (calls without progress: a ping, whose 1005 opens it at once, whose 200
 * backs the next suspicion off, reset by progress), and one outage found by suspicion giving
 * one open and one close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "kone_breaker.h"
#include "test_xorshift.h"

#define MS 1000LL
#define SEC 1000000LL

/* the defaults of kone.breaker_* (shared/src/config.c) */
static const kd_brk_cfg cfg = {.rate_pct = 80,
                               .min_calls = 10,
                               .calls = 20,
                               .window_us = 60 * SEC,
                               .trials = 5,
                               .base_us = 1 * SEC,
                               .cap_us = 8 * SEC};

/* one call admitted and told v at once; returns whether the state changed */
static bool call(kd_breaker *b, const kd_brk_cfg *c, kd_brk_verdict v, int64_t now)
{
    uint64_t t;
    if (kd_brk_admit(b, c, &t) != KD_BRK_GO)
        fail_msg("call not admitted in state %s", kd_brk_state_name(b->st));
    return kd_brk_record(b, c, v, t, false, now, 0);
}

static void test_closed_opens_on_failure_share(void **state)
{
    (void)state;
    kd_breaker b;
    int64_t now = 100 * SEC;
    kd_brk_init(&b, now);
    assert_int_equal(b.st, KD_BRK_CLOSED);
    /* below min_calls, even 100% failures do not open it */
    for (int i = 0; i < 9; i++)
        assert_false(call(&b, &cfg, KD_BRK_FAILURE, now));
    /* neutral verdicts neither count as calls nor as failures */
    for (int i = 0; i < 20; i++)
        assert_false(call(&b, &cfg, KD_BRK_NEUTRAL, now));
    int n, f;
    kd_brk_window(&b, &cfg, now, &n, &f);
    assert_int_equal(n, 9);
    assert_int_equal(f, 9);
    /* three successes: 9 of 12 = 75% < 80%: closed; the next failure makes 10 of 13 = 77% */
    for (int i = 0; i < 3; i++)
        assert_false(call(&b, &cfg, KD_BRK_SUCCESS, now));
    assert_false(call(&b, &cfg, KD_BRK_FAILURE, now));
    assert_int_equal(b.st, KD_BRK_CLOSED);
    /* 11 of 14 = 78.6%, 12 of 15 = 80%: open */
    assert_false(call(&b, &cfg, KD_BRK_FAILURE, now));
    assert_true(call(&b, &cfg, KD_BRK_FAILURE, now));
    assert_int_equal(b.st, KD_BRK_OPEN);
    assert_int_equal(b.opens, 1);
    assert_int_equal(b.since, now);
    assert_int_equal(b.probe_at, now + 500 * MS); /* rnd 0: the lowest of [base/2, base] */
    kd_brk_window(&b, &cfg, now, &n, &f);
    assert_int_equal(n, 0); /* emptied: a fresh count after it closes */
}

static void test_window_slides(void **state)
{
    (void)state;
    kd_breaker b;
    int64_t now = 0;
    kd_brk_init(&b, now);
    /* 9 failures, then 61 s of nothing: they aged out; 9 more do not open it */
    for (int i = 0; i < 9; i++)
        call(&b, &cfg, KD_BRK_FAILURE, now);
    now += 61 * SEC;
    int n, f;
    kd_brk_window(&b, &cfg, now, &n, &f);
    assert_int_equal(n, 0);
    for (int i = 0; i < 9; i++)
        assert_false(call(&b, &cfg, KD_BRK_FAILURE, now));
    /* part of the window: failures 15 s apart still add up (9 + 1 within 60 s) */
    now += 15 * SEC;
    assert_true(call(&b, &cfg, KD_BRK_FAILURE, now));

    /* the window holds the last 20 calls: after 100 successes, failures push them out; the
     * 16th failure makes 16 of 20 (80%) */
    kd_brk_init(&b, now);
    for (int i = 0; i < 100; i++)
        call(&b, &cfg, KD_BRK_SUCCESS, now);
    for (int i = 0; i < 15; i++)
        assert_false(call(&b, &cfg, KD_BRK_FAILURE, now + i * SEC));
    int n2, f2;
    kd_brk_window(&b, &cfg, now + 15 * SEC, &n2, &f2);
    assert_int_equal(n2, 20);
    assert_int_equal(f2, 15);
    assert_true(call(&b, &cfg, KD_BRK_FAILURE, now + 15 * SEC));
}

static void test_retract(void **state)
{
    (void)state;
    kd_breaker b;
    int64_t now = 0;
    kd_brk_init(&b, now);
    /* 10 calls accepted (success), then stuck: each takes its success back */
    uint64_t t[10];
    for (int i = 0; i < 10; i++) {
        assert_int_equal(kd_brk_admit(&b, &cfg, &t[i]), KD_BRK_GO);
        assert_false(kd_brk_record(&b, &cfg, KD_BRK_SUCCESS, t[i], false, now, 0));
    }
    for (int i = 0; i < 7; i++)
        assert_false(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, t[i], true, now + SEC, 0));
    int n, f;
    kd_brk_window(&b, &cfg, now + SEC, &n, &f);
    assert_int_equal(n, 10);
    assert_int_equal(f, 7);
    /* a retracted "success" of any other kind means nothing */
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_SUCCESS, t[7], true, now + SEC, 0));
    assert_int_equal(b.st, KD_BRK_CLOSED);
    assert_true(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, t[8], true, now + SEC, 0)); /* 8 of 10 */
    assert_int_equal(b.st, KD_BRK_OPEN);
}

static void open_breaker(kd_breaker *b, int64_t now)
{
    kd_brk_init(b, now);
    for (int i = 0; i < cfg.min_calls; i++)
        call(b, &cfg, KD_BRK_FAILURE, now);
    assert_int_equal(b->st, KD_BRK_OPEN);
}

static void test_open_refuses_and_pings_with_backoff(void **state)
{
    (void)state;
    kd_breaker b;
    uint64_t t;
    int64_t now = 0;
    kd_brk_init(&b, now);
    uint64_t before;
    assert_int_equal(kd_brk_admit(&b, &cfg, &before), KD_BRK_GO); /* in flight as it opens */
    open_breaker(&b, now);
    assert_int_equal(kd_brk_admit(&b, &cfg, &t), KD_BRK_REFUSE);
    /* outcomes of calls still in flight when it opened change nothing */
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_SUCCESS, before, false, now, 0));
    assert_int_equal(b.st, KD_BRK_OPEN);

    /* pings: due at probe_at, one at a time; failures grow the delay 1, 2, 4, 8, 8 s */
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
    /* a ping that could not be sent: again after the base delay, the backoff does not grow */
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

static void test_half_open_bounded_trial_closes(void **state)
{
    (void)state;
    kd_breaker b;
    uint64_t t[5], x;
    kd_brk_init(&b, 0);
    uint64_t old;
    kd_brk_admit(&b, &cfg, &old);
    half_open(&b, 0);
    /* five trial places; the sixth call is held */
    for (int i = 0; i < 5; i++)
        assert_int_equal(kd_brk_admit(&b, &cfg, &t[i]), KD_BRK_GO);
    assert_int_equal(kd_brk_admit(&b, &cfg, &x), KD_BRK_HOLD);
    /* a call admitted before the ping answered does not decide */
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, old, false, SEC, 0));
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_SUCCESS, old, false, SEC, 0));
    /* a trial without verdict gives its place back */
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_NEUTRAL, t[0], false, SEC, 0));
    assert_int_equal(kd_brk_admit(&b, &cfg, &t[0]), KD_BRK_GO);
    assert_int_equal(kd_brk_admit(&b, &cfg, &x), KD_BRK_HOLD);
    /* one failure, one success: 4 of 5 could still fail (80%): undecided */
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, t[0], false, SEC, 0));
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_SUCCESS, t[1], false, SEC, 0));
    assert_int_equal(b.st, KD_BRK_HALF_OPEN);
    assert_int_equal(kd_brk_admit(&b, &cfg, &x), KD_BRK_HOLD); /* decided places stay taken */
    /* a second success: at most 3 of 5 can fail now (60% < 80%): closed */
    assert_true(kd_brk_record(&b, &cfg, KD_BRK_SUCCESS, t[2], false, 2 * SEC, 0));
    assert_int_equal(b.st, KD_BRK_CLOSED);
    assert_int_equal(b.since, 2 * SEC);
    assert_int_equal(b.probe_fails, 0);
    assert_int_equal(b.closes, 1);
    /* the trials still out are old news now; every call goes */
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, t[3], false, 2 * SEC, 0));
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, t[4], true, 2 * SEC, 0));
    int n, f;
    kd_brk_window(&b, &cfg, 2 * SEC, &n, &f);
    assert_int_equal(n, 0);
    assert_int_equal(kd_brk_admit(&b, &cfg, &x), KD_BRK_GO);
}

static void test_half_open_trial_reopens(void **state)
{
    (void)state;
    kd_breaker b;
    uint64_t t[5], x;
    half_open(&b, 0);
    int pf = b.probe_fails;
    for (int i = 0; i < 5; i++)
        assert_int_equal(kd_brk_admit(&b, &cfg, &t[i]), KD_BRK_GO);
    /* an accepted trial that then makes no progress takes its success back */
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_SUCCESS, t[0], false, SEC, 0));
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, t[1], false, SEC, 0));
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, t[2], false, SEC, 0));
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, t[0], true, SEC, 0));
    assert_int_equal(b.st, KD_BRK_HALF_OPEN);
    /* the fourth failure of five: 80%: open again */
    assert_true(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, t[3], false, 3 * SEC, 0));
    assert_int_equal(b.st, KD_BRK_OPEN);
    assert_int_equal(b.opens, 2);
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_SUCCESS, t[4], false, 3 * SEC, 0));
    assert_int_equal(b.st, KD_BRK_OPEN);
    /* the backoff goes on growing: the building answers pings but not calls */
    assert_int_equal(b.probe_fails, pf + 1);
    assert_int_equal(b.probe_at, 3 * SEC + kd_brk_backoff_us(&cfg, pf + 1, 0));
    assert_int_equal(kd_brk_admit(&b, &cfg, &x), KD_BRK_REFUSE);
}

static void test_disabled(void **state)
{
    (void)state;
    kd_brk_cfg off = cfg;
    off.rate_pct = 0;
    kd_breaker b;
    kd_brk_init(&b, 0);
    for (int i = 0; i < 100; i++)
        assert_false(call(&b, &off, KD_BRK_FAILURE, 0));
    assert_int_equal(b.st, KD_BRK_CLOSED);
}

/* calls at `per_s` a second for `secs`, each failing with probability fail_pct %; returns
 * the time of the first open (-1: never) */
static int64_t run_rate(kd_breaker *b, double per_s, int secs, int fail_pct, int64_t now)
{
    int64_t step = (int64_t)(SEC / per_s), end = now + secs * SEC;
    for (; now < end; now += step) {
        kd_brk_verdict v = xorshift() % 100 < (uint64_t)fail_pct ? KD_BRK_FAILURE : KD_BRK_SUCCESS;
        if (call(b, &cfg, v, now))
            return now;
    }
    return -1;
}

static void test_random_20pct_never_opens(void **state)
{
    (void)state;
    /* an hour at each rate, from one call every 3 s (the window barely holds min_calls) to
     * 200 a second */
    static const double rates[] = {0.34, 1, 5, 20, 200};
    for (size_t i = 0; i < sizeof rates / sizeof *rates; i++) {
        kd_breaker b;
        kd_brk_init(&b, 0);
        int64_t at = run_rate(&b, rates[i], 3600, 20, 0);
        if (at >= 0)
            fail_msg("20%% failures at %.2f calls/s opened the circuit after %lld s", rates[i],
                     (long long)(at / SEC));
        assert_int_equal(b.opens, 0);
    }
}

static void test_all_failing_opens_within_window(void **state)
{
    (void)state;
    static const double rates[] = {0.34, 1, 5, 20, 200};
    for (size_t i = 0; i < sizeof rates / sizeof *rates; i++) {
        kd_breaker b;
        kd_brk_init(&b, 0);
        /* an hour of 20% failures, then the link goes down: every call fails */
        int64_t down = 3600 * SEC;
        assert_int_equal(run_rate(&b, rates[i], 3600, 20, 0), -1);
        int64_t at = run_rate(&b, rates[i], 120, 100, down);
        if (at < 0)
            fail_msg("100%% failures at %.2f calls/s: still closed after 120 s", rates[i]);
        /* within the window: no more failing calls than it holds */
        int64_t step = (int64_t)(SEC / rates[i]);
        if ((at - down) / step + 1 > cfg.calls)
            fail_msg("100%% failures at %.2f calls/s: opened after %lld calls", rates[i],
                     (long long)((at - down) / step + 1));
    }
}

/* One outage: a link down for 30 s under 20 calls/s, pings failing meanwhile, stuck calls
 * coming back as failures after it is over: exactly one open and one close. */
static void test_one_outage_one_open_one_close(void **state)
{
    (void)state;
    kd_breaker b;
    int64_t now = 0, step = 50 * MS;
    kd_brk_init(&b, now);
    uint64_t stuck[64];
    int n_stuck = 0;
    for (; now < 300 * SEC; now += step) {
        bool down = now >= 60 * SEC && now < 90 * SEC;
        if (kd_brk_probe_due(&b, now)) {
            kd_brk_probe_sent(&b);
            kd_brk_probe_done(&b, &cfg, down ? KD_BRK_FAILURE : KD_BRK_SUCCESS, now, xorshift());
        }
        uint64_t t;
        if (kd_brk_admit(&b, &cfg, &t) != KD_BRK_GO)
            continue;
        if (down && n_stuck < 64) {
            /* accepted, told success, later stuck (retracted after the outage) */
            kd_brk_record(&b, &cfg, KD_BRK_SUCCESS, t, false, now, xorshift());
            stuck[n_stuck++] = t;
            continue;
        }
        kd_brk_record(&b, &cfg, down ? KD_BRK_FAILURE : KD_BRK_SUCCESS, t, false, now, xorshift());
        if (!down && now >= 90 * SEC && n_stuck) /* the stuck ones fail late */
            kd_brk_record(&b, &cfg, KD_BRK_FAILURE, stuck[--n_stuck], true, now, xorshift());
    }
    assert_int_equal(b.opens, 1);
    assert_int_equal(b.closes, 1);
    assert_int_equal(b.st, KD_BRK_CLOSED);
}

/* Suspicion (closed): one ping at a time; 200 backs the next one off (base·2^n, jittered:
 * rnd 0 gives the lower half), progress resets that; unanswered: again after the base delay;
 * 1005: open at once, the ping then counting as the open circuit's first. */
static void test_suspicion(void **state)
{
    (void)state;
    kd_breaker b;
    int64_t now = 10 * SEC;
    kd_brk_init(&b, now);
    assert_true(kd_brk_suspect(&b, &cfg, now));
    assert_true(b.probing);
    assert_false(kd_brk_suspect(&b, &cfg, now)); /* one at a time */
    assert_false(kd_brk_probe_due(&b, now));     /* not an open circuit's ping */
    /* answered 200: nothing changes, the next suspicion waits 0.5 s, then 1 s, 2 s */
    const int64_t wait[] = {500 * MS, 1 * SEC, 2 * SEC};
    for (int i = 0; i < 3; i++) {
        assert_false(kd_brk_probe_done(&b, &cfg, KD_BRK_SUCCESS, now, 0));
        assert_int_equal(b.st, KD_BRK_CLOSED);
        assert_false(b.probing);
        assert_false(kd_brk_suspect(&b, &cfg, now + wait[i] - 1));
        now += wait[i];
        assert_true(kd_brk_suspect(&b, &cfg, now));
    }
    /* progress: back to the base delay */
    assert_false(kd_brk_probe_done(&b, &cfg, KD_BRK_SUCCESS, now, 0));
    kd_brk_progress(&b);
    assert_true(kd_brk_suspect(&b, &cfg, now));
    /* unanswered (NEUTRAL): says nothing of the link, again after the base delay */
    assert_false(kd_brk_probe_done(&b, &cfg, KD_BRK_NEUTRAL, now, 0));
    assert_int_equal(b.st, KD_BRK_CLOSED);
    assert_false(kd_brk_suspect(&b, &cfg, now + 499 * MS));
    now += 500 * MS;
    assert_true(kd_brk_suspect(&b, &cfg, now));
    /* 1005: open now; calls admitted before are old news; next ping after the base backoff */
    uint64_t before;
    assert_int_equal(kd_brk_admit(&b, &cfg, &before), KD_BRK_GO);
    assert_true(kd_brk_probe_done(&b, &cfg, KD_BRK_FAILURE, now, 0));
    assert_int_equal(b.st, KD_BRK_OPEN);
    assert_int_equal(b.opens, 1);
    assert_false(b.suspect);
    assert_int_equal(b.probe_at - now, 500 * MS);
    assert_false(kd_brk_record(&b, &cfg, KD_BRK_FAILURE, before, false, now, 0));
    assert_false(kd_brk_suspect(&b, &cfg, now + 100 * SEC)); /* only while closed */

    /* the window opens it while a suspicion ping is out: that ping is the open circuit's */
    kd_brk_init(&b, 0);
    assert_true(kd_brk_suspect(&b, &cfg, 0));
    for (int i = 0; i < 10; i++)
        call(&b, &cfg, KD_BRK_FAILURE, 0);
    assert_int_equal(b.st, KD_BRK_OPEN);
    assert_true(b.probing);
    assert_false(kd_brk_probe_due(&b, 100 * SEC));
    assert_true(kd_brk_probe_done(&b, &cfg, KD_BRK_SUCCESS, 1 * SEC, 0));
    assert_int_equal(b.st, KD_BRK_HALF_OPEN);
    /* closing clears the suspicion's backoff */
    for (int i = 0; i < 5; i++)
        call(&b, &cfg, KD_BRK_SUCCESS, 1 * SEC);
    assert_int_equal(b.st, KD_BRK_CLOSED);
    assert_int_equal(b.suspect_n, 0);
    assert_true(kd_brk_suspect(&b, &cfg, 1 * SEC));

    /* off (rate 0): never suspects */
    kd_brk_cfg off = cfg;
    off.rate_pct = 0;
    kd_brk_init(&b, 0);
    assert_false(kd_brk_suspect(&b, &off, 0));
}

/* A 30 s outage found by suspicion: calls stop progressing, a ping fails 1005 and opens it,
 * pings fail until the link is back, the half-open trial closes it: one open, one close. */
static void test_outage_by_suspicion_one_open_one_close(void **state)
{
    (void)state;
    kd_breaker b;
    int64_t now = 0, step = 50 * MS, stall = 2 * SEC, last_progress = 0;
    kd_brk_init(&b, now);
    for (; now < 200 * SEC; now += step) {
        bool down = now >= 60 * SEC && now < 90 * SEC;
        if (kd_brk_probe_due(&b, now)) {
            kd_brk_probe_sent(&b);
            kd_brk_probe_done(&b, &cfg, down ? KD_BRK_FAILURE : KD_BRK_SUCCESS, now, xorshift());
        }
        if (now - last_progress >= stall && kd_brk_suspect(&b, &cfg, now))
            kd_brk_probe_done(&b, &cfg, down ? KD_BRK_FAILURE : KD_BRK_SUCCESS, now, xorshift());
        uint64_t t;
        if (kd_brk_admit(&b, &cfg, &t) != KD_BRK_GO)
            continue;
        if (down)
            continue; /* stuck: no verdict before its timeout, long after */
        kd_brk_record(&b, &cfg, KD_BRK_SUCCESS, t, false, now, xorshift());
        kd_brk_progress(&b);
        last_progress = now;
    }
    assert_int_equal(b.opens, 1);
    assert_int_equal(b.closes, 1);
    assert_int_equal(b.st, KD_BRK_CLOSED);
}

static void test_backoff_bounds(void **state)
{
    (void)state;
    for (int n = 0; n < 70; n++) {
        int64_t d = 1 * SEC;
        for (int i = 0; i < n && d < cfg.cap_us; i++)
            d *= 2;
        if (d > cfg.cap_us)
            d = cfg.cap_us;
        for (int k = 0; k < 200; k++) {
            int64_t v = kd_brk_backoff_us(&cfg, n, xorshift());
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
        bool degraded;
    } cases[] = {
        {KD_OUTCOME_SUCCEEDED, "", false, KD_BRK_SUCCESS, false},
        {KD_OUTCOME_SUCCEEDED, "track_timeout", false, KD_BRK_SUCCESS, false},
        /* the group controller answered */
        {KD_OUTCOME_REJECTED, "ignored_call", false, KD_BRK_SUCCESS, false},
        {KD_OUTCOME_REJECTED, "SAME_SOURCE_AND_DEST_FLOOR", false, KD_BRK_SUCCESS, false},
        {KD_OUTCOME_REJECTED, "NO_LIFT_AVAILABLE", false, KD_BRK_SUCCESS, false},
        /* the API in front of it, or the worker itself */
        {KD_OUTCOME_REJECTED, "404", false, KD_BRK_NEUTRAL, false},
        {KD_OUTCOME_REJECTED, "400", false, KD_BRK_NEUTRAL, false},
        {KD_OUTCOME_REJECTED, "invalid_job", false, KD_BRK_NEUTRAL, false},
        {KD_OUTCOME_EXPIRED, "expired", false, KD_BRK_NEUTRAL, false},
        /* the building's link: the only failures */
        {KD_OUTCOME_FAILED, "1005", false, KD_BRK_FAILURE, false},
        {KD_OUTCOME_UNKNOWN, "1005", false, KD_BRK_FAILURE, false}, /* accepted, then stuck */
        {KD_OUTCOME_FAILED, "1005", true, KD_BRK_NEUTRAL, false},   /* its connection went */
        /* KONE's service degraded: lowers rate and concurrency, never opens a circuit */
        {KD_OUTCOME_FAILED, "timeout", false, KD_BRK_NEUTRAL, true},
        {KD_OUTCOME_FAILED, "timeout", true, KD_BRK_NEUTRAL, false},
        {KD_OUTCOME_FAILED, "500", false, KD_BRK_NEUTRAL, true},
        {KD_OUTCOME_FAILED, "503", false, KD_BRK_NEUTRAL, true},
        {KD_OUTCOME_FAILED, "408", false, KD_BRK_NEUTRAL, true},
        {KD_OUTCOME_FAILED, "429", false, KD_BRK_NEUTRAL, true},
        /* neither */
        {KD_OUTCOME_FAILED, "401", false, KD_BRK_NEUTRAL, false},
        {KD_OUTCOME_UNKNOWN, "result_lost", true, KD_BRK_NEUTRAL, false},
        {KD_OUTCOME_FAILED, "no_connection", false, KD_BRK_NEUTRAL, false},
        {KD_OUTCOME_FAILED, "session_lost", false, KD_BRK_NEUTRAL, false},
        {KD_OUTCOME_FAILED, "shutdown", false, KD_BRK_NEUTRAL, false},
        {KD_OUTCOME_FAILED, "circuit_open", false, KD_BRK_NEUTRAL, false},
        {KD_OUTCOME_FAILED, "rate_limited", false, KD_BRK_NEUTRAL, false},
        {KD_OUTCOME_REJECTED, "500", false, KD_BRK_NEUTRAL, false},
        {KD_OUTCOME_NONE, "", false, KD_BRK_NEUTRAL, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kd_brk_verdict v = kd_brk_verdict_of(cases[i].o, cases[i].code, cases[i].lost);
        bool d = kd_brk_degraded_of(cases[i].o, cases[i].code, cases[i].lost);
        if (v != cases[i].v || d != cases[i].degraded)
            fail_msg("%s '%s' lost=%d: verdict %d degraded %d, want %d %d",
                     kd_outcome_name(cases[i].o), cases[i].code, cases[i].lost, v, d, cases[i].v,
                     cases[i].degraded);
    }
    assert_string_equal(kd_brk_state_name(KD_BRK_CLOSED), "closed");
    assert_string_equal(kd_brk_state_name(KD_BRK_HALF_OPEN), "half-open");
    assert_string_equal(kd_brk_state_name(KD_BRK_OPEN), "open");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_closed_opens_on_failure_share),
        cmocka_unit_test(test_window_slides),
        cmocka_unit_test(test_retract),
        cmocka_unit_test(test_open_refuses_and_pings_with_backoff),
        cmocka_unit_test(test_half_open_bounded_trial_closes),
        cmocka_unit_test(test_half_open_trial_reopens),
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_random_20pct_never_opens),
        cmocka_unit_test(test_all_failing_opens_within_window),
        cmocka_unit_test(test_one_outage_one_open_one_close),
        cmocka_unit_test(test_suspicion),
        cmocka_unit_test(test_outage_by_suspicion_one_open_one_close),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_verdicts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
