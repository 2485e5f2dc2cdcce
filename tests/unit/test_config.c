/* test_config: the configuration table, its loader, and docs/configuration.md against it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "kd_config.h"
#include "test_env.h"

static int load(kd_config *cfg, unsigned prog, int argc, char **argv, kd_err *err)
{
    return kd_config_load(cfg, prog, "test", argc, argv, err);
}

/* Every program's keys, for tests that look at all of them at once. */
#define ALL (KD_PROG_WORKER | KD_PROG_PRODUCER | KD_PROG_SIM | KD_PROG_EVENTS)

static void test_defaults(void **state)
{
    (void)state;
    unsetenv("KD_AMQP_HOST");
    kd_config cfg;
    char *argv[] = {"prog"};
    assert_int_equal(load(&cfg, ALL, 1, argv, NULL), 0);
    /* one key of each type, read through its typed accessor */
    assert_string_equal(kd_cfg_str(&cfg, KD_CFG_AMQP_HOST), "127.0.0.1");
    assert_string_equal(kd_cfg_str(&cfg, KD_CFG_AMQP_QUEUE), "kone.calls");
    assert_int_equal(kd_cfg_int(&cfg, KD_CFG_WORKER_INFLIGHT), 256);
    assert_int_equal(kd_cfg_int(&cfg, KD_CFG_KONE_CONCURRENCY_MAX), 64);
    assert_int_equal(kd_cfg_int(&cfg, KD_CFG_METRICS_PORT), 9464);
    assert_int_equal(kd_cfg_int(&cfg, KD_CFG_KONE_REQUEST_TIMEOUT_MS), 10000);
    assert_int_equal(kd_cfg_int(&cfg, KD_CFG_KONE_KEEPALIVE_S), 30);
    assert_int_equal(kd_cfg_int(&cfg, KD_CFG_LEDGER_RETENTION_H), 168);
    assert_true(kd_cfg_bool(&cfg, KD_CFG_AMQP_TLS));
    assert_false(kd_cfg_bool(&cfg, KD_CFG_AMQP_TLS_INSECURE));
    assert_true(kd_cfg_double(&cfg, KD_CFG_SIM_SPEED) == 1.0);
    assert_string_equal(kd_cfg_str(&cfg, KD_CFG_LOG_LEVEL), "info");
    assert_int_equal(kd_cfg_int(&cfg, KD_CFG_LOG_LEVEL), 1); /* index in debug|info|warn|error */
    kd_config_free(&cfg);
}

static void test_env_then_flag_precedence(void **state)
{
    (void)state;
    setenv("KD_AMQP_HOST", "from-env", 1);
    setenv("KD_WORKER_INFLIGHT", "7", 1);
    kd_config cfg;
    char *argv[] = {"prog", "--amqp-host=from-flag", "--kafka-brokers", "k:1", "pos"};
    assert_int_equal(load(&cfg, KD_PROG_WORKER, 5, argv, NULL), 0);
    assert_string_equal(kd_cfg_str(&cfg, KD_CFG_AMQP_HOST), "from-flag");
    assert_string_equal(kd_cfg_str(&cfg, KD_CFG_WORKER_INFLIGHT), "7");
    assert_int_equal(kd_cfg_int(&cfg, KD_CFG_WORKER_INFLIGHT), 7);
    assert_string_equal(kd_cfg_str(&cfg, KD_CFG_KAFKA_BROKERS), "k:1");
    assert_int_equal(cfg.nargs, 1);
    assert_string_equal(cfg.args[0], "pos");
    kd_config_free(&cfg);
    /* a flag beats the environment for typed keys too, and only the final value is checked */
    setenv("KD_WORKER_INFLIGHT", "0", 1);
    char *argv2[] = {"prog", "--worker-inflight", "9"};
    assert_int_equal(load(&cfg, KD_PROG_WORKER, 3, argv2, NULL), 0);
    assert_int_equal(kd_cfg_int(&cfg, KD_CFG_WORKER_INFLIGHT), 9);
    kd_config_free(&cfg);
    unsetenv("KD_AMQP_HOST");
    unsetenv("KD_WORKER_INFLIGHT");
}

static void test_unknown_and_foreign_flags_refused(void **state)
{
    (void)state;
    kd_config cfg;
    kd_err err = {0};
    char *argv1[] = {"prog", "--no-such-thing=1"};
    assert_int_equal(load(&cfg, KD_PROG_WORKER, 2, argv1, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "no-such-thing"));
    /* sim.port belongs to kone-sim, not the worker */
    char *argv2[] = {"prog", "--sim-port=1"};
    assert_int_equal(load(&cfg, KD_PROG_WORKER, 2, argv2, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "sim-port"));
    char *argv3[] = {"prog", "--amqp-host"};
    assert_int_equal(load(&cfg, KD_PROG_WORKER, 2, argv3, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "needs a value"));
    /* only secret keys have a -file flag */
    char *argv4[] = {"prog", "--amqp-host-file=/etc/hostname"};
    assert_int_equal(load(&cfg, KD_PROG_WORKER, 2, argv4, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "amqp-host-file"));
    /* unknown names and ids */
    assert_int_equal(kd_config_find("amqp.host"), KD_CFG_AMQP_HOST);
    assert_int_equal(kd_config_find("amqp.hots"), -1);
    assert_int_equal(load(&cfg, KD_PROG_WORKER, 1, argv1, NULL), 0);
    assert_int_equal(kd_config_set(&cfg, KD_CFG_COUNT, "1", &err), KD_ERR_INVALID);
    kd_config_free(&cfg);
}

/* A key of another program is not checked (it is not read): KD_SIM_PORT=x in the
 * environment of every program is no error for the worker, but is one for kone-sim. */
static void test_foreign_env_not_checked(void **state)
{
    (void)state;
    setenv("KD_SIM_PORT", "x", 1);
    kd_config cfg;
    kd_err err = {0};
    char *argv[] = {"prog"};
    assert_int_equal(load(&cfg, KD_PROG_WORKER, 1, argv, &err), 0);
    kd_config_free(&cfg);
    assert_int_equal(load(&cfg, KD_PROG_SIM, 1, argv, &err), KD_ERR_INVALID);
    assert_string_equal(err.msg, "sim.port: must be an integer in 1..65535, got 'x'");
    unsetenv("KD_SIM_PORT");
}

static char *write_temp(const char *content)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/kd-secret-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
    return path;
}

static void test_secret_from_file_env_and_flag(void **state)
{
    (void)state;
    char path[64];
    snprintf(path, sizeof path, "%s", write_temp("s3cr3t-value\n"));

    kd_config cfg;
    setenv("KD_KONE_CLIENT_SECRET_FILE", path, 1);
    char *argv[] = {"prog"};
    assert_int_equal(load(&cfg, KD_PROG_WORKER, 1, argv, NULL), 0);
    assert_string_equal(kd_cfg_str(&cfg, KD_CFG_KONE_CLIENT_SECRET), "s3cr3t-value");
    kd_config_free(&cfg);
    /* the _FILE variable beats the plain one; a flag beats both */
    setenv("KD_KONE_CLIENT_SECRET", "from-env", 1);
    assert_int_equal(load(&cfg, KD_PROG_WORKER, 1, argv, NULL), 0);
    assert_string_equal(kd_cfg_str(&cfg, KD_CFG_KONE_CLIENT_SECRET), "s3cr3t-value");
    kd_config_free(&cfg);
    char *argv1[] = {"prog", "--kone-client-secret=from-flag"};
    assert_int_equal(load(&cfg, KD_PROG_WORKER, 2, argv1, NULL), 0);
    assert_string_equal(kd_cfg_str(&cfg, KD_CFG_KONE_CLIENT_SECRET), "from-flag");
    kd_config_free(&cfg);
    unsetenv("KD_KONE_CLIENT_SECRET_FILE");
    unsetenv("KD_KONE_CLIENT_SECRET");

    char flag[128];
    snprintf(flag, sizeof flag, "--amqp-password-file=%s", path);
    char *argv2[] = {"prog", flag};
    assert_int_equal(load(&cfg, KD_PROG_PRODUCER, 2, argv2, NULL), 0);
    assert_string_equal(kd_cfg_str(&cfg, KD_CFG_AMQP_PASSWORD), "s3cr3t-value");
    kd_config_free(&cfg);

    /* a missing file names the path, never a value */
    kd_err err = {0};
    char *argv3[] = {"prog", "--amqp-password-file=/nonexistent/x"};
    assert_int_equal(load(&cfg, KD_PROG_PRODUCER, 2, argv3, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "/nonexistent/x"));
    unlink(path);
}

/* One row per type and bound: the value given as a flag (the path a user takes), whether
 * it loads, and the whole error when it does not. */
static void test_types_and_bounds(void **state)
{
    (void)state;
    static const struct {
        const char *flag, *want; /* want: NULL = accepted */
    } cases[] = {
        /* INT */
        {"--worker-inflight=1", NULL},
        {"--worker-inflight=65535", NULL},
        {"--worker-inflight=0", "worker.inflight: must be an integer in 1..65535, got '0'"},
        {"--worker-inflight=65536", "worker.inflight: must be an integer in 1..65535, got '65536'"},
        {"--worker-inflight=7x", "worker.inflight: must be an integer in 1..65535, got '7x'"},
        {"--worker-inflight=", "worker.inflight: must be an integer in 1..65535, got ''"},
        {"--metrics-port=-1", NULL},
        {"--metrics-port=-2", "metrics.port: must be an integer in -1..65535, got '-2'"},
        {"--events-max=99999999999999999999",
         "events.max: must be an integer in 0..9223372036854775807, got '99999999999999999999'"},
        /* durations: ms, s, h */
        {"--kone-request-timeout-ms=100", NULL},
        {"--kone-request-timeout-ms=99",
         "kone.request_timeout_ms: must be an integer in 100..600000, got '99'"},
        {"--kone-monitor-duration-s=301",
         "kone.monitor_duration_s: must be an integer in 1..300, got '301'"},
        {"--ledger-retention-h=8761",
         "ledger.retention_h: must be an integer in 1..8760, got '8761'"},
        {"--kone-connections=17", "kone.connections: must be an integer in 1..16, got '17'"},
        {"--kone-breaker-window-calls=65",
         "kone.breaker_window_calls: must be an integer in 1..64, got '65'"},
        /* DOUBLE */
        {"--sim-speed=2.5", NULL},
        {"--sim-speed=0.001", "sim.speed: must be a number in 0.01..1000, got '0.001'"},
        {"--sim-speed=nan", "sim.speed: must be a number in 0.01..1000, got 'nan'"},
        {"--sim-speed=x", "sim.speed: must be a number in 0.01..1000, got 'x'"},
        /* BOOL */
        {"--events-from-beginning=no", NULL},
        {"--events-from-beginning=1", NULL},
        {"--events-from-beginning=maybe",
         "events.from_beginning: must be true or false, got 'maybe'"},
        /* ENUM: exact words */
        {"--log-level=warn", NULL},
        {"--log-level=verbose", "log.level: must be debug, info, warn or error, got 'verbose'"},
        {"--kone-group-mode-policy=HOLD",
         "kone.group_mode_policy: must be reject or hold, got 'HOLD'"},
        {"--kafka-compression=zstd", NULL},
        {"--kafka-compression=LZ4", NULL}, /* as librdkafka takes it */
        {"--kafka-compression=brotli",
         "kafka.compression: must be none, gzip, snappy, lz4 or zstd, got 'brotli'"},
        {"--kafka-sasl-mechanism=PLAIN",
         "kafka.sasl_mechanism: must be SCRAM-SHA-512 or SCRAM-SHA-256, got 'PLAIN'"},
        /* STR: anything */
        {"--amqp-host=amqps://a,b:5671", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kd_config cfg;
        kd_err err = {0};
        char *argv[] = {"prog", (char *)cases[i].flag};
        int rc = load(&cfg, ALL, 2, argv, &err);
        if (!cases[i].want) {
            if (rc)
                fail_msg("case %zu (%s): refused: %s", i, cases[i].flag, err.msg);
            kd_config_free(&cfg);
            continue;
        }
        assert_int_equal(rc, KD_ERR_INVALID);
        if (strcmp(err.msg, cases[i].want) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, err.msg, cases[i].want);
    }
    /* the parsed value is what the accessors return */
    kd_config cfg;
    char *argv[] = {"prog", "--sim-speed=2.5", "--events-from-beginning=no", "--log-level=warn"};
    assert_int_equal(load(&cfg, ALL, 4, argv, NULL), 0);
    assert_true(kd_cfg_double(&cfg, KD_CFG_SIM_SPEED) == 2.5);
    assert_false(kd_cfg_bool(&cfg, KD_CFG_EVENTS_FROM_BEGINNING));
    assert_int_equal(kd_cfg_int(&cfg, KD_CFG_LOG_LEVEL), 2);
    /* kd_config_set checks as the loader does, and keeps the old value when refused */
    kd_err err = {0};
    assert_int_equal(kd_config_set(&cfg, KD_CFG_SIM_SPEED, "5000", &err), KD_ERR_INVALID);
    assert_string_equal(err.msg, "sim.speed: must be a number in 0.01..1000, got '5000'");
    assert_true(kd_cfg_double(&cfg, KD_CFG_SIM_SPEED) == 2.5);
    assert_string_equal(kd_cfg_str(&cfg, KD_CFG_SIM_SPEED), "2.5");
    assert_int_equal(kd_config_set(&cfg, KD_CFG_WORKER_INFLIGHT, "12", &err), 0);
    assert_int_equal(kd_cfg_int(&cfg, KD_CFG_WORKER_INFLIGHT), 12);
    /* no value at all (an application's NULL) is refused, even for a string key */
    assert_int_equal(kd_config_set(&cfg, KD_CFG_AMQP_HOST, NULL, &err), KD_ERR_INVALID);
    assert_string_equal(err.msg, "amqp.host: no value given");
    assert_non_null(kd_cfg_str(&cfg, KD_CFG_AMQP_HOST));
    kd_config_free(&cfg);
}

/* The first bad key of the environment stops the load, named with its bounds. */
static void test_bad_env_value_refused_at_load(void **state)
{
    (void)state;
    setenv("KD_KONE_KEEPALIVE_S", "0", 1);
    kd_config cfg;
    kd_err err = {0};
    char *argv[] = {"prog"};
    assert_int_equal(load(&cfg, KD_PROG_WORKER, 1, argv, &err), KD_ERR_INVALID);
    assert_string_equal(err.msg, "kone.keepalive_s: must be an integer in 1..3600, got '0'");
    /* --help, --config-table and --config-dump still work, to show what is wrong */
    char *argv2[] = {"prog", "--config-dump"};
    assert_int_equal(load(&cfg, KD_PROG_WORKER, 2, argv2, &err), 0);
    kd_config_free(&cfg);
    char *argv3[] = {"prog", "--config-json"};
    assert_int_equal(load(&cfg, KD_PROG_WORKER, 2, argv3, &err), 0);
    kd_config_free(&cfg);
    unsetenv("KD_KONE_KEEPALIVE_S");
}

static char *capture(void (*fn)(const kd_config *, FILE *), const kd_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fn(cfg, f);
    fclose(f);
    return buf;
}

/* Secret values appear in no output: --config-dump shows <set>, --help no default. */
static void test_secrets_redacted(void **state)
{
    (void)state;
    kd_config cfg;
    char *argv[] = {"prog", "--kone-client-secret=hunter2-secret",
                    "--ledger-url=postgresql://kd:pw-in-url@db/x"};
    assert_int_equal(load(&cfg, KD_PROG_WORKER, 3, argv, NULL), 0);
    char *dump = capture(kd_config_print_dump, &cfg);
    assert_non_null(strstr(dump, "kone.client_secret=<set>\n"));
    assert_non_null(strstr(dump, "ledger.url=<set>\n"));
    assert_non_null(strstr(dump, "kafka.sasl_password=\n")); /* empty: shown as empty */
    assert_non_null(strstr(dump, "worker.inflight=256\n"));
    assert_null(strstr(dump, "hunter2"));
    assert_null(strstr(dump, "pw-in-url"));
    free(dump);
    char *help = capture(kd_config_print_help, &cfg);
    assert_non_null(strstr(help, "--worker-inflight"));
    assert_non_null(strstr(help, "integer (1..65535), default '64'"));
    assert_null(strstr(help, "postgresql://kd@127.0.0.1")); /* the secret's default */
    assert_null(strstr(help, "hunter2"));
    free(help);
    kd_config_free(&cfg);
}

static void test_names(void **state)
{
    (void)state;
    char buf[64];
    kd_config_env_name("kone.client_secret", buf, sizeof buf);
    assert_string_equal(buf, "KD_KONE_CLIENT_SECRET");
    kd_config_flag_name("kone.client_secret", buf, sizeof buf);
    assert_string_equal(buf, "--kone-client-secret");
    assert_string_equal(kd_cfg_name(KD_CFG_KONE_CLIENT_SECRET), "kone.client_secret");
}

/* Every key has help and a program; names are unique (as env vars and flags too); its
 * id is its row; its bounds are ordered; its default is a value it accepts. */
static void test_table_is_well_formed(void **state)
{
    (void)state;
    size_t n;
    const kd_config_key *t = kd_config_table(&n);
    assert_int_equal(n, KD_CFG_COUNT);
    kd_config cfg;
    char *argv[] = {"prog"};
    assert_int_equal(load(&cfg, ALL, 1, argv, NULL), 0);
    for (size_t i = 0; i < n; i++) {
        assert_true(t[i].help && strlen(t[i].help) > 5);
        assert_true(t[i].progs != 0);
        assert_non_null(t[i].def);
        assert_int_equal(kd_config_find(t[i].name), (int)i);
        assert_true(t[i].min <= t[i].max && t[i].dmin <= t[i].dmax);
        assert_true((t[i].type == KD_CT_ENUM || t[i].type == KD_CT_ENUMI) ==
                    (t[i].choices != NULL));
        assert_true(!t[i].secret || t[i].type == KD_CT_STR); /* so no error can echo one */
        kd_err err = {0};
        if (kd_config_set(&cfg, (kd_config_id)i, t[i].def, &err))
            fail_msg("the default of %s is refused: %s", t[i].name, err.msg);
        for (size_t j = i + 1; j < n; j++) {
            char a[128], b[128];
            kd_config_env_name(t[i].name, a, sizeof a);
            kd_config_env_name(t[j].name, b, sizeof b);
            assert_string_not_equal(a, b);
        }
    }
    kd_config_free(&cfg);
}

/* docs/configuration.md holds exactly the table the code prints, between markers. */
static json_t *json_key(json_t *all, const char *name)
{
    size_t i;
    json_t *k;
    json_array_foreach(all, i, k)
    {
        if (strcmp(json_string_value(json_object_get(k, "name")), name) == 0)
            return k;
    }
    fail_msg("--config-json has no key %s", name);
    return NULL;
}

/* --config-json, which the Helm chart's schema is generated from (tests/ops/chart_schema.sh):
 * every key with its type, bounds, choices and programs; a secret's default is not in it. */
static void test_config_json(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    kd_config_print_json(f);
    fclose(f);
    json_error_t je;
    json_t *all = json_loads(buf, 0, &je);
    assert_non_null(all);
    assert_int_equal(json_array_size(all), KD_CFG_COUNT);

    json_t *k = json_key(all, "worker.inflight");
    assert_string_equal(json_string_value(json_object_get(k, "type")), "integer");
    assert_int_equal(json_integer_value(json_object_get(k, "min")), 1);
    assert_int_equal(json_integer_value(json_object_get(k, "max")), 65535);
    assert_string_equal(json_string_value(json_object_get(k, "default")), "256");
    assert_int_equal(json_array_size(json_object_get(k, "programs")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(k, "programs"), 0)),
                        "worker");

    k = json_key(all, "kafka.compression");
    assert_string_equal(json_string_value(json_object_get(k, "type")), "enum_any_case");
    assert_int_equal(json_array_size(json_object_get(k, "choices")), 5);
    assert_string_equal(json_string_value(json_array_get(json_object_get(k, "choices"), 4)),
                        "zstd");
    assert_null(json_object_get(k, "min"));

    k = json_key(all, "sim.speed");
    assert_string_equal(json_string_value(json_object_get(k, "type")), "number");
    assert_true(json_real_value(json_object_get(k, "min")) == 0.01);

    k = json_key(all, "log.level");
    assert_int_equal(json_array_size(json_object_get(k, "programs")), 4);

    k = json_key(all, "ledger.url");
    assert_true(json_is_true(json_object_get(k, "secret")));
    assert_null(json_object_get(k, "default"));
    assert_null(strstr(buf, "postgresql://kd@127.0.0.1")); /* the secret's default */
    json_decref(all);
    free(buf);
}

static void test_docs_match_table(void **state)
{
    (void)state;
    const char *src = getenv("KD_SRC_DIR");
    assert_non_null(src);
    char path[512];
    snprintf(path, sizeof path, "%s/docs/configuration.md", src);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *doc = NULL;
    size_t doclen = 0;
    FILE *docs = open_memstream(&doc, &doclen);
    char line[2048];
    int in = 0;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "<!-- config-table:end -->"))
            in = 0;
        if (in)
            fputs(line, docs);
        if (strstr(line, "<!-- config-table:begin -->"))
            in = 1;
    }
    fclose(f);
    fclose(docs);

    char *gen = NULL;
    size_t genlen = 0;
    FILE *g = open_memstream(&gen, &genlen);
    kd_config_print_markdown(g);
    fclose(g);
    if (strcmp(doc, gen) != 0)
        fail_msg("docs/configuration.md is out of date: regenerate its table with "
                 "`kone-worker --config-table`");
    free(doc);
    free(gen);
}

int main(void)
{
    test_env_clear_kd();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env_then_flag_precedence),
        cmocka_unit_test(test_unknown_and_foreign_flags_refused),
        cmocka_unit_test(test_foreign_env_not_checked),
        cmocka_unit_test(test_secret_from_file_env_and_flag),
        cmocka_unit_test(test_types_and_bounds),
        cmocka_unit_test(test_bad_env_value_refused_at_load),
        cmocka_unit_test(test_secrets_redacted),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_table_is_well_formed),
        cmocka_unit_test(test_config_json),
        cmocka_unit_test(test_docs_match_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
