/* kone_int: the call layer's state (kd_kone, kk_slot, kk_job), which kone.c, kone_route.c and
 * kone_call.c share; no policy module and not the connection layer includes it.
 *
 * The layers, top to bottom; a file calls down (or sideways within its layer) by name, and
 * up only through a table of callbacks its caller gave it:
 *
 *   kone.c        public API (start/submit/ready/stop), the loop thread, the inbox; wires
 *                 the layers (kd_kone.pool.ops; blds.ops, subs.ops, sites.released from
 *                 kk_call_wake)
 *   kone_route.c  the call layer's callbacks for the connection layer (kk_conn_ops): which
 *                 module a frame belongs to, which frame is written first
 *   kone_call.c   the call layer: one job's life (placement, frames, answers, events,
 *                 timers, outcome), the index of jobs by id (kd_kone.by_req, by_sid)
 *   kone_bld.c    policy the call layer asks, per building: circuit breaker, rate limit,
 *                 adaptive concurrency, pings of an open circuit, what the getters read
 *   kone_sub.c    ... per connection and building/group: the call_state/+/+ subscription
 *   kone_site.c   ... per worker and building/group: the cached config and actions, the
 *                 local validation of calls against them (kone_validate.c)
 *   kone_conn.c   the connection layer (kone_conn.h): sockets, TLS, WebSocket, session,
 *                 keep-alive, replacement, reassembly; knows no job
 *
 * The policy modules answer the call layer about jobs they hold waiting through kk_wake_ops
 * (kk_call_wake, handed to each as kd_kone.blds.ops, subs.ops, sites.released); the
 * connection layer tells the layers above through kk_conn_ops. Below
 * them all: kone_msg (frames), kone_token (the token thread), kone_dns, kone_wsrx, idmap.
 *
 * Contracts: kone_conn.h (the connection layer), kone_bld.h, kone_sub.h and kone_site.h (the
 * policies), kone_scope.h (which token serves which building), this header for the rest
 * (kone_call.c's functions, kone_route.c's).
 *
 * The connection layer shares no struct with the layers above: its own (kk_pool, kk_link,
 * kk_conn, its configuration) are declared in kone_conn.h, and kone_conn.c includes that
 * header and lower ones only. kd_kone embeds the pool (k->pool), and each kk_slot below
 * embeds its kk_link (s->link) next to the call layer's lists; kk_slot_of finds the slot
 * again from the kk_link the connection layer's callbacks are given.
 *
 * Each layer's configuration is its own struct, filled in one place from the config table
 * (kk_pool's by kone.c, kk_call_cfg, kk_bld_cfg, kk_sub_cfg, kk_site_cfg, kk_scope).
 * kone_site.c reads alone: it includes kone_site.h and lower headers only, and sees the call
 * layer's structs through the narrow ones embedded in them (kd_kone.sites, kk_slot.site,
 * kk_job.site); kone_sub.c likewise (kd_kone.subs, kk_slot.sub, kk_job.sub), and kone_bld.c
 * (kd_kone.blds, kk_job.bj; a connection is its kk_link). No policy includes this header.
 * ops.kone_layers (tests/ops/kone_layers.sh) fails when a file calls or includes a layer
 * above its own.
 *
 * Threads: everything below except `inbox*`, `stopping`, `pool.n_ready`, the token source
 * and what `blds.bmu` guards is touched only by the loop thread. Other threads hand jobs over
 * through the inbox (mutex) and wake the loop with lws_cancel_service.
 *
 * A slot is the call layer's side of one logical connection (kk_link, kone_conn.h: a KONE
 * session, created once and resumed after every reconnect, and its two physical
 * connections): the jobs placed on it, their write queue, its subscriptions and the
 * configuration fetches to be written on it. Request ids never restart (kk_pool_next_id), so
 * they stay unique on the connection and on the session.
 *
 * A job is on exactly one placement list: k->waitq (no slot yet), slot->jobs (by
 * kk_job.place), or its building's rq (waiting for a rate-limit token, by kk_job.bj.wait). It is on
 * slot->wq while it has a frame to write (its request, or a monitor subscription). Each job has one
 * timer (kone_timer.h), never later than its earliest deadline: moved earlier when a deadline comes
 * closer, left where it is when one moves away (it then fires early and re-arms itself).
 *
 * A building (kk_bld) is kone_bld.c's: kone_bld.h states its contract.
 */
#ifndef KD_WORKER_KONE_INT_H
#define KD_WORKER_KONE_INT_H

#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kone.h"
#include "idmap.h"
#include "kone_bld.h"
#include "kone_breaker.h"
#include "kone_conn.h"
#include "kone_conc.h"
#include "kone_dns.h"
#include "kone_msg.h"
#include "kone_ratelimit.h"
#include "kone_scope.h"
#include "kone_site.h"
#include "kone_sub.h"
#include "kone_token.h"
#include "kone_validate.h"

#define KK_MAX_AUTH_RETRIES 2 /* a job re-sent after 401 at most this often */
#define KK_AFFINITY 1024      /* accepted calls remembered for cancel routing */
/* How long requests written on a connection that went down wait for the session to be
 * resumed before they may time out: KONE resends a resumed session's states this far back. */
#define KK_RESUME_WINDOW_US ((int64_t)KK_RESEND_STATE_S * 1000000)
#define KK_EARLY_N 64       /* call states kept before their call result */
#define KK_EARLY_FRAME 2048 /* ... each at most this long */

typedef struct kk_wake_ops kk_wake_ops;
typedef struct kk_slot kk_slot;
typedef struct kk_job kk_job;

/* A slot: the call layer's side of one logical connection. Its connection (kk_link: the
 * socket, the session, the keep-alive) is the connection layer's, embedded; the lists of
 * what the layers above have on that connection are here. kk_slot_of finds the slot from
 * the kk_link the connection layer hands its callbacks. */
struct kk_slot {
    kk_link link; /* the connection layer's (kone_conn.h) */
    kd_kone *k;
    int tok;               /* the token (k->tokens[tok]) its connections open with */
    lws_dll2_owner_t jobs; /* kk_job.place */
    lws_dll2_owner_t wq;   /* kk_job.wlink */
    kk_sub_slot sub;       /* kone_sub.c's: the subscriptions of this slot's session */
    kk_site_slot site;     /* kone_site.c's: configuration fetches to be written here */
};

typedef enum {
    KJ_WAIT = 0,   /* in k->waitq or slot->wq, not yet written */
    KJ_SENT,       /* request written, no answer yet */
    KJ_ACCEPTED,   /* call answered 201, waiting for its second frame */
    KJ_FOLLOW,     /* call accepted with a session id, following its state */
    KJ_CANCELLING, /* the followed call failed: its delete is written or to be written */
} kk_job_state;

typedef enum { KW_NONE = 0, KW_REQUEST, KW_DELETE } kk_want;

struct kk_job {
    kd_kone *k;
    kd_run *run;
    kk_job *spare_next; /* kept for reuse (kone_call.c job_new) */
    kk_slot *slot;      /* NULL while in k->waitq or its building's rq */
    lws_dll2_t place;   /* on k->waitq or slot->jobs (on its building's rq: bj.wait) */
    lws_dll2_t wlink;   /* on slot->wq while want != KW_NONE */
    kk_want want;
    kk_job_state st;
    kk_tmr tmr; /* its deadline while set (kk_tmr_is_set, tmr.at): see above */

    int64_t wait_until; /* mono µs: give up waiting for a connection */
    int64_t held_since; /* mono µs: admission held it back (KK_ADMIT_WAIT); 0: not held */
    int64_t expire_at;  /* mono µs: the job's own deadline (0: none) */
    int64_t req_id;     /* last request written */
    int64_t sent_mono;
    int64_t answer_deadline; /* SENT / ACCEPTED */
    unsigned losses_at;      /* slot->losses when the request was written */
    int auth_retries;
    bool unfollowed; /* its subscription was refused: states not followed */
    /* What kone_bld.c (the building policy) sees of the job (kone_bld.h): the call layer
     * sets its run, reads bld (its building, NULL: none) and throttled, and clears throttled
     * when the job is released */
    kk_bld_job bj;
    /* What kone_site.c (the cached configurations) sees of the job (kone_site.h); the call
     * layer sets its job and reads passed and checked */
    kk_site_job site;
    /* What kone_sub.c (the subscriptions) sees of the job (kone_sub.h): the call layer sets
     * its job; parked on a subscription's waiters (sub.wait) until it is answered */
    kk_sub_job sub;
    /* its building and group as both look them up (site.bg and sub.bg point here), worked out
     * once when the job is submitted */
    kk_bg bg;

    /* following an accepted call */
    int64_t call_session_id;
    int64_t accepted_mono;
    int64_t progress_deadline; /* no state change by then: no progress */
    int64_t track_deadline;
    bool decisive; /* reached being_served / served_soon / served */
    char last_state[32];
    char last_time[40];
    char note[128]; /* appended to a success message (states not followed) */
    /* cancelling a followed call that failed, before it may be retried */
    int64_t del_req_id;
    char fail_code[48];
    char fail_msg[200];
};

/* The call layer's configuration (kk_call_config, kone_call.c). */
typedef struct kk_call_cfg {
    int64_t request_timeout_us; /* kone.request_timeout_ms: an answer, a free connection */
    int64_t call_timeout_us;    /* kone.call_timeout_ms: an accepted call's progress */
    int64_t track_timeout_us;   /* kone.track_timeout_ms: a track job's whole journey */
    bool hold_group_mode; /* kone.group_mode_policy=hold: group_mode_held (transient), not final */
} kk_call_cfg;
void kk_call_config(kk_call_cfg *c, const kd_config *cfg); /* kone_call.c */

struct kd_kone {
    /* the connection layer (kone_conn.h): its configuration (kone.ws_url, kone.keepalive_s,
     * kone.max_conn_age_s, ...), its callbacks (kone_route.c's, user k), its state */
    kk_pool pool;
    /* the configuration of each layer above the connection, each filled in one place from
     * the config table: kk_call_config (and blds.cfg: kk_bld_config, subs.cfg:
     * kk_sub_config, sites.cfg: kk_site_config) */
    kk_call_cfg call_cfg;
    kd_kone_hooks hooks;

    struct lws_context *ctx;
    uint64_t dns_gen_seen; /* loop thread: resolutions seen (slots waiting are kicked) */
    /* One token per share of kone.buildings (kone_scope.h), on the slots whose tok is its
     * index. */
    kk_scope scope;
    kd_kone_tokens *tokens[KK_MAX_TOKENS];
    pthread_t thread;
    bool thread_started;

    /* shared with other threads */
    pthread_mutex_t mu;
    kd_run *inbox_head, *inbox_tail;
    bool stopping; /* under mu */

    /* loop thread only */
    bool exiting;
    uint64_t token_gen_seen[KK_MAX_TOKENS];
    lws_dll2_owner_t waitq;
    kk_slot slots[KK_MAX_SLOTS];
    /* call session id -> slot that made the call: a delete goes to the same KONE session
     * (kone-sim answers 404 for another session's call) */
    struct {
        int64_t call_session_id;
        int slot;
    } affinity[KK_AFFINITY];
    unsigned affinity_next;
    /* Jobs by the ids their frames carry, so a frame finds its job in O(1) (kone_call.c):
     * by_req holds each job's req_id and del_req_id, by_sid its call_session_id. A lookup
     * still checks the slot and the job's state, as the walk of slot->jobs it replaces did.
     * index_off: an insertion failed (out of memory): matching walks slot->jobs again. */
    kd_idmap by_req, by_sid;
    bool index_off;
    /* call states of sessions nobody follows yet: a call's first state may come before its
     * call result (the frame that names its session id); kept briefly, replayed then */
    struct {
        int64_t sid;
        int slot;
        int64_t mono;
        size_t len;
        char frame[KK_EARLY_FRAME];
    } * early; /* KK_EARLY_N entries, a ring */
    unsigned early_next;
    /* how many entries of early hold a sid of each hint (sid mod 256): a call result asks
     * whether its session has an early state, nearly always not, and a zero here says so
     * without a pass over the ring (~450 instructions a call, issue 17) */
    uint8_t early_hint[256];
    kk_job *spare_jobs; /* jobs ended, kept for reuse (at most KK_SPARE_JOBS; loop thread) */
    int n_spare_jobs;

    /* the subscriptions' configuration and what they ask of the call layer (kone_sub.h) */
    kk_subs subs;

    /* cached building configurations (kone_site.c) */
    kk_sites sites; /* its configuration, the cache, the fetches out (kone_site.h) */

    /* buildings: circuit breakers, rate limits, the worker's concurrency (kone_bld.h) */
    kk_blds blds;
};

/* The owner's metric hooks (kd_kone_metrics), each a no-op when not given. */
static inline void kk_m_request(const kd_kone *k, const char *type, int status, int64_t rtt_us)
{
    if (k->hooks.metrics.api_request)
        k->hooks.metrics.api_request(type, status, rtt_us, k->hooks.arg);
}
static inline void kk_m_connections(const kd_kone *k, int n)
{
    if (k->hooks.metrics.ws_connections)
        k->hooks.metrics.ws_connections(n, k->hooks.arg);
}
static inline void kk_m_reconnect(const kd_kone *k)
{
    if (k->hooks.metrics.ws_reconnect)
        k->hooks.metrics.ws_reconnect(k->hooks.arg);
}
static inline void kk_m_protocol_error(const kd_kone *k, int code)
{
    if (k->hooks.metrics.ws_protocol_error)
        k->hooks.metrics.ws_protocol_error(code, k->hooks.arg);
}
static inline void kk_m_circuit(const kd_kone *k, const char *b, kd_kone_circuit from,
                                kd_kone_circuit to)
{
    if (k->hooks.metrics.circuit_change)
        k->hooks.metrics.circuit_change(b, from, to, k->hooks.arg);
}
static inline void kk_m_rate_wait(const kd_kone *k, const char *b)
{
    if (k->hooks.metrics.rate_limit_wait)
        k->hooks.metrics.rate_limit_wait(b, k->hooks.arg);
}
static inline void kk_m_concurrency(const kd_kone *k, const char *b, int limit)
{
    if (k->hooks.metrics.concurrency_limit)
        k->hooks.metrics.concurrency_limit(b, limit, k->hooks.arg);
}
static inline void kk_m_local_reject(const kd_kone *k, const char *reason)
{
    if (k->hooks.metrics.local_reject)
        k->hooks.metrics.local_reject(reason, k->hooks.arg);
}
static inline void kk_m_unvalidated(const kd_kone *k)
{
    if (k->hooks.metrics.unvalidated)
        k->hooks.metrics.unvalidated(k->hooks.arg);
}

/* ---- the connection layer (kone_conn.h), seen from a slot */
static inline kk_slot *kk_slot_of(kk_link *l)
{
    return lws_container_of(l, kk_slot, link);
}
static inline const kk_slot *kk_slot_of_const(const kk_link *l)
{
    return (const kk_slot *)((const char *)l - offsetof(kk_slot, link));
}
void kk_slot_init(kd_kone *k, kk_slot *s, int idx); /* kone_call.c */
static inline void kk_slot_kick(kk_slot *s)
{
    kk_link_kick(&s->link);
}
static inline void kk_slot_want_write(kk_slot *s)
{
    kk_link_want_write(&s->link);
}
static inline bool kk_slot_ready(const kk_slot *s)
{
    return kk_link_ready(&s->link);
}
static inline kk_conn *kk_slot_active(kk_slot *s)
{
    return kk_link_active(&s->link);
}
static inline int64_t kk_slot_next_id(kk_slot *s)
{
    return kk_pool_next_id(s->link.pool);
}
static inline int64_t kk_jitter(kd_kone *k, int64_t max) /* 0..max-1 */
{
    return kk_pool_jitter(&k->pool, max);
}
/* The token that serves a building (kone_scope.h): slots with tok == it carry it; -1 when it
 * is outside every scope the worker asked for. */
static inline int kk_token_of(const kd_kone *k, const char *building_id)
{
    return kk_scope_token_of(&k->scope, building_id);
}

/* ---- kone_route.c: the call layer's callbacks for the connection layer (kk_conn_ops) */
void kk_route_ops(kk_conn_ops *ops); /* fills every member but wakeup (kone.c's) */

/* ---- kone_call.c */
/* Jobs written but not answered yet (SENT, or ACCEPTED awaiting the call result). */
int kk_slot_outstanding(kk_slot *s);
void kk_job_submit(kd_kone *k, kd_run *run); /* a new run from the inbox */
void kk_job_place_waiting(kd_kone *k);       /* a slot became ready: drain waitq */
/* Writes the job's next frame on wsi; returns -1 if the connection must close. */
int kk_job_write(kk_job *j, kk_conn *c);
/* Frames from a connection of slot s. */
void kk_on_answer(kk_slot *s, const kd_kone_msg *m); /* returns if unmatched */
void kk_on_call_result(kk_slot *s, const kd_kone_msg *m);
void kk_on_call_state(kk_slot *s, const kd_kone_msg *m);
/* The job whose request (or delete) `id` was written on s and awaits its answer, or NULL:
 * kd_kone.by_req, then the slot and the state checked. */
kk_job *kk_job_awaiting(kk_slot *s, int64_t id);
/* Is a job following the states of this call session (the cheap check before parsing)? */
bool kk_follows(kk_slot *s, int64_t session_id);
/* Slot lost its active connection for good (no session to resume): unwritten jobs go
 * elsewhere. */
void kk_jobs_move_unwritten(kk_slot *s);
/* The session was resumed (resumed=true) or replaced by a fresh one (false). */
void kk_jobs_session_restored(kk_slot *s, bool resumed);
void kk_jobs_fail_all(kd_kone *k, const char *code, const char *msg);
void kk_finish_run(kd_kone *k, kd_run *run, kd_outcome o, kd_failure_class f, const char *code,
                   const char *msg);

/* ---- kone_call.c, for kone_route.c */
/* A call state for a session nobody follows yet: kept briefly (see kd_kone.early). */
void kk_state_unmatched(kk_slot *s, const char *buf, size_t len, int64_t sid);

/* ---- kone_call.c: what the policy modules tell the call layer of the jobs they hold
 * waiting (bld->rq, a subscription's or a configuration's waiters). The call layer asks them
 * (kk_bld_admit, kk_sub_gate, kk_site_gate); they answer later through this table
 * (kone_call.c's kk_call_wake, whose parts kone.c hands each policy), never by calling up by
 * name. */
struct kk_wake_ops {
    /* kone_bld.c (through kk_blds.ops): a rate-limit token came, the circuit opened, a job
     * waits for room, a building's link is down, the connection to ping on */
    kk_bld_ops bld;
    /* kone_sub.c (through kk_subs.ops): a subscription was answered, a slot's parked calls
     * go back on its queue, is a building and group's call on a slot */
    kk_sub_ops sub;
    /* kone_site.c (through kk_sites.released): the fetch ended: through the gate again */
    void (*site_released)(kk_site_job *sj);
};
extern const kk_wake_ops kk_call_wake;

#endif
