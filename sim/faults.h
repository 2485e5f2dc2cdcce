/* faults: kone-sim's fault injection: the state, its JSON form, and the decisions it drives.
 *
 * The state is in two places: one sim_faults per group (building.h: mode, site link, no
 * lift, locked areas, latency, call errors of that group) and one sim_fault_global in the
 * hub (latency, call errors, dropped and refused connections, token endpoint, token
 * lifetime). Both are plain structs read by the code that acts on them (proto.c, model.c,
 * hub.c, http.c, stream.c); the only writers are the buildings file at start and
 * sim_fault_merge below, called by the control endpoint (control.c) and --sim-faults.
 *
 * Why a snapshot (sim_fault_state) instead of editing in place: a POST either applies whole
 * or not at all. The merge works on a copy of every group's faults plus the global ones and
 * is copied back only when every field of the request was valid, so a typo in the last
 * field cannot leave half a fault switched on.
 *
 * Everything here is a pure function of its arguments, random draws included: callers pass
 * the uniform number u in [0, 1) from sim_rng, so the tests decide what "random" gives.
 */
#ifndef SIM_FAULTS_H
#define SIM_FAULTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "building.h"

#define SIM_FAULT_MAX_LATENCY_MS 60000
#define SIM_FAULT_MAX_TTL_S ((int64_t)86400 * 30)
#define SIM_FAULT_DEFAULT_STATUS 429

/* The faults that are not per group. Zero is "no fault" for every field. */
typedef struct sim_fault_global {
    int64_t latency_ms, jitter_ms; /* added to the send time of every stream-v2 answer */
    double error_share;            /* share of lift-call-api-v2 requests answered ... */
    int error_status;              /* ... with this status instead of being executed */
    double monitor_share;          /* share of site-monitoring requests answered ... */
    int monitor_status;            /* ... with this status, no subscription made */
    double drop_probability;       /* per request: the connection is dropped instead */
    int refuse_upgrades;           /* HTTP status refusing every WebSocket upgrade; 0 off */
    int token_down;                /* HTTP status of every token request; 0 off */
    int64_t token_ttl_s;           /* lifetime of new tokens; 0: sim.token_ttl_s */
} sim_fault_global;

/* Every fault at one instant: what GET /sim/faults shows and a POST merges into. */
typedef struct sim_fault_state {
    sim_fault_global global;
    sim_faults group[SIM_MAX_BUILDINGS][SIM_MAX_GROUPS];
} sim_fault_state;

/* Copies the live state out of / back into the world and the global struct. */
void sim_fault_state_get(sim_fault_state *s, const sim_world *w, const sim_fault_global *g);
void sim_fault_state_put(const sim_fault_state *s, sim_world *w, sim_fault_global *g);

/* Merges a fault spec (the JSON of POST /sim/faults, docs/kone-sim.md) into s: fields
 * present change, fields absent stay. 0, or -1 with msg naming the field, in which case s
 * is unchanged. A "seed" member is accepted and returned in *seed (has_seed set); it is not
 * part of the state. */
int sim_fault_merge(sim_fault_state *s, const sim_world *w, const json_t *spec, char *msg,
                    size_t msg_len, bool *has_seed, uint64_t *seed);

/* The state as JSON, in the shape sim_fault_merge takes (GET output can be POSTed back). */
json_t *sim_fault_state_json(const sim_fault_state *s, const sim_world *w);

/* Calls line() once per field that differs between a and b, with a sentence for the log
 * ("latency_ms 0 -> 200", "building:9990000951 group 1 mode NOR -> FRD"). Returns the count. */
size_t sim_fault_diff(const sim_fault_state *a, const sim_fault_state *b, const sim_world *w,
                      void (*line)(void *arg, const char *text), void *arg);

/* ---- decisions (u uniform in [0, 1)) ---- */

/* Extra delay of an answer: the global latency plus the group's (gf may be NULL), plus their
 * jitters scaled by u. */
int64_t sim_fault_delay_ms(const sim_fault_global *g, const sim_faults *gf, double u);
/* Status a lift-call-api-v2 request is answered with instead of being executed, 0 for none.
 * The group's setting, when its share is above 0, takes precedence over the global one. */
int sim_fault_call_status(const sim_fault_global *g, const sim_faults *gf, double u);
/* Status a site-monitoring request is answered with instead of subscribing, 0 for none. */
int sim_fault_monitor_status(const sim_fault_global *g, double u);
/* True with probability p. */
bool sim_fault_roll(double p, double u);
/* "Too Many Requests", "Internal Server Error", ...: the message of an injected status. */
const char *sim_fault_status_text(int status);

/* A small deterministic generator (splitmix64): the simulator's only source of fault
 * randomness, seeded at start and by a "seed" member of a fault spec. */
typedef struct sim_rng {
    uint64_t s;
} sim_rng;

void sim_rng_seed(sim_rng *r, uint64_t seed);
double sim_rng_next(sim_rng *r); /* uniform in [0, 1) */

#endif
