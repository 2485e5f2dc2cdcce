/* control: kone-sim's run-time control endpoint (/sim/...) and the start-up fault spec.
 *
 *   GET  /sim/faults               the fault state (faults.h) as JSON
 *   POST /sim/faults               merges a fault spec into it; answers the new state
 *   POST /sim/faults/reset         back to the faults of the buildings file (nothing injected)
 *   POST /sim/drop-connections     drops open WebSockets now ({"client_id","code","reason"})
 *   GET  /sim/calls                the lift-call-api-v2 requests received (calls.h);
 *                                  ?since=<seq>&limit=<n>&call_type=<t>&media_id_prefix=<p>
 *   POST /sim/calls/reset          empties that log (sequence numbers go on)
 *
 * It is written as a function of (method, path, Authorization, body) → (status, JSON) so
 * the tests drive it without sockets; http.c only moves bytes. Every change is logged at
 * info level, one line per changed field, with where it came from; a mode change (or a
 * site link coming back) is pushed to `<lift>/status` subscribers at once, as the real
 * group controller reports a mode change. With sim.control_token set, requests must carry
 * `Authorization: Bearer <token>` (compared in constant time, never logged); without it the
 * endpoint is open, which is why kone-sim listens on loopback by default.
 */
#ifndef SIM_CONTROL_H
#define SIM_CONTROL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "faults.h"
#include "hub.h"

typedef struct sim_control {
    sim_hub *hub;
    sim_fault_state *base; /* the faults at start (buildings file): what reset returns to */
    int64_t base_ttl_s;    /* sim.token_ttl_s, used while no token_ttl_s fault is set */
    char *token;           /* sim.control_token; NULL: no check */
} sim_control;

/* Takes the current faults of the hub's world as the reset baseline. token may be NULL or
 * "" (open endpoint). 0 or KD_ERR_NOMEM. */
int sim_control_init(sim_control *c, sim_hub *h, int64_t base_ttl_s, const char *token);
void sim_control_free(sim_control *c);

/* Applies a fault spec (as POST /sim/faults takes it); origin names the source in logs.
 * 0, or -1 with msg (nothing changed). */
int sim_control_apply(sim_control *c, const json_t *spec, const char *origin, char *msg,
                      size_t msg_len);
int sim_control_apply_text(sim_control *c, const char *text, const char *origin, char *msg,
                           size_t msg_len);
void sim_control_reset(sim_control *c, const char *origin);

/* The endpoint. Returns the HTTP status and sets *answer (a JSON body; {"message"} for
 * errors). path is the request path, starting with "/sim/", and may end in a query string
 * ("/sim/calls?since=5"; only /sim/calls reads one). */
int sim_control_request(sim_control *c, const char *method, const char *path,
                        const char *authorization, const char *body, size_t body_len,
                        json_t **answer);
/* The same, answering JSON text (malloc'd, *text_len bytes), as http.c sends it: a call
 * listing is assembled from stored texts without building a JSON tree. */
int sim_control_request_text(sim_control *c, const char *method, const char *path,
                             const char *authorization, const char *body, size_t body_len,
                             char **text, size_t *text_len);

#endif
