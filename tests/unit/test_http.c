/* test_http: the metrics and health endpoint on an ephemeral loopback port, fetched with
 * libcurl: /metrics, /healthz (fresh and stale), /readyz (ready and not), 404, 405,
 * refused listen addresses and ports; and its hardening, with raw sockets: a POST is
 * refused before its body is sent, oversized headers are refused, and /healthz still
 * answers while slow clients hold connections open from one address and from many. */
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

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* ------------------------------------------------------------------ hardening */

/* A TCP connection to 127.0.0.1:port from the loopback address src (any 127.x.y.z is
 * local on Linux: a test can be "many clients"). */
static int connect_from(const char *src, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, src, &a.sin_addr), 1);
    if (bind(fd, (struct sockaddr *)&a, sizeof a))
        fail_msg("bind %s: %m", src);
    struct sockaddr_in d = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &d.sin_addr);
    if (connect(fd, (struct sockaddr *)&d, sizeof d))
        fail_msg("connect from %s: %m", src);
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            fail_msg("send: %m");
        p += w;
        n -= (size_t)w;
    }
}

/* The status of the answer read from fd; 0 when the server closes without one. The 10 s
 * bound only keeps a broken server from hanging the test. */
static int read_status(int fd)
{
    char buf[4096] = "";
    size_t n = 0;
    while (n < sizeof buf - 1 && !memchr(buf, '\n', n)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) != 1)
            fail_msg("no answer within 10 s");
        ssize_t r = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    int status = 0;
    sscanf(buf, "HTTP/1.%*d %d", &status);
    return status;
}

/* An endpoint with the default limits on 127.0.0.1; returns its port. */
static int start_loopback(kd_http **h)
{
    kd_http_opts o = {.listen = "127.0.0.1"}; /* the defaults: 256 in all, 8 per address */
    assert_int_equal(kd_http_start(h, &o, NULL), 0);
    return kd_http_port(*h);
}

static void test_refuses_methods_before_the_body(void **state)
{
    (void)state;
    kd_http *h = NULL;
    int port = start_loopback(&h);
    /* a gigabyte announced and not one byte of it sent: the 405 must come regardless */
    const char *methods[] = {"POST", "PUT", "DELETE", "PATCH"};
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
        int fd = connect_from("127.0.0.1", port);
        char req[256];
        int n = snprintf(req, sizeof req,
                         "%s /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n"
                         "Content-Type: application/octet-stream\r\n\r\n",
                         methods[i]);
        send_all(fd, req, (size_t)n);
        assert_int_equal(read_status(fd), 405);
        close(fd);
    }
    /* OPTIONS and TRACE without a body: refused too */
    assert_int_equal(fetch(port, "/healthz", "OPTIONS").status, 405);
    assert_int_equal(fetch(port, "/healthz", "TRACE").status, 405);
    kd_http_stop(h);
}

static void test_refuses_oversized_requests(void **state)
{
    (void)state;
    kd_http *h = NULL;
    int port = start_loopback(&h);
    size_t big = 20 * 1024;
    char *req = malloc(big + 128);
    assert_non_null(req);
    int head = snprintf(req, 128, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(req + head, 'a', big);
    memcpy(req + head + big, "\r\n\r\n", 5);
    int fd = connect_from("127.0.0.1", port);
    send_all(fd, req, (size_t)head + big + 4);
    int status = read_status(fd);
    printf("    20 KiB of headers: %d\n", status);
    assert_true(status == 431 || status == 413 || status == 414);
    close(fd);
    /* a long URL too */
    memcpy(req, "GET /", 5);
    memset(req + 5, 'a', big);
    static const char tail[] = " HTTP/1.1\r\nHost: t\r\n\r\n";
    memcpy(req + 5 + big, tail, sizeof tail - 1);
    fd = connect_from("127.0.0.1", port);
    send_all(fd, req, 5 + big + sizeof tail - 1);
    status = read_status(fd);
    printf("    20 KiB URL: %d\n", status);
    assert_true(status == 414 || status == 431);
    close(fd);
    free(req);
    /* and a normal request is still fine */
    assert_int_equal(fetch(port, "/healthz", NULL).status, 200);
    kd_http_stop(h);
}

/* The chart's liveness probe timeout (charts/kone-dispatch/values.yaml,
 * worker.probes.liveness.timeoutSeconds): the bound that decides whether a worker is
 * restarted. It is a liveness bound, not a performance figure: the latency is printed. */
#define LIVENESS_TIMEOUT_MS 2000L

static void probe_healthz(int port, const char *what)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port);
    resp r = {0};
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, LIVENESS_TIMEOUT_MS);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CURLcode rc = curl_easy_perform(c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_cleanup(c);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("    /healthz during %s: %s, %ld, %.1f ms\n", what, curl_easy_strerror(rc), r.status,
           ms);
    if (rc != CURLE_OK)
        fail_msg("/healthz during %s: %s", what, curl_easy_strerror(rc));
    assert_int_equal(r.status, 200);
}

/* Opens n connections from src that each send half a request and stall. */
static int slow_clients(const char *src, int port, int *fds, int n)
{
    static const char half[] = "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ";
    for (int i = 0; i < n; i++) {
        fds[i] = connect_from(src, port);
        send(fds[i], half, sizeof half - 1, MSG_NOSIGNAL); /* may fail: already closed */
    }
    return n;
}

/* How many of fds the server has closed (reads EOF or a reset). */
static int closed_by_server(const int *fds, int n)
{
    int closed = 0;
    for (int i = 0; i < n; i++) {
        struct pollfd p = {.fd = fds[i], .events = POLLIN};
        char b;
        if (poll(&p, 1, 0) == 1 && recv(fds[i], &b, 1, MSG_DONTWAIT) <= 0)
            closed++;
    }
    return closed;
}

static void test_healthz_answers_under_slow_client_flood(void **state)
{
    (void)state;
    kd_http *h = NULL;
    int port = start_loopback(&h);

    /* one address opens more connections than the endpoint takes in all: only 8 stay
     * (the per-address limit), the rest are closed at once, and the probe gets in */
    enum { ONE = 300, MANY_ADDR = 30, PER_ADDR = 8 };
    static int one[ONE], many[MANY_ADDR * PER_ADDR];
    slow_clients("127.0.0.2", port, one, ONE);
    probe_healthz(port, "300 slow clients from one address");
    int closed = closed_by_server(one, ONE);
    printf("    slow clients from one address closed by the server: %d of %d\n", closed, ONE);
    assert_true(closed >= ONE - PER_ADDR);

    /* then 30 more addresses with 8 slow clients each, all kept (240, below the 256 in
     * all): the endpoint still answers while holding them */
    for (int a = 0; a < MANY_ADDR; a++) {
        char src[32];
        snprintf(src, sizeof src, "127.0.1.%d", a + 1);
        slow_clients(src, port, many + a * PER_ADDR, PER_ADDR);
    }
    probe_healthz(port, "248 slow clients from 31 addresses");
    for (int i = 0; i < ONE; i++)
        close(one[i]);
    for (int i = 0; i < MANY_ADDR * PER_ADDR; i++)
        close(many[i]);
    kd_http_stop(h);
}

static void test_refuses_per_ip_above_total(void **state)
{
    (void)state;
    kd_http *h = NULL;
    kd_err err = {0};
    kd_http_opts o = {.listen = "127.0.0.1", .max_connections = 4, .max_connections_per_ip = 8};
    assert_int_equal(kd_http_start(&h, &o, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "per address"));
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
        cmocka_unit_test(test_refuses_methods_before_the_body),
        cmocka_unit_test(test_refuses_oversized_requests),
        cmocka_unit_test(test_healthz_answers_under_slow_client_flood),
        cmocka_unit_test(test_refuses_per_ip_above_total),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
