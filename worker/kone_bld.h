/* kone_bld.h: the building policy of the KONE client (kone_bld.c), its contract.
 *
 * What it does, per building (docs/kone-client.md; kone_bld.c's opening comment says how):
 * admission of every new job (the circuit breaker, kone_breaker.h; the token bucket,
 * kone_ratelimit.h; the adaptive concurrency of the building and of the whole worker,
 * kone_conc.h), the queue of jobs waiting for a token or for room, the pings of an open
 * circuit and of a building whose calls stall, the 429 slowdown, and what the getters of
 * kone.h read (kd_kone_building, kd_kone_buildings: kone.c's, through kk_blds_building,
 * kk_blds_each).
 *
 * What it owns: the buildings (kk_bld, opaque outside kone_bld.c: met with their first job, kept in
 * a hash table of at most KK_MAX_BUILDINGS, an idle, closed, fully recovered one forgotten when
 * room is needed), their breakers, buckets and concurrency limits, the worker's concurrency
 * limit, the pings out (all in kd_kone.blds, kk_blds below) and, per job, what kk_bld_job
 * holds (its entry, counted in n_jobs while the job lives; its breaker ticket, its place in
 * the limits, whether it waits in its building's rq). A job admitted WAIT is on its
 * building's rq (kk_bld_job.wait) and belongs to this module until it hands it back.
 *
 * Read alone: this header and the lower ones it includes are all kone_bld.c knows; it
 * includes no kone_int.h. The call layer gives it two narrow structs, each embedded in one of
 * its own: kk_blds (the whole client's, in kd_kone) and kk_bld_job (what a job shows this
 * module, in kk_job). A connection is the connection layer's kk_link.
 *
 * What it asks of the call layer (never by name: through kk_blds.ops, kk_bld_ops below, the
 * call layer's kk_wake_ops.bld): `released` (a job of an rq may go on to a slot), `refused`
 * (the circuit opened under it: finish it "circuit_open"), `wait_for_room` (a job of an rq
 * waits for room, not for a token: no rate_limited deadline), `link_down` (a ping failed
 * 1005: the building's calls out give up now), `least_loaded` (the ready connection to ping
 * on). It reads the jobs' run (building, group, outcome) and the connections' losses, and
 * writes its pings through the connection layer (kk_conn_send_owned) when the call layer's writable
 * callback asks (kk_bld_write_probe).
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
#include "kone.h" /* kd_kone_hooks (the owner's metrics), kd_kone_building_stats */
#include "kone_breaker.h"
#include "kone_conc.h"
#include "kone_conn.h"
#include "kone_msg.h"
#include "kone_ratelimit.h"
#include "kone_scope.h"

#define KK_MAX_BUILDINGS 4096 /* buildings remembered (breaker, rate limit) */
#define KK_BLD_BUCKETS 512

typedef struct kk_bld kk_bld;
typedef struct kk_blds kk_blds;
typedef struct kk_bld_job kk_bld_job;

/* The building policy's configuration (kd_kone.blds.cfg), filled by kk_bld_config alone. */
typedef struct kk_bld_cfg {
    kd_brk_cfg brk;       /* kone.breaker_* */
    double rate_per_s;    /* kone.rate_per_s (0: no limit) */
    double rate_burst;    /* kone.rate_burst */
    int rl_share_pct;     /* kone.rate_slowdown_share */
    int64_t stall_us;     /* kone.stall_probe_ms: calls without progress this long: ping */
    int64_t ping_wait_us; /* kone.request_timeout_ms: a ping unanswered this long failed */
    kd_cc_cfg cc;         /* the worker's concurrency (max: kd_cc_max_of) */
    kd_cc_cfg cc_bld;     /* a building's (max: kone.concurrency_building_max) */
} kk_bld_cfg;

/* What a job shows this module (kk_job.bj). The call layer sets run when it makes the job,
 * reads throttled and clears it when the job is released; the rest is this module's. */
struct kk_bld_job {
    const kd_run *run;   /* building, group, job id; its code and message at its end */
    kk_bld *bld;         /* its building (NULL: the table is full of busy ones) */
    lws_dll2_t wait;     /* on bld->rq while it waits there */
    bool throttled;      /* in bld->rq, waiting for a token */
    bool brk_admitted;   /* its breaker admitted it (brk_ticket): it owes a verdict */
    uint64_t brk_ticket; /* the breaker's generation when it was admitted */
    bool brk_told;       /* its verdict was told to the breaker already */
    bool cc_held;        /* holds a place in its building's and the worker's concurrency
                          * limits: from admission to its answer (kone_conc.h) */
};
/* The job goes elsewhere or ends: off its building's rq (no-op when it is not on it). */
void kk_bld_forget(kk_bld_job *j);

/* What this module asks of the call layer (kk_wake_ops.bld, kone_call.c's), never by name. */
typedef struct kk_bld_ops {
    void (*released)(kk_bld_job *j); /* a rate-limit token came: on to a slot */
    void (*refused)(kk_bld_job *j);  /* the circuit opened: finish "circuit_open" */
    /* j waits in its building's rq for room in a concurrency limit, not for a token: it is
     * not failed rate_limited, only its own deadline ends the wait */
    void (*wait_for_room)(kk_bld_job *j);
    /* building b's link is down (a ping failed 1005): each of its calls out that was accepted
     * and waits for its result or its progress gives up now, as it would when its timeout
     * ends. Returns how many calls of b are out. */
    int (*link_down)(kk_blds *bs, const kk_bld *b);
    /* the ready connection with the fewest jobs among those opened with token tok (-1: any),
     * or NULL: where a ping goes out */
    kk_link *(*least_loaded)(kk_blds *bs, int tok);
} kk_bld_ops;

/* What this module keeps for the whole client (kd_kone.blds). kone.c sets pool, hooks, scope
 * and ops once, before anything else runs. */
struct kk_blds {
    kk_bld_cfg cfg;
    kk_pool *pool;              /* its lws context (timers), jitter, exiting */
    const kd_kone_hooks *hooks; /* the owner's metrics */
    const kk_scope *scope;      /* which token serves which building (where pings go) */
    const kk_bld_ops *ops;
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
};

/* The call layer sees a building only as a pointer (kk_bld_job.bld): its entry is kone_bld.c's. */
/* Its building as the breaker names it ("building:<id>"), or the job's own building id. */
const char *kk_bld_name(const kk_bld_job *j);
/* A job waiting in some building's queue (rq), or NULL: for failing them all at shutdown. */
kk_bld_job *kk_blds_waiting(kk_blds *bs);

typedef enum { KK_ADMIT_GO = 0, KK_ADMIT_WAIT, KK_ADMIT_REFUSE } kk_admit;
/* The job's building entry (j->bld, counted in n_jobs), then its breaker and its bucket:
 * GO (place it), WAIT (put on bld->rq, for a token or for the trials of a half-open circuit
 * to decide; released through ops->released), REFUSE (circuit open: finish it
 * "circuit_open"). */
kk_admit kk_bld_admit(kk_blds *bs, kk_bld_job *j);
/* Its building's circuit is open: ms until the next ping may let calls through (0: now or
 * unknown). The job waits in RabbitMQ that long (kd_run.park_ms, kd_retry_decide). */
int64_t kk_bld_park_ms(const kk_bld_job *j);
/* May this job's request be written now (its circuit not open)? */
bool kk_bld_may_send(const kk_bld_job *j);
/* The job learned something about its building before its end: an accepted call (SUCCESS),
 * or nothing ever will (NEUTRAL: refused locally). Told once; a FAILURE at its end after a
 * SUCCESS takes the success back. */
void kk_bld_evidence(kk_bld_job *j, kd_brk_verdict v);
/* The job is finishing: tells the breaker, lets go of the entry. */
void kk_bld_job_done(kk_bld_job *j, kd_outcome o, const char *code, bool conn_lost);
void kk_bld_too_many(kk_bld_job *j); /* KONE answered 429 */
/* A ping of an open circuit answered on l (true when m was one). */
bool kk_bld_probe_answer(kk_blds *bs, const kk_link *l, const kd_kone_msg *m);
/* Writes one ping due on l: 1 written, 0 none due, -1 the connection must close. */
int kk_bld_write_probe(kk_blds *bs, const kk_link *l, kk_conn *c);
bool kk_bld_probe_wanted(const kk_blds *bs, const kk_link *l);
/* Reads every key of the building policy (kone.breaker_*, kone.rate_*, kone.concurrency_*,
 * kone.stall_probe_ms, kone.request_timeout_ms, worker.inflight); fails when
 * kone.breaker_probe_cap_ms is below kone.breaker_probe_base_ms. */
int kk_bld_config(kk_bld_cfg *c, const kd_config *cfg, kd_err *err);
/* How long an accepted call may wait for its call result: dflt, or a short while when its
 * building's circuit is open (the link is down: no result will come). */
int64_t kk_bld_result_wait_us(const kk_bld_job *j, int64_t dflt);
void kk_blds_shutdown(kk_blds *bs); /* cancel timers */
void kk_blds_free(kk_blds *bs);
/* The getters of kone.h (kd_kone_building, kd_kone_buildings), any thread: under bmu. */
bool kk_blds_building(kk_blds *bs, const char *building, kd_kone_building_stats *out);
int kk_blds_each(kk_blds *bs, void (*fn)(const kd_kone_building_stats *s, void *arg), void *arg);

#endif
