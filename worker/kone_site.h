/* kone_site.h: the cached configuration of each building group and the local check of calls
 * against it (kone_site.c), its contract. Policy the call layer asks (kk_site_gate); a call
 * parked on a fetch is handed back through kk_sites.released (the call layer's
 * kk_wake_ops.site_released), never by name. Loop thread only.
 *
 * Read alone: this header and the lower ones it includes are all kone_site.c knows; it
 * includes no kone_int.h. The call layer gives it three narrow structs, each embedded in one
 * of its own: kk_sites (the whole client's cache, in kd_kone), kk_site_slot (a connection's
 * fetches, in kk_slot) and kk_site_job (what a job shows this module, in kk_job). A job
 * parked on a fetch is handed back through kk_sites.released, never by name.
 *
 * Per worker, building and group: KONE's `common-api` config and actions, fetched on first
 * use (on the slot whose call needs them), kept kone.config_ttl_s, fetched again after a
 * refusal that contradicts them (kd_kval_contradicts). Calls wait for a fetch under way,
 * then are checked (kone_validate.h): a refused one ends `rejected` with KONE's code and
 * words, marked validated_locally, with no call. A fetch that fails (unanswered, non-2xx)
 * blocks nothing: calls go on unchecked (counted) and it is asked again after a backoff.
 */
#ifndef KD_WORKER_KONE_SITE_H
#define KD_WORKER_KONE_SITE_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kd_config.h"
#include "kd_job.h"
#include "kone.h" /* kd_kone_hooks: the owner's metrics */
#include "kone_conn.h"
#include "kone_msg.h"
#include "kone_sub.h" /* kk_gate, kk_bg */
#include "kone_validate.h"

#define KK_SITE_BUCKETS 256 /* per worker: cached configurations */
#define KK_MAX_SITES 4096   /* ... at most (unused ones are forgotten) */

typedef struct kk_site kk_site;
typedef struct kk_site_slot kk_site_slot;
typedef struct kk_site_job kk_site_job;

/* This module's configuration (kd_kone.sites.cfg), filled by kk_site_config alone. */
typedef struct kk_site_cfg {
    bool validate_locally;      /* kone.validate_locally: off, every call goes to KONE */
    int64_t config_ttl_us;      /* kone.config_ttl_s: a cached configuration's life */
    int64_t request_timeout_us; /* kone.request_timeout_ms: a fetch unanswered fails */
} kk_site_cfg;
void kk_site_config(kk_site_cfg *c, const kd_config *cfg);

/* The whole client's cache (kd_kone.sites). */
typedef struct kk_sites {
    kk_site_cfg cfg;
    kk_pool *pool;              /* its lws context (timers) */
    const kd_kone_hooks *hooks; /* the owner's metrics */
    /* the call layer's: the fetch job sj waited for ended: through the gate again */
    void (*released)(kk_site_job *sj);
    kk_site *hash[KK_SITE_BUCKETS];
    int n;
    lws_dll2_owner_t out; /* fetches written, answers due (kk_site.olink) */
} kk_sites;
void kk_sites_init(kk_sites *ss, kk_pool *pool, const kd_kone_hooks *hooks,
                   void (*released)(kk_site_job *sj));

/* A connection's side (kk_slot.site): the fetches to be written on it. */
struct kk_site_slot {
    kk_sites *sites;
    kk_link *link;       /* the connection the fetches go out on */
    lws_dll2_owner_t wq; /* to be written (kk_site.wlink) */
};
void kk_site_slot_init(kk_site_slot *s, kk_sites *sites, kk_link *link);

/* What a job shows this module (kk_job.site). The call layer sets job when it makes the job
 * and reads passed and checked; the rest is this module's. */
struct kk_site_job {
    const kd_job *job;
    const kk_bg *bg;    /* its building and group as looked up here */
    bool passed;        /* kone_site.c let its call go (checked or not): not asked again */
    bool checked;       /* ... after checking it against a cached configuration */
    kk_site_slot *slot; /* while parked: the slot it is to be written on */
    lws_dll2_t wait;    /* on a kk_site's waiters while parked */
};
/* The job goes elsewhere or ends: it no longer waits for a fetch (no-op when it does not). */
void kk_site_forget(kk_site_job *sj);

struct kk_site {
    kk_sites *sites;
    kk_site *hnext;
    uint32_t hash;                           /* kk_bg_hash(building, group) */
    char building[KD_JOB_BUILDING_MAX + 16]; /* "building:<id>" */
    char group[KD_JOB_GROUP_MAX + 1];
    kd_kval_site cfg;
    kd_kval_fresh fresh;
    kk_site_slot *slot;                    /* the slot of the fetch under way (NULL: none) */
    bool want_config, want_actions;        /* to be written on slot */
    int64_t config_req_id, actions_req_id; /* written, answer due (0: none) */
    int64_t asked_mono;                    /* the fetch began */
    int64_t sent_mono;                     /* its last frame was written */
    int64_t last_used;
    lws_dll2_t wlink;         /* on slot->wq while a frame waits to be written */
    lws_dll2_t olink;         /* on sites->out while an answer is due */
    lws_dll2_owner_t waiters; /* calls waiting for the fetch (kk_site_job.wait) */
    kk_tmr tmr;               /* the fetch's answer deadline */
};

/* May the call of job j (written on slot s) go out? GO: yes (checked, or unchecked as the
 * cache cannot tell); WAIT: parked on the fetch of its configuration; REFUSE: refused
 * locally, code and why say how (KONE's code and words). Never FAIL: a failed fetch lets the
 * call go unchecked. Off with kone.validate_locally. */
kk_gate kk_site_gate(kk_site_slot *s, kk_site_job *j, char *code, size_t code_len, char *why,
                     size_t len);
bool kk_site_wanted(const kk_site_slot *s);     /* a fetch frame waits to be written on s */
int kk_site_write(kk_site_slot *s, kk_conn *c); /* 1 written, 0 none, -1 close */
/* true: m answered a fetch (buf, len: its frame, parsed here) */
bool kk_site_answer(kk_site_slot *s, const kd_kone_msg *m, const char *buf, size_t len);
/* KONE refused a call the cache had passed: a refusal that says the configuration changed
 * makes it fetched again before the next call there. */
void kk_site_refused(kk_sites *ss, const kk_site_job *j, const char *code, const char *msg);
/* s lost its connection for good: its calls waiting for a fetch are handed back (released:
 * the call layer queues them on their slot, to be moved); a fetch not written yet on s fails
 * (its calls go on unchecked). */
void kk_sites_conn_lost(kk_site_slot *s);
void kk_sites_free(kk_sites *ss); /* timers cancelled, entries freed */

#endif
