/* kone.h: the worker's KONE client, one thread running one libwebsockets service loop.
 *
 * It owns the OAuth2 token cache, a small pool of WebSocket connections (kone.connections),
 * per-connection request ids and the table of requests awaiting answers. Jobs come in from
 * any thread through kd_kone_submit() (a locked queue + lws_cancel_service to wake the
 * loop); many are in flight at once, never a thread or a connection per job.
 *
 * For every job it decides the outcome (kd_run_finish) and calls hooks.done on its own
 * thread; for tracked calls it calls hooks.call_event for each call-state change first.
 * The hooks must not block (they produce to Kafka, which copies and returns).
 */
#ifndef KD_WORKER_KONE_H
#define KD_WORKER_KONE_H

#include <stdbool.h>

#include "kd_config.h"
#include "kd_err.h"
#include "kd_event.h"
#include "kd_run.h"

typedef struct kd_kone kd_kone;

typedef struct kd_kone_hooks {
    void (*done)(kd_run *run, void *arg);
    void (*call_event)(kd_run *run, const kd_call_event *ev, void *arg);
    void *arg;
} kd_kone_hooks;

/* Reads kone.* keys, starts the thread. Token and connections are obtained in the
 * background; jobs submitted before then wait (up to their deadline / request timeout). */
int kd_kone_start(kd_kone **out, const kd_config *cfg, const kd_kone_hooks *hooks, kd_err *err);
/* Thread-safe. The run's job is valid; its outcome is NONE. */
void kd_kone_submit(kd_kone *k, kd_run *run);
/* True when a token is held and at least one connection is open (for /readyz later). */
bool kd_kone_ready(kd_kone *k);
/* Stops the thread. Runs still in flight finish as FAILED/transient "worker shutting down"
 * (done is called for each) so the caller can hand them back. */
void kd_kone_stop(kd_kone *k);

#endif
