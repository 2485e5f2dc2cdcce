/* proto: the stream-v2 request layer: one JSON text frame in, answer frames out.
 *
 * Every request gets exactly one answer frame (statusCode, connectionId, requestId, data or
 * message), however broken it is: unparsable JSON, wrong types and unknown request types
 * get 400, never a dropped frame or a crash. The rules of "How KONE rejects calls" are
 * decided by sim_proto_check_call, a pure function of the building and the payload, so the
 * rejection table is tested without sockets; sim_proto_handle applies its decision (answer,
 * second frame, model call, monitor-action event).
 *
 * Order of checks, as KONE's layers would apply them: frame parses → request id (409 when
 * reused on this connection) → type → building (404) → scope (403) → group (404) → payload
 * validation (400 "Invalid json payload") → site link (a call is accepted but never reaches
 * the site) → group mode → action → areas → direction/destination rules.
 *
 * Injected faults (faults.h) come in at three points: before anything, a request may take
 * its connection down with it (drop_probability); every answer is sent no earlier than the
 * injected latency (the global one, plus the group's once the group is known); and a
 * lift-call-api-v2 request, once its group is resolved, may be answered with an injected
 * status (call_error) instead of being executed. The other faults are group state that the
 * rules above already read (mode, link, locked areas) or the model reads (no_lift).
 *
 * Every lift-call-api-v2 request that parsed is added to the hub's call log (calls.h) once
 * its answer is decided, whatever that answer (a 409 for a reused request id included), so
 * tests can count the calls each job placed (GET /sim/calls).
 */
#ifndef SIM_PROTO_H
#define SIM_PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "building.h"
#include "hub.h"
#include "model.h"

#define SIM_MAX_FRAME (64 * 1024)

typedef enum {
    SIM_CALL_BAD_PAYLOAD = 1, /* 400 Invalid json payload (message says which field) */
    SIM_CALL_REFUSED,         /* 201, then success:false with `error` */
    SIM_CALL_ACCEPTED,        /* 201, then success:true with session_id; req filled */
    SIM_CALL_SITE_DOWN,       /* 201 and nothing else; req filled (frozen) */
} sim_call_verdict;

typedef struct sim_call_decision {
    sim_call_verdict verdict;
    char message[160]; /* BAD_PAYLOAD: "Invalid json payload: ..." */
    char error[160];   /* REFUSED: "Ignoring call, ..." / "INVALID_DIRECTION" */
    sim_call_req req;  /* ACCEPTED / SITE_DOWN: what to give the model */
} sim_call_decision;

/* Decides a lift-call-api-v2 `action` payload for group g of building b (index bi). */
void sim_proto_check_call(const sim_building *b, int bi, int g, const json_t *payload,
                          sim_call_decision *d);

/* Handles one text frame received on connection c. */
void sim_proto_handle(sim_hub *h, sim_conn *c, const char *text, size_t len);
/* Answers a frame that exceeded SIM_MAX_FRAME (its content was discarded). */
void sim_proto_too_large(sim_hub *h, sim_conn *c);

#endif
