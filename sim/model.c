/* model.c: lifts, calls and the event loop of the model (see model.h).
 *
 * Calls live in `slots`, indexed by session id - sid_base, so lookups are O(1); those still
 * needing allocation or lift work are also on the doubly linked active list, the only list
 * walked on every stop. Lifts live in one flat array; `first[b][g]` is a group's offset.
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_list.h"

#define SIM_MAX_CALLS 200000
#define SIM_ALLOC_MS 300 /* model ms between being_allocated and being_served */

struct sim_model {
    const sim_world *w;
    sim_model_sink sink;
    int64_t now, retain_ms, next_sid, sid_base, last_purge;
    sim_call **slots;
    size_t n_slots, cap_slots, n_calls;
    sim_call *active;
    sim_call *announce, *announce_tail;
    sim_lift_state *lifts;
    size_t n_lifts;
    size_t first[SIM_MAX_BUILDINGS][SIM_MAX_GROUPS];
};

static const char *state_names[] = {"created",     "being_allocated", "being_served",
                                    "served_soon", "served",          "cancelled"};

const char *sim_call_state_name(sim_call_state s)
{
    return (unsigned)s < sizeof state_names / sizeof state_names[0] ? state_names[s] : "unknown";
}

int sim_model_create(sim_model **out, const sim_world *w, const sim_model_sink *sink)
{
    sim_model *m = calloc(1, sizeof *m);
    if (!m)
        return -1;
    m->w = w;
    if (sink)
        m->sink = *sink;
    m->retain_ms = 300000;
    m->next_sid = 1;
    m->sid_base = 1;
    size_t n = 0;
    for (size_t b = 0; b < w->n; b++)
        for (size_t g = 0; g < w->b[b]->n_groups; g++)
            n += w->b[b]->groups[g].n_lifts;
    m->lifts = calloc(n ? n : 1, sizeof *m->lifts);
    if (!m->lifts) {
        free(m);
        return -1;
    }
    for (size_t b = 0; b < w->n; b++)
        for (size_t g = 0; g < w->b[b]->n_groups; g++) {
            const sim_group *gr = &w->b[b]->groups[g];
            m->first[b][g] = m->n_lifts;
            for (size_t l = 0; l < gr->n_lifts; l++) {
                sim_lift_state *ls = &m->lifts[m->n_lifts++];
                ls->b = (int)b, ls->g = (int)g, ls->l = (int)l;
                ls->def = &gr->lifts[l];
                /* even lifts wait at their lowest floor, odd ones at their highest */
                int lo = -1, hi = -1;
                for (size_t f = 0; f < w->b[b]->n_floors; f++)
                    if (ls->def->serves[f]) {
                        if (lo < 0)
                            lo = (int)f;
                        hi = (int)f;
                    }
                ls->pos = ls->next = (l % 2) ? hi : lo;
                ls->dir = (l % 2) ? -1 : 1;
                ls->target = -1;
                ls->last_start_pos = ls->pos;
            }
        }
    *out = m;
    return 0;
}

void sim_model_free(sim_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_slots; i++)
        free(m->slots[i]);
    free(m->slots);
    free(m->lifts);
    free(m);
}

void sim_model_set_retain(sim_model *m, int64_t retain_ms)
{
    m->retain_ms = retain_ms;
}

int64_t sim_model_now(const sim_model *m)
{
    return m->now;
}

size_t sim_model_call_count(const sim_model *m)
{
    return m->n_calls;
}

const sim_lift_state *sim_model_lift(const sim_model *m, int b, int g, int l)
{
    if (b < 0 || (size_t)b >= m->w->n || g < 0 || (size_t)g >= m->w->b[b]->n_groups || l < 0 ||
        (size_t)l >= m->w->b[b]->groups[g].n_lifts)
        return NULL;
    return &m->lifts[m->first[b][g] + (size_t)l];
}

static sim_lift_state *lift_of(sim_model *m, const sim_call *c)
{
    return &m->lifts[m->first[c->b][c->g] + (size_t)c->lift];
}

const sim_call *sim_model_call(const sim_model *m, int64_t sid)
{
    if (sid < m->sid_base || sid - m->sid_base >= (int64_t)m->n_slots)
        return NULL;
    return m->slots[sid - m->sid_base];
}

int64_t sim_call_dropoff_area(const sim_call *c)
{
    return c->mod_dst ? c->mod_dst : c->dst_area;
}

/* ---- small helpers ---- */

static const sim_building *bld(const sim_model *m, int b)
{
    return m->w->b[b];
}

static void emit_call(sim_model *m, sim_call *c)
{
    if (!c->frozen && m->sink.call_state)
        m->sink.call_state(m->sink.arg, c, m->now);
}

static void emit_pos(sim_model *m, const sim_lift_state *ls)
{
    if (m->sink.lift_position)
        m->sink.lift_position(m->sink.arg, ls, m->now);
}

static void emit_doors(sim_model *m, const sim_lift_state *ls, const char *state)
{
    for (int s = 1; s <= SIM_MAX_SIDES; s++)
        if ((ls->door_sides & (1 << s)) && m->sink.door)
            m->sink.door(m->sink.arg, ls, s, state, m->now);
}

static void active_add(sim_model *m, sim_call *c)
{
    c->active = true;
    c->prev_active = NULL;
    c->next_active = m->active;
    if (m->active)
        m->active->prev_active = c;
    m->active = c;
}

static void active_remove(sim_model *m, sim_call *c)
{
    if (!c->active)
        return;
    KD_DLIST_UNLINK(m->active, c, prev_active, next_active);
    c->active = false;
}

static void set_state(sim_model *m, sim_call *c, sim_call_state s)
{
    c->state = s;
    c->changed_ms = m->now;
    emit_call(m, c);
}

static bool wants_stop(const sim_lift_state *ls, int f)
{
    return ls->pick[f] > 0 || ls->drop[f] > 0 || ls->hold[f];
}

/* First floor with a stop strictly beyond `from` in direction dir, -1 if none. */
static int stop_ahead(const sim_model *m, const sim_lift_state *ls, int from, int dir)
{
    int n = (int)bld(m, ls->b)->n_floors;
    for (int f = from + dir; f >= 0 && f < n; f += dir)
        if (wants_stop(ls, f))
            return f;
    return -1;
}

static int dropoff_floor(const sim_model *m, const sim_call *c, int *side)
{
    int64_t a = sim_call_dropoff_area(c);
    if (!a)
        return -1;
    return sim_building_area_floor(bld(m, c->b), a, side);
}

/* ---- lift motion ---- */

static void announce_target(sim_model *m, sim_lift_state *ls)
{
    int t = stop_ahead(m, ls, ls->pos, ls->dir);
    if (t == ls->target)
        return;
    ls->target = t;
    if (t >= 0 && m->sink.next_stop) {
        int d = abs(t - ls->pos);
        m->sink.next_stop(m->sink.arg, ls, m->now + (int64_t)d * bld(m, ls->b)->floor_ms, m->now);
    }
}

/* Starts (or continues) one floor of travel from ls->pos in ls->dir. */
static void move_segment(sim_model *m, sim_lift_state *ls, bool from_standstill)
{
    ls->next = ls->pos + ls->dir;
    ls->phase = SIM_PHASE_MOVING;
    ls->phase_end_ms = m->now + bld(m, ls->b)->floor_ms;
    if (from_standstill) {
        ls->last_start_ms = m->now;
        ls->last_start_pos = ls->pos;
    }
    announce_target(m, ls);
    if (wants_stop(ls, ls->next)) {
        if (m->sink.stopping)
            m->sink.stopping(m->sink.arg, ls, ls->next, m->now);
        for (sim_call *c = m->active; c; c = c->next_active)
            if (c->b == ls->b && c->g == ls->g && c->lift == ls->l && !c->boarded &&
                c->src_floor == ls->next && c->state == SIM_CALL_BEING_SERVED)
                set_state(m, c, SIM_CALL_SERVED_SOON);
    }
    emit_pos(m, ls);
}

static void open_doors(sim_model *m, sim_lift_state *ls)
{
    const sim_building *b = bld(m, ls->b);
    ls->phase = SIM_PHASE_OPENING;
    ls->phase_end_ms = m->now + b->door_ms / 4;
    ls->door_sides = ls->sides[ls->pos] ? ls->sides[ls->pos] : (1 << 1);
    ls->target = -1;
    emit_pos(m, ls);
    for (sim_call *c = m->active; c; c = c->next_active)
        if (c->b == ls->b && c->g == ls->g && c->lift == ls->l && !c->boarded &&
            c->src_floor == ls->pos && c->state == SIM_CALL_BEING_SERVED)
            set_state(m, c, SIM_CALL_SERVED_SOON);
    emit_doors(m, ls, "OPENING");
}

/* Decides what an idle lift does next. */
static void kick(sim_model *m, sim_lift_state *ls)
{
    if (ls->phase != SIM_PHASE_IDLE)
        return;
    if (wants_stop(ls, ls->pos)) {
        open_doors(m, ls);
        return;
    }
    if (stop_ahead(m, ls, ls->pos, ls->dir) < 0) {
        if (stop_ahead(m, ls, ls->pos, -ls->dir) < 0)
            return;
        ls->dir = -ls->dir;
    }
    move_segment(m, ls, true);
}

/* Doors fully open at ls->pos: passengers board and leave. */
static void serve_floor(sim_model *m, sim_lift_state *ls)
{
    int f = ls->pos;
    sim_call *next;
    for (sim_call *c = m->active; c; c = next) {
        next = c->next_active;
        if (c->b != ls->b || c->g != ls->g || c->lift != ls->l)
            continue;
        if (!c->boarded && c->src_floor == f &&
            (c->state == SIM_CALL_BEING_SERVED || c->state == SIM_CALL_SERVED_SOON)) {
            if (c->state == SIM_CALL_BEING_SERVED)
                set_state(m, c, SIM_CALL_SERVED_SOON);
            ls->pick[f]--;
            set_state(m, c, SIM_CALL_SERVED);
            int side = 1, df = dropoff_floor(m, c, &side);
            if (df >= 0 && df != f) {
                c->boarded = true;
                ls->drop[df]++;
                ls->sides[df] |= 1 << side;
            } else {
                active_remove(m, c);
            }
        } else if (c->boarded && dropoff_floor(m, c, NULL) == f) {
            ls->drop[f]--;
            c->boarded = false;
            c->changed_ms = m->now;
            active_remove(m, c);
        }
    }
    ls->hold[f] = false;
    ls->sides[f] = 0;
}

static void step_lift(sim_model *m, sim_lift_state *ls)
{
    const sim_building *b = bld(m, ls->b);
    switch (ls->phase) {
    case SIM_PHASE_MOVING:
        ls->pos = ls->next;
        if (wants_stop(ls, ls->pos)) {
            ls->phase = SIM_PHASE_IDLE;
            open_doors(m, ls);
        } else if (stop_ahead(m, ls, ls->pos, ls->dir) >= 0) {
            move_segment(m, ls, false);
        } else { /* the stop it was heading for went away (call deleted) */
            ls->phase = SIM_PHASE_IDLE;
            ls->target = -1;
            emit_pos(m, ls);
            kick(m, ls);
        }
        break;
    case SIM_PHASE_OPENING:
        ls->phase = SIM_PHASE_OPEN;
        ls->phase_end_ms = m->now + b->door_ms / 2 + ls->hold_ms;
        ls->hold_ms = 0;
        emit_doors(m, ls, "OPENED");
        serve_floor(m, ls);
        break;
    case SIM_PHASE_OPEN:
        ls->phase = SIM_PHASE_CLOSING;
        ls->phase_end_ms = m->now + b->door_ms / 4;
        emit_doors(m, ls, "CLOSING");
        break;
    case SIM_PHASE_CLOSING:
        emit_doors(m, ls, "CLOSED");
        ls->door_sides = 0;
        ls->phase = SIM_PHASE_IDLE;
        emit_pos(m, ls);
        kick(m, ls);
        break;
    case SIM_PHASE_IDLE: break;
    }
}

/* ---- calls ---- */

static bool lift_suits(const sim_model *m, const sim_call *c, const sim_lift_state *ls)
{
    const sim_lift *l = ls->def;
    if (!l->serves[c->src_floor] || (c->src_side == 2 && !l->rear))
        return false;
    int side = 1, df = dropoff_floor(m, c, &side);
    if (df >= 0 && (!l->serves[df] || (side == 2 && !l->rear)))
        return false;
    if (c->n_allowed == 0)
        return true;
    for (size_t i = 0; i < c->n_allowed; i++)
        if (c->allowed[i] == l->deck)
            return true;
    return false;
}

/* Rough time for the lift to reach floor f: remaining phase, travel, stops on the way. */
static int64_t estimate(const sim_model *m, const sim_lift_state *ls, int f)
{
    const sim_building *b = bld(m, ls->b);
    int from = ls->phase == SIM_PHASE_MOVING ? ls->next : ls->pos;
    int64_t t = ls->phase != SIM_PHASE_IDLE ? ls->phase_end_ms - m->now : 0;
    if (t < 0)
        t = 0;
    int lo = from < f ? from : f, hi = from < f ? f : from;
    t += (int64_t)(hi - lo) * b->floor_ms;
    for (int x = lo + 1; x < hi; x++)
        if (wants_stop(ls, x))
            t += b->door_ms;
    if (ls->phase == SIM_PHASE_MOVING && from != f && wants_stop(ls, from))
        t += b->door_ms;
    return t;
}

static void cancel(sim_model *m, sim_call *c, const char *reason)
{
    snprintf(c->cancel_reason, sizeof c->cancel_reason, "%s", reason);
    active_remove(m, c);
    set_state(m, c, SIM_CALL_CANCELLED);
}

static void allocate(sim_model *m, sim_call *c)
{
    sim_lift_state *best = NULL;
    int64_t best_t = 0;
    const sim_group *g = &bld(m, c->b)->groups[c->g];
    for (size_t l = 0; l < g->n_lifts && !g->faults.no_lift; l++) {
        sim_lift_state *ls = &m->lifts[m->first[c->b][c->g] + l];
        if (!lift_suits(m, c, ls))
            continue;
        int64_t t = estimate(m, ls, c->src_floor);
        if (!best || t < best_t)
            best = ls, best_t = t;
    }
    if (!best) {
        cancel(m, c, "NO_LIFT_AVAILABLE");
        return;
    }
    c->lift = best->l;
    c->eta_ms = m->now + best_t;
    best->pick[c->src_floor]++;
    best->sides[c->src_floor] |= 1 << c->src_side;
    set_state(m, c, SIM_CALL_BEING_SERVED);
    kick(m, best);
}

static int grow_slots(sim_model *m)
{
    if (m->n_slots < m->cap_slots)
        return 0;
    size_t cap = m->cap_slots ? m->cap_slots * 2 : 256;
    // NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers, sized as one
    sim_call **s = realloc(m->slots, cap * sizeof *s);
    if (!s)
        return -1;
    m->slots = s;
    m->cap_slots = cap;
    return 0;
}

int64_t sim_model_add_call(sim_model *m, const sim_call_req *r)
{
    const sim_building *b = bld(m, r->b);
    int side = 1;
    int sf = sim_building_area_floor(b, r->src_area, &side);
    if ((sf < 0 && !r->frozen) || m->n_calls >= SIM_MAX_CALLS || grow_slots(m))
        return -1;
    sim_call *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->session_id = m->next_sid++;
    m->slots[m->n_slots++] = c;
    m->n_calls++;
    c->b = r->b, c->g = r->g;
    c->src_floor = sf, c->src_side = side, c->src_area = r->src_area;
    c->dst_area = r->dst_area;
    c->dst_floor = r->dst_area ? sim_building_area_floor(b, r->dst_area, &c->dst_side) : -1;
    if (c->src_floor < 0) /* frozen call from an unknown area: it never moves anyway */
        c->src_floor = 0, c->src_side = 1;
    c->dir = r->dir;
    c->mod_dst = r->mod_dst;
    if (r->mod_dst && r->mod_reason)
        snprintf(c->mod_reason, sizeof c->mod_reason, "%s", r->mod_reason);
    c->action = r->action, c->terminal = r->terminal, c->group_size = r->group_size;
    c->lift = -1;
    c->n_allowed = r->n_allowed > SIM_MAX_LIFTS ? SIM_MAX_LIFTS : r->n_allowed;
    memcpy(c->allowed, r->allowed, c->n_allowed * sizeof c->allowed[0]);
    c->owner = r->owner;
    c->frozen = r->frozen;
    c->created_ms = c->changed_ms = m->now;
    c->alloc_at_ms = m->now + SIM_ALLOC_MS + (r->delay_ms > 0 ? r->delay_ms : 0);
    if (r->frozen)
        return c->session_id; /* stays created, off the active list */
    if (r->cancel_reason) {
        snprintf(c->cancel_reason, sizeof c->cancel_reason, "%s", r->cancel_reason);
        c->state = SIM_CALL_CANCELLED;
    } else {
        active_add(m, c);
        c->state = SIM_CALL_BEING_ALLOCATED;
    }
    KD_SLIST_APPEND(m->announce, m->announce_tail, c, next_announce);
    return c->session_id;
}

void sim_model_flush(sim_model *m)
{
    while (m->announce) {
        sim_call *c = m->announce;
        m->announce = c->next_announce;
        c->next_announce = NULL;
        if (!m->announce)
            m->announce_tail = NULL;
        emit_call(m, c);
    }
}

int sim_model_delete_call(sim_model *m, int64_t sid, const char *reason)
{
    sim_call *c = (sim_call *)sim_model_call(m, sid);
    if (!c)
        return 404;
    if (c->state == SIM_CALL_CREATED) { /* frozen: nobody will hear of it */
        snprintf(c->cancel_reason, sizeof c->cancel_reason, "%s", reason);
        c->state = SIM_CALL_CANCELLED;
        c->changed_ms = m->now;
        return 0;
    }
    if (c->state != SIM_CALL_BEING_ALLOCATED && c->state != SIM_CALL_BEING_SERVED)
        return 409;
    if (c->lift >= 0) {
        sim_lift_state *ls = lift_of(m, c);
        ls->pick[c->src_floor]--;
        if (!wants_stop(ls, c->src_floor))
            ls->sides[c->src_floor] = 0;
    }
    cancel(m, c, reason);
    return 0;
}

int sim_model_hold_open(sim_model *m, int b, int g, int l, int floor, int side, int64_t hold_ms)
{
    sim_lift_state *ls = (sim_lift_state *)sim_model_lift(m, b, g, l);
    if (!ls || floor < 0 || (size_t)floor >= bld(m, b)->n_floors || !ls->def->serves[floor])
        return -1;
    if (ls->pos == floor && ls->phase != SIM_PHASE_MOVING) {
        if (ls->phase == SIM_PHASE_OPEN) {
            if (ls->phase_end_ms < m->now + hold_ms)
                ls->phase_end_ms = m->now + hold_ms;
            return 0;
        }
        ls->hold_ms = hold_ms;
        if (ls->phase == SIM_PHASE_OPENING)
            return 0;
        ls->sides[floor] |= 1 << side;
        ls->hold[floor] = true;
        if (ls->phase == SIM_PHASE_CLOSING) { /* reopen */
            ls->phase = SIM_PHASE_IDLE;
            emit_doors(m, ls, "OPENING");
            ls->phase = SIM_PHASE_OPENING;
            ls->door_sides |= 1 << side;
            ls->phase_end_ms = m->now + bld(m, b)->door_ms / 4;
            return 0;
        }
        kick(m, ls);
        return 0;
    }
    ls->hold[floor] = true;
    ls->sides[floor] |= 1 << side;
    ls->hold_ms = hold_ms;
    kick(m, ls);
    return 0;
}

/* ---- time ---- */

static void purge(sim_model *m)
{
    if (m->now - m->last_purge < 1000 && m->n_calls < SIM_MAX_CALLS)
        return;
    m->last_purge = m->now;
    for (size_t i = 0; i < m->n_slots; i++) {
        sim_call *c = m->slots[i];
        if (c && !c->active && c->changed_ms + m->retain_ms <= m->now) {
            free(c);
            m->slots[i] = NULL;
            m->n_calls--;
        }
    }
    size_t lead = 0;
    while (lead < m->n_slots && !m->slots[lead])
        lead++;
    if (lead > 0 && (lead >= 1024 || lead == m->n_slots)) {
        // NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers, as above
        memmove(m->slots, m->slots + lead, (m->n_slots - lead) * sizeof *m->slots);
        m->n_slots -= lead;
        m->sid_base += (int64_t)lead;
    }
}

static int64_t next_due(const sim_model *m)
{
    int64_t t = INT64_MAX;
    for (const sim_call *c = m->active; c; c = c->next_active)
        if (c->state == SIM_CALL_BEING_ALLOCATED && c->alloc_at_ms < t)
            t = c->alloc_at_ms;
    for (size_t i = 0; i < m->n_lifts; i++)
        if (m->lifts[i].phase != SIM_PHASE_IDLE && m->lifts[i].phase_end_ms < t)
            t = m->lifts[i].phase_end_ms;
    return t;
}

void sim_model_advance(sim_model *m, int64_t to_ms)
{
    sim_model_flush(m);
    for (;;) {
        int64_t t = next_due(m);
        if (t > to_ms)
            break;
        if (t > m->now)
            m->now = t;
        sim_call *next;
        for (sim_call *c = m->active; c; c = next) {
            next = c->next_active;
            if (c->state == SIM_CALL_BEING_ALLOCATED && c->alloc_at_ms <= m->now) {
                allocate(m, c);
                next = m->active; /* the list may have changed; restart */
            }
        }
        for (size_t i = 0; i < m->n_lifts; i++)
            if (m->lifts[i].phase != SIM_PHASE_IDLE && m->lifts[i].phase_end_ms <= m->now)
                step_lift(m, &m->lifts[i]);
    }
    if (to_ms > m->now)
        m->now = to_ms;
    purge(m);
}

/* ---- queries ---- */

void sim_model_each_call(const sim_model *m, int b, int g, void (*cb)(void *arg, const sim_call *c),
                         void *arg)
{
    for (size_t i = 0; i < m->n_slots; i++) {
        const sim_call *c = m->slots[i];
        if (c && c->b == b && c->g == g)
            cb(arg, c);
    }
}

void sim_model_stop_sessions(const sim_model *m, const sim_lift_state *ls, int floor, int64_t *in,
                             size_t *n_in, int64_t *out, size_t *n_out, size_t max)
{
    *n_in = *n_out = 0;
    for (const sim_call *c = m->active; c; c = c->next_active) {
        if (c->b != ls->b || c->g != ls->g || c->lift != ls->l)
            continue;
        if (!c->boarded && c->src_floor == floor && *n_in < max)
            in[(*n_in)++] = c->session_id;
        else if (c->boarded && dropoff_floor(m, c, NULL) == floor && *n_out < max)
            out[(*n_out)++] = c->session_id;
    }
}

void sim_model_disown(sim_model *m, uint64_t owner)
{
    for (size_t i = 0; i < m->n_slots; i++)
        if (m->slots[i] && m->slots[i]->owner == owner)
            m->slots[i]->owner = 0;
}
