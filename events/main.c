/* kone-events: print the worker's Kafka events as JSON lines (docs/events.md).
 *
 *   kone-events [TOPIC] [--events-max N] [--events-idle-exit-ms MS] ...
 *
 * One compact JSON object per message on stdout, flushed per line, so it can be piped
 * into jq or read by a test line by line. Logs (kd_log JSON lines) go to stderr only. It
 * stops on SIGINT/SIGTERM, after events.max messages, or after events.idle_exit_ms
 * without a message, counted from the partition assignment (or the last message, or the
 * broker saying the topic does not exist), so a slow group join never ends a run early. It exits 0
 * when it stopped for one of those reasons, 2 on a configuration error, 1 if Kafka or stdout
 * failed.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer.h"
#include "kd_config.h"
#include "kd_log.h"
#include "kd_time.h"
#include "line.h"

#define PROG "kone-events"
#define POLL_MS 100

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* a closed pipe (kone-events | head) shows up as EPIPE on write, and ends the run */
    signal(SIGPIPE, SIG_IGN);
}

typedef struct run_opts {
    kev_options kafka;
    int64_t max;          /* 0: no limit */
    int64_t idle_exit_ms; /* 0: never */
} run_opts;

/* The topic: events.topic, or the one positional argument, where "results" and "events"
 * name the topics of kafka.topic_results and kafka.topic_events. */
static int pick_topic(const kd_config *cfg, const char **topic, kd_err *err)
{
    *topic = kd_cfg_str(cfg, KD_CFG_EVENTS_TOPIC);
    if (cfg->nargs > 1)
        return kd_err_set(err, KD_ERR_INVALID, PROG ": at most one topic argument, got %d",
                          cfg->nargs);
    if (cfg->nargs == 1) {
        const char *a = cfg->args[0];
        if (strcmp(a, "results") == 0)
            *topic = kd_cfg_str(cfg, KD_CFG_KAFKA_TOPIC_RESULTS);
        else if (strcmp(a, "events") == 0)
            *topic = kd_cfg_str(cfg, KD_CFG_KAFKA_TOPIC_EVENTS);
        else
            *topic = a;
    }
    return 0;
}

static int read_opts(const kd_config *cfg, run_opts *o, kd_err *err)
{
    memset(o, 0, sizeof *o);
    int rc = pick_topic(cfg, &o->kafka.topic, err);
    o->kafka.from_beginning = kd_cfg_bool(cfg, KD_CFG_EVENTS_FROM_BEGINNING);
    o->max = kd_cfg_int(cfg, KD_CFG_EVENTS_MAX);
    o->idle_exit_ms = kd_cfg_int(cfg, KD_CFG_EVENTS_IDLE_EXIT_MS);
    o->kafka.brokers = kd_cfg_str(cfg, KD_CFG_KAFKA_BROKERS);
    o->kafka.cfg = cfg;
    o->kafka.group = kd_cfg_str(cfg, KD_CFG_EVENTS_GROUP);
    return rc;
}

/* Prints one line; returns 0, or 1 when stdout is gone (EPIPE: a normal end) or broken. */
static int print_line(const rd_kafka_message_t *m, bool *pipe_closed)
{
    char *line = kev_line(m->payload, m->len, m->partition, m->offset);
    /* GCOVR_EXCL_START: allocation failure */
    if (!line) {
        kd_error("out of memory converting the message at partition %d offset %lld",
                 (int)m->partition, (long long)m->offset);
        return 1;
    }
    /* GCOVR_EXCL_STOP */
    int bad = fputs(line, stdout) == EOF || putchar('\n') == EOF || fflush(stdout) == EOF;
    free(line);
    if (!bad)
        return 0;
    if (errno == EPIPE)
        *pipe_closed = true;
    else
        kd_error("cannot write to stdout: %s", kd_strerror(errno));
    return 1;
}

static void report_error(const rd_kafka_message_t *m)
{
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
    kd_warn("kafka: %s%s%s", m->rkt ? rd_kafka_topic_name(m->rkt) : "", m->rkt ? ": " : "",
            rd_kafka_message_errstr(m));
}

/* The idle clock starts when the consumer is settled: partitions assigned, or the topic
 * reported missing (librdkafka then never joins the group, so no assignment would come). */
static bool idle_expired(const run_opts *o, kev_consumer *c, int64_t missing_at, int64_t last_event)
{
    int64_t settled = kev_consumer_assigned_at(c);
    if (settled == 0)
        settled = missing_at;
    if (o->idle_exit_ms == 0 || settled == 0)
        return false;
    int64_t since = last_event > settled ? last_event : settled;
    return kd_mono_us() - since >= o->idle_exit_ms * 1000;
}

static bool topic_missing(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
}

/* Returns the exit code. */
static int consume(const run_opts *o, kev_consumer *c)
{
    int64_t count = 0, last_event = 0, missing_at = 0;
    bool pipe_closed = false;
    while (!stop_requested) {
        if (o->max > 0 && count >= o->max)
            break;
        if (idle_expired(o, c, missing_at, last_event)) {
            kd_debug("no event for %lld ms, exiting", (long long)o->idle_exit_ms);
            break;
        }
        rd_kafka_message_t *m = kev_consumer_poll(c, POLL_MS);
        if (!m)
            continue;
        int rc = 0;
        if (m->err) {
            report_error(m);
            if (topic_missing(m->err) && missing_at == 0)
                missing_at = kd_mono_us();
        } else {
            rc = print_line(m, &pipe_closed);
            count++;
            last_event = kd_mono_us();
        }
        rd_kafka_message_destroy(m);
        if (rc)
            return pipe_closed ? 0 : 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    kd_config cfg;
    kd_err err = {0};
    kd_log_init(PROG, "info");
    if (kd_config_load(&cfg, KD_PROG_EVENTS, PROG, argc, argv, &err)) {
        kd_error("%s", err.msg);
        return 2;
    }
    int code = 0;
    if (kd_config_common_actions(&cfg, &code)) {
        kd_config_free(&cfg);
        return code;
    }
    if (kd_log_init(PROG, kd_cfg_str(&cfg, KD_CFG_LOG_LEVEL)) != 0) {
        /* GCOVR_EXCL_START: log.level is an enum the configuration's load checked */
        kd_error("log.level: must be debug, info, warn or error");
        kd_config_free(&cfg);
        return 2;
        /* GCOVR_EXCL_STOP */
    }
    run_opts o;
    kev_consumer *c = NULL;
    if (read_opts(&cfg, &o, &err) || kev_consumer_new(&c, &o.kafka, &err)) {
        kd_error("%s", err.msg);
        kd_config_free(&cfg);
        return err.code == KD_ERR_INVALID ? 2 : 1;
    }
    install_signals();
    kd_debug("reading %s", o.kafka.topic);
    code = consume(&o, c);
    kev_consumer_close(c);
    kd_config_free(&cfg);
    return code;
}
