/* frames: every JSON frame kone-sim sends on stream-v2, built in one place.
 *
 * docs/kone-sim.md shows these shapes; the worker's KONE client parses them, so a change
 * here is a protocol change and goes into that page too. Names follow KONE's AsyncAPI
 * description (elevator-websocket-api-v2.yaml); where it leaves a choice open the choice is
 * documented there. All builders return a new JSON object or NULL on allocation failure.
 */
#ifndef SIM_FRAMES_H
#define SIM_FRAMES_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "building.h"
#include "model.h"

/* The answer every request gets: {"statusCode","connectionId","requestId","data"} or, for
 * errors, {"statusCode","connectionId","requestId","message"}. request_id is the id as the
 * client sent it (borrowed; JSON null when none could be read). data is stolen. */
json_t *sim_frame_answer(const char *conn_id, const json_t *request_id, int status, json_t *data,
                         const char *message);

/* The second frame of a lift-call-api-v2 request: {"callType","buildingId","groupId",
 * "data":{"request_id","success","session_id"|"error"}}. session_id <= 0: omitted. */
json_t *sim_frame_call_result(const char *call_type, const char *building_id, const char *group_id,
                              const json_t *request_id, bool success, int64_t session_id,
                              const char *error);

/* Events. `time`/`eta` strings are wall-clock ISO 8601 (the caller converts). */
json_t *sim_frame_call_state(const sim_building *b, const sim_call *c, const char *time,
                             const char *eta);
json_t *sim_frame_lift_position(const sim_building *b, const sim_lift_state *ls, const char *time);
json_t *sim_frame_door(const sim_building *b, const sim_lift_state *ls, int side, const char *state,
                       const char *time);
json_t *sim_frame_lift_status(const sim_building *b, const sim_lift_state *ls, const char *time);
json_t *sim_frame_next_stop(const sim_building *b, const sim_lift_state *ls, const char *eta,
                            const char *last_start, const char *time);
json_t *sim_frame_stopping(const sim_building *b, const sim_lift_state *ls, int floor,
                           const int64_t *in, size_t n_in, const int64_t *out, size_t n_out,
                           const char *time);

/* An event envelope: {"callType","buildingId","groupId","subtopic","data"} (data stolen). */
json_t *sim_frame_event(const char *call_type, const sim_building *b, const char *group_id,
                        const char *subtopic, json_t *data);

#endif
