/* kone_route.c: the call layer's side of the connection layer's callbacks (kk_conn_ops,
 * kone_conn.h): which module a frame that came in belongs to, which frame goes out first, and
 * what the call layer and its policies do when a slot's session comes back or goes.
 *
 * Contract: kk_route_ops fills a kk_conn_ops (but wakeup, which is kone.c's) whose user is
 * the kd_kone. Every callback runs on the loop thread inside the connection layer and calls
 * down or sideways only: kone_call.c (a job's life), kone_sub.c (subscriptions), kone_site.c
 * (building configurations), kone_bld.c (breakers' pings) and the connection layer's own
 * functions (kk_link_answered). Each callback is handed the connection layer's kk_link and
 * finds the call layer's kk_slot that embeds it (kk_slot_of). The connection layer's two
 * metrics (ready_count, reconnecting) go on to the owner's hooks here, since that layer
 * knows no kd_kone_hooks. Nothing here keeps state.
 *
 * Order matters and is the one the client always had: writes go pings of an open circuit
 * first, then subscriptions (a call waits for its subscription's answer), then configuration
 * fetches (likewise), then the jobs' frames; an answer is offered to a ping, a subscription
 * and a fetch before the jobs.
 */
#include "kd_log.h"
#include "kone_int.h"

static bool route_state_in(kk_link *l, int64_t sid, const char *buf, size_t len, void *user)
{
    (void)user;
    kk_slot *s = kk_slot_of(l);
    if (kk_follows(s, sid))
        return true;
    /* another session's call in a subscribed building, a decided call's later state, or
     * one of ours whose call result has not come yet: kept briefly for that */
    kk_state_unmatched(s, buf, len, sid);
    return false;
}

static void route_frame_in(kk_link *l, const kd_kone_msg *m, const char *buf, size_t len,
                           void *user)
{
    (void)user;
    kk_slot *s = kk_slot_of(l);
    switch (m->kind) {
    case KD_KONE_MSG_ANSWER:
        if (kk_bld_probe_answer(&s->k->blds, &s->link,
                                m)) /* a ping of a building whose circuit is open */
            return;
        if (kk_sub_answer(&s->sub, m))
            return;
        if (kk_site_answer(&s->site, m, buf, len)) /* a configuration fetch */
            return;
        kk_on_answer(s, m);
        kk_link_answered(l);
        return;
    case KD_KONE_MSG_CALL_RESULT:
        kk_on_call_result(s, m);
        kk_link_answered(l);
        return;
    case KD_KONE_MSG_CALL_STATE: kk_on_call_state(s, m); return;
    case KD_KONE_MSG_LIFT_STATUS: kk_sub_lift_status(&s->sub, m); return;
    case KD_KONE_MSG_EVENT:
    case KD_KONE_MSG_UNKNOWN:
    case KD_KONE_MSG_MALFORMED:
        kd_debug("kone: slot %d: ignored a %s frame", s->link.idx, kd_kone_msg_kind_name(m->kind));
        return;
    }
}

static bool route_want_write(const kk_link *l, void *user)
{
    (void)user;
    const kk_slot *s = kk_slot_of_const(l);
    return s->wq.head || kk_bld_probe_wanted(&s->k->blds, &s->link) || kk_sub_wanted(&s->sub) ||
           kk_site_wanted(&s->site);
}

static int route_writable(kk_link *l, kk_conn *c, void *user)
{
    (void)user;
    kk_slot *s = kk_slot_of(l);
    if (kk_bld_probe_wanted(&s->k->blds, &s->link))
        return kk_bld_write_probe(&s->k->blds, &s->link, c) < 0 ? -1 : 0;
    if (kk_sub_wanted(&s->sub)) /* before the calls that wait for it */
        return kk_sub_write(&s->sub, c) < 0 ? -1 : 0;
    if (kk_site_wanted(&s->site)) /* likewise */
        return kk_site_write(&s->site, c) < 0 ? -1 : 0;
    if (s->wq.head) {
        kk_job *j = lws_container_of(s->wq.head, kk_job, wlink);
        return kk_job_write(j, c) ? -1 : 0;
    }
    return 0;
}

static void route_session_restored(kk_link *l, bool resumed, void *user)
{
    kk_slot *s = kk_slot_of(l);
    kk_subs_session_restored(&s->sub); /* before the calls that wait for them */
    kk_jobs_session_restored(s, resumed);
    kk_job_place_waiting(user);
}

static void route_lost(kk_link *l, void *user)
{
    (void)user;
    kk_subs_conn_lost(&kk_slot_of(l)->sub, false);
}

static void route_released(kk_link *l, void *user)
{
    (void)user;
    kk_slot *s = kk_slot_of(l);
    kk_subs_conn_lost(&s->sub, true); /* calls waiting for a subscription move too */
    kk_sites_conn_lost(&s->site);     /* ... and for a configuration */
    kk_jobs_move_unwritten(s);
}

static int route_outstanding(kk_link *l, void *user)
{
    (void)user;
    return kk_slot_outstanding(kk_slot_of(l));
}

static bool route_ping_target(const kk_link *l, const char **building, const char **group,
                              void *user)
{
    (void)user;
    return kk_sub_ping_target(&kk_slot_of_const(l)->sub, building, group);
}

/* The owner's metrics (kd_kone_hooks), which the connection layer does not know. */
static void route_ready_count(int n, void *user)
{
    kk_m_connections(user, n);
}

static void route_reconnecting(void *user)
{
    kk_m_reconnect(user);
}

static void route_protocol_error(int code, void *user)
{
    kk_m_protocol_error(user, code);
}

void kk_route_ops(kk_conn_ops *ops)
{
    ops->state_in = route_state_in;
    ops->frame_in = route_frame_in;
    ops->writable = route_writable;
    ops->want_write = route_want_write;
    ops->session_restored = route_session_restored;
    ops->lost = route_lost;
    ops->released = route_released;
    ops->outstanding = route_outstanding;
    ops->ping_target = route_ping_target;
    ops->ready_count = route_ready_count;
    ops->reconnecting = route_reconnecting;
    ops->protocol_error = route_protocol_error;
}
