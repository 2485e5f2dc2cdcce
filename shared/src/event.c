/* event.c: the result and call-state events (see kd_event.h; docs/events.md is the contract).
 *
 * Encoding is on the worker's per-job hot path, so events are packed straight into the
 * caller's sbuffer with msgpack_pack_*: no intermediate object tree, no allocation other
 * than the sbuffer's own growth. Every key of the contract is always present; a value the
 * worker does not know is nil, never a made-up zero or "", so analysts can tell "unknown"
 * from "zero". The only failure is the sbuffer failing to grow; the sbuffer is then put
 * back to its size on entry, so a caller never ships half an event.
 *
 * kd_msgpack_to_json is the reverse direction for tools (kone-events): it must turn *any*
 * msgpack object into JSON and never refuse one for its content, only on allocation
 * failure. Invalid UTF-8 is repaired with U+FFFD, bytes become base64, non-string map keys
 * are stringified.
 */
#include "kd_utf8.h"
#include "kd_event.h"
#include "mp_write.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* ---- packing helpers ----
 * Each returns msgpack's 0 / -1. Callers chain them with ||, never |: || evaluates left to
 * right (the order of the bytes) and stops at the first failure. */

#define PACK_KEY(pk, lit) pack_strn((pk), (lit), sizeof(lit) - 1)

static int pack_strn(msgpack_packer *pk, const char *s, size_t n)
{
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

/* A fixed-size char array from a struct: "" is nil. strnlen bounds the read even if a
 * buggy writer left the array unterminated. */
static int pack_str_or_nil(msgpack_packer *pk, const char *s, size_t cap)
{
    size_t n = s ? strnlen(s, cap) : 0;
    if (n == 0)
        return msgpack_pack_nil(pk);
    return pack_strn(pk, s, n);
}

static int pack_int_or_nil(msgpack_packer *pk, bool known, int64_t v)
{
    return known ? msgpack_pack_int64(pk, v) : msgpack_pack_nil(pk);
}

/* µs timestamps from kd_run: 0 means "did not happen / unknown". */
static int pack_ms_from_us(msgpack_packer *pk, int64_t us)
{
    return pack_int_or_nil(pk, us > 0, us / 1000);
}

static int pack_cstr_or_nil(msgpack_packer *pk, const char *s)
{
    return pack_str_or_nil(pk, s, s ? strlen(s) : 0);
}

static const char *failure_name(kd_failure_class f)
{
    switch (f) {
    case KD_FAIL_FINAL: return "final";
    case KD_FAIL_TRANSIENT: return "transient";
    case KD_FAIL_UNDECODABLE: return "undecodable";
    case KD_FAIL_NONE: break;
    }
    return NULL;
}

static bool op_known(kd_op op)
{
    return op == KD_OP_CALL || op == KD_OP_CANCEL || op == KD_OP_HOLD_OPEN;
}

/* Undoes a partial append: the sbuffer only grows at its end, so resetting size is enough. */
/* GCOVR_EXCL_START: msgpack's sbuffer fails a write only on allocation failure */
static int pack_failed(msgpack_sbuffer *sb, size_t start, kd_err *err, const char *what)
{
    sb->size = start;
    return kd_err_set(err, KD_ERR_NOMEM, "%s: out of memory while encoding", what);
}
/* GCOVR_EXCL_STOP */

/* ---- result event ----
 * Written straight into the sbuffer, sized once: the job's strings are measured first,
 * which bounds the whole event, the room is reserved (one allocation for the
 * worker's fresh sbuffer, none when it has room), then every byte is stored in order. Until
 * issue 17 this went through msgpack-c's packer, a write callback per item; the bytes are
 * the same (tests/unit/test_event.c holds the old encoder, tests/ref/, as the reference). */

#define RESULT_KEYS 22 /* pairs written below; the tests decode and count them */

/* Every key of a result, with its fixstr header (sizeof counts the NUL: one byte each). */
#define RESULT_KEY_BYTES                                                                           \
    (sizeof "v" + sizeof "job_id" + sizeof "op" + sizeof "building_id" + sizeof "group_id" +       \
     sizeof "outcome" + sizeof "kone_status" + sizeof "session_id" + sizeof "error" +              \
     sizeof "attempt" + sizeof "requeues" + sizeof "worker" + sizeof "created_at" +                \
     sizeof "started_at" + sizeof "finished_at" + sizeof "kone_rtt_us" + sizeof "trace_id" +       \
     sizeof "redelivered" + sizeof "failure" + sizeof "modified_destination" +                     \
     sizeof "modified_reason" + sizeof "validated_locally" + sizeof "code" + sizeof "message")

static size_t cstr_len(const char *s)
{
    return s ? strlen(s) : 0;
}

static uint8_t *w_str_or_nil(uint8_t *o, const char *s, size_t n)
{
    return n ? kd_mpw_str(o, s, n) : kd_mpw_nil(o);
}

static uint8_t *w_int_or_nil(uint8_t *o, bool known, int64_t v)
{
    return known ? kd_mpw_int(o, v) : kd_mpw_nil(o);
}

/* Room for max more bytes at the end of sb: a pointer to them, or NULL (sb unchanged). */
static uint8_t *sb_reserve(msgpack_sbuffer *sb, size_t max)
{
    if (sb->alloc - sb->size < max) {
        char *p = realloc(sb->data, sb->size + max);
        if (!p)
            /* GCOVR_EXCL_START: allocation failure (no test injects one) */
            return NULL;
        /* GCOVR_EXCL_STOP */
        sb->data = p;
        sb->alloc = sb->size + max;
    }
    return (uint8_t *)sb->data + sb->size;
}

int kd_event_encode_result(const kd_run *run, const char *worker, msgpack_sbuffer *sb, kd_err *err)
{
    if (!run || !sb)
        return kd_err_set(err, KD_ERR_INTERNAL, "result event: NULL run or buffer");
    if (run->outcome == KD_OUTCOME_NONE)
        return kd_err_set(err, KD_ERR_INTERNAL,
                          "result event: job %.64s has no outcome yet (programming error)",
                          run->job.job_id);
    const kd_job *job = &run->job;
    /* The error is there when the run has an error code: every failure path sets one. A
     * message without a code is only a note on a success ("call accepted") and is left out. */
    const char *op = op_known(job->op) ? kd_op_name(job->op) : NULL;
    const char *outcome = kd_outcome_name(run->outcome), *failure = failure_name(run->failure);
    size_t n_code = strnlen(run->error_code, sizeof run->error_code);
    /* the strings, measured once: "" is nil (strnlen: even an unterminated array is safe) */
    enum { JOB, BUILDING, GROUP, TRACE, CODE, MSG, REASON, OP, OUTCOME, FAILURE, WORKER };
    const char *s[] = {job->job_id,
                       job->building_id,
                       job->group_id,
                       job->trace_id,
                       run->error_code,
                       run->error_message,
                       run->modified_reason,
                       op,
                       outcome,
                       failure,
                       worker};
    size_t n[] = {strnlen(job->job_id, sizeof job->job_id),
                  strnlen(job->building_id, sizeof job->building_id),
                  strnlen(job->group_id, sizeof job->group_id),
                  strnlen(job->trace_id, sizeof job->trace_id),
                  n_code,
                  n_code ? strnlen(run->error_message, sizeof run->error_message) : 0,
                  strnlen(run->modified_reason, sizeof run->modified_reason),
                  cstr_len(op),
                  cstr_len(outcome),
                  cstr_len(failure),
                  cstr_len(worker)};
    /* at most: the map header (map16), the keys, 9 bytes per value, the error's map header
     * and values, a header and the bytes of each string */
    size_t max = 3 + RESULT_KEY_BYTES + (size_t)(RESULT_KEYS + 3) * KD_MPW_INT_MAX;
    for (size_t i = 0; i < sizeof n / sizeof n[0]; i++)
        max += KD_MPW_HEAD_MAX + n[i];
    uint8_t *start = sb_reserve(sb, max), *o = start;
    if (!o)
        /* GCOVR_EXCL_START: allocation failure (no test injects one) */
        return kd_err_set(err, KD_ERR_NOMEM, "result event: out of memory while encoding");
    /* GCOVR_EXCL_STOP */
    o = kd_mpw_map(o, RESULT_KEYS);
    o = kd_mpw_int(KD_MPW_KEY(o, "v"), KD_EVENT_VERSION);
    o = w_str_or_nil(KD_MPW_KEY(o, "job_id"), s[JOB], n[JOB]);
    o = w_str_or_nil(KD_MPW_KEY(o, "op"), s[OP], n[OP]);
    o = w_str_or_nil(KD_MPW_KEY(o, "building_id"), s[BUILDING], n[BUILDING]);
    o = w_str_or_nil(KD_MPW_KEY(o, "group_id"), s[GROUP], n[GROUP]);
    o = w_str_or_nil(KD_MPW_KEY(o, "outcome"), s[OUTCOME], n[OUTCOME]);
    o = kd_mpw_int(KD_MPW_KEY(o, "kone_status"), run->kone_status);
    o = w_int_or_nil(KD_MPW_KEY(o, "session_id"), run->session_id != 0, run->session_id);
    o = KD_MPW_KEY(o, "error");
    if (n[CODE]) {
        o = kd_mpw_map(o, 2);
        o = kd_mpw_str(KD_MPW_KEY(o, "code"), s[CODE], n[CODE]);
        o = w_str_or_nil(KD_MPW_KEY(o, "message"), s[MSG], n[MSG]);
    } else {
        o = kd_mpw_nil(o);
    }
    o = kd_mpw_int(KD_MPW_KEY(o, "attempt"), run->attempt);
    o = kd_mpw_int(KD_MPW_KEY(o, "requeues"), run->requeues);
    o = w_str_or_nil(KD_MPW_KEY(o, "worker"), s[WORKER], n[WORKER]);
    o = w_int_or_nil(KD_MPW_KEY(o, "created_at"), job->created_at > 0, job->created_at);
    /* µs timestamps from kd_run: 0 means "did not happen / unknown" */
    o = w_int_or_nil(KD_MPW_KEY(o, "started_at"), run->started_us > 0, run->started_us / 1000);
    o = w_int_or_nil(KD_MPW_KEY(o, "finished_at"), run->finished_us > 0, run->finished_us / 1000);
    o = w_int_or_nil(KD_MPW_KEY(o, "kone_rtt_us"), run->kone_rtt_us > 0, run->kone_rtt_us);
    o = w_str_or_nil(KD_MPW_KEY(o, "trace_id"), s[TRACE], n[TRACE]);
    o = kd_mpw_bool(KD_MPW_KEY(o, "redelivered"), run->redelivered);
    o = w_str_or_nil(KD_MPW_KEY(o, "failure"), s[FAILURE], n[FAILURE]);
    o = w_int_or_nil(KD_MPW_KEY(o, "modified_destination"), run->has_modified_destination,
                     run->modified_destination);
    o = w_str_or_nil(KD_MPW_KEY(o, "modified_reason"), s[REASON], n[REASON]);
    o = kd_mpw_bool(KD_MPW_KEY(o, "validated_locally"), run->validated_locally);
    sb->size += (size_t)(o - start);
    return 0;
}

/* ---- call-state event ---- */

#define CALL_KEYS 15

static int pack_decks(msgpack_packer *pk, const kd_call_event *ev)
{
    if (ev->n_decks == 0)
        return msgpack_pack_nil(pk);
    int rc = msgpack_pack_array(pk, ev->n_decks);
    for (size_t i = 0; i < ev->n_decks; i++)
        rc = rc || msgpack_pack_int64(pk, ev->allocated_lift_deck[i]);
    return rc;
}

/* job_id, building_id, group_id of the tracked job; all nil without a run. */
static int pack_call_job(msgpack_packer *pk, const kd_run *run)
{
    static const kd_job none; /* all fields empty: packs as nil */
    const kd_job *job = run ? &run->job : &none;
    return PACK_KEY(pk, "job_id") || pack_str_or_nil(pk, job->job_id, sizeof job->job_id) ||
           PACK_KEY(pk, "building_id") ||
           pack_str_or_nil(pk, job->building_id, sizeof job->building_id) ||
           PACK_KEY(pk, "group_id") || pack_str_or_nil(pk, job->group_id, sizeof job->group_id);
}

int kd_event_encode_call(const kd_call_event *ev, const char *worker, msgpack_sbuffer *sb,
                         kd_err *err)
{
    if (!ev || !sb)
        return kd_err_set(err, KD_ERR_INTERNAL, "call event: NULL event or buffer");
    if (ev->n_decks > KD_EVENT_MAX_DECKS)
        return kd_err_set(err, KD_ERR_INVALID, "call event: %zu allocated decks, at most %d",
                          ev->n_decks, KD_EVENT_MAX_DECKS);
    const kd_run *run = ev->run;
    size_t start = sb->size;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);

    int rc = msgpack_pack_map(&pk, CALL_KEYS);
    rc = rc || PACK_KEY(&pk, "v") || msgpack_pack_int(&pk, KD_EVENT_VERSION);
    rc = rc || pack_call_job(&pk, run);
    rc = rc || PACK_KEY(&pk, "session_id") ||
         pack_int_or_nil(&pk, ev->session_id != 0, ev->session_id);
    rc = rc || PACK_KEY(&pk, "state") || pack_str_or_nil(&pk, ev->state, sizeof ev->state);
    rc = rc || PACK_KEY(&pk, "allocated_lift_deck") || pack_decks(&pk, ev);
    rc = rc || PACK_KEY(&pk, "eta") || pack_str_or_nil(&pk, ev->eta, sizeof ev->eta);
    rc = rc || PACK_KEY(&pk, "cancel_reason") ||
         pack_str_or_nil(&pk, ev->cancel_reason, sizeof ev->cancel_reason);
    rc = rc || PACK_KEY(&pk, "modified_destination") ||
         pack_int_or_nil(&pk, ev->has_modified_destination, ev->modified_destination);
    rc = rc || PACK_KEY(&pk, "modified_reason") ||
         pack_str_or_nil(&pk, ev->modified_reason, sizeof ev->modified_reason);
    rc = rc || PACK_KEY(&pk, "time") || pack_str_or_nil(&pk, ev->kone_time, sizeof ev->kone_time);
    rc = rc || PACK_KEY(&pk, "received_at") || pack_ms_from_us(&pk, ev->received_us);
    rc = rc || PACK_KEY(&pk, "worker") || pack_cstr_or_nil(&pk, worker);
    rc = rc || PACK_KEY(&pk, "trace_id") ||
         (run ? pack_str_or_nil(&pk, run->job.trace_id, sizeof run->job.trace_id)
              : msgpack_pack_nil(&pk));
    if (rc)
        /* GCOVR_EXCL_START: msgpack's sbuffer fails a write only on allocation failure */
        return pack_failed(sb, start, err, "call event");
    /* GCOVR_EXCL_STOP */
    return 0;
}

/* ---- msgpack → JSON ---- */

/* msgpack_unpack already stops far earlier; this guards hand-built objects */
#define JSON_MAX_DEPTH 128

/* Copies s into a new buffer, each byte that starts no valid sequence replaced by U+FFFD.
 * Returns NULL on allocation failure; *out_len gets the length. */
static char *utf8_repair(const char *s, size_t n, size_t *out_len)
{
    if (n > (SIZE_MAX - 1) / 3)
        return NULL;
    char *out = malloc(n * 3 + 1); /* worst case: every byte replaced by 3 */
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t l = kd_utf8_seq_len(p + i, n - i);
        if (l == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, p + i, l);
            o += l;
            i += l;
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

static json_t *json_from_str(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n); /* validates UTF-8; NULL if invalid (or no memory) */
    if (j)
        return j;
    size_t rn;
    char *fixed = utf8_repair(s, n, &rn);
    if (!fixed)
        return NULL;
    j = json_stringn(fixed, rn);
    free(fixed);
    return j;
}

/* Standard base64 with padding (OpenSSL), encoded in chunks so that sizes beyond int
 * never reach EVP_EncodeBlock. Chunks are multiples of 3 bytes, so they concatenate. */
static char *base64(const void *buf, size_t n, size_t *out_len)
{
    if (n >= SIZE_MAX / 2)
        return NULL;
    size_t cap = (n + 2) / 3 * 4 + 1;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    const unsigned char *p = buf;
    size_t o = 0;
    const size_t chunk = (size_t)3 * 16384;
    for (size_t i = 0; i < n; i += chunk) {
        size_t m = n - i < chunk ? n - i : chunk;
        o += (size_t)EVP_EncodeBlock((unsigned char *)out + o, p + i, (int)m);
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

static json_t *json_base64(const void *buf, size_t n)
{
    size_t len;
    char *b = base64(buf, n, &len);
    if (!b)
        return NULL;
    json_t *j = json_stringn(b, len);
    free(b);
    return j;
}

/* uint64 above INT64_MAX does not fit jansson's integer: a decimal string keeps it exact. */
static json_t *json_from_uint(uint64_t u)
{
    if (u <= (uint64_t)INT64_MAX)
        return json_integer((json_int_t)u);
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%llu", (unsigned long long)u);
    return json_stringn(buf, (size_t)n);
}

/* JSON has no NaN or infinities; they become the strings JavaScript prints for them. */
static json_t *json_from_double(double d)
{
    if (isnan(d))
        return json_string("NaN");
    if (isinf(d))
        return json_string(d > 0 ? "Infinity" : "-Infinity");
    return json_real(d);
}

static json_t *to_json(const msgpack_object *o, int depth);

/* A map key as JSON object key text. Strings are used as they are (repaired if needed);
 * scalars print as JSON would print them; bytes as base64; containers as compact JSON. */
static char *key_text(const msgpack_object *k, int depth, size_t *len)
{
    if (k->type == MSGPACK_OBJECT_STR) {
        return utf8_repair(k->via.str.ptr, k->via.str.size, len);
    }
    json_t *j = to_json(k, depth);
    if (!j)
        return NULL;
    char *s;
    if (json_is_string(j)) {
        size_t n = json_string_length(j);
        s = malloc(n + 1);
        if (s) {
            memcpy(s, json_string_value(j), n + 1);
            *len = n;
        }
    } else {
        s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s)
            *len = strlen(s);
    }
    json_decref(j);
    return s;
}

/* The container j once filled: j, or NULL (j freed) when making or filling it failed. */
static json_t *filled(json_t *j, bool failed)
{
    if (failed) {
        /* GCOVR_EXCL_START: jansson fails only on allocation (keys, values valid here) */
        json_decref(j);
        return NULL;
        /* GCOVR_EXCL_STOP */
    }
    return j;
}

static json_t *map_to_json(const msgpack_object_map *m, int depth)
{
    json_t *obj = json_object();
    bool failed = !obj;
    for (uint32_t i = 0; !failed && i < m->size; i++) {
        size_t klen = 0;
        char *key = key_text(&m->ptr[i].key, depth + 1, &klen);
        json_t *val = key ? to_json(&m->ptr[i].val, depth + 1) : NULL;
        /* a later duplicate key replaces the earlier one, as in most JSON readers */
        /* setn_new takes val even when it fails; val is NULL whenever key is */
        failed = !key || !val || json_object_setn_new(obj, key, klen, val);
        free(key);
    }
    return filled(obj, failed);
}

static json_t *array_to_json(const msgpack_object_array *a, int depth)
{
    json_t *arr = json_array();
    bool failed = !arr;
    for (uint32_t i = 0; !failed && i < a->size; i++)
        failed = json_array_append_new(arr, to_json(&a->ptr[i], depth + 1)) != 0;
    return filled(arr, failed);
}

static json_t *ext_to_json(const msgpack_object_ext *e)
{
    json_t *obj = json_object();
    return filled(obj, !obj || json_object_set_new(obj, "ext", json_integer(e->type)) ||
                           json_object_set_new(obj, "data", json_base64(e->ptr, e->size)));
}

static json_t *to_json(const msgpack_object *o, int depth)
{
    if (depth > JSON_MAX_DEPTH)
        return json_null();
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return json_null();
    case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return json_from_uint(o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32: /* msgpack-c widens both to f64 */
    case MSGPACK_OBJECT_FLOAT64: return json_from_double(o->via.f64);
    case MSGPACK_OBJECT_STR: return json_from_str(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN: return json_base64(o->via.bin.ptr, o->via.bin.size);
    case MSGPACK_OBJECT_EXT: return ext_to_json(&o->via.ext);
    case MSGPACK_OBJECT_ARRAY: return array_to_json(&o->via.array, depth);
    case MSGPACK_OBJECT_MAP: return map_to_json(&o->via.map, depth);
    }
    /* GCOVR_EXCL_START: every msgpack-c object type is handled above */
    return json_null(); /* a type msgpack-c may add later: keep going */
    /* GCOVR_EXCL_STOP */
}

json_t *kd_msgpack_to_json(const msgpack_object *o)
{
    if (!o)
        return NULL;
    return to_json(o, 0);
}
