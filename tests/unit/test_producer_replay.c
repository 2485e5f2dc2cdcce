/* test_producer_replay: kone-producer replay-dead without a broker: its flags (taken out
 * of argv before the config loader sees them, both --flag=value and --flag value), the
 * filter (job id prefix, building with or without "building:", reason; an undecodable
 * message has no job id or building), and the output line. it_retry.sh runs it for real.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "replay.h"

static void test_parse_args(void **state)
{
    (void)state;
    char *argv[] = {"kone-producer",    "replay-dead", "--filter-job-prefix=ord-",
                    "--amqp-host",      "rabbit",      "--filter-building",
                    "9990000951",       "--dry-run",   "--filter-reason=failed",
                    "--log-level=warn", NULL};
    char *out[12];
    int n = 0;
    kd_replay_filter f;
    kd_err err = {0};
    assert_int_equal(kd_replay_parse_args(10, argv, &f, out, &n, &err), 0);
    assert_string_equal(f.job_prefix, "ord-");
    assert_string_equal(f.building, "9990000951");
    assert_string_equal(f.reason, "failed");
    assert_true(f.dry_run);
    assert_int_equal(n, 4);
    assert_string_equal(out[0], "kone-producer");
    assert_string_equal(out[1], "--amqp-host");
    assert_string_equal(out[2], "rabbit");
    assert_string_equal(out[3], "--log-level=warn");
    /* the rest loads as producer configuration */
    kd_config cfg;
    assert_int_equal(kd_config_load(&cfg, KD_PROG_PRODUCER, "t", n, out, &err), 0);
    assert_string_equal(kd_cfg_str(&cfg, KD_CFG_AMQP_HOST), "rabbit");
    kd_config_free(&cfg);

    char *bad[] = {"kone-producer", "replay-dead", "--filter-reason", NULL};
    assert_int_equal(kd_replay_parse_args(3, bad, &f, out, &n, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "--filter-reason"));
    char *none[] = {"kone-producer", "replay-dead", NULL};
    assert_int_equal(kd_replay_parse_args(2, none, &f, out, &n, &err), 0);
    assert_null(f.job_prefix);
    assert_null(f.building);
    assert_null(f.reason);
    assert_false(f.dry_run);
    assert_int_equal(n, 1);
}

static void test_match(void **state)
{
    (void)state;
    kd_replay_filter any = {0};
    assert_true(kd_replay_match(&any, "", "", ""));
    assert_true(kd_replay_match(&any, "a-1", "building:1", "failed"));
    kd_replay_filter p = {.job_prefix = "ord-"};
    assert_true(kd_replay_match(&p, "ord-7", "building:1", "failed"));
    assert_false(kd_replay_match(&p, "or", "building:1", "failed"));
    assert_false(kd_replay_match(&p, "", "", "undecodable"));
    kd_replay_filter b = {.building = "9990000951"};
    assert_true(kd_replay_match(&b, "x", "building:9990000951", "failed"));
    kd_replay_filter b2 = {.building = "building:9990000951"};
    assert_true(kd_replay_match(&b2, "x", "building:9990000951", "failed"));
    assert_false(kd_replay_match(&b, "x", "building:99900009511", "failed"));
    assert_false(kd_replay_match(&b, "x", "", "undecodable"));
    kd_replay_filter r = {.reason = "failed", .job_prefix = "a"};
    assert_true(kd_replay_match(&r, "a1", "", "failed"));
    assert_false(kd_replay_match(&r, "a1", "", "undecodable"));
    assert_false(kd_replay_match(&r, "b1", "", "failed"));
}

static void test_line(void **state)
{
    (void)state;
    char *s = kd_replay_line("moved", "ord-1", "building:1", "failed", "500: boom", 3, NULL);
    assert_string_equal(s, "{\"action\":\"moved\",\"job_id\":\"ord-1\",\"building_id\":"
                           "\"building:1\",\"reason\":\"failed\",\"error\":\"500: boom\","
                           "\"attempt\":3}");
    free(s);
    s = kd_replay_line("failed", "", "", "", "", 0, "nacked \xff");
    assert_string_equal(s, "{\"action\":\"failed\",\"job_id\":null,\"building_id\":null,"
                           "\"reason\":null,\"error\":null,\"attempt\":null,\"detail\":"
                           "\"nacked ?\"}");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_args),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
