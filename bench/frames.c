/* frames: the KONE thread's own per-frame work, alone (issue 17's micro-benchmark; not a
 * baseline of scripts/bench, which does not run it).
 *
 * A call job costs the worker, in its own code: one request written (kd_kone_msg_job), the
 * call's answer and call result read, and the call states of its building and group read,
 * each offered by its session id to the call layer (kd_kone_msg_read's keep, as kone_conn.c's
 * dispatch does) because the states of other calls are dropped before their fields are read.
 * This program does exactly that (every state is followed here), --count
 * times, on frames shaped as kone-sim sends them, so that a change to kone_msg.c, kone_jview.c or
 * kone_jw.c is measured before and after on the same input, without brokers, TLS or a machine's
 * load:
 *
 *   valgrind --tool=callgrind build/kd-bench-frames --count 20000
 *
 * gives instructions per job (total / count, the start-up is a few thousand). --late N adds N
 * states per job that nobody follows, dropped when asked (the served_soon and served that come
 * after a job's decisive state: 2 per untracked job in steady state); without
 * valgrind it prints the same line as the baselines, "frames rate_per_s=.. count=..
 * seconds=..", jobs per second of the loop on this machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kd_time.h"
#include "kone_msg.h"

/* The call layer's answer: this job follows its call (and counts the questions). */
static bool follows(int64_t session_id, void *user)
{
    *(int64_t *)user += session_id;
    return true;
}

/* ... and no longer follows a decided one. */
static bool decided(int64_t session_id, void *user)
{
    *(int64_t *)user += session_id;
    return false;
}

/* States that come after the decisive one: nobody follows them (kone-sim's order). */
static const char *const late[] = {
    "{\"callType\":\"monitor-call-state\",\"buildingId\":\"building:9990000951\",\"groupId\":"
    "\"1\",\"subtopic\":\"call_state/4242/served_soon\",\"data\":{\"time\":\"2026-12-04T23:42:"
    "40.990Z\",\"session_id\":4242,\"state\":\"served_soon\",\"allocated_lift_deck\":[1001010],"
    "\"eta\":\"2026-12-04T23:42:41.100Z\",\"subgroup_id\":1}}",
    "{\"callType\":\"monitor-call-state\",\"buildingId\":\"building:9990000951\",\"groupId\":"
    "\"1\",\"subtopic\":\"call_state/4242/served\",\"data\":{\"time\":\"2026-12-04T23:42:"
    "41.100Z\",\"session_id\":4242,\"state\":\"served\",\"allocated_lift_deck\":[1001010],"
    "\"subgroup_id\":1}}",
};

int main(int argc, char **argv)
{
    kd_bench_opt opts[] = {
        {.name = "count", .min = 1, .max = 100000000, .value = 100000, .help = "jobs"},
        {.name = "late", .min = 0, .max = 2, .value = 0, .help = "states per job dropped"},
    };
    kd_bench b;
    kd_bench_init(&b, "frames", "[--count N] [--late 0-2]", argc, argv, opts, 2, NULL, 0);
    kd_job job = {.v = 1, .op = KD_OP_CALL, .area = 1000, .action = 2, .has_destination = true};
    snprintf(job.job_id, sizeof job.job_id, "bench-frames-1");
    snprintf(job.building_id, sizeof job.building_id, "building:9990000951");
    snprintf(job.group_id, sizeof job.group_id, "1");
    size_t len[4], late_len[2];
    for (int f = 0; f < KD_BENCH_CALL_FRAMES; f++)
        len[f] = strlen(kd_bench_call_frames[f]);
    for (int f = 0; f < 2; f++)
        late_len[f] = strlen(late[f]);
    int64_t t0 = kd_now_us(), sum = 0;
    for (int64_t i = 0; i < opts[0].value; i++) {
        kd_err err = {0};
        job.destination = 2000 + (i % 9) * 1000;
        char *req = kd_kone_msg_job(&job, 123456 + i, t0, &err);
        if (!req) {
            return kd_bench_fail(&b, "request: %s", err.msg);
        }
        sum += (int64_t)strlen(req);
        free(req);
        for (int f = 0; f < KD_BENCH_CALL_FRAMES; f++) {
            kd_kone_msg m;
            int64_t sid = 0;
            bool kept = false;
            if (kd_kone_msg_read(kd_bench_call_frames[f], len[f], follows, &sid, &kept, &m, &err)) {
                return kd_bench_fail(&b, "frame %d: %s", f, err.msg);
            }
            /* the two states are asked about, the answer and the call result are not */
            if (!kept || (sid != 0) != (f >= 2)) {
                return kd_bench_fail(&b, "frame %d asked wrong", f);
            }
            sum += m.kind + sid;
        }
        for (int f = 0; f < opts[1].value; f++) {
            kd_kone_msg m;
            int64_t sid = 0;
            bool kept = true;
            if (kd_kone_msg_read(late[f], late_len[f], decided, &sid, &kept, &m, &err) || kept ||
                !sid) {
                return kd_bench_fail(&b, "late state %d not dropped", f);
            }
            sum += sid;
        }
    }
    kd_bench_note(&b, "checksum %lld", (long long)sum); /* the loop's work is used */
    kd_bench_report(&b, (uint64_t)opts[0].value, t0, kd_now_us());
    kd_bench_free(&b);
    return 0;
}
