/* kone_site.c: the cached configuration of each building group, and the local check of
 * calls against it (contract: kone_site.h; see kone_validate.h).
 *
 * Layer (docs/architecture.md): policy the call layer asks (kk_site_gate); what it later
 * decides for a job it holds waiting goes back through kk_sites.released, never by name. It
 * includes no kone_int.h: the call layer's structs are seen only through the narrow ones of
 * kone_site.h (kk_sites, kk_site_slot, kk_site_job).
 *
 * One entry per worker, building and group (KONE's config and actions are per group), made
 * on the first call there. Its life, decided by kd_kval_decide on the loop's clock:
 *
 *   (none) --first call--> FETCHING --both answers 2xx--> VALID --kone.config_ttl_s, or a
 *                              |                            |   refusal that contradicts
 *                              |                            |   it--> FETCHING again
 *                              \--non-2xx, unanswered in kone.request_timeout_ms, the slot
 *                                 lost before writing--> FAILED: calls go on unchecked
 *                                 (kone_calls_unvalidated_total) until the backoff (1 s
 *                                 doubling to 60 s) passes, then FETCHING again
 *
 * A fetch is two requests, `common-api` config then actions, written on the slot of the
 * call that needed them (any ready slot will do: the cache is the worker's, not the
 * connection's) before any call waiting on that slot. Calls arriving meanwhile wait on the
 * entry (kk_site.waiters), their own deadlines running (the call layer's), and pass the gate
 * again when it ends. A call the cache passed that KONE then refuses as if the
 * configuration had changed (an unknown area or action, a disabled action, 404) marks the
 * entry stale: the next call there fetches it again.
 *
 * Memory: at most KK_MAX_SITES entries; when full, entries unused for a whole TTL are
 * forgotten, and a call that finds no room goes on unchecked.
 */
#include "kone_site.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_log.h"
#include "kd_list.h"
#include "kone_dll.h"
#include "kd_time.h"
#include "kd_str.h"

static void site_timer(kk_tmr *tm);

/* The owner's metric hooks (kd_kone_metrics), each a no-op when not given. */
static void m_unvalidated(const kk_sites *ss)
{
    if (ss->hooks->metrics.unvalidated)
        ss->hooks->metrics.unvalidated(ss->hooks->arg);
}
static void m_local_reject(const kk_sites *ss, const char *reason)
{
    if (ss->hooks->metrics.local_reject)
        ss->hooks->metrics.local_reject(reason, ss->hooks->arg);
}
static void m_request(const kk_sites *ss, const char *type, int status, int64_t rtt_us)
{
    if (ss->hooks->metrics.api_request)
        ss->hooks->metrics.api_request(type, status, rtt_us, ss->hooks->arg);
}

void kk_sites_init(kk_sites *ss, kk_pool *pool, const kd_kone_hooks *hooks,
                   void (*released)(kk_site_job *sj))
{
    ss->pool = pool;
    ss->hooks = hooks;
    ss->released = released;
}

void kk_site_slot_init(kk_site_slot *s, kk_sites *sites, kk_link *link)
{
    s->sites = sites;
    s->link = link;
}

void kk_site_forget(kk_site_job *sj)
{
    kk_dll_detach(&sj->wait);
}

/* The entry of a job's building and group: the hash compared before the texts. */
static kk_site *lookup(kk_sites *ss, const kk_bg *bg)
{
    for (kk_site *x = ss->hash[bg->hash % KK_SITE_BUCKETS]; x; x = x->hnext)
        if (x->hash == bg->hash && !strcmp(x->building, bg->building) &&
            !strcmp(x->group, bg->group))
            return x;
    return NULL;
}

static bool busy(const kk_site *x)
{
    return x->slot || x->waiters.count;
}

static void destroy(kk_site *x)
{
    kk_sites *ss = x->sites;
    KD_SLIST_UNLINK(ss->hash[x->hash % KK_SITE_BUCKETS], x, hnext);
    ss->n--;
    kk_tmr_cancel(&x->tmr);
    kk_dll_detach(&x->wlink);
    kk_dll_detach(&x->olink);
    while (x->waiters.head)
        lws_dll2_remove(x->waiters.head);
    kd_kval_free(&x->cfg);
    free(x);
}

/* Room for one more: entries nobody used for a whole TTL go. */
static void sweep(kk_sites *ss, int64_t now)
{
    for (int i = 0; i < KK_SITE_BUCKETS; i++) {
        kk_site *next;
        for (kk_site *x = ss->hash[i]; x; x = next) {
            next = x->hnext;
            if (!busy(x) && now - x->last_used >= ss->cfg.config_ttl_us)
                destroy(x);
        }
    }
}

static kk_site *create(kk_sites *ss, const kk_bg *bg, int64_t now)
{
    if (ss->n >= KK_MAX_SITES)
        sweep(ss, now);
    if (ss->n >= KK_MAX_SITES)
        return NULL;
    kk_site *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->sites = ss;
    kd_str_copy(x->building, sizeof x->building, bg->building);
    kd_str_copy(x->group, sizeof x->group, bg->group);
    x->fresh.ttl_us = ss->cfg.config_ttl_us;
    x->hash = bg->hash;
    x->hnext = ss->hash[x->hash % KK_SITE_BUCKETS];
    ss->hash[x->hash % KK_SITE_BUCKETS] = x;
    ss->n++;
    return x;
}

/* Every waiting call passes the gate again (the head each time: a call may finish). */
static void release(kk_site *x)
{
    while (x->waiters.head) {
        kk_site_job *j = lws_container_of(x->waiters.head, kk_site_job, wait);
        lws_dll2_remove(&j->wait);
        x->sites->released(j);
    }
}

static void fetch_end(kk_site *x, bool ok, const char *why)
{
    int64_t now = kd_mono_us();
    kk_tmr_cancel(&x->tmr);
    kk_dll_detach(&x->wlink);
    kk_dll_detach(&x->olink);
    x->slot = NULL;
    x->want_config = x->want_actions = false;
    x->config_req_id = x->actions_req_id = 0;
    kd_kval_fetched(&x->fresh, ok, x->asked_mono, now);
    if (ok)
        kd_debug("kone: configuration of %s group %s cached (%zu areas, %zu actions)", x->building,
                 x->group, x->cfg.n_areas, x->cfg.n_actions);
    else
        kd_warn("kone: configuration of %s group %s not fetched: %s; its calls go unchecked "
                "for %" PRId64 " ms, then it is asked again",
                x->building, x->group, why, (x->fresh.retry_at - now) / 1000);
    release(x);
}

static void fetch_start(kk_site *x, kk_site_slot *s)
{
    x->slot = s;
    x->asked_mono = kd_mono_us();
    x->want_config = x->want_actions = true;
    lws_dll2_add_tail(&x->wlink, &s->wq);
    kk_link_want_write(s->link);
}

/* The job waits for x's fetch, to be written on s when it ends. */
static kk_gate park(kk_site *x, kk_site_slot *s, kk_site_job *j)
{
    j->slot = s;
    lws_dll2_add_tail(&j->wait, &x->waiters);
    return KK_GATE_WAIT;
}

kk_gate kk_site_gate(kk_site_slot *s, kk_site_job *j, char *code, size_t code_len, char *why,
                     size_t len)
{
    kk_sites *ss = s->sites;
    if (!ss->cfg.validate_locally || j->passed)
        return KK_GATE_GO;
    int64_t now = kd_mono_us();
    kk_site *x = lookup(ss, j->bg);
    if (!x && !(x = create(ss, j->bg, now))) {
        j->passed = true; /* no room: unchecked */
        m_unvalidated(ss);
        return KK_GATE_GO;
    }
    x->last_used = now;
    if (x->slot) /* a fetch is under way */
        return park(x, s, j);
    switch (kd_kval_decide(&x->fresh, now)) {
    case KD_KVAL_FETCH: fetch_start(x, s); return park(x, s, j);
    case KD_KVAL_UNVALIDATED:
        j->passed = true;
        m_unvalidated(ss);
        return KK_GATE_GO;
    case KD_KVAL_USE: break;
    }
    char text[200];
    kd_kval_reason r = kd_kval_check(&x->cfg, j->job, code, code_len, text, sizeof text);
    if (r == KD_KVAL_OK) {
        j->passed = j->checked = true;
        return KK_GATE_GO;
    }
    /* KONE's own words, so that consumers matching on them see the same thing; the result
     * says validated_locally, and the log line says where the verdict came from */
    m_local_reject(ss, kd_kval_reason_name(r));
    snprintf(why, len, "%s%s", r == KD_KVAL_SAME_FLOOR ? "call cancelled: " : "", text);
    kd_log_ctx lc = {j->job->job_id, j->job->trace_id, j->job->building_id};
    kd_log(KD_LOG_DEBUG, &lc,
           "kone: %s; validated locally against the configuration of %s "
           "group %s: no call made",
           why, x->building, x->group);
    return KK_GATE_REFUSE;
}

bool kk_site_wanted(const kk_site_slot *s)
{
    return s->wq.head != NULL;
}

int kk_site_write(kk_site_slot *s, kk_conn *c)
{
    if (!s->wq.head)
        return 0;
    kk_site *x = lws_container_of(s->wq.head, kk_site, wlink);
    bool cfg = x->want_config;
    int64_t id = kk_pool_next_id(s->link->pool);
    kd_err e = {0};
    char *text = kd_kone_msg_common(cfg ? "config" : "actions", x->building, x->group, id, &e);
    if (!text) {
        fetch_end(x, false, e.msg);
        return 0;
    }
    if (kk_conn_send_owned(c, text))
        return -1; /* stays queued: the connection closes (kk_sites_conn_lost) */
    if (cfg) {
        x->want_config = false;
        x->config_req_id = id;
    } else {
        x->want_actions = false;
        x->actions_req_id = id;
    }
    x->sent_mono = kd_mono_us();
    if (!x->want_config && !x->want_actions)
        lws_dll2_remove(&x->wlink);
    if (lws_dll2_is_detached(&x->olink))
        lws_dll2_add_tail(&x->olink, &s->sites->out);
    kk_tmr_in(&s->sites->pool->timers, &x->tmr, site_timer, s->sites->cfg.request_timeout_us);
    kd_debug("kone: slot %d: fetching the %s of %s group %s", s->link->idx,
             cfg ? "config" : "actions", x->building, x->group);
    return 1;
}

bool kk_site_answer(kk_site_slot *s, const kd_kone_msg *m, const char *buf, size_t len)
{
    if (!m->has_request_id || !m->request_id)
        return false;
    kk_site *x = NULL;
    for (lws_dll2_t *d = s->sites->out.head; d && !x; d = d->next) {
        kk_site *y = lws_container_of(d, kk_site, olink);
        if (y->config_req_id == m->request_id || y->actions_req_id == m->request_id)
            x = y;
    }
    if (!x)
        return false;
    bool cfg = x->config_req_id == m->request_id;
    int64_t now = kd_mono_us();
    m_request(x->sites, cfg ? "config" : "actions", m->status, now - x->sent_mono);
    if (cfg)
        x->config_req_id = 0;
    else
        x->actions_req_id = 0;
    if (kd_kone_status_classify(m->status) != KD_KONE_ST_OK) {
        char why[160];
        snprintf(why, sizeof why, "%s answered %d (%.80s)", cfg ? "config" : "actions", m->status,
                 m->message[0] ? m->message : "no message");
        fetch_end(x, false, why);
        return true;
    }
    kd_err e = {0};
    int rc = cfg ? kd_kval_parse_config(&x->cfg, buf, len, &e)
                 : kd_kval_parse_actions(&x->cfg, buf, len, &e);
    if (rc) {
        /* KONE answered in a shape this parser does not read: that part checks nothing
         * until the next fetch (a TTL later), rather than fetching it again and again */
        kd_warn("kone: %s of %s group %s not understood (%s); not checked against it",
                cfg ? "config" : "actions", x->building, x->group, e.msg);
        if (cfg) {
            x->cfg.have_config = false;
            x->cfg.n_areas = 0;
        } else {
            x->cfg.have_actions = false;
            x->cfg.n_actions = 0;
        }
    }
    if (!x->want_config && !x->want_actions && !x->config_req_id && !x->actions_req_id)
        fetch_end(x, true, NULL);
    return true;
}

static void site_timer(kk_tmr *tm)
{
    kk_site *x = lws_container_of(tm, kk_site, tmr);
    if (!x->config_req_id && !x->actions_req_id)
        return;
    kk_sites *ss = x->sites;
    int64_t now = kd_mono_us(), due = x->sent_mono + ss->cfg.request_timeout_us;
    if (now < due) {
        kk_tmr_at(&ss->pool->timers, &x->tmr, site_timer, due);
        return;
    }
    m_request(ss, x->config_req_id ? "config" : "actions", KD_KONE_STATUS_TIMEOUT,
              now - x->sent_mono);
    char why[64];
    snprintf(why, sizeof why, "unanswered in %" PRId64 " ms", ss->cfg.request_timeout_us / 1000);
    fetch_end(x, false, why);
}

void kk_site_refused(kk_sites *ss, const kk_site_job *j, const char *code, const char *msg)
{
    if (!j->checked || !kd_kval_contradicts(code, msg))
        return;
    const char *b = j->bg->building, *g = j->bg->group;
    kk_site *x = lookup(ss, j->bg);
    if (!x || x->fresh.stale)
        return;
    kd_kval_contradicted(&x->fresh);
    kd_info("kone: KONE refused a call the configuration of %s group %s had passed (%s: "
            "%.100s); fetching it again before the next call there",
            b, g, code, msg);
}

void kk_sites_conn_lost(kk_site_slot *s)
{
    kk_sites *ss = s->sites;
    for (int i = 0; i < KK_SITE_BUCKETS; i++)
        for (kk_site *x = ss->hash[i]; x; x = x->hnext) {
            lws_dll2_t *d, *next;
            for (d = x->waiters.head; d; d = next) { /* this slot's calls move on */
                next = d->next;
                kk_site_job *j = lws_container_of(d, kk_site_job, wait);
                if (j->slot != s)
                    continue;
                lws_dll2_remove(&j->wait);
                ss->released(j); /* queued on its slot: the call layer moves it */
            }
        }
    /* fetches not fully written on s: nothing will answer them */
    while (s->wq.head)
        fetch_end(lws_container_of(s->wq.head, kk_site, wlink), false, "its connection was lost");
}

void kk_sites_free(kk_sites *ss)
{
    for (int i = 0; i < KK_SITE_BUCKETS; i++)
        while (ss->hash[i])
            // NOLINTNEXTLINE(clang-analyzer-unix.Malloc): destroy() unlinks it from this bucket
            destroy(ss->hash[i]);
}

void kk_site_config(kk_site_cfg *c, const kd_config *cfg)
{
    c->validate_locally = kd_cfg_bool(cfg, KD_CFG_KONE_VALIDATE_LOCALLY);
    c->config_ttl_us = kd_cfg_int(cfg, KD_CFG_KONE_CONFIG_TTL_S) * 1000000;
    c->request_timeout_us = kd_cfg_int(cfg, KD_CFG_KONE_REQUEST_TIMEOUT_MS) * 1000;
}
