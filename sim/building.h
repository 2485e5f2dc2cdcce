/* building: the simulated buildings, loaded once from sim.buildings (sim/buildings.json).
 *
 * A building has floors (each with one or two landing areas: side 1 front, side 2 rear),
 * an action list, and lift groups; a group serves a set of floors with its lifts, each lift
 * having one deck named by its deck area id. Everything here is topology, fixed after
 * loading, except `sim_faults`: the per-group operating mode, the site-link state, the
 * locked areas and the other per-group faults, kept in one struct per group so the control
 * endpoint (control.c) switches them at run time without touching anything else.
 *
 * Invariants after sim_world_load() succeeded: ids are unique (building ids, group ids in a
 * building, area ids in a building, deck areas in a building, lift names in a building),
 * every group floor and transfer floor names a floor of the building, every lift's floors
 * are a subset of its group's. Lookups return NULL / -1 for unknown ids, never abort.
 */
#ifndef SIM_BUILDING_H
#define SIM_BUILDING_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "kd_err.h"

/* 1,024: the bench's scale scenario serves 1,000 buildings (issue 17); a building costs
 * about 40 KiB of topology, allocated only when the buildings file names it */
#define SIM_MAX_BUILDINGS 1024
#define SIM_MAX_FLOORS 128
#define SIM_MAX_SIDES 2
#define SIM_MAX_GROUPS 8
#define SIM_MAX_LIFTS 16 /* per group */
#define SIM_MAX_ACTIONS 32
#define SIM_MAX_LOCKED 32
#define SIM_ID_MAX 48

/* Group operating modes. NOR is normal; the others refuse calls. */
typedef enum {
    SIM_MODE_NOR = 0,
    SIM_MODE_ATS, /* attendant service */
    SIM_MODE_PRC, /* priority call */
    SIM_MODE_FRD, /* fire-fighter / fire recall */
    SIM_MODE_OSS, /* out of service */
} sim_mode;

/* What an action does with its payload. */
typedef enum {
    SIM_ACT_DESTINATION = 1, /* needs call.destination */
    SIM_ACT_LANDING_UP,      /* landing call, direction up: destination ignored */
    SIM_ACT_LANDING_DOWN,
    SIM_ACT_CAR, /* car call: needs call.destination */
} sim_action_kind;

typedef struct sim_action {
    int id;
    char name[64];
    sim_action_kind kind;
    bool disabled;
} sim_action;

typedef struct sim_floor {
    int id;                          /* group floor id, as in cur/adv/next_stop */
    char name[16];                   /* short name shown on buttons */
    int64_t area[SIM_MAX_SIDES + 1]; /* area[side], 0 = none; index 0 unused */
} sim_floor;

/* Runtime state of a group: everything fault injection switches for one group (the global
 * switches are in sim_fault_global, sim/faults.h). The request layer (proto.c), the model
 * (model.c) and the hub read it; only the buildings file and the control endpoint write it. */
typedef struct sim_faults {
    sim_mode mode;
    bool link_down;                /* site link (DTU) disconnected */
    bool no_lift;                  /* every call is cancelled NO_LIFT_AVAILABLE at allocation */
    int64_t latency_ms, jitter_ms; /* added to the answers of requests for this group */
    double error_share;            /* share of lift-call-api-v2 requests answered ... */
    int error_status;              /* ... with this status instead of being executed */
    size_t n_locked;
    int64_t locked[SIM_MAX_LOCKED]; /* locked landing areas */
} sim_faults;

typedef struct sim_lift {
    char id[SIM_ID_MAX]; /* "lift_1": the <lift> of monitoring subtopics, unique per building */
    char name[16];       /* "A" */
    int64_t deck;        /* deck area id */
    bool rear;           /* has a side-2 door */
    bool serves[SIM_MAX_FLOORS]; /* by floor index */
} sim_lift;

typedef struct sim_group {
    char id[SIM_ID_MAX]; /* "1" */
    bool serves[SIM_MAX_FLOORS];
    int transfer_floor;       /* floor index, -1 if none */
    char transfer_reason[32]; /* "AutomaticTransfer" or "ManualTransfer" */
    size_t n_lifts;
    sim_lift lifts[SIM_MAX_LIFTS];
    sim_faults faults;
} sim_group;

typedef struct sim_building {
    char id[SIM_ID_MAX]; /* "building:9990000951" */
    char name[64];
    int floor_ms; /* model ms per floor travelled */
    int door_ms;  /* model ms a stop takes: opening, dwell and closing */
    size_t n_floors;
    sim_floor floors[SIM_MAX_FLOORS];
    size_t n_actions;
    sim_action actions[SIM_MAX_ACTIONS];
    size_t n_groups;
    sim_group groups[SIM_MAX_GROUPS];
} sim_building;

typedef struct sim_world {
    size_t n;
    sim_building *b[SIM_MAX_BUILDINGS];
} sim_world;

/* Loads and checks a buildings file / JSON document. On error, err names the building and
 * field. The world is empty (and needs no free) after a failure. */
int sim_world_load(sim_world *w, const char *path, kd_err *err);
int sim_world_from_json(sim_world *w, const json_t *doc, kd_err *err);
void sim_world_free(sim_world *w);

sim_building *sim_world_building(const sim_world *w, const char *id);
int sim_building_group(const sim_building *b, const char *group_id); /* index or -1 */
const sim_action *sim_building_action(const sim_building *b, int64_t id);
/* Floor index and side of a landing area, -1 if unknown. */
int sim_building_area_floor(const sim_building *b, int64_t area, int *side);
/* The area is on a floor the group serves, on a side one of its lifts has doors on. */
bool sim_group_serves_area(const sim_building *b, const sim_group *g, int64_t area);
/* Lift index in the group of a deck area, -1 if none. */
int sim_group_lift_by_deck(const sim_group *g, int64_t deck);
bool sim_faults_locked(const sim_faults *f, int64_t area);

const char *sim_mode_name(sim_mode m); /* "NOR", "OSS", ... */
int sim_mode_code(sim_mode m);         /* lift_mode integer of monitor-lift-status */
int sim_mode_parse(const char *s, sim_mode *out);

/* common-api answers: the group's topology (config) and the action list (actions). */
json_t *sim_building_config_json(const sim_building *b, const sim_group *g);
json_t *sim_building_actions_json(const sim_building *b);

#endif
