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

#include "kd_config.h"

static int load(kd_config *cfg, unsigned prog, int argc, char **argv, kd_err *err)
{
    return kd_config_load(cfg, prog, "test", argc, argv, err);
}

static void test_defaults(void **state)
{
    (void)state;
    unsetenv("KD_AMQP_HOST");
    kd_config cfg;
    char *argv[] = {"prog"};
    assert_int_equal(load(&cfg, KD_PROG_WORKER, 1, argv, NULL), 0);
    assert_string_equal(kd_config_get(&cfg, "amqp.host"), "127.0.0.1");
    assert_string_equal(kd_config_get(&cfg, "amqp.queue"), "kone.calls");
    int64_t n;
    assert_int_equal(kd_config_int(&cfg, "worker.inflight", 1, 100000, &n, NULL), 0);
    assert_int_equal(n, 64);
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
    assert_string_equal(kd_config_get(&cfg, "amqp.host"), "from-flag");
    assert_string_equal(kd_config_get(&cfg, "worker.inflight"), "7");
    assert_string_equal(kd_config_get(&cfg, "kafka.brokers"), "k:1");
    assert_int_equal(cfg.nargs, 1);
    assert_string_equal(cfg.args[0], "pos");
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
}

static void test_secret_from_file_env_and_flag(void **state)
{
    (void)state;
    char path[] = "/tmp/kd-secret-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "s3cr3t-value\n", 13), 13);
    close(fd);

    kd_config cfg;
    setenv("KD_KONE_CLIENT_SECRET_FILE", path, 1);
    char *argv[] = {"prog"};
    assert_int_equal(load(&cfg, KD_PROG_WORKER, 1, argv, NULL), 0);
    assert_string_equal(kd_config_get(&cfg, "kone.client_secret"), "s3cr3t-value");
    kd_config_free(&cfg);
    unsetenv("KD_KONE_CLIENT_SECRET_FILE");

    char flag[128];
    snprintf(flag, sizeof flag, "--amqp-password-file=%s", path);
    char *argv2[] = {"prog", flag};
    assert_int_equal(load(&cfg, KD_PROG_PRODUCER, 2, argv2, NULL), 0);
    assert_string_equal(kd_config_get(&cfg, "amqp.password"), "s3cr3t-value");
    kd_config_free(&cfg);

    /* a missing file names the path, never a value */
    kd_err err = {0};
    char *argv3[] = {"prog", "--amqp-password-file=/nonexistent/x"};
    assert_int_equal(load(&cfg, KD_PROG_PRODUCER, 2, argv3, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "/nonexistent/x"));
    unlink(path);
}

static void test_int_double_bool_parsing(void **state)
{
    (void)state;
    kd_config cfg;
    char *argv[] = {"prog", "--worker-inflight=0", "--sim-speed=x"};
    assert_int_equal(load(&cfg, KD_PROG_WORKER | KD_PROG_SIM, 3, argv, NULL), 0);
    int64_t n;
    kd_err err = {0};
    assert_int_equal(kd_config_int(&cfg, "worker.inflight", 1, 10, &n, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "worker.inflight"));
    double d;
    assert_int_equal(kd_config_double(&cfg, "sim.speed", 0.1, 100, &d, &err), KD_ERR_INVALID);
    assert_int_equal(kd_config_set(&cfg, "sim.speed", "2.5"), 0);
    assert_int_equal(kd_config_double(&cfg, "sim.speed", 0.1, 100, &d, &err), 0);
    assert_true(d == 2.5);
    bool b;
    assert_int_equal(kd_config_bool(&cfg, "events.from_beginning", &b, &err), 0);
    assert_true(b);
    assert_int_equal(kd_config_set(&cfg, "events.from_beginning", "maybe"), 0);
    assert_int_equal(kd_config_bool(&cfg, "events.from_beginning", &b, &err), KD_ERR_INVALID);
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
}

/* Every key has help and a program; names are unique (as env vars and flags too). */
static void test_table_is_well_formed(void **state)
{
    (void)state;
    size_t n;
    const kd_config_key *t = kd_config_table(&n);
    for (size_t i = 0; i < n; i++) {
        assert_true(t[i].help && strlen(t[i].help) > 5);
        assert_true(t[i].progs != 0);
        assert_non_null(t[i].def);
        for (size_t j = i + 1; j < n; j++) {
            char a[128], b[128];
            kd_config_env_name(t[i].name, a, sizeof a);
            kd_config_env_name(t[j].name, b, sizeof b);
            assert_string_not_equal(a, b);
        }
    }
}

/* docs/configuration.md holds exactly the table the code prints, between markers. */
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
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env_then_flag_precedence),
        cmocka_unit_test(test_unknown_and_foreign_flags_refused),
        cmocka_unit_test(test_secret_from_file_env_and_flag),
        cmocka_unit_test(test_int_double_bool_parsing),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_table_is_well_formed),
        cmocka_unit_test(test_docs_match_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
