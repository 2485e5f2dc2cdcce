/* kone.h: the worker's KONE client, one thread running one libwebsockets service loop.
 *
 * It owns the OAuth2 token cache, a small pool of WebSocket connections (kone.connections),
 * per-connection request ids and the table of requests awaiting answers. Jobs come in from
 * any thread through kd_kone_submit() (a locked queue + lws_cancel_service to wake the
 * loop); many are in flight at once, never a thread or a connection per job.
 *
 * For every job it decides the outcome (kd_run_finish) and calls hooks.done on its own
 * thread; for tracked calls it calls hooks.call_event for each call-state change first.
 * The hooks must not block (the worker's produce to Kafka copies and returns; with
 * librdkafka's queue full the message is handed to the worker's main thread, worker_core.c).
 * Nothing else blocks the loop either: the token is fetched on a token thread and
 * kone.ws_url's host name resolved on a resolver thread (kone_dns.h).
 */
#ifndef KD_WORKER_KONE_H
#define KD_WORKER_KONE_H

#include <stdbool.h>
#include <stdint.h>

#include "kd_config.h"
#include "kd_err.h"
#include "kd_event.h"
#include "kd_run.h"

typedef struct kd_kone kd_kone;

typedef enum {
    KD_KONE_CIRCUIT_CLOSED = 0,
    KD_KONE_CIRCUIT_HALF_OPEN = 1,
    KD_KONE_CIRCUIT_OPEN = 2,
} kd_kone_circuit;

/* A request's status when KONE gave none (kd_kone_metrics.api_request). */
#define KD_KONE_STATUS_ERROR 0      /* no answer: connection lost, write failed */
#define KD_KONE_STATUS_TIMEOUT (-1) /* no answer within kone.request_timeout_ms */

/* The client's figures, told as they happen to whoever owns the client (worker_core.c passes
 * the catalogue of metrics_catalog.h; a benchmark or a test passes none): the client itself
 * links no metrics code. Every member may be NULL. Called on the KONE thread, token_refresh on
 * a token thread; each must be quick, must not block and must not call into the client. The
 * last argument is kd_kone_hooks.arg. */
typedef struct kd_kone_metrics {
    /* One request answered (or not): call_type "action", "hold_open", "delete",
     * "create-session", "resume-session", "site-monitoring", "ping", "config", "actions";
     * status KONE's statusCode or KD_KONE_STATUS_*; rtt_us request written -> answer. */
    void (*api_request)(const char *call_type, int status, int64_t rtt_us, void *arg);
    /* One token request: 200 ok, 401 refused, 0 any other failure; expires_at_s (Unix s)
     * when ok. */
    void (*token_refresh)(int http_status, int64_t rtt_us, int64_t expires_at_s, void *arg);
    void (*ws_connections)(int n, void *arg); /* connections carrying jobs, after a change */
    void (*ws_reconnect)(void *arg);          /* a lost connection is being replaced */
    /* The worker closed a connection because KONE's frames broke the WebSocket protocol:
     * code is the close code it sent (1002 a malformed frame, 1007 text that is not UTF-8,
     * 1009 a message over the limit). */
    void (*ws_protocol_error)(int code, void *arg);
    /* A building's circuit changed (every transition, the first from CLOSED). */
    void (*circuit_change)(const char *building, kd_kone_circuit from, kd_kone_circuit to,
                           void *arg);
    void (*rate_limit_wait)(const char *building, void *arg); /* a run waits for a token */
    /* A building's adaptive concurrency limit, or the worker's (building NULL), changed. */
    void (*concurrency_limit)(const char *building, int limit, void *arg);
    /* A call refused against its building's cached configuration (kd_kval_reason_name). */
    void (*local_reject)(const char *reason, void *arg);
    void (*unvalidated)(void *arg); /* a call made unchecked (no configuration to check) */
} kd_kone_metrics;

typedef struct kd_kone_hooks {
    void (*done)(kd_run *run, void *arg);
    void (*call_event)(kd_run *run, const kd_call_event *ev, void *arg);
    /* KONE accepted the call: run->session_id is set (the ledger records it, with the KONE
     * session, the create-session id, that made it: a delete must go to that session). The
     * run is still the KONE thread's: read job_id, attempt and session_id only, at once. */
    void (*accepted)(const kd_run *run, const char *kone_session, void *arg);
    kd_kone_metrics metrics;
    void *arg;
} kd_kone_hooks;

/* Reads kone.* keys, starts the thread. Token and connections are obtained in the
 * background; jobs submitted before then wait (up to their deadline / request timeout). */
int kd_kone_start(kd_kone **out, const kd_config *cfg, const kd_kone_hooks *hooks, kd_err *err);
/* Thread-safe. The run's job is valid; its outcome is NONE. */
void kd_kone_submit(kd_kone *k, kd_run *run);
/* True when a token is held and at least one connection is open: one of /readyz's reasons
 * (a deploy accepts KONE alone being down: docs/operations-manual.md, "ready"). */
bool kd_kone_ready(kd_kone *k);
/* Connections with an open session now (any thread). */
int kd_kone_links_ready(kd_kone *k);
/* ---- per building: circuit breaker and rate limit (docs/kone-client.md) ----
 * Read from any thread (metrics, tests): each takes the client's building lock for a copy.
 * Buildings are named "building:<id>" or "<id>". Every transition is also told to
 * hooks.metrics.circuit_change and every wait to hooks.metrics.rate_limit_wait. */

typedef struct kd_kone_building_stats {
    char building[96]; /* "building:<id>" */
    kd_kone_circuit circuit;
    uint64_t circuit_opens;     /* times its circuit opened */
    uint64_t circuit_closes;    /* times it closed again (half-open trials went through) */
    uint64_t circuit_refused;   /* runs finished "circuit_open" without a request */
    uint64_t pings;             /* pings sent while its circuit was open */
    double rate_per_s;          /* its current rate limit (after 429s); 0: none */
    uint64_t rate_waits;        /* runs that waited for a rate-limit token */
    uint64_t rate_slowdowns;    /* 429s that lowered its rate */
    int concurrency_limit;      /* its adaptive concurrency limit (kone_conc.h) */
    int concurrency_inflight;   /* requests of it outstanding under that limit */
    uint64_t concurrency_drops; /* answers (5xx, 429, timeouts) that lowered it */
} kd_kone_building_stats;

/* The circuit of a building: 0 closed, 1 half-open, 2 open; closed for one not met yet. */
kd_kone_circuit kd_kone_circuit_state(kd_kone *k, const char *building);
/* One building's figures; false when the client has not met it (or has forgotten it). */
bool kd_kone_building(kd_kone *k, const char *building, kd_kone_building_stats *out);
/* Calls fn for every building the client keeps, under its lock (fn must be quick and not
 * call into the client). Returns how many. */
int kd_kone_buildings(kd_kone *k, void (*fn)(const kd_kone_building_stats *s, void *arg),
                      void *arg);
/* Runs that waited for a rate-limit token, all buildings, since start. */
uint64_t kd_kone_rate_limit_waits(kd_kone *k);

/* Stops the thread. Runs still in flight finish as FAILED/transient "worker shutting down"
 * (done is called for each) so the caller can hand them back. */
void kd_kone_stop(kd_kone *k);

#endif
