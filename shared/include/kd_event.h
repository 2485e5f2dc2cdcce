/**
 * @file kd_event.h
 * @brief kd_event: the events the worker streams to Kafka (docs/events.md is the contract).
 *
 * kone.call.results: one msgpack map per job outcome, encoded from a kd_run.
 * kone.call.events:  one msgpack map per call-state change of a tracked call.
 * Both are maps with string keys, like jobs, so analysts can read them in any language;
 * kone-events turns any msgpack map back into one JSON line.
 */
#ifndef KD_EVENT_H
#define KD_EVENT_H

#include <jansson.h>
#include <msgpack.h>

#include "kd_err.h"
#include "kd_run.h"

/** The format version (`v`) of results and call events (docs/events.md). */
#define KD_EVENT_VERSION 1
/** At most this many allocated lift decks are kept per call event. */
#define KD_EVENT_MAX_DECKS 8

/** A tracked call's state change, as received from KONE, to be encoded for kone.call.events. */
typedef struct kd_call_event {
    const kd_run *run;  /**< the tracked job (job_id, building, group, trace) */
    int64_t session_id; /**< KONE's session id of the call */
    char state[32];     /**< being_allocated, being_served, served, cancelled, ... */
    size_t n_decks;     /**< entries used in allocated_lift_deck */
    int64_t allocated_lift_deck[KD_EVENT_MAX_DECKS]; /**< the lift decks allocated to the call */
    char eta[40];                                    /**< ISO 8601 from KONE, "" if absent */
    char cancel_reason[128];                         /**< "" if absent */
    bool has_modified_destination;                   /**< modified_destination is set */
    int64_t modified_destination; /**< a transfer call: where the passenger must call again */
    char modified_reason[64];     /**< KONE's reason for it, "" if none */
    char kone_time[40];           /**< the event's own `time` from KONE */
    int64_t received_us;          /**< when the worker received it */
} kd_call_event;

/** Appends the result event of a finished run to sbuf. */
int kd_event_encode_result(const kd_run *run, const char *worker, msgpack_sbuffer *sb, kd_err *err);
/** Appends a call-state event to sbuf. */
int kd_event_encode_call(const kd_call_event *ev, const char *worker, msgpack_sbuffer *sb,
                         kd_err *err);

/** Converts any msgpack object to JSON (maps with non-string keys get stringified keys,
 * binary becomes base64, ext becomes {"ext":type,"data":base64}). NULL on allocation
 * failure. */
json_t *kd_msgpack_to_json(const msgpack_object *o);

#endif
