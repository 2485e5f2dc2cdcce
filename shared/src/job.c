/* job.c: the elevator-call job, format v1 (see kd_job.h; docs/job-format.md is the contract).
 *
 * Why one table: every rule of the format (name, type, bounds, charset, which ops read
 * it, which ops require it) is a row of `fields` below, and the msgpack reader, the JSON
 * reader, the validator and the encoder all walk that one table. The two readers only
 * turn their source's values into a neutral `val` (integer, string, array...) and file
 * them into one slot per row; everything after that is shared, so the wire format and
 * the kone-producer JSON form cannot drift apart.
 *
 * Invariants:
 * - Decoding allocates nothing. The msgpack reader walks the body once (mp_scan): that walk
 *   proves the body is exactly one complete map, nested at most JOB_MAX_DEPTH deep, whose
 *   container counts all fit in the bytes present, and files the top map's values under
 *   their rows as it passes them, read in place. Only strings are copied, into the
 *   fixed-size buffers of kd_job, so a decoded job owns nothing and may be copied with
 *   memcpy. (Until issue 17 msgpack-c's msgpack_unpack built an object tree in a zone
 *   first; that decoder is kept in tests/ref/ as the reference the tests and the fuzzer
 *   hold this one to: same job, same return code, same message, for every input.)
 * - Rows are read in table order and the first error wins, so messages are stable.
 *   job_id is the first row; after a KD_ERR_INVALID, job_id, building_id and trace_id
 *   are each re-read on their own so the worker can report the outcome (result key,
 *   logs) of any job whose identity was readable. Every other field is zero then.
 * - Integers must be msgpack/JSON integers (any width, signed or unsigned); floats are
 *   refused even when integral, so one rule holds for both forms. Strings may be msgpack
 *   str or bin. nil / null counts as absent. Unknown keys, non-string keys and the
 *   fields of other ops are ignored; a known key twice in one map is refused.
 */
#include "kd_job.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define JOB_MAX_BYTES (64 * 1024)       /* a real job is a few hundred bytes */
#define JOB_MAX_DEPTH 16                /* nested containers; msgpack-c's own limit is 32 */
#define TS_MAX INT64_C(253402300799999) /* 9999-12-31T23:59:59.999Z, in ms */

#define OPB(op) (1u << (op))
#define CALL OPB(KD_OP_CALL)
#define CANCEL OPB(KD_OP_CANCEL)
#define HOLD OPB(KD_OP_HOLD_OPEN)
#define ALL (CALL | CANCEL | HOLD)

typedef enum { F_VERSION, F_OP, F_INT, F_STR, F_BOOL, F_PRIO, F_INTS } ftype;
typedef enum { CS_NONE, CS_ID, CS_NAME, CS_BUILDING, CS_LANG, CS_PRINT } charset;

typedef struct field {
    const char *name;
    ftype type;
    unsigned ops;     /* ops that read it (ALL rows come first: op is known after them) */
    unsigned need;    /* ops that require it */
    int64_t min, max; /* F_INT bounds; F_STR length bounds; F_INTS max items */
    charset cs;       /* F_STR only */
    size_t off, size; /* the member in kd_job */
    size_t has;       /* offset of its has_ flag, or NO_HAS */
    bool ident;       /* re-read after an error: identifies the job for its outcome */
} field;

#define NO_HAS SIZE_MAX
#define MEMBER(m) offsetof(kd_job, m), sizeof(((kd_job *)0)->m)
#define STRLEN(m) ((int64_t)sizeof(((kd_job *)0)->m) - 1)

#define ROW_INT(n, ops, need, lo, hi)                                                              \
    [R_##n] = {#n, F_INT, ops, need, lo, hi, CS_NONE, MEMBER(n), NO_HAS, false}
#define ROW_OPT(n, ops, lo, hi)                                                                    \
    [R_##n] = {#n, F_INT, ops, 0, lo, hi, CS_NONE, MEMBER(n), offsetof(kd_job, has_##n), false}
#define ROW_STR(n, ops, need, lo, cs, id)                                                          \
    [R_##n] = {#n, F_STR, ops, need, lo, STRLEN(n), cs, MEMBER(n), NO_HAS, id}

/* The rows, in table order (the order of reading and of errors); find_field names them. */
enum row {
    R_job_id,
    R_v,
    R_op,
    R_building_id,
    R_group_id,
    R_created_at,
    R_deadline,
    R_trace_id,
    R_area,
    R_action,
    R_destination,
    R_terminal,
    R_delay,
    R_group_size,
    R_language,
    R_priority,
    R_allowed_lifts,
    R_media_id,
    R_media_cc,
    R_media_type,
    R_track,
    R_lift_deck,
    R_served_area,
    R_hard_time,
    R_soft_time,
    R_session_id,
    NFIELDS
};

static const field fields[NFIELDS] = {
    ROW_STR(job_id, ALL, ALL, 1, CS_ID, true),
    [R_v] = {"v", F_VERSION, ALL, ALL, KD_JOB_VERSION, KD_JOB_VERSION, CS_NONE, MEMBER(v), NO_HAS,
             false},
    [R_op] = {"op", F_OP, ALL, ALL, 0, 0, CS_NONE, MEMBER(op), NO_HAS, false},
    ROW_STR(building_id, ALL, ALL, 10, CS_BUILDING, true),
    ROW_STR(group_id, ALL, 0, 1, CS_NAME, false),
    ROW_INT(created_at, ALL, ALL, 0, TS_MAX),
    ROW_INT(deadline, ALL, 0, 0, TS_MAX),
    ROW_STR(trace_id, ALL, 0, 0, CS_PRINT, true),
    /* call */
    ROW_INT(area, CALL, CALL, INT64_MIN, INT64_MAX),
    ROW_INT(action, CALL, CALL, INT64_MIN, INT64_MAX),
    ROW_OPT(destination, CALL, INT64_MIN, INT64_MAX),
    ROW_OPT(terminal, CALL, INT64_MIN, INT64_MAX),
    ROW_OPT(delay, CALL, 0, 30),
    ROW_OPT(group_size, CALL, 1, 100),
    ROW_STR(language, CALL, 0, 0, CS_LANG, false),
    [R_priority] = {"priority", F_PRIO, CALL, 0, 0, 0, CS_NONE, MEMBER(priority), NO_HAS, false},
    [R_allowed_lifts] = {"allowed_lifts", F_INTS, CALL, 0, 0, KD_JOB_ALLOWED_LIFTS_MAX, CS_NONE,
                         MEMBER(allowed_lifts), NO_HAS, false},
    ROW_STR(media_id, CALL, 0, 0, CS_PRINT, false),
    ROW_STR(media_cc, CALL, 0, 0, CS_PRINT, false),
    ROW_STR(media_type, CALL, 0, 0, CS_PRINT, false),
    [R_track] = {"track", F_BOOL, CALL, 0, 0, 0, CS_NONE, MEMBER(track), NO_HAS, false},
    /* hold_open */
    ROW_INT(lift_deck, HOLD, HOLD, INT64_MIN, INT64_MAX),
    ROW_INT(served_area, HOLD, HOLD, INT64_MIN, INT64_MAX),
    /* KONE's spec: hard_time is "needed for hold_open callType" */
    [R_hard_time] = {"hard_time", F_INT, HOLD, HOLD, 0, 10, CS_NONE, MEMBER(hard_time),
                     offsetof(kd_job, has_hard_time), false},
    ROW_OPT(soft_time, HOLD, 0, 30),
    /* cancel */
    ROW_INT(session_id, CANCEL, CANCEL, 1, INT64_MAX),
};

/* Bounds of an allowed_lifts item (the row's own bounds count the items). */
static const field any_int = {"",      F_INT, ALL, 0,      INT64_MIN, INT64_MAX,
                              CS_NONE, 0,     0,   NO_HAS, false};

/* ---- neutral values: what both readers hand to the shared rules ---- */

typedef enum {
    V_ABSENT = 0,
    V_NIL,
    V_BOOL,
    V_INT,
    V_UBIG,
    V_FLOAT,
    V_STR,
    V_ARRAY,
    V_MAP,
    V_OTHER,
    V_DUP
} vkind;

typedef struct val {
    vkind kind;
    bool b;
    int64_t i;         /* V_INT */
    uint64_t u;        /* V_UBIG: an unsigned above INT64_MAX */
    const char *s;     /* V_STR, not NUL-terminated */
    size_t len;        /* V_STR length, V_ARRAY items */
    const uint8_t *mp; /* V_ARRAY source, one of the two: its first item's bytes */
    const json_t *js;
    bool json; /* for type names: "object"/"null" instead of "map"/"nil" */
} val;

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t x = 0;
    for (int i = 0; i < n; i++)
        x = x << 8 | p[i];
    return x;
}

/* Size of the object's header and payload at p (children excluded) and its child count.
 * Returns 0, 1 when the bytes end inside it, -1 for the never-used byte 0xc1. */
static int mp_head(const uint8_t *p, size_t avail, uint64_t *size, uint64_t *kids)
{
    uint8_t b = p[0];
    uint64_t hl = 1, pl = 0;
    int lb = 0; /* length bytes after the type byte */
    *kids = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
    } else if (b <= 0x8f) {
        *kids = (uint64_t)2 * (b & 0x0f);
    } else if (b <= 0x9f) {
        *kids = b & 0x0f;
    } else if (b <= 0xbf) {
        pl = b & 0x1f;
    } else if (b == 0xc1) {
        return -1;
    } else if (b >= 0xc4 && b <= 0xc6) {
        lb = 1 << (b - 0xc4); /* bin 8/16/32 */
    } else if (b >= 0xc7 && b <= 0xc9) {
        lb = 1 << (b - 0xc7), pl = 1; /* ext 8/16/32 + type byte */
    } else if (b >= 0xca && b <= 0xd3) {
        static const uint8_t fixed[] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8};
        pl = fixed[b - 0xca]; /* float32/64, uint8..64, int8..64 */
    } else if (b >= 0xd4 && b <= 0xd8) {
        pl = 1 + (1u << (b - 0xd4)); /* fixext 1..16 */
    } else if (b >= 0xd9 && b <= 0xdb) {
        lb = 1 << (b - 0xd9); /* str 8/16/32 */
    } else {
        lb = (b & 1) ? 4 : 2; /* array16/32 (dc, dd), map16/32 (de, df) */
    }
    if (hl + lb > avail)
        return 1;
    uint64_t n = be(p + 1, lb);
    hl += lb;
    if (b >= 0xdc && b <= 0xdf)
        *kids = b >= 0xde ? 2 * n : n;
    else if (lb)
        pl += n;
    *size = hl + pl;
    return *size > avail ? 1 : 0;
}

/* One msgpack value read in place (strings point into the body): the neutral value of the
 * object at p. Only called on bytes mp_scan has walked, so its header and payload are there
 * (the 0xc1 it refuses never gets here). The kinds are msgpack-c's, as the decoder before
 * issue 17 saw them through msgpack_unpack (tests/ref/ holds it): int8..64 and uint8..64 of
 * any value are one integer; an unsigned above INT64_MAX is V_UBIG; bin is a string.
 * *v must be all zero on entry (slots are, and each array item is zeroed): only the members
 * of its kind are set, which saves a memset per key and value. */
static void val_from_bytes(const uint8_t *p, val *v)
{
    uint8_t b = p[0];
    if (b <= 0x7f || b >= 0xe0) { /* positive, negative fixint */
        v->kind = V_INT, v->i = (int8_t)b;
        if (b <= 0x7f)
            v->i = b;
    } else if (b <= 0x8f || b == 0xde || b == 0xdf) {
        v->kind = V_MAP;
    } else if (b <= 0x9f) {
        v->kind = V_ARRAY, v->len = b & 0x0f, v->mp = p + 1;
    } else if (b <= 0xbf) {
        v->kind = V_STR, v->s = (const char *)p + 1, v->len = b & 0x1f;
    } else if (b == 0xc0) {
        v->kind = V_NIL;
    } else if (b == 0xc2 || b == 0xc3) {
        v->kind = V_BOOL, v->b = b == 0xc3;
    } else if ((b >= 0xc4 && b <= 0xc6) || (b >= 0xd9 && b <= 0xdb)) {
        int lb = 1 << (b <= 0xc6 ? b - 0xc4 : b - 0xd9); /* bin or str 8/16/32 */
        v->kind = V_STR, v->s = (const char *)p + 1 + lb, v->len = (size_t)be(p + 1, lb);
    } else if (b == 0xca || b == 0xcb) {
        v->kind = V_FLOAT;
    } else if (b >= 0xcc && b <= 0xcf) { /* uint 8..64 */
        uint64_t u = be(p + 1, 1 << (b - 0xcc));
        if (u > (uint64_t)INT64_MAX)
            v->kind = V_UBIG, v->u = u;
        else
            v->kind = V_INT, v->i = (int64_t)u;
    } else if (b >= 0xd0 && b <= 0xd3) { /* int 8..64: sign-extended from its width */
        uint64_t u = be(p + 1, 1 << (b - 0xd0));
        v->kind = V_INT;
        v->i = b == 0xd0   ? (int8_t)(uint8_t)u
               : b == 0xd1 ? (int16_t)(uint16_t)u
               : b == 0xd2 ? (int32_t)(uint32_t)u
                           : (int64_t)u;
    } else if (b == 0xdc || b == 0xdd) {
        int lb = b == 0xdc ? 2 : 4;
        v->kind = V_ARRAY, v->len = (size_t)be(p + 1, lb), v->mp = p + 1 + lb;
    } else {
        v->kind = V_OTHER; /* ext, fixext */
    }
}

static void val_from_json(const json_t *o, val *v)
{
    memset(v, 0, sizeof *v);
    v->json = true;
    switch (json_typeof(o)) {
    case JSON_NULL: v->kind = V_NIL; break;
    case JSON_TRUE:
    case JSON_FALSE:
        v->kind = V_BOOL;
        v->b = json_is_true(o);
        break;
    case JSON_INTEGER:
        v->kind = V_INT;
        v->i = (int64_t)json_integer_value(o);
        break;
    case JSON_REAL: v->kind = V_FLOAT; break;
    case JSON_STRING:
        v->kind = V_STR, v->s = json_string_value(o), v->len = json_string_length(o);
        break;
    case JSON_ARRAY:
        v->kind = V_ARRAY;
        v->len = json_array_size(o);
        v->js = o;
        break;
    case JSON_OBJECT: v->kind = V_MAP; break;
    }
}

/* Item i of an array, the items read in order: *cur walks a msgpack array's bytes (it
 * starts at NULL). Only scalars are ever stepped over (read_ints stops at the first item
 * that is not an integer), so a step is one header and payload. */
static void val_elem(const val *arr, size_t i, const uint8_t **cur, val *out)
{
    if (arr->mp) {
        if (!*cur)
            *cur = arr->mp;
        *out = (val){0};
        val_from_bytes(*cur, out);
        uint64_t size = 0, kids;
        mp_head(*cur, SIZE_MAX, &size, &kids);
        *cur += size;
    } else {
        val_from_json(json_array_get(arr->js, i), out);
    }
}

static const char *val_type(const val *v)
{
    switch (v->kind) {
    case V_NIL: return v->json ? "null" : "nil";
    case V_BOOL: return "boolean";
    case V_INT:
    case V_UBIG: return "integer";
    case V_FLOAT: return "float";
    case V_STR: return "string";
    case V_ARRAY: return "array";
    case V_MAP: return v->json ? "object" : "map";
    case V_OTHER: return "ext";
    default: return "nothing";
    }
}

/* A short printable excerpt of untrusted text for error messages. */
static const char *excerpt(const char *s, size_t len, char *out, size_t outlen)
{
    size_t n = 0, max = outlen > 4 ? outlen - 4 : 0;
    for (; n < len && n < max; n++)
        out[n] = (s[n] >= 0x20 && s[n] < 0x7f && s[n] != '"') ? s[n] : '?';
    if (n < len && outlen >= 4)
        memcpy(out + n, "...", 3), n += 3;
    out[n] = '\0';
    return out;
}

/* ---- the rules: used by the readers (before storing) and by kd_job_validate ---- */

static bool needed(const field *f, kd_op op)
{
    return f->need == ALL || (f->need & OPB(op));
}

static bool applies(const field *f, kd_op op)
{
    return f->ops == ALL || (f->ops & OPB(op));
}

static int64_t get_int(const field *f, const kd_job *job)
{
    const char *p = (const char *)job + f->off;
    if (f->size == sizeof(int)) {
        int x;
        memcpy(&x, p, sizeof x);
        return x;
    }
    int64_t x;
    memcpy(&x, p, sizeof x);
    return x;
}

static void set_int(const field *f, kd_job *job, int64_t v)
{
    char *p = (char *)job + f->off;
    if (f->size == sizeof(int)) {
        int x = (int)v; /* bounds of every int-sized row fit an int */
        memcpy(p, &x, sizeof x);
    } else {
        memcpy(p, &v, sizeof v);
    }
    if (f->has != NO_HAS)
        *((bool *)((char *)job + f->has)) = true;
}

static bool is_set(const field *f, const kd_job *job)
{
    const char *p = (const char *)job + f->off;
    switch (f->type) {
    case F_INT: return f->has == NO_HAS || *(const bool *)((const char *)job + f->has);
    case F_STR: return p[0] != '\0';
    case F_BOOL: return job->track;
    case F_PRIO: return job->priority != KD_PRIO_UNSET;
    case F_INTS: return job->n_allowed_lifts > 0;
    default: return true;
    }
}

static int range_error(const field *f, const char *got, kd_err *err)
{
    if (f->min == INT64_MIN && f->max == INT64_MAX)
        return kd_err_set(err, KD_ERR_INVALID, "%s: must be a signed 64-bit integer, got %s",
                          f->name, got);
    if (f->max == INT64_MAX)
        return kd_err_set(err, KD_ERR_INVALID, "%s: must be an integer >= %" PRId64 ", got %s",
                          f->name, f->min, got);
    return kd_err_set(err, KD_ERR_INVALID,
                      "%s: must be an integer %" PRId64 "..%" PRId64 ", got %s", f->name, f->min,
                      f->max, got);
}

static int check_int(const field *f, int64_t x, kd_err *err)
{
    if (x >= f->min && x <= f->max)
        return 0;
    char got[24];
    snprintf(got, sizeof got, "%" PRId64, x);
    return range_error(f, got, err);
}

/* The charsets as one bit each per byte value: a string's check is a load and a test per
 * character (a switch per character cost ~18 instructions, issue 17). Bit cs is set for a
 * byte of charset cs; CS_NONE and CS_BUILDING (checked by its own shape) have none. */
#define CSB(cs) (1u << (cs))
#define CS_ALNUM (CSB(CS_ID) | CSB(CS_NAME) | CSB(CS_LANG) | CSB(CS_PRINT))
static const uint8_t charset_bits[256] = {
    /* printable ASCII (0x20..0x7e), in order, each byte once */
    [' ' ... ','] = CSB(CS_PRINT),
    ['-'] = CSB(CS_ID) | CSB(CS_NAME) | CSB(CS_LANG) | CSB(CS_PRINT),
    ['.'] = CSB(CS_ID) | CSB(CS_NAME) | CSB(CS_PRINT),
    ['/'] = CSB(CS_PRINT),
    ['0' ... '9'] = CS_ALNUM,
    [':'] = CSB(CS_ID) | CSB(CS_PRINT),
    [';' ... '@'] = CSB(CS_PRINT),
    ['A' ... 'Z'] = CS_ALNUM,
    ['[' ... '^'] = CSB(CS_PRINT),
    ['_'] = CSB(CS_ID) | CSB(CS_NAME) | CSB(CS_PRINT),
    ['`'] = CSB(CS_PRINT),
    ['a' ... 'z'] = CS_ALNUM,
    ['{' ... '~'] = CSB(CS_PRINT),
};

static bool in_charset(charset cs, unsigned char c)
{
    return charset_bits[c] & CSB(cs);
}

static const char *charset_text(charset cs)
{
    switch (cs) {
    case CS_ID: return "[A-Za-z0-9._:-]";
    case CS_NAME: return "[A-Za-z0-9._-]";
    case CS_LANG: return "[A-Za-z0-9-] (a language tag like en-GB)";
    case CS_PRINT: return "printable ASCII";
    /* GCOVR_EXCL_START: every charset is named above */
    default:
        return "";
        /* GCOVR_EXCL_STOP */
    }
}

static int check_building(const field *f, const char *s, size_t len, kd_err *err)
{
    static const char prefix[] = "building:";
    const size_t pl = sizeof prefix - 1;
    bool ok = len > pl && memcmp(s, prefix, pl) == 0;
    for (size_t i = pl; ok && i < len; i++)
        ok = in_charset(CS_NAME, (unsigned char)s[i]);
    if (ok)
        return 0;
    char ex[48];
    return kd_err_set(err, KD_ERR_INVALID,
                      "%s: must be building:<id> with <id> of [A-Za-z0-9._-], got \"%s\"", f->name,
                      excerpt(s, len, ex, sizeof ex));
}

static int check_str(const field *f, const char *s, size_t len, kd_err *err)
{
    if (f->cs == CS_BUILDING && (int64_t)len <= f->max)
        return check_building(f, s, len, err); /* its shape says more than a length */
    if ((int64_t)len < f->min || (int64_t)len > f->max) {
        if (f->min == 0)
            return kd_err_set(err, KD_ERR_INVALID,
                              "%s: must be at most %" PRId64 " characters, got %zu", f->name,
                              f->max, len);
        return kd_err_set(err, KD_ERR_INVALID,
                          "%s: must be %" PRId64 "..%" PRId64 " characters, got %zu", f->name,
                          f->min, f->max, len);
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (in_charset(f->cs, c))
            continue;
        char shown[8];
        snprintf(shown, sizeof shown, c >= 0x20 && c < 0x7f ? "'%c'" : "0x%02x", c);
        return kd_err_set(err, KD_ERR_INVALID,
                          "%s: invalid character %s at position %zu, "
                          "allowed: %s",
                          f->name, shown, i, charset_text(f->cs));
    }
    return 0;
}

static int parse_prio(const char *s, size_t len, kd_priority *out)
{
    if (len == 3 && memcmp(s, "LOW", 3) == 0)
        *out = KD_PRIO_LOW;
    else if (len == 4 && memcmp(s, "HIGH", 4) == 0)
        *out = KD_PRIO_HIGH;
    else
        return KD_ERR_INVALID;
    return 0;
}

static const char *prio_name(kd_priority p)
{
    return p == KD_PRIO_LOW ? "LOW" : p == KD_PRIO_HIGH ? "HIGH" : "";
}

/* ---- reading one row from a neutral value ---- */

static int type_error(const field *f, const char *want, const val *v, kd_err *err)
{
    return kd_err_set(err, KD_ERR_INVALID, "%s: must be %s, got %s", f->name, want, val_type(v));
}

/* An integer of any width, or a range error naming the unsigned value that does not fit
 * f's bounds (name differs from f->name for array items). */
static int want_int(const field *f, const val *v, const char *name, int64_t *out, kd_err *err)
{
    if (v->kind == V_INT) {
        *out = v->i;
        return 0;
    }
    if (v->kind == V_UBIG) {
        char got[24];
        snprintf(got, sizeof got, "%" PRIu64, v->u);
        field g = *f;
        g.name = name;
        return range_error(&g, got, err);
    }
    return kd_err_set(err, KD_ERR_INVALID, "%s: must be an integer, got %s", name, val_type(v));
}

static int read_version(const field *f, const val *v, kd_job *job, kd_err *err)
{
    if (v->kind == V_UBIG)
        return kd_err_set(err, KD_ERR_INVALID, "%s: unsupported version %" PRIu64, f->name, v->u);
    int64_t x = 0; /* the analyzer cannot see that kd_err_set never returns 0 */
    int rc = want_int(f, v, f->name, &x, err);
    if (rc)
        return rc;
    if (x != KD_JOB_VERSION)
        return kd_err_set(err, KD_ERR_INVALID,
                          "%s: unsupported version %" PRId64 " (this worker reads version %d)",
                          f->name, x, KD_JOB_VERSION);
    job->v = (int)x;
    return 0;
}

static int read_op(const field *f, const val *v, kd_job *job, kd_err *err)
{
    if (v->kind != V_STR)
        return type_error(f, "a string", v, err);
    char buf[16], ex[48];
    if (v->len < sizeof buf) {
        memcpy(buf, v->s, v->len);
        buf[v->len] = '\0';
        if (strlen(buf) == v->len && kd_op_parse(buf, &job->op) == 0)
            return 0;
    }
    return kd_err_set(err, KD_ERR_INVALID, "%s: must be one of call, cancel, hold_open, got \"%s\"",
                      f->name, excerpt(v->s, v->len, ex, sizeof ex));
}

static int read_str(const field *f, const val *v, kd_job *job, kd_err *err)
{
    if (v->kind != V_STR)
        return type_error(f, "a string", v, err);
    int rc = check_str(f, v->s, v->len, err);
    if (rc)
        return rc;
    char *p = (char *)job + f->off;
    memcpy(p, v->s, v->len); /* check_str bounded len by f->max = size - 1 */
    p[v->len] = '\0';
    return 0;
}

static int read_int(const field *f, const val *v, kd_job *job, kd_err *err)
{
    int64_t x = 0; /* as in read_version */
    int rc = want_int(f, v, f->name, &x, err);
    if (!rc)
        rc = check_int(f, x, err);
    if (!rc)
        set_int(f, job, x);
    return rc;
}

static int read_ints(const field *f, const val *v, kd_job *job, kd_err *err)
{
    if (v->kind != V_ARRAY)
        return type_error(f, "an array of integers", v, err);
    if ((int64_t)v->len > f->max)
        return kd_err_set(err, KD_ERR_INVALID, "%s: must have at most %" PRId64 " items, got %zu",
                          f->name, f->max, v->len);
    const uint8_t *cur = NULL;
    for (size_t i = 0; i < v->len; i++) {
        val e;
        char name[48];
        val_elem(v, i, &cur, &e);
        snprintf(name, sizeof name, "%s[%zu]", f->name, i);
        int rc = want_int(&any_int, &e, name, &job->allowed_lifts[i], err);
        if (rc)
            return rc;
    }
    job->n_allowed_lifts = v->len;
    return 0;
}

static int read_field(const field *f, const val *v, kd_job *job, kd_err *err)
{
    if (v->kind == V_DUP)
        return kd_err_set(err, KD_ERR_INVALID, "%s: duplicate key", f->name);
    if (v->kind == V_ABSENT || v->kind == V_NIL) {
        if (!needed(f, job->op))
            return 0;
        if (f->need == ALL)
            return kd_err_set(err, KD_ERR_INVALID, "%s: missing", f->name);
        return kd_err_set(err, KD_ERR_INVALID, "%s: missing (required for op %s)", f->name,
                          kd_op_name(job->op));
    }
    switch (f->type) {
    case F_VERSION: return read_version(f, v, job, err);
    case F_OP: return read_op(f, v, job, err);
    case F_STR: return read_str(f, v, job, err);
    case F_INT: return read_int(f, v, job, err);
    case F_INTS: return read_ints(f, v, job, err);
    case F_BOOL:
        if (v->kind != V_BOOL)
            return type_error(f, "a boolean", v, err);
        job->track = v->b;
        return 0;
    case F_PRIO:
        if (v->kind != V_STR)
            return type_error(f, "a string", v, err);
        if (parse_prio(v->s, v->len, &job->priority)) {
            char ex[48];
            return kd_err_set(err, KD_ERR_INVALID, "%s: must be LOW or HIGH, got \"%s\"", f->name,
                              excerpt(v->s, v->len, ex, sizeof ex));
        }
        return 0;
    }
    /* GCOVR_EXCL_START: every field type is handled above */
    return kd_err_set(err, KD_ERR_INTERNAL, "%s: unknown field type", f->name);
    /* GCOVR_EXCL_STOP */
}

/* ---- shared by both readers: slots in, validated job out ---- */

/* The row of a key, or -1. A switch on the length, then one compare per name of that length:
 * memcmp with a constant size is a word compare or two, where a walk of the table cost a
 * strlen and a memcmp per row (48 strlen per job, issue 17). Every row's name is here once;
 * test_job's test_roundtrip_every_op decodes each of them (a missed one would come back
 * absent), and against the old decoder. */
#define KEY(n)                                                                                     \
    if (memcmp(key, #n, sizeof #n - 1) == 0)                                                       \
    return R_##n
static int find_field(const char *key, size_t len)
{
    switch (len) {
    case 1: KEY(v); break;
    case 2: KEY(op); break;
    case 4: KEY(area); break;
    case 5:
        KEY(delay);
        KEY(track);
        break;
    case 6:
        KEY(job_id);
        KEY(action);
        break;
    case 8:
        KEY(group_id);
        KEY(deadline);
        KEY(trace_id);
        KEY(terminal);
        KEY(language);
        KEY(priority);
        KEY(media_id);
        KEY(media_cc);
        break;
    case 9:
        KEY(lift_deck);
        KEY(hard_time);
        KEY(soft_time);
        break;
    case 10:
        KEY(created_at);
        KEY(group_size);
        KEY(media_type);
        KEY(session_id);
        break;
    case 11:
        KEY(building_id);
        KEY(destination);
        KEY(served_area);
        break;
    case 13: KEY(allowed_lifts); break;
    default: break;
    }
    return -1;
}
#undef KEY

static bool present(const val *slots, enum row r)
{
    return slots[r].kind != V_ABSENT && slots[r].kind != V_NIL;
}

static int apply_defaults(const val *slots, int64_t default_ttl_ms, kd_job *job, kd_err *err)
{
    if (job->group_id[0] == '\0')
        strcpy(job->group_id, "1");
    if (present(slots, R_deadline))
        return 0;
    if (default_ttl_ms <= 0)
        return kd_err_set(err, KD_ERR_INVALID,
                          "deadline: missing, and no default TTL is "
                          "configured (job.default_ttl_ms = %" PRId64 ")",
                          default_ttl_ms);
    job->deadline =
        default_ttl_ms > TS_MAX - job->created_at ? TS_MAX : job->created_at + default_ttl_ms;
    return 0;
}

/* After an error only the identity survives, each part re-read independently. */
static void keep_identity(const val *slots, kd_job *job)
{
    memset(job, 0, sizeof *job);
    for (size_t i = 0; i < NFIELDS; i++)
        if (fields[i].ident && read_field(&fields[i], &slots[i], job, NULL) != 0)
            memset((char *)job + fields[i].off, 0, fields[i].size);
}

/* The one rule between fields (kd_job_validate's last). */
static int check_deadline(const kd_job *job, kd_err *err)
{
    if (job->deadline <= job->created_at)
        return kd_err_set(err, KD_ERR_INVALID,
                          "deadline: must be later than created_at (%" PRId64 "), got %" PRId64,
                          job->created_at, job->deadline);
    return 0;
}

static int apply(const val *slots, int64_t default_ttl_ms, kd_job *job, kd_err *err)
{
    int rc = 0;
    memset(job, 0, sizeof *job);
    for (size_t i = 0; i < NFIELDS && !rc; i++) {
        const val *v = &slots[i];
        /* most rows are absent from a job: skipped here, as read_field would (a call each
         * cost ~35 instructions, ~20 rows a job) */
        if (!applies(&fields[i], job->op) ||
            ((v->kind == V_ABSENT || v->kind == V_NIL) && !needed(&fields[i], job->op)))
            continue;
        rc = read_field(&fields[i], v, job, err);
    }
    if (!rc)
        rc = apply_defaults(slots, default_ttl_ms, job, err);
    if (!rc) /* each field passed its own bounds as it was read: only this rule is left */
        rc = check_deadline(job, err);
    if (rc)
        keep_identity(slots, job);
    return rc;
}

/* ---- msgpack: one pass, structure and fields ---- */

static bool mp_is_map(uint8_t b)
{
    return (b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf;
}

/* The top map's key or value at p, filed into its slot (slots: NULL when only scanning).
 * *row carries a key's row to its value: -1 for unknown and non-string keys, ignored. */
static void mp_top_item(const uint8_t *p, uint64_t item, int *row, val *slots)
{
    if (item % 2 == 0) {
        val k = {0};
        val_from_bytes(p, &k);
        *row = k.kind == V_STR ? find_field(k.s, k.len) : -1;
    } else if (*row >= 0) {
        if (slots[*row].kind != V_ABSENT)
            slots[*row].kind = V_DUP;
        else
            val_from_bytes(p, &slots[*row]);
    }
}

/* Walks the whole body once: proves it is exactly one complete map, nested at most
 * JOB_MAX_DEPTH deep, whose container counts all fit in the bytes present, and meanwhile
 * files the top map's values under their keys' rows (read in place, after their bounds
 * were checked). Nothing is allocated, so a hostile count costs at most a walk of len. */
static int mp_scan(const uint8_t *p, size_t len, val *slots, kd_err *err)
{
    uint64_t left[JOB_MAX_DEPTH + 1];
    uint64_t item = 0; /* objects seen at depth 1: the top map's keys and values */
    int depth = 0, row = -1;
    size_t pos = 0;
    if (!mp_is_map(p[0]))
        return kd_err_set(err, KD_ERR_DECODE, "job: not a msgpack map (first byte 0x%02x)", p[0]);
    left[0] = 1;
    while (depth >= 0) {
        if (left[depth] == 0) {
            depth--;
            continue;
        }
        left[depth]--;
        uint64_t size, kids;
        int r = pos < len ? mp_head(p + pos, len - pos, &size, &kids) : 1;
        if (r < 0)
            return kd_err_set(err, KD_ERR_DECODE, "job: invalid msgpack byte 0xc1 at offset %zu",
                              pos);
        if (r > 0 || kids > len - pos - size) /* every child needs at least one byte */
            return kd_err_set(err, KD_ERR_DECODE, "job: truncated msgpack (%zu bytes)", len);
        if (depth == 1 && slots)
            mp_top_item(p + pos, item++, &row, slots);
        pos += size;
        if (kids == 0)
            continue;
        if (depth == JOB_MAX_DEPTH)
            return kd_err_set(err, KD_ERR_DECODE, "job: msgpack nested deeper than %d levels",
                              JOB_MAX_DEPTH);
        left[++depth] = kids;
    }
    if (pos != len)
        return kd_err_set(err, KD_ERR_DECODE, "job: %zu trailing bytes after the msgpack map",
                          len - pos);
    return 0;
}

int kd_job_scan_map(const void *buf, size_t len, kd_err *err)
{
    if (!buf || len == 0)
        return kd_err_set(err, KD_ERR_DECODE, "msgpack: empty");
    return mp_scan(buf, len, NULL, err);
}

int kd_job_decode(const void *buf, size_t len, int64_t default_ttl_ms, kd_job *job, kd_err *err)
{
    memset(job, 0, sizeof *job);
    if (!buf || len == 0)
        return kd_err_set(err, KD_ERR_DECODE, "job: empty body");
    if (len > (size_t)JOB_MAX_BYTES)
        return kd_err_set(err, KD_ERR_DECODE, "job: body of %zu bytes exceeds the limit of %d", len,
                          JOB_MAX_BYTES);
    val slots[NFIELDS];
    memset(slots, 0, sizeof slots);
    int rc = mp_scan(buf, len, slots, err);
    if (rc)
        return rc; /* the structure first: a body that is not one map is not a job at all */
    return apply(slots, default_ttl_ms, job, err);
}

/* ---- JSON (kone-producer input) ---- */

int kd_job_from_json(const json_t *obj, int64_t now_ms, int64_t default_ttl_ms, kd_job *job,
                     kd_err *err)
{
    memset(job, 0, sizeof *job);
    if (!obj || !json_is_object(obj)) {
        val v = {.json = true, .kind = V_ABSENT};
        if (obj)
            val_from_json(obj, &v);
        return kd_err_set(err, KD_ERR_DECODE, "job: must be a JSON object, got %s", val_type(&v));
    }
    val slots[NFIELDS];
    memset(slots, 0, sizeof slots);
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)obj, key, value)
    {
        int idx = find_field(key, strlen(key));
        if (idx >= 0)
            val_from_json(value, &slots[idx]);
    }
    if (!present(slots, R_created_at))
        slots[R_created_at] = (val){.kind = V_INT, .i = now_ms, .json = true};
    return apply(slots, default_ttl_ms, job, err);
}

/* ---- validation and encoding of a struct ---- */

static int validate_field(const field *f, const kd_job *job, kd_err *err)
{
    const char *p = (const char *)job + f->off;
    switch (f->type) {
    case F_VERSION:
        if (job->v != KD_JOB_VERSION)
            return kd_err_set(err, KD_ERR_INVALID, "v: unsupported version %d", job->v);
        return 0;
    case F_INT: return is_set(f, job) ? check_int(f, get_int(f, job), err) : 0;
    case F_STR: {
        size_t len = strnlen(p, f->size);
        if (len == f->size)
            return kd_err_set(err, KD_ERR_INVALID, "%s: not NUL-terminated", f->name);
        return check_str(f, p, len, err);
    }
    case F_PRIO:
        if (job->priority != KD_PRIO_UNSET && job->priority != KD_PRIO_LOW &&
            job->priority != KD_PRIO_HIGH)
            return kd_err_set(err, KD_ERR_INVALID, "priority: must be LOW or HIGH");
        return 0;
    case F_INTS:
        if (job->n_allowed_lifts > KD_JOB_ALLOWED_LIFTS_MAX)
            return kd_err_set(err, KD_ERR_INVALID, "%s: must have at most %d items, got %zu",
                              f->name, KD_JOB_ALLOWED_LIFTS_MAX, job->n_allowed_lifts);
        return 0;
    default: return 0;
    }
}

int kd_job_validate(const kd_job *job, kd_err *err)
{
    if (job->op != KD_OP_CALL && job->op != KD_OP_CANCEL && job->op != KD_OP_HOLD_OPEN)
        return kd_err_set(err, KD_ERR_INVALID, "op: must be one of call, cancel, hold_open");
    for (size_t i = 0; i < NFIELDS; i++) {
        if (!applies(&fields[i], job->op))
            continue;
        int rc = validate_field(&fields[i], job, err);
        if (rc)
            return rc;
    }
    return check_deadline(job, err);
}

static int pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

static int pack_field(msgpack_packer *pk, const field *f, const kd_job *job)
{
    if (pack_str(pk, f->name))
        return -1;
    switch (f->type) {
    case F_VERSION:
    case F_INT: return msgpack_pack_int64(pk, get_int(f, job));
    case F_OP: return pack_str(pk, kd_op_name(job->op));
    case F_STR: return pack_str(pk, (const char *)job + f->off);
    case F_BOOL: return job->track ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case F_PRIO: return pack_str(pk, prio_name(job->priority));
    case F_INTS:
        if (msgpack_pack_array(pk, job->n_allowed_lifts))
            return -1;
        for (size_t i = 0; i < job->n_allowed_lifts; i++)
            if (msgpack_pack_int64(pk, job->allowed_lifts[i]))
                return -1;
        return 0;
    }
    return -1;
}

int kd_job_encode(const kd_job *job, msgpack_sbuffer *sbuf, kd_err *err)
{
    int rc = kd_job_validate(job, err);
    if (rc)
        return rc;
    size_t start = sbuf->size, n = 0;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sbuf, msgpack_sbuffer_write);
    for (size_t i = 0; i < NFIELDS; i++)
        n += applies(&fields[i], job->op) && is_set(&fields[i], job);
    bool ok = msgpack_pack_map(&pk, n) == 0;
    for (size_t i = 0; i < NFIELDS && ok; i++)
        if (applies(&fields[i], job->op) && is_set(&fields[i], job))
            ok = pack_field(&pk, &fields[i], job) == 0;
    if (!ok) {
        /* GCOVR_EXCL_START: msgpack's sbuffer fails a write only on allocation failure */
        sbuf->size = start;
        return kd_err_set(err, KD_ERR_NOMEM, "job: out of memory encoding");
        /* GCOVR_EXCL_STOP */
    }
    return 0;
}

/* ---- deadline cap ---- */

bool kd_job_cap_deadline(kd_job *job, int64_t max_age_ms, int64_t now_ms)
{
    if (max_age_ms <= 0)
        return false;
    int64_t from = job->created_at > 0 ? job->created_at : now_ms;
    int64_t cap = max_age_ms > TS_MAX - from ? TS_MAX : from + max_age_ms;
    if (job->deadline <= cap)
        return false;
    job->deadline = cap;
    return true;
}

/* ---- op names ---- */

/* Indexed by the op (KD_OP_CALL is 1: slot 0 is no op); both directions read it. */
static const char *const op_names[] = {
    [KD_OP_CALL] = "call", [KD_OP_CANCEL] = "cancel", [KD_OP_HOLD_OPEN] = "hold_open"};
#define N_OP_NAMES (sizeof op_names / sizeof op_names[0])

const char *kd_op_name(kd_op op)
{
    return (unsigned)op < N_OP_NAMES && op_names[op] ? op_names[op] : "unknown";
}

int kd_op_parse(const char *s, kd_op *out)
{
    for (size_t i = 0; s && i < N_OP_NAMES; i++) {
        if (op_names[i] && strcmp(s, op_names[i]) == 0) {
            *out = (kd_op)i;
            return 0;
        }
    }
    return KD_ERR_INVALID;
}
