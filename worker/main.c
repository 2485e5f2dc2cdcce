/* kone-worker: takes elevator-call jobs off RabbitMQ, executes them against KONE and
 * streams every outcome to Kafka, acking a job only once Kafka confirmed its result.
 *
 * Threads and ownership (see docs/architecture.md):
 *   - this main thread owns the AMQP connection (rabbitmq-c is single-threaded and only
 *     serves heartbeats inside its calls) and serves Kafka delivery reports
 *     (kd_kafka_poll), so a report can ack its delivery right in the callback;
 *   - the KONE thread (worker/kone*.c) runs the libwebsockets loop with many jobs in flight
 *     and, when a job's outcome is known, produces its result to Kafka (thread-safe);
 *   - librdkafka's own threads talk to the brokers.
 * A job (kd_run) is allocated here per delivery and freed here after its ack, so its
 * memory is bounded by worker.inflight, which is also the AMQP prefetch.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_config.h"
#include "kd_log.h"
#include "metrics_catalog.h"
#include "worker_core.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

int main(int argc, char **argv)
{
    kd_config cfg;
    kd_err err = {0};
    if (kd_config_load(&cfg, KD_PROG_WORKER, "kone-worker", argc, argv, &err)) {
        fprintf(stderr, "kone-worker: %s\n", err.msg);
        return 2;
    }
    int code = 0;
    if (kd_config_common_actions(&cfg, &code)) {
        kd_config_free(&cfg);
        return code;
    }
    if (kd_log_init("kone-worker", kd_cfg_str(&cfg, KD_CFG_LOG_LEVEL)) < 0) {
        fprintf(stderr, "kone-worker: log.level: must be debug, info, warn or error\n");
        kd_config_free(&cfg);
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Metrics first: the Kafka and KONE threads report into the registry from their start.
     * A port that cannot be bound is fatal: a worker nobody can scrape looks missing. */
    if (kd_worker_metrics_start(&cfg, NULL, NULL, &err)) {
        kd_error("cannot start: %s", err.msg);
        kd_config_free(&cfg);
        return 2;
    }
    kd_worker *w = NULL;
    if (kd_worker_new(&w, &cfg, &err)) {
        kd_error("cannot start: %s", err.msg);
        kd_worker_metrics_stop();
        kd_config_free(&cfg);
        return 2;
    }
    int rc = kd_worker_run(w, &stop_requested);
    kd_worker_free(w);
    kd_worker_metrics_stop();
    kd_config_free(&cfg);
    return rc;
}
