/* kone_bld.c: what the KONE client keeps per building: its circuit breaker, its rate limit,
 * the jobs waiting for a token, and the ping of an open circuit. Its contract: kone_bld.h.
 *
 * Layer (kone_int.h): policy the call layer asks (kk_bld_admit); what it later decides for a
 * job it holds waiting goes back through kk_blds.ops (kk_wake_ops.bld), never by name. It
 * reads alone: it includes kone_bld.h and lower headers only (no kone_int.h).
 *
 * Admission (kk_bld_admit, for every new job): the breaker first (an open circuit finishes
 * the job "circuit_open" at once: no request, no token used; a half-open one whose trial
 * places are all taken holds it), then the token bucket (no token, or older jobs already
 * waiting: the job waits in the building's queue, FIFO, on a timer; the loop never blocks).
 * A waiting job still has its own deadline, and after kone.request_timeout_ms it gives up as
 * "rate_limited". How many jobs can wait is bounded by the in-flight limit the worker core
 * enforces.
 *
 * Adaptive concurrency (kone_conc.h): an admitted request also takes a place in its
 * building's and in the worker's concurrency limit, and gives it back with its answer (a
 * call accepted, an answer, a timeout; kk_bld_evidence or kk_bld_job_done), telling both
 * limits what the answer says of KONE's load. A job finding no room waits in its building's
 * queue like one waiting for a token, but not for kone.request_timeout_ms: until room is
 * made (or its own deadline). Room in the worker's limit goes to the buildings waiting for
 * it in turn (kk_blds.cc_blocked), one place at a time.
 *
 * Every admitted job tells the breaker once what it says about its building's link
 * (kd_brk_verdict_of), with the ticket it was admitted with; an accepted call tells it at
 * once (a half-open circuit then decides without waiting for a tracked call to be served),
 * and takes the success back if it then makes no progress (1005). A 429 lowers the
 * building's rate.
 *
 * While a circuit is open, its building is pinged (`common-api` ping with its buildingId
 * and the group of the last failure: KONE and kone-sim fail it with 1005 while the site
 * link is down) on the least loaded ready connection, one ping at a time, with the
 * breaker's backoff. A ping unanswered within kone.request_timeout_ms on a connection that
 * stayed up counts as failed; one that could not be sent, or whose connection went down,
 * is tried again after the base delay.
 *
 * Suspected link down (docs/failure-handling.md, "failure domains"): a building whose
 * requests are out while none of them has made progress (a call result, an answer) for
 * kone.stall_probe_ms is pinged at once, closed circuit or not (kd_brk_suspect). A ping failed
 * with the link's error 1005 opens the circuit there and then, instead of 30 s later when
 * the stuck calls time out: its waiting jobs are parked, and its calls accepted without a
 * result or a state give up now (kk_bld_ops.link_down: `unknown` without a session id to delete,
 * deleted then retried with one), so that they free the worker's places for the healthy
 * buildings. A building's own concurrency ceiling (kone.concurrency_building_max) bounds how
 * many of its requests can be out unanswered, hence stuck, when its link goes.
 *
 * Why one entry per building rather than per group: KONE's link-down (1005) is a site
 * (DTU) failure, and the building is the unit of the metrics and of the retry story. The
 * group of the last failure is kept only to aim the ping (kone-sim models links per group).
 */
#include "kone_bld.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_log.h"
#include "kd_list.h"
#include "kone_dll.h"
#include "kd_retry.h"
#include "kd_str.h"

#define BLOG(b, lv, ...)                                                                           \
    do {                                                                                           \
        kd_log_ctx lc_ = {NULL, NULL, (b)->id};                                                    \
        kd_log((lv), &lc_, __VA_ARGS__);                                                           \
    } while (0)

/* One building (kk_bld_job.bld points here while the job lives). */
struct kk_bld {
    kk_blds *bs;
    kk_bld *hnext;                          /* hash chain */
    char id[KD_JOB_BUILDING_MAX + 16];      /* "building:<id>" */
    char probe_group[KD_JOB_GROUP_MAX + 1]; /* group of the last failure: the one pinged */
    int n_jobs; /* jobs pointing here (an entry in use is never forgotten) */
    int64_t last_used;
    /* under bs->bmu */
    kd_breaker brk;
    kd_rl rl;
    kd_cc cc; /* its adaptive concurrency limit */
    uint64_t waits, refused, pings;
    /* loop thread */
    lws_dll2_owner_t rq; /* jobs waiting for a token, oldest first (kk_bld_job.wait) */
    kk_tmr tmr;
    lws_dll2_t plink;  /* on bs->probes while a ping is out */
    lws_dll2_t cclink; /* on bs->cc_blocked while its first waiting job waits for the
                        * worker's concurrency limit */
    kk_link *probe_link;
    bool probe_write;     /* to be written on probe_link */
    int64_t probe_req_id; /* written: its request id */
    int64_t probe_deadline;
    unsigned probe_losses; /* probe_link->losses when it was written */
    int64_t progress_at;   /* its requests last made progress (or the first went out) */
};

static void bld_timer(kk_tmr *tm);

static unsigned hash_of(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % KK_BLD_BUCKETS;
}

static uint64_t rnd(kk_blds *bs)
{
    return (uint64_t)kk_pool_jitter(bs->pool, (int64_t)1 << 40);
}

/* The owner's metric hooks (kd_kone_metrics), each a no-op when not given. */
static void m_concurrency(const kk_blds *bs, const char *b, int limit)
{
    if (bs->hooks->metrics.concurrency_limit)
        bs->hooks->metrics.concurrency_limit(b, limit, bs->hooks->arg);
}
static void m_circuit(const kk_blds *bs, const char *b, kd_kone_circuit from, kd_kone_circuit to)
{
    if (bs->hooks->metrics.circuit_change)
        bs->hooks->metrics.circuit_change(b, from, to, bs->hooks->arg);
}
static void m_rate_wait(const kk_blds *bs, const char *b)
{
    if (bs->hooks->metrics.rate_limit_wait)
        bs->hooks->metrics.rate_limit_wait(b, bs->hooks->arg);
}

void kk_bld_forget(kk_bld_job *j)
{
    kk_dll_detach(&j->wait);
}

/* ------------------------------------------------------------------ the table */

static kk_bld *lookup(kk_blds *bs, const char *id)
{
    for (kk_bld *b = bs->hash[hash_of(id)]; b; b = b->hnext)
        if (strcmp(b->id, id) == 0)
            return b;
    return NULL;
}

/* Nothing to remember: no job, circuit closed with no failure counted, no ping, bucket
 * full at its configured rate. */
static bool forgettable(kk_bld *b, int64_t now)
{
    int calls, fails;
    kd_brk_window(&b->brk, &b->bs->cfg.brk, now, &calls, &fails);
    return b->n_jobs == 0 && b->brk.st == KD_BRK_CLOSED && fails == 0 &&
           lws_dll2_is_detached(&b->plink) && b->rq.count == 0 && kd_rl_idle(&b->rl, now) &&
           lws_dll2_is_detached(&b->cclink) && b->cc.inflight == 0 &&
           kd_cc_limit(&b->cc) == b->bs->cfg.cc_bld.max;
}

static bool make_room(kk_blds *bs, int64_t now)
{
    kk_bld *victim = NULL;
    for (int i = 0; i < KK_BLD_BUCKETS; i++)
        for (kk_bld *b = bs->hash[i]; b; b = b->hnext)
            if (forgettable(b, now) && (!victim || b->last_used < victim->last_used))
                victim = b;
    if (!victim)
        return false;
    pthread_mutex_lock(&bs->bmu);
    KD_SLIST_UNLINK(bs->hash[hash_of(victim->id)], victim, hnext);
    bs->n--;
    pthread_mutex_unlock(&bs->bmu);
    kk_tmr_cancel(&victim->tmr);
    free(victim);
    return true;
}

static kk_bld *bld_get(kk_blds *bs, const char *building, int64_t now)
{
    char id[KD_JOB_BUILDING_MAX + 16];
    kd_kone_building_id(building, id, sizeof id);
    kk_bld *b = lookup(bs, id);
    if (b)
        return b;
    if (bs->n >= KK_MAX_BUILDINGS && !make_room(bs, now)) {
        kd_warn("kone: %d buildings in use; %s gets no circuit breaker or rate limit",
                KK_MAX_BUILDINGS, id);
        return NULL;
    }
    if (!(b = calloc(1, sizeof *b)))
        return NULL;
    b->bs = bs;
    kd_str_copy(b->id, sizeof b->id, id);
    kd_brk_init(&b->brk, now);
    kd_rl_init(&b->rl, bs->cfg.rate_per_s, bs->cfg.rate_burst, now);
    b->rl.share_pct = bs->cfg.rl_share_pct;
    kd_cc_init(&b->cc, &bs->cfg.cc_bld);
    unsigned h = hash_of(id);
    pthread_mutex_lock(&bs->bmu);
    b->hnext = bs->hash[h];
    bs->hash[h] = b;
    bs->n++;
    pthread_mutex_unlock(&bs->bmu);
    m_concurrency(bs, b->id, kd_cc_limit(&b->cc));
    return b;
}

/* ------------------------------------------------------------------ timer */

/* Jobs waiting for a token that their circuit no longer lets through: all of them while it
 * is open. */
static bool refused_while_waiting(const kk_bld *b)
{
    return b->brk.st == KD_BRK_OPEN;
}

/* The first waiting job is held by a half-open circuit whose trial places are all taken. */
static bool held(const kk_bld *b)
{
    const kd_brk_cfg *c = &b->bs->cfg.brk;
    if (b->brk.st != KD_BRK_HALF_OPEN || c->rate_pct <= 0 || !b->rq.head)
        return false;
    const kk_bld_job *j = lws_container_of(b->rq.head, kk_bld_job, wait);
    if (j->brk_admitted && j->brk_ticket == b->brk.gen)
        return false;
    return b->brk.trials_out + b->brk.trial_ok + b->brk.trial_fail >=
           (c->trials > 0 ? c->trials : 1);
}

/* Room for one more request under the building's and the worker's concurrency limits
 * (read on the loop thread, which alone writes them). */
static bool cc_room(const kk_bld *b)
{
    return kd_cc_room(&b->cc) && kd_cc_room(&b->bs->cc);
}

/* Under bmu: the job's request takes its places. The first request out starts the clock of
 * the building's progress (stalled()). */
static void cc_take(kk_bld_job *j)
{
    kk_bld *b = j->bld;
    if (b->cc.inflight == 0)
        b->progress_at = kd_mono_us();
    if (!b->brk.probing) /* the group a suspicion ping asks about */
        kd_str_copy(b->probe_group, sizeof b->probe_group, j->run->job.group_id);
    kd_cc_take(&j->bld->cc);
    kd_cc_take(&j->bld->bs->cc);
    j->cc_held = true;
}

/* Requests of the building are out and none made progress for kone.stall_probe_ms. */
static bool stalled(const kk_bld *b, int64_t now)
{
    const kk_blds *bs = b->bs;
    return bs->cfg.stall_us > 0 && bs->cfg.brk.rate_pct > 0 && b->cc.inflight > 0 &&
           now - b->progress_at >= bs->cfg.stall_us;
}

/* When the closed circuit's suspicion next needs a look (INT64_MAX: never). */
static int64_t suspicion_due(const kk_bld *b)
{
    const kk_blds *bs = b->bs;
    if (b->brk.st != KD_BRK_CLOSED || bs->cfg.stall_us <= 0 || bs->cfg.brk.rate_pct <= 0)
        return INT64_MAX;
    if (b->brk.probing)
        return b->probe_deadline;
    if (b->cc.inflight <= 0)
        return INT64_MAX;
    int64_t t = b->progress_at + bs->cfg.stall_us;
    return t > b->brk.suspect_after ? t : b->brk.suspect_after;
}

static void arm(kk_bld *b, int64_t now)
{
    kk_blds *bs = b->bs;
    int64_t due = suspicion_due(b);
    if (b->rq.count) {
        if (bs->cfg.brk.rate_pct > 0 && refused_while_waiting(b)) {
            due = now; /* finish them at once */
        } else if (held(b)) {
            /* nothing to do before a trial's verdict (record() arms it again), or the job's
             * own timer gives up */
        } else if (!cc_room(b)) {
            /* nothing to do before a request ends (cc_release arms it again); when it is the
             * worker's limit that is full, wait for its turn there */
            if (kd_cc_room(&b->cc) && lws_dll2_is_detached(&b->cclink))
                lws_dll2_add_tail(&b->cclink, &bs->cc_blocked);
            /* jobs above the limit are not failed rate_limited: they wait for room, up to
             * their own deadline (their timers see this when they fire) */
            for (lws_dll2_t *d = b->rq.head; d; d = d->next)
                bs->ops->wait_for_room(lws_container_of(d, kk_bld_job, wait));
        } else {
            pthread_mutex_lock(&bs->bmu);
            int64_t w = kd_rl_wait_us(&b->rl, now);
            pthread_mutex_unlock(&bs->bmu);
            due = now + w;
        }
    }
    if (b->brk.st == KD_BRK_OPEN) {
        int64_t p = b->brk.probing ? b->probe_deadline : b->brk.probe_at;
        if (p < due)
            due = p;
    }
    if (due == INT64_MAX) {
        kk_tmr_cancel(&b->tmr);
        return;
    }
    kk_tmr_at(&bs->pool->timers, &b->tmr, bld_timer, due > now ? due : now + 1);
}

/* KONE answered a request of the building (too_many: 429): the rate limit's window learns
 * it, and the building made progress. */
static void answered(kk_bld *b, bool too_many)
{
    kk_blds *bs = b->bs;
    int64_t now = kd_mono_us();
    pthread_mutex_lock(&bs->bmu);
    bool slowed = kd_rl_answered(&b->rl, now, too_many);
    double rate = b->rl.rate;
    b->progress_at = now;
    kd_brk_progress(&b->brk);
    pthread_mutex_unlock(&bs->bmu);
    if (slowed)
        BLOG(b, KD_LOG_INFO,
             "kone: KONE answered 429 to %d%% or more of the last calls of %s; its rate limit is "
             "now %.2f calls/s (recovering over time)",
             bs->cfg.rl_share_pct, b->id, rate);
}

/* The job's request is answered, or the job ends: its places go back, and both limits
 * learn what the answer says of KONE's load. Whoever waited for the room goes on. */
static void cc_release(kk_bld_job *j, kd_cc_signal sig)
{
    kk_bld *b = j->bld;
    if (!j->cc_held || !b)
        return;
    kk_blds *bs = b->bs;
    j->cc_held = false;
    pthread_mutex_lock(&bs->bmu);
    int b_before = kd_cc_limit(&b->cc), k_before = kd_cc_limit(&bs->cc);
    kd_cc_done(&b->cc, &bs->cfg.cc_bld, sig);
    kd_cc_done(&bs->cc, &bs->cfg.cc, sig);
    int b_after = kd_cc_limit(&b->cc), k_after = kd_cc_limit(&bs->cc);
    bool k_room = kd_cc_room(&bs->cc);
    pthread_mutex_unlock(&bs->bmu);
    if (b_after != b_before) {
        m_concurrency(bs, b->id, b_after);
        BLOG(b, KD_LOG_DEBUG, "kone: concurrency limit of %s %d -> %d (%s)", b->id, b_before,
             b_after, sig == KD_CC_DROP ? "KONE degraded" : "answered");
    }
    if (k_after != k_before)
        m_concurrency(bs, NULL, k_after);
    int64_t now = kd_mono_us();
    if (b->rq.count)
        arm(b, now);
    if (k_room && bs->cc_blocked.head) {
        /* the worker's limit has room: the building waiting longest for it goes on */
        kk_bld *w = lws_container_of(bs->cc_blocked.head, kk_bld, cclink);
        lws_dll2_remove(&w->cclink);
        kk_tmr_in(&bs->pool->timers, &w->tmr, bld_timer, 1);
    }
}

static void transition(kk_bld *b, kd_brk_state from, kd_brk_state to, const char *why)
{
    if (to == KD_BRK_OPEN)
        BLOG(b, KD_LOG_WARN,
             "kone: circuit of %s %s -> open: %s; its jobs finish circuit_open, pinging it "
             "(next ping in %" PRId64 " ms)",
             b->id, kd_brk_state_name(from), why, (b->brk.probe_at - kd_mono_us()) / 1000);
    else
        BLOG(b, KD_LOG_INFO, "kone: circuit of %s %s -> %s: %s", b->id, kd_brk_state_name(from),
             kd_brk_state_name(to), why);
    m_circuit(b->bs, b->id, (kd_kone_circuit)from, (kd_kone_circuit)to);
}

/* Tells the breaker what the call of job j says (once, or twice with retract). */
static void record(kk_bld *b, kd_brk_verdict v, const kk_bld_job *j, bool retract)
{
    kk_blds *bs = b->bs;
    const kd_run *run = j->run;
    int64_t now = kd_mono_us();
    if (v == KD_BRK_FAILURE)
        kd_str_copy(b->probe_group, sizeof b->probe_group, run->job.group_id);
    pthread_mutex_lock(&bs->bmu);
    kd_brk_state from = b->brk.st;
    int calls = 0, fails = 0;
    /* the window before this verdict, for the message if it opens the circuit: from CLOSED
     * only a failure can (kd_brk_record), so a success, every job's verdict, skips the count */
    if (from == KD_BRK_CLOSED && v == KD_BRK_FAILURE)
        kd_brk_window(&b->brk, &bs->cfg.brk, now, &calls, &fails);
    int t_ok = b->brk.trial_ok, t_fail = b->brk.trial_fail;
    bool changed = kd_brk_record(&b->brk, &bs->cfg.brk, v, j->brk_ticket, retract, now, rnd(bs));
    kd_brk_state to = b->brk.st;
    pthread_mutex_unlock(&bs->bmu);
    if (!changed) {
        if (from == KD_BRK_HALF_OPEN)
            arm(b, now); /* a trial place may be free again */
        return;
    }
    char why[256];
    if (from == KD_BRK_CLOSED)
        snprintf(why, sizeof why,
                 "%d%% or more of its last calls failed (window: %d calls within %lld ms, "
                 "%d failed of %d before this one), the last %s (%.80s)",
                 bs->cfg.brk.rate_pct, bs->cfg.brk.calls, (long long)(bs->cfg.brk.window_us / 1000),
                 fails, calls, run->error_code[0] ? run->error_code : "unanswered",
                 run->error_message);
    else
        snprintf(why, sizeof why, "trial calls: %d went through, %d failed of %d (job %s: %s)",
                 t_ok + (v == KD_BRK_SUCCESS) - retract, t_fail + (v == KD_BRK_FAILURE),
                 bs->cfg.brk.trials, run->job.job_id,
                 v == KD_BRK_SUCCESS ? "went through" : run->error_code);
    transition(b, from, to, why);
    arm(b, now);
}

/* ------------------------------------------------------------------ pings */

static void probe_clear(kk_bld *b)
{
    kk_dll_detach(&b->plink);
    b->probe_link = NULL;
    b->probe_write = false;
    b->probe_req_id = 0;
}

/* A suspicion ping failed 1005: the building's calls accepted without a result or a state
 * will get none; they give up now rather than hold the worker's places until their
 * timeouts. */
static void link_down(kk_bld *b)
{
    int n = b->bs->ops->link_down(b->bs, b);
    BLOG(b, KD_LOG_INFO, "kone: link of %s down: its %d call(s) out give up now", b->id, n);
}

static void probe_verdict(kk_bld *b, kd_brk_verdict v, const char *what)
{
    kk_blds *bs = b->bs;
    int64_t now = kd_mono_us();
    probe_clear(b);
    pthread_mutex_lock(&bs->bmu);
    kd_brk_state from = b->brk.st;
    bool changed = kd_brk_probe_done(&b->brk, &bs->cfg.brk, v, now, rnd(bs));
    kd_brk_state to = b->brk.st;
    pthread_mutex_unlock(&bs->bmu);
    if (changed)
        transition(b, from, to, what);
    if (changed && from == KD_BRK_CLOSED)
        link_down(b);
    else if (!changed)
        BLOG(b, KD_LOG_DEBUG, "kone: circuit of %s %s: %s", b->id, kd_brk_state_name(to), what);
}

/* The ping is out (kd_brk_probe_sent or kd_brk_suspect said so): on the least loaded ready
 * connection, due by now + kone.request_timeout_ms. */
static void probe_send(kk_bld *b, int64_t now)
{
    kk_blds *bs = b->bs;
    kk_link *l = bs->ops->least_loaded(bs, kk_scope_token_of(bs->scope, b->id));
    if (!l) {
        probe_verdict(b, KD_BRK_NEUTRAL, "no connection to ping it on");
        return;
    }
    b->probe_link = l;
    b->probe_write = true;
    b->probe_req_id = 0;
    b->probe_deadline = now + bs->cfg.ping_wait_us;
    lws_dll2_add_tail(&b->plink, &bs->probes);
    kk_link_want_write(l);
}

/* CLOSED: its calls made no progress for kone.stall_probe_ms: ping it (the answer decides,
 * kk_bld_probe_answer); a suspicion ping unanswered says nothing about the link. */
static void suspicion_tick(kk_bld *b, int64_t now)
{
    kk_blds *bs = b->bs;
    if (b->brk.probing) {
        if (now >= b->probe_deadline)
            probe_verdict(b, KD_BRK_NEUTRAL, "suspicion ping unanswered");
        return;
    }
    if (!stalled(b, now))
        return;
    pthread_mutex_lock(&bs->bmu);
    bool go = kd_brk_suspect(&b->brk, &bs->cfg.brk, now);
    pthread_mutex_unlock(&bs->bmu);
    if (!go)
        return;
    BLOG(b, KD_LOG_INFO,
         "kone: %d request(s) of %s out and none made progress for %" PRId64
         " ms; pinging it (its link may be down)",
         b->cc.inflight, b->id, (now - b->progress_at) / 1000);
    probe_send(b, now);
}

static void probe_tick(kk_bld *b, int64_t now)
{
    kk_blds *bs = b->bs;
    if (b->brk.st == KD_BRK_CLOSED)
        suspicion_tick(b, now);
    if (b->brk.st != KD_BRK_OPEN)
        return;
    if (b->brk.probing) {
        if (now < b->probe_deadline)
            return;
        bool written_and_up =
            b->probe_req_id && b->probe_link && b->probe_link->losses == b->probe_losses;
        probe_verdict(b, written_and_up ? KD_BRK_FAILURE : KD_BRK_NEUTRAL,
                      written_and_up ? "ping unanswered" : "ping not sent (no connection)");
        return;
    }
    if (!kd_brk_probe_due(&b->brk, now))
        return;
    pthread_mutex_lock(&bs->bmu);
    kd_brk_probe_sent(&b->brk);
    pthread_mutex_unlock(&bs->bmu);
    probe_send(b, now);
}

bool kk_bld_probe_wanted(const kk_blds *bs, const kk_link *l)
{
    for (lws_dll2_t *d = bs->probes.head; d; d = d->next) {
        kk_bld *b = lws_container_of(d, kk_bld, plink);
        if (b->probe_write && b->probe_link == l)
            return true;
    }
    return false;
}

int kk_bld_write_probe(kk_blds *bs, const kk_link *l, kk_conn *c)
{
    kk_bld *b = NULL;
    for (lws_dll2_t *d = bs->probes.head; d && !b; d = d->next) {
        kk_bld *x = lws_container_of(d, kk_bld, plink);
        if (x->probe_write && x->probe_link == l)
            b = x;
    }
    if (!b)
        return 0;
    kd_err e = {0};
    int64_t id = kk_pool_next_id(l->pool);
    char *text =
        kd_kone_msg_common("ping", b->id, b->probe_group[0] ? b->probe_group : NULL, id, &e);
    if (!text) {
        kd_error("kone: %s", e.msg);
        b->probe_write = false; /* its deadline counts it as not sent */
        return 0;
    }
    if (kk_conn_send_owned(c, text))
        return -1; /* still to be written; the connection closes */
    b->probe_write = false;
    b->probe_req_id = id;
    b->probe_losses = l->losses;
    pthread_mutex_lock(&bs->bmu);
    b->pings++;
    pthread_mutex_unlock(&bs->bmu);
    BLOG(b, KD_LOG_DEBUG, "kone: pinging %s group %s (circuit open)", b->id,
         b->probe_group[0] ? b->probe_group : "1");
    return 1;
}

bool kk_bld_probe_answer(kk_blds *bs, const kk_link *l, const kd_kone_msg *m)
{
    if (!m->has_request_id)
        return false;
    kk_bld *b = NULL;
    for (lws_dll2_t *d = bs->probes.head; d && !b; d = d->next) {
        kk_bld *x = lws_container_of(d, kk_bld, plink);
        if (x->probe_link == l && x->probe_req_id && x->probe_req_id == m->request_id)
            b = x;
    }
    if (!b)
        return false;
    char what[160];
    kd_brk_verdict v;
    if (kd_kone_status_classify(m->status) == KD_KONE_ST_OK) {
        v = KD_BRK_SUCCESS;
        snprintf(what, sizeof what, "ping answered %d; calls flow again, the next verdict decides",
                 m->status);
    } else if (b->brk.st == KD_BRK_CLOSED) {
        /* a suspicion ping: only the link's own error opens the circuit; KONE's service in
         * trouble (5xx without it, 429) says nothing about the link */
        v = !strcmp(m->error, "1005") || strstr(m->message, "1005") ? KD_BRK_FAILURE
                                                                    : KD_BRK_NEUTRAL;
        snprintf(what, sizeof what, "its calls made no progress and its ping failed %d (%.80s)",
                 m->status, m->message[0] ? m->message : "no message");
    } else {
        v = m->status == 401 || m->status == 429 ? KD_BRK_NEUTRAL : KD_BRK_FAILURE;
        snprintf(what, sizeof what, "ping answered %d (%.80s)", m->status,
                 m->message[0] ? m->message : "no message");
    }
    probe_verdict(b, v, what);
    arm(b, kd_mono_us());
    return true;
}

/* ------------------------------------------------------------------ jobs */

static void bld_timer(kk_tmr *tm)
{
    kk_bld *b = lws_container_of(tm, kk_bld, tmr);
    kk_blds *bs = b->bs;
    if (bs->pool->exiting)
        return;
    int64_t now = kd_mono_us();
    if (bs->cfg.brk.rate_pct > 0 && refused_while_waiting(b)) { /* opened under waiting jobs */
        lws_dll2_t *d, *next;
        for (d = b->rq.head; d; d = next) {
            next = d->next;
            bs->ops->refused(lws_container_of(d, kk_bld_job, wait));
        }
    }
    while (b->rq.head) {
        kk_bld_job *j = lws_container_of(b->rq.head, kk_bld_job, wait);
        pthread_mutex_lock(&bs->bmu);
        bool go = cc_room(b); /* no room: arm() waits for a request to end */
        if (go && (!j->brk_admitted || j->brk_ticket != b->brk.gen)) {
            /* held by a half-open circuit, or admitted before a transition: ask again */
            kd_brk_admission a = kd_brk_admit(&b->brk, &bs->cfg.brk, &j->brk_ticket);
            go = a == KD_BRK_GO;
            j->brk_admitted = go;
        }
        if (go)
            go = kd_rl_take(&b->rl, now);
        if (go)
            cc_take(j);
        pthread_mutex_unlock(&bs->bmu);
        if (!go)
            break;
        lws_dll2_remove(&j->wait);
        bs->ops->released(j);
    }
    probe_tick(b, now);
    arm(b, now);
}

kk_admit kk_bld_admit(kk_blds *bs, kk_bld_job *j)
{
    int64_t now = kd_mono_us();
    kk_bld *b = j->bld;
    if (!b) {
        if (!(b = bld_get(bs, j->run->job.building_id, now)))
            return KK_ADMIT_GO;
        j->bld = b;
        b->n_jobs++;
    }
    b->last_used = now;
    pthread_mutex_lock(&bs->bmu);
    /* older jobs waiting go first (FIFO): this one asks the breaker when its turn comes,
     * unless the circuit is open (refused at once) */
    kd_brk_admission a = KD_BRK_HOLD;
    bool room = cc_room(b);
    if ((b->rq.count == 0 && room) || b->brk.st == KD_BRK_OPEN)
        a = kd_brk_admit(&b->brk, &bs->cfg.brk, &j->brk_ticket);
    j->brk_admitted = a == KD_BRK_GO;
    bool go = false, first = false;
    if (a == KD_BRK_REFUSE) {
        b->refused++;
    } else {
        go = a == KD_BRK_GO && kd_rl_take(&b->rl, now);
        if (go) {
            first = b->cc.inflight == 0;
            cc_take(j);
        } else {
            b->waits++;
        }
    }
    pthread_mutex_unlock(&bs->bmu);
    if (a == KD_BRK_REFUSE)
        return KK_ADMIT_REFUSE;
    if (go && first)
        arm(b, now); /* the stall clock runs */
    if (go)
        return KK_ADMIT_GO;
    atomic_fetch_add(&bs->rate_waits, 1);
    m_rate_wait(bs, b->id);
    j->throttled = true;
    lws_dll2_add_tail(&j->wait, &b->rq);
    arm(b, now);
    return KK_ADMIT_WAIT;
}

int64_t kk_bld_result_wait_us(const kk_bld_job *j, int64_t dflt)
{
    const kk_bld *b = j->bld;
    if (!b || b->brk.st != KD_BRK_OPEN || b->bs->cfg.stall_us <= 0 || b->bs->cfg.stall_us >= dflt)
        return dflt;
    return b->bs->cfg.stall_us;
}

int kk_bld_config(kk_bld_cfg *c, const kd_config *cfg, kd_err *err)
{
    /* the values were checked against the table's bounds at load */
    c->brk.rate_pct = (int)kd_cfg_int(cfg, KD_CFG_KONE_BREAKER_FAILURE_RATE);
    c->brk.min_calls = (int)kd_cfg_int(cfg, KD_CFG_KONE_BREAKER_MIN_CALLS);
    c->brk.calls = (int)kd_cfg_int(cfg, KD_CFG_KONE_BREAKER_WINDOW_CALLS);
    c->brk.window_us = kd_cfg_int(cfg, KD_CFG_KONE_BREAKER_WINDOW_MS) * 1000;
    c->brk.trials = (int)kd_cfg_int(cfg, KD_CFG_KONE_BREAKER_TRIAL_CALLS);
    c->brk.base_us = kd_cfg_int(cfg, KD_CFG_KONE_BREAKER_PROBE_BASE_MS) * 1000;
    c->brk.cap_us = kd_cfg_int(cfg, KD_CFG_KONE_BREAKER_PROBE_CAP_MS) * 1000;
    if (c->brk.cap_us < c->brk.base_us)
        return kd_err_set(err, KD_ERR_INVALID,
                          "kone.breaker_probe_cap_ms: must be at least "
                          "kone.breaker_probe_base_ms (%lld)",
                          (long long)(c->brk.base_us / 1000));
    c->cc.max = kd_cc_max_of(cfg);
    int64_t v = kd_cfg_int(cfg, KD_CFG_KONE_CONCURRENCY_MIN);
    c->cc.min = v < c->cc.max ? (int)v : c->cc.max;
    c->cc.decrease_pct = (int)kd_cfg_int(cfg, KD_CFG_KONE_CONCURRENCY_DECREASE_PCT);
    c->stall_us = kd_cfg_int(cfg, KD_CFG_KONE_STALL_PROBE_MS) * 1000;
    c->rl_share_pct = (int)kd_cfg_int(cfg, KD_CFG_KONE_RATE_SLOWDOWN_SHARE);
    v = kd_cfg_int(cfg, KD_CFG_KONE_CONCURRENCY_BUILDING_MAX);
    c->cc_bld = c->cc;
    if (v > 0 && v < c->cc_bld.max)
        c->cc_bld.max = (int)v;
    if (c->cc_bld.min > c->cc_bld.max)
        c->cc_bld.min = c->cc_bld.max;
    c->rate_per_s = (double)kd_cfg_int(cfg, KD_CFG_KONE_RATE_PER_S);
    c->rate_burst = (double)kd_cfg_int(cfg, KD_CFG_KONE_RATE_BURST);
    c->ping_wait_us = kd_cfg_int(cfg, KD_CFG_KONE_REQUEST_TIMEOUT_MS) * 1000;
    return 0;
}

int64_t kk_bld_park_ms(const kk_bld_job *j)
{
    const kk_bld *b = j->bld;
    if (!b || b->brk.st != KD_BRK_OPEN)
        return 0;
    /* a ping out: its answer is due by its deadline; else the next one is due at probe_at */
    int64_t at = b->brk.probing ? b->probe_deadline : b->brk.probe_at;
    int64_t ms = (at - kd_mono_us()) / 1000;
    return ms > 0 ? ms : 0;
}

bool kk_bld_may_send(const kk_bld_job *j)
{
    const kk_bld *b = j->bld;
    if (!b || b->bs->cfg.brk.rate_pct <= 0)
        return true;
    return b->brk.st != KD_BRK_OPEN;
}

void kk_bld_evidence(kk_bld_job *j, kd_brk_verdict v)
{
    /* an accepted call is answered: its place goes back (tracking it costs KONE nothing) */
    if (v == KD_BRK_SUCCESS && j->cc_held && j->bld)
        answered(j->bld, false);
    cc_release(j, v == KD_BRK_SUCCESS ? KD_CC_SUCCESS : KD_CC_NEUTRAL);
    if (!j->bld || j->brk_told)
        return;
    j->brk_told = true;
    if (j->brk_admitted)
        record(j->bld, v, j, false);
}

void kk_bld_job_done(kk_bld_job *j, kd_outcome o, const char *code, bool conn_lost)
{
    kk_bld *b = j->bld;
    if (!b)
        return;
    /* its request answered (a 429 was told by kk_bld_too_many) */
    if (j->cc_held && code && strcmp(code, "429") != 0 &&
        (o == KD_OUTCOME_SUCCEEDED || o == KD_OUTCOME_REJECTED || kd_retry_code_is_status(code)))
        answered(b, false);
    cc_release(j, kd_cc_signal_of(o, code, conn_lost));
    kd_brk_verdict v = kd_brk_verdict_of(o, code, conn_lost);
    if (j->brk_admitted && (!j->brk_told || v == KD_BRK_FAILURE))
        record(b, v, j, j->brk_told); /* told already: a success taken back */
    j->bld = NULL;
    b->n_jobs--;
}

void kk_bld_too_many(kk_bld_job *j)
{
    kk_bld *b = j->bld;
    if (!b)
        return;
    answered(b, true);
    arm(b, kd_mono_us());
}

void kk_blds_shutdown(kk_blds *bs)
{
    for (int i = 0; i < KK_BLD_BUCKETS; i++)
        for (kk_bld *b = bs->hash[i]; b; b = b->hnext) {
            kk_tmr_cancel(&b->tmr);
            probe_clear(b);
        }
}

void kk_blds_free(kk_blds *bs)
{
    for (int i = 0; i < KK_BLD_BUCKETS; i++) {
        kk_bld *b = bs->hash[i];
        while (b) {
            kk_bld *next = b->hnext;
            free(b);
            b = next;
        }
        bs->hash[i] = NULL;
    }
    bs->n = 0;
}

/* ------------------------------------------------------------------ getters (any thread) */

static void fill(const kk_bld *b, kd_kone_building_stats *o, int64_t now)
{
    memset(o, 0, sizeof *o);
    kd_str_copy(o->building, sizeof o->building, b->id);
    o->circuit = (kd_kone_circuit)b->brk.st;
    o->circuit_opens = b->brk.opens;
    o->circuit_closes = b->brk.closes;
    o->circuit_refused = b->refused;
    o->pings = b->pings;
    o->rate_per_s = kd_rl_rate(&b->rl, now);
    o->rate_waits = b->waits;
    o->rate_slowdowns = b->rl.slowdowns;
    o->concurrency_limit = kd_cc_limit(&b->cc);
    o->concurrency_inflight = b->cc.inflight;
    o->concurrency_drops = b->cc.drops;
}

bool kk_blds_building(kk_blds *bs, const char *building, kd_kone_building_stats *out)
{
    if (!building)
        return false;
    char id[KD_JOB_BUILDING_MAX + 16];
    kd_kone_building_id(building, id, sizeof id);
    int64_t now = kd_mono_us();
    pthread_mutex_lock(&bs->bmu);
    kk_bld *b = lookup(bs, id);
    if (b)
        fill(b, out, now);
    pthread_mutex_unlock(&bs->bmu);
    return b != NULL;
}

int kk_blds_each(kk_blds *bs, void (*fn)(const kd_kone_building_stats *s, void *arg), void *arg)
{
    int n = 0;
    int64_t now = kd_mono_us();
    kd_kone_building_stats s;
    pthread_mutex_lock(&bs->bmu);
    for (int i = 0; i < KK_BLD_BUCKETS; i++)
        for (kk_bld *b = bs->hash[i]; b; b = b->hnext) {
            fill(b, &s, now);
            if (fn)
                fn(&s, arg);
            n++;
        }
    pthread_mutex_unlock(&bs->bmu);
    return n;
}

const char *kk_bld_name(const kk_bld_job *j)
{
    return j->bld ? j->bld->id : j->run->job.building_id;
}

kk_bld_job *kk_blds_waiting(kk_blds *bs)
{
    for (int i = 0; i < KK_BLD_BUCKETS; i++)
        for (kk_bld *b = bs->hash[i]; b; b = b->hnext)
            if (b->rq.head)
                return lws_container_of(b->rq.head, kk_bld_job, wait);
    return NULL;
}
