/* Scopes follow the buildings (docs/kone-client.md "Tokens and scopes"), against the real
 * kone-sim capping the buildings of one token (sim.max_token_buildings, as KONE does):
 *   - 30 buildings in kone.buildings at 20 per token: the worker holds two tokens, each with
 *     its own connection, and every building's call goes out on a connection whose token
 *     covers it (kone-sim answers 403 otherwise): all 30 succeed;
 *   - a building outside kone.buildings is rejected `scope` before any call (kone-sim's call
 *     log does not move);
 *   - the same 30 buildings in one token: kone-sim refuses the token, so the cap is real;
 *   - kone.discover_buildings with kone.buildings empty: the worker learns the 30 from
 *     kone-sim's /api/v2/application/self/resources (application/inventory token), splits
 *     them over two tokens and all 30 calls succeed; a client without application/inventory
 *     does not start, naming the refusal;
 *   - kone.robotcall_buildings: a client granted only robotcall/building:<id> (kd-robot) gets
 *     its calls through when the building is listed there (the token asks robotcall); listed
 *     in kone.buildings instead (callgiving asked), kone-sim refuses the token.
 * Same harness as test_worker_kone_sim.c (kone_sim_fixture.h); skipped without kone-sim.
 */
#include "kone_sim_fixture.h"

#define N_BLD 30
#define FIRST_ID 9000001

static char bld_file[256], cli_file[256];

/* A buildings file of N_BLD copies of kone-sim's default building (ids FIRST_ID...) and a
 * clients file whose kd-multi may call all of them. */
static void write_world(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/sim/buildings.json", sim.src);
    json_t *doc = json_load_file(path, 0, NULL);
    assert_non_null(doc);
    json_t *one = json_array_get(json_object_get(doc, "buildings"), 0);
    json_t *list = json_array(), *scopes = json_pack("[s]", "application/inventory");
    for (int i = 0; i < N_BLD; i++) {
        json_t *b = json_deep_copy(one);
        char id[48];
        snprintf(id, sizeof id, "building:%d", FIRST_ID + i);
        json_object_set_new(b, "id", json_string(id));
        json_array_append_new(list, b);
        char scope[64];
        snprintf(scope, sizeof scope, "callgiving/%s", id);
        json_array_append_new(scopes, json_string(scope));
    }
    json_t *w = json_pack("{s:o}", "buildings", list);
    char robot[64];
    snprintf(robot, sizeof robot, "robotcall/building:%d", FIRST_ID);
    json_t *c = json_pack(
        "[{s:s,s:s,s:o},{s:s,s:s,s:[s]},{s:s,s:s,s:[s]},{s:s,s:s,s:[s]}]", "client_id", "kd-multi",
        "client_secret", "kd-multi-secret", "scopes", scopes, "client_id", "kd-robot",
        "client_secret", "kd-robot-secret", "scopes", robot, "client_id", "kd-blind",
        "client_secret", "kd-blind-secret", "scopes", "callgiving/building:9000001", "client_id",
        "kd-empty", "client_secret", "kd-empty-secret", "scopes", "application/inventory");
    snprintf(bld_file, sizeof bld_file, "/tmp/kd-tokens-%d-buildings.json", (int)getpid());
    snprintf(cli_file, sizeof cli_file, "/tmp/kd-tokens-%d-clients.json", (int)getpid());
    assert_int_equal(json_dump_file(w, bld_file, 0), 0);
    assert_int_equal(json_dump_file(c, cli_file, 0), 0);
    json_decref(w);
    json_decref(c);
    json_decref(doc);
}

/* The flags every client here shares, for client id `who` (secret "<who>-secret"). */
static int base_flags(char (*a)[300], const char *who)
{
    int n = 0;
    snprintf(a[n++], 300, "test");
    snprintf(a[n++], 300, "--kone-token-url=https://127.0.0.1:%d/api/v2/oauth2/token", sim.port);
    snprintf(a[n++], 300, "--kone-ws-url=wss://127.0.0.1:%d/stream-v2", sim.port);
    snprintf(a[n++], 300, "--kone-client-id=%s", who);
    snprintf(a[n++], 300, "--kone-client-secret=%s-secret", who);
    snprintf(a[n++], 300, "--kone-ca-file=%s", sim.cert);
    snprintf(a[n++], 300, "--kone-request-timeout-ms=3000");
    snprintf(a[n++], 300, "--kone-call-timeout-ms=2000");
    snprintf(a[n++], 300, "--kone-connections=2");
    return n;
}

/* The client of kd-multi serving all N_BLD buildings at per_token a token; listed in
 * kone.buildings, or learned from kone-sim's resources list (discover). */
static void start_multi(client *c, int per_token, bool discover)
{
    char a[24][300];
    int n = base_flags(a, "kd-multi");
    snprintf(a[n++], 300, "--kone-buildings-per-token=%d", per_token);
    if (discover) {
        snprintf(a[n++], 300, "--kone-discover-buildings=true");
    } else {
        int len = snprintf(a[n], 300, "--kone-buildings=");
        for (int i = 0; i < N_BLD; i++)
            len += snprintf(a[n] + len, 300 - (size_t)len, "%s%d", i ? "," : "", FIRST_ID + i);
        n++;
    }
    client_launch(c, a, n);
}

static int setup_world(void **state)
{
    (void)state;
    if (!sim.have)
        return 0;
    write_world();
    setenv("KD_SIM_MAX_TOKEN_BUILDINGS", "20", 1);
    sim.port = free_port();
    unlink(sim.log);
    char b[300], c[300];
    snprintf(b, sizeof b, "--sim-buildings=%s", bld_file);
    snprintf(c, sizeof c, "--sim-clients=%s", cli_file);
    sim_start(b, c);
    return 0;
}

static int teardown_world(void **state)
{
    (void)state;
    sim_stop();
    unsetenv("KD_SIM_MAX_TOKEN_BUILDINGS");
    unlink(bld_file);
    unlink(cli_file);
    return 0;
}

/* Every one of the N_BLD buildings called once on client c: all must succeed (a call on a
 * connection whose token lacks the building gets 403). */
static void call_all(client *c)
{
    for (int i = 0; i < 2000 && !kd_kone_ready(c->k); i++)
        usleep(10000);
    assert_true(kd_kone_ready(c->k));
    kd_run *runs[N_BLD];
    pthread_mutex_lock(&obs.mu);
    int want = obs.done + N_BLD;
    pthread_mutex_unlock(&obs.mu);
    for (int i = 0; i < N_BLD; i++) {
        char id[48];
        snprintf(id, sizeof id, "building:%d", FIRST_ID + i);
        runs[i] = call(id, "1", 1000, 2, 5000, false);
        kd_kone_submit(c->k, runs[i]);
    }
    assert_true(wait_for(&obs.done, want, 60000));
    for (int i = 0; i < N_BLD; i++) /* a call on the wrong token's connection gets 403 */
        expect(runs[i], KD_OUTCOME_SUCCEEDED, "", NULL);
    assert_int_equal(count_in_log("Too many buildings"), 0);
}

static void test_two_tokens_route(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    start_multi(&c, 20, false);
    call_all(&c);
    assert_true(count_in_log("opened client=kd-multi") >= 2);

    /* a building no token covers: rejected before any call */
    long before = sim_calls_received();
    assert_true(before >= N_BLD);
    expect(run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000), KD_OUTCOME_REJECTED, "scope",
           "not in kone.buildings");
    assert_int_equal(sim_calls_received(), before);
    client_stop(&c);
}

/* Without the split, kone-sim (like KONE) refuses a token carrying all 30 buildings. */
static void test_one_token_is_refused(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    start_multi(&c, 0, false);
    kd_run *r = run_one(&c, call("building:9000001", "1", 1000, 2, 5000, false), 15000);
    assert_true(count_in_log("Too many buildings") == 0); /* the sim answers, logs nothing */
    expect(r, KD_OUTCOME_FAILED, "no_connection", "Too many buildings in one token");
    client_stop(&c);
}

/* kone.buildings empty, kone.discover_buildings on: the 30 come from kone-sim's resources
 * list, split over two tokens like listed ones; a building it does not list is refused. */
static void test_discover_buildings(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    start_multi(&c, 20, true);
    call_all(&c);
    assert_int_equal(count_in_log("GET /api/v2/application/self/resources 200 client=kd-multi"), 1);
    assert_true(count_in_log("opened client=kd-multi") >= 2); /* two tokens' connections */
    expect(run_one(&c, call(B951, "1", 1000, 2, 5000, false), 10000), KD_OUTCOME_REJECTED, "scope",
           NULL);
    client_stop(&c);

    /* a client whose token may not list its resources: the worker does not start */
    char a[24][300];
    int n = base_flags(a, "kd-blind");
    snprintf(a[n++], 300, "--kone-discover-buildings=true");
    kd_err err = {0};
    char *argv[24];
    for (int i = 0; i < n; i++)
        argv[i] = a[i];
    assert_int_equal(kd_config_load(&c.cfg, KD_PROG_WORKER, "test", n, argv, &err), 0);
    kd_kone_hooks hooks = {.done = on_done, .call_event = on_event, .arg = NULL};
    assert_int_not_equal(kd_kone_start(&c.k, &c.cfg, &hooks, &err), 0);
    assert_non_null(strstr(err.msg, "kone.discover_buildings"));
    assert_non_null(strstr(err.msg, "invalid_scope"));
    assert_null(strstr(err.msg, "kd-blind-secret"));
    kd_config_free(&c.cfg);
}

/* kd_kone_start of client `who` with kone.discover_buildings on: must fail; its error. */
static void discover_fails(const char *who, kd_err *err)
{
    char a[24][300];
    int n = base_flags(a, who);
    snprintf(a[n++], 300, "--kone-discover-buildings=true");
    char *argv[24];
    for (int i = 0; i < n; i++)
        argv[i] = a[i];
    client c;
    assert_int_equal(kd_config_load(&c.cfg, KD_PROG_WORKER, "test", n, argv, err), 0);
    kd_kone_hooks hooks = {.done = on_done, .call_event = on_event, .arg = NULL};
    assert_int_not_equal(kd_kone_start(&c.k, &c.cfg, &hooks, err), 0);
    kd_config_free(&c.cfg);
}

/* kone.discover_buildings when KONE cannot give the list: an application KONE lists no building
 * for does not start; nor does one whose token endpoint is down (503), after three tries a
 * second apart (KONE may be starting too). Each error names the setting and the reason. */
static void test_discover_fails(void **state)
{
    (void)state;
    NEED_SIM();
    kd_err err = {0};
    discover_fails("kd-empty", &err);
    assert_non_null(strstr(err.msg, "kone.discover_buildings: KONE lists no building"));
    assert_int_equal(sim_post("/sim/faults", "{\"token_down\":true}"), 200);
    int before = count_in_log("POST /api/v2/oauth2/token 503");
    discover_fails("kd-multi", &err);
    assert_non_null(strstr(err.msg, "kone.discover_buildings"));
    assert_non_null(strstr(err.msg, "503"));
    assert_null(strstr(err.msg, "kd-multi-secret"));
    assert_int_equal(count_in_log("POST /api/v2/oauth2/token 503"), before + 3);
    assert_int_equal(sim_post("/sim/faults/reset", NULL), 200);
}

/* kd-robot holds robotcall/building:<FIRST_ID> only. */
static void start_robot(client *c, const char *key)
{
    char a[24][300];
    int n = base_flags(a, "kd-robot");
    snprintf(a[n - 3], 300, "--kone-request-timeout-ms=1000"); /* the refusal shows in 1 s */
    snprintf(a[n++], 300, "--kone-%s=%d", key, FIRST_ID);
    client_launch(c, a, n);
}

static void test_robotcall_scope(void **state)
{
    (void)state;
    NEED_SIM();
    char id[48];
    snprintf(id, sizeof id, "building:%d", FIRST_ID);
    client c;
    start_robot(&c, "robotcall-buildings");
    expect(run_one(&c, call(id, "1", 1000, 2, 5000, false), 15000), KD_OUTCOME_SUCCEEDED, "", NULL);
    assert_true(count_in_log("scope=robotcall/building:9000001") >= 1);
    client_stop(&c);
    /* the same building asked as callgiving: kd-robot may not have it */
    start_robot(&c, "buildings");
    expect(run_one(&c, call(id, "1", 1000, 2, 5000, false), 15000), KD_OUTCOME_FAILED,
           "no_connection", "Scope not allowed for this client: callgiving/building:9000001");
    client_stop(&c);
    /* listed in both keys: asked once, as robotcall (kd-robot holds only that: asking
     * callgiving too would be refused) */
    char a[24][300];
    int n = base_flags(a, "kd-robot");
    snprintf(a[n++], 300, "--kone-buildings=%d", FIRST_ID);
    snprintf(a[n++], 300, "--kone-robotcall-buildings=building:%d", FIRST_ID);
    int asked = count_in_log("scope=robotcall/building:9000001");
    client_launch(&c, a, n);
    expect(run_one(&c, call(id, "1", 1000, 2, 5000, false), 15000), KD_OUTCOME_SUCCEEDED, "", NULL);
    assert_true(count_in_log("scope=robotcall/building:9000001") > asked);
    client_stop(&c);
}

KS_MAIN(cmocka_unit_test_setup_teardown(test_discover_buildings, setup_world, teardown_world),
        cmocka_unit_test_setup_teardown(test_discover_fails, setup_world, teardown_world),
        cmocka_unit_test_setup_teardown(test_robotcall_scope, setup_world, teardown_world),
        cmocka_unit_test_setup_teardown(test_two_tokens_route, setup_world, teardown_world),
        cmocka_unit_test_setup_teardown(test_one_token_is_refused, setup_world, teardown_world))
