/* test_http: the metrics and health endpoint on an ephemeral loopback port, fetched with
 * libcurl: /metrics, /healthz (fresh and stale), /readyz (ready and not), 404, 405,
 * refused listen addresses and ports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "kd_http.h"
#include "kd_metrics.h"

typedef struct resp {
    long status;
    char body[8192];
    size_t len;
    char type[128];
} resp;

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    resp *r = arg;
    size_t k = sz * n;
    size_t room = sizeof r->body - 1 - r->len;
    memcpy(r->body + r->len, p, k < room ? k : room);
    r->len += k < room ? k : room;
    r->body[r->len] = '\0';
    return k;
}

static resp fetch(int port, const char *path, const char *method)
{
    resp r = {0};
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    if (method && strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (method)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        fail_msg("%s %s: %s", method ? method : "GET", url, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    if (ct)
        snprintf(r.type, sizeof r.type, "%s", ct);
    curl_easy_cleanup(c);
    return r;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static _Atomic int ready_calls;

static bool always_ready(void *arg, char *reasons, size_t len)
{
    (void)arg;
    (void)reasons;
    (void)len;
    atomic_fetch_add(&ready_calls, 1);
    return true;
}

static bool never_ready(void *arg, char *reasons, size_t len)
{
    snprintf(reasons, len, "not consuming from RabbitMQ\nno KONE \"token\"\n");
    *(int *)arg += 1;
    return false;
}

static kd_metrics *small_registry(void)
{
    kd_metrics *reg = NULL;
    kd_metric *c;
    assert_int_equal(kd_metrics_new(&reg, NULL), 0);
    kd_metric_desc d = {.name = "t_requests_total", .help = "Requests.", .type = KD_METRIC_COUNTER};
    assert_int_equal(kd_metrics_register(reg, &d, &c, NULL), 0);
    kd_counter_add(c, 0, 42);
    return reg;
}

static void test_metrics_healthz_readyz_404(void **state)
{
    (void)state;
    kd_metrics *reg = small_registry();
    kd_http *h = NULL;
    kd_err err = {0};
    kd_http_opts o = {.listen = "127.0.0.1", .port = 0, .metrics = reg, .ready = always_ready};
    assert_int_equal(kd_http_start(&h, &o, &err), 0);
    int port = kd_http_port(h);
    assert_true(port > 0);

    resp r = fetch(port, "/metrics", NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.type, KD_METRICS_CONTENT_TYPE);
    assert_string_equal(r.body, "# HELP t_requests_total Requests.\n"
                                "# TYPE t_requests_total counter\n"
                                "t_requests_total 42\n");

    r = fetch(port, "/healthz", NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.type, "application/json");
    assert_non_null(strstr(r.body, "\"status\":\"ok\""));

    r = fetch(port, "/readyz", NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"ready\":true,\"reasons\":[]}\n");
    assert_int_equal(atomic_load(&ready_calls), 1);

    r = fetch(port, "/nope", NULL);
    assert_int_equal(r.status, 404);
    r = fetch(port, "/metrics/", NULL);
    assert_int_equal(r.status, 404);
    r = fetch(port, "/metrics", "POST");
    assert_int_equal(r.status, 405);
    r = fetch(port, "/metrics", "HEAD");
    assert_int_equal(r.status, 200);
    kd_http_stop(h);
    kd_metrics_free(reg);
}

static void test_readyz_not_ready_lists_reasons(void **state)
{
    (void)state;
    int calls = 0;
    kd_http *h = NULL;
    kd_http_opts o = {.listen = "127.0.0.1", .ready = never_ready, .ready_arg = &calls};
    assert_int_equal(kd_http_start(&h, &o, NULL), 0);
    resp r = fetch(kd_http_port(h), "/readyz", NULL);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "{\"ready\":false,\"reasons\":[\"not consuming from RabbitMQ\","
                                "\"no KONE \\\"token\\\"\"]}\n");
    assert_int_equal(calls, 1);
    /* no registry: /metrics is empty but fine */
    r = fetch(kd_http_port(h), "/metrics", NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    kd_http_stop(h);
}

static void test_healthz_goes_stale_and_recovers(void **state)
{
    (void)state;
    kd_http *h = NULL;
    kd_http_opts o = {.listen = "127.0.0.1", .stale_ms = 100};
    assert_int_equal(kd_http_start(&h, &o, NULL), 0);
    int port = kd_http_port(h);
    assert_int_equal(fetch(port, "/healthz", NULL).status, 200);
    sleep_ms(250);
    resp r = fetch(port, "/healthz", NULL);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "\"status\":\"stale\""));
    assert_non_null(strstr(r.body, "\"stale_after_ms\":100"));
    kd_http_heartbeat(h);
    assert_int_equal(fetch(port, "/healthz", NULL).status, 200);
    kd_http_stop(h);
}

static void test_answers_while_owner_is_blocked(void **state)
{
    (void)state;
    /* The endpoint runs on its own thread: many requests in a row are answered while this
     * thread does nothing but ask. */
    kd_metrics *reg = small_registry();
    kd_http *h = NULL;
    kd_http_opts o = {.listen = "127.0.0.1", .metrics = reg};
    assert_int_equal(kd_http_start(&h, &o, NULL), 0);
    for (int i = 0; i < 50; i++)
        assert_int_equal(fetch(kd_http_port(h), "/metrics", NULL).status, 200);
    kd_http_stop(h);
    kd_metrics_free(reg);
}

static void test_refuses_bad_address_and_taken_port(void **state)
{
    (void)state;
    kd_http *h = NULL, *h2 = NULL;
    kd_err err = {0};
    kd_http_opts bad = {.listen = "not-an-ip"};
    assert_int_equal(kd_http_start(&h, &bad, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "not-an-ip"));
    kd_http_opts range = {.listen = "127.0.0.1", .port = 70000};
    assert_int_equal(kd_http_start(&h, &range, &err), KD_ERR_INVALID);

    kd_http_opts o = {.listen = "127.0.0.1"};
    assert_int_equal(kd_http_start(&h, &o, NULL), 0);
    kd_http_opts same = {.listen = "127.0.0.1", .port = kd_http_port(h)};
    assert_int_equal(kd_http_start(&h2, &same, &err), KD_ERR_IO);
    assert_non_null(strstr(err.msg, "cannot listen"));
    kd_http_stop(h);
    kd_http_stop(NULL);

    kd_http_opts v6 = {.listen = "::1"};
    if (kd_http_start(&h, &v6, NULL) == 0) /* hosts without IPv6 loopback skip this */
        kd_http_stop(h);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_healthz_readyz_404),
        cmocka_unit_test(test_readyz_not_ready_lists_reasons),
        cmocka_unit_test(test_healthz_goes_stale_and_recovers),
        cmocka_unit_test(test_answers_while_owner_is_blocked),
        cmocka_unit_test(test_refuses_bad_address_and_taken_port),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
