/* The KONE client's cache of building configuration and its local validation against the
 * real kone-sim (docs/kone-client.md "Building configuration: cache and local validation"):
 *   - calls KONE would refuse (unknown area, disabled action, same floor) are rejected with
 *     KONE's code and words, validated_locally, and no call reaches kone-sim (its call log,
 *     GET /sim/calls); a good call goes through;
 *   - config and actions are fetched once per building and group per kone.config_ttl_s
 *     (kone-sim logs each common-api config/actions request at debug), and again once the
 *     TTL passed;
 *   - kone.validate_locally=false: nothing fetched, KONE itself refuses;
 *   - kone-sim restarted with a buildings file where action 3 is disabled: the cached
 *     configuration still passes action 3, KONE refuses it ("disabled call action"), the
 *     cache is fetched again, and the next such job is rejected locally without a call.
 * Same harness as test_worker_kone_sim.c (kone_sim_fixture.h); skipped without kone-sim.
 */
#include "kone_sim_fixture.h"

#define CONFIG_951_1 "common-api config of building:9990000951 group 1"
#define ACTIONS_951_1 "common-api actions of building:9990000951 group 1"

static size_t collect(void *p, size_t s, size_t n, void *arg)
{
    char *buf = arg;
    size_t have = strlen(buf), add = s * n;
    if (have + add < 8192) {
        memcpy(buf + have, p, add);
        buf[have + add] = '\0';
    }
    return s * n;
}

/* Calls (lift-call-api-v2 action requests) kone-sim received, from its call log. */
static long sim_action_calls(void)
{
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[256], body[8192] = "";
    snprintf(url, sizeof url, "https://127.0.0.1:%d/sim/calls?call_type=action&limit=1000",
             sim.port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, sim.cert);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    assert_int_equal(rc, CURLE_OK);
    const char *p = strstr(body, "\"count\":");
    assert_non_null(p);
    return strtol(p + 8, NULL, 10);
}

static int setup_debug(void **state)
{
    (void)state;
    return setup_with("--log-level=debug");
}

static void expect_local(kd_run *r, const char *code, const char *msg_part)
{
    assert_true(r->validated_locally);
    assert_false(r->written);
    expect(r, KD_OUTCOME_REJECTED, code, msg_part);
}

static void test_rejected_locally_without_a_call(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, "");
    expect_local(run_one(&c, call(B951, "1", 99000, 2, 5000, false), 10000), "ignored_call",
                 "Ignoring call, unable to resolve area: area:99000");
    expect_local(run_one(&c, call(B951, "1", 1000, 4, 5000, false), 10000), "ignored_call",
                 "Ignoring call, disabled call action: 4");
    expect_local(run_one(&c, call(B951, "1", 1000, 2, 1010, false), 10000),
                 "SAME_SOURCE_AND_DEST_FLOOR", "call cancelled: SAME_SOURCE_AND_DEST_FLOOR");
    assert_int_equal(sim_action_calls(), 0);
    /* a good call goes through, checked against the same cached configuration */
    kd_run *r = run_one(&c, call(B951, "1", 1000, 2, 5000, false), 20000);
    assert_false(r->validated_locally);
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);
    assert_int_equal(sim_action_calls(), 1);
    /* fetched once for building and group; the other group has its own */
    assert_int_equal(count_in_log(CONFIG_951_1), 1);
    assert_int_equal(count_in_log(ACTIONS_951_1), 1);
    expect_local(run_one(&c, call(B951, "2", 15000, 2, 15000, false), 10000),
                 "SAME_SOURCE_AND_DEST_FLOOR", NULL);
    assert_int_equal(count_in_log("common-api config of building:9990000951 group 2"), 1);
    assert_int_equal(count_in_log(CONFIG_951_1), 1);
    client_stop(&c);
}

static void test_fetched_again_after_ttl(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, "--kone-config-ttl-s=1");
    expect_local(run_one(&c, call(B951, "1", 99000, 2, 5000, false), 10000), "ignored_call", NULL);
    expect_local(run_one(&c, call(B951, "1", 98000, 2, 5000, false), 10000), "ignored_call", NULL);
    int before = count_in_log(CONFIG_951_1);
    assert_true(before >= 1);
    usleep(1100000); /* past the TTL: the next call fetches it again */
    expect_local(run_one(&c, call(B951, "1", 99000, 2, 5000, false), 10000), "ignored_call", NULL);
    assert_int_equal(count_in_log(CONFIG_951_1), before + 1);
    assert_int_equal(sim_action_calls(), 0);
    client_stop(&c);
}

static void test_switched_off(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, "--kone-validate-locally=false");
    kd_run *r = run_one(&c, call(B951, "1", 99000, 2, 5000, false), 20000);
    assert_false(r->validated_locally);
    assert_true(r->written);
    expect(r, KD_OUTCOME_REJECTED, "ignored_call",
           "Ignoring call, unable to resolve area: area:99000");
    assert_int_equal(sim_action_calls(), 1);
    assert_int_equal(count_in_log("common-api config"), 0);
    client_stop(&c);
}

/* A copy of sim/buildings.json with action 3 of the main building disabled. */
static void write_changed_buildings(char *path, size_t len)
{
    char src[600];
    snprintf(src, sizeof src, "%s/sim/buildings.json", sim.src);
    FILE *in = fopen(src, "r");
    assert_non_null(in);
    static char text[65536];
    size_t n = fread(text, 1, sizeof text - 1, in);
    fclose(in);
    text[n] = '\0';
    const char *from = "accessible (longer door times)\", \"kind\": \"destination\"}";
    char *at = strstr(text, from);
    assert_non_null(at); /* the line this test changes is still there */
    snprintf(path, len, "%s/buildings-changed.json", sim.dir);
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    fwrite(text, 1, (size_t)(at - text), out);
    fputs("accessible (longer door times)\", \"kind\": \"destination\", \"disabled\": true}", out);
    fputs(at + strlen(from), out);
    fclose(out);
}

static void test_refreshed_after_a_contradicting_refusal(void **state)
{
    (void)state;
    NEED_SIM();
    client c;
    client_start(&c, "");
    kd_run *r = run_one(&c, call(B951, "1", 1000, 3, 5000, false), 20000);
    expect(r, KD_OUTCOME_SUCCEEDED, "", NULL);
    assert_int_equal(count_in_log(CONFIG_951_1), 1);

    /* KONE's configuration changes under the cache: action 3 disabled */
    char changed[200], flag[260];
    write_changed_buildings(changed, sizeof changed);
    snprintf(flag, sizeof flag, "--sim-buildings=%s", changed);
    sim_stop();
    unlink(sim.log);
    sim_start("--log-level=debug", flag);
    for (int i = 0; i < 1000 && !kd_kone_ready(c.k); i++)
        usleep(10000);
    assert_true(kd_kone_ready(c.k));

    /* the cache still passes it; KONE refuses it, which says the cache is out of date */
    r = run_one(&c, call(B951, "1", 1000, 3, 5000, false), 20000);
    assert_false(r->validated_locally);
    expect(r, KD_OUTCOME_REJECTED, "ignored_call", "Ignoring call, disabled call action: 3");
    assert_int_equal(count_in_log(CONFIG_951_1), 0);
    assert_int_equal(sim_action_calls(), 1);
    /* the next one fetches it again and is refused locally, no call */
    expect_local(run_one(&c, call(B951, "1", 1000, 3, 6000, false), 20000), "ignored_call",
                 "Ignoring call, disabled call action: 3");
    assert_int_equal(count_in_log(CONFIG_951_1), 1);
    assert_int_equal(count_in_log(ACTIONS_951_1), 1);
    assert_int_equal(sim_action_calls(), 1);
    client_stop(&c);
}

KS_MAIN(cmocka_unit_test_setup_teardown(test_rejected_locally_without_a_call, setup_debug,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fetched_again_after_ttl, setup_debug, teardown),
        cmocka_unit_test_setup_teardown(test_switched_off, setup_debug, teardown),
        cmocka_unit_test_setup_teardown(test_refreshed_after_a_contradicting_refusal, setup_debug,
                                        teardown))
