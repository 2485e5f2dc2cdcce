/* kone_sub.h: the site-monitoring subscriptions of each connection (kone_sub.c), their
 * contract. Policy the call layer asks (kk_sub_gate) before it writes a call; a call parked on
 * a subscription is handed back through kd_kone.wake->sub_released (kone_int.h), never by
 * name. The connection layer's events reach it through kone_route.c (answers, +/status
 * events, a lost or restored session, the keep-alive ping's target). Loop thread only.
 *
 * Shared with kone_site.c (both keep entries per building and group): kk_bg_hash, kk_bg_key.
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
#include "kone_conn.h"
#include "kone_msg.h"

#define KK_SUB_LIFTS 32 /* lifts of a group whose mode is remembered */
#define KK_MODES_MAX 16 /* kone.lift_modes_refused entries */

typedef struct kd_kone kd_kone;
typedef struct kk_slot kk_slot; /* kone_int.h: the call layer's side of a kk_link */
typedef struct kk_job kk_job;
typedef struct kk_sub kk_sub;

#define KK_SUB_BUCKETS 64 /* per slot: subscriptions by building and group */

/* This module's configuration (kd_kone.sub_cfg), filled by kk_sub_config alone. */
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

/* What this module keeps per slot (kk_slot.sub, kone_int.h): the site-monitoring
 * subscriptions of the slot's session. Only kone_sub.c reads or writes it. */
typedef struct kk_sub_slot {
    kk_sub *subs[KK_SUB_BUCKETS];
    int n;
    lws_dll2_owner_t wq;  /* to be written (kk_sub.wlink) */
    lws_dll2_owner_t out; /* written, not answered (kk_sub.olink) */
} kk_sub_slot;

uint32_t kk_bg_hash(const char *building, const char *group); /* FNV-1a of both */
/* The job's building as KONE names it ("building:<id>"), and its group ("1" when none). */
void kk_bg_key(const kd_job *job, char *b, size_t blen, const char **g);

/* A call is written only once its connection holds a site-monitoring subscription to
 * call_state/+/+ of its building and group: KONE sends no snapshot of a call's past states,
 * so a subscription made after the call (as per-call ones must be) can miss an instant
 * cancel. Subscriptions are made on first use, answered before any call goes out under
 * them, renewed at 80 % of kone.monitor_duration_s while used, made again after every
 * reconnect, and let lapse when unused for a whole duration. */
struct kk_sub {
    kk_slot *slot;
    kk_sub *hnext;
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
    int refused_mode;         /* -1: operational; else the index in kd_kone.modes */
    lws_dll2_owner_t waiters; /* calls waiting for its answer (kk_job.wlink) */
    lws_sorted_usec_list_t sul;
};

typedef enum {
    KK_GATE_GO = 0, /* write the call now (states are followed, or cannot be) */
    KK_GATE_WAIT,   /* parked on the subscription's waiters until it is answered */
    KK_GATE_FAIL,   /* failed transiently (the subscription): why says so; no call */
    KK_GATE_REFUSE, /* KONE would refuse it (a group mode, the cached configuration):
                     * rejected, why says so; no call */
} kk_gate;
/* May the call of job j go out on slot s now? Makes or renews the subscription. */
kk_gate kk_sub_gate(kk_slot *s, kk_job *j, char *why, size_t len);
/* Marks the subscription of the job's building and group used, making it when missing
 * (an adopted call is followed without a request of its own). True when states of that
 * building and group are expected on s (subscribed or being subscribed). */
bool kk_sub_touch(kk_slot *s, const kd_job *job);
/* Makes s the home of the job's building and group when no subscription of theirs is on it:
 * an entry kk_sub_holds sees, not yet requested (kk_sub_gate asks KONE when the call is
 * written, after the configuration gate, as before). Forgotten when unused for a whole
 * kone.monitor_duration_s. */
void kk_sub_claim(kk_slot *s, const kd_job *job);
/* Does slot s hold a subscription of the job's building and group that calls may go out
 * under (made, being made, or refused for good)? *last_used: when it was last used. The
 * call layer sends a building and group's calls to the ready slot holding one (its home
 * connection, kone_call.c), so each of its states crosses one connection, not all. */
bool kk_sub_holds(const kk_slot *s, const kd_job *job, int64_t *last_used);
bool kk_sub_wanted(const kk_slot *s);                      /* a subscription waits to be written */
int kk_sub_write(kk_slot *s, kk_conn *c);                  /* 1 written, 0 none, -1 close */
bool kk_sub_answer(kk_slot *s, const kd_kone_msg *m);      /* true: m was one's answer */
void kk_sub_lift_status(kk_slot *s, const kd_kone_msg *m); /* a +/status event */
/* The active connection went down: every subscription is made again on the next one.
 * release: no connection takes over, so waiting calls go back to s->wq (to be moved). */
void kk_subs_conn_lost(kk_slot *s, bool release);
void kk_subs_session_restored(kk_slot *s);
/* A building and group this slot's session serves, for a keep-alive ping: a subscribed
 * one, else the first of kone.buildings; false when there is none. */
bool kk_sub_ping_target(const kk_slot *s, const char **building, const char **group);
void kk_subs_free(kk_slot *s);

#endif
