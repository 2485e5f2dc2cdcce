/* The worker's KONE client against the real kone-sim binary (docs/kone-sim.md): every row of
 * the simulator's rejection table that a job can reach, tracking with transfers, hold_open,
 * delete, a simulator restart (tokens and sessions gone), connections closed by the server's
 * age limit mid-call, and keep-alive against the idle limit.
 *
 * kone-sim is looked up next to this test binary (both are built into the same directory);
 * without it every test is skipped. A throwaway self-signed certificate for 127.0.0.1 is
 * made with OpenSSL at start (in a child process) and trusted through kone.ca_file:
 * verification stays on.
 */
#include "kone_sim_fixture.h"

static void test_rejection_table(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, NULL);
    kd_run *r = run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000);
    assert_true(r->session_id > 0);
    assert_int_equal(r->kone_status, 201);
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);

    expect(run_one(&c, call(B951, "1", 1000, 200, 5000, false), 10000), KD_OUTCOME_REJECTED,
           "ignored_call", "Ignoring call, unknown call action: 200");
    expect(run_one(&c, call(B951, "1", 1000, 0, 5000, false), 10000), KD_OUTCOME_REJECTED,
           "ignored_call", "UNDEFINED");
    expect(run_one(&c, call(B951, "1", 1000, 4, 5000, false), 10000), KD_OUTCOME_REJECTED,
           "ignored_call", "disabled call action: 4");
    expect(run_one(&c, call(B951, "1", 1000, 2002, 0, false), 10000), KD_OUTCOME_REJECTED,
           "INVALID_DIRECTION", NULL);
    kd_run *d = call(B951, "1", 1000, 2, 5000, false);
    d->job.has_delay = true;
    d->job.delay = 31;
    expect(run_one(&c, d, 10000), KD_OUTCOME_REJECTED, "400", "Invalid json payload");
    expect(run_one(&c, call(B951, "1", 3000, 2, 3000, false), 10000), KD_OUTCOME_REJECTED,
           "SAME_SOURCE_AND_DEST_FLOOR", NULL);
    expect(run_one(&c, call(B951, "1", 1000, 2, 1010, false), 10000), KD_OUTCOME_REJECTED,
           "SAME_SOURCE_AND_DEST_FLOOR", NULL);
    expect(run_one(&c, call(B951, "1", 1000, 2, 99000, false), 10000), KD_OUTCOME_REJECTED,
           "ignored_call", "unable to resolve destination: area:99000");
    expect(run_one(&c, call(B951, "1", 1000, 2, 0, false), 10000), KD_OUTCOME_REJECTED,
           "ignored_call", "destination not defined");
    expect(run_one(&c, call(B951, "1", 98000, 2, 5000, false), 10000), KD_OUTCOME_REJECTED,
           "ignored_call", "unable to resolve area: area:98000");
    expect(run_one(&c, call("building:9990000999", "1", 1000, 2, 5000, false), 10000),
           KD_OUTCOME_REJECTED, "404", "Building data not found");
    expect(run_one(&c, call(B951, "7", 1000, 2, 5000, false), 10000), KD_OUTCOME_REJECTED, "404",
           "Group data not found");
    /* a group in OSS since before the connection subscribed (no lift status heard yet: the
     * worker cannot know): kone-sim, with no refusal text of its own, cancels the call */
    expect(run_one(&c, call(B952, "1", 1000, 2, 3000, false), 10000), KD_OUTCOME_REJECTED,
           "NO_LIFT_AVAILABLE", "NO_LIFT_AVAILABLE");
    expect(run_one(&c, call(B951, "1", 9000, 2, 5000, false), 10000), KD_OUTCOME_REJECTED,
           "FLOOR_IS_LOCKED", "FLOOR_IS_LOCKED");
    kd_run *nl = call(B951, "1", 1000, 2, 5000, false);
    nl->job.n_allowed_lifts = 1;
    nl->job.allowed_lifts[0] = 1002010;
    expect(run_one(&c, nl, 10000), KD_OUTCOME_REJECTED, "NO_LIFT_AVAILABLE", NULL);
    /* site link down: 201 and nothing else */
    r = run_one(&c, call(B952, "2", 1000, 2, 3000, false), 10000);
    assert_int_equal(r->kone_status, 201);
    expect(r, KD_OUTCOME_UNKNOWN, "1005", "link");

    kd_run *h = call(B951, "1", 0, 0, 0, false);
    h->job.op = KD_OP_HOLD_OPEN;
    h->job.lift_deck = 1001010;
    h->job.served_area = 5000;
    h->job.has_hard_time = true;
    h->job.hard_time = 2;
    h->job.has_soft_time = true;
    h->job.soft_time = 2;
    expect(run_one(&c, h, 10000), KD_OUTCOME_SUCCEEDED, "", NULL);
    /* a hold_open KONE refuses in its result frame (a deck that does not exist) */
    h = call(B951, "1", 0, 0, 0, false);
    h->job.op = KD_OP_HOLD_OPEN;
    h->job.lift_deck = 1009999;
    h->job.served_area = 5000;
    h->job.has_hard_time = true;
    h->job.hard_time = 2;
    expect(run_one(&c, h, 10000), KD_OUTCOME_REJECTED, "ignored_call",
           "unable to resolve lift deck: 1009999");
    client_stop(&c);
}

static void test_tracked_transfer(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, NULL);
    kd_run *r = run_one(&c, call(B951, "1", 3000, 2, 15000, true), 20000);
    int64_t sid = r->session_id;
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);
    /* assertions run on a copy: a failed one must not leave obs.mu held for the next test */
    pthread_mutex_lock(&obs.mu);
    __typeof__(obs) o = obs;
    pthread_mutex_unlock(&obs.mu);
    const char *want[] = {"being_allocated", "being_served", "served_soon", "served"};
    int w = 0;
    for (int i = 0; i < o.n; i++) {
        assert_int_equal(o.session_ids[i], sid);
        assert_true(o.has_mod[i]);
        assert_int_equal(o.mod[i], 11000);
        if (w < 4 && !strcmp(o.states[i], want[w]))
            w++;
    }
    assert_int_equal(w, 4);
    assert_string_equal(o.states[o.n - 1], "served");
    client_stop(&c);
}

/* A group switched to out-of-service and back during a run: while it is in OSS its jobs are
 * rejected group_mode and never reach kone-sim; afterwards they succeed again. */
static void test_group_mode(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, "--kone-connections=1");
    expect(run_one(&c, call(B951, "2", 15000, 2, 16000, false), 10000), KD_OUTCOME_SUCCEEDED, "",
           NULL); /* the connection now follows group 2's lift status */
    const char *oss = "{\"buildings\":{\"building:9990000951\":{\"groups\":{\"2\":"
                      "{\"mode\":\"OSS\"}}}}}";
    assert_int_equal(sim_post("/sim/faults", oss), 200);
    /* the status event and the next job race: wait until the worker has seen the mode */
    kd_run *r = NULL;
    for (int i = 0; i < 50; i++) {
        r = run_one(&c, call(B951, "2", 15000, 2, 16000, false), 10000);
        if (!strcmp(r->error_code, "group_mode"))
            break;
        free(r);
        r = NULL;
        usleep(100000);
    }
    assert_non_null(r);
    long before = sim_calls_received();
    expect(r, KD_OUTCOME_REJECTED, "group_mode", "OSS");
    for (int i = 0; i < 3; i++)
        expect(run_one(&c, call(B951, "2", 15000, 2, 16000, false), 10000), KD_OUTCOME_REJECTED,
               "group_mode", "lift_mode -1");
    assert_true(before > 0);
    assert_int_equal(sim_calls_received(), before); /* never called while in OSS */
    /* group 1 of the same building is not affected */
    expect(run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000), KD_OUTCOME_SUCCEEDED, "",
           NULL);
    const char *nor = "{\"buildings\":{\"building:9990000951\":{\"groups\":{\"2\":"
                      "{\"mode\":\"NOR\"}}}}}";
    assert_int_equal(sim_post("/sim/faults", nor), 200);
    expect_success_within(&c, B951, "2", 15000, 16000, 50);
    client_stop(&c);
}

static void test_delete(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, NULL);
    kd_run *r = call(B951, "1", 1000, 2, 5000, true);
    r->job.has_delay = true;
    r->job.delay = 30; /* 1.5 s at speed 20: still being allocated when the delete comes */
    kd_kone_submit(c.k, r);
    assert_true(wait_for(&obs.n, 1, 10000));
    pthread_mutex_lock(&obs.mu);
    int64_t sid = obs.session_ids[0];
    pthread_mutex_unlock(&obs.mu);
    kd_run *x = call(B951, "1", 0, 0, 0, false);
    x->job.op = KD_OP_CANCEL;
    x->job.session_id = sid;
    kd_kone_submit(c.k, x);
    assert_true(wait_for(&obs.done, 2, 10000));
    expect(x, KD_OUTCOME_SUCCEEDED, "", NULL);
    expect(r, KD_OUTCOME_REJECTED, "CALL_DELETED", NULL);
    client_stop(&c);
}

static void test_many_in_flight(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, "--kone-connections=3");
    /* KD_SIM_LOAD_N=5000 turns this into a small load test */
    int n = getenv("KD_SIM_LOAD_N") ? atoi(getenv("KD_SIM_LOAD_N")) : 40;
    if (n < 1)
        n = 40;
    kd_run **runs = calloc((size_t)n, sizeof *runs);
    assert_non_null(runs);
    int64_t t0 = kd_mono_us();
    for (int i = 0; i < n; i++) { /* floors 1-4 to 5-7 (9000 is locked) */
        runs[i] = call(B951, "1", 1000 * (1 + i % 4), 2, 5000 + 1000 * (i % 3), i % 4 == 0);
        kd_kone_submit(c.k, runs[i]);
    }
    assert_true(wait_for(&obs.done, n, 60000 + n * 20));
    int64_t rtt_sum = 0;
    for (int i = 0; i < n; i++) {
        rtt_sum += runs[i]->kone_rtt_us;
        expect(runs[i], KD_OUTCOME_SUCCEEDED, "", NULL);
    }
    if (n > 40)
        fprintf(stderr, "%d calls in %.2f s, mean answer time %.2f ms\n", n,
                (double)(kd_mono_us() - t0) / 1e6, (double)rtt_sum / n / 1000.0);
    free(runs);
    assert_int_equal(count_in_log("opened client=kd-dev"), 3); /* no connection per job */
    client_stop(&c);
}

static void test_sim_restart(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, "--kone-connections=1");
    expect(run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000), KD_OUTCOME_SUCCEEDED, "",
           NULL);
    /* tokens and sessions live in the simulator's memory only: a restart loses both */
    sim_stop();
    sim_start(NULL, NULL);
    expect(run_one(&c, call(B951, "1", 2000, 2, 6000, false), 15000), KD_OUTCOME_SUCCEEDED, "",
           NULL);
    assert_true(kd_kone_ready(c.k));
    client_stop(&c);
}

static void test_server_closes_mid_call(void **state)
{
    (void)state;
    NEED_SIM();
    sim_stop();
    /* every connection closed by the server after 2 s; the model at speed 2, so the call
     * below (6 s delay, 5 floors of travel) lives through several closes */
    sim_start("--sim-max-conn-s=2", "--sim-speed=2");
    client c;
    client_start(&c, "--kone-connections=1");
    kd_run *r = call(B951, "1", 6000, 2, 1000, true);
    r->job.has_delay = true;
    r->job.delay = 6;
    r = run_one(&c, r, 30000);
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);
    pthread_mutex_lock(&obs.mu);
    __typeof__(obs) o = obs;
    pthread_mutex_unlock(&obs.mu);
    const char *want[] = {"being_allocated", "being_served", "served_soon", "served"};
    int w = 0;
    for (int i = 0; i < o.n; i++)
        if (w < 4 && !strcmp(o.states[i], want[w]))
            w++;
    assert_int_equal(w, 4);
    assert_true(count_in_log("Maximum connection duration reached") >= 2);
    assert_true(count_in_log("session taken over") + count_in_log("opened client=kd-dev") >= 3);
    client_stop(&c);
}

static void test_keepalive(void **state)
{
    (void)state;
    NEED_SIM();
    sim_stop();
    sim_start("--sim-idle-timeout-s=2", NULL);
    client c;
    /* no call yet: the connections ping the building of kone.buildings, as KONE documents
     * a ping (common-api with a buildingId) */
    client_start(&c, "--kone-keepalive-s=1 --kone-buildings=9990000951");
    for (int i = 0; i < 300 && count_in_log("opened client=kd-dev") < 2; i++)
        usleep(10000); /* both connections of the default pool */
    int opened = count_in_log("opened client=kd-dev");
    assert_int_equal(opened, 2);
    sleep(5);
    assert_int_equal(count_in_log("Idle timeout"), 0);
    assert_int_equal(count_in_log("request without buildingId"), 0);
    assert_int_equal(count_in_log("opened client=kd-dev"), opened);
    expect(run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000), KD_OUTCOME_SUCCEEDED, "",
           NULL);
    client_stop(&c);

    /* without kone.buildings, a connection that made no call has no building to ping: it is
     * left idle, KONE closes it, and it is opened again (docs/kone-client.md) */
    sim_stop();
    sim_start("--sim-idle-timeout-s=1", NULL);
    client_start(&c, "--kone-keepalive-s=1 --kone-connections=1");
    for (int i = 0; i < 600 && count_in_log("Idle timeout") < 1; i++)
        usleep(10000);
    assert_true(count_in_log("Idle timeout") >= 1);
    assert_int_equal(count_in_log("request without buildingId"), 0);
    expect(run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000), KD_OUTCOME_SUCCEEDED, "",
           NULL);
    client_stop(&c);
}

static void test_faults(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, "--kone-connections=2");

    /* call errors: 429 and 500 are transient */
    assert_int_equal(sim_post("/sim/faults", "{\"call_error\":{\"share\":1,\"status\":429}}"), 200);
    kd_run *r = run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000);
    assert_int_equal(r->kone_status, 429);
    expect(r, KD_OUTCOME_FAILED, "429", NULL);
    assert_int_equal(sim_post("/sim/faults", "{\"call_error\":{\"share\":1,\"status\":500}}"), 200);
    expect(run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000), KD_OUTCOME_FAILED, "500",
           NULL);
    assert_int_equal(sim_post("/sim/faults", "{\"call_error\":null}"), 200);

    /* latency: measured in kone_rtt_us */
    assert_int_equal(sim_post("/sim/faults", "{\"latency_ms\":300}"), 200);
    r = run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000);
    assert_true(r->kone_rtt_us >= 298000); /* the simulator's clock counts whole ms */
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);
    assert_int_equal(sim_post("/sim/faults", "{\"latency_ms\":0}"), 200);

    /* a dropped connection (no close frame) in the middle of a tracked call */
    r = call(B951, "1", 1000, 2, 8000, true);
    r->job.has_delay = true;
    r->job.delay = 20; /* 1 s at speed 20 */
    kd_kone_submit(c.k, r);
    assert_true(wait_for(&obs.n, 1, 10000));
    pthread_mutex_lock(&obs.mu);
    int want = obs.done + 1;
    pthread_mutex_unlock(&obs.mu);
    assert_int_equal(sim_post("/sim/drop-connections", NULL), 200);
    assert_true(wait_for(&obs.done, want, 20000));
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);

    /* an outage: connections dropped and upgrades refused (503). Jobs wait, then fail
     * transient when no connection comes within kone.request_timeout_ms (5 s); once the
     * simulator takes connections again the client is back on its own. */
    assert_int_equal(sim_post("/sim/faults", "{\"refuse_upgrades\":true}"), 200);
    assert_int_equal(sim_post("/sim/drop-connections", NULL), 200);
    for (int i = 0; i < 200 && kd_kone_ready(c.k); i++)
        usleep(10000);
    assert_false(kd_kone_ready(c.k));
    expect(run_one(&c, call(B951, "1", 1000, 2, 5000, false), 15000), KD_OUTCOME_FAILED,
           "no_connection", NULL);
    kd_run *w = call(B951, "1", 2000, 2, 5000, false); /* waits through the end of it */
    pthread_mutex_lock(&obs.mu);
    want = obs.done + 1;
    pthread_mutex_unlock(&obs.mu);
    kd_kone_submit(c.k, w);
    usleep(500000);
    assert_int_equal(sim_post("/sim/faults", "{\"refuse_upgrades\":false}"), 200);
    assert_true(wait_for(&obs.done, want, 15000));
    expect(w, KD_OUTCOME_SUCCEEDED, "", NULL);
    assert_true(kd_kone_ready(c.k));
    client_stop(&c);

    /* short-lived tokens: refreshed before they lapse (margin capped at half the life) */
    assert_int_equal(sim_post("/sim/faults", "{\"token_ttl_s\":4}"), 200);
    int fetched = count_in_log("oauth2/token 200");
    client_start(&c, "--kone-connections=1");
    sleep(5);
    assert_true(count_in_log("oauth2/token 200") >= fetched + 3);
    /* the token endpoint down: the token held still serves; a reconnect still works */
    assert_int_equal(sim_post("/sim/faults", "{\"token_ttl_s\":0,\"token_down\":true}"), 200);
    expect(run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000), KD_OUTCOME_SUCCEEDED, "",
           NULL);
    assert_int_equal(sim_post("/sim/faults", "{\"token_down\":false}"), 200);
    client_stop(&c);

    /* random drops: every job gets exactly one outcome, transient when it failed (frames
     * written into a dropped connection are never executed and never answered), and the
     * client keeps going */
    assert_int_equal(sim_post("/sim/faults", "{\"drop_probability\":0.03,\"seed\":7}"), 200);
    client_start(&c, "--kone-connections=2");
    enum { N = 60 };
    kd_run *runs[N];
    for (int i = 0; i < N; i++) {
        runs[i] = call(B951, "1", 1000 * (1 + i % 4), 2, 5000 + 1000 * (i % 3), false);
        kd_kone_submit(c.k, runs[i]);
    }
    assert_true(wait_for(&obs.done, N, 60000));
    for (int i = 0; i < N; i++) {
        kd_run *x = runs[i];
        /* a call accepted before the drop and lost track of is `unknown`, never retried */
        bool fine =
            x->outcome == KD_OUTCOME_SUCCEEDED ||
            (x->outcome == KD_OUTCOME_FAILED && x->failure == KD_FAIL_TRANSIENT &&
             (!strcmp(x->error_code, "timeout") || !strcmp(x->error_code, "no_connection") ||
              !strcmp(x->error_code, "session_lost"))) ||
            (x->outcome == KD_OUTCOME_UNKNOWN && x->failure == KD_FAIL_FINAL &&
             (!strcmp(x->error_code, "result_lost") || !strcmp(x->error_code, "session_lost")));
        if (!fine || getenv("KD_TEST_VERBOSE"))
            fprintf(stderr, "drop run %d: %s %s (%s)\n", i, kd_outcome_name(x->outcome),
                    x->error_code, x->error_message);
        assert_true(fine);
        free(x);
    }
    assert_int_equal(sim_post("/sim/faults", "{\"drop_probability\":0}"), 200);
    expect(run_one(&c, call(B951, "1", 1000, 2, 5000, false), 15000), KD_OUTCOME_SUCCEEDED, "",
           NULL);
    assert_int_equal(sim_post("/sim/faults/reset", NULL), 200);
    client_stop(&c);
}

/* KONE slower than kone.request_timeout_ms (kone-sim's latency): the group's configuration
 * fetch and its site-monitoring subscription go unanswered, and the job gives up transient
 * with nothing written (safe to retry: no call was made); once KONE answers in time again,
 * both are asked anew and the next call succeeds. */
static void test_unanswered_subscription_and_config(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, "--kone-request-timeout-ms=200");
    assert_int_equal(sim_post("/sim/faults", "{\"latency_ms\":1000}"), 200);
    kd_run *r = run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000);
    if (getenv("KD_TEST_VERBOSE"))
        fprintf(stderr, "slow KONE: %s %s (%s)\n", kd_outcome_name(r->outcome), r->error_code,
                r->error_message);
    assert_int_equal(r->outcome, KD_OUTCOME_FAILED);
    assert_int_equal(r->failure, KD_FAIL_TRANSIENT);
    assert_string_equal(r->error_code, "timeout"); /* KONE was slow: not "no_connection" */
    assert_false(r->written);
    free(r);
    assert_int_equal(sim_post("/sim/faults/reset", NULL), 200);
    /* the subscription is asked again after its backoff */
    expect_success_within(&c, B951, "1", 1000, 5000, 40);
    client_stop(&c);
}

/* kone.track_timeout_ms shorter than a tracked call: a call still waiting for its lift (held
 * by its delay) when the time is up is cancelled (1005, retryable) rather than followed
 * forever, and the job says in which state tracking stopped. */
static void test_tracking_stops_at_its_timeout(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, "--kone-track-timeout-ms=2000");
    kd_run *r = call(B951, "1", 1000, 2, 15000, true);
    r->job.has_delay = true;
    r->job.delay = 5; /* 5 s in being_allocated at speed 1 */
    r = run_one(&c, r, 30000);
    if (getenv("KD_TEST_VERBOSE"))
        fprintf(stderr, "held: %s %s (%s)\n", kd_outcome_name(r->outcome), r->error_code,
                r->error_message);
    assert_string_equal(r->error_code, "1005");
    assert_non_null(strstr(r->error_message, "tracking stopped after 2000 ms in state "
                                             "'being_allocated'"));
    assert_int_equal(r->outcome, KD_OUTCOME_FAILED);
    assert_int_equal(r->failure, KD_FAIL_TRANSIENT);
    free(r);
    client_stop(&c);
}

static void copy_stats(const kd_kone_building_stats *s, void *arg)
{
    *(kd_kone_building_stats *)arg = *s;
}

/* kone-sim at a slower pace, so that a tracked call outlasts a short subscription. */
static int setup_slow(void **state)
{
    (void)state;
    return setup_with("--sim-speed=1");
}

/* kone.monitor_duration_s=1: the site-monitoring subscription of a tracked call that outlasts
 * it is renewed, so the call's states keep coming until `served`; once no call uses it, it is
 * let lapse, and the next call of that group makes it anew. */
static void test_subscription_renewed_then_lapses(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    int64_t t0 = kd_mono_us();
    client_start(&c, "--kone-monitor-duration-s=1 --kone-call-timeout-ms=30000");
    if (getenv("KD_TEST_VERBOSE"))
        fprintf(stderr, "ready after %lld ms\n", (long long)((kd_mono_us() - t0) / 1000));
    t0 = kd_mono_us();
    kd_run *r = run_one(&c, call(B951, "1", 1000, 2, 3000, true), 30000);
    int64_t took = kd_mono_us() - t0;
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);
    pthread_mutex_lock(&obs.mu);
    bool served = obs.n > 0 && !strcmp(obs.states[obs.n - 1], "served");
    pthread_mutex_unlock(&obs.mu);
    assert_true(served);
    if (getenv("KD_TEST_VERBOSE"))
        fprintf(stderr, "tracked call took %lld ms\n", (long long)(took / 1000));
    usleep(1500000); /* unused for longer than its duration: it lapses */
    expect(run_one(&c, call(B951, "1", 2000, 2, 3000, false), 30000), KD_OUTCOME_SUCCEEDED, "",
           NULL);
    /* the client keeps the one building it called, its circuit closed */
    kd_kone_building_stats seen = {0};
    assert_int_equal(kd_kone_buildings(c.k, copy_stats, &seen), 1);
    assert_string_equal(seen.building, B951);
    assert_int_equal(seen.circuit, KD_KONE_CIRCUIT_CLOSED);
    assert_int_equal(seen.circuit_opens, 0);
    assert_int_equal(kd_kone_buildings(NULL, copy_stats, &seen), 0);
    if (getenv("KD_TEST_VERBOSE"))
        fprintf(stderr, "second call done after %lld ms\n",
                (long long)((kd_mono_us() - t0) / 1000));
    client_stop(&c);
}

KS_MAIN(cmocka_unit_test_setup_teardown(test_rejection_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tracked_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sim_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_closes_mid_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscription_renewed_then_lapses, setup_slow,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unanswered_subscription_and_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tracking_stops_at_its_timeout, setup_slow, teardown))
