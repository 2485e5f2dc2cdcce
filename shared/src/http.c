/* http.c: /metrics, /healthz and /readyz on libmicrohttpd (see kd_http.h).
 *
 * libmicrohttpd runs its own polling thread (MHD_USE_AUTO_INTERNAL_THREAD: epoll on
 * Linux, so no FD_SETSIZE limit) and calls answer() there. Every answer is built in full
 * before it is queued (MHD_RESPMEM_MUST_FREE), from atomics or the registry's exposition,
 * so no handler waits on the worker's threads or on a broker.
 *
 * Hardening (the endpoint is reachable by anything in the pod network, and a starved
 * /healthz gets the worker restarted by its liveness probe):
 *   - every request is answered on the first call, once its headers are in: a body is
 *     never read, so a POST with a huge Content-Length costs nothing (405 at once, and
 *     libmicrohttpd closes the connection as the body was not consumed);
 *   - the request line and headers must fit in KD_HTTP_REQUEST_MAX bytes (libmicrohttpd
 *     answers 431/414 otherwise);
 *   - connections are capped per client address (metrics.max_connections_per_ip) below the
 *     total cap (metrics.max_connections), so one address holding sockets open (slow
 *     clients, a broken scraper) cannot take the slots the kubelet's probes need; idle
 *     ones time out after a few seconds;
 *   - libmicrohttpd's own messages go through kd_log (one JSON line each) at most once a
 *     second, so a flood of refused connections cannot flood the log either; the last one
 *     is kept for the error when the daemon cannot start (e.g. the port is taken).
 */
#include "kd_http.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_log.h"
#include "kd_time.h"

#define KD_HTTP_CONN_LIMIT 256
#define KD_HTTP_CONN_PER_IP 8
#define KD_HTTP_CONN_TIMEOUT_S 5
#define KD_HTTP_REQUEST_MAX (16 * 1024)
#define KD_HTTP_DEFAULT_STALE_MS 30000

struct kd_http {
    struct MHD_Daemon *d;
    kd_metrics *metrics;
    int64_t stale_us;
    kd_http_ready_fn ready;
    void *ready_arg;
    int port;
    _Atomic int64_t heartbeat_mono_us;
};

static _Thread_local char mhd_last_error[256];
static _Atomic int64_t mhd_logged_mono_us;
static _Atomic unsigned mhd_suppressed;

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    vsnprintf(mhd_last_error, sizeof mhd_last_error, fmt, ap);
    size_t n = strlen(mhd_last_error);
    while (n > 0 && (mhd_last_error[n - 1] == '\n' || mhd_last_error[n - 1] == '\r'))
        mhd_last_error[--n] = '\0';
    int64_t now = kd_mono_us(), last = atomic_load(&mhd_logged_mono_us);
    if (last && now - last < 1000000) {
        atomic_fetch_add(&mhd_suppressed, 1);
        return;
    }
    atomic_store(&mhd_logged_mono_us, now);
    unsigned dropped = atomic_exchange(&mhd_suppressed, 0);
    if (dropped)
        kd_warn("http: %s (%u messages before it not logged: one a second at most)", mhd_last_error,
                dropped);
    else
        kd_warn("http: %s", mhd_last_error);
}

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                               const char *type)
{
    struct MHD_Response *r =
        body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
             : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) {
        /* GCOVR_EXCL_START: allocation failure (no test injects one) */
        free(body);
        return MHD_NO;
        /* GCOVR_EXCL_STOP */
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        /* GCOVR_EXCL_START: json_dumps fails only on allocation (the callers build valid JSON) */
        return respond(c, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, 0, "text/plain");
    /* GCOVR_EXCL_STOP */
    /* json_dumps uses malloc (the default allocator), so MHD may free() it */
    size_t len = strlen(text);
    char *body = realloc(text, len + 2);
    if (!body) {
        /* GCOVR_EXCL_START: allocation failure (no test injects one) */
        free(text);
        return MHD_NO;
        /* GCOVR_EXCL_STOP */
    }
    body[len] = '\n';
    body[len + 1] = '\0';
    return respond(c, status, body, len + 1, "application/json");
}

static enum MHD_Result answer_metrics(kd_http *h, struct MHD_Connection *c)
{
    size_t len = 0;
    char *text = h->metrics ? kd_metrics_expose(h->metrics, &len) : strdup("");
    if (!text)
        /* GCOVR_EXCL_START: kd_metrics_expose fails only on allocation */
        return respond(c, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, 0, "text/plain");
    /* GCOVR_EXCL_STOP */
    return respond(c, MHD_HTTP_OK, text, len, KD_METRICS_CONTENT_TYPE);
}

static enum MHD_Result answer_healthz(kd_http *h, struct MHD_Connection *c)
{
    int64_t age_us = kd_mono_us() - atomic_load(&h->heartbeat_mono_us);
    bool ok = age_us <= h->stale_us;
    json_t *j =
        json_pack("{s:s, s:I, s:I}", "status", ok ? "ok" : "stale", "heartbeat_age_ms",
                  (json_int_t)(age_us / 1000), "stale_after_ms", (json_int_t)(h->stale_us / 1000));
    return respond_json(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, j);
}

static enum MHD_Result answer_readyz(kd_http *h, struct MHD_Connection *c)
{
    char reasons[1024] = "";
    bool ready = h->ready ? h->ready(h->ready_arg, reasons, sizeof reasons) : true;
    reasons[sizeof reasons - 1] = '\0';
    json_t *list = json_array();
    for (char *line = reasons, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (*line)
            json_array_append_new(list, json_string(line));
    }
    json_t *j = json_pack("{s:b, s:o}", "ready", ready, "reasons", list);
    return respond_json(c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, j);
}

static enum MHD_Result
answer(void *cls, struct MHD_Connection *c, const char *url, const char *method,
       const char *version, const char *upload,
       // NOLINTNEXTLINE(readability-non-const-parameter): MHD_AccessHandlerCallback's type
       size_t *upload_size, void **con_cls)
{
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)con_cls;
    kd_http *h = cls;
    /* This is the first call, headers only: answering now means no body is ever read. */
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return respond(c, MHD_HTTP_METHOD_NOT_ALLOWED, strdup("method not allowed\n"), 19,
                       "text/plain");
    if (strcmp(url, "/metrics") == 0)
        return answer_metrics(h, c);
    if (strcmp(url, "/healthz") == 0)
        return answer_healthz(h, c);
    if (strcmp(url, "/readyz") == 0)
        return answer_readyz(h, c);
    return respond(c, MHD_HTTP_NOT_FOUND, strdup("not found\n"), 10, "text/plain");
}

int kd_http_start(kd_http **out, const kd_http_opts *o, kd_err *err)
{
    if (o->port < 0 || o->port > 65535)
        return kd_err_set(err, KD_ERR_INVALID, "metrics endpoint: port %d out of range", o->port);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    const char *addr = o->listen && *o->listen ? o->listen : "0.0.0.0";
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)o->port);
    } else if (inet_pton(AF_INET6, addr, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)o->port);
        flags |= MHD_USE_IPv6;
    } else {
        return kd_err_set(err, KD_ERR_INVALID,
                          "metrics endpoint: '%s' is not an IPv4 or IPv6 "
                          "address",
                          addr);
    }
    unsigned limit = o->max_connections ? o->max_connections : KD_HTTP_CONN_LIMIT;
    unsigned per_ip = o->max_connections_per_ip ? o->max_connections_per_ip : KD_HTTP_CONN_PER_IP;
    if (per_ip > limit)
        return kd_err_set(err, KD_ERR_INVALID,
                          "metrics endpoint: %u connections per address "
                          "exceed the %u in all",
                          per_ip, limit);
    kd_http *h = calloc(1, sizeof *h);
    if (!h)
        /* GCOVR_EXCL_START: allocation failure (no test injects one) */
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    /* GCOVR_EXCL_STOP */
    h->metrics = o->metrics;
    h->stale_us = (o->stale_ms > 0 ? o->stale_ms : KD_HTTP_DEFAULT_STALE_MS) * 1000;
    h->ready = o->ready;
    h->ready_arg = o->ready_arg;
    atomic_init(&h->heartbeat_mono_us, kd_mono_us());
    mhd_last_error[0] = '\0';
    atomic_store(&mhd_logged_mono_us, 0);

    /* the logger must be the first option, or early messages go to stderr unformatted */
    h->d = MHD_start_daemon(
        flags, (uint16_t)o->port, NULL, NULL, answer, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger,
        NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, limit,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)KD_HTTP_REQUEST_MAX, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)KD_HTTP_CONN_TIMEOUT_S, MHD_OPTION_END);
    if (!h->d) {
        free(h);
        return kd_err_set(err, KD_ERR_IO, "metrics endpoint: cannot listen on %s port %d%s%s", addr,
                          o->port, mhd_last_error[0] ? ": " : "", mhd_last_error);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info && info->port ? info->port : o->port;
    *out = h;
    return 0;
}

int kd_http_port(const kd_http *h)
{
    return h ? h->port : 0;
}

void kd_http_heartbeat(kd_http *h)
{
    if (h)
        atomic_store_explicit(&h->heartbeat_mono_us, kd_mono_us(), memory_order_relaxed);
}

void kd_http_stop(kd_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->d);
    free(h);
}
