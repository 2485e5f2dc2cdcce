/* Requests of the KONE client that KONE refuses, against the real kone-sim and its
 * `monitor_error` and `call_error` faults (docs/kone-sim.md, Fault injection). KONE answers
 * every request with a status (PROTOCOL.md), a site-monitoring subscription included (kone_sub.c):
 *   - 403 (final): calls go on, their states unfollowed; an accepted call succeeds with a note
 *     saying why, and the next call in the backoff does the same without asking again; once
 *     KONE accepts the subscription again, calls succeed without the note;
 *   - 500 (transient): the call waiting on it fails transient (monitor_failed), not made; a
 *     call in the backoff fails the same way without a request; once the fault is lifted, a
 *     call succeeds;
 *   - 401: the client's token is refused; it takes a new one, connects again, and the waiting
 *     call goes out once the subscription is accepted;
 *   - a renewal refused while the subscription still runs: the client tries again, and a
 *     tracked call that outlasts the subscription still reaches `served`.
 * A call answered 401 (kone_call.c): sent again on a connection with a fresh token; once KONE
 * takes the token it succeeds; refused every time, it fails transient after two re-sends.
 * Same harness as test_worker_kone_sim.c (kone_sim_fixture.h); skipped without kone-sim.
 */
#include "kone_sim_fixture.h"

#define NOTE "call state not followed: site-monitoring subscription of building:9990000951 group 1"

static int setup_debug(void **state)
{
    (void)state;
    return setup_with("--log-level=debug");
}

static int setup_slow_debug(void **state)
{
    (void)state;
    return setup_with2("--sim-speed=1", "--log-level=debug");
}

static void set_fault(const char *spec)
{
    assert_int_equal(sim_post("/sim/faults", spec), 200);
}

/* Waits up to ms for the simulator's log to hold needle at least n times. */
static bool log_reaches(const char *needle, int n, int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        if (count_in_log(needle) >= n)
            return true;
        usleep(10000);
    }
    return count_in_log(needle) >= n;
}

static void test_refused_for_good(void **state)
{
    (void)state;
    NEED_SIM();
    set_fault("{\"monitor_error\":{\"share\":1,\"status\":403}}");
    client c;
    client_start(&c, "");
    kd_run *r = run_one(&c, call(B951, "1", 1000, 2, 5000, true), 20000);
    assert_true(r->written);
    expect(r, KD_OUTCOME_SUCCEEDED, "", NOTE " answered 403 (Forbidden)");
    /* within the backoff: not asked again, the call goes on with the same note */
    expect(run_one(&c, call(B951, "1", 2000, 2, 5000, false), 20000), KD_OUTCOME_SUCCEEDED, "",
           NOTE);
    assert_int_equal(count_in_log("fault: monitor building:9990000951 answered 403"), 1);
    set_fault("{\"monitor_error\":null}");
    usleep(1100000); /* past the first backoff (1 s): the next call asks again */
    kd_run *ok = run_one(&c, call(B951, "1", 3000, 2, 5000, false), 20000);
    assert_null(strstr(ok->error_message, "not followed"));
    expect(ok, KD_OUTCOME_SUCCEEDED, "", NULL);
    client_stop(&c);
}

static void test_refused_transient(void **state)
{
    (void)state;
    NEED_SIM();
    set_fault("{\"monitor_error\":{\"share\":1,\"status\":500}}");
    client c;
    client_start(&c, "");
    kd_run *r = run_one(&c, call(B951, "1", 1000, 2, 5000, false), 20000);
    assert_false(r->written);
    assert_int_equal(r->failure, KD_FAIL_TRANSIENT);
    expect(r, KD_OUTCOME_FAILED, "monitor_failed",
           "answered 500 (Internal Server Error); the call was not made");
    /* within the backoff: failed at once, KONE not asked again */
    r = run_one(&c, call(B951, "1", 2000, 2, 5000, false), 20000);
    assert_false(r->written);
    expect(r, KD_OUTCOME_FAILED, "monitor_failed", "the call was not made");
    assert_int_equal(count_in_log("fault: monitor building:9990000951 answered 500"), 1);
    assert_int_equal(sim_calls_received(), 0);
    set_fault("{\"monitor_error\":null}");
    expect_success_within(&c, B951, "1", 1000, 5000, 40);
    client_stop(&c);
}

static void test_token_refused(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, "");
    int tokens = count_in_log("POST /api/v2/oauth2/token 200");
    assert_true(tokens >= 1);
    set_fault("{\"monitor_error\":{\"share\":1,\"status\":401}}");
    kd_run *r = call(B951, "1", 1000, 2, 5000, false);
    int want = submit(&c, r);
    /* the 401 makes the client take a new token; then KONE accepts the subscription */
    assert_true(log_reaches("fault: monitor building:9990000951 answered 401", 1, 10000));
    set_fault("{\"monitor_error\":null}");
    assert_true(log_reaches("POST /api/v2/oauth2/token 200", tokens + 1, 10000));
    assert_true(wait_for(&obs.done, want, 20000));
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);
    client_stop(&c);
}

static void test_renewal_refused(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, "--kone-monitor-duration-s=1 --kone-call-timeout-ms=30000");
    kd_run *r = call(B951, "1", 1000, 2, 3000, true);
    int want = submit(&c, r);
    assert_true(wait_for(&obs.n, 1, 10000)); /* subscribed: the call's first state came */
    set_fault("{\"monitor_error\":{\"share\":1,\"status\":500}}");
    /* the renewal at 80 % of the duration is refused; the subscription runs to its end */
    assert_true(log_reaches("fault: monitor building:9990000951 answered 500", 1, 5000));
    set_fault("{\"monitor_error\":null}");
    assert_true(wait_for(&obs.done, want, 30000));
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);
    pthread_mutex_lock(&obs.mu);
    bool served = obs.n > 0 && !strcmp(obs.states[obs.n - 1], "served");
    pthread_mutex_unlock(&obs.mu);
    assert_true(served);
    client_stop(&c);
}

static void test_call_token_refused(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, "");
    int tokens = count_in_log("POST /api/v2/oauth2/token 200");
    set_fault("{\"call_error\":{\"share\":1,\"status\":401}}");
    /* refused every time: sent again twice, each time on a connection opened anew (with a
     * fresh token when that connection's token was the one refused), then failed transient */
    kd_run *r = run_one(&c, call(B951, "1", 1000, 2, 5000, false), 30000);
    assert_int_equal(r->failure, KD_FAIL_TRANSIENT);
    expect(r, KD_OUTCOME_FAILED, "401", "KONE refused the token (401) 3 times");
    assert_int_equal(count_in_log("fault: action building:9990000951 group 1 answered 401"), 3);
    assert_true(count_in_log("POST /api/v2/oauth2/token 200") > tokens);
    /* refused once: sent again with a fresh token, and it succeeds */
    r = call(B951, "1", 2000, 2, 5000, false);
    int want = submit(&c, r);
    assert_true(log_reaches("fault: action building:9990000951 group 1 answered 401", 4, 10000));
    set_fault("{\"call_error\":null}");
    assert_true(wait_for(&obs.done, want, 20000));
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);
    client_stop(&c);
}

KS_MAIN(cmocka_unit_test_setup_teardown(test_refused_for_good, setup_debug, teardown),
        cmocka_unit_test_setup_teardown(test_refused_transient, setup_debug, teardown),
        cmocka_unit_test_setup_teardown(test_token_refused, setup_debug, teardown),
        cmocka_unit_test_setup_teardown(test_renewal_refused, setup_slow_debug, teardown),
        cmocka_unit_test_setup_teardown(test_call_token_refused, setup_debug, teardown))
