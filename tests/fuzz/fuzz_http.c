/* fuzz_http: raw bytes sent to the metrics and health endpoint (shared/src/http.c) as a
 * client on the pod network could send them. The endpoint is the real one: kd_http_start on
 * an ephemeral loopback port, with the worker's limits (request size, connections per
 * address, idle timeout), a registry holding a labelled counter and a histogram, and a
 * readiness callback with reasons. Each input goes over a fresh TCP connection, whose
 * writing side is then closed; libmicrohttpd parses it on its own thread and calls the
 * project's handler, so both run under ASan and UBSan.
 *
 * Checked for every input: whatever the endpoint answers starts with an HTTP/1.x status
 * line, a request whose method is not GET or HEAD is never answered 200 or 503 (the handler
 * reads no body: 405), and the endpoint still accepts the next connection; every 256
 * inputs, a liveness probe's GET /healthz still gets 200 (a client sending garbage must not
 * get the worker restarted).
 *
 * libmicrohttpd itself is not instrumented for coverage, so libFuzzer is guided by the
 * handler's branches only; the sanitizers still see every byte libmicrohttpd touches. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kd_http.h"
#include "kd_metrics.h"

static kd_http *endpoint;
static kd_metrics *registry;

static bool not_ready(void *arg, char *reasons, size_t cap)
{
    (void)arg;
    snprintf(reasons, cap, "amqp: connecting\nkone: circuit open");
    return false;
}

static void start(void)
{
    kd_err err = {0};
    static const char *const ops[] = {"call", "cancel", NULL};
    static const double buckets[] = {0.01, 0.1, 1};
    kd_metric_desc jobs = {.name = "fuzz_jobs_total",
                           .help = "jobs",
                           .type = KD_METRIC_COUNTER,
                           .n_labels = 1,
                           .labels = {"op"},
                           .values = {ops}};
    kd_metric_desc lat = {.name = "fuzz_latency_seconds",
                          .help = "latency",
                          .type = KD_METRIC_HISTOGRAM,
                          .buckets = buckets,
                          .n_buckets = 3};
    kd_metric *m = NULL;
    if (kd_metrics_new(&registry, &err) || kd_metrics_register(registry, &jobs, &m, &err) ||
        kd_metrics_register(registry, &lat, NULL, &err)) {
        fprintf(stderr, "fuzz_http: %s\n", err.msg);
        abort();
    }
    kd_http_opts o = {.port = 0,
                      .listen = "127.0.0.1",
                      .metrics = registry,
                      .ready = not_ready}; /* the worker's connection limits */
    if (kd_http_start(&endpoint, &o, &err)) {
        fprintf(stderr, "fuzz_http: %s\n", err.msg);
        abort();
    }
}

static int connect_endpoint(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)kd_http_port(endpoint)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int attempt = 0; attempt < 100; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            abort();
        /* close() resets the connection: the endpoint frees it at once, rather than keep an
         * incomplete request until its idle timeout and count it against this address */
        struct linger reset = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            return fd;
        close(fd);
        poll(NULL, 0, 10); /* the previous connections are being torn down: try again */
    }
    fprintf(stderr, "fuzz_http: the endpoint no longer accepts connections\n");
    abort();
}

/* Reads what the endpoint sends until it closes the connection or stays silent for
 * first_ms (before the first byte) or 20 ms (after it); returns the length in buf. */
static size_t read_answer(int fd, char *buf, size_t cap, int first_ms)
{
    size_t len = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, len ? 20 : first_ms) != 1)
            return len;
        char tmp[4096];
        ssize_t n = recv(fd, tmp, sizeof tmp, 0);
        if (n <= 0)
            return len; /* closed (or reset: a refused request) */
        size_t k = (size_t)n < cap - len ? (size_t)n : cap - len;
        memcpy(buf + len, tmp, k);
        len += k;
    }
}

/* Sends all of data (the endpoint may close early: a refused request), closes the sending
 * side and reads the answer. A request whose headers are not complete gets none (the
 * endpoint waits for the rest until its idle timeout), so that wait is short. */
static size_t exchange(int fd, const uint8_t *data, size_t size, char *buf, size_t cap)
{
    for (size_t off = 0; off < size;) {
        ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    shutdown(fd, SHUT_WR);
    bool complete = memmem(data, size, "\r\n\r\n", 4) || memmem(data, size, "\n\n", 2);
    return read_answer(fd, buf, cap, complete ? 1000 : 20);
}

/* What the kubelet's liveness probe does: whatever other clients sent, it gets 200. */
static void probe(void)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    int fd = connect_endpoint();
    char answer[2048];
    size_t len = exchange(fd, (const uint8_t *)req, sizeof req - 1, answer, sizeof answer - 1);
    close(fd);
    answer[len] = '\0';
    if (strncmp(answer, "HTTP/1.1 200", 12) != 0) {
        fprintf(stderr, "fuzz_http: /healthz no longer answers 200: '%.60s'\n", answer);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned runs;
    if (!endpoint)
        start();
    kd_http_heartbeat(endpoint);
    if (runs++ % 256 == 0)
        probe();
    int fd = connect_endpoint();
    static char answer[64 * 1024];
    size_t len = exchange(fd, data, size, answer, sizeof answer - 1);
    close(fd);
    answer[len] = '\0';
    if (len == 0)
        return 0; /* closed without an answer: an incomplete or refused request */
    if (len < 12 || (memcmp(answer, "HTTP/1.1 ", 9) != 0 && memcmp(answer, "HTTP/1.0 ", 9) != 0) ||
        answer[9] < '1' || answer[9] > '5') {
        fprintf(stderr, "fuzz_http: not a status line: %.40s\n", answer);
        abort();
    }
    /* a method other than GET or HEAD at the very start of the input: never served */
    size_t m = 0;
    while (m < size && data[m] >= 'A' && data[m] <= 'Z')
        m++;
    bool get = (m == 3 && memcmp(data, "GET", 3) == 0) || (m == 4 && memcmp(data, "HEAD", 4) == 0);
    if (m > 0 && m < size && data[m] == ' ' && !get &&
        (memcmp(answer + 9, "200", 3) == 0 || memcmp(answer + 9, "503", 3) == 0)) {
        fprintf(stderr, "fuzz_http: method %.*s was served: %.12s\n", (int)m, (const char *)data,
                answer);
        abort();
    }
    return 0;
}
