/* metrics_catalog: every metric kone-worker exports, defined once (docs/metrics.md).
 *
 * The families (names, help, labels and their enumerated values, buckets) are declared
 * in metrics_catalog.c and registered by kd_wm_init(); the functions below are the only
 * way the worker's modules update them, one call per event, so a module never spells a
 * metric or label name. Each function is safe from any thread (atomics only, no
 * allocation, no lock) and a no-op before kd_wm_init() / after kd_wm_free(), so modules
 * and their unit tests work with metrics off.
 *
 * Lifecycle (worker/main.c or kd_worker_new): kd_worker_metrics_start() before any
 * thread that updates metrics is started (kd_kone_start, the Kafka producer);
 * kd_worker_metrics_stop() after every such thread has stopped.
 */
#ifndef KD_WORKER_METRICS_CATALOG_H
#define KD_WORKER_METRICS_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kd_config.h"
#include "kd_err.h"
#include "kd_http.h"
#include "kd_kafka.h"
#include "kd_metrics.h"
#include "kd_run.h"

/* ---- lifecycle ---- */

/* Registers every family. cfg may be NULL (defaults: no buildings of its own, default
 * topic names). Reads metrics.buildings and kafka.topic_*. Calling it twice is an error. */
int kd_wm_init(const kd_config *cfg, kd_err *err);
void kd_wm_free(void);
kd_metrics *kd_wm_registry(void); /* NULL before kd_wm_init */

/* kd_wm_init + the HTTP endpoint on metrics.listen:metrics.port (unless the port is -1).
 * ready: NULL uses kd_wm_ready (the flags published by kd_wm_turn). */
int kd_worker_metrics_start(const kd_config *cfg, kd_http_ready_fn ready, void *arg, kd_err *err);
void kd_worker_metrics_stop(void); /* stops the endpoint, then kd_wm_free */
int kd_wm_http_port(void);         /* the bound port, 0 when the endpoint is off */

/* ---- the main loop, once per turn ---- */

typedef struct kd_wm_state {
    int inflight;        /* runs between delivery and ack/nack */
    int undelivered;     /* kd_kafka_undelivered() */
    bool amqp_consuming; /* connected and the consumer is active */
    bool kafka_ok;       /* producer usable: a broker up, no fatal error, not past backpressure */
    bool kone_ready;     /* kd_kone_ready(): a token held and a WebSocket up */
    bool ledger_down;    /* the call ledger is on and does not answer (no job is taken) */
} kd_wm_state;

/* Heartbeat for /healthz, the inflight and undelivered gauges, the readiness flags. */
void kd_wm_turn(const kd_wm_state *s);
/* Default /readyz callback: ready when all three flags of the last turn are true and the
 * heartbeat is fresh; reasons name what is missing. */
bool kd_wm_ready(void *arg, char *reasons, size_t len);
/* Produces a snapshot to kafka.topic_metrics (key: worker id, opaque NULL) when
 * metrics.kafka_interval_ms has passed since the last one. Returns 1 when it produced,
 * 0 when not due, -1 on error (logged; the next turn tries again after the interval). */
int kd_wm_publish(kd_kafka *k, const char *worker_id);

/* ---- jobs (main thread) ---- */

/* A delivery was decoded (valid or not): kone_deliveries_total, and for a first attempt
 * (attempt 1, not redelivered) kone_job_queued_seconds from job.created_at. */
void kd_wm_job_received(const kd_run *run);
/* A job's result was acked (fates RESULT and DEAD): kone_jobs_total{op,outcome} and
 * kone_job_duration_seconds{op} (received → finished). Undecodable jobs count as
 * op="other", outcome="rejected". */
void kd_wm_job_done(const kd_run *run);
/* A failed attempt's retry copy was confirmed (fate RETRY): kone_retries_total{reason},
 * the reason derived from run->error_code. */
void kd_wm_retry(const char *error_code);
/* A job was parked in the dead-letter queue: reason "undecodable" or "failed". */
void kd_wm_dead_letter(const char *reason);
void kd_wm_amqp_reconnect(void);
/* A delivery report: topic as produced to, ok = err_code == 0. */
void kd_wm_kafka_delivery(const char *topic, bool ok);

/* ---- the KONE client (KONE thread) ---- */

#define KD_WM_STATUS_ERROR 0      /* no answer: connection lost, write failed */
#define KD_WM_STATUS_TIMEOUT (-1) /* no answer within kone.request_timeout_ms */

/* One request answered (or not): call_type "action", "hold_open", "delete",
 * "create-session", "resume-session", "site-monitoring", "ping", "config", "actions";
 * status KONE's statusCode or KD_WM_STATUS_*; rtt_us request written → answer. */
void kd_wm_api_request(const char *call_type, int status, int64_t rtt_us);
/* One token request: http_status 200 = ok, 4xx = refused, anything else (0 for a
 * transport error, 5xx) = error; expires_at_s the new token's expiry (Unix s) when ok.
 * Also observes kone_api_request_duration_seconds{call_type="token"}. */
void kd_wm_token_refresh(int http_status, int64_t rtt_us, int64_t expires_at_s);
void kd_wm_ws_connections(int n); /* connections open and carrying jobs, after a change */
void kd_wm_ws_reconnect(void);    /* a lost connection is being replaced */
/* A connection closed for KONE's frames: code 1002, 1007 or 1009 (others are not counted). */
void kd_wm_ws_protocol_error(int code);

/* ---- circuits and rate limits (per building; unknown buildings count as "other") ---- */

typedef enum {
    KD_WM_CIRCUIT_CLOSED = 0,
    KD_WM_CIRCUIT_HALF_OPEN = 1,
    KD_WM_CIRCUIT_OPEN = 2
} kd_wm_circuit;
/* A building's circuit went from one state to another (report every transition, the
 * first from CLOSED): kone_circuit_state{building}. Buildings not in metrics.buildings
 * share the "other" series, which shows the worst state among them. */
void kd_wm_circuit_change(const char *building_id, kd_wm_circuit from, kd_wm_circuit to);
void kd_wm_rate_limit_wait(const char *building_id);
/* A building's adaptive concurrency limit (kone_concurrency_limit{building}), or the
 * worker's (building_id NULL: kone_worker_concurrency_limit), after a change. */
void kd_wm_concurrency_limit(const char *building_id, int limit);

/* ---- local validation of calls (kone_site.c) ---- */
/* A call rejected against its building's cached configuration, no call made; reason as
 * kd_kval_reason_name: unknown_action, disabled_action, unknown_area, no_destination,
 * unknown_destination, same_floor (any other: "other"). */
void kd_wm_kone_local_reject(const char *reason);
void kd_wm_kone_unvalidated(void); /* a call made unchecked (no configuration to check) */

/* ---- the call ledger (PostgreSQL; any thread) ----
 * Label values: op claim, accept, done, release, retry, renew, purge (any other: "other");
 * state writing, accepted, retry, done (any other: dropped, counted as a label miss);
 * kind done, accepted, ambiguous, inflight (any other: "other"). */

void kd_wm_ledger_enabled(bool on); /* at start: false for ledger.url=none (enabled 0, up 0) */
void kd_wm_ledger_up(bool up);      /* the ledger answers (1) or not (0); 0 while disabled */
void kd_wm_ledger_op(const char *op, bool ok); /* one ledger operation and its result */
void kd_wm_ledger_commit(int64_t us); /* a batch of statements, sent to committed, in µs */
void kd_wm_ledger_rows(const char *state, int64_t n); /* rows in a state (the ~1/min count) */
void kd_wm_ledger_duplicate(const char *kind);        /* a delivery the ledger found already seen */

/* ---- label mappings (exposed for tests and docs) ---- */
const char *kd_wm_status_label(int status);       /* 201 -> "2xx", 429 -> "429", ... */
const char *kd_wm_retry_reason(const char *code); /* "timeout", "1005" -> "no_progress" */

#endif
