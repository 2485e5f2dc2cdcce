/**
 * @file kd_job.h
 * @brief kd_job: the elevator-call job, format v1 (docs/job-format.md is the contract).
 *
 * A job is a msgpack map with string keys. This module decodes it into a fixed-size
 * struct (no allocation: the worker decodes one per delivery on its hot path), validates
 * every field against the documented bounds, encodes it back, and parses the JSON-lines
 * form that kone-producer reads. Unknown keys are ignored so that publishers may add
 * fields; a missing field, a wrong type or an out-of-range value is refused with the
 * field named in the error ("delay: must be an integer 0..30, got 31").
 */
#ifndef KD_JOB_H
#define KD_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <msgpack.h>

#include "kd_err.h"

/** The job format version this library reads and writes (`v`). */
#define KD_JOB_VERSION 1
/** Longest job_id, in characters. */
#define KD_JOB_ID_MAX 64
#define KD_JOB_BUILDING_MAX 80 /**< Longest building_id: "building:" + id. */
/** Longest group_id. */
#define KD_JOB_GROUP_MAX 32
/** Longest trace_id. */
#define KD_JOB_TRACE_MAX 128
/** Longest language tag. */
#define KD_JOB_LANG_MAX 16
/** Longest media_id. */
#define KD_JOB_MEDIA_ID_MAX 64
/** Longest media_cc. */
#define KD_JOB_MEDIA_CC_MAX 16
/** Longest media_type. */
#define KD_JOB_MEDIA_TYPE_MAX 16
/** Most entries in allowed_lifts. */
#define KD_JOB_ALLOWED_LIFTS_MAX 32

/** What a job does (`op`). */
typedef enum {
    KD_OP_CALL = 1, /**< "call": an elevator call */
    KD_OP_CANCEL,   /**< "cancel": cancel a call by its session id */
    KD_OP_HOLD_OPEN /**< "hold_open": hold a lift door open */
} kd_op;
/** A call's `priority`. */
typedef enum {
    KD_PRIO_UNSET = 0, /**< not given */
    KD_PRIO_LOW,       /**< "LOW" */
    KD_PRIO_HIGH       /**< "HIGH" */
} kd_priority;

/** A decoded, validated job (docs/job-format.md). has_* flags say whether an optional
 * integer was given. */
typedef struct kd_job {
    int v;                                     /**< format version, KD_JOB_VERSION */
    char job_id[KD_JOB_ID_MAX + 1];            /**< the publisher's unique id */
    kd_op op;                                  /**< what to do */
    char building_id[KD_JOB_BUILDING_MAX + 1]; /**< "building:<id>" */
    char group_id[KD_JOB_GROUP_MAX + 1];       /**< default "1" (the readers fill it) */
    int64_t created_at;                        /**< ms since the epoch */
    int64_t deadline;                    /**< ms since the epoch; created_at + TTL if absent */
    char trace_id[KD_JOB_TRACE_MAX + 1]; /**< "" if absent */

    /* op = call */
    int64_t area;                                    /**< source area */
    int64_t action;                                  /**< KONE call action */
    bool has_destination;                            /**< destination is set */
    int64_t destination;                             /**< destination area */
    bool has_terminal;                               /**< terminal is set */
    int64_t terminal;                                /**< KONE terminal id */
    bool has_delay;                                  /**< delay is set */
    int delay;                                       /**< seconds, 0..30 */
    bool has_group_size;                             /**< group_size is set */
    int group_size;                                  /**< passengers, 1..100 */
    char language[KD_JOB_LANG_MAX + 1];              /**< e.g. "en-GB", "" if absent */
    kd_priority priority;                            /**< call replacement priority */
    size_t n_allowed_lifts;                          /**< entries used in allowed_lifts */
    int64_t allowed_lifts[KD_JOB_ALLOWED_LIFTS_MAX]; /**< lift decks the call may use */
    char media_id[KD_JOB_MEDIA_ID_MAX + 1];          /**< access media id, "" if absent */
    char media_cc[KD_JOB_MEDIA_CC_MAX + 1];          /**< access media company code, "" if absent */
    char media_type[KD_JOB_MEDIA_TYPE_MAX + 1];      /**< e.g. "RFID", "" if absent */
    bool track; /**< follow the call's states, publish its events */

    /* op = hold_open */
    int64_t lift_deck;   /**< the deck whose door to hold */
    int64_t served_area; /**< the area it serves */
    bool has_hard_time;  /**< hard_time is set */
    int hard_time;       /**< seconds, 0..10 */
    bool has_soft_time;  /**< soft_time is set */
    int soft_time;       /**< seconds, 0..30 */

    /* op = cancel */
    int64_t session_id; /**< the call to cancel (its result's session_id) */
} kd_job;

const char *kd_op_name(kd_op op);           /**< "call", "cancel", "hold_open" */
int kd_op_parse(const char *s, kd_op *out); /**< 0, or KD_ERR_INVALID (*out untouched) */

/** Decodes a msgpack body into *job and validates it. default_ttl_ms fills a missing
 * deadline. Returns KD_ERR_DECODE for bytes that are not exactly one msgpack map (also
 * truncated, trailing bytes, nesting deeper than 16, bodies over 64 KiB: dead-letter
 * material; *job is all zero), KD_ERR_INVALID for a map with bad fields (the error names
 * the field; job->job_id, building_id and trace_id are each set when they were readable
 * and valid, so the outcome can be reported; every other field is zero). */
int kd_job_decode(const void *buf, size_t len, int64_t default_ttl_ms, kd_job *job, kd_err *err);

/** The structural check kd_job_decode makes of untrusted bytes, alone: 0 when
 * buf is exactly one complete msgpack map, nested at most 16 deep, whose container counts
 * all fit in the bytes present; KD_ERR_DECODE otherwise. msgpack-c allocates a container's
 * elements up front from the count in its header, so any reader of untrusted msgpack runs
 * this first (kone-events does). */
int kd_job_scan_map(const void *buf, size_t len, kd_err *err);

/** Checks every bound of the contract; called by decode and from_json. */
int kd_job_validate(const kd_job *job, kd_err *err);

/** Validates *job, then encodes its set fields (those of its op; optional ones only when
 * present) as a msgpack map, appended to sbuf. On error nothing is appended. */
int kd_job_encode(const kd_job *job, msgpack_sbuffer *sbuf, kd_err *err);

/** Caps a job's life (job.max_age_ms): lowers job->deadline to job->created_at + max_age_ms
 * when it lies later than that. A job without created_at (0) is measured from now_ms
 * instead. max_age_ms <= 0: no cap. Returns true when the deadline was lowered. The result
 * still satisfies kd_job_validate (deadline > created_at), and capping again changes nothing,
 * so a retry copy re-encoded from the capped job keeps the same deadline. */
bool kd_job_cap_deadline(kd_job *job, int64_t max_age_ms, int64_t now_ms);

/** Parses one JSON object (the kone-producer input form: same keys and types as the
 * msgpack map) into *job and validates it. now_ms fills a missing created_at. Errors as
 * kd_job_decode (KD_ERR_DECODE when obj is not a JSON object). */
int kd_job_from_json(const json_t *obj, int64_t now_ms, int64_t default_ttl_ms, kd_job *job,
                     kd_err *err);

#endif
