/* job_decode_ref.c: the msgpack job decoder as it was before issue 17 (msgpack-c's
 * msgpack_unpack into a zone, then the field table), kept only as the reference that tests
 * and the fuzzer compare kd_job_decode against (tests/unit/test_job.c, tests/fuzz/fuzz_job.c).
 *
 * It is a frozen copy of shared/src/job.c at commit 54606d1, reduced to the decoding path
 * (the JSON reader, the encoder and kd_job_scan_map left out; kd_job_validate kept as a
 * private copy). Do not "fix" it: its whole value is to behave as the old decoder did. A
 * change of the contract (docs/job-format.md) changes both, on purpose, in one commit.
 */
#include "job_decode_ref.h"

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
    {                                                                                              \
#n, F_INT, ops, need, lo, hi, CS_NONE, MEMBER(n), NO_HAS, false                            \
    }
#define ROW_OPT(n, ops, lo, hi)                                                                    \
    {                                                                                              \
#n, F_INT, ops, 0, lo, hi, CS_NONE, MEMBER(n), offsetof(kd_job, has_##n), false            \
    }
#define ROW_STR(n, ops, need, lo, cs, id)                                                          \
    {                                                                                              \
#n, F_STR, ops, need, lo, STRLEN(n), cs, MEMBER(n), NO_HAS, id                             \
    }

static const field fields[] = {
    ROW_STR(job_id, ALL, ALL, 1, CS_ID, true),
    {"v", F_VERSION, ALL, ALL, KD_JOB_VERSION, KD_JOB_VERSION, CS_NONE, MEMBER(v), NO_HAS, false},
    {"op", F_OP, ALL, ALL, 0, 0, CS_NONE, MEMBER(op), NO_HAS, false},
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
    {"priority", F_PRIO, CALL, 0, 0, 0, CS_NONE, MEMBER(priority), NO_HAS, false},
    {"allowed_lifts", F_INTS, CALL, 0, 0, KD_JOB_ALLOWED_LIFTS_MAX, CS_NONE, MEMBER(allowed_lifts),
     NO_HAS, false},
    ROW_STR(media_id, CALL, 0, 0, CS_PRINT, false),
    ROW_STR(media_cc, CALL, 0, 0, CS_PRINT, false),
    ROW_STR(media_type, CALL, 0, 0, CS_PRINT, false),
    {"track", F_BOOL, CALL, 0, 0, 0, CS_NONE, MEMBER(track), NO_HAS, false},
    /* hold_open */
    ROW_INT(lift_deck, HOLD, HOLD, INT64_MIN, INT64_MAX),
    ROW_INT(served_area, HOLD, HOLD, INT64_MIN, INT64_MAX),
    /* KONE's spec: hard_time is "needed for hold_open callType" */
    {"hard_time", F_INT, HOLD, HOLD, 0, 10, CS_NONE, MEMBER(hard_time),
     offsetof(kd_job, has_hard_time), false},
    ROW_OPT(soft_time, HOLD, 0, 30),
    /* cancel */
    ROW_INT(session_id, CANCEL, CANCEL, 1, INT64_MAX),
};
#define NFIELDS (sizeof fields / sizeof fields[0])

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
    int64_t i;                /* V_INT */
    uint64_t u;               /* V_UBIG: an unsigned above INT64_MAX */
    const char *s;            /* V_STR, not NUL-terminated */
    size_t len;               /* V_STR length, V_ARRAY items */
    const msgpack_object *mp; /* V_ARRAY source, one of the two */
    const json_t *js;
    bool json; /* for type names: "object"/"null" instead of "map"/"nil" */
} val;

static void val_from_mp(const msgpack_object *o, val *v)
{
    memset(v, 0, sizeof *v);
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: v->kind = V_NIL; break;
    case MSGPACK_OBJECT_BOOLEAN:
        v->kind = V_BOOL;
        v->b = o->via.boolean;
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > (uint64_t)INT64_MAX) {
            v->kind = V_UBIG;
            v->u = o->via.u64;
        } else {
            v->kind = V_INT;
            v->i = (int64_t)o->via.u64;
        }
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        v->kind = V_INT;
        v->i = o->via.i64;
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: v->kind = V_FLOAT; break;
    case MSGPACK_OBJECT_STR:
        v->kind = V_STR, v->s = o->via.str.ptr, v->len = o->via.str.size;
        break;
    case MSGPACK_OBJECT_BIN: /* some encoders send strings as bin */
        v->kind = V_STR, v->s = o->via.bin.ptr, v->len = o->via.bin.size;
        break;
    case MSGPACK_OBJECT_ARRAY:
        v->kind = V_ARRAY;
        v->len = o->via.array.size;
        v->mp = o;
        break;
    case MSGPACK_OBJECT_MAP: v->kind = V_MAP; break;
    default: v->kind = V_OTHER; break;
    }
}

static const char *val_type(const val *v);
static int ref_validate(const kd_job *job, kd_err *err);

static void val_elem(const val *arr, size_t i, val *out)
{
    val_from_mp(&arr->mp->via.array.ptr[i], out);
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

static bool in_charset(charset cs, unsigned char c)
{
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    switch (cs) {
    case CS_ID: return alnum || c == '.' || c == '_' || c == ':' || c == '-';
    case CS_NAME: return alnum || c == '.' || c == '_' || c == '-';
    case CS_LANG: return alnum || c == '-';
    case CS_PRINT: return c >= 0x20 && c < 0x7f;
    default: return false;
    }
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
    for (size_t i = 0; i < v->len; i++) {
        val e;
        char name[48];
        val_elem(v, i, &e);
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

static int find_field(const char *key, size_t len)
{
    for (size_t i = 0; i < NFIELDS; i++)
        if (strlen(fields[i].name) == len && memcmp(fields[i].name, key, len) == 0)
            return (int)i;
    return -1;
}

static bool present(const val *slots, const char *name)
{
    const val *v = &slots[find_field(name, strlen(name))];
    return v->kind != V_ABSENT && v->kind != V_NIL;
}

static int apply_defaults(const val *slots, int64_t default_ttl_ms, kd_job *job, kd_err *err)
{
    if (job->group_id[0] == '\0')
        strcpy(job->group_id, "1");
    if (present(slots, "deadline"))
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

static int apply(const val *slots, int64_t default_ttl_ms, kd_job *job, kd_err *err)
{
    int rc = 0;
    memset(job, 0, sizeof *job);
    for (size_t i = 0; i < NFIELDS && !rc; i++)
        if (applies(&fields[i], job->op))
            rc = read_field(&fields[i], &slots[i], job, err);
    if (!rc)
        rc = apply_defaults(slots, default_ttl_ms, job, err);
    if (!rc)
        rc = ref_validate(job, err);
    if (rc)
        keep_identity(slots, job);
    return rc;
}

/* ---- msgpack: structural scan, then msgpack-c ---- */

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

static bool mp_is_map(uint8_t b)
{
    return (b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf;
}

static int mp_scan(const uint8_t *p, size_t len, kd_err *err)
{
    uint64_t left[JOB_MAX_DEPTH + 1];
    int depth = 0;
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

static int decode_map(const msgpack_object_map *m, int64_t default_ttl_ms, kd_job *job, kd_err *err)
{
    val slots[NFIELDS];
    memset(slots, 0, sizeof slots);
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key;
        int idx = -1;
        if (k->type == MSGPACK_OBJECT_STR)
            idx = find_field(k->via.str.ptr, k->via.str.size);
        else if (k->type == MSGPACK_OBJECT_BIN)
            idx = find_field(k->via.bin.ptr, k->via.bin.size);
        if (idx < 0)
            continue; /* unknown or non-string key */
        if (slots[idx].kind != V_ABSENT)
            slots[idx].kind = V_DUP;
        else
            val_from_mp(&m->ptr[i].val, &slots[idx]);
    }
    return apply(slots, default_ttl_ms, job, err);
}

int kd_job_decode_ref(const void *buf, size_t len, int64_t default_ttl_ms, kd_job *job, kd_err *err)
{
    memset(job, 0, sizeof *job);
    if (!buf || len == 0)
        return kd_err_set(err, KD_ERR_DECODE, "job: empty body");
    if (len > (size_t)JOB_MAX_BYTES)
        return kd_err_set(err, KD_ERR_DECODE, "job: body of %zu bytes exceeds the limit of %d", len,
                          JOB_MAX_BYTES);
    int rc = mp_scan(buf, len, err);
    if (rc)
        return rc;

    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 2048))
        /* GCOVR_EXCL_START: allocation failure (no test injects one) */
        return kd_err_set(err, KD_ERR_NOMEM, "job: out of memory");
    /* GCOVR_EXCL_STOP */
    msgpack_object obj;
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack(buf, len, &off, &zone, &obj);
    if (r == MSGPACK_UNPACK_NOMEM_ERROR)
        /* GCOVR_EXCL_START: allocation failure (no test injects one) */
        rc = kd_err_set(err, KD_ERR_NOMEM, "job: out of memory decoding msgpack");
    /* GCOVR_EXCL_STOP */
    else if (r != MSGPACK_UNPACK_SUCCESS || obj.type != MSGPACK_OBJECT_MAP)
        /* GCOVR_EXCL_START: a second line of defence: mp_scan accepted one whole map */
        rc = kd_err_set(err, KD_ERR_DECODE, "job: not one msgpack map (msgpack-c said %d)", (int)r);
    /* GCOVR_EXCL_STOP */
    else
        rc = decode_map(&obj.via.map, default_ttl_ms, job, err);
    msgpack_zone_destroy(&zone);
    return rc;
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

static int ref_validate(const kd_job *job, kd_err *err)
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
    if (job->deadline <= job->created_at)
        return kd_err_set(err, KD_ERR_INVALID,
                          "deadline: must be later than created_at (%" PRId64 "), got %" PRId64,
                          job->created_at, job->deadline);
    return 0;
}
