/* kone_msg: the KONE Elevator Call API 2.0 frames, as pure functions.
 *
 * Builders turn a kd_job (or a session/monitor/ping need) into one JSON text frame;
 * the parser turns any incoming text frame into a tagged struct. Nothing here touches
 * a socket, a clock or a global (but a per-thread copy of the last minute's time digits,
 * which changes no output): the caller passes the time and the request id, so
 * every frame shape is unit-tested byte for byte (tests/unit/test_worker_kone_msg.c).
 *
 * Frame shapes follow ../shared/kone/elevator-websocket-api-v2.yaml:
 *   lift-call-api-v2 (action, hold_open, delete): payload.request_id is a number;
 *   create-session, resume-session, site-monitoring, common-api config/actions: a
 *   top-level "requestId" string (our numeric counter as text);
 *   common-api ping: payload.request_id, a number.
 * Incoming frames are recognised by their keys, not by trusting one envelope:
 *   "statusCode"                      -> ANSWER (first frame of every request)
 *   "subtopic" call_state/<sid>/<st>  -> CALL_STATE (monitor-call-state event)
 *   "subtopic" <lift>/status          -> LIFT_STATUS (monitor-lift-status: lift_mode)
 *   other "subtopic" / monitor-* type -> EVENT (position/door/deck events, ignored)
 *   data.success or data.session_id   -> CALL_RESULT (second frame of an accepted call)
 *   anything else that is JSON        -> UNKNOWN; not JSON / not an object -> MALFORMED.
 * The parser never trusts types: a field of the wrong type is treated as absent.
 */
#ifndef KD_WORKER_KONE_MSG_H
#define KD_WORKER_KONE_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kd_err.h"
#include "kd_event.h"
#include "kd_job.h"
#include "kd_run.h"

#define KD_KONE_SESSION_MAX 128

typedef enum {
    KD_KONE_MSG_MALFORMED = 0, /* not JSON, or not a JSON object */
    KD_KONE_MSG_UNKNOWN,       /* a JSON object we do not recognise */
    KD_KONE_MSG_ANSWER,        /* statusCode + requestId (+ data / message) */
    KD_KONE_MSG_CALL_RESULT,   /* second frame of an accepted call */
    KD_KONE_MSG_CALL_STATE,    /* call_state/<session_id>/<state> event */
    KD_KONE_MSG_EVENT,         /* any other monitoring event */
    KD_KONE_MSG_LIFT_STATUS,   /* <lift>/status event (monitor-lift-status) */
} kd_kone_msg_kind;

typedef struct kd_kone_msg {
    kd_kone_msg_kind kind;

    /* ANSWER */
    int status;          /* statusCode */
    bool has_request_id; /* requestId (number or digits) or data.request_id */
    int64_t request_id;
    char message[256];                    /* "message", data.message or data.error; "" if none */
    char session_id[KD_KONE_SESSION_MAX]; /* data.sessionId of create/resume-session, "" if none */
    bool session_numeric;                 /* it came as a JSON number */

    /* CALL_RESULT (has_request_id/request_id from data.request_id) */
    bool has_success;
    bool success;
    int64_t call_session_id; /* data.session_id, 0 if absent */
    char error[256];         /* data.error (text or number as text), "" if none */

    /* CALL_STATE: ev.run is NULL and ev.received_us 0; the caller fills them */
    kd_call_event ev;

    /* CALL_STATE / EVENT / LIFT_STATUS */
    char subtopic[128];

    /* LIFT_STATUS: the lift (the <lift> of its subtopic), where, and its lift_mode */
    char lift[64];
    char building[KD_JOB_BUILDING_MAX + 16];
    char group[KD_JOB_GROUP_MAX + 1];
    bool has_lift_mode;
    int64_t lift_mode;
} kd_kone_msg;

/* ---- building frames: each returns a malloc'd NUL-terminated JSON text, or NULL with
 * err set (KD_ERR_NOMEM, or KD_ERR_INVALID for an op/field the frame cannot carry). */

/* The request for a job: op call -> callType "action", hold_open -> "hold_open",
 * cancel -> "delete" (payload.session_id). now_us stamps payload.time (ISO 8601). */
char *kd_kone_msg_job(const kd_job *job, int64_t request_id, int64_t now_us, kd_err *err);
char *kd_kone_msg_create_session(int64_t request_id, kd_err *err);
/* resend_s > 0 adds resendLatestStateUpToSeconds. session_numeric sends the id back
 * as a JSON number (it came as one). */
char *kd_kone_msg_resume_session(int64_t request_id, const char *session_id, bool session_numeric,
                                 int resend_s, kd_err *err);
/* common-api: call_type is "ping", "config" or "actions". building may be NULL/"" (the
 * key is then left out), group NULL/"" means "1". */
char *kd_kone_msg_common(const char *call_type, const char *building, const char *group,
                         int64_t request_id, kd_err *err);
/* site-monitoring / monitor with payload.sub, payload.duration, payload.subtopics. */
char *kd_kone_msg_monitor(const char *building, const char *group, int64_t request_id,
                          const char *sub, int duration_s, const char *const *subtopics,
                          size_t n_subtopics, kd_err *err);

/* "building:<id>" whether or not the job's id already carries the prefix. */
void kd_kone_building_id(const char *building, char *buf, size_t len);
/* Percent-encodes all but RFC 3986 unreserved characters (the token in the upgrade URL's
 * query); truncates to fit len. */
void kd_kone_url_escape(const char *in, char *out, size_t len);
/* "2026-11-28T20:15:00.123Z" from µs since the epoch. */
void kd_kone_iso8601(int64_t us, char *buf, size_t len);

/* ---- parsing: fills *out (zeroed first). Returns 0, or KD_ERR_DECODE for MALFORMED
 * (out->kind is set either way, err says what was wrong). Never reads past len. */
int kd_kone_msg_parse(const char *buf, size_t len, kd_kone_msg *out, kd_err *err);
/* The same through jansson alone (the scanner skipped): what kd_kone_msg_parse falls back to,
 * and what the tests compare it with (test_worker_kone_jview, fuzz_kone_msg). */
int kd_kone_msg_parse_jansson(const char *buf, size_t len, kd_kone_msg *out, kd_err *err);

/* Whether the client reads a call-state event of this session id further (it follows the
 * call) or drops it: KONE keeps sending a call's later states (there is no unsubscribe), and
 * the other calls' states of a subscribed building and group come too. */
typedef bool (*kd_kone_msg_keep_fn)(int64_t session_id, void *user);
/* kd_kone_msg_parse with that question asked in the same pass: a frame whose root has a
 * "subtopic" "call_state/<1-18 digits>/..." with no "statusCode" before it is offered to
 * keep (NULL: every frame is kept) as soon as the scan has read that member, before the rest
 * of the frame (its data) is read; when keep says no, returns 0 with *kept false and *out
 * untouched (the rest of the frame is neither read nor checked, as a peek would not). Frames
 * the scanner leaves to jansson are asked once jansson read them (no "statusCode" at all).
 * Otherwise *kept is true and the result is kd_kone_msg_parse's. kept may be NULL. A frame
 * is scanned once: there is no separate look for the session id. */
int kd_kone_msg_read(const char *buf, size_t len, kd_kone_msg_keep_fn keep, void *user, bool *kept,
                     kd_kone_msg *out, kd_err *err);
const char *kd_kone_msg_kind_name(kd_kone_msg_kind k);

/* ---- classification: what an answer's statusCode means for the job. */
typedef enum {
    KD_KONE_ST_OK = 0,    /* 2xx */
    KD_KONE_ST_AUTH,      /* 401: refresh the token, reconnect, send again */
    KD_KONE_ST_REJECTED,  /* other 4xx: final */
    KD_KONE_ST_TRANSIENT, /* 429, 5xx, anything unexpected: retry may help */
} kd_kone_status_class;
kd_kone_status_class kd_kone_status_classify(int status);

/* A call's second frame said success=false with this error text: the outcome class and
 * a short code for run->error_code ("ignored_call", "INVALID_DIRECTION", ...). Texts
 * carrying KONE's link-down error 1005 are transient; every other refusal is final. */
kd_outcome kd_kone_call_error_outcome(const char *text, char *code, size_t code_len);
/* A cancel_reason as an error code: itself when it is one token (A-Z, 0-9, _ . -),
 * else "cancelled". */
void kd_kone_cancel_code(const char *reason, char *code, size_t code_len);

#endif
