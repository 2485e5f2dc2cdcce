/* test_limits: kd_limits, the worker's settings against RabbitMQ's limits. The longest hold
 * of a delivery term by term, the refusal when it reaches amqp.consumer_timeout_ms (naming
 * the key to lower), worker.max_deliveries against amqp.delivery_limit, job.default_ttl_ms
 * against job.max_age_ms, bad values, and the constants the bound copies from the KONE
 * client (worker/kone_conn.h, kone_int.h) and the job format (shared/src/job.c), read from the
 * sources so a change there fails here until kd_limits follows.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kd_limits.h"

static void load(kd_config *cfg)
{
    char *argv[] = {"test_limits", NULL};
    kd_err err = {0};
    if (kd_config_load(cfg, KD_PROG_WORKER, "test_limits", 1, argv, &err) != 0)
        fail_msg("%s", err.msg);
}

/* The ledger's part with the default ledger settings. */
static int64_t default_ledger_ms(void)
{
    return 15000 + 2 * 5000;
}

static void expect_refused(kd_config *cfg, const char *const *names)
{
    kd_err err = {0};
    assert_int_equal(kd_limits_check(cfg, &err), KD_ERR_INVALID);
    for (; *names; names++)
        if (!strstr(err.msg, *names))
            fail_msg("'%s' does not name %s", err.msg, *names);
}

static void test_defaults_fit(void **state)
{
    (void)state;
    kd_config cfg;
    load(&cfg);
    kd_limits l;
    kd_err err = {0};
    assert_int_equal(kd_limits_compute(&cfg, &l, &err), 0);
    assert_int_equal(l.consumer_timeout_ms, 1800000);
    assert_int_equal(l.delivery_limit, 20);
    assert_int_equal(l.max_deliveries, 10);
    assert_int_equal(l.job_max_age_ms, 600000);
    /* 3 R + 2 x 2 R + 30 s + R + C + max(T, 2 (C + 30 s)) = 70 + 40 + 30 + 600 s */
    assert_int_equal(l.hold_kone_ms, 740000);
    assert_int_equal(l.hold_ledger_ms, default_ledger_ms());
    assert_int_equal(l.hold_finish_ms, 10000);
    assert_int_equal(l.hold_ms, 750000 + default_ledger_ms());
    assert_int_equal(kd_limits_check(&cfg, &err), 0);
    kd_config_free(&cfg);
}

static void test_hold_terms(void **state)
{
    (void)state;
    kd_config cfg;
    load(&cfg);
    kd_limits l;
    kd_config_set(&cfg, KD_CFG_KONE_REQUEST_TIMEOUT_MS, "1000", NULL);
    kd_config_set(&cfg, KD_CFG_KONE_CALL_TIMEOUT_MS, "2000", NULL);
    kd_config_set(&cfg, KD_CFG_KONE_TRACK_TIMEOUT_MS, "5000", NULL);
    assert_int_equal(kd_limits_compute(&cfg, &l, NULL), 0);
    /* an untracked call's two progress windows (2 x (2 s + 30 s)) outlast T = 5 s */
    assert_int_equal(l.hold_kone_ms, 3000 + 4000 + 31000 + 2000 + 64000);
    kd_config_set(&cfg, KD_CFG_KONE_TRACK_TIMEOUT_MS, "100000", NULL);
    assert_int_equal(kd_limits_compute(&cfg, &l, NULL), 0);
    assert_int_equal(l.hold_kone_ms, 3000 + 4000 + 31000 + 2000 + 100000);
    kd_config_set(&cfg, KD_CFG_LEDGER_LEASE_MS, "20000", NULL);
    kd_config_set(&cfg, KD_CFG_LEDGER_TIMEOUT_MS, "1000", NULL);
    assert_int_equal(kd_limits_compute(&cfg, &l, NULL), 0);
    assert_int_equal(l.hold_ledger_ms, 22000);
    kd_config_set(&cfg, KD_CFG_LEDGER_URL, "none", NULL); /* no ledger, no wait for it */
    assert_int_equal(kd_limits_compute(&cfg, &l, NULL), 0);
    assert_int_equal(l.hold_ledger_ms, 0);
    assert_int_equal(l.hold_ms, l.hold_ledger_ms + l.hold_kone_ms + l.hold_finish_ms);
    kd_config_free(&cfg);
}

static void test_hold_over_consumer_timeout_refused(void **state)
{
    (void)state;
    kd_config cfg;
    load(&cfg);
    /* tracking for an hour: over RabbitMQ's 30 min */
    kd_config_set(&cfg, KD_CFG_KONE_TRACK_TIMEOUT_MS, "3600000", NULL);
    const char *track[] = {"amqp.consumer_timeout_ms", "kone.track_timeout_ms 3600000",
                           "lower kone.track_timeout_ms", "1800000 ms", NULL};
    expect_refused(&cfg, track);
    /* ... fine where the broker's timeout was raised to match */
    kd_config_set(&cfg, KD_CFG_AMQP_CONSUMER_TIMEOUT_MS, "7200000", NULL);
    assert_int_equal(kd_limits_check(&cfg, NULL), 0);
    /* ... or where the broker has none */
    kd_config_set(&cfg, KD_CFG_AMQP_CONSUMER_TIMEOUT_MS, "0", NULL);
    kd_config_set(&cfg, KD_CFG_KONE_TRACK_TIMEOUT_MS, "86400000", NULL);
    assert_int_equal(kd_limits_check(&cfg, NULL), 0);
    kd_config_free(&cfg);

    /* a long progress window: the key to lower is the call timeout */
    load(&cfg);
    kd_config_set(&cfg, KD_CFG_KONE_CALL_TIMEOUT_MS, "900000", NULL);
    const char *call[] = {"lower kone.call_timeout_ms", "kone.request_timeout_ms 10000", NULL};
    expect_refused(&cfg, call);
    kd_config_free(&cfg);

    /* the boundary: a hold equal to the timeout is refused, one ms less fits */
    load(&cfg);
    kd_limits l;
    assert_int_equal(kd_limits_compute(&cfg, &l, NULL), 0);
    char v[32];
    snprintf(v, sizeof v, "%lld", (long long)l.hold_ms);
    kd_config_set(&cfg, KD_CFG_AMQP_CONSUMER_TIMEOUT_MS, v, NULL);
    const char *edge[] = {"amqp.consumer_timeout_ms", NULL};
    expect_refused(&cfg, edge);
    snprintf(v, sizeof v, "%lld", (long long)l.hold_ms + 1);
    kd_config_set(&cfg, KD_CFG_AMQP_CONSUMER_TIMEOUT_MS, v, NULL);
    assert_int_equal(kd_limits_check(&cfg, NULL), 0);
    kd_config_free(&cfg);
}

static void test_delivery_limits(void **state)
{
    (void)state;
    kd_config cfg;
    load(&cfg);
    kd_config_set(&cfg, KD_CFG_WORKER_MAX_DELIVERIES, "20", NULL);
    const char *names[] = {"worker.max_deliveries (20)", "amqp.delivery_limit (20)", NULL};
    expect_refused(&cfg, names);
    kd_config_set(&cfg, KD_CFG_AMQP_DELIVERY_LIMIT, "21", NULL);
    assert_int_equal(kd_limits_check(&cfg, NULL), 0);
    kd_config_set(&cfg, KD_CFG_AMQP_DELIVERY_LIMIT, "5", NULL);
    kd_config_set(&cfg, KD_CFG_WORKER_MAX_DELIVERIES, "0", NULL); /* the worker's check is off */
    assert_int_equal(kd_limits_check(&cfg, NULL), 0);
    kd_config_free(&cfg);
}

static void test_default_ttl_within_max_age(void **state)
{
    (void)state;
    kd_config cfg;
    load(&cfg);
    kd_config_set(&cfg, KD_CFG_JOB_DEFAULT_TTL_MS, "700000", NULL);
    const char *names[] = {"job.default_ttl_ms (700000)", "job.max_age_ms (600000)", NULL};
    expect_refused(&cfg, names);
    kd_config_set(&cfg, KD_CFG_JOB_MAX_AGE_MS, "0", NULL); /* no cap */
    assert_int_equal(kd_limits_check(&cfg, NULL), 0);
    kd_config_set(&cfg, KD_CFG_JOB_MAX_AGE_MS, "700000", NULL);
    assert_int_equal(kd_limits_check(&cfg, NULL), 0);
    kd_config_free(&cfg);
}

static void test_bad_values(void **state)
{
    (void)state;
    static const char *cases[][2] = {
        {"amqp.consumer_timeout_ms", "-1"}, {"amqp.consumer_timeout_ms", "30m"},
        {"amqp.delivery_limit", "0"},       {"job.max_age_ms", "-5"},
        {"worker.max_deliveries", "x"},     {"kone.track_timeout_ms", "99"},
        {"kone.call_timeout_ms", ""},       {"kone.request_timeout_ms", "600001"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kd_config cfg;
        load(&cfg);
        kd_err err = {0};
        /* refused by the table's bounds as the value is set, as kd_config_load would */
        assert_int_equal(
            kd_config_set(&cfg, (kd_config_id)kd_config_find(cases[i][0]), cases[i][1], &err),
            KD_ERR_INVALID);
        if (!strstr(err.msg, cases[i][0]))
            fail_msg("case %zu: '%s' does not name %s", i, err.msg, cases[i][0]);
        kd_config_free(&cfg);
    }
}

/* The value of "#define NAME <n>" (or of the text after `after`) in a source file. */
static long long source_number(const char *rel, const char *after)
{
    const char *src = getenv("KD_SRC_DIR");
    if (!src)
        skip();
    char path[512];
    snprintf(path, sizeof path, "%s/%s", src, rel);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot read %s", path);
    char line[512];
    long long v = -1;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, after);
        if (p) {
            v = strtoll(p + strlen(after), NULL, 10);
            break;
        }
    }
    fclose(f);
    if (v < 0)
        fail_msg("%s: '%s' not found: kd_limits copies it, update kd_limits.h", rel, after);
    return v;
}

static void test_constants_match_sources(void **state)
{
    (void)state;
    assert_int_equal(source_number("worker/kone_conn.h", "#define KK_RESEND_STATE_S") * 1000,
                     KD_LIMITS_KONE_RESUME_MS);
    assert_int_equal(source_number("worker/kone_int.h", "#define KK_MAX_AUTH_RETRIES"),
                     KD_LIMITS_KONE_AUTH_RETRIES);
    assert_int_equal(source_number("shared/src/job.c", "ROW_OPT(delay, CALL, 0,") * 1000,
                     KD_LIMITS_JOB_DELAY_MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_fit),
        cmocka_unit_test(test_hold_terms),
        cmocka_unit_test(test_hold_over_consumer_timeout_refused),
        cmocka_unit_test(test_delivery_limits),
        cmocka_unit_test(test_default_ttl_within_max_age),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_constants_match_sources),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
