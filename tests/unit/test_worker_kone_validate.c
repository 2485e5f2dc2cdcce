/* Unit tests for worker/kone_validate.c: a building group's configuration parsed from
 * kone-sim's real answers (sim/buildings.json through the simulator's own answer builders,
 * sim/building.c, compiled in here), every local refusal with KONE's code and words, what
 * is left to KONE (transfers, landing calls, shapes the parser does not read), which
 * refusals say the configuration changed, and the cache's freshness on a fake clock (TTL,
 * contradiction, backoff after failed fetches). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../sim/building.c"
#include "kd_metrics.h"
#include "kone_validate.h"
#include "metrics_catalog.h"

#define SEC 1000000LL

static sim_world world;

/* The answer frame kone-sim sends for data (statusCode, requestId, data). */
static char *frame_of(json_t *data)
{
    assert_non_null(data);
    json_t *f = json_pack("{s:i,s:s,s:o}", "statusCode", 200, "requestId", "7", "data", data);
    char *text = json_dumps(f, JSON_COMPACT);
    json_decref(f);
    assert_non_null(text);
    return text;
}

/* The configuration of a building group as the worker caches it from kone-sim's answers. */
static void site_of(const char *bid, const char *gid, kd_kval_site *s)
{
    const sim_building *b = sim_world_building(&world, bid);
    assert_non_null(b);
    int gi = sim_building_group(b, gid);
    assert_true(gi >= 0);
    memset(s, 0, sizeof *s);
    kd_err e = {0};
    char *c = frame_of(sim_building_config_json(b, &b->groups[gi]));
    char *a = frame_of(sim_building_actions_json(b));
    if (kd_kval_parse_config(s, c, strlen(c), &e) || kd_kval_parse_actions(s, a, strlen(a), &e))
        fail_msg("parse: %s", e.msg);
    free(c);
    free(a);
}

static kd_job job(int64_t area, int64_t action, int64_t dst)
{
    kd_job j = {.v = 1, .op = KD_OP_CALL, .area = area, .action = action};
    if (dst) {
        j.has_destination = true;
        j.destination = dst;
    }
    return j;
}

static void expect(const kd_kval_site *s, kd_job j, kd_kval_reason r, const char *code,
                   const char *text)
{
    char c[48] = "", t[200] = "";
    kd_kval_reason got = kd_kval_check(s, &j, c, sizeof c, t, sizeof t);
    if (got != r || (code && strcmp(c, code)) || (text && strcmp(t, text)))
        fail_msg("area %lld action %lld dst %lld: got %s %s '%s', expected %s %s '%s'",
                 (long long)j.area, (long long)j.action, (long long)j.destination,
                 kd_kval_reason_name(got), c, t, kd_kval_reason_name(r), code ? code : "",
                 text ? text : "");
}

static int group_setup(void **state)
{
    (void)state;
    const char *src = getenv("KD_SRC_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/sim/buildings.json", src ? src : ".");
    kd_err e = {0};
    if (sim_world_load(&world, path, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    sim_world_free(&world);
    return 0;
}

static void test_parse_sim_answers(void **state)
{
    (void)state;
    kd_kval_site s;
    site_of("building:9990000951", "1", &s);
    assert_true(s.have_config && s.have_actions);
    assert_int_equal(s.n_areas, 12); /* floors 1-11, and the lobby's rear door */
    assert_int_equal(s.n_actions, 6);
    assert_true(s.has_transfer); /* floor 11 */
    kd_kval_free(&s);
    site_of("building:9990000952", "1", &s);
    assert_int_equal(s.n_areas, 5);
    assert_int_equal(s.n_actions, 3);
    assert_false(s.has_transfer);
    kd_kval_free(&s);
}

/* Every refusal, with the code and the text KONE (and kone-sim) gives for it. */
static void test_refusals_as_kone_words_them(void **state)
{
    (void)state;
    kd_kval_site s;
    site_of("building:9990000951", "1", &s);
    expect(&s, job(1000, 2, 5000), KD_KVAL_OK, "", "");
    expect(&s, job(99000, 2, 5000), KD_KVAL_UNKNOWN_AREA, "ignored_call",
           "Ignoring call, unable to resolve area: area:99000");
    /* floor 15 is in the building but not served by group 1 */
    expect(&s, job(15000, 2, 5000), KD_KVAL_UNKNOWN_AREA, "ignored_call",
           "Ignoring call, unable to resolve area: area:15000");
    expect(&s, job(1000, 4, 5000), KD_KVAL_DISABLED_ACTION, "ignored_call",
           "Ignoring call, disabled call action: 4");
    expect(&s, job(1000, 200, 5000), KD_KVAL_UNKNOWN_ACTION, "ignored_call",
           "Ignoring call, unknown call action: 200");
    expect(&s, job(1000, 0, 5000), KD_KVAL_UNKNOWN_ACTION, "ignored_call",
           "Ignoring call, unknown call action: UNDEFINED");
    expect(&s, job(1000, 2, 0), KD_KVAL_NO_DESTINATION, "ignored_call",
           "Ignoring call, destination not defined");
    expect(&s, job(3000, 5, 0), KD_KVAL_NO_DESTINATION, "ignored_call", NULL); /* car */
    /* same floor, same side and opposite side */
    expect(&s, job(5000, 2, 5000), KD_KVAL_SAME_FLOOR, "SAME_SOURCE_AND_DEST_FLOOR",
           "SAME_SOURCE_AND_DEST_FLOOR");
    expect(&s, job(1000, 2, 1010), KD_KVAL_SAME_FLOOR, "SAME_SOURCE_AND_DEST_FLOOR", NULL);
    expect(&s, job(1010, 3, 1000), KD_KVAL_SAME_FLOOR, "SAME_SOURCE_AND_DEST_FLOOR", NULL);
    /* the action is checked before the area, as KONE does */
    expect(&s, job(99000, 4, 5000), KD_KVAL_DISABLED_ACTION, "ignored_call", NULL);
    kd_kval_free(&s);

    site_of("building:9990000952", "1", &s);
    expect(&s, job(1000, 2, 7000), KD_KVAL_UNKNOWN_DESTINATION, "ignored_call",
           "Ignoring call, unable to resolve destination: area:7000");
    expect(&s, job(1000, 3, 2000), KD_KVAL_UNKNOWN_ACTION, "ignored_call",
           "Ignoring call, unknown call action: 3");
    expect(&s, job(2000, 2, 4000), KD_KVAL_OK, "", "");
    kd_kval_free(&s);
}

/* What only KONE can tell goes to KONE. */
static void test_left_to_kone(void **state)
{
    (void)state;
    kd_kval_site s;
    site_of("building:9990000951", "1", &s);
    /* a destination of the other group: a transfer at floor 11 may reach it */
    expect(&s, job(1000, 2, 20000), KD_KVAL_OK, "", "");
    /* landing calls: no destination needed, a destination is ignored */
    expect(&s, job(5000, 2001, 0), KD_KVAL_OK, "", "");
    expect(&s, job(5000, 2002, 5000), KD_KVAL_OK, "", "");
    /* other ops are not checked */
    kd_job h = job(99000, 0, 0);
    h.op = KD_OP_HOLD_OPEN;
    expect(&s, h, KD_KVAL_OK, "", "");
    kd_kval_free(&s);

    /* answers in a shape the parser does not read: nothing is checked */
    memset(&s, 0, sizeof s);
    kd_err e = {0};
    const char *odd = "{\"statusCode\":200,\"data\":{\"topology\":{}}}";
    assert_int_equal(kd_kval_parse_config(&s, odd, strlen(odd), &e), KD_ERR_DECODE);
    assert_int_equal(kd_kval_parse_actions(&s, odd, strlen(odd), &e), KD_ERR_DECODE);
    assert_int_equal(kd_kval_parse_config(&s, "not json", 8, &e), KD_ERR_DECODE);
    expect(&s, job(99000, 77, 0), KD_KVAL_OK, "", "");
    /* actions only: actions are checked, areas are not */
    const char *acts =
        "{\"data\":{\"call_types\":[{\"action_id\":2,\"action_type\":\"destination\"},"
        "{\"action_id\":9,\"disabled\":true},{\"name\":\"no id\"}]}}";
    assert_int_equal(kd_kval_parse_actions(&s, acts, strlen(acts), &e), 0);
    assert_int_equal(s.n_actions, 2);
    expect(&s, job(99000, 2, 5000), KD_KVAL_OK, "", "");
    expect(&s, job(99000, 9, 5000), KD_KVAL_DISABLED_ACTION, "ignored_call", NULL);
    /* floors only (no detailed area list), ids as "area:<n>" strings */
    const char *cfg = "{\"data\":{\"floors\":[{\"floor_id\":1,\"areas\":[\"area:1000\",1010]},"
                      "{\"floor_id\":2,\"areas\":[2000]}]}}";
    assert_int_equal(kd_kval_parse_config(&s, cfg, strlen(cfg), &e), 0);
    assert_int_equal(s.n_areas, 3);
    expect(&s, job(1000, 2, 1010), KD_KVAL_SAME_FLOOR, "SAME_SOURCE_AND_DEST_FLOOR", NULL);
    expect(&s, job(3000, 2, 1000), KD_KVAL_UNKNOWN_AREA, "ignored_call", NULL);
    expect(&s, job(1000, 2, 3000), KD_KVAL_UNKNOWN_DESTINATION, "ignored_call", NULL);
    kd_kval_free(&s);
}

static void test_contradicting_refusals(void **state)
{
    (void)state;
    assert_true(
        kd_kval_contradicts("ignored_call", "Ignoring call, unable to resolve area: area:1000"));
    assert_true(kd_kval_contradicts("ignored_call",
                                    "Ignoring call, unable to resolve destination: area:5"));
    assert_true(kd_kval_contradicts("ignored_call", "Ignoring call, unknown call action: 3"));
    assert_true(kd_kval_contradicts("ignored_call", "Ignoring call, disabled call action: 3"));
    assert_true(kd_kval_contradicts("404", "KONE answered 404: Building data not found"));
    /* refusals that say nothing about the configuration */
    assert_false(kd_kval_contradicts("ignored_call", "Ignoring call, area locked: area:9000"));
    assert_false(kd_kval_contradicts("ignored_call", "Ignoring call, destination not defined"));
    assert_false(kd_kval_contradicts("SAME_SOURCE_AND_DEST_FLOOR", "call cancelled by KONE"));
    assert_false(kd_kval_contradicts("INVALID_DIRECTION", "INVALID_DIRECTION"));
    assert_false(kd_kval_contradicts("403", "KONE answered 403: forbidden"));
    assert_false(kd_kval_contradicts(NULL, NULL));
}

/* The cache's life on a fake clock. */
static void test_freshness(void **state)
{
    (void)state;
    kd_kval_fresh f = {.ttl_us = 3600 * SEC};
    int64_t t = 1000 * SEC;
    assert_int_equal(kd_kval_decide(&f, t), KD_KVAL_FETCH); /* first use */
    kd_kval_fetched(&f, true, t, t + SEC / 10);
    assert_int_equal(kd_kval_decide(&f, t + SEC), KD_KVAL_USE);
    /* the TTL counts from when it was asked for */
    assert_int_equal(kd_kval_decide(&f, t + 3600 * SEC - 1), KD_KVAL_USE);
    assert_int_equal(kd_kval_decide(&f, t + 3600 * SEC), KD_KVAL_FETCH);
    t += 3600 * SEC;
    kd_kval_fetched(&f, true, t, t);
    /* a refusal that contradicts it: fetched again at once */
    kd_kval_contradicted(&f);
    assert_int_equal(kd_kval_decide(&f, t + SEC), KD_KVAL_FETCH);
    kd_kval_fetched(&f, true, t + SEC, t + SEC);
    assert_int_equal(kd_kval_decide(&f, t + 2 * SEC), KD_KVAL_USE);
}

static void test_failed_fetches_back_off(void **state)
{
    (void)state;
    kd_kval_fresh f = {.ttl_us = 3600 * SEC};
    int64_t t = 50 * SEC;
    kd_kval_fetched(&f, true, t, t);
    t += 3600 * SEC; /* expired: fetched again, and that fails */
    kd_kval_fetched(&f, false, t, t);
    assert_false(f.valid); /* the old answers are not used any more */
    assert_int_equal(kd_kval_decide(&f, t), KD_KVAL_UNVALIDATED);
    assert_int_equal(kd_kval_decide(&f, t + SEC - 1), KD_KVAL_UNVALIDATED);
    assert_int_equal(kd_kval_decide(&f, t + SEC), KD_KVAL_FETCH);
    int64_t expect_us[] = {2, 4, 8, 16, 32, 60, 60};
    for (size_t i = 0; i < sizeof expect_us / sizeof *expect_us; i++) {
        kd_kval_fetched(&f, false, t, t);
        assert_int_equal(f.retry_at - t, expect_us[i] * SEC);
    }
    /* one success resets the backoff */
    kd_kval_fetched(&f, true, t, t);
    assert_int_equal(kd_kval_decide(&f, t), KD_KVAL_USE);
    kd_kval_fetched(&f, false, t, t);
    assert_int_equal(f.retry_at - t, SEC);
}

/* Each local refusal counts under its own reason label of kone_local_rejections_total (a
 * name the catalogue does not declare would land in "other", hiding why jobs were refused). */
static void test_reasons_are_metric_labels(void **state)
{
    (void)state;
    kd_err err = {0};
    assert_int_equal(kd_wm_init(NULL, &err), 0);
    for (int r = KD_KVAL_UNKNOWN_ACTION; r <= KD_KVAL_SAME_FLOOR; r++)
        kd_wm_kone_local_reject(kd_kval_reason_name((kd_kval_reason)r));
    kd_wm_kone_local_reject(kd_kval_reason_name((kd_kval_reason)99));
    char *text = kd_metrics_expose(kd_wm_registry(), NULL);
    assert_non_null(text);
    const char *want[] = {"unknown_action", "disabled_action",     "unknown_area",
                          "no_destination", "unknown_destination", "same_floor",
                          "other"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        char line[160];
        snprintf(line, sizeof line, "kone_local_rejections_total{reason=\"%s\"} 1\n", want[i]);
        if (!strstr(text, line))
            fail_msg("exposition lacks: %s", line);
    }
    assert_string_equal(kd_kval_reason_name(KD_KVAL_OK), "ok");
    free(text);
    kd_wm_free();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_sim_answers),
        cmocka_unit_test(test_refusals_as_kone_words_them),
        cmocka_unit_test(test_left_to_kone),
        cmocka_unit_test(test_contradicting_refusals),
        cmocka_unit_test(test_freshness),
        cmocka_unit_test(test_failed_fetches_back_off),
        cmocka_unit_test(test_reasons_are_metric_labels),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
