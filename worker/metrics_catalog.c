/* metrics_catalog.c: the worker's metric families and the one-line update functions.
 *
 * The table `families` below is the catalogue: docs/metrics.md lists the same names,
 * types and labels, and tests/unit/test_worker_metrics.c checks the two agree, that the
 * exposition of a populated catalogue passes `promtool check metrics`, and that every
 * label value set is bounded. Alert rules and dashboards are checked against the docs
 * table by tests/ops/.
 *
 * The call ledger's families (kone_ledger_*) describe one PostgreSQL database shared by
 * every worker: kone_ledger_rows is the same table counted by each worker (rules take the
 * max across workers, never the sum), and kone_ledger_up is this worker's view of it.
 * kone_ledger_enabled tells a worker running without a ledger (ledger.url=none) from one
 * whose ledger is down: both have kone_ledger_up 0.
 *
 * Label values are fixed here, except two that come from configuration when the
 * catalogue is registered: `building` (metrics.buildings, plus "other" for every building
 * not listed: a building id never becomes a label value unless an operator named it) and
 * `topic` (the three kafka.topic_* names, plus "other").
 *
 * State is one static struct: the worker is one process with one catalogue, and the
 * update functions must be callable from any module without threading a handle through.
 */
#include "metrics_catalog.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kd_job.h"
#include "kd_log.h"
#include "kone_conc.h"

#ifndef KD_VERSION
#define KD_VERSION "0.0.0"
#endif

#define WM_MAX_BUILDINGS 1000

/* ---- enumerated label values ---- */

static const char *const v_ops[] = {"call", "cancel", "hold_open", "other", NULL};
static const char *const v_outcomes[] = {"succeeded", "rejected", "failed",
                                         "expired",   "unknown",  NULL};
static const char *const v_call_types[] = {
    "action", "hold_open", "delete",  "create-session", "resume-session", "site-monitoring",
    "ping",   "config",    "actions", "token",          "other",          NULL};
static const char *const v_status[] = {"2xx", "400", "401", "403",     "404",   "409",
                                       "429", "4xx", "5xx", "timeout", "error", NULL};
static const char *const v_token_result[] = {"ok", "refused", "error", NULL};
static const char *const v_ws_codes[] = {"1002", "1007", "1009", NULL};
static const char *const v_retry_reasons[] = {
    "timeout",           "no_connection", "session_lost",    "no_progress",
    "circuit_open",      "rate_limited",  "group_mode_held", "unauthorized",
    "too_many_requests", "server_error",  "other",           NULL};
/* kd_kval_reason_name's values (kone_validate.h) */
static const char *const v_local_reasons[] = {
    "unknown_action",      "disabled_action", "unknown_area", "no_destination",
    "unknown_destination", "same_floor",      "other",        NULL};
static const char *const v_dead_reasons[] = {"undecodable",   "failed", "delivery_limit",
                                             "requeue_limit", "other",  NULL};
static const char *const v_delivery_result[] = {"delivered", "failed", NULL};
static const char *const v_version[] = {KD_VERSION, NULL};
/* The ledger's operations and statuses, row states and duplicate kinds. Operations and
 * kinds end in "other" (a value this list does not know still counts); states do not:
 * a gauge shared by unknown states would mean nothing, so such an update is dropped and
 * counted by kd_metrics_label_misses. */
static const char *const v_ledger_ops[] = {"claim", "accept", "done",  "release", "retry",
                                           "renew", "purge",  "other", NULL};
static const char *const v_ledger_status[] = {"ok", "error", NULL};
static const char *const v_ledger_states[] = {"writing", "accepted", "retry", "done", NULL};
static const char *const v_ledger_dups[] = {"done",     "accepted", "ambiguous",
                                            "inflight", "other",    NULL};

/* ---- buckets (seconds) ---- */

static const double b_job[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
static const double b_queued[] = {0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
/* re-queues per job (counts, not seconds): most jobs none, a parked one a few per outage */
static const double b_requeues[] = {0, 1, 2, 3, 5, 10, 20, 50};
static const double b_api[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
/* A batch commits in well under a millisecond on a local PostgreSQL, a few ms across a
 * network, and gives up at ledger.timeout_ms (5 s by default). */
static const double b_ledger[] = {0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                  0.05,    0.1,    0.25,  0.5,    1,     2.5,  5};
#define NB(a) (sizeof(a) / sizeof((a)[0]))

/* ---- state ---- */

static struct {
    kd_metrics *reg;
    kd_http *http;
    char **buildings; /* NULL-terminated, ends with "other" */
    char *topics[5];  /* results, events, metrics, "other", NULL (deduplicated) */
    const char *topic_metrics;
    int64_t interval_us;
    int64_t last_publish_mono;
    _Atomic bool amqp_ok, kafka_ok, kone_ok, ledger_down;
    _Atomic int64_t heartbeat_mono;
    int64_t stale_us;

    kd_metric *build_info, *start_time;
    kd_metric *jobs, *job_duration, *job_queued, *job_requeues, *deliveries, *inflight;
    kd_metric *api, *token_refreshes, *token_expiry, *ws_connections, *ws_reconnects;
    kd_metric *ws_protocol_errors;
    kd_metric *retries, *dead_letters, *circuit, *rate_waits, *local_rejects, *unvalidated;
    kd_metric *cc_building, *cc_worker;
    kd_metric *kafka_deliveries, *kafka_undelivered, *amqp_reconnects;
    kd_metric *ledger_enabled, *ledger_up, *ledger_ops, *ledger_commit, *ledger_rows;
    kd_metric *ledger_dups;
    _Atomic int *circ_open, *circ_half; /* per building series */
    _Atomic int ledger_bits; /* WM_LEDGER_ON | WM_LEDGER_ANSWERS; kone_ledger_up = both */
} wm;

/* ---- the catalogue ---- */

typedef struct wm_family {
    kd_metric **slot;
    kd_metric_desc d;
    int dyn[KD_METRICS_MAX_LABELS]; /* 1: building list, 2: topic list */
} wm_family;

#define L1(a, va) .n_labels = 1, .labels = {a}, .values = {va}
#define L2(a, va, b, vb) .n_labels = 2, .labels = {a, b}, .values = {va, vb}
#define BUCKETS(a) .buckets = (a), .n_buckets = NB(a)

static wm_family families[] = {
    {&wm.build_info,
     {.name = "kone_build_info",
      .help = "Build of this kone-worker; always 1.",
      .type = KD_METRIC_GAUGE,
      L1("version", v_version)},
     .dyn = {0}},
    {&wm.start_time,
     {.name = "process_start_time_seconds",
      .help = "Start time of the process since the Unix epoch in seconds.",
      .type = KD_METRIC_GAUGE},
     .dyn = {0}},
    {&wm.jobs,
     {.name = "kone_jobs_total",
      .help = "Jobs whose result was written to Kafka and acked, by op and outcome.",
      .type = KD_METRIC_COUNTER,
      L2("op", v_ops, "outcome", v_outcomes)},
     .dyn = {0}},
    {&wm.job_duration,
     {.name = "kone_job_duration_seconds",
      .help = "Time from a job's delivery to its known outcome.",
      .type = KD_METRIC_HISTOGRAM,
      L1("op", v_ops),
      BUCKETS(b_job)},
     .dyn = {0}},
    {&wm.job_requeues,
     {.name = "kone_job_requeues",
      .help = "Trips through a retry tier (x-kd-requeues: retries and parked jobs) per job that "
              "ended; _sum / _count is the average.",
      .type = KD_METRIC_HISTOGRAM,
      BUCKETS(b_requeues)},
     .dyn = {0}},
    {&wm.deliveries,
     {.name = "kone_deliveries_total",
      .help = "Deliveries taken off the work queue (every attempt, undecodable ones included).",
      .type = KD_METRIC_COUNTER},
     .dyn = {0}},
    {&wm.job_queued,
     {.name = "kone_job_queued_seconds",
      .help = "Time from a job's created_at to its first delivery (first attempts only: retries "
              "wait in retry tiers on purpose).",
      .type = KD_METRIC_HISTOGRAM,
      BUCKETS(b_queued)},
     .dyn = {0}},
    {&wm.inflight,
     {.name = "kone_inflight_jobs",
      .help = "Jobs between delivery and ack or hand-back.",
      .type = KD_METRIC_GAUGE},
     .dyn = {0}},
    {&wm.api,
     {.name = "kone_api_request_duration_seconds",
      .help = "KONE API round trips (request written to answer), by call type and status.",
      .type = KD_METRIC_HISTOGRAM,
      L2("call_type", v_call_types, "status", v_status),
      BUCKETS(b_api)},
     .dyn = {0}},
    {&wm.token_refreshes,
     {.name = "kone_token_refreshes_total",
      .help = "OAuth2 token requests by result (ok, refused: 4xx, error: transport or 5xx).",
      .type = KD_METRIC_COUNTER,
      L1("result", v_token_result)},
     .dyn = {0}},
    {&wm.token_expiry,
     {.name = "kone_token_expiry_timestamp_seconds",
      .help = "Expiry of the KONE access token held, Unix seconds (0: none yet).",
      .type = KD_METRIC_GAUGE},
     .dyn = {0}},
    {&wm.ws_connections,
     {.name = "kone_ws_connections",
      .help = "KONE WebSocket connections open and carrying jobs.",
      .type = KD_METRIC_GAUGE},
     .dyn = {0}},
    {&wm.ws_reconnects,
     {.name = "kone_ws_reconnects_total",
      .help = "KONE WebSocket connections lost and replaced.",
      .type = KD_METRIC_COUNTER},
     .dyn = {0}},
    {&wm.ws_protocol_errors,
     {.name = "kone_ws_protocol_errors_total",
      .help = "KONE WebSocket connections the worker closed for KONE's frames, by the close "
              "code it sent: 1002 a malformed frame, 1007 text that is not UTF-8, 1009 a "
              "message over the limit.",
      .type = KD_METRIC_COUNTER,
      L1("code", v_ws_codes)},
     .dyn = {0}},
    {&wm.retries,
     {.name = "kone_retries_total",
      .help = "Failed attempts sent to a retry tier, by reason.",
      .type = KD_METRIC_COUNTER,
      L1("reason", v_retry_reasons)},
     .dyn = {0}},
    {&wm.dead_letters,
     {.name = "kone_dead_letters_total",
      .help = "Jobs parked in the dead-letter queue, by reason.",
      .type = KD_METRIC_COUNTER,
      L1("reason", v_dead_reasons)},
     .dyn = {0}},
    {&wm.circuit,
     {.name = "kone_circuit_state",
      .help = "Circuit breaker per building: 0 closed, 1 half-open, 2 open.",
      .type = KD_METRIC_GAUGE,
      L1("building", NULL)},
     .dyn = {1}},
    {&wm.rate_waits,
     {.name = "kone_rate_limit_waits_total",
      .help = "Jobs held back by a building's rate limit.",
      .type = KD_METRIC_COUNTER,
      L1("building", NULL)},
     .dyn = {1}},
    {&wm.cc_building,
     {.name = "kone_concurrency_limit",
      .help =
          "Adaptive concurrency per building: KONE requests it may have outstanding (lowered "
          "by 5xx, 429 and timeouts, raised by answers; at most kone.concurrency_max). The other "
          "series shows the last change among buildings not listed.",
      .type = KD_METRIC_GAUGE,
      L1("building", NULL)},
     .dyn = {1}},
    {&wm.cc_worker,
     {.name = "kone_worker_concurrency_limit",
      .help = "Adaptive concurrency of the whole worker: KONE requests it may have outstanding.",
      .type = KD_METRIC_GAUGE},
     .dyn = {0}},
    {&wm.local_rejects,
     {.name = "kone_local_rejections_total",
      .help = "Calls rejected by the worker against the building's cached configuration, without a "
              "call, by reason.",
      .type = KD_METRIC_COUNTER,
      L1("reason", v_local_reasons)},
     .dyn = {0}},
    {&wm.unvalidated,
     {.name = "kone_calls_unvalidated_total",
      .help = "Calls made without the local check: their building's configuration could not be "
              "fetched lately (or the cache was full).",
      .type = KD_METRIC_COUNTER},
     .dyn = {0}},
    {&wm.kafka_deliveries,
     {.name = "kone_kafka_deliveries_total",
      .help = "Kafka delivery reports by topic and result.",
      .type = KD_METRIC_COUNTER,
      L2("topic", NULL, "result", v_delivery_result)},
     .dyn = {2, 0}},
    {&wm.kafka_undelivered,
     {.name = "kone_kafka_undelivered_messages",
      .help = "Messages produced to Kafka and not yet acknowledged by the brokers.",
      .type = KD_METRIC_GAUGE},
     .dyn = {0}},
    {&wm.amqp_reconnects,
     {.name = "kone_amqp_reconnects_total",
      .help = "RabbitMQ connections lost (each is followed by reconnect attempts).",
      .type = KD_METRIC_COUNTER},
     .dyn = {0}},
    {&wm.ledger_enabled,
     {.name = "kone_ledger_enabled",
      .help = "1 when the worker runs with a call ledger, 0 with ledger.url=none.",
      .type = KD_METRIC_GAUGE},
     .dyn = {0}},
    {&wm.ledger_up,
     {.name = "kone_ledger_up",
      .help = "1 while the call ledger answers, 0 while it does not (the worker takes no job) or "
              "is disabled.",
      .type = KD_METRIC_GAUGE},
     .dyn = {0}},
    {&wm.ledger_ops,
     {.name = "kone_ledger_ops_total",
      .help = "Call ledger operations by op and status (ok, error).",
      .type = KD_METRIC_COUNTER,
      L2("op", v_ledger_ops, "status", v_ledger_status)},
     .dyn = {0}},
    {&wm.ledger_commit,
     {.name = "kone_ledger_commit_duration_seconds",
      .help = "Time from sending a batch of call ledger statements to its commit.",
      .type = KD_METRIC_HISTOGRAM,
      BUCKETS(b_ledger)},
     .dyn = {0}},
    {&wm.ledger_rows,
     {.name = "kone_ledger_rows",
      .help = "Rows in the call ledger by state, counted about once a minute (the same table for "
              "every worker).",
      .type = KD_METRIC_GAUGE,
      L1("state", v_ledger_states)},
     .dyn = {0}},
    {&wm.ledger_dups,
     {.name = "kone_ledger_duplicates_total",
      .help = "Deliveries of jobs the call ledger had already seen, by kind.",
      .type = KD_METRIC_COUNTER,
      L1("kind", v_ledger_dups)},
     .dyn = {0}},
};

/* ---- building and topic lists from configuration ---- */

static void free_list(char **l)
{
    if (!l)
        return;
    for (size_t i = 0; l[i]; i++)
        free(l[i]);
    free(l);
}

static bool in_list(char *const *l, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(l[i], s) == 0)
            return true;
    return false;
}

/* "a, b,,a" -> {"a", "b", "other", NULL}: trimmed, deduplicated, "other" last. */
static int parse_buildings(const char *csv, kd_err *err)
{
    size_t cap = 3; /* the items (commas + 1), "other" and the NULL end */
    for (const char *p = csv; *p; p++)
        cap += *p == ',';
    char **l = calloc(cap, sizeof *l);
    if (!l)
        /* GCOVR_EXCL_START: allocation failure */
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    /* GCOVR_EXCL_STOP */
    size_t n = 0;
    for (const char *p = csv; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && (*p == ' ' || *p == '\t'))
            p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        char *b = len ? strndup(p, len) : NULL;
        if (len && !b) {
            /* GCOVR_EXCL_START: allocation failure */
            free_list(l);
            return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
            /* GCOVR_EXCL_STOP */
        }
        if (b && (in_list(l, n, b) || strcmp(b, "other") == 0))
            free(b);
        else if (b)
            l[n++] = b;
        p = e ? e + 1 : p + len;
        if (!e)
            break;
    }
    if (n > WM_MAX_BUILDINGS) {
        free_list(l);
        return kd_err_set(err, KD_ERR_INVALID, "metrics.buildings: at most %d buildings",
                          WM_MAX_BUILDINGS);
    }
    if (!(l[n++] = strdup("other"))) {
        /* GCOVR_EXCL_START: allocation failure */
        free_list(l);
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        /* GCOVR_EXCL_STOP */
    }
    wm.buildings = l;
    wm.circ_open = calloc(n, sizeof *wm.circ_open);
    wm.circ_half = calloc(n, sizeof *wm.circ_half);
    if (!wm.circ_open || !wm.circ_half)
        /* GCOVR_EXCL_START: allocation failure */
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    /* GCOVR_EXCL_STOP */
    return 0;
}

static int set_topics(const kd_config *cfg, kd_err *err)
{
    const char *names[4] = {"kone.call.results", "kone.call.events", "kone.worker.metrics",
                            "other"};
    if (cfg) {
        names[0] = kd_cfg_str(cfg, KD_CFG_KAFKA_TOPIC_RESULTS);
        names[1] = kd_cfg_str(cfg, KD_CFG_KAFKA_TOPIC_EVENTS);
        names[2] = kd_cfg_str(cfg, KD_CFG_KAFKA_TOPIC_METRICS);
    }
    size_t n = 0;
    for (size_t i = 0; i < 4; i++) {
        if (!*names[i] || in_list(wm.topics, n, names[i]))
            continue;
        if (!(wm.topics[n++] = strdup(names[i])))
            /* GCOVR_EXCL_START: allocation failure */
            return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        /* GCOVR_EXCL_STOP */
    }
    wm.topic_metrics = cfg ? kd_cfg_str(cfg, KD_CFG_KAFKA_TOPIC_METRICS) : "kone.worker.metrics";
    return 0;
}

/* ---- lifecycle ---- */

static int register_all(kd_err *err)
{
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        kd_metric_desc d = families[i].d;
        for (size_t l = 0; l < d.n_labels; l++) {
            if (families[i].dyn[l] == 1)
                d.values[l] = (const char *const *)wm.buildings;
            else if (families[i].dyn[l] == 2)
                d.values[l] = (const char *const *)wm.topics;
        }
        if (kd_metrics_register(wm.reg, &d, families[i].slot, err))
            /* GCOVR_EXCL_START: the catalogue is fixed and checked by test_worker_metrics */
            return -1;
        /* GCOVR_EXCL_STOP */
    }
    return 0;
}

int kd_wm_init(const kd_config *cfg, kd_err *err)
{
    if (wm.reg)
        return kd_err_set(err, KD_ERR_INTERNAL, "metrics catalogue initialised twice");
    int64_t interval_ms = cfg ? kd_cfg_int(cfg, KD_CFG_METRICS_KAFKA_INTERVAL_MS) : 60000;
    int64_t stale_ms = cfg ? kd_cfg_int(cfg, KD_CFG_METRICS_HEALTH_STALE_MS) : 30000;
    wm.interval_us = interval_ms * 1000;
    wm.stale_us = stale_ms * 1000;
    if (parse_buildings(cfg ? kd_cfg_str(cfg, KD_CFG_METRICS_BUILDINGS) : "", err) ||
        set_topics(cfg, err) || kd_metrics_new(&wm.reg, err) || register_all(err)) {
        kd_wm_free();
        return -1;
    }
    kd_gauge_setv(wm.build_info, KD_LV(KD_VERSION), 1);
    /* the worker's concurrency limit starts at its highest (the KONE client lowers it) */
    kd_gauge_set(wm.cc_worker, 0, cfg ? (double)kd_cc_max_of(cfg) : 64.0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    kd_gauge_set(wm.start_time, 0, (double)ts.tv_sec + ts.tv_nsec / 1e9);
    wm.last_publish_mono = kd_mono_us();
    atomic_store(&wm.heartbeat_mono, kd_mono_us());
    return 0;
}

void kd_wm_free(void)
{
    kd_metrics *reg = wm.reg;
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        *families[i].slot = NULL;
    wm.reg = NULL;
    kd_metrics_free(reg);
    free_list(wm.buildings);
    wm.buildings = NULL;
    free((void *)wm.circ_open);
    free((void *)wm.circ_half);
    wm.circ_open = wm.circ_half = NULL;
    for (size_t i = 0; i < 4; i++) {
        free(wm.topics[i]);
        wm.topics[i] = NULL;
    }
    atomic_store(&wm.amqp_ok, false);
    atomic_store(&wm.kafka_ok, false);
    atomic_store(&wm.kone_ok, false);
    atomic_store(&wm.ledger_bits, 0);
}

kd_metrics *kd_wm_registry(void)
{
    return wm.reg;
}

int kd_worker_metrics_start(const kd_config *cfg, kd_http_ready_fn ready, void *arg, kd_err *err)
{
    int64_t port = cfg ? kd_cfg_int(cfg, KD_CFG_METRICS_PORT) : 9464;
    int64_t conns = cfg ? kd_cfg_int(cfg, KD_CFG_METRICS_MAX_CONNECTIONS) : 0;
    int64_t per_ip = cfg ? kd_cfg_int(cfg, KD_CFG_METRICS_MAX_CONNECTIONS_PER_IP) : 0;
    if (kd_wm_init(cfg, err))
        return -1;
    if (port < 0) {
        kd_info("metrics endpoint off (metrics.port -1)");
        return 0;
    }
    kd_http_opts o = {
        .listen = cfg ? kd_cfg_str(cfg, KD_CFG_METRICS_LISTEN) : "0.0.0.0",
        .port = (int)port,
        .metrics = wm.reg,
        .stale_ms = wm.stale_us / 1000,
        .ready = ready ? ready : kd_wm_ready,
        .ready_arg = ready ? arg : NULL,
        .max_connections = (unsigned)conns,
        .max_connections_per_ip = (unsigned)per_ip,
    };
    if (kd_http_start(&wm.http, &o, err)) {
        kd_wm_free();
        return -1;
    }
    kd_info("metrics endpoint on %s port %d: /metrics /healthz /readyz", o.listen,
            kd_http_port(wm.http));
    return 0;
}

void kd_worker_metrics_stop(void)
{
    kd_http_stop(wm.http);
    wm.http = NULL;
    kd_wm_free();
}

int kd_wm_http_port(void)
{
    return kd_http_port(wm.http);
}

/* ---- the main loop ---- */

void kd_wm_turn(const kd_wm_state *s)
{
    if (!wm.reg)
        return;
    int64_t now = kd_mono_us();
    atomic_store_explicit(&wm.heartbeat_mono, now, memory_order_relaxed);
    kd_http_heartbeat(wm.http);
    atomic_store(&wm.amqp_ok, s->amqp_consuming);
    atomic_store(&wm.kafka_ok, s->kafka_ok);
    atomic_store(&wm.kone_ok, s->kone_ready);
    atomic_store(&wm.ledger_down, s->ledger_down);
    kd_gauge_set(wm.inflight, 0, s->inflight);
    kd_gauge_set(wm.kafka_undelivered, 0, s->undelivered);
}

static void add_reason(char *buf, size_t len, const char *r)
{
    size_t n = strlen(buf);
    if (n + 1 < len)
        snprintf(buf + n, len - n, "%s\n", r);
}

bool kd_wm_ready(void *arg, char *reasons, size_t len)
{
    (void)arg;
    reasons[0] = '\0';
    if (!wm.reg) {
        add_reason(reasons, len, "metrics not initialised");
        return false;
    }
    bool ok = true;
    if (kd_mono_us() - atomic_load(&wm.heartbeat_mono) > wm.stale_us) {
        add_reason(reasons, len, "main loop stalled (no turn within metrics.health_stale_ms)");
        ok = false;
    }
    if (atomic_load(&wm.ledger_down)) {
        /* first: it is why the consumer is cancelled, so the next reason follows from it */
        add_reason(reasons, len, "the call ledger (PostgreSQL) does not answer: no job is taken");
        ok = false;
    }
    if (!atomic_load(&wm.amqp_ok)) {
        add_reason(reasons, len, "not consuming from RabbitMQ");
        ok = false;
    }
    if (!atomic_load(&wm.kafka_ok)) {
        add_reason(reasons, len,
                   "Kafka producer not usable (all brokers down, fatal error or backpressure)");
        ok = false;
    }
    if (!atomic_load(&wm.kone_ok)) {
        add_reason(reasons, len, "no KONE token or no WebSocket connection");
        ok = false;
    }
    return ok;
}

int kd_wm_publish(kd_kafka *k, const char *worker_id)
{
    if (!wm.reg || !k || wm.interval_us <= 0)
        return 0;
    int64_t now = kd_mono_us();
    if (now - wm.last_publish_mono < wm.interval_us)
        return 0;
    wm.last_publish_mono = now;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    kd_err err = {0};
    int rc = kd_metrics_snapshot_msgpack(wm.reg, worker_id, kd_now_us() / 1000, &sb, &err);
    if (!rc)
        rc = kd_kafka_produce(k, wm.topic_metrics, worker_id, sb.data, sb.size, NULL, &err);
    msgpack_sbuffer_destroy(&sb);
    if (rc) {
        kd_warn("metrics snapshot not produced to %s: %s", wm.topic_metrics, err.msg);
        return -1;
    }
    return 1;
}

/* ---- jobs ---- */

static const char *op_label(const kd_run *run)
{
    switch (run->job.op) {
    case KD_OP_CALL:
    case KD_OP_CANCEL:
    case KD_OP_HOLD_OPEN: return kd_op_name(run->job.op);
    }
    return "other";
}

void kd_wm_job_received(const kd_run *run)
{
    if (!wm.reg)
        return;
    kd_counter_add(wm.deliveries, 0, 1);
    /* Only a first delivery measures time spent in the work queue: a retried or
     * redelivered job's created_at also covers its earlier attempts and retry delays. */
    if (run->attempt > 1 || run->redelivered || run->job.created_at <= 0 || run->received_us <= 0)
        return;
    int64_t ms = run->received_us / 1000 - run->job.created_at; /* whole ms, as created_at */
    double s = (double)ms / 1e3;
    kd_histogram_observe(wm.job_queued, 0, s < 0 ? 0 : s);
}

void kd_wm_job_done(const kd_run *run)
{
    if (!wm.reg)
        return;
    const char *op = op_label(run);
    kd_counter_addv(wm.jobs, KD_LV(op, kd_outcome_name(run->outcome)), 1);
    kd_histogram_observe(wm.job_requeues, 0, run->requeues);
    if (run->received_us > 0 && run->finished_us >= run->received_us)
        kd_histogram_observev(wm.job_duration, KD_LV(op),
                              (double)(run->finished_us - run->received_us) / 1e6);
}

const char *kd_wm_retry_reason(const char *code)
{
    static const struct {
        const char *code, *reason;
    } map[] = {
        {"timeout", "timeout"},
        {"no_connection", "no_connection"},
        {"session_lost", "session_lost"},
        {"1005", "no_progress"},
        {"circuit_open", "circuit_open"},
        {"rate_limited", "rate_limited"},
        {"group_mode_held", "group_mode_held"},
        {"401", "unauthorized"},
        {"429", "too_many_requests"},
        {"408", "timeout"},
    };
    if (!code)
        return "other";
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(code, map[i].code) == 0)
            return map[i].reason;
    if (strlen(code) == 3 && code[0] == '5' && code[1] >= '0' && code[1] <= '9' && code[2] >= '0' &&
        code[2] <= '9')
        return "server_error";
    return "other";
}

void kd_wm_retry(const char *error_code)
{
    kd_counter_addv(wm.retries, KD_LV(kd_wm_retry_reason(error_code)), 1);
}

void kd_wm_dead_letter(const char *reason)
{
    kd_counter_addv(wm.dead_letters, KD_LV(reason), 1);
}

void kd_wm_amqp_reconnect(void)
{
    kd_counter_add(wm.amqp_reconnects, 0, 1);
}

void kd_wm_kafka_delivery(const char *topic, bool ok)
{
    kd_counter_addv(wm.kafka_deliveries, KD_LV(topic, ok ? "delivered" : "failed"), 1);
}

/* ---- KONE ---- */

const char *kd_wm_status_label(int status)
{
    static const int exact[] = {400, 401, 403, 404, 409, 429};
    static const char *const exact_l[] = {"400", "401", "403", "404", "409", "429"};
    if (status == KD_WM_STATUS_TIMEOUT)
        return "timeout";
    if (status >= 200 && status < 300)
        return "2xx";
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (status == exact[i])
            return exact_l[i];
    if (status >= 400 && status < 500)
        return "4xx";
    if (status >= 500 && status < 600)
        return "5xx";
    return "error";
}

void kd_wm_api_request(const char *call_type, int status, int64_t rtt_us)
{
    if (!wm.reg)
        return;
    kd_histogram_observev(wm.api, KD_LV(call_type, kd_wm_status_label(status)),
                          rtt_us > 0 ? (double)rtt_us / 1e6 : 0);
}

void kd_wm_token_refresh(int http_status, int64_t rtt_us, int64_t expires_at_s)
{
    if (!wm.reg)
        return;
    const char *r = http_status >= 200 && http_status < 300   ? "ok"
                    : http_status >= 400 && http_status < 500 ? "refused"
                                                              : "error";
    kd_counter_addv(wm.token_refreshes, KD_LV(r), 1);
    kd_wm_api_request("token", http_status, rtt_us);
    if (http_status >= 200 && http_status < 300 && expires_at_s > 0)
        kd_gauge_set(wm.token_expiry, 0, (double)expires_at_s);
}

void kd_wm_ws_connections(int n)
{
    kd_gauge_set(wm.ws_connections, 0, n);
}

void kd_wm_ws_reconnect(void)
{
    kd_counter_add(wm.ws_reconnects, 0, 1);
}

void kd_wm_ws_protocol_error(int code)
{
    if (!wm.reg)
        return;
    const char *c = code == 1002 ? "1002" : code == 1007 ? "1007" : code == 1009 ? "1009" : NULL;
    if (c)
        kd_counter_addv(wm.ws_protocol_errors, KD_LV(c), 1);
}

/* ---- circuits and rate limits ---- */

/* Each building series keeps how many of its circuits are open and half-open: one at
 * most for a configured building, any number for "other", which then shows the worst. */
void kd_wm_circuit_change(const char *building_id, kd_wm_circuit from, kd_wm_circuit to)
{
    long s = kd_metric_series(wm.circuit, KD_LV(building_id));
    if (s < 0 || from == to)
        return;
    if (from == KD_WM_CIRCUIT_OPEN)
        atomic_fetch_sub(&wm.circ_open[s], 1);
    else if (from == KD_WM_CIRCUIT_HALF_OPEN)
        atomic_fetch_sub(&wm.circ_half[s], 1);
    if (to == KD_WM_CIRCUIT_OPEN)
        atomic_fetch_add(&wm.circ_open[s], 1);
    else if (to == KD_WM_CIRCUIT_HALF_OPEN)
        atomic_fetch_add(&wm.circ_half[s], 1);
    int state = atomic_load(&wm.circ_open[s]) > 0   ? KD_WM_CIRCUIT_OPEN
                : atomic_load(&wm.circ_half[s]) > 0 ? KD_WM_CIRCUIT_HALF_OPEN
                                                    : KD_WM_CIRCUIT_CLOSED;
    kd_gauge_set(wm.circuit, s, state);
}

void kd_wm_rate_limit_wait(const char *building_id)
{
    kd_counter_addv(wm.rate_waits, KD_LV(building_id), 1);
}

void kd_wm_concurrency_limit(const char *building_id, int limit)
{
    if (!wm.reg)
        return;
    if (!building_id) {
        kd_gauge_set(wm.cc_worker, 0, limit);
        return;
    }
    long s = kd_metric_series(wm.cc_building, KD_LV(building_id));
    if (s >= 0)
        kd_gauge_set(wm.cc_building, s, limit);
}

void kd_wm_kone_local_reject(const char *reason)
{
    if (!wm.reg)
        return;
    kd_counter_addv(wm.local_rejects, KD_LV(reason), 1);
}

void kd_wm_kone_unvalidated(void)
{
    if (!wm.reg)
        return;
    kd_counter_add(wm.unvalidated, 0, 1);
}

/* ---- the call ledger ---- */

#define WM_LEDGER_ON 1
#define WM_LEDGER_ANSWERS 2

/* kone_ledger_up is "enabled and answering", whichever of the two the worker reports
 * first: a disabled ledger never shows up 1, and an up reported before enabled is not
 * lost. Two threads may report at once: each publishes again until the bits it
 * published from are still current, so the last value set matches the last bits. */
static void ledger_up_publish(void)
{
    for (;;) {
        int bits = atomic_load(&wm.ledger_bits);
        kd_gauge_set(wm.ledger_up, 0, bits == (WM_LEDGER_ON | WM_LEDGER_ANSWERS) ? 1 : 0);
        if (atomic_load(&wm.ledger_bits) == bits)
            return;
    }
}

static void ledger_bit(int bit, bool set)
{
    if (set)
        atomic_fetch_or(&wm.ledger_bits, bit);
    else
        atomic_fetch_and(&wm.ledger_bits, ~bit);
}

void kd_wm_ledger_enabled(bool on)
{
    if (!wm.reg)
        return;
    ledger_bit(WM_LEDGER_ON, on);
    kd_gauge_set(wm.ledger_enabled, 0, on ? 1 : 0);
    ledger_up_publish();
}

void kd_wm_ledger_up(bool up)
{
    if (!wm.reg)
        return;
    ledger_bit(WM_LEDGER_ANSWERS, up);
    ledger_up_publish();
}

void kd_wm_ledger_op(const char *op, bool ok)
{
    kd_counter_addv(wm.ledger_ops, KD_LV(op, ok ? "ok" : "error"), 1);
}

void kd_wm_ledger_commit(int64_t us)
{
    kd_histogram_observe(wm.ledger_commit, 0, us > 0 ? (double)us / 1e6 : 0);
}

void kd_wm_ledger_rows(const char *state, int64_t n)
{
    kd_gauge_setv(wm.ledger_rows, KD_LV(state), n > 0 ? (double)n : 0);
}

void kd_wm_ledger_duplicate(const char *kind)
{
    kd_counter_addv(wm.ledger_dups, KD_LV(kind), 1);
}
