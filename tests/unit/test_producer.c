/* test_producer: the C API of kd_producer.h and the example of docs/producer.md.
 *
 * The example is compiled into this test (so it builds with the same headers as the
 * library), docs/producer.md must show it byte for byte, and it is run against a closed
 * port to check its failure path. With KD_TEST_AMQP=1 (a broker reachable through the
 * KD_AMQP_* variables, e.g. after scripts/dev-up) the API is also exercised for real, on
 * an exchange and queue of its own that it deletes afterwards.
 */
#define main producer_example_main
#include "../../docs/producer-example.c"
#undef main

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "raw_amqp.h"

static char *slurp(const char *rel)
{
    const char *src = getenv("KD_SRC_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", src ? src : ".", rel);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s (set KD_SRC_DIR)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* A local port nobody listens on: bind an ephemeral port, then close it. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void test_doc_shows_the_example(void **state)
{
    (void)state;
    char *md = slurp("docs/producer.md");
    char *code = slurp("docs/producer-example.c");
    const char *marker = "<!-- docs/producer-example.c -->\n```c\n";
    char *start = strstr(md, marker);
    if (!start)
        fail_msg("docs/producer.md lacks the line '<!-- docs/producer-example.c -->' "
                 "followed by a ```c block");
    start += strlen(marker);
    char *end = strstr(start, "```\n");
    assert_non_null(end);
    *end = '\0';
    if (strcmp(start, code) != 0)
        fail_msg("the example in docs/producer.md differs from docs/producer-example.c");
    free(md);
    free(code);
}

static void test_example_without_broker_exits_2(void **state)
{
    (void)state;
    char port[16];
    snprintf(port, sizeof port, "%d", closed_port());
    /* the live tests after this one need the stack's port back (KD_PORT_OFFSET) */
    const char *had = getenv("KD_AMQP_PORT");
    char *saved = had ? strdup(had) : NULL;
    setenv("KD_AMQP_PORT", port, 1);
    char *argv[] = {"my-app", NULL};
    assert_int_equal(producer_example_main(1, argv), 2);
    if (saved)
        setenv("KD_AMQP_PORT", saved, 1);
    else
        unsetenv("KD_AMQP_PORT");
    free(saved);
}

static void test_open_errors_name_the_problem_not_the_password(void **state)
{
    (void)state;
    kd_config cfg;
    kd_err err = {0};
    char port[32];
    snprintf(port, sizeof port, "--amqp-port=%d", closed_port());
    char *argv[] = {"t", port, "--amqp-password=hunter2-secret", NULL};
    assert_int_equal(kd_config_load(&cfg, KD_PROG_PRODUCER, "t", 3, argv, &err), 0);
    kd_producer *p = (kd_producer *)&cfg; /* must be reset to NULL on failure */
    assert_int_equal(kd_producer_open(&p, &cfg, &err), KD_ERR_IO);
    assert_null(p);
    assert_non_null(strstr(err.msg, "127.0.0.1:"));
    assert_non_null(strstr(err.msg, port + strlen("--amqp-port=")));
    assert_null(strstr(err.msg, "hunter2"));

    /* out of bounds: refused by the table (as at load), naming the key and its bounds */
    assert_int_equal(kd_config_set(&cfg, KD_CFG_PRODUCER_CONFIRM_TIMEOUT_MS, "0", &err),
                     KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "producer.confirm_timeout_ms"));
    assert_non_null(strstr(err.msg, "1..3600000"));
    kd_config_free(&cfg);
    kd_producer_close(NULL); /* allowed, like free(NULL) */
}

/* ---- with a broker (KD_TEST_AMQP=1) ---- */

static void fill_job(kd_job *job, const char *id)
{
    memset(job, 0, sizeof *job);
    job->v = KD_JOB_VERSION;
    snprintf(job->job_id, sizeof job->job_id, "%s", id);
    job->op = KD_OP_CALL;
    snprintf(job->building_id, sizeof job->building_id, "building:9990000951");
    snprintf(job->group_id, sizeof job->group_id, "1");
    job->created_at = now_ms();
    job->deadline = job->created_at + 60000;
    job->area = 3000;
    job->action = 2;
}

/* Deletes the test's queue and exchange through a plain rabbitmq-c connection. */
static void delete_topology(const kd_config *cfg, const char *name)
{
    amqp_connection_state_t c = raw_amqp_login(cfg);
    assert_non_null(c);
    amqp_channel_open(c, 1);
    amqp_queue_delete(c, 1, amqp_cstring_bytes(name), 0, 0);
    amqp_exchange_delete(c, 1, amqp_cstring_bytes(name), 0);
    assert_int_equal(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
}

static void test_live_publish(void **state)
{
    (void)state;
    if (!getenv("KD_TEST_AMQP"))
        skip();
    kd_config cfg;
    kd_err err = {0};
    char *argv[] = {"t", NULL};
    assert_int_equal(kd_config_load(&cfg, KD_PROG_PRODUCER, "test_producer", 1, argv, &err), 0);
    char name[64];
    snprintf(name, sizeof name, "kd.test.producer.%d", (int)getpid());
    kd_config_set(&cfg, KD_CFG_AMQP_EXCHANGE, name, NULL);
    kd_config_set(&cfg, KD_CFG_AMQP_QUEUE, name, NULL);
    kd_config_set(&cfg, KD_CFG_AMQP_ROUTING_KEY, name, NULL);
    kd_producer *p;
    if (kd_producer_open(&p, &cfg, &err) != 0)
        fail_msg("%s", err.msg);
    kd_job job;
    fill_job(&job, "test-producer-1");
    if (kd_producer_publish(p, &job, &err) != 0)
        fail_msg("%s", err.msg);
    job.has_delay = true;
    job.delay = 31;
    assert_int_equal(kd_producer_publish(p, &job, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "delay"));
    kd_producer_close(p);
    delete_topology(&cfg, name);
    kd_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doc_shows_the_example),
        cmocka_unit_test(test_example_without_broker_exits_2),
        cmocka_unit_test(test_open_errors_name_the_problem_not_the_password),
        cmocka_unit_test(test_live_publish),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
