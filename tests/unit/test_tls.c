/* test_tls.c: kd_tls_check_files (the "bad input" of issue 13) and the config errors of the
 * transport security keys, without a broker: every bad certificate file is refused at start
 * with one line naming the key and the file, before anything connects. The certificates are
 * made in a child process (test_cert.h), so OpenSSL state they leave is not counted by ASan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "kd_amqp.h"
#include "kd_kafka.h"
#include "kd_tls.h"
#include "test_cert.h"
#include "test_env.h"

static char dir[] = "/tmp/kd-test-tls-XXXXXX";
static char cert1[256], key1[256], cert2[256], key2[256], junk[256], missing[256], enc1[256];

/* key1 again, encrypted with a passphrase (AES-128-CBC), as `openssl ec -aes128` writes it */
static void write_encrypted_copy(void)
{
    FILE *in = fopen(key1, "r"), *out = fopen(enc1, "w");
    EVP_PKEY *pk = in ? PEM_read_PrivateKey(in, NULL, NULL, NULL) : NULL;
    if (!pk || !out ||
        !PEM_write_PrivateKey(out, pk, EVP_aes_128_cbc(), (unsigned char *)"s3cret", 6, NULL, NULL))
        _exit(2);
    EVP_PKEY_free(pk);
    fclose(in);
    fclose(out);
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(cert1, sizeof cert1, "%s/c1.pem", dir);
    snprintf(key1, sizeof key1, "%s/k1.pem", dir);
    snprintf(cert2, sizeof cert2, "%s/c2.pem", dir);
    snprintf(key2, sizeof key2, "%s/k2.pem", dir);
    snprintf(junk, sizeof junk, "%s/junk.pem", dir);
    snprintf(missing, sizeof missing, "%s/none.pem", dir);
    snprintf(enc1, sizeof enc1, "%s/k1-encrypted.pem", dir);
    pid_t pid = fork();
    if (pid == 0) {
        tc_make_cert(cert1, key1, "one");
        tc_make_cert(cert2, key2, "two");
        write_encrypted_copy();
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    FILE *f = fopen(junk, "w");
    if (!f)
        return -1;
    fputs("not a certificate\n", f);
    fclose(f);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    const char *files[] = {cert1, key1, cert2, key2, junk, enc1};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        unlink(files[i]);
    rmdir(dir);
    return 0;
}

static kd_err check(const char *ca, const char *cert, const char *key, int want)
{
    kd_err err = {0};
    assert_int_equal(
        kd_tls_check_paths("amqp.ca_file", ca, "amqp.cert_file", cert, "amqp.key_file", key, &err),
        want);
    return err;
}

static void test_good_files_pass(void **state)
{
    (void)state;
    check("", "", "", 0);
    check(cert1, "", "", 0);
    check(cert1, cert1, key1, 0);
}

static void test_missing_file_is_named(void **state)
{
    (void)state;
    kd_err e = check(missing, "", "", KD_ERR_INVALID);
    assert_non_null(strstr(e.msg, "amqp.ca_file"));
    assert_non_null(strstr(e.msg, missing));
    assert_non_null(strstr(e.msg, "No such file"));
    e = check("", missing, key1, KD_ERR_INVALID);
    assert_non_null(strstr(e.msg, "amqp.cert_file"));
    assert_non_null(strstr(e.msg, missing));
    e = check("", cert1, missing, KD_ERR_INVALID);
    assert_non_null(strstr(e.msg, "amqp.key_file"));
    assert_non_null(strstr(e.msg, missing));
}

static void test_unreadable_file_is_named(void **state)
{
    (void)state;
    if (geteuid() == 0) /* root reads any file: a directory stands in for an unreadable one */
    {
        kd_err e = check(dir, "", "", KD_ERR_INVALID);
        assert_non_null(strstr(e.msg, "amqp.ca_file"));
        assert_non_null(strstr(e.msg, dir));
        return;
    }
    char locked[300];
    snprintf(locked, sizeof locked, "%s/locked.pem", dir);
    FILE *f = fopen(locked, "w");
    assert_non_null(f);
    fclose(f);
    chmod(locked, 0);
    kd_err e = check(locked, "", "", KD_ERR_INVALID);
    unlink(locked);
    assert_non_null(strstr(e.msg, "amqp.ca_file"));
    assert_non_null(strstr(e.msg, "Permission denied"));
}

static void test_ca_without_certificate(void **state)
{
    (void)state;
    kd_err e = check(junk, "", "", KD_ERR_INVALID);
    assert_non_null(strstr(e.msg, "amqp.ca_file"));
    assert_non_null(strstr(e.msg, junk));
    assert_non_null(strstr(e.msg, "no PEM certificate"));
    /* a key file is no CA bundle either */
    e = check(key1, "", "", KD_ERR_INVALID);
    assert_non_null(strstr(e.msg, "no PEM certificate"));
}

static void test_key_must_match_certificate(void **state)
{
    (void)state;
    kd_err e = check("", cert1, key2, KD_ERR_INVALID);
    assert_non_null(strstr(e.msg, "amqp.key_file"));
    assert_non_null(strstr(e.msg, "does not match"));
    assert_non_null(strstr(e.msg, key2));
    assert_non_null(strstr(e.msg, cert1));
    e = check("", cert1, cert1, KD_ERR_INVALID); /* a certificate where the key should be */
    assert_non_null(strstr(e.msg, "no unencrypted PEM private key"));
    e = check("", junk, key1, KD_ERR_INVALID);
    assert_non_null(strstr(e.msg, "amqp.cert_file"));
}

/* An encrypted key is refused at start, without a prompt for its passphrase (no one is
 * there to type it, and rabbitmq-c would abort the process when OpenSSL asks). */
static void test_encrypted_key_refused(void **state)
{
    (void)state;
    kd_err e = check("", cert1, enc1, KD_ERR_INVALID);
    assert_non_null(strstr(e.msg, "amqp.key_file"));
    assert_non_null(strstr(e.msg, enc1));
    assert_non_null(strstr(e.msg, "no unencrypted PEM private key"));
}

static void test_certificate_and_key_go_together(void **state)
{
    (void)state;
    kd_err e = check("", cert1, "", KD_ERR_INVALID);
    assert_non_null(strstr(e.msg, "set both"));
    e = check("", "", key1, KD_ERR_INVALID);
    assert_non_null(strstr(e.msg, "set both"));
}

static void load(kd_config *cfg)
{
    char *argv[] = {"test_tls", NULL};
    kd_err err = {0};
    assert_int_equal(kd_config_load(cfg, KD_PROG_WORKER, "test_tls", 1, argv, &err), 0);
}

/* The AMQP client refuses a bad file before it opens a socket (KD_ERR_INVALID, not IO). */
static void test_amqp_connect_checks_files(void **state)
{
    (void)state;
    kd_config cfg;
    load(&cfg);
    kd_config_set(&cfg, KD_CFG_AMQP_HOST, "127.0.0.1:1", NULL);
    kd_config_set(&cfg, KD_CFG_AMQP_CA_FILE, junk, NULL);
    kd_amqp *a = NULL;
    kd_err err = {0};
    assert_int_equal(kd_amqp_connect(&a, &cfg, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, junk));
    kd_config_set(&cfg, KD_CFG_AMQP_CA_FILE, "", NULL);
    kd_config_set(&cfg, KD_CFG_AMQP_HOST, "amqps://u:secret-pw@127.0.0.1:1", NULL);
    assert_int_equal(kd_amqp_connect(&a, &cfg, &err), KD_ERR_INVALID);
    assert_null(strstr(err.msg, "secret-pw"));
    kd_config_free(&cfg);
}

/* Kafka: bad files, unknown protocols and a SASL login without credentials are config
 * errors; the password never shows in one. */
static void test_kafka_security_errors(void **state)
{
    (void)state;
    kd_config cfg;
    load(&cfg);
    kd_err err = {0};
    struct {
        const char *key, *value, *want;
    } cases[] = {
        {"kafka.security_protocol", "tls", "kafka.security_protocol"},
        {"kafka.security_protocol", "ssl", NULL},
        {"kafka.key_file", key2, "set both"},
        {"kafka.cert_file", cert1, "does not match"},
        {"kafka.key_file", key1, NULL},
        {"kafka.security_protocol", "sasl_ssl", "kafka.sasl_user"},
        {"kafka.sasl_user", "kd", "kafka.sasl_password"},
        {"kafka.sasl_password", "hunter2-secret", NULL},
        {"kafka.sasl_mechanism", "PLAIN", "kafka.sasl_mechanism"},
        {"kafka.sasl_mechanism", "SCRAM-SHA-256", NULL},
        {"kafka.ca_file", missing, "kafka.ca_file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&err, 0, sizeof err);
        /* values the table refuses (an unknown protocol or mechanism) fail as they are set */
        int rc =
            kd_config_set(&cfg, (kd_config_id)kd_config_find(cases[i].key), cases[i].value, &err);
        if (!rc) {
            rd_kafka_conf_t *conf = rd_kafka_conf_new();
            rc = kd_kafka_conf_security(conf, &cfg, &err);
            rd_kafka_conf_destroy(conf);
        }
        if (!cases[i].want) {
            if (rc)
                fail_msg("case %zu: %s", i, err.msg);
            continue;
        }
        assert_int_equal(rc, KD_ERR_INVALID);
        if (!strstr(err.msg, cases[i].want))
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].want);
        assert_null(strstr(err.msg, "hunter2-secret"));
    }
    kd_config_free(&cfg);
}

int main(void)
{
    test_env_clear_kd();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_files_pass),
        cmocka_unit_test(test_missing_file_is_named),
        cmocka_unit_test(test_unreadable_file_is_named),
        cmocka_unit_test(test_ca_without_certificate),
        cmocka_unit_test(test_key_must_match_certificate),
        cmocka_unit_test(test_encrypted_key_refused),
        cmocka_unit_test(test_certificate_and_key_go_together),
        cmocka_unit_test(test_amqp_connect_checks_files),
        cmocka_unit_test(test_kafka_security_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
