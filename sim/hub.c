/* hub.c: connections, sessions, subscriptions and event fan-out (see hub.h). */
#include "hub.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frames.h"
#include "kd_log.h"
#include "kd_list.h"

#define SIM_MAX_SUBS 200000
#define SIM_MAX_IDS 1000000

typedef enum {
    SUB_CALL = 1,
    SUB_POSITION,
    SUB_DOORS,
    SUB_STATUS,
    SUB_NEXT_STOP,
    SUB_STOPPING,
    SUB_ACTION,
} sub_kind;

typedef struct sim_sub {
    sim_session *owner;
    int b, g;
    char sub[64];
    char topic[128];
    sub_kind kind;
    int64_t sid;            /* call_state: session id, -1 any */
    int state;              /* call_state: state, -1 any */
    int lift;               /* lift topics: lift index, -1 any */
    int64_t area, terminal; /* action topics, -1 any */
    int64_t expires_ms;     /* real ms */
    struct sim_sub *next;
} sim_sub;

/* ---- request id set: open addressing, strings owned by the set ---- */

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int idset_grow(sim_idset *set)
{
    size_t cap = set->cap ? set->cap * 2 : 64;
    char **slot = calloc(cap, sizeof *slot);
    if (!slot)
        return -1;
    for (size_t i = 0; i < set->cap; i++) {
        if (!set->slot[i])
            continue;
        size_t j = fnv(set->slot[i]) & (cap - 1);
        while (slot[j])
            j = (j + 1) & (cap - 1);
        slot[j] = set->slot[i];
    }
    free(set->slot);
    set->slot = slot;
    set->cap = cap;
    return 0;
}

int sim_conn_remember_id(sim_conn *c, const char *key)
{
    sim_idset *set = &c->ids;
    if (set->cap) {
        size_t j = fnv(key) & (set->cap - 1);
        for (; set->slot[j]; j = (j + 1) & (set->cap - 1))
            if (strcmp(set->slot[j], key) == 0)
                return 0;
    }
    if (set->n >= SIM_MAX_IDS)
        return -1;
    if ((set->n + 1) * 2 > set->cap && idset_grow(set))
        return -1;
    char *dup = strdup(key);
    if (!dup)
        return -1;
    size_t j = fnv(key) & (set->cap - 1);
    while (set->slot[j])
        j = (j + 1) & (set->cap - 1);
    set->slot[j] = dup;
    set->n++;
    return 1;
}

static void idset_free(sim_idset *set)
{
    for (size_t i = 0; i < set->cap; i++)
        free(set->slot[i]);
    free(set->slot);
    memset(set, 0, sizeof *set);
}

/* ---- time ---- */

void sim_hub_time(const sim_hub *h, int64_t model_ms, char *buf, size_t len)
{
    sim_iso_time(sim_clock_model_to_wall(&h->clock, model_ms), buf, len);
}

void sim_hub_now(const sim_hub *h, char *buf, size_t len)
{
    sim_iso_time(sim_clock_wall_ms(&h->clock), buf, len);
}

static void model_time(const sim_hub *h, int64_t model_ms, char *buf, size_t len)
{
    sim_hub_time(h, model_ms, buf, len);
}

/* ---- delay queues ---- */

struct sim_delayed {
    struct sim_delayed *next;
    int64_t due_ms;
    size_t len;
    char text[];
};

static void delayed_free(sim_conn *c)
{
    KD_SLIST_FREE(c->delayed, next);
    c->delayed_tail = NULL;
    c->delayed_bytes = 0;
}

/* Every frame leaves through here. At debug level it is logged whole ("conn <id> tx <json>"):
 * the spec-validation test (test_worker_kone_spec_sim) checks each such line against KONE's
 * AsyncAPI schemas. Frames carry no token or secret. */
static int conn_send(sim_conn *c, const char *text, size_t len)
{
    kd_debug("conn %s tx %.*s", c->id, (int)len, text);
    return c->ops->send(c->t, text, len);
}

/* Sends text now, or queues it behind the frames already waiting (never before them). */
static int conn_emit(sim_conn *c, const char *text, size_t len, int64_t due_ms)
{
    int64_t now = sim_clock_real_ms(&c->hub->clock);
    if (!c->delayed && due_ms <= now)
        return conn_send(c, text, len);
    if (c->delayed_bytes + len > (size_t)SIM_DELAY_MAX_BYTES) {
        kd_warn("connection %s: %zu bytes waiting for injected latency, closing", c->id,
                c->delayed_bytes);
        delayed_free(c);
        c->ops->close(c->t, 1008, "Too many unread frames");
        return -1;
    }
    sim_delayed *d = malloc(sizeof *d + len + 1);
    if (!d)
        return -1;
    d->due_ms =
        c->delayed_tail && c->delayed_tail->due_ms > due_ms ? c->delayed_tail->due_ms : due_ms;
    d->len = len;
    memcpy(d->text, text, len);
    d->text[len] = '\0';
    KD_SLIST_APPEND(c->delayed, c->delayed_tail, d, next);
    c->delayed_bytes += len;
    return 0;
}

int64_t sim_hub_next_due(const sim_hub *h)
{
    int64_t t = -1;
    for (const sim_conn *c = h->conns; c; c = c->next)
        if (c->delayed && (t < 0 || c->delayed->due_ms < t))
            t = c->delayed->due_ms;
    return t;
}

void sim_hub_flush_due(sim_hub *h)
{
    int64_t now = sim_clock_real_ms(&h->clock);
    for (sim_conn *c = h->conns; c; c = c->next)
        while (c->delayed && c->delayed->due_ms <= now) {
            sim_delayed *d = c->delayed;
            c->delayed = d->next;
            if (!c->delayed)
                c->delayed_tail = NULL;
            c->delayed_bytes -= d->len;
            conn_send(c, d->text, d->len);
            free(d);
        }
}

/* ---- delivery ---- */

int sim_hub_send_at(sim_conn *c, json_t *frame, int64_t due_ms)
{
    if (!frame)
        return -1;
    char *text = json_dumps(frame, JSON_COMPACT);
    json_decref(frame);
    if (!text)
        return -1;
    int rc = conn_emit(c, text, strlen(text), due_ms);
    free(text);
    return rc;
}

int sim_hub_send(sim_conn *c, json_t *frame)
{
    return sim_hub_send_at(c, frame, 0);
}

static bool link_down(const sim_hub *h, int b, int g)
{
    return h->world->b[b]->groups[g].faults.link_down;
}

typedef bool (*sub_match_fn)(const sim_sub *s, const void *ev);

static bool any_match(sim_hub *h, int b, int g, sub_kind kind, sub_match_fn match, const void *ev)
{
    if (link_down(h, b, g))
        return false; /* the site's events do not reach the cloud */
    int64_t now = sim_clock_real_ms(&h->clock);
    for (sim_sub *s = h->subs[b][g]; s; s = s->next)
        if (s->kind == kind && s->b == b && s->g == g && s->expires_ms > now && s->owner->conn &&
            match(s, ev))
            return true;
    return false;
}

static void deliver(sim_hub *h, int b, int g, sub_kind kind, sub_match_fn match, const void *ev,
                    json_t *frame)
{
    if (!frame)
        return;
    if (link_down(h, b, g)) {
        json_decref(frame);
        return;
    }
    char *text = json_dumps(frame, JSON_COMPACT);
    json_decref(frame);
    if (!text)
        return;
    uint64_t seq = ++h->event_seq;
    int64_t now = sim_clock_real_ms(&h->clock);
    size_t len = strlen(text);
    for (sim_sub *s = h->subs[b][g]; s; s = s->next) {
        sim_conn *c = s->owner->conn;
        if (s->kind != kind || s->b != b || s->g != g || s->expires_ms <= now || !c ||
            c->last_event == seq || !match(s, ev))
            continue;
        c->last_event = seq;
        conn_emit(c, text, len, 0);
    }
    free(text);
}

static bool match_call(const sim_sub *s, const void *ev)
{
    const sim_call *c = ev;
    return (s->sid < 0 || s->sid == c->session_id) && (s->state < 0 || s->state == (int)c->state);
}

static bool match_lift(const sim_sub *s, const void *ev)
{
    const sim_lift_state *ls = ev;
    return s->lift < 0 || s->lift == ls->l;
}

typedef struct action_ev {
    int64_t area, terminal;
} action_ev;

static bool match_action(const sim_sub *s, const void *ev)
{
    const action_ev *a = ev;
    return (s->area < 0 || s->area == a->area) && (s->terminal < 0 || s->terminal == a->terminal);
}

static json_t *call_frame(const sim_hub *h, const sim_call *c)
{
    char t[40], eta[40];
    model_time(h, sim_model_now(h->model), t, sizeof t);
    model_time(h, c->eta_ms, eta, sizeof eta);
    return sim_frame_call_state(h->world->b[c->b], c, t, eta);
}

/* ---- model sink ---- */

static void on_call_state(void *arg, const sim_call *c, int64_t now)
{
    sim_hub *h = arg;
    (void)now;
    if (any_match(h, c->b, c->g, SUB_CALL, match_call, c))
        deliver(h, c->b, c->g, SUB_CALL, match_call, c, call_frame(h, c));
}

/* The lift events below differ only in their frame. A frame is built only when some
 * subscription wants it (lift_wanted, which also writes the event's time t[40]). */
static bool lift_wanted(sim_hub *h, const sim_lift_state *ls, sub_kind kind, int64_t now, char *t)
{
    if (!any_match(h, ls->b, ls->g, kind, match_lift, ls))
        return false;
    model_time(h, now, t, 40);
    return true;
}

static void deliver_lift(sim_hub *h, const sim_lift_state *ls, sub_kind kind, json_t *frame)
{
    deliver(h, ls->b, ls->g, kind, match_lift, ls, frame);
}

static void on_position(void *arg, const sim_lift_state *ls, int64_t now)
{
    sim_hub *h = arg;
    char t[40];
    if (lift_wanted(h, ls, SUB_POSITION, now, t))
        deliver_lift(h, ls, SUB_POSITION, sim_frame_lift_position(h->world->b[ls->b], ls, t));
}

static void on_door(void *arg, const sim_lift_state *ls, int side, const char *state, int64_t now)
{
    sim_hub *h = arg;
    char t[40];
    if (lift_wanted(h, ls, SUB_DOORS, now, t))
        deliver_lift(h, ls, SUB_DOORS, sim_frame_door(h->world->b[ls->b], ls, side, state, t));
}

static void on_next_stop(void *arg, const sim_lift_state *ls, int64_t eta_ms, int64_t now)
{
    sim_hub *h = arg;
    char t[40], eta[40], ls_t[40];
    if (!lift_wanted(h, ls, SUB_NEXT_STOP, now, t))
        return;
    model_time(h, eta_ms, eta, sizeof eta);
    model_time(h, ls->last_start_ms, ls_t, sizeof ls_t);
    deliver_lift(h, ls, SUB_NEXT_STOP, sim_frame_next_stop(h->world->b[ls->b], ls, eta, ls_t, t));
}

static void on_stopping(void *arg, const sim_lift_state *ls, int floor, int64_t now)
{
    sim_hub *h = arg;
    char t[40];
    if (!lift_wanted(h, ls, SUB_STOPPING, now, t))
        return;
    int64_t in[64], out[64];
    size_t n_in, n_out;
    sim_model_stop_sessions(h->model, ls, floor, in, &n_in, out, &n_out, 64);
    deliver_lift(h, ls, SUB_STOPPING,
                 sim_frame_stopping(h->world->b[ls->b], ls, floor, in, n_in, out, n_out, t));
}

void sim_hub_publish_action(sim_hub *h, int b, int g, int64_t area, int64_t terminal, json_t *call,
                            bool success, const char *error, const sim_call *c)
{
    action_ev ev = {area, terminal};
    if (!call || !any_match(h, b, g, SUB_ACTION, match_action, &ev)) {
        json_decref(call);
        return;
    }
    char t[40], topic[96];
    sim_hub_now(h, t, sizeof t);
    json_t *d =
        json_pack("{s:s,s:I,s:I,s:o,s:b,s:s}", "time", t, "area", (json_int_t)area, "terminal",
                  (json_int_t)terminal, "call", call, "success", success, "origin", "API");
    if (d && error)
        json_object_set_new(d, "error", json_string(error));
    if (d && c && c->mod_dst) {
        json_object_set_new(d, "modified_destination", json_integer(c->mod_dst));
        json_object_set_new(d, "modified_reason", json_string(c->mod_reason));
    }
    snprintf(topic, sizeof topic, "action/%lld/%lld", (long long)area, (long long)terminal);
    const sim_building *bd = h->world->b[b];
    deliver(h, b, g, SUB_ACTION, match_action, &ev,
            sim_frame_event("monitor-action", bd, bd->groups[g].id, topic, d));
}

/* ---- hub life ---- */

int sim_hub_create(sim_hub **out, sim_world *world, sim_auth *auth, const sim_clock *clock)
{
    sim_hub *h = calloc(1, sizeof *h);
    if (!h)
        return KD_ERR_NOMEM;
    h->world = world;
    h->auth = auth;
    h->clock = *clock;
    h->next_serial = 1;
    h->subs_sweep_ms = INT64_MAX;
    sim_calls_init(&h->calls, 0, 0);
    uint64_t seed;
    if (RAND_bytes((unsigned char *)&seed, sizeof seed) != 1)
        seed = (uint64_t)time(NULL);
    sim_rng_seed(&h->rng, seed);
    sim_model_sink sink = {on_call_state, on_position, on_door, on_next_stop, on_stopping, h};
    if (sim_model_create(&h->model, world, &sink)) {
        free(h);
        return KD_ERR_NOMEM;
    }
    /* keep finished calls 300 s of real time, whatever the speed */
    sim_model_set_retain(h->model, (int64_t)(300000 * h->clock.speed));
    *out = h;
    return 0;
}

/* Frees the subscriptions of session s (s NULL: none) and those expired at now; sets
 * subs_sweep_ms to the earliest expiry left. */
static void sweep_subs(sim_hub *h, const sim_session *s, int64_t now)
{
    int64_t next = INT64_MAX;
    for (size_t b = 0; b < h->world->n; b++)
        for (size_t g = 0; g < SIM_MAX_GROUPS; g++)
            for (sim_sub **pp = &h->subs[b][g]; *pp;) {
                sim_sub *x = *pp;
                if (x->owner == s || x->expires_ms <= now) {
                    *pp = x->next;
                    free(x);
                    h->n_subs--;
                } else {
                    if (x->expires_ms < next)
                        next = x->expires_ms;
                    pp = &x->next;
                }
            }
    h->subs_sweep_ms = next;
}

static void drop_subs_of(sim_hub *h, const sim_session *s)
{
    sweep_subs(h, s, INT64_MIN);
}

static void free_session(sim_hub *h, sim_session *s)
{
    drop_subs_of(h, s);
    sim_model_disown(h->model, s->serial);
    KD_SLIST_UNLINK(h->sessions, s, next);
    free(s);
}

static void free_conn(sim_conn *c)
{
    delayed_free(c);
    idset_free(&c->ids);
    free(c);
}

void sim_hub_free(sim_hub *h)
{
    if (!h)
        return;
    while (h->conns) {
        sim_conn *c = h->conns;
        h->conns = c->next;
        free_conn(c);
    }
    while (h->sessions)
        free_session(h, h->sessions);
    sim_model_free(h->model);
    sim_calls_free(&h->calls);
    free(h);
}

static sim_session *new_session(sim_hub *h, const char *client_id)
{
    sim_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->serial = h->next_serial++;
    snprintf(s->client_id, sizeof s->client_id, "%s", client_id);
    s->next = h->sessions;
    h->sessions = s;
    return s;
}

sim_conn *sim_hub_conn_open(sim_hub *h, const sim_token *tok, const sim_conn_ops *ops, void *t)
{
    sim_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (sim_uuid(c->id, sizeof c->id)) {
        free(c);
        return NULL;
    }
    snprintf(c->client_id, sizeof c->client_id, "%s", tok->client_id);
    c->scopes = tok->scopes;
    c->ops = ops;
    c->t = t;
    c->hub = h;
    c->session = new_session(h, c->client_id);
    if (!c->session) {
        free(c);
        return NULL;
    }
    c->session->conn = c;
    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    h->n_conns++;
    return c;
}

/* The connection lets go of its session: anonymous ones end, named ones wait for resume. */
static void release_session(sim_hub *h, sim_conn *c)
{
    sim_session *s = c->session;
    c->session = NULL;
    if (!s)
        return;
    s->conn = NULL;
    if (!s->id[0])
        free_session(h, s);
    else
        s->detached_ms = sim_clock_real_ms(&h->clock);
}

void sim_hub_conn_closed(sim_hub *h, sim_conn *c)
{
    release_session(h, c);
    KD_DLIST_UNLINK(h->conns, c, prev, next);
    h->n_conns--;
    free_conn(c);
}

void sim_hub_tick(sim_hub *h)
{
    sim_hub_flush_due(h);
    sim_model_advance(h->model, sim_clock_model_ms(&h->clock));
    int64_t now = sim_clock_real_ms(&h->clock);
    if (now >= h->subs_sweep_ms) /* something expired: not a walk over every list each tick */
        sweep_subs(h, NULL, now);
    sim_session *next;
    for (sim_session *s = h->sessions; s; s = next) {
        next = s->next;
        if (!s->conn && now - s->detached_ms > (int64_t)SIM_SESSION_TTL_S * 1000)
            free_session(h, s);
    }
}

/* ---- sessions ---- */

int sim_hub_create_session(sim_hub *h, sim_conn *c, char *id_out, size_t id_len, const char **msg)
{
    (void)h;
    if (c->session->id[0]) {
        *msg = "A session is already active on this connection";
        return 400;
    }
    if (sim_uuid(c->session->id, sizeof c->session->id)) {
        *msg = "Internal error";
        return 500;
    }
    snprintf(id_out, id_len, "%s", c->session->id);
    return 201;
}

typedef struct resend_ctx {
    sim_hub *h;
    sim_conn *c;
    uint64_t owner;
    int64_t since_ms;
} resend_ctx;

static void resend_one(void *arg, const sim_call *call)
{
    resend_ctx *r = arg;
    if (call->owner != r->owner || call->state == SIM_CALL_CREATED || call->frozen ||
        call->changed_ms < r->since_ms || link_down(r->h, call->b, call->g))
        return;
    sim_hub_send(r->c, call_frame(r->h, call));
}

int sim_hub_resume_session(sim_hub *h, sim_conn *c, const char *id, const char **msg)
{
    sim_session *s = NULL;
    for (sim_session *x = h->sessions; x; x = x->next)
        if (x->id[0] && strcmp(x->id, id) == 0 && strcmp(x->client_id, c->client_id) == 0)
            s = x;
    if (!s) {
        *msg = "Session not found";
        return 404;
    }
    if (s == c->session) {
        *msg = "Cannot resume the session of this connection";
        return 400;
    }
    if (s->conn) {
        sim_conn *old = s->conn;
        old->session = NULL;
        s->conn = NULL;
        delayed_free(old); /* its in-flight frames are dropped */
        old->ops->close(old->t, 1000, "Session resumed on another connection");
        kd_info("session taken over by connection %s from %s", c->id, old->id);
    }
    release_session(h, c);
    c->session = s;
    s->conn = c;
    return 201;
}

void sim_hub_resend(sim_hub *h, sim_conn *c, double resend_s)
{
    if (resend_s <= 0 || !c->session)
        return;
    resend_ctx r = {h, c, c->session->serial,
                    sim_model_now(h->model) - (int64_t)(resend_s * 1000 * h->clock.speed)};
    for (size_t b = 0; b < h->world->n; b++)
        for (size_t g = 0; g < h->world->b[b]->n_groups; g++)
            sim_model_each_call(h->model, (int)b, (int)g, resend_one, &r);
}

/* ---- subscriptions ---- */

static int parse_num_or_any(const char *s, int64_t *out)
{
    if (strcmp(s, "+") == 0) {
        *out = -1;
        return 0;
    }
    if (!*s || strlen(s) > 18)
        return -1;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    *out = strtoll(s, NULL, 10);
    return 0;
}

static int parse_topic(const sim_hub *h, int b, int g, const char *topic, sim_sub *x)
{
    char buf[128], *parts[4];
    int n = 0;
    if (strlen(topic) >= sizeof buf)
        return -1;
    snprintf(buf, sizeof buf, "%s", topic);
    char *save = NULL;
    for (char *p = strtok_r(buf, "/", &save); p && n < 4; p = strtok_r(NULL, "/", &save))
        parts[n++] = p;
    x->sid = x->area = x->terminal = -1;
    x->state = x->lift = -1;
    if (n == 3 && strcmp(parts[0], "call_state") == 0) {
        x->kind = SUB_CALL;
        if (parse_num_or_any(parts[1], &x->sid))
            return -1;
        if (strcmp(parts[2], "+") == 0)
            return 0;
        for (int s = SIM_CALL_CREATED; s <= SIM_CALL_CANCELLED; s++)
            if (strcmp(parts[2], sim_call_state_name(s)) == 0)
                x->state = s;
        return x->state < 0 ? -1 : 0;
    }
    if (n == 3 && strcmp(parts[0], "action") == 0) {
        x->kind = SUB_ACTION;
        return parse_num_or_any(parts[1], &x->area) || parse_num_or_any(parts[2], &x->terminal) ? -1
                                                                                                : 0;
    }
    if (n != 2)
        return -1;
    static const char *const lift_topics[] = {[SUB_POSITION] = "position",
                                              [SUB_DOORS] = "doors",
                                              [SUB_STATUS] = "status",
                                              [SUB_NEXT_STOP] = "next_stop_eta",
                                              [SUB_STOPPING] = "stopping"};
    x->kind =
        (sub_kind)sim_name_index(lift_topics, sizeof lift_topics / sizeof lift_topics[0], parts[1]);
    if (!x->kind)
        return -1;
    if (strcmp(parts[0], "+") == 0)
        return 0;
    const sim_group *gr = &h->world->b[b]->groups[g];
    for (size_t l = 0; l < gr->n_lifts; l++)
        if (strcmp(gr->lifts[l].id, parts[0]) == 0)
            x->lift = (int)l;
    return x->lift < 0 ? -1 : 0;
}

bool sim_hub_topic_valid(const sim_hub *h, int b, int g, const char *topic)
{
    sim_sub tmp = {0};
    return parse_topic(h, b, g, topic, &tmp) == 0;
}

int sim_hub_subscribe(sim_hub *h, sim_conn *c, int b, int g, const char *sub, const char *topic,
                      int64_t duration_s, const char **msg)
{
    sim_sub tmp = {0};
    if (parse_topic(h, b, g, topic, &tmp)) {
        *msg = "Invalid subtopic";
        return 400;
    }
    int64_t expires = sim_clock_real_ms(&h->clock) + duration_s * 1000;
    for (sim_sub *x = h->subs[b][g]; x; x = x->next)
        if (x->owner == c->session && strcmp(x->sub, sub) == 0 && strcmp(x->topic, topic) == 0) {
            x->expires_ms = expires; /* renewal (duration 0 ends it at the next tick) */
            if (expires < h->subs_sweep_ms)
                h->subs_sweep_ms = expires;
            return 201;
        }
    if (duration_s == 0)
        return 201;
    if (h->n_subs >= SIM_MAX_SUBS) {
        *msg = "Too many subscriptions";
        return 429;
    }
    sim_sub *x = malloc(sizeof *x);
    if (!x) {
        *msg = "Internal error";
        return 500;
    }
    *x = tmp;
    x->owner = c->session;
    x->b = b, x->g = g;
    snprintf(x->sub, sizeof x->sub, "%s", sub);
    snprintf(x->topic, sizeof x->topic, "%s", topic);
    x->expires_ms = expires;
    x->next = h->subs[b][g];
    h->subs[b][g] = x;
    h->n_subs++;
    if (expires < h->subs_sweep_ms)
        h->subs_sweep_ms = expires;
    return 201;
}

typedef struct snap_ctx {
    sim_hub *h;
    sim_conn *c;
    const sim_sub *x;
} snap_ctx;

static void snap_call(void *arg, const sim_call *call)
{
    snap_ctx *s = arg;
    if (call->state == SIM_CALL_CREATED || call->frozen || !match_call(s->x, call))
        return;
    sim_hub_send(s->c, call_frame(s->h, call));
}

void sim_hub_subscribe_snapshot(sim_hub *h, sim_conn *c, int b, int g, const char *topic)
{
    sim_sub x = {0};
    if (parse_topic(h, b, g, topic, &x))
        return;
    if (x.kind == SUB_CALL) {
        snap_ctx s = {h, c, &x};
        if (x.sid >= 0) {
            const sim_call *call = sim_model_call(h->model, x.sid);
            if (call && call->b == b && call->g == g)
                snap_call(&s, call);
        } else {
            sim_model_each_call(h->model, b, g, snap_call, &s);
        }
        return;
    }
    if (x.kind != SUB_STATUS && x.kind != SUB_POSITION)
        return;
    const sim_building *bd = h->world->b[b];
    char t[40];
    sim_hub_now(h, t, sizeof t);
    for (size_t l = 0; l < bd->groups[g].n_lifts; l++) {
        if (x.lift >= 0 && x.lift != (int)l)
            continue;
        const sim_lift_state *ls = sim_model_lift(h->model, b, g, (int)l);
        sim_hub_send(c, x.kind == SUB_STATUS ? sim_frame_lift_status(bd, ls, t)
                                             : sim_frame_lift_position(bd, ls, t));
    }
}

/* ---- injected connection faults and status changes ---- */

void sim_hub_drop(sim_hub *h, sim_conn *c, const char *why)
{
    (void)h;
    kd_info("fault: dropping connection %s client=%s (%s)", c->id, c->client_id, why);
    delayed_free(c);
    if (c->ops->drop)
        c->ops->drop(c->t);
    else
        c->ops->close(c->t, 1006, "Connection dropped");
}

static void drop_one(sim_hub *h, sim_conn *c, int code, const char *reason)
{
    if (code == 0) {
        sim_hub_drop(h, c, "drop-connections");
        return;
    }
    kd_info("fault: closing connection %s client=%s with %d %s", c->id, c->client_id, code, reason);
    c->ops->close(c->t, code, reason);
}

size_t sim_hub_ws_inject(sim_hub *h, const char *client_id, const unsigned char *bytes, size_t len,
                         int fragment)
{
    size_t n = 0;
    for (sim_conn *c = h->conns; c; c = c->next) {
        if ((client_id && client_id[0] && strcmp(client_id, c->client_id) != 0) || !c->ops->inject)
            continue;
        n++;
        c->ops->inject(c->t, bytes, len, fragment);
    }
    return n;
}

size_t sim_hub_drop_connections(sim_hub *h, const char *client_id, int code, const char *reason)
{
    size_t n = 0;
    for (sim_conn *c = h->conns; c; c = c->next) {
        if (client_id && client_id[0] && strcmp(client_id, c->client_id) != 0)
            continue;
        n++;
        drop_one(h, c, code, reason);
    }
    return n;
}

size_t sim_hub_drop_connection_id(sim_hub *h, const char *id, int code, const char *reason)
{
    for (sim_conn *c = h->conns; c; c = c->next)
        if (strcmp(id, c->id) == 0) {
            drop_one(h, c, code, reason);
            return 1;
        }
    return 0;
}

json_t *sim_hub_subscriptions(const sim_hub *h)
{
    json_t *list = json_array();
    int64_t now = sim_clock_real_ms(&h->clock);
    for (size_t b = 0; list && b < h->world->n; b++)
        for (size_t g = 0; list && g < h->world->b[b]->n_groups; g++)
            for (const sim_sub *x = h->subs[b][g]; x; x = x->next) {
                const sim_session *s = x->owner;
                if (x->expires_ms <= now) /* lapsed, not swept yet */
                    continue;
                json_t *o = json_pack(
                    "{s:s,s:s,s:s,s:s,s:o,s:o,s:s,s:I}", "building", h->world->b[b]->id, "group",
                    h->world->b[b]->groups[g].id, "topic", x->topic, "sub", x->sub, "session_id",
                    s->id[0] ? json_string(s->id) : json_null(), "connection_id",
                    s->conn ? json_string(s->conn->id) : json_null(), "client_id", s->client_id,
                    "expires_in_ms", (json_int_t)(x->expires_ms - now));
                if (!o || json_array_append_new(list, o)) {
                    json_decref(list);
                    return NULL;
                }
            }
    return list;
}

void sim_hub_publish_status(sim_hub *h, int b, int g)
{
    const sim_building *bd = h->world->b[b];
    char t[40];
    sim_hub_now(h, t, sizeof t);
    for (size_t l = 0; l < bd->groups[g].n_lifts; l++) {
        const sim_lift_state *ls = sim_model_lift(h->model, b, g, (int)l);
        if (ls && any_match(h, b, g, SUB_STATUS, match_lift, ls))
            deliver(h, b, g, SUB_STATUS, match_lift, ls, sim_frame_lift_status(bd, ls, t));
    }
}
