/* job_codec: the worker's per-job codec work, alone (issue 17's micro-benchmark; not a
 * baseline of scripts/bench, which does not run it).
 *
 * Every job costs the worker one kd_job_decode of its AMQP body and one
 * kd_event_encode_result of its outcome (into a fresh sbuffer, as worker_core.c does).
 * This program does exactly that, --count times, on a call job shaped as the benchmark's
 * producer sends them (job_id, building, group, times, trace id, area, action,
 * destination) and its succeeded result, so that a change to job.c or event.c is measured
 * before and after on the same input, without brokers or a machine's load:
 *
 *   valgrind --tool=callgrind build/kd-bench-job_codec --count 20000
 *
 * minus the same with --count 0 (the start-up), divided by the count, gives instructions
 * per job. Without valgrind it prints the baselines' line, "job_codec rate_per_s=..
 * count=.. seconds=..", jobs per second of the loop on this machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kd_event.h"
#include "kd_run.h"
#include "kd_time.h"

/* The body a producer publishes: its job encoded by the library, as kone-producer does. */
static int make_body(msgpack_sbuffer *sb, kd_err *err)
{
    kd_job job = {.v = KD_JOB_VERSION,
                  .op = KD_OP_CALL,
                  .created_at = 1796428800000,
                  .deadline = 1796428830000,
                  .area = 1000,
                  .action = 2,
                  .has_destination = true,
                  .destination = 5000};
    snprintf(job.job_id, sizeof job.job_id, "7f3b9c2e-5d41-4a8e-9b6f-0c1d2e3f4a5b");
    snprintf(job.building_id, sizeof job.building_id, "building:9990000951");
    snprintf(job.group_id, sizeof job.group_id, "1");
    snprintf(job.trace_id, sizeof job.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    return kd_job_encode(&job, sb, err);
}

int main(int argc, char **argv)
{
    kd_bench_opt opts[] = {
        {.name = "count", .min = 0, .max = 100000000, .value = 100000, .help = "jobs"},
    };
    kd_bench b;
    kd_bench_init(&b, "job_codec", "[--count N]", argc, argv, opts, 1, NULL, 0);
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    kd_err err = {0};
    if (make_body(&body, &err)) {
        return kd_bench_fail(&b, "job: %s", err.msg);
    }
    static kd_run run; /* the outcome fields the KONE side fills for an accepted call */
    run.outcome = KD_OUTCOME_SUCCEEDED;
    run.kone_status = 201;
    run.attempt = 1;
    run.job_valid = true;
    int64_t t0 = kd_now_us(), sum = 0;
    for (int64_t i = 0; i < opts[0].value; i++) {
        if (kd_job_decode(body.data, body.size, 30000, &run.job, &err)) {
            return kd_bench_fail(&b, "decode: %s", err.msg);
        }
        run.session_id = 123456 + i;
        run.started_us = t0 + i;
        run.finished_us = t0 + i + 25000;
        run.kone_rtt_us = 1800 + i % 1000;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        if (kd_event_encode_result(&run, "kone-worker-7f9c6d5b8-x2x9q", &sb, &err)) {
            return kd_bench_fail(&b, "encode: %s", err.msg);
        }
        sum += (int64_t)sb.size + run.job.destination;
        msgpack_sbuffer_destroy(&sb);
    }
    msgpack_sbuffer_destroy(&body);
    kd_bench_note(&b, "checksum %lld", (long long)sum); /* the loop's work is used */
    kd_bench_report(&b, (uint64_t)opts[0].value, t0, kd_now_us());
    kd_bench_free(&b);
    return 0;
}
