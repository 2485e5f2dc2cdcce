/* kone_call.c: one job's life on the KONE client, from placement to outcome.
 * Layer (kone_int.h): the call layer. kone.c hands it runs, kone_route.c the frames of the
 * connection layer; it asks the policies below (kk_bld_admit, kk_sub_gate, kk_site_gate) and
 * writes through the connection layer; the policies answer through kk_call_wake.
 *
 *   WAIT ---write---> SENT ---2xx (call)---> ACCEPTED ---success, session_id---> FOLLOW
 *     |                 |  \--2xx (hold_open, cancel)--> succeeded
 *     |                 |--401--> WAIT again on a fresh connection (token refreshed)
 *     |                 |--4xx--> rejected (final)      --429/5xx/timeout--> failed
 *     |                                     ACCEPTED --success=false--> rejected / failed(1005)
 *     |                                     ACCEPTED --no result in kone.call_timeout_ms-->
 *     |                                              failed 1005 (site link down: KONE and
 *     |                                              kone-sim send nothing after the 201)
 *     \--no connection in kone.request_timeout_ms--> failed; job deadline first--> expired
 *   A call is written only under its connection's call_state/+/+ subscription of its
 *   building and group (kone_sub.c), so no state of it can come before the subscription.
 *   FOLLOW: its states, matched by session id (a state that comes before the call result
 *   that names the session is kept briefly and replayed then):
 *     cancelled --> rejected (code = cancel_reason)
 *     being_served / served_soon / served --> succeeded (untracked)
 *     tracked: every state change goes to hooks.call_event; served --> succeeded
 *     no state change for kone.call_timeout_ms (+ the call's delay) before the first
 *       decisive state --> failed, code 1005 (KONE's "building link down": the call
 *       stays 'created')
 *     tracked for kone.track_timeout_ms --> succeeded with code track_timeout
 *
 * Before a job is placed, its building admits it (kone_bld.c): an open circuit finishes it
 * "circuit_open" at once, a rate limit without a token holds it in the building's queue
 * (WAIT, "rate_limited" after kone.request_timeout_ms). Its outcome is told to the breaker.
 *
 * A connection that goes down does not time out what was written on it: requests SENT or
 * ACCEPTED and calls followed on that slot wait for the session to be resumed (up to
 * KK_RESUME_WINDOW_US after the loss), and once it is, get at least kone.request_timeout_ms
 * more for a late answer or a resent state. Only then is the request transient ("timeout",
 * "result_lost", ...); a session that cannot be resumed fails them "session_lost" at once.
 *
 * A job goes to the home slot of its building and group (the ready one already subscribed to
 * their call states), else to the least loaded ready slot (home_or_least_loaded). A cancel
 * (delete) goes to the slot whose KONE session made the call when this worker made it
 * (remembered for the last KK_AFFINITY accepted calls): sessions own their calls.
 *
 * Once KONE accepted a call (201), it is never simply retried: a second call would be a
 * second lift for one passenger. A followed call that fails (no progress: the site link is
 * down; tracking lapsed before a decisive state) is cancelled first:
 *     FOLLOW --fails--> CANCELLING (delete for its session_id) --2xx--> failed (transient:
 *     retried, the call is gone) | --anything else or no answer--> unknown (final)
 * A call accepted without a session id to cancel (no call result, the session lost) ends
 * `unknown` at once: "the call may have been placed".
 *
 * An adopted job (run->adopt: its call was accepted on a worker that is gone, the ledger has
 * its session id) is not called: it is followed from its session id like any accepted call.
 *
 * What is final and what is retried is decided here and nowhere else (see
 * docs/kone-client.md): KONE's refusals are final, anything that may go better on
 * another attempt (timeouts, 429, 5xx, lost sessions, link down) is transient.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_list.h"
#include "kd_log.h"
#include "kd_str.h"
#include "kone_int.h"
#include "kone_jw.h"
#include "kone_dll.h"

#define NEVER INT64_MAX

static void job_timer(kk_tmr *tm);

/* KONE's callType for a job's request, the label of kone_api_request_duration_seconds. */
static const char *call_type(kd_op op)
{
    return op == KD_OP_CANCEL ? "delete" : op == KD_OP_HOLD_OPEN ? "hold_open" : "action";
}

/* How long a call may go without a state change before it counts as stuck: the call's own
 * delay is added, since KONE holds a delayed call in being_allocated for that long. */
static int64_t progress_window_us(const kk_job *j)
{
    int64_t w = j->k->call_cfg.call_timeout_us;
    if (j->run->job.has_delay && j->run->job.delay > 0)
        w += (int64_t)j->run->job.delay * 1000000;
    return w;
}

static kd_log_ctx log_ctx(const kd_run *run)
{
    kd_log_ctx c = {run->job.job_id, run->job.trace_id, run->job.building_id};
    return c;
}

/* ------------------------------------------------------------------ finishing */

void kk_finish_run(kd_kone *k, kd_run *run, kd_outcome o, kd_failure_class f, const char *code,
                   const char *msg)
{
    kd_run_finish(run, o, f, code, "%s", msg ? msg : "");
    kd_log_ctx lc = log_ctx(run);
    kd_log(KD_LOG_DEBUG, &lc, "kone: %s %s%s%s%s%s", kd_op_name(run->job.op), kd_outcome_name(o),
           code && *code ? " " : "", code ? code : "", msg && *msg ? ": " : "", msg ? msg : "");
    if (k->hooks.done)
        k->hooks.done(run, k->hooks.arg);
}

static void unlink_job(kk_job *j)
{
    kk_tmr_cancel(&j->tmr);
    kk_dll_detach(&j->wlink);
    kk_sub_forget(&j->sub);
    kk_site_forget(&j->site);
    kk_bld_forget(&j->bj);
    kk_dll_detach(&j->place);
    j->want = KW_NONE;
}

/* ---- the index of jobs by id (kd_kone.by_req, by_sid): every write of req_id, del_req_id
 * and call_session_id goes through set_id, so the index holds exactly the ids the jobs do */
static void set_id(kk_job *j, kd_idmap *m, int64_t *field, int64_t id)
{
    kd_kone *k = j->k;
    if (*field)
        kd_idmap_del(m, *field, j);
    *field = id;
    if (id && !k->index_off && kd_idmap_put(m, id, j)) {
        kd_warn("kone: out of memory indexing jobs; frames are matched by walking the jobs");
        k->index_off = true;
    }
}

static void unindex(kk_job *j)
{
    set_id(j, &j->k->by_req, &j->req_id, 0);
    set_id(j, &j->k->by_req, &j->del_req_id, 0);
    set_id(j, &j->k->by_sid, &j->call_session_id, 0);
}

static void finish(kk_job *j, kd_outcome o, kd_failure_class f, const char *code, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

/* Did the job's slot lose its connection since the job's request was written? (Its answer or
 * its call result may have gone down with it.) */
static bool lost_since(const kk_job *j)
{
    return j->slot && j->slot->link.losses != j->losses_at;
}

/* Jobs ended are kept for reuse (kd_list.h, KD_SPARE_TAKE): calls come in clumps. Loop
 * thread only. */
#define KK_SPARE_JOBS 64

static kk_job *job_new(kd_kone *k)
{
    kk_job *j;
    KD_SPARE_TAKE(k->spare_jobs, k->n_spare_jobs, spare_next, j);
    return j;
}

static void job_free(kd_kone *k, kk_job *j)
{
    KD_SPARE_GIVE(k->spare_jobs, k->n_spare_jobs, KK_SPARE_JOBS, spare_next, j);
}

static void finish(kk_job *j, kd_outcome o, kd_failure_class f, const char *code, const char *fmt,
                   ...)
{
    char msg[256], code_copy[sizeof j->fail_code];
    va_list ap;
    va_start(ap, fmt);
    /* va_start is the line above; clang-analyzer (no path given) says otherwise. */
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): false positive, see above
    kd_str_vformat(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* the code may live in the job itself (fail_code of a cancelled call): copy it before
     * the job is freed */
    kd_str_copy(code_copy, sizeof code_copy, code ? code : "");
    code = code_copy;
    unlink_job(j);
    kd_kone *k = j->k;
    kd_run *run = j->run;
    unindex(j);
    if (o == KD_OUTCOME_REJECTED && j->site.checked)
        kk_site_refused(&k->sites, &j->site, code, msg); /* its configuration may have changed */
    if (j->bj.bld) {
        /* the breaker reads the run's code and message: set them first */
        kd_run_finish(run, o, f, code, "%s", msg);
        kk_bld_job_done(&j->bj, o, code, lost_since(j));
    }
    job_free(k, j);
    kk_finish_run(k, run, o, f, code, msg);
}

/* The call goes out without its states followed (its subscription was refused for good):
 * once accepted, it succeeds with this note. */
static void set_unfollowed(kk_job *j, const char *why)
{
    j->unfollowed = true;
    snprintf(j->note, sizeof j->note, "call state not followed: %s", why);
}

static void succeed(kk_job *j, const char *code, const char *msg)
{
    if (!j->note[0]) { /* the usual case: no format to run */
        finish(j, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, code, "%s", msg ? msg : "");
        return;
    }
    char text[256];
    snprintf(text, sizeof text, "%s%s%s", msg ? msg : "", msg && *msg ? "; " : "", j->note);
    finish(j, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, code, "%s", text);
}

/* ------------------------------------------------------------------ placement, timers */

static void rearm(kk_job *j)
{
    int64_t due = NEVER;
    switch (j->st) {
    case KJ_WAIT:
        due = j->wait_until;
        if (j->expire_at && j->expire_at < due)
            due = j->expire_at;
        break;
    case KJ_SENT:
    case KJ_ACCEPTED:
    case KJ_CANCELLING: due = j->answer_deadline; break;
    case KJ_FOLLOW:
        if (!j->decisive && j->progress_deadline < due)
            due = j->progress_deadline;
        if (j->run->job.track && j->track_deadline < due)
            due = j->track_deadline;
        break;
    }
    if (due == NEVER) {
        kk_tmr_cancel(&j->tmr);
        return;
    }
    /* Armed for this deadline or an earlier one: left as it is. Most frames of a followed
     * call move a deadline later (its progress) or leave it: moving the timer each time cost
     * a walk of the loop's sorted timer list and a clock read per frame. Firing early costs
     * one job_timer, which finds nothing due and re-arms to the deadline. */
    if (kk_tmr_is_set(&j->tmr) && j->tmr.at <= due)
        return;
    int64_t now = kd_mono_us();
    kk_tmr_at(&j->k->pool.timers, &j->tmr, job_timer, due > now ? due : now + 1);
}

/* Queues a frame for the job on its slot, behind the others. */
static void want(kk_job *j, kk_want w)
{
    kk_slot *s = j->slot;
    if (!s)
        return;
    kk_dll_detach(&j->wlink);
    kk_sub_forget(&j->sub);
    kk_site_forget(&j->site);
    j->want = w;
    lws_dll2_add_tail(&j->wlink, &s->wq);
    kk_slot_want_write(s);
}

void kk_slot_init(kd_kone *k, kk_slot *s, int idx)
{
    memset(s, 0, sizeof *s);
    s->k = k;
    kk_link_init(&k->pool, &s->link, idx);
    kk_sub_slot_init(&s->sub, &k->subs, &s->link);
    kk_site_slot_init(&s->site, &k->sites, &s->link);
}

int kk_slot_outstanding(kk_slot *s)
{
    int n = 0;
    for (lws_dll2_t *d = s->jobs.head; d; d = d->next) {
        kk_job *j = lws_container_of(d, kk_job, place);
        n += j->st == KJ_SENT || j->st == KJ_ACCEPTED || j->st == KJ_CANCELLING;
    }
    return n;
}

static void remember_affinity(kd_kone *k, int64_t call_session_id, int slot)
{
    unsigned i = k->affinity_next++ % KK_AFFINITY;
    k->affinity[i].call_session_id = call_session_id;
    k->affinity[i].slot = slot;
}

/* The slot whose session made call `sid` (for a delete), if it is ready. */
static kk_slot *affine_slot(kd_kone *k, int64_t sid)
{
    if (sid <= 0)
        return NULL;
    for (unsigned i = 0; i < KK_AFFINITY; i++)
        if (k->affinity[i].call_session_id == sid) {
            kk_slot *s = &k->slots[k->affinity[i].slot];
            return kk_slot_ready(s) ? s : NULL;
        }
    return NULL;
}

/* The ready slot with the fewest jobs among those opened with token tok (-1: any), or NULL.
 * kone_bld.c's pings ask it too (kk_wake_ops.bld.least_loaded). */
static kk_slot *slot_least_loaded(kd_kone *k, int tok)
{
    kk_slot *best = NULL;
    for (int i = 0; i < k->pool.n_links; i++) {
        kk_slot *s = &k->slots[i];
        if ((tok < 0 || s->tok == tok) && kk_slot_ready(s) &&
            (!best || s->jobs.count < best->jobs.count))
            best = s;
    }
    return best;
}

/* The ready slot with the fewest jobs among those whose token covers the job's building. */
static kk_slot *least_loaded(kk_job *j)
{
    return slot_least_loaded(j->k, kk_token_of(j->k, j->run->job.building_id));
}

/* Where a job goes: the home of its building and group, the ready slot that already holds
 * their call_state/+/+ subscription (the one used last when two do, after a failover), so
 * each state KONE sends crosses one connection, not every one (each frame received costs
 * TLS and WebSocket framing; docs/performance.md). A building and group without a ready home
 * goes to the least loaded ready slot, which subscribes before its first call goes out
 * (kk_sub_gate), so different buildings still spread over the connections. A hot building
 * is not spilled over a second connection: that would double its frames again. */
static kk_slot *home_or_least_loaded(kk_job *j)
{
    kd_kone *k = j->k;
    int tok = kk_token_of(k, j->run->job.building_id);
    kk_slot *home = NULL;
    int64_t home_used = 0, used;
    for (int i = 0; i < k->pool.n_links; i++) {
        kk_slot *s = &k->slots[i];
        if ((tok < 0 || s->tok == tok) && kk_slot_ready(s) &&
            kk_sub_holds(&s->sub, &j->bg, &used) && (!home || used > home_used)) {
            home = s;
            home_used = used;
        }
    }
    return home ? home : slot_least_loaded(k, tok);
}

/* Following an accepted call: its states come under the slot's subscription of its building
 * and group (for an adopted call, made now: states before it are not seen, and the progress
 * window bounds the wait). */
static void start_follow(kk_job *j)
{
    int64_t now = kd_mono_us();
    j->st = KJ_FOLLOW;
    j->accepted_mono = now;
    j->progress_deadline = now + progress_window_us(j);
    j->track_deadline = now + j->k->call_cfg.track_timeout_us;
    kk_sub_touch(&j->slot->sub, &j->bg);
    rearm(j);
}

static void job_refuse(kk_job *j);

static void place(kk_job *j)
{
    kd_kone *k = j->k;
    kk_slot *s = NULL;
    if (j->run->job.op == KD_OP_CANCEL)
        s = affine_slot(k, j->run->job.session_id);
    if (!s)
        s = home_or_least_loaded(j);
    j->st = KJ_WAIT;
    j->slot = s;
    if (!s) {
        lws_dll2_add_tail(&j->place, &k->waitq);
    } else if (j->run->adopt) {
        lws_dll2_add_tail(&j->place, &s->jobs);
        start_follow(j);
        return;
    } else {
        lws_dll2_add_tail(&j->place, &s->jobs);
        /* the slot becomes the home of the call's building and group now, not when the call
         * is written: a burst of a new building's calls all lands on it */
        if (j->run->job.op == KD_OP_CALL && !j->unfollowed)
            kk_sub_claim(&s->sub, &j->bg);
        want(j, KW_REQUEST);
    }
    rearm(j);
}

void kk_job_submit(kd_kone *k, kd_run *run)
{
    if (!run->job_valid) {
        kk_finish_run(k, run, KD_OUTCOME_REJECTED, KD_FAIL_FINAL, "invalid_job",
                      "job is not valid; not sent to KONE");
        return;
    }
    kk_job *j = job_new(k);
    if (!j) {
        kk_finish_run(k, run, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "nomem", "out of memory");
        return;
    }
    j->k = k;
    j->run = run;
    kk_bg_init(&j->bg, &run->job);
    j->site.job = &run->job; /* what kone_site.c sees of it */
    j->site.bg = &j->bg;
    j->sub.job = &run->job; /* ... and kone_sub.c */
    j->sub.bg = &j->bg;
    j->bj.run = run; /* ... and kone_bld.c */
    int64_t now = kd_mono_us();
    j->wait_until = now + k->call_cfg.request_timeout_us;
    if (run->job.deadline > 0) {
        int64_t left = run->job.deadline * 1000 - kd_now_us();
        if (left <= 0) {
            job_free(k, j);
            kk_finish_run(k, run, KD_OUTCOME_EXPIRED, KD_FAIL_FINAL, "expired",
                          "job deadline passed before it was sent to KONE");
            return;
        }
        j->expire_at = now + left;
    }
    if (kk_token_of(k, run->job.building_id) < 0) {
        job_free(k, j);
        kk_finish_run(k, run, KD_OUTCOME_REJECTED, KD_FAIL_FINAL, "scope",
                      "building not in kone.buildings: no token of this worker covers it "
                      "(KONE would answer 403); not sent to KONE");
        return;
    }
    if (run->adopt) {
        /* no new request: neither the breaker nor the rate limit applies */
        set_id(j, &k->by_sid, &j->call_session_id, run->session_id);
        place(j);
        return;
    }
    switch (kk_bld_admit(&k->blds, &j->bj)) {
    case KK_ADMIT_REFUSE: job_refuse(j); return;
    case KK_ADMIT_WAIT: /* in its building's queue until a token comes */
        j->held_since = kd_mono_us();
        j->slot = NULL;
        j->st = KJ_WAIT;
        rearm(j);
        return;
    case KK_ADMIT_GO: break;
    }
    place(j);
}

static void job_release(kk_job *j)
{
    int64_t now = kd_mono_us();
    if (j->held_since) {
        j->run->kone_held_us += now - j->held_since;
        j->held_since = 0;
    }
    j->bj.throttled = false;
    j->wait_until = now + j->k->call_cfg.request_timeout_us;
    place(j);
}

static void job_refuse(kk_job *j)
{
    j->run->park_ms =
        kk_bld_park_ms(&j->bj); /* parked in RabbitMQ until its building's next ping */
    finish(j, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "circuit_open",
           "the circuit of %s is open (its calls failed; it is pinged until it answers); "
           "not sent to KONE",
           kk_bld_name(&j->bj));
}

static void job_link_down(kk_job *j)
{
    int64_t now = kd_mono_us();
    if (j->st == KJ_ACCEPTED && j->run->job.op == KD_OP_CALL && j->answer_deadline > now)
        j->answer_deadline = now;
    else if (j->st == KJ_FOLLOW && !j->decisive && !j->run->adopt && j->progress_deadline > now)
        j->progress_deadline = now;
    else
        return;
    rearm(j);
}

/* Places again, in order, each job of list (linked by wlink, else by place) that may_go lets
 * go: off its slot's queues (or k->waitq), then to a slot or back to k->waitq (place). A job
 * of k->waitq has no slot and no frame queued, so it loses nothing more than its place. */
static void place_again(lws_dll2_owner_t *list, bool by_wlink, bool (*may_go)(kk_job *j))
{
    lws_dll2_t *d, *next;
    for (d = list->head; d; d = next) {
        next = d->next;
        kk_job *j =
            by_wlink ? lws_container_of(d, kk_job, wlink) : lws_container_of(d, kk_job, place);
        if (!may_go(j))
            continue;
        kk_dll_detach(&j->wlink);
        lws_dll2_remove(&j->place);
        j->want = KW_NONE;
        j->slot = NULL;
        place(j);
    }
}

/* A waiting job needs a slot of its own token: the others keep waiting, in order. */
static bool has_slot(kk_job *j)
{
    return least_loaded(j) != NULL;
}

void kk_job_place_waiting(kd_kone *k)
{
    place_again(&k->waitq, false, has_slot);
}

/* Not written yet: a delete stays, it belongs to this session. */
static bool unwritten(kk_job *j)
{
    return j->st == KJ_WAIT;
}

void kk_jobs_move_unwritten(kk_slot *s)
{
    place_again(&s->wq, true, unwritten);
}

void kk_jobs_session_restored(kk_slot *s, bool resumed)
{
    lws_dll2_t *d, *next;
    int64_t grace = kd_mono_us() + s->k->call_cfg.request_timeout_us;
    for (d = s->jobs.head; d; d = next) {
        next = d->next;
        kk_job *j = lws_container_of(d, kk_job, place);
        if (resumed && lost_since(j)) {
            /* the resumed session gets its chance to deliver a late answer, the call result
             * or the states it resends (resendLatestStateUpToSeconds) */
            if ((j->st == KJ_SENT || j->st == KJ_ACCEPTED) && j->answer_deadline < grace)
                j->answer_deadline = grace;
            if (j->st == KJ_FOLLOW && !j->decisive && j->progress_deadline < grace)
                j->progress_deadline = grace;
            if (j->st != KJ_WAIT)
                rearm(j);
        }
        if (!resumed && j->st == KJ_SENT)
            finish(j, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "session_lost",
                   "connection to KONE lost before the answer; the session could not be "
                   "resumed");
        else if (!resumed && j->st == KJ_ACCEPTED)
            finish(j, KD_OUTCOME_UNKNOWN, KD_FAIL_FINAL, "session_lost",
                   "the call may have been placed: KONE accepted it (201) but the connection "
                   "was lost before its result and the session could not be resumed; not "
                   "called again");
        else if (!resumed && j->st == KJ_CANCELLING)
            finish(j, KD_OUTCOME_UNKNOWN, KD_FAIL_FINAL, j->fail_code,
                   "the call may have been placed: %s; its delete was lost with the "
                   "session: not called again",
                   j->fail_msg);
    }
}

void kk_jobs_fail_all(kd_kone *k, const char *code, const char *msg)
{
    while (k->waitq.head)
        finish(lws_container_of(k->waitq.head, kk_job, place), KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT,
               code, "%s", msg);
    for (kk_bld_job *bj; (bj = kk_blds_waiting(&k->blds));) /* in its building's queue */
        finish(lws_container_of(bj, kk_job, bj), KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, code, "%s",
               msg);
    for (int i = 0; i < k->pool.n_links; i++) {
        kk_slot *s = &k->slots[i];
        while (s->jobs.head)
            finish(lws_container_of(s->jobs.head, kk_job, place), KD_OUTCOME_FAILED,
                   KD_FAIL_TRANSIENT, code, "%s", msg);
    }
}

/* The job's slot lost its connection and has not got its session back: what was written on
 * it may still be answered on the resumed session, so it does not time out before
 * *until (KK_RESUME_WINDOW_US after the loss). */
static bool awaiting_resume(const kk_job *j, int64_t now, int64_t *until)
{
    const kk_slot *s = j->slot;
    if (!s || kk_slot_ready(s) || !s->link.lost_mono || !lost_since(j))
        return false;
    *until = s->link.lost_mono + KK_RESUME_WINDOW_US;
    return now < *until;
}

/* A followed call failed: delete it before the job may be retried (the answer decides,
 * cancel_answer). The failure is kept for the outcome's message. */
static void cancel_call(kk_job *j, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cancel_call(kk_job *j, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    /* va_start is the line above; clang-analyzer (no path given) says otherwise. */
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): false positive, see above
    vsnprintf(j->fail_msg, sizeof j->fail_msg, fmt, ap);
    va_end(ap);
    kd_str_copy(j->fail_code, sizeof j->fail_code, code);
    kd_log_ctx lc = log_ctx(j->run);
    kd_log(KD_LOG_INFO, &lc, "kone: %s; cancelling call %" PRId64 " before any retry", j->fail_msg,
           j->call_session_id);
    j->st = KJ_CANCELLING;
    set_id(j, &j->k->by_req, &j->del_req_id, 0);
    j->answer_deadline = kd_mono_us() + j->k->call_cfg.request_timeout_us;
    want(j, KW_DELETE);
    rearm(j);
}

static void job_timer(kk_tmr *tm)
{
    kk_job *j = lws_container_of(tm, kk_job, tmr);
    kd_kone *k = j->k;
    int64_t now = kd_mono_us();
    int64_t rt_ms = k->call_cfg.request_timeout_us / 1000;
    int64_t until;
    if (awaiting_resume(j, now, &until) &&
        (((j->st == KJ_SENT || j->st == KJ_ACCEPTED) && now >= j->answer_deadline) ||
         (j->st == KJ_FOLLOW && !j->decisive && now >= j->progress_deadline))) {
        /* its deadlines stand; the restored session moves them (kk_jobs_session_restored),
         * else they are met when the window ends */
        kk_tmr_at(&k->pool.timers, &j->tmr, job_timer, until);
        return;
    }
    switch (j->st) {
    case KJ_WAIT:
        if (j->expire_at && now >= j->expire_at) {
            finish(j, KD_OUTCOME_EXPIRED, KD_FAIL_FINAL, "expired",
                   "job deadline passed before it could be sent to KONE");
            return;
        }
        if (j->bj.throttled && now >= j->wait_until) {
            kd_kone_building_stats bs = {0};
            kk_blds_building(&k->blds, j->run->job.building_id, &bs);
            finish(j, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "rate_limited",
                   "held back %" PRId64 " ms by the rate limit of %s (%.2f calls/s); not sent "
                   "to KONE",
                   rt_ms, bs.building, bs.rate_per_s);
            return;
        }
        if (now >= j->wait_until && j->slot && (j->sub.wait.owner || j->site.wait.owner)) {
            /* connected, but held at a gate: its group's configuration fetch (parked on
             * kone_site's waiters) or subscription (on a kk_sub's) went unanswered (KONE
             * slow, or the answer lost with a connection) */
            finish(j, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "timeout",
                   "no answer from KONE within %" PRId64 " ms to the configuration fetch or "
                   "subscription of %s group %s the call waited for; not sent to KONE",
                   rt_ms, j->run->job.building_id, j->run->job.group_id);
            return;
        }
        if (now >= j->wait_until) {
            char why[200] = "";
            int t = kk_token_of(k, j->run->job.building_id);
            kd_kone_tokens_last_error(k->tokens[t < 0 ? 0 : t], why, sizeof why);
            finish(j, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "no_connection",
                   "no KONE connection within %" PRId64 " ms%s%s", rt_ms, why[0] ? ": " : "", why);
            return;
        }
        break;
    case KJ_SENT:
        if (now >= j->answer_deadline) {
            kk_m_request(j->k, call_type(j->run->job.op), KD_KONE_STATUS_TIMEOUT,
                         now - j->sent_mono);
            finish(j, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "timeout",
                   "no answer from KONE within %" PRId64 " ms%s", rt_ms,
                   lost_since(j) ? " (the connection was lost after the request was written; "
                                   "KONE may or may not have received it)"
                                 : "");
            return;
        }
        break;
    case KJ_ACCEPTED:
        if (now >= j->answer_deadline && j->run->job.op == KD_OP_HOLD_OPEN) {
            succeed(j, "", "answered 2xx; no result frame followed"); /* not refused */
            return;
        }
        if (now >= j->answer_deadline && lost_since(j)) {
            /* the result frame may have gone down with a connection: not the site's link */
            finish(j, KD_OUTCOME_UNKNOWN, KD_FAIL_FINAL, "result_lost",
                   "the call may have been placed: KONE accepted it (201) but the connection "
                   "was lost before its result; not called again");
            return;
        }
        if (now >= j->answer_deadline) {
            finish(j, KD_OUTCOME_UNKNOWN, KD_FAIL_FINAL, "1005",
                   "the call may have been placed: KONE accepted it (201) but sent no call "
                   "result within %" PRId64 " ms (the building's link to KONE may be down); "
                   "not called again",
                   (now - j->sent_mono) / 1000);
            return;
        }
        break;
    case KJ_CANCELLING:
        if (now >= j->answer_deadline) {
            finish(j, KD_OUTCOME_UNKNOWN, KD_FAIL_FINAL, j->fail_code,
                   "the call may have been placed: %s; its delete got no answer within "
                   "%" PRId64 " ms: not called again",
                   j->fail_msg, rt_ms);
            return;
        }
        break;
    case KJ_FOLLOW:
        if (j->run->adopt && !j->last_state[0] && now >= j->progress_deadline) {
            /* handed over, and no state of it seen since: KONE sends no snapshot, so it may
             * have been served already, or may still be waiting for its lift. Deleting it could
             * strand a passenger, and it is another (gone) session's call: left alone */
            finish(j, KD_OUTCOME_UNKNOWN, KD_FAIL_FINAL, "handover_unseen",
                   "the call was placed (session %" PRId64 ") by a worker that is gone; no state "
                   "of it was seen since it was handed over (KONE sends no snapshot of past "
                   "states): it may have been served; not called again",
                   j->call_session_id);
            return;
        }
        if (j->run->job.track && now >= j->track_deadline) {
            char msg[160];
            snprintf(msg, sizeof msg, "tracking stopped after %" PRId64 " ms in state '%s'",
                     k->call_cfg.track_timeout_us / 1000,
                     j->last_state[0] ? j->last_state : "none");
            if (j->decisive)
                succeed(j, "track_timeout", msg);
            else
                cancel_call(j, "1005", "%s", msg);
            return;
        }
        if (!j->decisive && now >= j->progress_deadline) {
            cancel_call(j, "1005",
                        "call %" PRId64 " made no progress (state '%s', accepted %" PRId64
                        " ms ago; the building's link to KONE may be down)",
                        j->call_session_id, j->last_state[0] ? j->last_state : "created",
                        (now - j->accepted_mono) / 1000);
            return;
        }
        break;
    }
    rearm(j);
}

/* ------------------------------------------------------------------ writing */

int kk_job_write(kk_job *j, kk_conn *c)
{
    kk_slot *s = kk_slot_of(c->link);
    kd_kone *k = j->k;
    kd_run *run = j->run;
    kk_want w = j->want;
    lws_dll2_remove(&j->wlink);
    j->want = KW_NONE;
    if (w == KW_REQUEST && !kk_bld_may_send(&j->bj)) { /* its circuit opened while it waited */
        job_refuse(j);
        return 0;
    }
    if (w == KW_REQUEST && run->job.op == KD_OP_CALL && !j->site.passed) {
        char code[sizeof run->error_code] = "", why[256] = "";
        switch (kk_site_gate(&s->site, &j->site, code, sizeof code, why, sizeof why)) {
        case KK_GATE_WAIT: /* on its configuration's fetch; its end sends it on */
            j->want = KW_REQUEST;
            return 0;
        case KK_GATE_FAIL:   /* not returned by the site gate */
        case KK_GATE_REFUSE: /* KONE would refuse it: nothing reached the building */
            run->validated_locally = true;
            kk_bld_evidence(&j->bj, KD_BRK_NEUTRAL); /* no verdict (a trial place back) */
            finish(j, KD_OUTCOME_REJECTED, KD_FAIL_FINAL, code, "%s", why);
            return 0;
        case KK_GATE_GO: break;
        }
    }
    if (w == KW_REQUEST && run->job.op == KD_OP_CALL && !j->unfollowed) {
        char why[200] = "";
        switch (kk_sub_gate(&s->sub, &j->sub, why, sizeof why)) {
        case KK_GATE_WAIT: /* on the subscription's waiters; its answer sends it on */
            j->want = KW_REQUEST;
            return 0;
        case KK_GATE_FAIL:
            finish(j, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "monitor_failed",
                   "%s; the call was not made", why);
            return 0;
        case KK_GATE_REFUSE: /* held: the retry tiers bring it back, no attempt used */
            if (k->call_cfg.hold_group_mode)
                finish(j, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "group_mode_held",
                       "%s; held, the call was not made", why);
            else
                finish(j, KD_OUTCOME_REJECTED, KD_FAIL_FINAL, "group_mode",
                       "%s; the call was not made", why);
            return 0;
        case KK_GATE_GO:
            if (why[0]) /* refused for good: the call goes out, its states unfollowed */
                set_unfollowed(j, why);
            break;
        }
    }
    int64_t id = kk_slot_next_id(s);
    kd_err e;
    kd_err_clear(&e);
    char *text = NULL;
    if (w == KW_REQUEST) {
        text = kd_kone_msg_job(&run->job, id, kd_now_us(), &e);
    } else if (w == KW_DELETE) {
        kd_job del = run->job;
        del.op = KD_OP_CANCEL;
        del.session_id = j->call_session_id;
        text = kd_kone_msg_job(&del, id, kd_now_us(), &e);
    } else {
        return 0;
    }
    if (!text) {
        if (w == KW_DELETE)
            finish(j, KD_OUTCOME_UNKNOWN, KD_FAIL_FINAL, j->fail_code,
                   "the call may have been placed: %s; its delete could not be written (%s): "
                   "not called again",
                   j->fail_msg, e.msg);
        else
            finish(j, e.code == KD_ERR_INVALID ? KD_OUTCOME_REJECTED : KD_OUTCOME_FAILED,
                   e.code == KD_ERR_INVALID ? KD_FAIL_FINAL : KD_FAIL_TRANSIENT,
                   e.code == KD_ERR_INVALID ? "invalid_job" : "nomem", "%s", e.msg);
        return 0;
    }
    if (kk_conn_send_owned(c, text)) {
        /* not written: back to the front of the queue; the conn closes and the job moves */
        lws_dll2_add_head(&j->wlink, &s->wq);
        j->want = w;
        return -1;
    }
    int64_t now = kd_mono_us();
    if (w == KW_DELETE) {
        set_id(j, &k->by_req, &j->del_req_id, id);
        j->sent_mono = now;
    } else {
        set_id(j, &k->by_req, &j->req_id, id);
        j->st = KJ_SENT;
        j->sent_mono = now;
        j->losses_at = s->link.losses;
        j->answer_deadline = now + k->call_cfg.request_timeout_us;
        run->written = true;
        if (!run->started_us)
            run->started_us = kd_now_us();
    }
    rearm(j);
    return 0;
}

/* ------------------------------------------------------------------ answers */

/* The job whose request `id` was written on slot s. Only s: an answer belongs to the session
 * it arrives on (a resumed session is the same slot), and ids are unique per process, so a
 * late answer can never be credited to another connection's job. */
static bool awaits(const kk_job *j, int64_t id)
{
    return (j->req_id == id && (j->st == KJ_SENT || j->st == KJ_ACCEPTED)) ||
           (j->st == KJ_CANCELLING && j->del_req_id == id);
}

kk_job *kk_job_awaiting(kk_slot *s, int64_t id)
{
    if (s->k->index_off) {
        for (lws_dll2_t *d = s->jobs.head; d; d = d->next) {
            kk_job *j = lws_container_of(d, kk_job, place);
            if (awaits(j, id))
                return j;
        }
        return NULL;
    }
    /* ids are unique per process: at most one job holds id */
    size_t it = 0;
    for (kk_job *j; (j = kd_idmap_next(&s->k->by_req, id, &it));)
        if (j->place.owner == &s->jobs && awaits(j, id))
            return j;
    return NULL;
}

static void status_code(int status, char *buf, size_t len)
{
    char t[24];
    size_t n = kd_jw_int_text(t, status);
    t[n] = '\0';
    kd_str_copy(buf, len, t);
}

/* 401 on a request: send it again on a connection opened with a fresh token. */
static void auth_retry(kk_job *j)
{
    kd_kone *k = j->k;
    kk_slot *s = j->slot;
    if (++j->auth_retries > KK_MAX_AUTH_RETRIES) {
        finish(j, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "401",
               "KONE refused the token (401) %d times", j->auth_retries);
        return;
    }
    kd_log_ctx lc = log_ctx(j->run);
    kd_log(KD_LOG_INFO, &lc,
           "kone: request refused with 401; refreshing the token and "
           "sending it again");
    j->st = KJ_WAIT;
    set_id(j, &k->by_req, &j->req_id, 0);
    j->wait_until = kd_mono_us() + k->call_cfg.request_timeout_us;
    want(j, KW_REQUEST);
    kk_conn *c = kk_slot_active(s);
    if (c) {
        kd_kone_tokens_invalidate(k->tokens[s->tok], c->token_gen);
        kk_conn_kill(c);
    }
    rearm(j);
}

static void call_result(kk_job *j, const kd_kone_msg *m);

/* A hold_open's result frame: success, or KONE's refusal (final, like a call's). */
static void hold_result(kk_job *j, const kd_kone_msg *m)
{
    if (!m->has_success || m->success) {
        succeed(j, "", "");
        return;
    }
    char code[sizeof j->run->error_code];
    kd_outcome o = kd_kone_call_error_outcome(m->error, code, sizeof code);
    finish(j, o, o == KD_OUTCOME_REJECTED ? KD_FAIL_FINAL : KD_FAIL_TRANSIENT, code, "%s",
           m->error[0] ? m->error : "hold_open refused by KONE (success=false)");
}

static void request_answer(kk_job *j, const kd_kone_msg *m)
{
    kd_run *run = j->run;
    int64_t now = kd_mono_us();
    run->kone_rtt_us = now - j->sent_mono;
    run->kone_status = m->status;
    kk_m_request(j->k, call_type(run->job.op), m->status, run->kone_rtt_us);
    char code[16];
    status_code(m->status, code, sizeof code);
    const char *text = m->message[0] ? m->message : "no message";
    switch (kd_kone_status_classify(m->status)) {
    case KD_KONE_ST_OK:
        if (run->job.op == KD_OP_CALL) {
            /* registered; its result may take as long as any progress of the call */
            j->st = KJ_ACCEPTED;
            j->answer_deadline =
                now + kk_bld_result_wait_us(&j->bj, j->k->call_cfg.call_timeout_us);
            if (m->has_success || m->call_session_id)
                call_result(j, m); /* the result came in the answer itself */
            else
                rearm(j);
        } else if (run->job.op == KD_OP_HOLD_OPEN) {
            /* KONE may still refuse it in a result frame (success:false): wait for that */
            j->st = KJ_ACCEPTED;
            j->answer_deadline = now + j->k->call_cfg.request_timeout_us;
            if (m->has_success)
                hold_result(j, m);
            else
                rearm(j);
        } else {
            succeed(j, "", "");
        }
        return;
    case KD_KONE_ST_AUTH: auth_retry(j); return;
    case KD_KONE_ST_REJECTED:
        finish(j, KD_OUTCOME_REJECTED, KD_FAIL_FINAL, code, "KONE answered %d: %s", m->status,
               text);
        return;
    case KD_KONE_ST_TRANSIENT:
        if (m->status == 429)
            kk_bld_too_many(&j->bj); /* slow down for this building */
        finish(j, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, code, "KONE answered %d: %s", m->status,
               text);
        return;
    }
}

/* KONE's answer to the delete of a followed call that failed. */
static void cancel_answer(kk_job *j, const kd_kone_msg *m)
{
    kk_m_request(j->k, "delete", m->status, kd_mono_us() - j->sent_mono);
    if (kd_kone_status_classify(m->status) == KD_KONE_ST_OK) {
        finish(j, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, j->fail_code,
               "%s; the call was cancelled (delete answered %d), so the job may be retried",
               j->fail_msg, m->status);
        return;
    }
    finish(j, KD_OUTCOME_UNKNOWN, KD_FAIL_FINAL, j->fail_code,
           "the call may have been placed: %s; cancelling it failed (delete answered %d: "
           "%.60s): not called again",
           j->fail_msg, m->status, m->message[0] ? m->message : "no message");
}

void kk_on_answer(kk_slot *s, const kd_kone_msg *m)
{
    if (!m->has_request_id) {
        kd_debug("kone: slot %d: answer %d without a request id ignored", s->link.idx, m->status);
        return;
    }
    kk_job *j = kk_job_awaiting(s, m->request_id);
    if (j && j->st == KJ_SENT) {
        request_answer(j, m);
        return;
    }
    if (j && j->st == KJ_CANCELLING) {
        cancel_answer(j, m);
        return;
    }
    kd_debug("kone: slot %d: answer %d for unknown request %" PRId64, s->link.idx, m->status,
             m->request_id);
}

static void replay_early(kk_slot *s, int64_t sid);

/* The call's result (data.success, data.session_id): in its own frame, or in the answer. */
static void call_result(kk_job *j, const kd_kone_msg *m)
{
    kd_run *run = j->run;
    int64_t now = kd_mono_us();
    if (j->st == KJ_SENT) /* result before the answer: the answer is implied */
        run->kone_rtt_us = now - j->sent_mono;
    bool ok = m->has_success ? m->success : m->call_session_id != 0;
    if (!ok) {
        char code[sizeof run->error_code];
        kd_outcome o = kd_kone_call_error_outcome(m->error, code, sizeof code);
        finish(j, o, o == KD_OUTCOME_REJECTED ? KD_FAIL_FINAL : KD_FAIL_TRANSIENT, code, "%s",
               m->error[0] ? m->error : "call refused by KONE (success=false)");
        return;
    }
    if (!m->call_session_id) {
        snprintf(j->note, sizeof j->note, "KONE gave no session_id; state not followed");
        succeed(j, "", "call accepted");
        return;
    }
    if (j->unfollowed) {
        run->session_id = m->call_session_id;
        succeed(j, "", "call accepted");
        return;
    }
    kk_bld_evidence(&j->bj, KD_BRK_SUCCESS); /* the building took the call */
    run->session_id = m->call_session_id;
    set_id(j, &j->k->by_sid, &j->call_session_id, m->call_session_id);
    remember_affinity(j->k, m->call_session_id, j->slot->link.idx);
    if (j->k->hooks.accepted)
        j->k->hooks.accepted(run, j->slot->link.session_id, j->k->hooks.arg);
    (void)now;
    start_follow(j);
    replay_early(j->slot, m->call_session_id);
}

void kk_on_call_result(kk_slot *s, const kd_kone_msg *m)
{
    kk_job *j = m->has_request_id ? kk_job_awaiting(s, m->request_id) : NULL;
    if (j && j->run->job.op == KD_OP_HOLD_OPEN) {
        hold_result(j, m);
        return;
    }
    if (!j || j->run->job.op != KD_OP_CALL) {
        kd_debug("kone: slot %d: call result for unknown request ignored", s->link.idx);
        return;
    }
    call_result(j, m);
}

/* The states kk_on_call_state acts on, told apart by their first letter and one compare (it
 * compared each name in turn, eight strcmp a state). */
typedef enum {
    ST_OTHER,
    ST_CREATED,
    ST_CANCELLED,
    ST_BEING_SERVED,
    ST_SERVED_SOON,
    ST_SERVED
} kk_st;

static kk_st state_kind(const char *s)
{
    switch (s[0]) {
    case 'c':
        return !strcmp(s, "created")     ? ST_CREATED
               : !strcmp(s, "cancelled") ? ST_CANCELLED
                                         : ST_OTHER;
    case 'b': return !strcmp(s, "being_served") ? ST_BEING_SERVED : ST_OTHER;
    case 's':
        return !strcmp(s, "served")        ? ST_SERVED
               : !strcmp(s, "served_soon") ? ST_SERVED_SOON
                                           : ST_OTHER;
    default: return ST_OTHER;
    }
}

/* being_served, served_soon or served: the first of them to come ends an untracked job. */
static bool is_decisive(kk_st st)
{
    return st == ST_BEING_SERVED || st == ST_SERVED_SOON || st == ST_SERVED;
}

/* The job following call session_id on slot s. Only s: a building and group's calls go to
 * their home slot, but after a failover two connections may hold its call_state/+/+
 * subscription for a while and each gets every state; the copy on the job's own connection
 * is the one that counts (taking any copy would report a state again after a later one, out
 * of order). */
static kk_job *find_follow(kk_slot *s, int64_t session_id)
{
    if (s->k->index_off) {
        for (lws_dll2_t *d = s->jobs.head; d; d = d->next) {
            kk_job *j = lws_container_of(d, kk_job, place);
            if (j->st == KJ_FOLLOW && j->call_session_id == session_id)
                return j;
        }
        return NULL;
    }
    /* Two jobs following one call on one slot (never met: the ledger lets one delivery of a
     * job in at a time) would be found in the index's order, not the slot's. */
    size_t it = 0;
    for (kk_job *j; (j = kd_idmap_next(&s->k->by_sid, session_id, &it));)
        if (j->place.owner == &s->jobs && j->st == KJ_FOLLOW)
            return j;
    return NULL;
}

bool kk_follows(kk_slot *s, int64_t session_id)
{
    return find_follow(s, session_id) != NULL;
}

void kk_on_call_state(kk_slot *s, const kd_kone_msg *m)
{
    kd_kone *k = s->k;
    const kd_call_event *in = &m->ev;
    kk_job *j = in->session_id ? find_follow(s, in->session_id) : NULL;
    if (!j || !in->state[0]) {
        kd_debug("kone: call state '%s' for session %" PRId64 " not followed here", in->state,
                 in->session_id);
        return;
    }
    /* a state re-sent after a resume (same state, same time) is not a change */
    if (!strcmp(in->state, j->last_state) && !strcmp(in->kone_time, j->last_time))
        return;
    kd_str_copy(j->last_state, sizeof j->last_state, in->state);
    kd_str_copy(j->last_time, sizeof j->last_time, in->kone_time);
    kd_run *run = j->run;
    if (in->has_modified_destination) { /* a transfer: the result carries it too */
        run->has_modified_destination = true;
        run->modified_destination = in->modified_destination;
        kd_str_copy(run->modified_reason, sizeof run->modified_reason, in->modified_reason);
    }
    if (run->job.track && k->hooks.call_event) {
        kd_call_event ev = *in;
        ev.run = run;
        ev.received_us = kd_now_us();
        k->hooks.call_event(run, &ev, k->hooks.arg);
    }
    kk_st st = state_kind(in->state);
    if (st != ST_CREATED)
        j->progress_deadline = kd_mono_us() + progress_window_us(j);
    if (st == ST_CANCELLED) {
        char code[sizeof run->error_code];
        kd_kone_cancel_code(in->cancel_reason, code, sizeof code);
        finish(j, KD_OUTCOME_REJECTED, KD_FAIL_FINAL, code, "call cancelled by KONE: %s",
               in->cancel_reason[0] ? in->cancel_reason : "no reason given");
        return;
    }
    if (is_decisive(st)) {
        j->decisive = true;
        if (!run->job.track || st == ST_SERVED) {
            succeed(j, "", "");
            return;
        }
    }
    rearm(j);
}

/* ------------------------------------------------------------------ buildings */

static void bld_released(kk_bld_job *bj)
{
    job_release(lws_container_of(bj, kk_job, bj));
}

static void bld_refused(kk_bld_job *bj)
{
    job_refuse(lws_container_of(bj, kk_job, bj));
}

/* In its building's queue for room in a concurrency limit: not failed rate_limited, its own
 * deadline only (its timer sees this when it fires). */
static void bld_wait_for_room(kk_bld_job *bj)
{
    lws_container_of(bj, kk_job, bj)->wait_until = INT64_MAX;
}

/* Every call of building b on every slot gives up what it waits for now (job_link_down). */
static int bld_link_down(kk_blds *bs, const kk_bld *b)
{
    kd_kone *k = lws_container_of(bs, kd_kone, blds);
    int n = 0;
    for (int i = 0; i < k->pool.n_links; i++)
        for (lws_dll2_t *d = k->slots[i].jobs.head; d; d = d->next) {
            kk_job *j = lws_container_of(d, kk_job, place);
            if (j->bj.bld == b) {
                job_link_down(j);
                n++;
            }
        }
    return n;
}

static kk_link *bld_least_loaded(kk_blds *bs, int tok)
{
    kk_slot *s = slot_least_loaded(lws_container_of(bs, kd_kone, blds), tok);
    return s ? &s->link : NULL;
}

/* ------------------------------------------------------------------ subscriptions */

static void job_sub_released(kk_sub_job *sj, kk_gate g, const char *why)
{
    kk_job *j = lws_container_of(sj, kk_job, sub);
    if (g == KK_GATE_FAIL) {
        finish(j, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "monitor_failed",
               "%s; the call was not made", why);
        return;
    }
    if (why && why[0])
        set_unfollowed(j, why);
    want(j, KW_REQUEST); /* the gate passes now */
}

/* Its slot lost its connection for good: back on the slot's queue, to be moved elsewhere
 * (kk_jobs_move_unwritten) with the other unwritten calls. */
static void job_sub_requeue(kk_sub_slot *ss, kk_sub_job *sj)
{
    kk_slot *s = lws_container_of(ss, kk_slot, sub);
    kk_job *j = lws_container_of(sj, kk_job, sub);
    lws_dll2_add_tail(&j->wlink, &s->wq);
}

/* Is a call of this building and group placed on the slot (its subscription is kept)? */
static bool slot_has_job(kk_sub_slot *ss, const char *building, const char *group)
{
    kk_slot *s = lws_container_of(ss, kk_slot, sub);
    for (lws_dll2_t *d = s->jobs.head; d; d = d->next) {
        const kk_job *j = lws_container_of(d, kk_job, place);
        if (!strcmp(j->bg.building, building) && !strcmp(j->bg.group, group))
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------ configurations */

static void job_site_released(kk_site_job *sj)
{
    kk_job *j = lws_container_of(sj, kk_job, site);
    want(j, KW_REQUEST); /* the gate is asked again: checked, unchecked or refused */
}

/* A call's states may come before the frame that names its session (KONE does not promise
 * the order, and the subscription covers every call of the building): the last
 * KK_EARLY_N unclaimed ones are kept for the length of a request timeout. */
void kk_state_unmatched(kk_slot *s, const char *buf, size_t len, int64_t sid)
{
    kd_kone *k = s->k;
    if (len >= KK_EARLY_FRAME)
        return;
    if (!k->early && !(k->early = calloc(KK_EARLY_N, sizeof *k->early)))
        return;
    unsigned i = k->early_next++ % KK_EARLY_N;
    if (k->early[i].sid)
        k->early_hint[(uint64_t)k->early[i].sid & 255]--;
    if (sid) /* 0 is never asked for (a call result without a session is not followed) */
        k->early_hint[(uint64_t)sid & 255]++;
    k->early[i].sid = sid;
    k->early[i].slot = s->link.idx;
    k->early[i].mono = kd_mono_us();
    k->early[i].len = len;
    memcpy(k->early[i].frame, buf, len);
}

static void replay_early(kk_slot *s, int64_t sid)
{
    kd_kone *k = s->k;
    /* Most calls have no early state, while the ring is full of other calls' states (every
     * state nobody followed is kept in case its result is late): the hint first. */
    if (!k->early || !k->early_hint[(uint64_t)sid & 255])
        return;
    int64_t oldest = kd_mono_us() - k->call_cfg.request_timeout_us;
    for (unsigned n = 0; n < KK_EARLY_N; n++) { /* oldest first */
        unsigned i = (k->early_next + n) % KK_EARLY_N;
        if (k->early[i].sid != sid || k->early[i].slot != s->link.idx || k->early[i].mono < oldest)
            continue;
        k->early[i].sid = 0;
        k->early_hint[(uint64_t)sid & 255]--;
        kd_kone_msg m;
        kd_err e;
        kd_err_clear(&e);
        if (kd_kone_msg_parse(k->early[i].frame, k->early[i].len, &m, &e) == 0 &&
            m.kind == KD_KONE_MSG_CALL_STATE) {
            kd_debug("kone: state '%s' of call %" PRId64 " came before its result; applied",
                     m.ev.state, sid);
            kk_on_call_state(s, &m);
        }
        if (!kk_follows(s, sid))
            return; /* finished by it */
    }
}

const kk_wake_ops kk_call_wake = {
    .bld = {.released = bld_released,
            .refused = bld_refused,
            .wait_for_room = bld_wait_for_room,
            .link_down = bld_link_down,
            .least_loaded = bld_least_loaded},
    .sub = {.released = job_sub_released, .requeue = job_sub_requeue, .has_job = slot_has_job},
    .site_released = job_site_released,
};

void kk_call_config(kk_call_cfg *c, const kd_config *cfg)
{
    c->request_timeout_us = kd_cfg_int(cfg, KD_CFG_KONE_REQUEST_TIMEOUT_MS) * 1000;
    c->call_timeout_us = kd_cfg_int(cfg, KD_CFG_KONE_CALL_TIMEOUT_MS) * 1000;
    c->track_timeout_us = kd_cfg_int(cfg, KD_CFG_KONE_TRACK_TIMEOUT_MS) * 1000;
    c->hold_group_mode = strcmp(kd_cfg_str(cfg, KD_CFG_KONE_GROUP_MODE_POLICY), "hold") == 0;
}
