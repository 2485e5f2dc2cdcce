/* frames.c: JSON frame builders (see frames.h). Only jansson calls here, no state. */
#include "frames.h"

#include <stdio.h>

/* json_object_set_new that remembers an allocation failure. */
static void put(json_t *o, const char *k, json_t *v, bool *ok)
{
    if (!o || !v || json_object_set_new(o, k, v))
        *ok = false;
}

static json_t *done(json_t *o, bool ok)
{
    if (ok)
        return o;
    json_decref(o);
    return NULL;
}

json_t *sim_frame_answer(const char *conn_id, const json_t *request_id, int status, json_t *data,
                         const char *message)
{
    bool ok = true;
    json_t *o = json_object();
    /* KONE's answers say "ok" or "error" in `type`: its example client (konecorp/
     * kone-api-examples, waitForResponse) matches answers by it, and anything else is an
     * event to it. */
    put(o, "type", json_string(status >= 200 && status < 300 ? "ok" : "error"), &ok);
    put(o, "statusCode", json_integer(status), &ok);
    put(o, "connectionId", json_string(conn_id), &ok);
    put(o, "requestId", request_id ? json_deep_copy(request_id) : json_null(), &ok);
    if (message)
        put(o, "message", json_string(message), &ok);
    if (data)
        put(o, "data", data, &ok);
    return done(o, ok);
}

json_t *sim_frame_call_result(const char *call_type, const char *building_id, const char *group_id,
                              const json_t *request_id, bool success, int64_t session_id,
                              const char *error)
{
    bool ok = true;
    json_t *o = json_object(), *d = json_object();
    put(d, "request_id", request_id ? json_deep_copy(request_id) : json_null(), &ok);
    put(d, "success", json_boolean(success), &ok);
    if (session_id > 0)
        put(d, "session_id", json_integer(session_id), &ok);
    if (error)
        put(d, "error", json_string(error), &ok);
    put(o, "callType", json_string(call_type), &ok);
    put(o, "buildingId", json_string(building_id), &ok);
    put(o, "groupId", json_string(group_id), &ok);
    if (d)
        put(o, "data", d, &ok);
    else
        ok = false;
    return done(o, ok);
}

json_t *sim_frame_event(const char *call_type, const sim_building *b, const char *group_id,
                        const char *subtopic, json_t *data)
{
    bool ok = data != NULL;
    json_t *o = json_object();
    put(o, "callType", json_string(call_type), &ok);
    put(o, "buildingId", json_string(b->id), &ok);
    put(o, "groupId", json_string(group_id), &ok);
    put(o, "subtopic", json_string(subtopic), &ok);
    if (data)
        put(o, "data", data, &ok);
    return done(o, ok);
}

json_t *sim_frame_call_state(const sim_building *b, const sim_call *c, const char *time,
                             const char *eta)
{
    const sim_group *g = &b->groups[c->g];
    bool ok = true;
    json_t *d = json_object();
    put(d, "time", json_string(time), &ok);
    put(d, "session_id", json_integer(c->session_id), &ok);
    put(d, "state", json_string(sim_call_state_name(c->state)), &ok);
    if (c->lift >= 0 && c->state >= SIM_CALL_BEING_SERVED && c->state <= SIM_CALL_SERVED)
        put(d, "allocated_lift_deck", json_pack("[I]", (json_int_t)g->lifts[c->lift].deck), &ok);
    if (eta && (c->state == SIM_CALL_BEING_SERVED || c->state == SIM_CALL_SERVED_SOON))
        put(d, "eta", json_string(eta), &ok);
    if (c->state == SIM_CALL_CANCELLED)
        put(d, "cancel_reason", json_string(c->cancel_reason), &ok);
    if (c->mod_dst) {
        put(d, "modified_destination", json_integer(c->mod_dst), &ok);
        put(d, "modified_reason", json_string(c->mod_reason), &ok);
    }
    put(d, "subgroup_id", json_integer(1), &ok);
    char topic[96];
    snprintf(topic, sizeof topic, "call_state/%lld/%s", (long long)c->session_id,
             sim_call_state_name(c->state));
    return sim_frame_event("monitor-call-state", b, g->id, topic, done(d, ok));
}

static const char *moving_state(const sim_lift_state *ls)
{
    switch (ls->phase) {
    case SIM_PHASE_MOVING: return ls->next == ls->target ? "DECELERATING" : "MOVING";
    case SIM_PHASE_IDLE: return "STANDING";
    default: return "STOPPED";
    }
}

static json_t *lift_event(const char *call_type, const char *what, const sim_building *b,
                          const sim_lift_state *ls, json_t *data)
{
    char topic[96];
    snprintf(topic, sizeof topic, "%s/%s", ls->def->id, what);
    return sim_frame_event(call_type, b, b->groups[ls->g].id, topic, data);
}

json_t *sim_frame_lift_position(const sim_building *b, const sim_lift_state *ls, const char *time)
{
    const char *dir = ls->dir > 0 ? "UP" : "DOWN";
    int adv = ls->phase == SIM_PHASE_MOVING ? ls->next : ls->pos;
    json_t *d = json_pack("{s:s,s:s,s:s,s:s,s:I,s:i,s:i,s:b}", "time", time, "dir", dir, "coll",
                          dir, "moving_state", moving_state(ls), "area", (json_int_t)ls->def->deck,
                          "cur", b->floors[ls->pos].id, "adv", b->floors[adv].id, "door",
                          ls->phase != SIM_PHASE_MOVING);
    return lift_event("monitor-lift-position", "position", b, ls, d);
}

json_t *sim_frame_door(const sim_building *b, const sim_lift_state *ls, int side, const char *state,
                       const char *time)
{
    int64_t landing = b->floors[ls->pos].area[side];
    json_t *d = json_pack("{s:s,s:I,s:I,s:i,s:s}", "time", time, "area", (json_int_t)ls->def->deck,
                          "landing", (json_int_t)landing, "lift_side", side, "state", state);
    return lift_event("monitor-door-state", "doors", b, ls, d);
}

json_t *sim_frame_lift_status(const sim_building *b, const sim_lift_state *ls, const char *time)
{
    const sim_faults *f = &b->groups[ls->g].faults;
    /* the mode as the spec names it: lift_mode, an integer (-1 out of service), nothing else */
    json_t *d =
        json_pack("{s:s,s:b,s:i,s:f,s:[{s:I,s:b}]}", "time", time, "fault_active",
                  f->mode == SIM_MODE_OSS, "lift_mode", sim_mode_code(f->mode), "nominal_speed",
                  2.5, "decks", "area", (json_int_t)ls->def->deck, "alarm", 0);
    return lift_event("monitor-lift-status", "status", b, ls, d);
}

json_t *sim_frame_next_stop(const sim_building *b, const sim_lift_state *ls, const char *eta,
                            const char *last_start, const char *time)
{
    if (ls->target < 0)
        return NULL;
    json_t *d =
        json_pack("{s:s,s:s,s:s,s:{s:I,s:i,s:i,s:i,s:i}}", "time", time, "eta", eta,
                  "last_start_time", last_start, "decks", "area", (json_int_t)ls->def->deck,
                  "next_stop", b->floors[ls->target].id, "current_position", b->floors[ls->pos].id,
                  "last_start_position", b->floors[ls->last_start_pos].id, "load_percentage", 0);
    return lift_event("monitor-next-stop-eta", "next_stop_eta", b, ls, d);
}

json_t *sim_frame_stopping(const sim_building *b, const sim_lift_state *ls, int floor,
                           const int64_t *in, size_t n_in, const int64_t *out, size_t n_out,
                           const char *time)
{
    bool ok = true;
    json_t *doors = json_array();
    int sides = ls->sides[floor] ? ls->sides[floor] : (1 << 1);
    for (int s = 1; doors && s <= SIM_MAX_SIDES; s++) {
        if (!(sides & (1 << s)) || !b->floors[floor].area[s])
            continue;
        json_t *ia = json_array(), *oa = json_array();
        for (size_t i = 0; ia && i < n_in; i++)
            json_array_append_new(ia, json_integer(in[i]));
        for (size_t i = 0; oa && i < n_out; i++)
            json_array_append_new(oa, json_integer(out[i]));
        json_t *door = (ia && oa) ? json_pack("{s:I,s:i,s:o,s:o}", "landing",
                                              (json_int_t)b->floors[floor].area[s], "lift_side", s,
                                              "inbound", ia, "outbound", oa)
                                  : NULL;
        if (!door) {
            json_decref(ia), json_decref(oa);
            ok = false;
        } else if (json_array_append_new(doors, door)) {
            ok = false;
        }
    }
    if (!doors || !ok) {
        json_decref(doors);
        return NULL;
    }
    json_t *d = json_pack("{s:s,s:{s:I,s:o}}", "time", time, "decks", "area",
                          (json_int_t)ls->def->deck, "doors", doors);
    return lift_event("monitor-lift-stopping", "stopping", b, ls, d);
}
