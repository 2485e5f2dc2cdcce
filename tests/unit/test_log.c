/* test_log: kd_log's lines in ECS field names (docs/logging.md). stderr is redirected to a
 * temporary file, each line read back and parsed with jansson: the first three keys are
 * @timestamp, log.level and message, in that order (ecs-logging's rule); the job context
 * becomes trace.id / span.id and kd.*; a W3C traceparent is split, any other trace_id kept
 * whole; kd.worker appears once the instance is named; levels below the minimum write nothing;
 * invalid UTF-8 is made safe rather than the line lost. The schema check of the same lines
 * over real programs is in tests/integration/lib.sh and tests/ops/schemas.sh.
 */
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

#include "kd_log.h"

static FILE *capture;
static int saved_fd = -1;

static int setup(void **state)
{
    (void)state;
    capture = tmpfile();
    if (!capture)
        return -1;
    fflush(stderr);
    saved_fd = dup(STDERR_FILENO);
    dup2(fileno(capture), STDERR_FILENO);
    kd_log_init("test_log", "debug");
    kd_log_set_instance(NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fflush(stderr);
    dup2(saved_fd, STDERR_FILENO);
    close(saved_fd);
    fclose(capture);
    return 0;
}

/* The lines written since the last call, parsed; the caller json_decref()s the array. */
static json_t *lines(void)
{
    static long done;
    fflush(stderr);
    json_t *all = json_array();
    fseek(capture, done, SEEK_SET);
    char buf[4096];
    while (fgets(buf, sizeof buf, capture)) {
        json_error_t e;
        json_t *o = json_loads(buf, 0, &e);
        if (!o)
            fail_msg("not JSON: %s (%s)", buf, e.text);
        json_array_append_new(all, o);
    }
    done = ftell(capture);
    return all;
}

static const char *str(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void test_fields_and_order(void **state)
{
    (void)state;
    kd_info("hello %d", 42);
    json_t *a = lines();
    assert_int_equal(json_array_size(a), 1);
    json_t *o = json_array_get(a, 0);
    const char *want[] = {"@timestamp",   "log.level",       "message",      "ecs.version",
                          "service.name", "service.version", "event.dataset"};
    void *it = json_object_iter(o);
    for (size_t i = 0; i < sizeof want / sizeof *want; i++, it = json_object_iter_next(o, it)) {
        assert_non_null(it);
        assert_string_equal(json_object_iter_key(it), want[i]);
    }
    assert_null(it); /* no job, no instance: nothing else */
    assert_string_equal(str(o, "log.level"), "info");
    assert_string_equal(str(o, "message"), "hello 42");
    assert_string_equal(str(o, "ecs.version"), KD_LOG_ECS_VERSION);
    assert_string_equal(str(o, "service.name"), "test_log");
    assert_string_equal(str(o, "event.dataset"), "test_log.log");
    const char *ts = str(o, "@timestamp");
    assert_int_equal(strlen(ts), strlen("2026-11-28T20:15:00.123Z"));
    assert_int_equal(ts[10], 'T');
    assert_int_equal(ts[19], '.');
    assert_int_equal(ts[23], 'Z');
    json_decref(a);
}

static void test_job_context(void **state)
{
    (void)state;
    kd_log_ctx tp = {"job-1", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                     "building:9990000951"};
    kd_log(KD_LOG_WARN, &tp, "about a job");
    kd_log_ctx plain = {"job-2", "order-7f3a", NULL};
    kd_log(KD_LOG_ERROR, &plain, "another");
    kd_log_ctx empty = {"", "", ""};
    kd_log(KD_LOG_INFO, &empty, "empty fields are left out");
    json_t *a = lines();
    assert_int_equal(json_array_size(a), 3);
    json_t *o = json_array_get(a, 0);
    assert_string_equal(str(o, "log.level"), "warn");
    assert_string_equal(str(o, "trace.id"), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(str(o, "span.id"), "00f067aa0ba902b7");
    assert_string_equal(str(o, "kd.job_id"), "job-1");
    assert_string_equal(str(o, "kd.building_id"), "building:9990000951");
    o = json_array_get(a, 1);
    assert_string_equal(str(o, "trace.id"), "order-7f3a");
    assert_null(str(o, "span.id"));
    assert_null(str(o, "kd.building_id"));
    o = json_array_get(a, 2);
    assert_null(str(o, "trace.id"));
    assert_null(str(o, "kd.job_id"));
    assert_null(str(o, "kd.building_id"));
    json_decref(a);
}

static void test_not_quite_traceparent(void **state)
{
    (void)state;
    /* upper-case hex is not a traceparent (W3C: lower case): kept whole */
    kd_log_ctx c = {"j", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", NULL};
    kd_log(KD_LOG_INFO, &c, "x");
    json_t *a = lines();
    assert_string_equal(str(json_array_get(a, 0), "trace.id"), c.trace_id);
    assert_null(str(json_array_get(a, 0), "span.id"));
    json_decref(a);
}

static void test_instance_and_levels(void **state)
{
    (void)state;
    kd_log_set_instance("worker-a");
    kd_log_init("test_log", "warn");
    assert_false(kd_log_enabled(KD_LOG_INFO));
    assert_true(kd_log_enabled(KD_LOG_ERROR));
    kd_info("dropped");
    kd_error("kept");
    assert_int_equal(kd_log_init("test_log", "verbose"), -1);
    json_t *a = lines();
    assert_int_equal(json_array_size(a), 1);
    assert_string_equal(str(json_array_get(a, 0), "message"), "kept");
    assert_string_equal(str(json_array_get(a, 0), "kd.worker"), "worker-a");
    kd_log_set_instance("");
    kd_error("again");
    json_decref(a);
    a = lines();
    assert_null(str(json_array_get(a, 0), "kd.worker"));
    json_decref(a);
    kd_log_init("test_log", "debug");
}

static void test_invalid_utf8_kept(void **state)
{
    (void)state;
    kd_info("bad \xff byte");
    json_t *a = lines();
    assert_int_equal(json_array_size(a), 1);
    assert_string_equal(str(json_array_get(a, 0), "message"), "bad ? byte");
    json_decref(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_and_order),      cmocka_unit_test(test_job_context),
        cmocka_unit_test(test_not_quite_traceparent), cmocka_unit_test(test_instance_and_levels),
        cmocka_unit_test(test_invalid_utf8_kept),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
