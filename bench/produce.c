/* kd-bench-produce: the Kafka baseline of scripts/bench.
 *
 *   kd-bench-produce --topic T --count N --size BYTES [--timeout-s S]
 *
 * The raw produce rate with delivery reports, on the worker's producer: kd_kafka_producer_new
 * with the worker's configuration, so the same librdkafka settings (idempotence, acks=all,
 * message.timeout.ms=0, linger.ms = kafka.linger_ms, lz4) and the same call per message
 * (kd_kafka_produce, payload copied, key = building id as a result's key). Delivery reports
 * are served on this thread with kd_kafka_poll, as the worker serves them on its AMQP
 * thread. Timed from the first produce of the run to the last delivery report.
 *
 * One message is produced and confirmed before the clock starts: the first produce of a
 * fresh producer waits for the topic's metadata and the idempotent producer id, a one-off
 * cost of starting, not of producing; a running worker has long paid it.
 *
 * message.timeout.ms=0 makes librdkafka retry an undeliverable message forever (that is
 * how the worker loses nothing), so the deadline is what ends a run against an absent
 * broker or topic.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kd_kafka.h"
#include "kd_time.h"

/* The key of every message: one building, as in the benchmark's jobs (a result's key is its
 * job's building id). */
#define BENCH_KEY "building:9990000951"
#define POLL_EVERY 256 /* serve reports this often while producing, as the worker's loop does */

typedef struct counts {
    uint64_t delivered;
    uint64_t failed;
    char first_error[256];
    int64_t last_us; /* when the last report was served */
} counts;

static void on_report(void *opaque, int err_code, const char *errstr, void *arg)
{
    (void)opaque;
    counts *c = arg;
    if (err_code) {
        if (c->failed++ == 0)
            snprintf(c->first_error, sizeof c->first_error, "%s", errstr);
    } else {
        c->delivered++;
    }
    c->last_us = kd_mono_us();
}

/* Polls until `target` reports arrived or the deadline passed; 0 or the exit status. */
static int wait_reports(kd_bench *b, kd_kafka *k, counts *c, uint64_t target, const char *what)
{
    int64_t next_note = kd_mono_us() + 5000000;
    while (c->delivered + c->failed < target) {
        if (kd_bench_timed_out(b, what, c->delivered + c->failed, target,
                               "delivery reports (is Kafka at kafka.brokers reachable, does the "
                               "topic exist?)"))
            return 1;
        kd_kafka_poll(k, kd_bench_wait_ms(b, 100));
        if (kd_mono_us() >= next_note) {
            kd_bench_note(b, "%s: %llu of %llu delivered", what, (unsigned long long)c->delivered,
                          (unsigned long long)target);
            next_note += 5000000;
        }
    }
    if (c->failed)
        return kd_bench_fail(b, "%llu of %llu messages not delivered: %s",
                             (unsigned long long)c->failed, (unsigned long long)target,
                             c->first_error);
    return 0;
}

int main(int argc, char **argv)
{
    kd_bench_str strs[] = {
        {"topic", true, NULL,
         "Kafka topic to produce to (it must exist, or the broker must auto-create it)"},
    };
    kd_bench_opt opts[] = {
        {"count", true, 1, 100000000, 0, false, "messages to produce"},
        {"size", true, 0, 1000000, 0, false, "bytes per message value"},
    };
    kd_bench b;
    kd_bench_init(&b, "produce", "--topic T --count N --size BYTES", argc, argv, opts, 2, strs, 1);
    const char *topic = strs[0].value;
    uint64_t n = (uint64_t)opts[0].value;
    size_t size = (size_t)opts[1].value;
    unsigned char *value = kd_bench_payload(size);
    if (!value) {
        kd_bench_fail(&b, "out of memory");
        kd_bench_free(&b);
        return 1;
    }
    counts c = {0};
    kd_err err = {0};
    kd_kafka *k = NULL;
    if (kd_kafka_producer_new(&k, &b.cfg, on_report, &c, &err)) {
        fprintf(stderr, "%s: %s\n", b.prog, err.msg);
        free(value);
        kd_bench_free(&b);
        return 2;
    }

    kd_bench_note(&b, "topic '%s': warming up the producer (metadata, producer id)", topic);
    int rc = 0;
    if (kd_kafka_produce(k, topic, BENCH_KEY, value, size, NULL, &err))
        rc = kd_bench_fail(&b, "%s", err.msg);
    if (!rc)
        rc = wait_reports(&b, k, &c, 1, "warming up");

    int64_t t0 = 0;
    if (!rc) {
        kd_bench_note(&b, "producing %llu messages of %zu bytes (timed)", (unsigned long long)n,
                      size);
        c = (counts){0};
        t0 = kd_mono_us();
        for (uint64_t i = 0; i < n && !rc; i++) {
            /* on a full local queue kd_kafka_produce polls (we are the poller) and waits */
            if (kd_kafka_produce(k, topic, BENCH_KEY, value, size, NULL, &err))
                rc = kd_bench_fail(&b, "message %llu: %s", (unsigned long long)i + 1, err.msg);
            else if (i % POLL_EVERY == POLL_EVERY - 1)
                kd_kafka_poll(k, 0);
            if (!rc)
                rc = kd_bench_timed_out(&b, "producing", i + 1, n, "handed to librdkafka");
        }
        if (!rc)
            rc = wait_reports(&b, k, &c, n, "producing");
    }
    if (!rc)
        kd_bench_report(&b, n, t0, c.last_us);
    /* after a failure, destroy drops what is still queued (a bounded flush, then purge) */
    kd_kafka_destroy(k);
    free(value);
    kd_bench_free(&b);
    return rc;
}
