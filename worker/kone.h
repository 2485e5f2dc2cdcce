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

typedef struct kd_kone_hooks {
    void (*done)(kd_run *run, void *arg);
    void (*call_event)(kd_run *run, const kd_call_event *ev, void *arg);
    /* KONE accepted the call: run->session_id is set (the ledger records it, with the KONE
     * session, the create-session id, that made it: a delete must go to that session). The
     * run is still the KONE thread's: read job_id, attempt and session_id only, at once. */
    void (*accepted)(const kd_run *run, const char *kone_session, void *arg);
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
/* ---- per building: circuit breaker and rate limit (docs/kone-client.md) ----
 * Read from any thread (metrics, tests): each takes the client's building lock for a copy.
 * Buildings are named "building:<id>" or "<id>". Every transition is also reported to
 * kd_wm_circuit_change and every wait to kd_wm_rate_limit_wait (worker/metrics_catalog.h). */
typedef enum {
    KD_KONE_CIRCUIT_CLOSED = 0,
    KD_KONE_CIRCUIT_HALF_OPEN = 1,
    KD_KONE_CIRCUIT_OPEN = 2,
} kd_kone_circuit;

typedef struct kd_kone_building_stats {
    char building[96]; /* "building:<id>" */
    kd_kone_circuit circuit;
    uint64_t circuit_opens;   /* times its circuit opened */
    uint64_t circuit_closes;  /* times it closed again (half-open trials went through) */
    uint64_t circuit_refused; /* runs finished "circuit_open" without a request */
    uint64_t pings;           /* pings sent while its circuit was open */
    double rate_per_s;        /* its current rate limit (after 429s); 0: none */
    uint64_t rate_waits;      /* runs that waited for a rate-limit token */
    uint64_t rate_slowdowns;  /* 429s that lowered its rate */
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
