/* kone_site.c: the cached configuration of each building group, and the local check of
 * calls against it (contract: kone_site.h; see kone_validate.h).
 *
 * Layer (kone_int.h): policy the call layer asks (kk_site_gate); what it later decides for a
 * job it holds waiting goes back through kd_kone.wake (kk_wake_ops), never by name.
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
 * entry (kk_site.waiters), their own deadlines running (kone_call.c), and pass the gate
 * again when it ends. A call the cache passed that KONE then refuses as if the
 * configuration had changed (an unknown area or action, a disabled action, 404) marks the
 * entry stale: the next call there fetches it again.
 *
 * Memory: at most KK_MAX_SITES entries; when full, entries unused for a whole TTL are
 * forgotten, and a call that finds no room goes on unchecked.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_log.h"
#include "kone_int.h"

static void site_timer(lws_sorted_usec_list_t *sul);

static unsigned hash_of(const char *building, const char *group)
{
    return kk_bg_hash(building, group) % KK_SITE_BUCKETS;
}

#define key_of kk_bg_key

static kk_site *lookup(kd_kone *k, const char *b, const char *g)
{
    for (kk_site *x = k->site_hash[hash_of(b, g)]; x; x = x->hnext)
        if (!strcmp(x->building, b) && !strcmp(x->group, g))
            return x;
    return NULL;
}

static bool busy(const kk_site *x)
{
    return x->slot || x->waiters.count;
}

static void destroy(kk_site *x)
{
    kd_kone *k = x->k;
    for (kk_site **pp = &k->site_hash[hash_of(x->building, x->group)]; *pp; pp = &(*pp)->hnext)
        if (*pp == x) {
            *pp = x->hnext;
            break;
        }
    k->n_sites--;
    lws_sul_cancel(&x->sul);
    if (!lws_dll2_is_detached(&x->wlink))
        lws_dll2_remove(&x->wlink);
    if (!lws_dll2_is_detached(&x->olink))
        lws_dll2_remove(&x->olink);
    while (x->waiters.head)
        lws_dll2_remove(x->waiters.head);
    kd_kval_free(&x->cfg);
    free(x);
}

/* Room for one more: entries nobody used for a whole TTL go. */
static void sweep(kd_kone *k, int64_t now)
{
    for (int i = 0; i < KK_SITE_BUCKETS; i++) {
        kk_site *next;
        for (kk_site *x = k->site_hash[i]; x; x = next) {
            next = x->hnext;
            if (!busy(x) && now - x->last_used >= k->site_cfg.config_ttl_us)
                destroy(x);
        }
    }
}

static kk_site *create(kd_kone *k, const char *b, const char *g, int64_t now)
{
    if (k->n_sites >= KK_MAX_SITES)
        sweep(k, now);
    if (k->n_sites >= KK_MAX_SITES)
        return NULL;
    kk_site *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->k = k;
    snprintf(x->building, sizeof x->building, "%s", b);
    snprintf(x->group, sizeof x->group, "%s", g);
    x->fresh.ttl_us = k->site_cfg.config_ttl_us;
    unsigned h = hash_of(b, g);
    x->hnext = k->site_hash[h];
    k->site_hash[h] = x;
    k->n_sites++;
    return x;
}

/* Every waiting call passes the gate again (the head each time: a call may finish). */
static void release(kk_site *x)
{
    while (x->waiters.head) {
        kk_job *j = lws_container_of(x->waiters.head, kk_job, wlink);
        lws_dll2_remove(&j->wlink);
        j->k->wake->site_released(j);
    }
}

static void fetch_end(kk_site *x, bool ok, const char *why)
{
    int64_t now = kd_mono_us();
    lws_sul_cancel(&x->sul);
    if (!lws_dll2_is_detached(&x->wlink))
        lws_dll2_remove(&x->wlink);
    if (!lws_dll2_is_detached(&x->olink))
        lws_dll2_remove(&x->olink);
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

static void fetch_start(kk_site *x, kk_slot *s)
{
    x->slot = s;
    x->asked_mono = kd_mono_us();
    x->want_config = x->want_actions = true;
    lws_dll2_add_tail(&x->wlink, &s->site_wq);
    kk_slot_want_write(s);
}

kk_gate kk_site_gate(kk_slot *s, kk_job *j, char *code, size_t code_len, char *why, size_t len)
{
    kd_kone *k = j->k;
    if (!k->site_cfg.validate_locally || j->site.passed)
        return KK_GATE_GO;
    char b[sizeof((kk_site *)0)->building];
    const char *g;
    key_of(&j->run->job, b, sizeof b, &g);
    int64_t now = kd_mono_us();
    kk_site *x = lookup(k, b, g);
    if (!x && !(x = create(k, b, g, now))) {
        j->site.passed = true; /* no room: unchecked */
        kk_m_unvalidated(s->k);
        return KK_GATE_GO;
    }
    x->last_used = now;
    if (x->slot) { /* a fetch is under way */
        lws_dll2_add_tail(&j->wlink, &x->waiters);
        return KK_GATE_WAIT;
    }
    switch (kd_kval_decide(&x->fresh, now)) {
    case KD_KVAL_FETCH:
        fetch_start(x, s);
        lws_dll2_add_tail(&j->wlink, &x->waiters);
        return KK_GATE_WAIT;
    case KD_KVAL_UNVALIDATED:
        j->site.passed = true;
        kk_m_unvalidated(s->k);
        return KK_GATE_GO;
    case KD_KVAL_USE: break;
    }
    char text[200];
    kd_kval_reason r = kd_kval_check(&x->cfg, &j->run->job, code, code_len, text, sizeof text);
    if (r == KD_KVAL_OK) {
        j->site.passed = j->site.checked = true;
        return KK_GATE_GO;
    }
    /* KONE's own words, so that consumers matching on them see the same thing; the result
     * says validated_locally, and the log line says where the verdict came from */
    kk_m_local_reject(s->k, kd_kval_reason_name(r));
    snprintf(why, len, "%s%s", r == KD_KVAL_SAME_FLOOR ? "call cancelled: " : "", text);
    kd_log_ctx lc = {j->run->job.job_id, j->run->job.trace_id, j->run->job.building_id};
    kd_log(KD_LOG_DEBUG, &lc,
           "kone: %s; validated locally against the configuration of %s "
           "group %s: no call made",
           why, x->building, x->group);
    return KK_GATE_REFUSE;
}

bool kk_site_wanted(const kk_slot *s)
{
    return s->site_wq.head != NULL;
}

int kk_site_write(kk_slot *s, kk_conn *c)
{
    if (!s->site_wq.head)
        return 0;
    kk_site *x = lws_container_of(s->site_wq.head, kk_site, wlink);
    bool cfg = x->want_config;
    int64_t id = kk_slot_next_id(s);
    kd_err e = {0};
    char *text = kd_kone_msg_common(cfg ? "config" : "actions", x->building, x->group, id, &e);
    if (!text) {
        fetch_end(x, false, e.msg);
        return 0;
    }
    int rc = kk_conn_send(c, text);
    free(text);
    if (rc)
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
        lws_dll2_add_tail(&x->olink, &s->k->site_out);
    lws_sul_schedule(s->k->ctx, 0, &x->sul, site_timer, s->k->site_cfg.request_timeout_us);
    kd_debug("kone: slot %d: fetching the %s of %s group %s", s->link.idx,
             cfg ? "config" : "actions", x->building, x->group);
    return 1;
}

bool kk_site_answer(kk_slot *s, const kd_kone_msg *m, const char *buf, size_t len)
{
    if (!m->has_request_id || !m->request_id)
        return false;
    kk_site *x = NULL;
    for (lws_dll2_t *d = s->k->site_out.head; d && !x; d = d->next) {
        kk_site *y = lws_container_of(d, kk_site, olink);
        if (y->config_req_id == m->request_id || y->actions_req_id == m->request_id)
            x = y;
    }
    if (!x)
        return false;
    bool cfg = x->config_req_id == m->request_id;
    int64_t now = kd_mono_us();
    kk_m_request(x->k, cfg ? "config" : "actions", m->status, now - x->sent_mono);
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

static void site_timer(lws_sorted_usec_list_t *sul)
{
    kk_site *x = lws_container_of(sul, kk_site, sul);
    if (!x->config_req_id && !x->actions_req_id)
        return;
    int64_t now = kd_mono_us(), due = x->sent_mono + x->k->site_cfg.request_timeout_us;
    if (now < due) {
        lws_sul_schedule(x->k->ctx, 0, &x->sul, site_timer, due - now);
        return;
    }
    kk_m_request(x->k, x->config_req_id ? "config" : "actions", KD_KONE_STATUS_TIMEOUT,
                 now - x->sent_mono);
    char why[64];
    snprintf(why, sizeof why, "unanswered in %" PRId64 " ms",
             x->k->site_cfg.request_timeout_us / 1000);
    fetch_end(x, false, why);
}

void kk_site_refused(kk_job *j, const char *code, const char *msg)
{
    if (!j->site.checked || !kd_kval_contradicts(code, msg))
        return;
    char b[sizeof((kk_site *)0)->building];
    const char *g;
    key_of(&j->run->job, b, sizeof b, &g);
    kk_site *x = lookup(j->k, b, g);
    if (!x || x->fresh.stale)
        return;
    kd_kval_contradicted(&x->fresh);
    kd_info("kone: KONE refused a call the configuration of %s group %s had passed (%s: "
            "%.100s); fetching it again before the next call there",
            b, g, code, msg);
}

void kk_sites_conn_lost(kk_slot *s)
{
    kd_kone *k = s->k;
    for (int i = 0; i < KK_SITE_BUCKETS; i++)
        for (kk_site *x = k->site_hash[i]; x; x = x->hnext) {
            lws_dll2_t *d, *next;
            for (d = x->waiters.head; d; d = next) { /* this slot's calls move on */
                next = d->next;
                kk_job *j = lws_container_of(d, kk_job, wlink);
                if (j->slot != s)
                    continue;
                lws_dll2_remove(&j->wlink);
                lws_dll2_add_tail(&j->wlink, &s->wq);
            }
        }
    /* fetches not fully written on s: nothing will answer them */
    while (s->site_wq.head)
        fetch_end(lws_container_of(s->site_wq.head, kk_site, wlink), false,
                  "its connection was lost");
}

void kk_sites_free(kd_kone *k)
{
    for (int i = 0; i < KK_SITE_BUCKETS; i++)
        while (k->site_hash[i])
            // NOLINTNEXTLINE(clang-analyzer-unix.Malloc): destroy() unlinks it from this bucket
            destroy(k->site_hash[i]);
}

void kk_site_config(kk_site_cfg *c, const kd_config *cfg)
{
    c->validate_locally = kd_cfg_bool(cfg, KD_CFG_KONE_VALIDATE_LOCALLY);
    c->config_ttl_us = kd_cfg_int(cfg, KD_CFG_KONE_CONFIG_TTL_S) * 1000000;
    c->request_timeout_us = kd_cfg_int(cfg, KD_CFG_KONE_REQUEST_TIMEOUT_MS) * 1000;
}
