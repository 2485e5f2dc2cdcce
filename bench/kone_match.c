/* kd-bench-kone_match: what it costs the KONE client to find the job a frame belongs to.
 *
 *   kd-bench-kone_match [--inflight N] [--connections C] [--frames F]
 *
 * N calls in flight (default 1000) spread over C connections (default 2, kone.connections'
 * default), with the worker's own kd_kone, slots and jobs (kone_int.h) and its own lookups
 * (kone_call.c). Two populations, each measured on F frames (default 2,000,000) whose ids are
 * spread over all those in flight in no order:
 *   answer  N jobs written (SENT), an answer matched by its request id: kk_job_awaiting;
 *   state   N jobs following their calls (FOLLOW), a call-state frame matched by its call
 *           session id: kk_follows twice, as kone_conn.c checks before parsing the frame and
 *           kk_on_call_state finds the job again after.
 * Each is timed twice: "walk", the client as it was before issue 16 (every frame walks the
 * slot's jobs; kept as the fallback when the index cannot grow, kd_kone.index_off), and
 * "index" (kd_kone.by_req / by_sid). Needs no stack: no frame is sent or parsed, only matched.
 *
 * stdout, one line: "kone_match inflight=N connections=C answer_walk_ns=.. answer_index_ns=..
 * state_walk_ns=.. state_index_ns=.." (nanoseconds per frame). Exit 1 if a lookup misses.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_time.h"
#include "kone_int.h"

static long opt(int argc, char **argv, const char *name, long def, long min, long max)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) {
            char *end;
            long v = strtol(argv[i + 1], &end, 10);
            if (*end || v < min || v > max) {
                fprintf(stderr, "kd-bench-kone_match: %s takes %ld..%ld\n", name, min, max);
                exit(2);
            }
            return v;
        }
    return def;
}

/* Nanoseconds per frame for F frames; exits 1 on a miss. */
static double run(kd_kone *k, kk_job **jobs, long n, long frames, bool state)
{
    int64_t t0 = kd_mono_us();
    long found = 0;
    for (long f = 0; f < frames; f++) {
        /* Knuth's multiplicative hash of the frame's number: ids in no order the lists
         * keep, the same frames for walk and index */
        kk_job *j = jobs[(uint64_t)f * 2654435761u % (uint64_t)n];
        if (state)
            found +=
                kk_follows(j->slot, j->call_session_id) && kk_follows(j->slot, j->call_session_id);
        else
            found += kk_job_awaiting(j->slot, j->req_id) == j;
    }
    int64_t us = kd_mono_us() - t0;
    if (found != frames) {
        fprintf(stderr, "kd-bench-kone_match: %ld of %ld frames not matched\n", frames - found,
                frames);
        exit(1);
    }
    (void)k;
    return (double)us * 1000.0 / (double)frames;
}

int main(int argc, char **argv)
{
    long n = opt(argc, argv, "--inflight", 1000, 1, 1000000);
    long c = opt(argc, argv, "--connections", 2, 1, KK_MAX_SLOTS);
    long frames = opt(argc, argv, "--frames", 2000000, 1, 1000000000);
    kd_kone *k = calloc(1, sizeof *k);
    kk_job **jobs = calloc((size_t)n, sizeof *jobs);
    if (!k || !jobs)
        return 1;
    k->pool.n_links = (int)c;
    for (int i = 0; i < KK_MAX_SLOTS; i++)
        kk_slot_init(k, &k->slots[i], i);
    double ns[2][2]; /* [answer, state][walk, index] */
    for (int pop = 0; pop < 2; pop++) {
        for (long i = 0; i < n; i++) {
            kk_job *j = calloc(1, sizeof *j);
            if (!j)
                return 1;
            j->k = k;
            j->slot = &k->slots[i % c]; /* least_loaded spreads them evenly */
            lws_dll2_add_tail(&j->place, &j->slot->jobs);
            if (pop == 0) { /* as kk_job_write leaves it */
                j->st = KJ_SENT;
                j->req_id = 1000 + i;
                if (kd_idmap_put(&k->by_req, j->req_id, j))
                    return 1;
            } else { /* as call_result leaves it */
                j->st = KJ_FOLLOW;
                j->call_session_id = 700000000 + 7 * i;
                if (kd_idmap_put(&k->by_sid, j->call_session_id, j))
                    return 1;
            }
            jobs[i] = j;
        }
        for (int idx = 0; idx < 2; idx++) {
            k->index_off = idx == 0;
            ns[pop][idx] = run(k, jobs, n, frames, pop == 1);
        }
        for (long i = 0; i < n; i++) {
            lws_dll2_remove(&jobs[i]->place);
            free(jobs[i]);
        }
        kd_idmap_free(&k->by_req);
        kd_idmap_free(&k->by_sid);
    }
    printf("kone_match inflight=%ld connections=%ld answer_walk_ns=%.1f answer_index_ns=%.1f "
           "state_walk_ns=%.1f state_index_ns=%.1f\n",
           n, c, ns[0][0], ns[0][1], ns[1][0], ns[1][1]);
    free(jobs);
    free(k);
    return 0;
}
