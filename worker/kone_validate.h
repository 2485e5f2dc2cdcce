/* kone_validate: a building group's configuration, and jobs checked against it, as pure
 * functions (no socket, no clock, no global).
 *
 * KONE answers `common-api` `config` (floors, areas, lifts of one group) and `actions` (the
 * call actions its group controller knows, some disabled). A call that names an area or an
 * action they do not list is accepted (201) and then refused: a round trip for nothing. With
 * both answers cached, such a job is refused before the call, with the code and text KONE
 * would have given (docs/kone-client.md), so downstream consumers see the same outcome.
 *
 * What is checked, in KONE's own order (../shared/kone/PROTOCOL.md, sim/proto.c):
 *   action 0                      Ignoring call, unknown call action: UNDEFINED
 *   action not listed             Ignoring call, unknown call action: <id>
 *   action listed, disabled       Ignoring call, disabled call action: <id>
 *   source area not listed        Ignoring call, unable to resolve area: area:<id>
 *   (landing actions stop here: their destination is ignored)
 *   no destination where the action needs one (destination, car)
 *                                 Ignoring call, destination not defined
 *   destination not listed, and the group has no transfer floor (a transfer floor means
 *   another group may reach it: only KONE can tell)
 *                                 Ignoring call, unable to resolve destination: area:<id>
 *   destination on the source's floor (same or opposite side)
 *                                 cancelled, SAME_SOURCE_AND_DEST_FLOOR
 * A part of the configuration that could not be read (no areas, no actions: a shape this
 * parser does not know) checks nothing: the job goes to KONE, which decides.
 *
 * The cache's freshness (kd_kval_fresh) is also decided here, on the caller's clock, so
 * the TTL, the backoff after a failed fetch and the refresh after a contradicting refusal
 * are unit-tested on a fake clock (tests/unit/test_worker_kone_validate.c).
 */
#ifndef KD_WORKER_KONE_VALIDATE_H
#define KD_WORKER_KONE_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kd_err.h"
#include "kd_job.h"

typedef struct {
    int64_t area;
    int64_t floor; /* floor_id */
    int side;      /* 1 front, 2 rear, 0 unknown */
} kd_kval_area;

typedef enum {
    KD_KVAL_KIND_OTHER = 0,   /* a kind this parser does not know: no destination check */
    KD_KVAL_KIND_DESTINATION, /* destination and car calls: a destination is required */
    KD_KVAL_KIND_LANDING,     /* landing calls: the destination is ignored */
} kd_kval_kind;

typedef struct {
    int64_t id;
    kd_kval_kind kind;
    bool disabled;
} kd_kval_action;

/* One building group's configuration; zero it before the first parse. */
typedef struct kd_kval_site {
    kd_kval_area *areas; /* sorted by area */
    size_t n_areas;
    kd_kval_action *actions; /* sorted by id */
    size_t n_actions;
    bool has_transfer; /* a floor of the group is a transfer floor */
    bool have_config, have_actions;
} kd_kval_site;

/* Parse the `data` of a config / actions answer frame (the whole frame text) into *s,
 * replacing what it held of that part. 0, or KD_ERR_DECODE (not JSON, no usable data:
 * *s unchanged), KD_ERR_NOMEM. */
int kd_kval_parse_config(kd_kval_site *s, const char *frame, size_t len, kd_err *err);
int kd_kval_parse_actions(kd_kval_site *s, const char *frame, size_t len, kd_err *err);
void kd_kval_free(kd_kval_site *s);

/* Why a job was refused (the label of kone_local_rejections_total). */
typedef enum {
    KD_KVAL_OK = 0,
    KD_KVAL_UNKNOWN_ACTION,
    KD_KVAL_DISABLED_ACTION,
    KD_KVAL_UNKNOWN_AREA,
    KD_KVAL_NO_DESTINATION,
    KD_KVAL_UNKNOWN_DESTINATION,
    KD_KVAL_SAME_FLOOR,
} kd_kval_reason;
const char *kd_kval_reason_name(kd_kval_reason r); /* "unknown_area", ... */

/* Checks a call job (op call; others pass). On a refusal fills code (as KONE's answer
 * would be classified: "ignored_call", "SAME_SOURCE_AND_DEST_FLOOR") and text (KONE's
 * words: "Ignoring call, unable to resolve area: area:9999"). */
kd_kval_reason kd_kval_check(const kd_kval_site *s, const kd_job *job, char *code, size_t code_len,
                             char *text, size_t text_len);

/* Does this refusal of a call the cache had passed say the configuration changed? Codes
 * and texts as the client sets them: an `ignored_call` for an unknown or disabled action
 * or an unresolvable area or destination, or a 404 (building or group unknown). */
bool kd_kval_contradicts(const char *code, const char *message);

/* ---- freshness of one cached configuration (times: the caller's monotonic µs) */
#define KD_KVAL_RETRY_MIN_US 1000000LL
#define KD_KVAL_RETRY_MAX_US 60000000LL

typedef struct kd_kval_fresh {
    int64_t ttl_us;
    bool valid;         /* holds answers to validate with */
    bool stale;         /* a refusal contradicted it: fetch again before use */
    int64_t fetched_at; /* when the answers in use were asked for */
    int64_t retry_at;   /* a fetch failed: not asked again before this */
    int failures;       /* in a row, for the backoff */
} kd_kval_fresh;

typedef enum {
    KD_KVAL_USE = 0,     /* validate with the cached answers */
    KD_KVAL_FETCH,       /* ask KONE (first use, TTL passed, contradicted); calls wait */
    KD_KVAL_UNVALIDATED, /* a fetch failed lately: calls go on unchecked until retry_at */
} kd_kval_decision;

kd_kval_decision kd_kval_decide(const kd_kval_fresh *f, int64_t now);
/* A fetch asked at `asked` ended: ok (both answers read) or not (timeout, 5xx, 4xx,
 * unreadable): then the backoff grows (1 s doubling to 60 s) and the old answers, if
 * any, are no longer used. */
void kd_kval_fetched(kd_kval_fresh *f, bool ok, int64_t asked, int64_t now);
void kd_kval_contradicted(kd_kval_fresh *f);

#endif
