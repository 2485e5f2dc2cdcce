/* kone_sub.c: the site-monitoring subscriptions of each connection (contract: kone_sub.h).
 * Layer (kone_int.h): policy the call layer asks (kk_sub_gate); what it later decides for a
 * job it holds waiting goes back through kk_subs.ops (kk_wake_ops.sub), never by name. It
 * reads alone: it includes kone_sub.h and lower headers only (no kone_int.h).
 *
 * One subscription per slot, building and group, to call_state/+/+, named
 * kk_subs.cfg.sub_name. It exists before the first call of that building and group goes out
 * on the slot, because KONE documents no snapshot on subscribe: a call cancelled at once
 * (SAME_SOURCE_AND_DEST_FLOOR, NO_LIFT_AVAILABLE, a locked floor) sends its only state
 * right after the call result, and a per-call subscription made then would miss it.
 * Every state of the building and group comes on each connection that holds one, so the
 * call layer keeps a building and group's calls on the one ready slot that holds it (its
 * home, kk_sub_holds): a second slot subscribes only when the home is not ready (its calls
 * wait for that answer like any first call) or after a failover, until the unused one lapses.
 *
 *   NEW --written--> (answer pending) --2xx--> ACTIVE --renew at 80 %--> (pending) ...
 *                                      \--4xx--> REFUSED final: calls go on; their states
 *                                      |          are not followed (the call's own answer
 *                                      |          decides, an accepted call succeeds with a
 *                                      |          note); asked again after the backoff
 *                                      \--401--> the token is refreshed, the conn replaced
 *                                      \--429/5xx/no answer--> REFUSED: calls waiting fail
 *                                                 transient (not made, safe to retry)
 *
 * Calls arriving while the subscription is unanswered wait on it (kk_sub.waiters), and
 * their own deadlines still run (kone_call.c). After a reconnect, every subscription of the
 * slot is made again before new calls go out (KONE may tie them to the connection); calls
 * already followed keep their deadlines, and the resumed session resends their states.
 * A subscription nobody used for a whole kone.monitor_duration_s is not renewed: it lapses
 * at KONE and is forgotten here, so memory follows the buildings in use.
 *
 * Incoming states of other sessions (other workers' calls in the same building) are
 * dropped by kone_conn.c's dispatch before any of their fields is read.
 *
 * The same subscription takes +/status (monitor-lift-status): KONE's guide says a group in
 * fire (FRD), out-of-service (OSS), attendant (ATS) or priority (PRC) mode is not called, and
 * lift_mode tells the mode. A group whose every lift that reported is in one of
 * kone.lift_modes_refused has its calls rejected `group_mode` here, before any frame. KONE
 * documents no snapshot, so a mode is known from its first change after the subscription
 * (or a status event a lift sends for any other reason); until then the group is called and
 * KONE's own refusal decides.
 */
#include <inttypes.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_log.h"
#include "kd_list.h"
#include "kone_dll.h"
#include "kone_sub.h"
#include "kd_str.h"

#define SEC 1000000LL
#define RETRY_MIN_US SEC
#define RETRY_MAX_US (30 * SEC)

static void sub_timer(kk_tmr *tm);

/* The owner's metric hook (kd_kone_metrics.api_request), a no-op when not given. */
static void m_request(const kk_subs *ss, int status, int64_t rtt_us)
{
    if (ss->hooks->metrics.api_request)
        ss->hooks->metrics.api_request("site-monitoring", status, rtt_us, ss->hooks->arg);
}

void kk_sub_slot_init(kk_sub_slot *s, kk_subs *all, kk_link *link)
{
    memset(s, 0, sizeof *s);
    s->hash = s->hash0;
    s->nb = KK_SUB_BUCKETS;
    s->all = all;
    s->link = link;
    all->slots[link->idx] = s;
}

void kk_sub_forget(kk_sub_job *sj)
{
    kk_dll_detach(&sj->wait);
}

uint32_t kk_bg_hash(const char *building, const char *group)
{
    uint32_t h = 2166136261u;
    for (const char *p = building; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ '/') * 16777619u;
    for (const char *p = group; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h;
}

void kk_bg_init(kk_bg *k, const kd_job *job)
{
    if (memcmp(job->building_id, "building:", 9) == 0) { /* no NUL in the 9: the prefix */
        k->building = job->building_id;
    } else {
        kd_kone_building_id(job->building_id, k->buf, sizeof k->buf);
        k->building = k->buf;
    }
    k->group = job->group_id[0] ? job->group_id : "1";
    k->hash = kk_bg_hash(k->building, k->group);
}

/* The subscription of building b and group g (hash h: kk_bg_hash's), or NULL. */
static kk_sub *lookup_h(const kk_sub_slot *s, const char *b, const char *g, uint32_t h)
{
    for (kk_sub *x = s->hash[h & (s->nb - 1)]; x; x = x->hnext)
        if (x->hash == h && !strcmp(x->building, b) && !strcmp(x->group, g))
            return x;
    return NULL;
}

static kk_sub *lookup(const kk_sub_slot *s, const char *b, const char *g)
{
    return lookup_h(s, b, g, kk_bg_hash(b, g));
}

static kk_sub *lookup_bg(const kk_sub_slot *s, const kk_bg *bg)
{
    return lookup_h(s, bg->building, bg->group, bg->hash);
}

static void arm(kk_sub *x, int64_t at)
{
    kk_tmr_at(&x->slot->all->pool->timers, &x->tmr, sub_timer, at);
}

/* Queues the subscription's frame (a first request, a renewal or a new try). */
static void want_write(kk_sub *x)
{
    kk_sub_slot *s = x->slot;
    kk_dll_detach(&x->olink);
    x->req_id = 0;
    if (lws_dll2_is_detached(&x->wlink))
        lws_dll2_add_tail(&x->wlink, &s->wq);
    kk_link_want_write(s->link);
}

/* Twice the chains, once the subscriptions are twice as many: a worker with 1,000 buildings of
 * 2 groups in use keeps ~2,000, and 64 chains of 31 made lookup_h 5 % of its CPU (perf, the
 * bench's scale scenario, 2026-12-05). Without the memory the table stays as it is: slower,
 * as correct. */
static void grow(kk_sub_slot *s)
{
    unsigned nb = s->nb * 2;
    if (nb > KK_SUB_BUCKETS_MAX)
        return;
    kk_sub **t = calloc(nb, sizeof(kk_sub *));
    if (!t)
        return; /* GCOVR_EXCL_LINE: allocation failure */
    for (unsigned i = 0; i < s->nb; i++)
        while (s->hash[i]) {
            kk_sub *x = s->hash[i];
            s->hash[i] = x->hnext;
            x->hnext = t[x->hash & (nb - 1)];
            t[x->hash & (nb - 1)] = x;
        }
    if (s->hash != s->hash0)
        free(s->hash);
    s->hash = t;
    s->nb = nb;
}

static kk_sub *create(kk_sub_slot *s, const kk_bg *bg)
{
    const char *b = bg->building, *g = bg->group;
    kk_sub *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->slot = s;
    kd_str_copy(x->building, sizeof x->building, b);
    kd_str_copy(x->group, sizeof x->group, g);
    x->st = KS_NEW;
    x->refused_mode = -1;
    x->hash = bg->hash;
    x->hnext = s->hash[x->hash & (s->nb - 1)];
    s->hash[x->hash & (s->nb - 1)] = x;
    s->n++;
    if ((unsigned)s->n > 2 * s->nb)
        grow(s);
    return x;
}

static void destroy(kk_sub *x)
{
    kk_sub_slot *s = x->slot;
    KD_SLIST_UNLINK(s->hash[x->hash & (s->nb - 1)], x, hnext);
    s->n--;
    kk_tmr_cancel(&x->tmr);
    kk_dll_detach(&x->wlink);
    kk_dll_detach(&x->olink);
    free(x);
}

/* Lets every waiting call go on (g GO) or fail (g FAIL). A call finished here is unlinked
 * from the list by kone_call.c, so the head is taken each time. */
static void release(kk_sub *x, kk_gate g)
{
    while (x->waiters.head) {
        kk_sub_job *j = lws_container_of(x->waiters.head, kk_sub_job, wait);
        lws_dll2_remove(&j->wait);
        x->slot->all->ops->released(j, g, x->why);
    }
}

kk_gate kk_sub_gate(kk_sub_slot *s, kk_sub_job *j, char *why, size_t len)
{
    const char *b = j->bg->building, *g = j->bg->group;
    kk_sub *x = lookup_bg(s, j->bg);
    int64_t now = kd_mono_us();
    if (!x && !(x = create(s, j->bg))) {
        /* GCOVR_EXCL_START: allocation failure */
        snprintf(why, len, "out of memory for the site-monitoring subscription of %s", b);
        return KK_GATE_FAIL;
        /* GCOVR_EXCL_STOP */
    }
    x->last_used = now;
    if (x->st == KS_ACTIVE && x->refused_mode >= 0) {
        snprintf(why, len, "group %s of %s is in %s mode (lift_mode %" PRId64 ")", g, b,
                 s->all->cfg.modes[x->refused_mode].name, s->all->cfg.modes[x->refused_mode].code);
        return KK_GATE_REFUSE;
    }
    if (x->st == KS_ACTIVE)
        return KK_GATE_GO;
    if (x->st == KS_REFUSED && now < x->retry_at) {
        kd_str_copy(why, len, x->why);
        return x->final ? KK_GATE_GO : KK_GATE_FAIL;
    }
    if (x->st == KS_REFUSED) { /* the backoff passed: ask again, calls wait for it */
        x->st = KS_NEW;
        want_write(x);
    } else if (lws_dll2_is_detached(&x->wlink) && lws_dll2_is_detached(&x->olink)) {
        want_write(x); /* a new one */
    }
    lws_dll2_add_tail(&j->wait, &x->waiters);
    return KK_GATE_WAIT;
}

/* The subscription of the job's building and group on s, made (KS_NEW) when missing and
 * make is set (*made says so); NULL when there is none (or no memory for it). */
static kk_sub *of_job(kk_sub_slot *s, const kk_bg *bg, bool make, bool *made)
{
    kk_sub *x = lookup_bg(s, bg);
    *made = !x && make;
    return x || !make ? x : create(s, bg);
}

bool kk_sub_touch(kk_sub_slot *s, const kk_bg *bg)
{
    bool made;
    kk_sub *x = of_job(s, bg, true, &made);
    if (!x)
        return false;
    x->last_used = kd_mono_us();
    if (x->st == KS_NEW && lws_dll2_is_detached(&x->wlink) && lws_dll2_is_detached(&x->olink))
        want_write(x);
    return x->st != KS_REFUSED;
}

bool kk_sub_holds(const kk_sub_slot *s, const kk_bg *bg, int64_t *last_used)
{
    const kk_sub *x = lookup_bg(s, bg);
    /* a transient refusal is no home: another connection may do better */
    if (!x || (x->st == KS_REFUSED && !x->final))
        return false;
    *last_used = x->last_used;
    return true;
}

void kk_sub_claim(kk_sub_slot *s, const kk_bg *bg)
{
    bool made;
    kk_sub *x = of_job(s, bg, true, &made);
    if (!x)
        return; /* GCOVR_EXCL_LINE: allocation failure (the gate makes it, or fails the call) */
    x->last_used = kd_mono_us();
    if (made) /* forgotten if unused */
        arm(x, x->last_used + (int64_t)s->all->cfg.monitor_duration_s * SEC);
}

bool kk_sub_wanted(const kk_sub_slot *s)
{
    return s->wq.head != NULL;
}

int kk_sub_write(kk_sub_slot *s, kk_conn *c)
{
    if (!s->wq.head)
        return 0;
    kk_sub *x = lws_container_of(s->wq.head, kk_sub, wlink);
    const kk_sub_cfg *cfg = &s->all->cfg;
    int64_t id = kk_pool_next_id(s->link->pool);
    const char *topics[] = {"call_state/+/+", "+/status"};
    kd_err e = {0};
    char *text = kd_kone_msg_monitor(x->building, x->group, id, cfg->sub_name,
                                     cfg->monitor_duration_s, topics, 2, &e);
    if (!text) { /* out of memory: try again on the next WRITEABLE */
        kd_error("kone: slot %d: %s", s->link->idx, e.msg);
        return 0;
    }
    if (kk_conn_send_owned(c, text))
        return -1; /* stays queued: the connection closes and it is made again */
    lws_dll2_remove(&x->wlink);
    lws_dll2_add_tail(&x->olink, &s->out);
    x->req_id = id;
    x->sent_mono = kd_mono_us();
    arm(x, x->sent_mono + cfg->request_timeout_us);
    kd_debug("kone: slot %d: subscribing to call states of %s group %s", s->link->idx, x->building,
             x->group);
    return 1;
}

/* The subscription could not be made or renewed: final (4xx) or not; what says why. */
static void refused(kk_sub *x, bool final, const char *what)
{
    kk_sub_slot *s = x->slot;
    int64_t now = kd_mono_us();
    int64_t backoff = RETRY_MIN_US << (x->refusals < 5 ? x->refusals : 5);
    if (backoff > RETRY_MAX_US)
        backoff = RETRY_MAX_US;
    x->refusals++;
    snprintf(x->why, sizeof x->why, "site-monitoring subscription of %s group %s %s", x->building,
             x->group, what);
    if (x->st == KS_ACTIVE && now < x->expires && !final) {
        /* a renewal failed but the subscription still runs: try again soon */
        kd_warn("kone: slot %d: %s; trying again", s->link->idx, x->why);
        x->renew_at = now + backoff;
        arm(x, x->renew_at < x->expires ? x->renew_at : x->expires);
        return;
    }
    kd_warn("kone: slot %d: %s%s", s->link->idx, x->why,
            final ? "; calls go on without following their states" : "; its calls fail");
    x->st = KS_REFUSED;
    x->final = final;
    x->retry_at = now + backoff;
    kk_tmr_cancel(&x->tmr);
    release(x, final ? KK_GATE_GO : KK_GATE_FAIL);
}

bool kk_sub_answer(kk_sub_slot *s, const kd_kone_msg *m)
{
    if (!m->has_request_id)
        return false;
    kk_sub *x = NULL;
    for (lws_dll2_t *d = s->out.head; d && !x; d = d->next) {
        kk_sub *y = lws_container_of(d, kk_sub, olink);
        if (y->req_id == m->request_id)
            x = y;
    }
    if (!x)
        return false;
    const kk_sub_cfg *cfg = &s->all->cfg;
    int64_t now = kd_mono_us();
    lws_dll2_remove(&x->olink);
    x->req_id = 0;
    m_request(s->all, m->status, now - x->sent_mono);
    const char *text = m->message[0] ? m->message : "no message";
    switch (kd_kone_status_classify(m->status)) {
    case KD_KONE_ST_OK:
        x->st = KS_ACTIVE;
        x->final = false;
        x->refusals = 0;
        x->why[0] = '\0';
        x->expires = x->sent_mono + (int64_t)cfg->monitor_duration_s * SEC;
        x->renew_at = x->sent_mono + (int64_t)cfg->monitor_duration_s * SEC * 4 / 5;
        arm(x, x->renew_at);
        release(x, KK_GATE_GO);
        return true;
    case KD_KONE_ST_AUTH: {
        /* made again on the next connection, opened with a fresh token */
        kk_conn *c = kk_link_active(s->link);
        if (c) {
            kd_kone_tokens_invalidate(s->link->token, c->token_gen);
            kk_conn_kill(c);
        }
        return true;
    }
    case KD_KONE_ST_REJECTED:
    case KD_KONE_ST_TRANSIENT: {
        char what[100];
        snprintf(what, sizeof what, "answered %d (%.60s)", m->status, text);
        refused(x, kd_kone_status_classify(m->status) == KD_KONE_ST_REJECTED, what);
        return true;
    }
    }
    return true;
}

/* Has another ready slot become the home of x's building and group (used more recently,
 * after a failover)? Then x is kept only while calls on its own slot need it. */
static bool superseded(const kk_sub *x)
{
    const kk_subs *ss = x->slot->all;
    for (int i = 0; i < ss->pool->n_links; i++) {
        const kk_sub_slot *t = ss->slots[i];
        const kk_sub *y = !t || t == x->slot ? NULL : lookup_h(t, x->building, x->group, x->hash);
        if (y && kk_link_ready(t->link) && y->st != KS_REFUSED && y->last_used > x->last_used)
            return true;
    }
    return false;
}

/* Is any call of the subscription's building and group still on the slot? */
static bool in_use(kk_sub *x, int64_t now)
{
    kk_sub_slot *s = x->slot;
    if (now - x->last_used < (int64_t)s->all->cfg.monitor_duration_s * SEC && !superseded(x))
        return true;
    return s->all->ops->has_job(s, x->building, x->group);
}

static void sub_timer(kk_tmr *tm)
{
    kk_sub *x = lws_container_of(tm, kk_sub, tmr);
    kk_sub_slot *s = x->slot;
    const kk_sub_cfg *cfg = &s->all->cfg;
    int64_t now = kd_mono_us();
    if (x->req_id) { /* written: its answer is due */
        if (now >= x->sent_mono + cfg->request_timeout_us) {
            lws_dll2_remove(&x->olink);
            x->req_id = 0;
            m_request(s->all, KD_KONE_STATUS_TIMEOUT, now - x->sent_mono);
            char what[64];
            snprintf(what, sizeof what, "unanswered in %" PRId64 " ms",
                     cfg->request_timeout_us / 1000);
            refused(x, false, what);
        } else {
            arm(x, x->sent_mono + cfg->request_timeout_us);
        }
        return;
    }
    if (x->st == KS_NEW && lws_dll2_is_detached(&x->wlink) && !x->waiters.count) {
        /* claimed (kk_sub_claim) and never requested: kept while its calls are on the slot */
        if (in_use(x, now))
            arm(x, now + (int64_t)cfg->monitor_duration_s * SEC);
        else
            destroy(x);
        return;
    }
    if (x->st != KS_ACTIVE)
        return;
    if (!in_use(x, now)) {
        kd_debug("kone: slot %d: subscription of %s group %s unused; let it lapse", s->link->idx,
                 x->building, x->group);
        destroy(x);
        return;
    }
    if (now >= x->expires) { /* renewals failed until it lapsed: make it anew */
        x->st = KS_NEW;
        want_write(x);
        return;
    }
    if (now >= x->renew_at)
        want_write(x);
    else
        arm(x, x->renew_at);
}

/* Index in cfg->modes of a refused lift_mode, or -1. */
static int refused_index(const kk_sub_cfg *cfg, int64_t mode)
{
    for (int i = 0; i < cfg->n_modes; i++)
        if (cfg->modes[i].code == mode)
            return i;
    return -1;
}

void kk_sub_lift_status(kk_sub_slot *s, const kd_kone_msg *m)
{
    char b[sizeof((kk_sub *)0)->building];
    kd_kone_building_id(m->building, b, sizeof b);
    kk_sub *x = m->has_lift_mode ? lookup(s, b, m->group) : NULL;
    if (!x)
        return;
    int i = 0;
    while (i < x->n_lifts && strcmp(x->lifts[i].lift, m->lift) != 0)
        i++;
    if (i == x->n_lifts) {
        if (x->n_lifts == KK_SUB_LIFTS)
            return;
        kd_str_copy(x->lifts[x->n_lifts++].lift, sizeof x->lifts[0].lift, m->lift);
    }
    x->lifts[i].mode = m->lift_mode;
    /* refused when every lift heard from is in a refused mode: one lift in service for
     * maintenance does not stop a group */
    int blocked = refused_index(&s->all->cfg, x->lifts[0].mode);
    for (int l = 1; l < x->n_lifts && blocked >= 0; l++)
        if (refused_index(&s->all->cfg, x->lifts[l].mode) < 0)
            blocked = -1;
    if (blocked == x->refused_mode)
        return;
    kd_log_ctx lc = {NULL, NULL, x->building};
    if (blocked >= 0)
        kd_log(KD_LOG_WARN, &lc,
               "kone: slot %d: group %s of %s is in %s mode (lift_mode %" PRId64
               "): its calls are rejected group_mode, not sent",
               s->link->idx, x->group, x->building, s->all->cfg.modes[blocked].name,
               s->all->cfg.modes[blocked].code);
    else
        kd_log(KD_LOG_INFO, &lc,
               "kone: slot %d: group %s of %s is called again (lift_mode %" PRId64 ")",
               s->link->idx, x->group, x->building, m->lift_mode);
    x->refused_mode = blocked;
}

void kk_subs_conn_lost(kk_sub_slot *s, bool release_waiters)
{
    for (unsigned i = 0; i < s->nb; i++)
        for (kk_sub *x = s->hash[i]; x; x = x->hnext) {
            kk_tmr_cancel(&x->tmr);
            kk_dll_detach(&x->olink);
            kk_dll_detach(&x->wlink);
            x->req_id = 0;
            x->st = KS_NEW;
            x->final = false;
            x->refusals = 0;
            x->n_lifts = 0; /* modes may change unseen while disconnected */
            x->refused_mode = -1;
            if (!release_waiters)
                continue;
            while (x->waiters.head) { /* back to the slot's queue, to be moved elsewhere */
                kk_sub_job *j = lws_container_of(x->waiters.head, kk_sub_job, wait);
                lws_dll2_remove(&j->wait);
                s->all->ops->requeue(s, j);
            }
        }
}

void kk_subs_session_restored(kk_sub_slot *s)
{
    int64_t now = kd_mono_us();
    for (unsigned i = 0; i < s->nb; i++) {
        kk_sub *next;
        for (kk_sub *x = s->hash[i]; x; x = next) {
            next = x->hnext;
            if (!x->waiters.count && !in_use(x, now)) {
                destroy(x);
                continue;
            }
            x->st = KS_NEW;
            want_write(x);
        }
    }
}

bool kk_sub_ping_target(const kk_sub_slot *s, const char **building, const char **group)
{
    const kk_sub *best = NULL;
    for (unsigned i = 0; i < s->nb; i++)
        for (const kk_sub *x = s->hash[i]; x; x = x->hnext)
            if (x->st == KS_ACTIVE && (!best || x->last_used > best->last_used))
                best = x;
    if (best) {
        *building = best->building;
        *group = best->group;
        return true;
    }
    const kk_scope *sc = s->all->scope;
    for (int i = 0; i < sc->n_buildings; i++) /* the first its token serves */
        if (kk_scope_token_of(sc, sc->buildings[i]) == s->tok) {
            *building = sc->buildings[i];
            *group = "1";
            return true;
        }
    return false;
}

void kk_subs_free(kk_sub_slot *s)
{
    for (unsigned i = 0; i < s->nb; i++)
        while (s->hash[i]) {
            kk_sub *x = s->hash[i];
            // NOLINTNEXTLINE(clang-analyzer-unix.Malloc): destroy() unlinks x from this bucket
            while (x->waiters.head)
                lws_dll2_remove(x->waiters.head);
            destroy(x);
        }
    if (s->hash != s->hash0)
        free(s->hash);
    s->hash = s->hash0;
    s->nb = KK_SUB_BUCKETS;
}

/* ------------------------------------------------------------------ configuration */

/* kone.lift_modes_refused: "code:NAME,code:NAME". */
static int load_modes(kk_sub_cfg *c, const char *list, kd_err *err)
{
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        char *end;
        long long code = strtoll(p, &end, 10);
        size_t n = end[0] == ':' ? strcspn(end + 1, " ,") : 0;
        if (end == p || !n || n >= sizeof c->modes[0].name || c->n_modes >= KK_MODES_MAX)
            return kd_err_set(err, KD_ERR_INVALID,
                              "kone.lift_modes_refused: expected code:NAME pairs separated by "
                              "commas (at most %d), got '%.80s'",
                              KK_MODES_MAX, list);
        c->modes[c->n_modes].code = code;
        snprintf(c->modes[c->n_modes].name, sizeof c->modes[0].name, "%.*s", (int)n, end + 1);
        c->n_modes++;
        p = end + 1 + n;
    }
    return 0;
}

int kk_sub_config(kk_sub_cfg *c, const kd_config *cfg, kd_err *err)
{
    c->monitor_duration_s = (int)kd_cfg_int(cfg, KD_CFG_KONE_MONITOR_DURATION_S);
    c->request_timeout_us = kd_cfg_int(cfg, KD_CFG_KONE_REQUEST_TIMEOUT_MS) * 1000;
    snprintf(c->sub_name, sizeof c->sub_name, "kone-dispatch-%d", (int)getpid());
    return load_modes(c, kd_cfg_str(cfg, KD_CFG_KONE_LIFT_MODES_REFUSED), err);
}
