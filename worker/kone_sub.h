/* kone_sub.h: the site-monitoring subscriptions of each connection (kone_sub.c), their
 * contract. Policy the call layer asks (kk_sub_gate) before it writes a call; a call parked on
 * a subscription is handed back through kk_subs.ops (the call layer's kk_wake_ops.sub),
 * never by name. The connection layer's events reach it through kone_route.c (answers,
 * +/status events, a lost or restored session, the keep-alive ping's target). Loop thread
 * only.
 *
 * Read alone: this header and the lower ones it includes are all kone_sub.c knows; it
 * includes no kone_int.h. The call layer gives it three narrow structs, each embedded in one
 * of its own: kk_subs (the whole client's, in kd_kone), kk_sub_slot (a connection's
 * subscriptions, in kk_slot) and kk_sub_job (what a job shows this module, in kk_job). What
 * it needs of the call layer's jobs (hand a parked call back, put one back on its slot's
 * queue, is a call of a building and group on a slot) it asks through kk_sub_ops.
 *
 * Shared with kone_site.c (both keep entries per building and group): kk_bg_hash, kk_bg.
 */
#ifndef KD_WORKER_KONE_SUB_H
#define KD_WORKER_KONE_SUB_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kd_config.h"
#include "kd_err.h"
#include "kd_job.h"
#include "kone.h" /* kd_kone_hooks: the owner's metrics */
#include "kone_conn.h"
#include "kone_msg.h"
#include "kone_scope.h"

#define KK_SUB_LIFTS 32 /* lifts of a group whose mode is remembered */
#define KK_MODES_MAX 16 /* kone.lift_modes_refused entries */

typedef struct kk_sub kk_sub;
typedef struct kk_subs kk_subs;
typedef struct kk_sub_slot kk_sub_slot;
typedef struct kk_sub_job kk_sub_job;

/* A job's building and group as kone_sub.c and kone_site.c key their entries ("building:<id>",
 * group "1" when none), with their hash: worked out once per job (kk_bg_init, when the job is
 * submitted) instead of at each of the five or six look-ups a call makes (issue 17). The
 * entries keep the hash too, so a look-up compares it before the texts. Points into itself or
 * the job: not copied or moved. */
typedef struct kk_bg {
    const char *building; /* "building:<id>": the job's own text when it has the prefix, or buf */
    const char *group;    /* the job's, or "1" */
    uint32_t hash;        /* kk_bg_hash(building, group) */
    char buf[KD_JOB_BUILDING_MAX + 16];
} kk_bg;
void kk_bg_init(kk_bg *k, const kd_job *job);

#define KK_SUB_BUCKETS 64        /* per slot, at first: subscriptions by building and group */
#define KK_SUB_BUCKETS_MAX 65536 /* what the table grows to at most (kone_sub.c, grow) */

/* This module's configuration (kd_kone.subs.cfg), filled by kk_sub_config alone. */
typedef struct kk_sub_cfg {
    int monitor_duration_s;     /* kone.monitor_duration_s: a subscription's life at KONE */
    int64_t request_timeout_us; /* kone.request_timeout_ms: a subscription unanswered fails */
    struct {
        int64_t code;
        char name[16];
    } modes[KK_MODES_MAX]; /* kone.lift_modes_refused */
    int n_modes;
    char sub_name[48]; /* payload.sub of our subscriptions (KONE: unique per subscriber) */
} kk_sub_cfg;
/* Reads kone.monitor_duration_s, kone.request_timeout_ms and kone.lift_modes_refused
 * ("code:NAME,code:NAME": fails on anything else); names the subscriber after the process. */
int kk_sub_config(kk_sub_cfg *c, const kd_config *cfg, kd_err *err);

typedef enum {
    KK_GATE_GO = 0, /* write the call now (states are followed, or cannot be) */
    KK_GATE_WAIT,   /* parked on the subscription's waiters until it is answered */
    KK_GATE_FAIL,   /* failed transiently (the subscription): why says so; no call */
    KK_GATE_REFUSE, /* KONE would refuse it (a group mode, the cached configuration):
                     * rejected, why says so; no call */
} kk_gate;

/* What a job shows this module (kk_job.sub). The call layer sets job when it makes the job;
 * wait is this module's. */
struct kk_sub_job {
    const kd_job *job;
    const kk_bg *bg; /* its building and group as looked up here */
    lws_dll2_t wait; /* on a kk_sub's waiters while parked */
};
/* The job goes elsewhere or ends: it no longer waits for a subscription (no-op when it does
 * not). */
void kk_sub_forget(kk_sub_job *sj);

/* What this module asks of the call layer (kk_wake_ops.sub, kone_call.c's), never by name. */
typedef struct kk_sub_ops {
    /* the subscription sj waited for was answered: the call goes on (GO) or fails (FAIL, why;
     * GO with a why: refused for good, the call goes out with its states unfollowed) */
    void (*released)(kk_sub_job *sj, kk_gate g, const char *why);
    /* s lost its connection for good: sj, parked on one of its subscriptions, goes back on
     * s's write queue (to be moved elsewhere with the other unwritten calls) */
    void (*requeue)(kk_sub_slot *s, kk_sub_job *sj);
    /* is a call of this building ("building:<id>") and group placed on s? */
    bool (*has_job)(kk_sub_slot *s, const char *building, const char *group);
} kk_sub_ops;

/* The whole client's (kd_kone.subs). kone.c sets pool, hooks, scope and ops once, before
 * anything else runs. */
struct kk_subs {
    kk_sub_cfg cfg;
    kk_pool *pool;              /* its lws context (timers); n_links: the slots in use */
    const kd_kone_hooks *hooks; /* the owner's metrics */
    const kk_scope *scope;      /* which token serves which building (ping targets) */
    const kk_sub_ops *ops;
    kk_sub_slot *slots[KK_MAX_SLOTS]; /* by link index: another slot's subscriptions */
};

/* A connection's side (kk_slot.sub): the site-monitoring subscriptions of its session. Only
 * kone_sub.c reads or writes it, but for tok, which the call layer sets. */
struct kk_sub_slot {
    kk_subs *all;
    kk_link *link; /* the connection the subscriptions are made on */
    int tok;       /* the token (kk_scope) its connections open with */
    kk_sub **hash; /* nb chains: hash0 until the subscriptions outnumber it twice */
    unsigned nb;   /* a power of two */
    kk_sub *hash0[KK_SUB_BUCKETS];
    int n;
    lws_dll2_owner_t wq;  /* to be written (kk_sub.wlink) */
    lws_dll2_owner_t out; /* written, not answered (kk_sub.olink) */
};
void kk_sub_slot_init(kk_sub_slot *s, kk_subs *all, kk_link *link); /* registers it */

uint32_t kk_bg_hash(const char *building, const char *group); /* FNV-1a of both */

/* A call is written only once its connection holds a site-monitoring subscription to
 * call_state/+/+ of its building and group: KONE sends no snapshot of a call's past states,
 * so a subscription made after the call (as per-call ones must be) can miss an instant
 * cancel. Subscriptions are made on first use, answered before any call goes out under
 * them, renewed at 80 % of kone.monitor_duration_s while used, made again after every
 * reconnect, and let lapse when unused for a whole duration. */
struct kk_sub {
    kk_sub_slot *slot;
    kk_sub *hnext;
    uint32_t hash;                           /* kk_bg_hash(building, group) */
    char building[KD_JOB_BUILDING_MAX + 16]; /* "building:<id>" */
    char group[KD_JOB_GROUP_MAX + 1];
    enum { KS_NEW = 0, KS_ACTIVE, KS_REFUSED } st;
    bool final;       /* KS_REFUSED with a 4xx: calls go on without states */
    lws_dll2_t wlink; /* on slot->sub.wq: to be written */
    lws_dll2_t olink; /* on slot->sub.out: written, not answered */
    int64_t req_id, sent_mono;
    int64_t expires;   /* KS_ACTIVE: the subscription lapses at KONE */
    int64_t renew_at;  /* KS_ACTIVE: write the renewal */
    int64_t retry_at;  /* KS_REFUSED: not asked again before */
    int64_t last_used; /* a call written or followed under it */
    int refusals;      /* in a row: the retry backoff */
    char why[160];     /* KS_REFUSED: the answer */
    /* the group's lifts as their monitor-lift-status events last said (+/status) */
    struct {
        char lift[32];
        int64_t mode;
    } lifts[KK_SUB_LIFTS];
    int n_lifts;
    int refused_mode;         /* -1: operational; else the index in kk_subs.cfg.modes */
    lws_dll2_owner_t waiters; /* calls waiting for its answer (kk_sub_job.wait) */
    kk_tmr tmr;
};

/* May the call of job j go out on slot s now? Makes or renews the subscription. */
kk_gate kk_sub_gate(kk_sub_slot *s, kk_sub_job *j, char *why, size_t len);
/* Marks the subscription of the job's building and group used, making it when missing
 * (an adopted call is followed without a request of its own). True when states of that
 * building and group are expected on s (subscribed or being subscribed). */
bool kk_sub_touch(kk_sub_slot *s, const kk_bg *bg);
/* Makes s the home of the job's building and group when no subscription of theirs is on it:
 * an entry kk_sub_holds sees, not yet requested (kk_sub_gate asks KONE when the call is
 * written, after the configuration gate, as before). Forgotten when unused for a whole
 * kone.monitor_duration_s. */
void kk_sub_claim(kk_sub_slot *s, const kk_bg *bg);
/* Does slot s hold a subscription of the job's building and group that calls may go out
 * under (made, being made, or refused for good)? *last_used: when it was last used. The
 * call layer sends a building and group's calls to the ready slot holding one (its home
 * connection, kone_call.c), so each of its states crosses one connection, not all. */
bool kk_sub_holds(const kk_sub_slot *s, const kk_bg *bg, int64_t *last_used);
bool kk_sub_wanted(const kk_sub_slot *s);                 /* a subscription waits to be written */
int kk_sub_write(kk_sub_slot *s, kk_conn *c);             /* 1 written, 0 none, -1 close */
bool kk_sub_answer(kk_sub_slot *s, const kd_kone_msg *m); /* true: m was one's answer */
void kk_sub_lift_status(kk_sub_slot *s, const kd_kone_msg *m); /* a +/status event */
/* The active connection went down: every subscription is made again on the next one.
 * release: no connection takes over, so waiting calls go back to their slot's queue
 * (kk_sub_ops.requeue, to be moved). */
void kk_subs_conn_lost(kk_sub_slot *s, bool release);
void kk_subs_session_restored(kk_sub_slot *s);
/* A building and group this slot's session serves, for a keep-alive ping: a subscribed
 * one, else the first of kone.buildings; false when there is none. */
bool kk_sub_ping_target(const kk_sub_slot *s, const char **building, const char **group);
void kk_subs_free(kk_sub_slot *s);

#endif
