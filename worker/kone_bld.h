/* kone_bld.h: the building policy of the KONE client (kone_bld.c), its contract.
 *
 * What it does, per building (docs/kone-client.md; kone_bld.c's opening comment says how):
 * admission of every new job (the circuit breaker, kone_breaker.h; the token bucket,
 * kone_ratelimit.h; the adaptive concurrency of the building and of the whole worker,
 * kone_conc.h), the queue of jobs waiting for a token or for room, the pings of an open
 * circuit and of a building whose calls stall, the 429 slowdown, and the getters of kone.h
 * (kd_kone_building, kd_kone_buildings, kd_kone_circuit_state, kd_kone_rate_limit_waits).
 *
 * What it owns: the buildings (kk_bld, opaque outside kone_bld.c: met with their first job, kept in
 * a hash table of at most KK_MAX_BUILDINGS, an idle, closed, fully recovered one forgotten when
 * room is needed), their breakers, buckets and concurrency limits, the worker's concurrency
 * limit, the pings out (all in kd_kone.blds, kk_blds below) and, per job, j->bp (its breaker
 * ticket, its place in the limits, whether it waits in its building's rq) and j->bld (its entry,
 * counted in n_jobs while the job lives). A job admitted WAIT is on its building's rq
 * (kk_job.place) and belongs to this module until it hands it back.
 *
 * What it asks of the call layer (never by name: through kd_kone.wake, kk_wake_ops in
 * kone_int.h): `released` (a job of an rq may go on to a slot), `refused` (the circuit opened
 * under it: finish it "circuit_open"), `link_down` (a ping failed 1005: its calls out give
 * up now), `least_loaded` (the ready slot to ping on). It reads the jobs' run (building,
 * group, outcome), the slots' jobs and losses, and writes its pings through the connection
 * layer (kk_conn_send) when the call layer's writable callback asks (kk_bld_write_probe).
 *
 * Threads: the loop thread, except what blds.bmu guards (the table's shape, each breaker,
 * bucket and limit, the counters), which the getters read from any thread.
 */
#ifndef KD_WORKER_KONE_BLD_H
#define KD_WORKER_KONE_BLD_H

#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "kd_config.h"
#include "kd_err.h"
#include "kd_job.h"
#include "kd_run.h"
#include "kone_breaker.h"
#include "kone_conc.h"
#include "kone_conn.h"
#include "kone_msg.h"
#include "kone_ratelimit.h"

#define KK_MAX_BUILDINGS 4096 /* buildings remembered (breaker, rate limit) */
#define KK_BLD_BUCKETS 512

typedef struct kd_kone kd_kone;
typedef struct kk_slot kk_slot; /* kone_int.h: the call layer's side of a kk_link */
typedef struct kk_job kk_job;
typedef struct kk_bld kk_bld;

/* The building policy's configuration (kd_kone.blds.cfg), filled by kk_bld_config alone. */
typedef struct kk_bld_cfg {
    kd_brk_cfg brk;       /* kone.breaker_* */
    double rate_per_s;    /* kone.rate_per_s (0: no limit) */
    double rate_burst;    /* kone.rate_burst */
    int rl_share_pct;     /* kone.rate_slowdown_share */
    int64_t stall_us;     /* kone.stall_probe_ms: calls without progress this long: ping */
    int64_t ping_wait_us; /* kone.request_timeout_ms: a ping unanswered this long failed */
    kd_cc_cfg cc;         /* the worker's concurrency (max: worker.inflight) */
    kd_cc_cfg cc_bld;     /* a building's (max: kone.concurrency_building_max) */
} kk_bld_cfg;

/* What this module keeps for the whole client (kd_kone.blds). */
typedef struct kk_blds {
    kk_bld_cfg cfg;
    pthread_mutex_t bmu; /* the table's shape; breaker, bucket and counters */
    bool bmu_init;
    kk_bld *hash[KK_BLD_BUCKETS];
    int n;
    lws_dll2_owner_t probes; /* buildings with a ping out (kk_bld.plink) */
    /* adaptive concurrency of the whole worker (under bmu); buildings whose next waiting
     * job waits for room in it, in turn (kk_bld.cclink) */
    kd_cc cc;
    lws_dll2_owner_t cc_blocked;
    atomic_uint_fast64_t rate_waits;
} kk_blds;

/* The call layer sees a building only as this pointer (kk_job.bld): its entry is kone_bld.c's. */
/* Its building as the breaker names it ("building:<id>"), or the job's own building id. */
const char *kk_bld_name(const kk_job *j);
/* A job waiting in some building's queue (rq), or NULL: for failing them all at shutdown. */
kk_job *kk_blds_waiting(kd_kone *k);

typedef enum { KK_ADMIT_GO = 0, KK_ADMIT_WAIT, KK_ADMIT_REFUSE } kk_admit;
/* The job's building entry (j->bld, counted in n_jobs), then its breaker and its bucket:
 * GO (place it), WAIT (put on bld->rq, for a token or for the trials of a half-open circuit
 * to decide; released through kd_kone.wake->released), REFUSE (circuit open: finish it
 * "circuit_open"). */
kk_admit kk_bld_admit(kk_job *j);
/* Its building's circuit is open: ms until the next ping may let calls through (0: now or
 * unknown). The job waits in RabbitMQ that long (kd_run.park_ms, kd_retry_decide). */
int64_t kk_bld_park_ms(const kk_job *j);
/* May this job's request be written now (its circuit not open)? */
bool kk_bld_may_send(const kk_job *j);
/* The job learned something about its building before its end: an accepted call (SUCCESS),
 * or nothing ever will (NEUTRAL: refused locally). Told once; a FAILURE at its end after a
 * SUCCESS takes the success back. */
void kk_bld_evidence(kk_job *j, kd_brk_verdict v);
/* The job is finishing: tells the breaker, lets go of the entry. */
void kk_bld_job_done(kk_job *j, kd_outcome o, const char *code, bool conn_lost);
void kk_bld_too_many(kk_job *j); /* KONE answered 429 */
/* A ping of an open circuit answered on s (true when m was one). */
bool kk_bld_probe_answer(kk_slot *s, const kd_kone_msg *m);
/* Writes one ping due on s: 1 written, 0 none due, -1 the connection must close. */
int kk_bld_write_probe(kk_slot *s, kk_conn *c);
bool kk_bld_probe_wanted(const kk_slot *s);
/* Reads every key of the building policy (kone.breaker_*, kone.rate_*, kone.concurrency_*,
 * kone.stall_probe_ms, kone.request_timeout_ms, worker.inflight); fails when
 * kone.breaker_probe_cap_ms is below kone.breaker_probe_base_ms. */
int kk_bld_config(kk_bld_cfg *c, const kd_config *cfg, kd_err *err);
/* How long an accepted call may wait for its call result: dflt, or a short while when its
 * building's circuit is open (the link is down: no result will come). */
int64_t kk_bld_result_wait_us(const kk_job *j, int64_t dflt);
void kk_blds_shutdown(kd_kone *k); /* cancel timers */
void kk_blds_free(kd_kone *k);

#endif
