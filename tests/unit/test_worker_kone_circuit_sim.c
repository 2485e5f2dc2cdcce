/* The KONE client's circuit breaker and rate limit per building against the real kone-sim
 * (docs/kone-client.md "Buildings: circuit breaker and rate limit"):
 *   - a building whose site link is down (building:9990000952 group 2 in the default
 *     buildings file): once its window holds kone.breaker_min_calls failures (1005) its
 *     circuit opens; further jobs finish "circuit_open" at once without a request; the
 *     building is pinged with backoff; the link back up (POST /sim/faults) -> the ping
 *     answers: half-open, a bounded trial of calls (the others held until it decides), the
 *     trial's successes close it: one open, one close;
 *     building:9990000951 is unaffected throughout;
 *   - 5xx answers to every call of a building never open its circuit (KONE's service in
 *     trouble is not a building's link down: docs/failure-handling.md);
 *   - a rate of 5/s with a burst of 5: 20 calls, 15 of them wait for a token (each run says
 *     how long: kd_run.kone_held_us); a job that gets no token in time gives up
 *     "rate_limited";
 *   - 429 answers lower a building's rate, with or without a configured limit: at every 429
 *     with kone.rate_slowdown_share 0; at the default (50 %) one 429 does not, a share of
 *     them over at least 32 answers does.
 * Same harness as test_worker_kone_sim.c (kone_sim_fixture.h); skipped without kone-sim.
 */
#include "kone_sim_fixture.h"

#define LINK_952_2(on)                                                                             \
    "{\"buildings\":{\"building:9990000952\":{\"groups\":{\"2\":{\"link_down\":" on "}}}}}"

static kd_kone_building_stats stats(client *c, const char *b)
{
    kd_kone_building_stats s;
    memset(&s, 0, sizeof s);
    kd_kone_building(c->k, b, &s);
    return s;
}

static bool wait_circuit(client *c, const char *b, kd_kone_circuit want, int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        if (kd_kone_circuit_state(c->k, b) == want)
            return true;
        usleep(10000);
    }
    return kd_kone_circuit_state(c->k, b) == want;
}

/* Submits n runs at once and waits for all of them. */
static void run_all(client *c, kd_run **r, int n, int ms)
{
    pthread_mutex_lock(&obs.mu);
    int want = obs.done + n;
    pthread_mutex_unlock(&obs.mu);
    for (int i = 0; i < n; i++)
        kd_kone_submit(c->k, r[i]);
    if (!wait_for(&obs.done, want, ms))
        fail_msg("%d runs: no outcome for all within %d ms", n, ms);
}

static void ok_951(client *c)
{
    expect(run_one(c, call(B951, "1", 1000, 2, 5000, false), 10000), KD_OUTCOME_SUCCEEDED, "",
           NULL);
    assert_int_equal(kd_kone_circuit_state(c->k, B951), KD_KONE_CIRCUIT_CLOSED);
}

static void test_circuit_link_down(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, "--kone-breaker-min-calls=3 --kone-breaker-trial-calls=2 "
                     "--kone-breaker-probe-base-ms=300 --kone-breaker-probe-cap-ms=1200 "
                     "--kone-call-timeout-ms=1000");
    ok_951(&c);
    assert_int_equal(kd_kone_circuit_state(c.k, B952), KD_KONE_CIRCUIT_CLOSED);

    /* three calls into the dead link: 201, then nothing; 1005 after kone.call_timeout_ms */
    kd_run *r[3];
    for (int i = 0; i < 3; i++)
        r[i] = call(B952, "2", 1000, 2, 3000 + 1000 * i, false);
    run_all(&c, r, 3, 10000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i]->kone_status, 201);
        expect(r[i], KD_OUTCOME_UNKNOWN, "1005", NULL); /* accepted: never retried */
    }
    assert_int_equal(kd_kone_circuit_state(c.k, B952), KD_KONE_CIRCUIT_OPEN);
    ok_951(&c);

    /* open: finished at once, transient "circuit_open", no request written (no start time,
     * no status), whatever the group */
    for (int i = 0; i < 5; i++) {
        int64_t t0 = kd_mono_us();
        kd_run *x = run_one(&c, call(B952, i % 2 ? "1" : "2", 1000, 2, 3000, false), 2000);
        assert_true(kd_mono_us() - t0 < 500000);
        assert_int_equal(x->started_us, 0);
        assert_int_equal(x->kone_status, 0);
        assert_int_equal(x->failure, KD_FAIL_TRANSIENT);
        expect(x, KD_OUTCOME_FAILED, "circuit_open", "circuit of building:9990000952 is open");
    }
    ok_951(&c);

    /* pinged with backoff (0.3 s doubling to 1.2 s); pings fail while the link is down */
    for (int i = 0; i < 500 && stats(&c, B952).pings < 3; i++)
        usleep(10000);
    assert_true(stats(&c, B952).pings >= 3);
    assert_int_equal(kd_kone_circuit_state(c.k, B952), KD_KONE_CIRCUIT_OPEN);
    ok_951(&c);

    /* the link comes back: the next ping answers 200 -> half-open */
    assert_int_equal(sim_post("/sim/faults", LINK_952_2("false")), 200);
    assert_true(wait_circuit(&c, B952, KD_KONE_CIRCUIT_HALF_OPEN, 5000));
    /* half-open admits two trial calls; the third waits for their verdict (not refused),
     * their successes close it, and the third goes on */
    kd_run *t[3] = {call(B952, "2", 1000, 2, 3000, false), call(B952, "2", 2000, 2, 4000, false),
                    call(B952, "2", 3000, 2, 5000, false)};
    run_all(&c, t, 3, 10000);
    for (int i = 0; i < 3; i++)
        expect(t[i], KD_OUTCOME_SUCCEEDED, "", NULL);
    assert_int_equal(kd_kone_circuit_state(c.k, B952), KD_KONE_CIRCUIT_CLOSED);
    /* closed: calls flow */
    for (int i = 0; i < 3; i++)
        expect(run_one(&c, call(B952, "2", 1000 * (1 + i), 2, 5000, false), 10000),
               KD_OUTCOME_SUCCEEDED, "", NULL);

    kd_kone_building_stats s2 = stats(&c, B952), s1 = stats(&c, B951);
    assert_int_equal(s2.circuit_opens, 1);
    assert_int_equal(s2.circuit_closes, 1);
    assert_int_equal(s2.circuit_refused, 5);
    assert_int_equal(s1.circuit_opens, 0);
    assert_int_equal(s1.circuit_refused, 0);
    ok_951(&c);
    client_stop(&c);
}

static void test_circuit_5xx_never_opens(void **state)
{
    (void)state;
    NEED_SIM();
    /* building 952 fully usable, but every call of it answered 500 (pings are not calls) */
    assert_int_equal(sim_post("/sim/faults",
                              "{\"buildings\":{\"building:9990000952\":{\"groups\":{"
                              "\"1\":{\"mode\":\"NOR\"},\"2\":{\"link_down\":false}},"
                              "\"call_error\":{\"share\":1,\"status\":500}}}}"),
                     200);
    client c;
    client_start(&c, "--kone-breaker-min-calls=3 --kone-breaker-probe-base-ms=200 "
                     "--kone-breaker-probe-cap-ms=400");
    /* twice the minimum, all failing 500: each one a request (a status), the circuit closed */
    for (int i = 0; i < 6; i++) {
        kd_run *x = run_one(&c, call(B952, "1", 1000, 2, 3000, false), 10000);
        assert_int_equal(x->kone_status, 500);
        expect(x, KD_OUTCOME_FAILED, "500", NULL); /* frees x */
    }
    assert_int_equal(kd_kone_circuit_state(c.k, B952), KD_KONE_CIRCUIT_CLOSED);
    assert_int_equal(stats(&c, B952).circuit_opens, 0);
    assert_int_equal(stats(&c, B952).circuit_refused, 0);
    ok_951(&c);
    /* KONE takes calls again: they go through */
    assert_int_equal(
        sim_post("/sim/faults", "{\"buildings\":{\"building:9990000952\":{\"call_error\":null}}}"),
        200);
    expect(run_one(&c, call(B952, "1", 1000, 2, 3000, false), 10000), KD_OUTCOME_SUCCEEDED, "",
           NULL);
    client_stop(&c);
}

static void test_rate_limit(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    /* share 0: every 429 slows down (the window's decision is the next test's) */
    client_start(&c, "--kone-rate-per-s=5 --kone-rate-burst=5 --kone-rate-slowdown-share=0");
    /* 20 calls at once at 5/s with a burst of 5: 5 go now, 15 wait for a token, the last
     * about 3 s later */
    enum { N = 20 };
    kd_run *r[N];
    for (int i = 0; i < N; i++)
        r[i] = call(B951, "1", 1000 * (1 + i % 4), 2, 5000 + 1000 * (i % 3), false);
    int64_t t0 = kd_mono_us();
    run_all(&c, r, N, 20000);
    int64_t took = kd_mono_us() - t0;
    /* each run's wait for its token is its kone_held_us (what scripts/bench counts as KONE's
     * time, not the worker's): none for the burst's 5, some for the 15 others, the last
     * about 3 s (read before expect() frees the runs) */
    int held = 0;
    int64_t longest = 0;
    for (int i = 0; i < N; i++) {
        held += r[i]->kone_held_us > 0;
        longest = r[i]->kone_held_us > longest ? r[i]->kone_held_us : longest;
    }
    for (int i = 0; i < N; i++)
        expect(r[i], KD_OUTCOME_SUCCEEDED, "", NULL);
    assert_int_equal(held, 15);
    assert_true(longest >= 2500000 && longest <= took);
    assert_int_equal(kd_kone_rate_limit_waits(c.k), 15);
    kd_kone_building_stats s = stats(&c, B951);
    assert_int_equal(s.rate_waits, 15);
    assert_true(s.rate_per_s == 5.0);
    assert_true(took >= 2900000);                  /* tokens cannot come faster than 5/s */
    assert_false(kd_kone_building(c.k, B952, &s)); /* never met */

    /* a 429 halves the building's rate; it then recovers by 0.5/s a second */
    assert_int_equal(sim_post("/sim/faults", "{\"call_error\":{\"share\":1,\"status\":429}}"), 200);
    sleep(1); /* a full bucket again */
    kd_run *x = run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000);
    assert_int_equal(x->kone_status, 429);
    expect(x, KD_OUTCOME_FAILED, "429", NULL);
    s = stats(&c, B951);
    assert_int_equal(s.rate_slowdowns, 1);
    assert_true(s.rate_per_s >= 2.5 && s.rate_per_s < 2.7);
    assert_int_equal(sim_post("/sim/faults", "{\"call_error\":null}"), 200);
    sleep(2);
    s = stats(&c, B951);
    assert_true(s.rate_per_s > 3.2 && s.rate_per_s < 5.0);
    ok_951(&c);
    client_stop(&c);
}

/* A job that gets no token within kone.request_timeout_ms gives up "rate_limited"; its
 * own deadline still applies while it waits. */
static void test_rate_limited_gives_up(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, "--kone-rate-per-s=1 --kone-rate-burst=1 --kone-request-timeout-ms=1500");
    kd_run *r[4];
    for (int i = 0; i < 4; i++)
        r[i] = call(B951, "1", 1000 * (1 + i), 2, 6000, false);
    r[3]->job.deadline = kd_now_us() / 1000 + 700; /* ends while it waits */
    run_all(&c, r, 4, 10000);
    expect(r[0], KD_OUTCOME_SUCCEEDED, "", NULL); /* the burst */
    expect(r[1], KD_OUTCOME_SUCCEEDED, "", NULL); /* a token after 1 s */
    assert_int_equal(r[2]->failure, KD_FAIL_TRANSIENT);
    assert_int_equal(r[2]->started_us, 0);
    expect(r[2], KD_OUTCOME_FAILED, "rate_limited", "rate limit of building:9990000951");
    expect(r[3], KD_OUTCOME_EXPIRED, "expired", NULL);
    assert_int_equal(kd_kone_rate_limit_waits(c.k), 3);
    client_stop(&c);
}

static void test_429_without_a_limit(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, NULL); /* kone.rate_per_s = 0: no limit */
    kd_run *r[4];
    for (int i = 0; i < 4; i++)
        r[i] = call(B951, "1", 1000 * (1 + i), 2, 6000, false);
    run_all(&c, r, 4, 10000);
    for (int i = 0; i < 4; i++)
        expect(r[i], KD_OUTCOME_SUCCEEDED, "", NULL);
    assert_int_equal(kd_kone_rate_limit_waits(c.k), 0);
    assert_true(stats(&c, B951).rate_per_s == 0);

    /* one 429 at the default kone.rate_slowdown_share (50 %): not a share yet (fewer than 32
     * answers), the rate stays unlimited; KONE's partial outage is the concurrency's business */
    sleep(2);
    assert_int_equal(sim_post("/sim/faults", "{\"call_error\":{\"share\":1,\"status\":429}}"), 200);
    expect(run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000), KD_OUTCOME_FAILED, "429",
           NULL);
    kd_kone_building_stats s = stats(&c, B951);
    assert_int_equal(s.rate_slowdowns, 0);
    assert_true(s.rate_per_s == 0);
    /* 31 more: once the window holds 32 answers (the 28th 429, 28 of 32) it slows down, from
     * the rate sent in the last second (up to 32/s), halved; the next calls wait for tokens */
    enum { M = 31 };
    kd_run *m[M];
    for (int i = 0; i < M; i++)
        m[i] = call(B951, "1", 1000 * (1 + i % 4), 2, 5000 + 1000 * (i % 3), false);
    run_all(&c, m, M, 15000);
    for (int i = 0; i < M; i++)
        expect(m[i], KD_OUTCOME_FAILED, "429", NULL);
    assert_int_equal(sim_post("/sim/faults", "{\"call_error\":null}"), 200);
    s = stats(&c, B951);
    assert_int_equal(s.rate_slowdowns, 1);
    assert_true(s.rate_per_s >= 1.0 && s.rate_per_s <= 32.0);
    for (int i = 0; i < 4; i++)
        r[i] = call(B951, "1", 1000 * (1 + i), 2, 6000, false);
    run_all(&c, r, 4, 15000);
    for (int i = 0; i < 4; i++)
        expect(r[i], KD_OUTCOME_SUCCEEDED, "", NULL);
    assert_true(kd_kone_rate_limit_waits(c.k) >= 1);
    client_stop(&c);
}

KS_MAIN(cmocka_unit_test_setup_teardown(test_circuit_link_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_circuit_5xx_never_opens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limited_gives_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_429_without_a_limit, setup, teardown))
