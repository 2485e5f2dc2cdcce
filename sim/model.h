/* model: the lift model of kone-sim: lifts moving floor by floor, calls and their states.
 *
 * The model runs on its own clock, in "model milliseconds" that the caller advances
 * (sim_model_advance); the server maps real time to model time with sim.speed, the unit
 * tests with a fake clock, so everything here is deterministic: the same calls at the same
 * model times give the same events. Events are processed in time order, however coarse the
 * caller's steps.
 *
 * A lift stops where a pickup or a drop-off is pending; it keeps its direction while stops
 * remain ahead, then turns (collective control). A stop takes door_ms (a quarter opening,
 * half open, a quarter closing) and travelling one floor floor_ms.
 *
 * A call's states: created (only while the site link is down: it never moves on) →
 * being_allocated (at once) → being_served (next allocation step: nearest suitable lift,
 * allocated_lift_deck and eta) → served_soon (the lift heads for the source floor's last
 * segment, or opens its doors there) → served (doors open at the source floor). Or
 * cancelled with a cancel_reason at any point before served (NO_LIFT_AVAILABLE at allocation
 * when no lift suits it, or while the group's faults.no_lift is on). A destination call then rides
 * to its destination (or modified destination for a transfer); that drop-off is not a state.
 *
 * Invariants: a lift's pick[]/drop[] counters equal the pending pickups/drop-offs of the
 * calls allocated to it; a call in a final state (served, cancelled) never changes again;
 * finished calls are kept `retain_ms` (for late subscribers and resume-session) then freed.
 */
#ifndef SIM_MODEL_H
#define SIM_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "building.h"

typedef enum {
    SIM_CALL_CREATED = 0,
    SIM_CALL_BEING_ALLOCATED,
    SIM_CALL_BEING_SERVED,
    SIM_CALL_SERVED_SOON,
    SIM_CALL_SERVED,
    SIM_CALL_CANCELLED,
} sim_call_state;

const char *sim_call_state_name(sim_call_state s); /* "being_allocated", ... */

typedef enum {
    SIM_PHASE_IDLE = 0,
    SIM_PHASE_MOVING,
    SIM_PHASE_OPENING,
    SIM_PHASE_OPEN,
    SIM_PHASE_CLOSING
} sim_lift_phase;

typedef struct sim_call {
    int64_t session_id;
    int b, g; /* building index in the world, group index */
    int src_floor, src_side;
    int64_t src_area;
    int dst_floor, dst_side; /* -1 / 0 for landing calls */
    int64_t dst_area;        /* 0 for landing calls */
    int dir;                 /* landing calls: +1 up, -1 down; 0 otherwise */
    int64_t mod_dst;         /* modified destination (transfer), 0 if none */
    char mod_reason[32];
    int action;
    int64_t terminal;
    int group_size;
    sim_call_state state;
    int lift;       /* index in the group, -1 until allocated */
    int64_t eta_ms; /* model time the lift is expected at the source floor */
    char cancel_reason[48];
    int64_t created_ms, changed_ms, alloc_at_ms;
    size_t n_allowed;
    int64_t allowed[SIM_MAX_LIFTS];
    uint64_t owner; /* session serial of the caller (hub's), 0 if none */
    bool boarded;   /* picked up, riding to its destination */
    bool frozen;    /* site link down: never progresses, never reported */
    bool active;    /* on the active list (lift work or allocation pending) */
    struct sim_call *next_active, *prev_active;
    struct sim_call *next_announce; /* added since the last sim_model_flush */
} sim_call;

typedef struct sim_lift_state {
    int b, g, l;
    const sim_lift *def;
    int pos;    /* floor index where the car is (or last passed) */
    int next;   /* floor index it moves to (MOVING) */
    int dir;    /* +1 up, -1 down (last direction when idle) */
    int target; /* next stop announced by next_stop_eta, -1 if none */
    sim_lift_phase phase;
    int64_t phase_end_ms;
    int door_sides; /* bit (1 << side) of doors open at this stop */
    int64_t last_start_ms;
    int last_start_pos;
    int pick[SIM_MAX_FLOORS], drop[SIM_MAX_FLOORS];
    int sides[SIM_MAX_FLOORS]; /* door sides wanted at each pending stop */
    bool hold[SIM_MAX_FLOORS]; /* hold_open asked while not there: stop and open */
    int64_t hold_ms;
} sim_lift_state;

/* What the model tells its owner. Any callback may be NULL. */
typedef struct sim_model_sink {
    void (*call_state)(void *arg, const sim_call *c, int64_t now_ms);
    void (*lift_position)(void *arg, const sim_lift_state *ls, int64_t now_ms);
    void (*door)(void *arg, const sim_lift_state *ls, int side, const char *state, int64_t now_ms);
    void (*next_stop)(void *arg, const sim_lift_state *ls, int64_t eta_ms, int64_t now_ms);
    void (*stopping)(void *arg, const sim_lift_state *ls, int floor, int64_t now_ms);
    void *arg;
} sim_model_sink;

typedef struct sim_model sim_model;

/* What a validated call asks for (the request layer resolved areas and checked rules). */
typedef struct sim_call_req {
    int b, g;
    int64_t src_area, dst_area; /* dst 0 for landing calls */
    int dir;                    /* landing: +1/-1 */
    int action;
    int64_t terminal;
    int group_size;
    int64_t delay_ms; /* model ms before allocation may start */
    size_t n_allowed;
    int64_t allowed[SIM_MAX_LIFTS];
    int64_t mod_dst;        /* transfer: drop-off area instead of dst_area, 0 if none */
    const char *mod_reason; /* "AutomaticTransfer" / "ManualTransfer" */
    uint64_t owner;
    bool frozen;               /* site link down: stays created, no events */
    const char *cancel_reason; /* non-NULL: cancelled at once with this reason */
} sim_call_req;

int sim_model_create(sim_model **out, const sim_world *w, const sim_model_sink *sink);
void sim_model_free(sim_model *m);
/* How long (model ms) finished calls are kept. Default 300 000. */
void sim_model_set_retain(sim_model *m, int64_t retain_ms);
int64_t sim_model_now(const sim_model *m);

/* Adds a call at the model's current time. Returns its session id (> 0), or -1 when out of
 * memory / too many calls. Its first state (being_allocated, or cancelled) is announced by
 * the next sim_model_flush or sim_model_advance, so the caller can send its answer frames
 * first: a client always sees the answer before the call's events. */
int64_t sim_model_add_call(sim_model *m, const sim_call_req *req);
void sim_model_flush(sim_model *m);
const sim_call *sim_model_call(const sim_model *m, int64_t sid);
/* delete: 0 cancelled (event emitted), 404 unknown, 409 no longer cancellable. */
int sim_model_delete_call(sim_model *m, int64_t sid, const char *reason);
/* hold_open: keeps the doors of lift `l` open at `floor` for hold_ms, opening them if the
 * car stands there; otherwise stops there next time. 0 ok, -1 bad lift/floor. */
int sim_model_hold_open(sim_model *m, int b, int g, int l, int floor, int side, int64_t hold_ms);

/* Runs the model up to model time to_ms (never backwards), emitting events in order. */
void sim_model_advance(sim_model *m, int64_t to_ms);

const sim_lift_state *sim_model_lift(const sim_model *m, int b, int g, int l);
/* Calls of the building/group (active and retained), for snapshots: cb for each. */
void sim_model_each_call(const sim_model *m, int b, int g, void (*cb)(void *arg, const sim_call *c),
                         void *arg);
/* Session ids boarding (inbound) / leaving (outbound) at floor for a lift. Returns counts. */
void sim_model_stop_sessions(const sim_model *m, const sim_lift_state *ls, int floor, int64_t *in,
                             size_t *n_in, int64_t *out, size_t *n_out, size_t max);
/* Forgets the owner serial on every call (the owning session was freed). */
void sim_model_disown(sim_model *m, uint64_t owner);
size_t sim_model_call_count(const sim_model *m);

/* Effective drop-off area: modified destination if any, else the destination. */
int64_t sim_call_dropoff_area(const sim_call *c);

#endif
