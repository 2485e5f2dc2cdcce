/* proto.c: stream-v2 requests (see proto.h). */
#include "proto.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "frames.h"
#include "kd_log.h"
#include "util.h"

#define BAD "Invalid json payload"

/* ---- small JSON readers ---- */

static bool get_int(const json_t *o, const char *k, bool required, int64_t min, int64_t max,
                    int64_t *out, char *msg, size_t msg_len)
{
    const json_t *v = json_object_get(o, k);
    if (!v) {
        if (required)
            snprintf(msg, msg_len, BAD ": %s is required", k);
        return !required;
    }
    double d;
    if (json_is_integer(v))
        d = (double)json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)))
        d = json_real_value(v);
    else {
        snprintf(msg, msg_len, BAD ": %s must be a number", k);
        return false;
    }
    if (d < (double)min || d > (double)max) {
        snprintf(msg, msg_len, BAD ": %s must be in %lld..%lld", k, (long long)min, (long long)max);
        return false;
    }
    *out = (int64_t)d;
    return true;
}

static bool opt_string(const json_t *o, const char *k, char *msg, size_t msg_len)
{
    const json_t *v = json_object_get(o, k);
    if (v && !json_is_string(v)) {
        snprintf(msg, msg_len, BAD ": %s must be a string", k);
        return false;
    }
    return true;
}

/* A request id: a non-negative integer or a non-empty string (≤ 128). */
static bool id_key(const json_t *id, char *key, size_t len)
{
    if (json_is_integer(id) && json_integer_value(id) >= 0) {
        snprintf(key, len, "%lld", (long long)json_integer_value(id));
        return true;
    }
    if (json_is_string(id) && json_string_length(id) > 0 && json_string_length(id) <= 128) {
        snprintf(key, len, "%s", json_string_value(id));
        return true;
    }
    return false;
}

static bool numeric_id(const json_t *id)
{
    if (json_is_integer(id))
        return json_integer_value(id) >= 0;
    if (!json_is_string(id) || json_string_length(id) == 0 || json_string_length(id) > 18)
        return false;
    for (const char *p = json_string_value(id); *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

/* ---- the rejection table ---- */

static void refuse(sim_call_decision *d, const char *fmt, long long v)
{
    d->verdict = SIM_CALL_REFUSED;
    snprintf(d->error, sizeof d->error, fmt, v);
}

/* Highest / lowest floor index the group serves on the area's side. */
static void served_range(const sim_building *b, const sim_group *g, int side, int *lo, int *hi)
{
    *lo = *hi = -1;
    for (size_t f = 0; f < b->n_floors; f++)
        if (b->floors[f].area[side] && sim_group_serves_area(b, g, b->floors[f].area[side])) {
            if (*lo < 0)
                *lo = (int)f;
            *hi = (int)f;
        }
}

/* Destination not served by this group: a transfer through the group's transfer floor,
 * when another group serves both that floor and the destination. */
static bool find_transfer(const sim_building *b, int gi, int64_t dst, int src_floor, int64_t *mod)
{
    const sim_group *g = &b->groups[gi];
    if (g->transfer_floor < 0 || g->transfer_floor == src_floor)
        return false;
    int64_t ta = b->floors[g->transfer_floor].area[1];
    for (size_t o = 0; o < b->n_groups; o++)
        if ((int)o != gi && sim_group_serves_area(b, &b->groups[o], dst) &&
            sim_group_serves_area(b, &b->groups[o], ta)) {
            *mod = ta;
            return true;
        }
    return false;
}

static bool check_payload(const json_t *p, sim_call_decision *d, int64_t *area, int64_t *action,
                          int64_t *terminal, bool *has_dst, int64_t *dst, int64_t *delay,
                          int64_t *group_size)
{
    char *m = d->message;
    size_t ml = sizeof d->message;
    d->verdict = SIM_CALL_BAD_PAYLOAD;
    if (!json_is_object(p)) {
        snprintf(m, ml, BAD ": payload must be an object");
        return false;
    }
    if (!numeric_id(json_object_get(p, "request_id"))) {
        snprintf(m, ml, BAD ": request_id must be a number");
        return false;
    }
    const json_t *call = json_object_get(p, "call");
    if (!get_int(p, "area", true, 0, INT64_MAX / 4, area, m, ml) ||
        !get_int(p, "terminal", false, 0, INT32_MAX, terminal, m, ml) ||
        !opt_string(p, "time", m, ml) || !opt_string(p, "media_id", m, ml) ||
        !opt_string(p, "media_cc", m, ml) || !opt_string(p, "media_type", m, ml))
        return false;
    if (!json_is_object(call)) {
        snprintf(m, ml, BAD ": call must be an object");
        return false;
    }
    if (!get_int(call, "action", true, 0, INT32_MAX, action, m, ml) ||
        !get_int(call, "delay", false, 0, 30, delay, m, ml) ||
        !get_int(call, "group_size", false, 1, 100, group_size, m, ml) ||
        !opt_string(call, "language", m, ml))
        return false;
    *has_dst = json_object_get(call, "destination") != NULL;
    if (*has_dst && !get_int(call, "destination", true, 0, INT64_MAX / 4, dst, m, ml))
        return false;
    const json_t *prio = json_object_get(call, "call_replacement_priority");
    if (prio && (!json_is_string(prio) || (strcmp(json_string_value(prio), "LOW") != 0 &&
                                           strcmp(json_string_value(prio), "HIGH") != 0))) {
        snprintf(m, ml, BAD ": call_replacement_priority must be LOW or HIGH");
        return false;
    }
    const json_t *al = json_object_get(call, "allowed_lifts");
    if (al) {
        size_t i;
        const json_t *it;
        bool ok = json_is_array(al) && json_array_size(al) <= SIM_MAX_LIFTS;
        json_array_foreach(al, i, it) ok = ok && json_is_integer(it);
        if (!ok) {
            snprintf(m, ml, BAD ": allowed_lifts must be an array of at most %d deck areas",
                     SIM_MAX_LIFTS);
            return false;
        }
        d->req.n_allowed = json_array_size(al);
        json_array_foreach(al, i, it) d->req.allowed[i] = json_integer_value(it);
    }
    return true;
}

void sim_proto_check_call(const sim_building *b, int bi, int gi, const json_t *p,
                          sim_call_decision *d)
{
    memset(d, 0, sizeof *d);
    int64_t area = 0, action = 0, terminal = 1, dst = 0, delay = 0, group_size = 1;
    bool has_dst = false;
    if (!check_payload(p, d, &area, &action, &terminal, &has_dst, &dst, &delay, &group_size))
        return;
    const sim_group *g = &b->groups[gi];
    sim_call_req *r = &d->req;
    r->b = bi, r->g = gi;
    r->src_area = area;
    r->action = (int)action;
    r->terminal = terminal;
    r->group_size = (int)group_size;
    r->delay_ms = delay * 1000;

    if (g->faults.link_down) {
        /* the cloud accepts it; the site never hears of it, so no rule below applies */
        d->verdict = SIM_CALL_SITE_DOWN;
        r->frozen = true;
        return;
    }
    const sim_action *a = sim_building_action(b, action);
    if (action == 0) {
        d->verdict = SIM_CALL_REFUSED;
        snprintf(d->error, sizeof d->error, "Ignoring call, unknown call action: UNDEFINED");
        return;
    }
    if (!a)
        return refuse(d, "Ignoring call, unknown call action: %lld", (long long)action);
    if (a->disabled)
        return refuse(d, "Ignoring call, disabled call action: %lld", (long long)action);
    int src_side = 1;
    int sf = sim_building_area_floor(b, area, &src_side);
    if (sf < 0 || !sim_group_serves_area(b, g, area))
        return refuse(d, "Ignoring call, unable to resolve area: area:%lld", (long long)area);
    /* a locked floor: KONE's guide accepts the call and cancels it FLOOR_IS_LOCKED */
    bool locked = sim_faults_locked(&g->faults, area);
    /* a group not in normal mode (FRD, OSS, ATS, PRC): KONE documents no refusal text of its
     * own (PROTOCOL.md: "the call is refused"; lift_mode in monitor-lift-status tells the mode
     * beforehand). Its lifts serve no call, so the call goes the way of any call no lift can
     * serve: accepted, then cancelled NO_LIFT_AVAILABLE, KONE's documented reason. */
    const char *mode_cancel = g->faults.mode != SIM_MODE_NOR ? "NO_LIFT_AVAILABLE" : NULL;

    if (a->kind == SIM_ACT_LANDING_UP || a->kind == SIM_ACT_LANDING_DOWN) {
        int lo, hi;
        served_range(b, g, src_side, &lo, &hi);
        r->dir = a->kind == SIM_ACT_LANDING_UP ? 1 : -1;
        if ((r->dir > 0 && sf == hi) || (r->dir < 0 && sf == lo)) {
            d->verdict = SIM_CALL_REFUSED;
            snprintf(d->error, sizeof d->error, "INVALID_DIRECTION");
            return;
        }
        if (mode_cancel)
            r->cancel_reason = mode_cancel;
        else if (locked)
            r->cancel_reason = "FLOOR_IS_LOCKED";
        d->verdict = SIM_CALL_ACCEPTED;
        return;
    }
    if (!has_dst) {
        d->verdict = SIM_CALL_REFUSED;
        snprintf(d->error, sizeof d->error, "Ignoring call, destination not defined");
        return;
    }
    int dst_side = 1;
    int df = sim_building_area_floor(b, dst, &dst_side);
    if (df < 0)
        return refuse(d, "Ignoring call, unable to resolve destination: area:%lld", (long long)dst);
    r->dst_area = dst;
    if (!sim_group_serves_area(b, g, dst)) {
        if (!find_transfer(b, gi, dst, sf, &r->mod_dst))
            return refuse(d, "Ignoring call, unable to resolve destination: area:%lld",
                          (long long)dst);
        r->mod_reason = g->transfer_reason;
    }
    if (mode_cancel)
        r->cancel_reason = mode_cancel;
    else if (locked || sim_faults_locked(&g->faults, dst))
        r->cancel_reason = "FLOOR_IS_LOCKED";
    else if (df == sf)
        r->cancel_reason = "SAME_SOURCE_AND_DEST_FLOOR";
    d->verdict = SIM_CALL_ACCEPTED;
}

/* ---- answering ---- */

typedef struct req_ctx {
    sim_hub *h;
    sim_conn *c;
    const json_t *req;
    const json_t *rid; /* the id as sent (or generated) */
    const json_t *payload;
    sim_building *b;
    int bi, gi;
    int64_t received_ms; /* real ms */
    double u;            /* this request's draw for latency jitter */
    int64_t due_ms;      /* send time of its answers (injected latency) */
    /* what it got, for the call log (calls.h) */
    int status;        /* of the answer frame (0 until answered) */
    char message[200]; /* the answer's message */
    int success;       /* call result frame: 1, 0, -1 none */
    char error[160];   /* the call result's error */
    int64_t sid;       /* action: session_id given; delete: the one targeted */
    int cancelled;     /* delete: 1 cancelled, 0 not; -1 other requests */
} req_ctx;

/* Injected latency: the global one until the target group is known, then with the group's. */
static void set_due(req_ctx *x, const sim_faults *gf)
{
    x->due_ms = x->received_ms + sim_fault_delay_ms(&x->h->faults, gf, x->u);
}

static void answer(req_ctx *x, int status, json_t *data, const char *message)
{
    if (!x->status) {
        x->status = status;
        if (message)
            snprintf(x->message, sizeof x->message, "%s", message);
    }
    sim_hub_send_at(x->c, sim_frame_answer(x->c->id, x->rid, status, data, message), x->due_ms);
}

static json_t *time_data(const sim_hub *h)
{
    char t[40];
    sim_hub_now(h, t, sizeof t);
    return json_pack("{s:s}", "time", t);
}

/* buildingId / groupId / scopes. Returns false after answering. */
static bool resolve_target(req_ctx *x)
{
    const char *bid = json_string_value(json_object_get(x->req, "buildingId"));
    if (!bid) {
        answer(x, 400, NULL, BAD ": buildingId is required");
        return false;
    }
    x->b = sim_world_building(x->h->world, bid);
    if (!x->b) {
        char msg[200];
        snprintf(msg, sizeof msg, "Building data not found for ID %.120s", bid);
        answer(x, 404, NULL, msg);
        return false;
    }
    for (size_t i = 0; i < x->h->world->n; i++)
        if (x->h->world->b[i] == x->b)
            x->bi = (int)i;
    if (!sim_scopes_allow_building(&x->c->scopes, bid)) {
        answer(x, 403, NULL, "Forbidden: the token has no scope for this building");
        return false;
    }
    const json_t *gv = json_object_get(x->req, "groupId");
    char gid[SIM_ID_MAX] = "1";
    if (json_is_string(gv))
        snprintf(gid, sizeof gid, "%s", json_string_value(gv));
    else if (json_is_integer(gv))
        snprintf(gid, sizeof gid, "%lld", (long long)json_integer_value(gv));
    else if (gv && !json_is_null(gv)) {
        answer(x, 400, NULL, BAD ": groupId must be a string");
        return false;
    }
    x->gi = sim_building_group(x->b, gid);
    if (x->gi < 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "Group data not found for ID group:%s:%.40s", x->b->id + 9, gid);
        answer(x, 404, NULL, msg);
        return false;
    }
    set_due(x, &x->b->groups[x->gi].faults);
    if (!sim_scopes_allow_group(&x->c->scopes, bid, gid)) {
        answer(x, 403, NULL, "Forbidden: the token has no scope for this group");
        return false;
    }
    return true;
}

static const char *group_id(const req_ctx *x)
{
    return x->b->groups[x->gi].id;
}

static void send_result(req_ctx *x, const char *type, bool ok, int64_t sid, const char *error)
{
    const json_t *prid = json_object_get(x->payload, "request_id");
    x->success = ok;
    if (error)
        snprintf(x->error, sizeof x->error, "%s", error);
    if (ok && sid > 0)
        x->sid = sid;
    sim_hub_send_at(
        x->c,
        sim_frame_call_result(type, x->b->id, group_id(x), prid ? prid : x->rid, ok, sid, error),
        x->due_ms);
}

static void do_action(req_ctx *x)
{
    sim_call_decision d;
    sim_proto_check_call(x->b, x->bi, x->gi, x->payload, &d);
    if (d.verdict == SIM_CALL_BAD_PAYLOAD) {
        answer(x, 400, NULL, d.message);
        return;
    }
    int64_t sid = 0;
    if (d.verdict == SIM_CALL_ACCEPTED || d.verdict == SIM_CALL_SITE_DOWN) {
        d.req.owner = x->c->session->serial;
        sid = sim_model_add_call(x->h->model, &d.req);
        if (sid < 0) {
            answer(x, 429, NULL, "Too many calls in progress");
            return;
        }
    }
    answer(x, 201, time_data(x->h), NULL);
    if (d.verdict == SIM_CALL_SITE_DOWN)
        return; /* frozen calls are never announced */
    bool ok = d.verdict == SIM_CALL_ACCEPTED;
    send_result(x, "action", ok, sid, ok ? NULL : d.error);
    sim_model_flush(x->h->model);
    const json_t *call = json_object_get(x->payload, "call");
    json_t *ev =
        json_pack("{s:I,s:I}", "session_id", (json_int_t)sid, "action", (json_int_t)d.req.action);
    if (ev && json_object_get(call, "destination"))
        json_object_set(ev, "destination", json_object_get(call, "destination"));
    if (ev)
        json_object_set_new(ev, "group_size", json_integer(d.req.group_size));
    sim_hub_publish_action(x->h, x->bi, x->gi, d.req.src_area, d.req.terminal, ev, ok,
                           ok ? NULL : d.error, sid > 0 ? sim_model_call(x->h->model, sid) : NULL);
}

static void do_hold_open(req_ctx *x)
{
    char m[160];
    int64_t deck, served, hard, soft = 0;
    const sim_group *g = &x->b->groups[x->gi];
    if (!json_is_object(x->payload) ||
        !get_int(x->payload, "lift_deck", true, 0, INT64_MAX / 4, &deck, m, sizeof m) ||
        !get_int(x->payload, "served_area", true, 0, INT64_MAX / 4, &served, m, sizeof m) ||
        !get_int(x->payload, "hard_time", true, 0, 10, &hard, m, sizeof m) ||
        !get_int(x->payload, "soft_time", false, 0, 30, &soft, m, sizeof m)) {
        answer(x, 400, NULL, json_is_object(x->payload) ? m : BAD ": payload must be an object");
        return;
    }
    answer(x, 201, time_data(x->h), NULL);
    if (g->faults.link_down)
        return;
    char err[160];
    int l = sim_group_lift_by_deck(g, deck);
    int side = 1, f = sim_building_area_floor(x->b, served, &side);
    if (g->faults.mode != SIM_MODE_NOR) {
        /* refused, with no text: KONE documents none for a mode (see the call's case) */
        send_result(x, "hold_open", false, 0, NULL);
        return;
    } else if (l < 0) {
        snprintf(err, sizeof err, "Ignoring call, unable to resolve lift deck: %lld",
                 (long long)deck);
    } else if (f < 0 || !g->lifts[l].serves[f] || (side == 2 && !g->lifts[l].rear) ||
               sim_model_hold_open(x->h->model, x->bi, x->gi, l, f, side, (hard + soft) * 1000)) {
        snprintf(err, sizeof err, "Ignoring call, unable to resolve area: area:%lld",
                 (long long)served);
    } else {
        send_result(x, "hold_open", true, 0, NULL);
        return;
    }
    send_result(x, "hold_open", false, 0, err);
}

static void do_delete(req_ctx *x)
{
    char m[160];
    int64_t sid;
    if (!json_is_object(x->payload) ||
        !get_int(x->payload, "session_id", true, 1, INT64_MAX / 4, &sid, m, sizeof m)) {
        answer(x, 400, NULL, json_is_object(x->payload) ? m : BAD ": payload must be an object");
        return;
    }
    x->sid = sid;
    x->cancelled = 0;
    const sim_call *c = sim_model_call(x->h->model, sid);
    if (!c || c->b != x->bi || c->g != x->gi || c->owner != x->c->session->serial) {
        answer(x, 404, NULL, "Call not found for this session_id");
        return;
    }
    int rc = sim_model_delete_call(x->h->model, sid, "CALL_DELETED");
    if (rc == 409) {
        answer(x, 409, NULL, "Call is not in a cancellable state");
    } else {
        x->cancelled = 1;
        answer(x, 202, time_data(x->h), NULL);
    }
}

/* ping: 200 with the request id and the server time; 500 with error 1005 when the group's
 * site link is down. */
static void ping(req_ctx *x, const sim_group *g)
{
    const json_t *prid = json_object_get(x->payload, "request_id");
    if (prid && !numeric_id(prid)) {
        answer(x, 400, NULL, BAD ": request_id must be a number");
        return;
    }
    char t[40];
    sim_hub_now(x->h, t, sizeof t);
    json_t *d = json_pack("{s:O,s:s}", "request_id", prid ? prid : x->rid, "time", t);
    if (g && g->faults.link_down) {
        if (d)
            json_object_set_new(d, "error", json_integer(1005));
        answer(x, 500, d, "Ping failed: site link down (error 1005)");
    } else {
        answer(x, 200, d, NULL);
    }
}

static void do_common(req_ctx *x, const char *call_type)
{
    const sim_group *g = &x->b->groups[x->gi];
    if (strcmp(call_type, "ping") != 0) /* tests count configuration fetches by this line */
        kd_debug("common-api %s of %s group %s", call_type, x->b->id, group_id(x));
    if (strcmp(call_type, "config") == 0) {
        json_t *d = sim_building_config_json(x->b, g);
        answer(x, d ? 200 : 500, d, d ? NULL : "Internal error");
    } else if (strcmp(call_type, "actions") == 0) {
        json_t *d = sim_building_actions_json(x->b);
        answer(x, d ? 200 : 500, d, d ? NULL : "Internal error");
    } else if (strcmp(call_type, "ping") == 0) {
        ping(x, g);
    } else {
        answer(x, 400, NULL, BAD ": unknown callType for common-api");
    }
}

static void do_monitor(req_ctx *x)
{
    const json_t *p = x->payload;
    const char *sub = json_string_value(json_object_get(p, "sub"));
    const json_t *topics = json_object_get(p, "subtopics");
    char m[160];
    int64_t duration = SIM_SUB_MAX_S;
    if (!json_is_object(p) || !sub || strlen(sub) >= 64 || !json_is_array(topics) ||
        json_array_size(topics) == 0 || json_array_size(topics) > 64) {
        answer(x, 400, NULL, BAD ": payload needs sub (string) and subtopics (1..64 strings)");
        return;
    }
    if (!get_int(p, "duration", false, 0, SIM_SUB_MAX_S, &duration, m, sizeof m)) {
        answer(x, 400, NULL, m);
        return;
    }
    size_t i;
    const json_t *t;
    json_array_foreach(topics, i, t)
    {
        if (!json_is_string(t) || !sim_hub_topic_valid(x->h, x->bi, x->gi, json_string_value(t))) {
            char full[200];
            snprintf(full, sizeof full, "Invalid subtopic: %.120s",
                     json_is_string(t) ? json_string_value(t) : "(not a string)");
            answer(x, 400, NULL, full);
            return;
        }
    }
    json_array_foreach(topics, i, t)
    {
        const char *msg = "Invalid subtopic";
        int rc =
            sim_hub_subscribe(x->h, x->c, x->bi, x->gi, sub, json_string_value(t), duration, &msg);
        if (rc != 201) {
            char full[200];
            snprintf(full, sizeof full, "%s: %.120s", msg, json_string_value(t));
            answer(x, rc, NULL, full);
            return;
        }
    }
    answer(x, 201, time_data(x->h), NULL);
    /* KONE documents no snapshot: a subscriber sees only what happens after it subscribed */
    if (!x->h->snapshot || x->b->groups[x->gi].faults.link_down || duration == 0)
        return;
    json_array_foreach(topics, i, t)
        sim_hub_subscribe_snapshot(x->h, x->c, x->bi, x->gi, json_string_value(t));
}

static void do_session(req_ctx *x, bool resume)
{
    const char *msg = NULL;
    if (!resume) {
        char id[40];
        int rc = sim_hub_create_session(x->h, x->c, id, sizeof id, &msg);
        answer(x, rc, rc == 201 ? json_pack("{s:s}", "sessionId", id) : NULL, msg);
        return;
    }
    const char *sid = json_string_value(json_object_get(x->req, "sessionId"));
    const json_t *rs = json_object_get(x->req, "resendLatestStateUpToSeconds");
    if (!sid || (rs && (!json_is_number(rs) || json_number_value(rs) < 0))) {
        answer(x, 400, NULL,
               BAD ": sessionId (string) is required, "
                   "resendLatestStateUpToSeconds must be a number >= 0");
        return;
    }
    int rc = sim_hub_resume_session(x->h, x->c, sid, &msg);
    answer(x, rc, rc == 201 ? json_pack("{s:s}", "sessionId", sid) : NULL, msg);
    if (rc == 201 && rs)
        sim_hub_resend(x->h, x->c, json_number_value(rs));
}

static void dispatch(req_ctx *x)
{
    const char *type = json_string_value(json_object_get(x->req, "type"));
    const char *ct = json_string_value(json_object_get(x->req, "callType"));
    if (!type) {
        answer(x, 400, NULL, BAD ": type is required");
        return;
    }
    if (strcmp(type, "create-session") == 0 || strcmp(type, "resume-session") == 0) {
        do_session(x, type[0] == 'r');
        return;
    }
    bool lift = strcmp(type, "lift-call-api-v2") == 0, common = strcmp(type, "common-api") == 0,
         monitor = strcmp(type, "site-monitoring") == 0;
    if (!lift && !common && !monitor) {
        answer(x, 400, NULL, BAD ": unknown request type");
        return;
    }
    if (!ct) {
        answer(x, 400, NULL, BAD ": callType is required");
        return;
    }
    if (x->payload && !json_is_object(x->payload)) {
        answer(x, 400, NULL, BAD ": payload must be an object");
        return;
    }
    if (common && !json_object_get(x->req, "buildingId")) {
        /* the spec requires buildingId on every common-api request, pings included */
        kd_info("request without buildingId refused: %s %s", type, ct);
        answer(x, 400, NULL, BAD ": buildingId is required");
        return;
    }
    if (!resolve_target(x))
        return;
    if (lift) {
        /* injected errors: the request is answered with the status and never executed */
        int st = sim_fault_call_status(&x->h->faults, &x->b->groups[x->gi].faults,
                                       sim_rng_next(&x->h->rng));
        if (st) {
            kd_debug("fault: %s %s group %s answered %d", ct, x->b->id, group_id(x), st);
            answer(x, st, NULL, sim_fault_status_text(st));
            return;
        }
    }
    if (monitor) {
        /* KONE answers every request with a status (PROTOCOL.md): a subscription too */
        int st = sim_fault_monitor_status(&x->h->faults, sim_rng_next(&x->h->rng));
        if (st) {
            kd_debug("fault: %s %s answered %d", ct, x->b->id, st);
            answer(x, st, NULL, sim_fault_status_text(st));
            return;
        }
    }
    if (common)
        do_common(x, ct);
    else if (monitor && strcmp(ct, "monitor") == 0)
        do_monitor(x);
    else if (lift && strcmp(ct, "action") == 0)
        do_action(x);
    else if (lift && strcmp(ct, "hold_open") == 0)
        do_hold_open(x);
    else if (lift && strcmp(ct, "delete") == 0)
        do_delete(x);
    else
        answer(x, 400, NULL, BAD ": unknown callType");
}

/* Adds the request to the call log (lift-call-api-v2 requests only), once answered. */
static void record(req_ctx *x, int64_t wall_ms)
{
    const json_t *gid = json_object_get(x->req, "groupId");
    sim_call_note n = {
        .wall_ms = wall_ms,
        .call_type = json_string_value(json_object_get(x->req, "callType")),
        .connection_id = x->c->id,
        .client_id = x->c->client_id,
        .kone_session_id = x->c->session ? x->c->session->id : NULL,
        .request_id = x->rid,
        .building_id = json_string_value(json_object_get(x->req, "buildingId")),
        .group_id = gid,
        .payload = x->payload,
        .status = x->status,
        .message = x->message[0] ? x->message : NULL,
        .success = x->success,
        .error = x->error[0] ? x->error : NULL,
        .session_id = x->sid,
        .cancelled = x->cancelled,
    };
    if (sim_calls_add(&x->h->calls, &n))
        kd_warn("call log: out of memory, request not recorded");
}

static bool is_lift_call(const json_t *req)
{
    const char *type = json_string_value(json_object_get(req, "type"));
    return type && strcmp(type, "lift-call-api-v2") == 0;
}

void sim_proto_handle(sim_hub *h, sim_conn *c, const char *text, size_t len)
{
    if (!c->session)
        return; /* taken over by another connection; closing */
    if (sim_fault_roll(h->faults.drop_probability, sim_rng_next(&h->rng))) {
        sim_hub_drop(h, c, "drop_probability"); /* the request is lost with the connection */
        return;
    }
    req_ctx x = {.h = h,
                 .c = c,
                 .received_ms = sim_clock_real_ms(&h->clock),
                 .success = -1,
                 .cancelled = -1};
    int64_t wall_ms = sim_clock_wall_ms(&h->clock);
    x.u = sim_rng_next(&h->rng);
    set_due(&x, NULL);
    if (len > (size_t)SIM_MAX_FRAME) {
        sim_proto_too_large(h, c);
        return;
    }
    json_error_t je;
    json_t *req = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(req)) {
        json_decref(req);
        answer(&x, 400, NULL, BAD);
        return;
    }
    x.req = req;
    x.payload = json_object_get(req, "payload");
    const json_t *rid = json_is_object(x.payload) ? json_object_get(x.payload, "request_id") : NULL;
    if (!rid)
        rid = json_object_get(req, "requestId");
    json_t *gen = NULL;
    if (!rid) {
        char u[40];
        if (sim_uuid(u, sizeof u) == 0)
            gen = json_string(u);
        rid = gen;
        x.rid = rid;
    } else {
        x.rid = rid;
        int seen;
        char key[160];
        if (!id_key(rid, key, sizeof key))
            answer(&x, 400, NULL, BAD ": request id must be a number or a non-empty string");
        else if ((seen = sim_conn_remember_id(c, key)) <= 0)
            answer(&x, seen == 0 ? 409 : 429, NULL,
                   seen == 0 ? "Request id already used in this connection"
                             : "Too many requests on this connection");
    }
    if (!x.status)
        dispatch(&x);
    if (is_lift_call(req))
        record(&x, wall_ms);
    json_decref(gen);
    json_decref(req);
}

void sim_proto_too_large(sim_hub *h, sim_conn *c)
{
    req_ctx x = {.h = h, .c = c, .received_ms = sim_clock_real_ms(&h->clock)};
    x.u = sim_rng_next(&h->rng);
    set_due(&x, NULL);
    if (c->session)
        answer(&x, 400, NULL, BAD ": frame larger than 65536 bytes");
}
