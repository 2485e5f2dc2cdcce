/* test_worker_metrics: the worker's metric catalogue (worker/metrics_catalog.c):
 * every family populated through the one-line update functions, the exposition checked
 * by `promtool check metrics`, docs/metrics.md's table checked against the registry both
 * ways (names, types, labels), bounded labels (buildings from configuration, "other"),
 * the endpoint started from configuration, /readyz reasons and the Kafka snapshot, and
 * the call ledger's families (up only while enabled, unknown label values). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <time.h>

#include "kd_config.h"
#include "kd_job.h"
#include "metrics_catalog.h"

static kd_config cfg;

static int setup(void **state)
{
    (void)state;
    char *argv[] = {"kone-worker",
                    "--metrics-buildings",
                    " building:1 ,building:2,,building:1",
                    "--metrics-port",
                    "0",
                    "--metrics-listen",
                    "127.0.0.1",
                    "--metrics-health-stale-ms",
                    "60000"};
    kd_err err = {0};
    if (kd_config_load(&cfg, KD_PROG_WORKER, "kone-worker", 9, argv, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kd_config_free(&cfg);
    return 0;
}

static kd_run make_run(kd_op op, kd_outcome o, int64_t queued_ms, int64_t took_ms)
{
    kd_run r;
    memset(&r, 0, sizeof r);
    r.job.op = op;
    r.received_us = kd_now_us();
    r.job.created_at = r.received_us / 1000 - queued_ms;
    r.finished_us = r.received_us + took_ms * 1000;
    r.outcome = o;
    snprintf(r.job.building_id, sizeof r.job.building_id, "building:1");
    return r;
}

/* Touches every family and most label values. */
static void populate(void)
{
    kd_run ok = make_run(KD_OP_CALL, KD_OUTCOME_SUCCEEDED, 120, 480);
    kd_run rej = make_run(KD_OP_CANCEL, KD_OUTCOME_REJECTED, 10, 30);
    kd_run undecodable = make_run(0, KD_OUTCOME_REJECTED, 0, 1);
    undecodable.job.created_at = 0;
    kd_wm_job_received(&ok);
    kd_wm_job_received(&rej);
    kd_wm_job_received(&undecodable); /* no created_at: not observed */
    kd_run retried = make_run(KD_OP_CALL, KD_OUTCOME_SUCCEEDED, 45000, 10);
    retried.attempt = 2;
    kd_wm_job_received(&retried); /* counted as a delivery, its queue time is not */
    kd_wm_job_done(&ok);
    kd_wm_job_done(&rej);
    kd_wm_job_done(&undecodable);
    kd_run unknown = make_run(KD_OP_CALL, KD_OUTCOME_UNKNOWN, 5, 20000);
    unknown.requeues = 4; /* parked while its building's circuit was open */
    kd_wm_job_done(&unknown);
    kd_wm_retry("timeout");
    kd_wm_retry("1005");
    kd_wm_retry("503");
    kd_wm_retry("weird");
    kd_wm_dead_letter("undecodable");
    kd_wm_dead_letter("failed");
    kd_wm_dead_letter("requeue_limit");
    kd_wm_amqp_reconnect();
    kd_wm_kafka_delivery("kone.call.results", true);
    kd_wm_kafka_delivery("kone.call.events", false);
    kd_wm_kafka_delivery("some.other.topic", true);
    kd_wm_api_request("action", 201, 48000);
    kd_wm_api_request("site-monitoring", 201, 12000);
    kd_wm_api_request("action", 503, 2000);
    kd_wm_api_request("action", KD_WM_STATUS_TIMEOUT, 10000000);
    kd_wm_api_request("ping", KD_WM_STATUS_ERROR, 0);
    kd_wm_token_refresh(200, 35000, 1764364500);
    kd_wm_token_refresh(401, 20000, 0);
    kd_wm_ws_connections(2);
    kd_wm_ws_reconnect();
    kd_wm_ws_protocol_error(1002);
    kd_wm_ws_protocol_error(1002);
    kd_wm_ws_protocol_error(1009);
    kd_wm_ws_protocol_error(1011); /* ours (out of memory), not KONE's frames: not counted */
    kd_wm_circuit_change("building:2", KD_WM_CIRCUIT_CLOSED, KD_WM_CIRCUIT_OPEN);
    kd_wm_rate_limit_wait("building:1");
    kd_wm_rate_limit_wait("building:77");
    kd_wm_concurrency_limit("building:1", 64);
    kd_wm_concurrency_limit("building:2", 17);
    kd_wm_concurrency_limit("building:77", 9);
    kd_wm_concurrency_limit(NULL, 33);
    kd_wm_ledger_enabled(true);
    kd_wm_ledger_up(true);
    kd_wm_ledger_op("claim", true);
    kd_wm_ledger_op("done", true);
    kd_wm_ledger_op("renew", false);
    kd_wm_ledger_commit(700);
    kd_wm_ledger_rows("writing", 12);
    kd_wm_ledger_rows("done", 34567);
    kd_wm_ledger_duplicate("done");
    kd_wm_ledger_duplicate("ambiguous");
    kd_wm_turn(&(kd_wm_state){.inflight = 3,
                              .undelivered = 5,
                              .amqp_consuming = true,
                              .kafka_ok = true,
                              .kone_ready = true});
}

static char *expose(void)
{
    char *text = kd_metrics_expose(kd_wm_registry(), NULL);
    assert_non_null(text);
    return text;
}

static void assert_has(const char *text, const char *line)
{
    if (!strstr(text, line))
        fail_msg("exposition lacks: %s", line);
}

static void test_catalogue_values_and_labels(void **state)
{
    (void)state;
    kd_err err = {0};
    assert_int_equal(kd_wm_init(&cfg, &err), 0);
    assert_int_equal(kd_wm_init(&cfg, &err), KD_ERR_INTERNAL);
    char *t = expose(); /* before the KONE client: its limit is worker.inflight, not 0 */
    assert_has(t, "kone_worker_concurrency_limit 64\n");
    free(t);
    populate();
    t = expose();
    assert_has(t, "kone_build_info{version=\"" KD_VERSION "\"} 1\n");
    assert_has(t, "kone_jobs_total{op=\"call\",outcome=\"succeeded\"} 1\n");
    assert_has(t, "kone_jobs_total{op=\"cancel\",outcome=\"rejected\"} 1\n");
    assert_has(t, "kone_jobs_total{op=\"other\",outcome=\"rejected\"} 1\n");
    assert_has(t, "kone_jobs_total{op=\"call\",outcome=\"unknown\"} 1\n");
    assert_has(t, "kone_jobs_total{op=\"cancel\",outcome=\"unknown\"} 0\n");
    assert_has(t, "kone_job_queued_seconds_count 2\n");
    assert_has(t, "kone_deliveries_total 4\n");
    assert_has(t, "kone_job_queued_seconds_bucket{le=\"60\"} 2\n"); /* not the 45 s retry */
    assert_has(t, "kone_job_duration_seconds_bucket{op=\"call\",le=\"0.5\"} 1\n");
    assert_has(t, "kone_retries_total{reason=\"timeout\"} 1\n");
    assert_has(t, "kone_retries_total{reason=\"no_progress\"} 1\n");
    assert_has(t, "kone_retries_total{reason=\"server_error\"} 1\n");
    assert_has(t, "kone_retries_total{reason=\"other\"} 1\n");
    assert_has(t, "kone_dead_letters_total{reason=\"undecodable\"} 1\n");
    assert_has(t, "kone_kafka_deliveries_total{topic=\"kone.call.events\",result=\"failed\"} 1\n");
    assert_has(t, "kone_kafka_deliveries_total{topic=\"other\",result=\"delivered\"} 1\n");
    assert_has(t,
               "kone_api_request_duration_seconds_count{call_type=\"action\",status=\"2xx\"} 1\n");
    assert_has(
        t, "kone_api_request_duration_seconds_count{call_type=\"action\",status=\"timeout\"} 1\n");
    assert_has(t,
               "kone_api_request_duration_seconds_count{call_type=\"token\",status=\"401\"} 1\n");
    assert_has(t, "kone_token_refreshes_total{result=\"ok\"} 1\n");
    assert_has(t, "kone_token_refreshes_total{result=\"refused\"} 1\n");
    assert_has(t, "kone_token_expiry_timestamp_seconds 1764364500\n");
    assert_has(t, "kone_ws_connections 2\n");
    assert_has(t, "kone_ws_protocol_errors_total{code=\"1002\"} 2\n");
    assert_has(t, "kone_ws_protocol_errors_total{code=\"1007\"} 0\n");
    assert_has(t, "kone_ws_protocol_errors_total{code=\"1009\"} 1\n");
    assert_has(t, "kone_inflight_jobs 3\n");
    assert_has(t, "kone_kafka_undelivered_messages 5\n");
    /* buildings: the configured two (trimmed, deduplicated) and "other", nothing else */
    assert_has(t, "kone_circuit_state{building=\"building:1\"} 0\n");
    assert_has(t, "kone_circuit_state{building=\"building:2\"} 2\n");
    assert_has(t, "kone_circuit_state{building=\"other\"} 0\n");
    assert_has(t, "kone_rate_limit_waits_total{building=\"other\"} 1\n");
    assert_has(t, "kone_concurrency_limit{building=\"building:1\"} 64\n");
    assert_has(t, "kone_concurrency_limit{building=\"building:2\"} 17\n");
    assert_has(t, "kone_concurrency_limit{building=\"other\"} 9\n");
    assert_has(t, "kone_worker_concurrency_limit 33\n");
    /* re-queues per job: three jobs none, one parked 4 times */
    assert_has(t, "kone_job_requeues_bucket{le=\"0\"} 3\n");
    assert_has(t, "kone_job_requeues_bucket{le=\"3\"} 3\n");
    assert_has(t, "kone_job_requeues_bucket{le=\"5\"} 4\n");
    assert_has(t, "kone_job_requeues_sum 4\n");
    assert_has(t, "kone_job_requeues_count 4\n");
    assert_has(t, "kone_dead_letters_total{reason=\"requeue_limit\"} 1\n");
    assert_null(strstr(t, "building:77"));
    assert_null(strstr(t, "building=\" building:1"));
    assert_has(t, "kone_ledger_enabled 1\n");
    assert_has(t, "kone_ledger_up 1\n");
    assert_has(t, "kone_ledger_ops_total{op=\"claim\",status=\"ok\"} 1\n");
    assert_has(t, "kone_ledger_ops_total{op=\"renew\",status=\"error\"} 1\n");
    assert_has(t, "kone_ledger_ops_total{op=\"purge\",status=\"error\"} 0\n");
    assert_has(t, "kone_ledger_commit_duration_seconds_bucket{le=\"0.0005\"} 0\n");
    assert_has(t, "kone_ledger_commit_duration_seconds_bucket{le=\"0.001\"} 1\n");
    assert_has(t, "kone_ledger_commit_duration_seconds_count 1\n");
    assert_has(t, "kone_ledger_rows{state=\"writing\"} 12\n");
    assert_has(t, "kone_ledger_rows{state=\"accepted\"} 0\n");
    assert_has(t, "kone_ledger_rows{state=\"done\"} 34567\n");
    assert_has(t, "kone_ledger_duplicates_total{kind=\"done\"} 1\n");
    assert_has(t, "kone_ledger_duplicates_total{kind=\"ambiguous\"} 1\n");
    assert_has(t, "kone_ledger_duplicates_total{kind=\"inflight\"} 0\n");
    free(t);
    assert_int_equal(kd_metrics_label_misses(kd_wm_registry()), 0);
    kd_wm_free();
}

static void test_status_and_reason_mapping(void **state)
{
    (void)state;
    assert_string_equal(kd_wm_status_label(200), "2xx");
    assert_string_equal(kd_wm_status_label(201), "2xx");
    assert_string_equal(kd_wm_status_label(409), "409");
    assert_string_equal(kd_wm_status_label(418), "4xx");
    assert_string_equal(kd_wm_status_label(502), "5xx");
    assert_string_equal(kd_wm_status_label(KD_WM_STATUS_TIMEOUT), "timeout");
    assert_string_equal(kd_wm_status_label(KD_WM_STATUS_ERROR), "error");
    assert_string_equal(kd_wm_status_label(302), "error");
    assert_string_equal(kd_wm_retry_reason("429"), "too_many_requests");
    assert_string_equal(kd_wm_retry_reason("401"), "unauthorized");
    assert_string_equal(kd_wm_retry_reason("circuit_open"), "circuit_open");
    assert_string_equal(kd_wm_retry_reason("5000"), "other");
    assert_string_equal(kd_wm_retry_reason(NULL), "other");
}

static void test_circuit_other_shows_the_worst(void **state)
{
    (void)state;
    assert_int_equal(kd_wm_init(&cfg, NULL), 0);
    kd_metric *c = (kd_metric *)kd_metrics_find(kd_wm_registry(), "kone_circuit_state");
    long other = kd_metric_series(c, KD_LV("other"));
    kd_wm_circuit_change("building:a", KD_WM_CIRCUIT_CLOSED, KD_WM_CIRCUIT_OPEN);
    kd_wm_circuit_change("building:b", KD_WM_CIRCUIT_CLOSED, KD_WM_CIRCUIT_HALF_OPEN);
    assert_true(kd_gauge_value(c, other) == 2);
    kd_wm_circuit_change("building:a", KD_WM_CIRCUIT_OPEN, KD_WM_CIRCUIT_CLOSED);
    assert_true(kd_gauge_value(c, other) == 1);
    kd_wm_circuit_change("building:b", KD_WM_CIRCUIT_HALF_OPEN, KD_WM_CIRCUIT_CLOSED);
    assert_true(kd_gauge_value(c, other) == 0);
    kd_wm_free();
    /* after free, every update is a no-op */
    kd_wm_circuit_change("building:a", KD_WM_CIRCUIT_CLOSED, KD_WM_CIRCUIT_OPEN);
    kd_wm_retry("timeout");
    kd_wm_turn(&(kd_wm_state){0});
}

static void test_promtool_check_metrics(void **state)
{
    (void)state;
    assert_int_equal(kd_wm_init(&cfg, NULL), 0);
    populate();
    char *t = expose();
    char path[] = "/tmp/kd-metrics-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, t, strlen(t)), (ssize_t)strlen(t));
    close(fd);
    free(t);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[4096] = "";
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    unlink(path);
    if (WEXITSTATUS(st) == 127)
        fail_msg("promtool not found: scripts/bootstrap installs Debian's prometheus package");
    if (st != 0 || n != 0)
        fail_msg("promtool check metrics (exit %d):\n%s", WEXITSTATUS(st), out);
    kd_wm_free();
}

/* ---- the call ledger ---- */

static double gauge(const char *name, const char *const *values)
{
    const kd_metric *m = kd_metrics_find(kd_wm_registry(), name);
    assert_non_null(m);
    return kd_gauge_value(m, kd_metric_series(m, values));
}

static uint64_t counter(const char *name, const char *const *values)
{
    const kd_metric *m = kd_metrics_find(kd_wm_registry(), name);
    assert_non_null(m);
    return kd_counter_value(m, kd_metric_series(m, values));
}

/* kone_ledger_up is 1 only while the ledger is enabled and answers, in whatever order
 * the worker reports the two; ledger.url=none shows enabled 0 and up 0. */
static void test_ledger_enabled_and_up(void **state)
{
    (void)state;
    assert_int_equal(kd_wm_init(&cfg, NULL), 0);
    /* before the worker reports anything: neither */
    assert_true(gauge("kone_ledger_enabled", NULL) == 0);
    assert_true(gauge("kone_ledger_up", NULL) == 0);
    /* up reported before enabled is kept, shown once enabled */
    kd_wm_ledger_up(true);
    assert_true(gauge("kone_ledger_up", NULL) == 0);
    kd_wm_ledger_enabled(true);
    assert_true(gauge("kone_ledger_enabled", NULL) == 1);
    assert_true(gauge("kone_ledger_up", NULL) == 1);
    kd_wm_ledger_up(false);
    assert_true(gauge("kone_ledger_up", NULL) == 0);
    assert_true(gauge("kone_ledger_enabled", NULL) == 1);
    kd_wm_ledger_up(true);
    assert_true(gauge("kone_ledger_up", NULL) == 1);
    /* ledger.url=none: enabled 0, up 0, whatever is reported afterwards */
    kd_wm_ledger_enabled(false);
    assert_true(gauge("kone_ledger_enabled", NULL) == 0);
    assert_true(gauge("kone_ledger_up", NULL) == 0);
    kd_wm_ledger_up(true);
    assert_true(gauge("kone_ledger_up", NULL) == 0);
    kd_wm_free();

    /* a fresh catalogue forgets the previous one's state */
    assert_int_equal(kd_wm_init(&cfg, NULL), 0);
    kd_wm_ledger_enabled(true);
    assert_true(gauge("kone_ledger_up", NULL) == 0);
    kd_wm_free();
}

static void test_ledger_ops_rows_duplicates(void **state)
{
    (void)state;
    assert_int_equal(kd_wm_init(&cfg, NULL), 0);
    const char *ops[] = {"claim", "accept", "done", "release", "retry", "renew", "purge"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        kd_wm_ledger_op(ops[i], true);
        kd_wm_ledger_op(ops[i], false);
        kd_wm_ledger_op(ops[i], false);
        assert_int_equal(counter("kone_ledger_ops_total", KD_LV(ops[i], "ok")), 1);
        assert_int_equal(counter("kone_ledger_ops_total", KD_LV(ops[i], "error")), 2);
    }
    const char *states[] = {"writing", "accepted", "retry", "done"};
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        kd_wm_ledger_rows(states[i], (int64_t)(i + 1) * 1000);
        assert_true(gauge("kone_ledger_rows", KD_LV(states[i])) == (double)(i + 1) * 1000);
    }
    kd_wm_ledger_rows("done", 5); /* a gauge: the latest count replaces the previous */
    assert_true(gauge("kone_ledger_rows", KD_LV("done")) == 5);
    kd_wm_ledger_rows("retry", -3); /* never negative */
    assert_true(gauge("kone_ledger_rows", KD_LV("retry")) == 0);
    const char *kinds[] = {"done", "accepted", "ambiguous", "inflight"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        for (size_t k = 0; k <= i; k++)
            kd_wm_ledger_duplicate(kinds[i]);
        assert_int_equal(counter("kone_ledger_duplicates_total", KD_LV(kinds[i])), i + 1);
    }
    /* commit times: sub-millisecond to seconds; a negative time counts as 0 */
    const kd_metric *h = kd_metrics_find(kd_wm_registry(), "kone_ledger_commit_duration_seconds");
    kd_wm_ledger_commit(200);     /* 0.2 ms */
    kd_wm_ledger_commit(3000);    /* 3 ms */
    kd_wm_ledger_commit(4200000); /* 4.2 s, just under ledger.timeout_ms */
    kd_wm_ledger_commit(-5);
    double sum = 0;
    uint64_t b[KD_METRICS_MAX_BUCKETS + 1];
    assert_int_equal(kd_histogram_value(h, 0, &sum, b), 4);
    assert_int_equal(b[0], 2);  /* le 0.00025: the 0.2 ms and the negative one */
    assert_int_equal(b[4], 3);  /* le 0.005 */
    assert_int_equal(b[12], 3); /* le 2.5 */
    assert_int_equal(b[13], 4); /* le 5 */
    assert_true(sum > 4.2 && sum < 4.21);
    assert_int_equal(kd_metrics_label_misses(kd_wm_registry()), 0);

    /* unknown values never crash: ops and kinds count as "other", states are dropped
     * (and counted as label misses, the registry's sign of a caller's bug) */
    kd_wm_ledger_op("migrate", false);
    kd_wm_ledger_op(NULL, true);
    assert_int_equal(counter("kone_ledger_ops_total", KD_LV("other", "error")), 1);
    assert_int_equal(counter("kone_ledger_ops_total", KD_LV("other", "ok")), 1);
    kd_wm_ledger_duplicate("weird");
    kd_wm_ledger_duplicate(NULL);
    assert_int_equal(counter("kone_ledger_duplicates_total", KD_LV("other")), 2);
    kd_wm_ledger_rows("cancelling", 7);
    kd_wm_ledger_rows(NULL, 7);
    assert_int_equal(kd_metrics_label_misses(kd_wm_registry()), 2);
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        assert_true(gauge("kone_ledger_rows", KD_LV(states[i])) != 7);
    char *t = expose();
    assert_null(strstr(t, "cancelling"));
    assert_null(strstr(t, "migrate"));
    assert_null(strstr(t, "kone_ledger_rows{state=\"other\"}"));
    free(t);
    kd_wm_free();

    /* after free (and before init), every ledger update is a no-op */
    kd_wm_ledger_enabled(true);
    kd_wm_ledger_up(true);
    kd_wm_ledger_op("claim", true);
    kd_wm_ledger_commit(1000);
    kd_wm_ledger_rows("done", 1);
    kd_wm_ledger_duplicate("done");
}

/* ---- docs/metrics.md against the registry ---- */

typedef struct doc_row {
    char name[96], type[16], labels[128];
} doc_row;

/* Reads the rows between <!-- metrics-table:begin/end -->: | `name` | type | `a`, `b` | ... */
static size_t read_doc_rows(doc_row *rows, size_t max)
{
    const char *src = getenv("KD_SRC_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/docs/metrics.md", src ? src : ".");
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    char line[2048];
    bool in = false;
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "<!-- metrics-table:begin -->")) {
            in = true;
            continue;
        }
        if (strstr(line, "<!-- metrics-table:end -->"))
            break;
        if (!in || strncmp(line, "| `", 3) != 0)
            continue;
        assert_true(n < max);
        doc_row *r = &rows[n++];
        memset(r, 0, sizeof *r);
        char *cells[4] = {0};
        char *save = NULL, *tok = strtok_r(line, "|", &save);
        for (int i = 0; tok && i < 4; i++, tok = strtok_r(NULL, "|", &save))
            cells[i] = tok;
        assert_non_null(cells[2]);
        sscanf(cells[0], " `%95[^`]`", r->name);
        sscanf(cells[1], " %15s", r->type);
        /* labels: "`a`, `b`" or "" / "—" -> "a,b" */
        for (char *p = cells[2]; *p; p++) {
            if (*p != '`')
                continue;
            char *e = strchr(p + 1, '`');
            assert_non_null(e);
            if (r->labels[0])
                strcat(r->labels, ",");
            strncat(r->labels, p + 1, (size_t)(e - p - 1));
            p = e;
        }
    }
    fclose(f);
    return n;
}

/* "# TYPE name type" lines and the labels of each family's first sample (le left out). */
static void family_labels(const char *text, const char *name, char *out, size_t len)
{
    out[0] = '\0';
    char key[128];
    snprintf(key, sizeof key, "\n%s", name);
    const char *p = text;
    while ((p = strstr(p, key))) {
        p += strlen(key);
        if (*p == '_' && (strncmp(p, "_bucket", 7) == 0))
            p += 7;
        else if (*p != '{' && *p != ' ')
            continue;
        if (*p != '{')
            return;
        const char *end = strchr(p, '}');
        for (const char *q = p + 1; q < end;) {
            const char *eq = strchr(q, '=');
            if (strncmp(q, "le=", 3) != 0) {
                if (out[0])
                    strncat(out, ",", len - strlen(out) - 1);
                strncat(out, q,
                        (size_t)(eq - q) < len - strlen(out) - 1 ? (size_t)(eq - q)
                                                                 : len - strlen(out) - 1);
            }
            const char *v = eq + 2; /* after =" */
            while (*v && !(*v == '"' && v[-1] != '\\'))
                v++;
            q = v + 1;
            if (*q == ',')
                q++;
        }
        return;
    }
}

static void test_docs_table_matches_catalogue(void **state)
{
    (void)state;
    assert_int_equal(kd_wm_init(&cfg, NULL), 0);
    populate(); /* histograms export only observed series: every family has one now */
    char *t = expose();
    doc_row rows[64];
    size_t n = read_doc_rows(rows, 64);
    assert_true(n > 10);
    size_t families = 0;
    for (const char *p = t; (p = strstr(p, "# TYPE ")); p++) {
        char name[96], type[16];
        assert_int_equal(sscanf(p, "# TYPE %95s %15s", name, type), 2);
        families++;
        size_t i = 0;
        while (i < n && strcmp(rows[i].name, name) != 0)
            i++;
        if (i == n)
            fail_msg("%s is exported but not in docs/metrics.md's table", name);
        if (strcmp(rows[i].type, type) != 0)
            fail_msg("%s: docs say %s, the catalogue %s", name, rows[i].type, type);
        char labels[128];
        family_labels(t, name, labels, sizeof labels);
        if (strcmp(rows[i].labels, labels) != 0)
            fail_msg("%s: docs list labels '%s', the catalogue has '%s'", name, rows[i].labels,
                     labels);
    }
    for (size_t i = 0; i < n; i++) {
        char key[128];
        snprintf(key, sizeof key, "# TYPE %s ", rows[i].name);
        if (!strstr(t, key))
            fail_msg("docs/metrics.md lists %s, which the catalogue does not export", rows[i].name);
    }
    assert_int_equal(families, n);
    free(t);
    kd_wm_free();
}

/* ---- the endpoint from configuration, readiness, snapshot ---- */

typedef struct body {
    char s[65536];
    size_t n;
} body;

static size_t on_body(char *p, size_t sz, size_t k, void *arg)
{
    body *b = arg;
    size_t len = sz * k, room = sizeof b->s - 1 - b->n;
    memcpy(b->s + b->n, p, len < room ? len : room);
    b->n += len < room ? len : room;
    b->s[b->n] = '\0';
    return len;
}

static long get(const char *path, body *b)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", kd_wm_http_port(), path);
    memset(b, 0, sizeof *b);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    long status = 0;
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    return status;
}

static void test_endpoint_and_readiness(void **state)
{
    (void)state;
    kd_err err = {0};
    assert_int_equal(kd_worker_metrics_start(&cfg, NULL, NULL, &err), 0);
    assert_true(kd_wm_http_port() > 0);
    body b;
    /* before the first turn: nothing is known to be up */
    assert_int_equal(get("/readyz", &b), 503);
    assert_non_null(strstr(b.s, "not consuming from RabbitMQ"));
    assert_non_null(strstr(b.s, "Kafka"));
    assert_non_null(strstr(b.s, "KONE"));
    kd_wm_turn(&(kd_wm_state){.amqp_consuming = true, .kafka_ok = true, .kone_ready = false});
    assert_int_equal(get("/readyz", &b), 503);
    assert_null(strstr(b.s, "RabbitMQ"));
    assert_non_null(strstr(b.s, "no KONE token or no WebSocket connection"));
    kd_wm_turn(&(kd_wm_state){.amqp_consuming = true, .kafka_ok = true, .kone_ready = true});
    assert_int_equal(get("/readyz", &b), 200);
    assert_int_equal(get("/healthz", &b), 200);
    assert_int_equal(get("/metrics", &b), 200);
    assert_non_null(strstr(b.s, "kone_build_info{version="));
    kd_worker_metrics_stop();
    assert_int_equal(kd_wm_http_port(), 0);

    /* port -1: no endpoint, the catalogue still works */
    assert_int_equal(kd_config_set(&cfg, KD_CFG_METRICS_PORT, "-1", NULL), 0);
    assert_int_equal(kd_worker_metrics_start(&cfg, NULL, NULL, &err), 0);
    assert_int_equal(kd_wm_http_port(), 0);
    assert_non_null(kd_wm_registry());
    kd_worker_metrics_stop();
    assert_int_equal(kd_config_set(&cfg, KD_CFG_METRICS_PORT, "0", NULL), 0);
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    (void)level;
    (void)fac;
    (void)buf;
}

static int delivered, failed;

static void on_report(void *opaque, int err_code, const char *errstr, void *arg)
{
    (void)errstr;
    (void)arg;
    assert_null(opaque); /* snapshots carry no run: the worker's report handler skips them */
    if (err_code)
        failed++;
    else
        delivered++;
}

static void test_publish_snapshot_to_kafka(void **state)
{
    (void)state;
    /* interval 0: never; a NULL producer: nothing to do */
    assert_int_equal(kd_config_set(&cfg, KD_CFG_METRICS_KAFKA_INTERVAL_MS, "0", NULL), 0);
    assert_int_equal(kd_wm_init(&cfg, NULL), 0);
    assert_int_equal(kd_wm_publish(NULL, "w"), 0);
    kd_wm_free();

    /* librdkafka's mock cluster stands in for Kafka */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    char why[256];
    rd_kafka_t *owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    assert_non_null(owner);
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(owner, 1);
    assert_non_null(mc);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "kone.worker.metrics", 1, 1), 0);
    assert_int_equal(
        kd_config_set(&cfg, KD_CFG_KAFKA_BROKERS, rd_kafka_mock_cluster_bootstraps(mc), NULL), 0);
    /* the mock cluster speaks plaintext only (this also logs the INSECURE warning) */
    assert_int_equal(kd_config_set(&cfg, KD_CFG_KAFKA_SECURITY_PROTOCOL, "plaintext", NULL), 0);
    assert_int_equal(kd_config_set(&cfg, KD_CFG_METRICS_KAFKA_INTERVAL_MS, "200", NULL), 0);
    kd_kafka *k = NULL;
    kd_err err = {0};
    assert_int_equal(kd_kafka_producer_new(&k, &cfg, on_report, NULL, &err), 0);
    assert_int_equal(kd_wm_init(&cfg, NULL), 0);
    populate();
    assert_int_equal(kd_wm_publish(k, "w-1"), 0); /* not due yet */
    struct timespec ts = {0, 250 * 1000000L};
    nanosleep(&ts, NULL);
    assert_int_equal(kd_wm_publish(k, "w-1"), 1);
    assert_int_equal(kd_wm_publish(k, "w-1"), 0); /* the interval starts again */
    for (int i = 0; i < 100 && delivered + failed == 0; i++)
        kd_kafka_poll(k, 50);
    assert_int_equal(delivered, 1);
    assert_int_equal(failed, 0);
    kd_wm_free();
    kd_kafka_destroy(k);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(owner);
    assert_int_equal(kd_config_set(&cfg, KD_CFG_METRICS_KAFKA_INTERVAL_MS, "60000", NULL), 0);
}

/* Exactly as many buildings as the comma count allows (the common case "a,b"): the list
 * must still hold "other" and its NULL end (an off-by-one here crashed the worker). */
static void test_two_buildings_plain_list(void **state)
{
    (void)state;
    kd_config c2;
    char *argv[] = {"kone-worker", "--metrics-buildings", "building:1,building:2"};
    kd_err err = {0};
    assert_int_equal(kd_config_load(&c2, KD_PROG_WORKER, "kone-worker", 3, argv, &err), 0);
    assert_int_equal(kd_wm_init(&c2, &err), 0);
    size_t len = 0;
    char *text = kd_metrics_expose(kd_wm_registry(), &len);
    assert_non_null(text);
    assert_non_null(strstr(text, "kone_circuit_state{building=\"building:1\"}"));
    assert_non_null(strstr(text, "kone_circuit_state{building=\"building:2\"}"));
    assert_non_null(strstr(text, "kone_circuit_state{building=\"other\"}"));
    free(text);
    kd_wm_free();
    kd_config_free(&c2);
}

/* Results and call events sent to one topic (kafka.topic_events = kafka.topic_results): its
 * delivery series exist once, so a scrape holds no duplicate series (which Prometheus refuses),
 * and a delivery to it is counted once. */
static void test_one_topic_for_results_and_events(void **state)
{
    (void)state;
    kd_config c2;
    char *argv[] = {"kone-worker", "--kafka-topic-results=kd.all", "--kafka-topic-events=kd.all"};
    kd_err err = {0};
    assert_int_equal(kd_config_load(&c2, KD_PROG_WORKER, "kone-worker", 3, argv, &err), 0);
    assert_int_equal(kd_wm_init(&c2, &err), 0);
    kd_wm_kafka_delivery("kd.all", true);
    size_t len = 0;
    char *text = kd_metrics_expose(kd_wm_registry(), &len);
    assert_non_null(text);
    const char *line = "kone_kafka_deliveries_total{topic=\"kd.all\",result=\"delivered\"} 1\n";
    const char *at = strstr(text, line);
    assert_non_null(at);
    assert_null(
        strstr(at + 1, "kone_kafka_deliveries_total{topic=\"kd.all\",result=\"delivered\"}"));
    free(text);
    kd_wm_free();
    kd_config_free(&c2);
}

/* What an operator meets when the metrics settings cannot work or the main loop stops (the
 * values themselves are checked when the configuration loads): a 1001st building is refused,
 * a port another process holds fails the start and leaves no catalogue behind, and /readyz's
 * reasons say why the worker is not ready. */
static void test_bad_settings_and_a_stalled_loop(void **state)
{
    (void)state;
    char why[512];
    assert_false(kd_wm_ready(NULL, why, sizeof why));
    assert_string_equal(why, "metrics not initialised\n");

    size_t cap = 1001 * 16;
    char *csv = malloc(cap), *p = csv;
    assert_non_null(csv);
    for (int i = 0; i < 1001; i++)
        p += snprintf(p, cap - (size_t)(p - csv), "%sbuilding:%d", i ? "," : "", i);
    assert_int_equal(kd_config_set(&cfg, KD_CFG_METRICS_BUILDINGS, csv, NULL), 0);
    free(csv);
    kd_err err = {0};
    assert_int_not_equal(kd_wm_init(&cfg, &err), 0);
    assert_string_equal(err.msg, "metrics.buildings: at most 1000 buildings");
    assert_null(kd_wm_registry());
    assert_int_equal(kd_config_set(&cfg, KD_CFG_METRICS_BUILDINGS, "building:1,building:2", NULL),
                     0);

    /* the port is another process's (here: a socket of this test's) */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    char port[16];
    snprintf(port, sizeof port, "%d", ntohs(sa.sin_port));
    assert_int_equal(kd_config_set(&cfg, KD_CFG_METRICS_PORT, port, NULL), 0);
    memset(&err, 0, sizeof err);
    assert_int_not_equal(kd_worker_metrics_start(&cfg, NULL, NULL, &err), 0);
    assert_true(err.msg[0] != '\0');
    assert_null(kd_wm_registry());
    close(fd);
    assert_int_equal(kd_config_set(&cfg, KD_CFG_METRICS_PORT, "0", NULL), 0);

    /* one catalogue per process; a main loop silent for longer than health_stale_ms */
    assert_int_equal(kd_config_set(&cfg, KD_CFG_METRICS_HEALTH_STALE_MS, "1", NULL), 0);
    assert_int_equal(kd_wm_init(&cfg, &err), 0);
    memset(&err, 0, sizeof err);
    assert_int_not_equal(kd_wm_init(&cfg, &err), 0);
    assert_non_null(strstr(err.msg, "initialised twice"));
    kd_wm_turn(&(kd_wm_state){.amqp_consuming = true, .kafka_ok = true, .kone_ready = true});
    struct timespec ts = {0, 5 * 1000000L};
    nanosleep(&ts, NULL);
    assert_false(kd_wm_ready(NULL, why, sizeof why));
    assert_string_equal(why, "main loop stalled (no turn within metrics.health_stale_ms)\n");
    kd_wm_free();
    assert_int_equal(kd_config_set(&cfg, KD_CFG_METRICS_HEALTH_STALE_MS, "60000", NULL), 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_buildings_plain_list),
        cmocka_unit_test(test_one_topic_for_results_and_events),
        cmocka_unit_test(test_catalogue_values_and_labels),
        cmocka_unit_test(test_status_and_reason_mapping),
        cmocka_unit_test(test_circuit_other_shows_the_worst),
        cmocka_unit_test(test_ledger_enabled_and_up),
        cmocka_unit_test(test_ledger_ops_rows_duplicates),
        cmocka_unit_test(test_promtool_check_metrics),
        cmocka_unit_test(test_docs_table_matches_catalogue),
        cmocka_unit_test(test_endpoint_and_readiness),
        cmocka_unit_test(test_publish_snapshot_to_kafka),
        cmocka_unit_test(test_bad_settings_and_a_stalled_loop),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
