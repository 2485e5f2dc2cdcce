/**
 * @file kd_http.h
 * @brief kd_http: the metrics and health endpoint (libmicrohttpd, its own thread).
 *
 *   GET /metrics  the registry in the Prometheus text format
 *   GET /healthz  200 while the owner's loop turns: kd_http_heartbeat() was called within
 *                 stale_ms; 503 otherwise (a wedged loop: the orchestrator restarts it)
 *   GET /readyz   200 when the ready callback says so, 503 with its reasons otherwise
 *   anything else 404; a method other than GET/HEAD 405, answered before any body is read
 * Bodies of /healthz and /readyz are small JSON objects. Request line and headers are
 * limited to 16 KiB; connections to max_connections in all and max_connections_per_ip per
 * client address (see http.c for why).
 *
 * Why its own thread (MHD_USE_INTERNAL_POLLING_THREAD): the worker's main thread may sit
 * in a RabbitMQ call and the KONE thread in libwebsockets; a scrape must be answered
 * regardless. So the handlers never call into a broker: /metrics reads atomics, /healthz
 * one atomic timestamp, and the ready callback must only read state its owners publish
 * (atomics or a short lock), never do I/O.
 */
#ifndef KD_HTTP_H
#define KD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kd_err.h"
#include "kd_metrics.h"

/** The metrics and health HTTP endpoint (opaque). */
typedef struct kd_http kd_http;

/** Fills reasons (NUL-terminated, may be left empty) with why it is not ready, each
 * reason one line ("not consuming from RabbitMQ\n..."). Called on the HTTP thread. */
typedef bool (*kd_http_ready_fn)(void *arg, char *reasons, size_t len);

/** What kd_http_start() serves and where. */
typedef struct kd_http_opts {
    const char *listen;              /**< IPv4 or IPv6 address; NULL or "" = 0.0.0.0 */
    int port;                        /**< 0 = an ephemeral port (see kd_http_port) */
    kd_metrics *metrics;             /**< may be NULL: /metrics is then empty */
    int64_t stale_ms;                /**< /healthz fails when the heartbeat is older; <= 0: 30000 */
    kd_http_ready_fn ready;          /**< NULL: always ready */
    void *ready_arg;                 /**< passed to ready */
    unsigned max_connections;        /**< 0: 256 */
    unsigned max_connections_per_ip; /**< 0: 8; must not exceed max_connections */
} kd_http_opts;

/** Binds and starts serving; the heartbeat counts as fresh at start. */
int kd_http_start(kd_http **out, const kd_http_opts *o, kd_err *err);
int kd_http_port(const kd_http *h); /**< the bound port */
/** The owner's loop is alive: cheap (one atomic store), call it every turn. */
void kd_http_heartbeat(kd_http *h);
void kd_http_stop(kd_http *h); /**< NULL is fine */

#endif
