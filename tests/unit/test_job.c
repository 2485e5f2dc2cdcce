/* test_job.c: the job format v1 (shared/src/job.c) against its contract, docs/job-format.md.
 *
 * Most cases are written once as JSON text and run through both readers: the msgpack one
 * (the JSON is packed to msgpack by pack_json below) and kd_job_from_json. Encodings JSON
 * cannot express (integer widths, unsigned 64-bit values, bin strings, non-string keys,
 * duplicate keys, hostile headers) are written as raw msgpack bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_job.h"
#include "job_decode_ref.h"

/* Every msgpack decode of this file also runs the decoder as it was before issue 17
 * (msgpack-c based, tests/ref/): the same return code, error code and message, and the same
 * job to the byte (kd_job_decode zeroes it whole first, so padding compares too). The cases
 * below, the random and mutated buffers and the fuzz corpus (test_corpus_as_reference) thus
 * all prove the one-pass reader equal to the old one. */
static int decode_both(const void *buf, size_t len, int64_t ttl, kd_job *job, kd_err *err)
{
    static kd_job ref; /* static: two jobs of ~1 KiB each call */
    kd_err e = {0}, re = {0};
    int rc = kd_job_decode(buf, len, ttl, job, &e);
    int rrc = kd_job_decode_ref(buf, len, ttl, &ref, &re);
    assert_int_equal(rc, rrc);
    assert_int_equal(e.code, re.code);
    assert_string_equal(e.msg, re.msg);
    assert_memory_equal(job, &ref, sizeof ref);
    if (err)
        *err = e;
    return rc;
}
#define kd_job_decode decode_both

#define TTL 60000
#define T0 INT64_C(1767225600000) /* 2026-01-01T00:00:00Z */
#define NOW INT64_C(1767225700000)
#define TS_MAX INT64_C(253402300799999)

static const char *BASE_CALL =
    "{\"v\":1,\"job_id\":\"job-1\",\"op\":\"call\",\"building_id\":\"building:9990000951\","
    "\"created_at\":1767225600000,\"area\":3000,\"action\":2}";
static const char *BASE_HOLD =
    "{\"v\":1,\"job_id\":\"job-1\",\"op\":\"hold_open\",\"building_id\":\"building:9990000951\","
    "\"created_at\":1767225600000,\"lift_deck\":1001010,\"served_area\":5000,\"hard_time\":3}";
static const char *BASE_CANCEL =
    "{\"v\":1,\"job_id\":\"job-1\",\"op\":\"cancel\",\"building_id\":\"building:9990000951\","
    "\"created_at\":1767225600000,\"session_id\":5}";

/* ---- builders ---- */

static void job_base(kd_job *j, kd_op op)
{
    memset(j, 0, sizeof *j);
    j->v = 1;
    strcpy(j->job_id, "job-1");
    j->op = op;
    strcpy(j->building_id, "building:9990000951");
    strcpy(j->group_id, "1");
    j->created_at = T0;
    j->deadline = T0 + 30000;
}

static void call_min(kd_job *j)
{
    job_base(j, KD_OP_CALL);
    j->area = 3000;
    j->action = 2;
}

static void call_full(kd_job *j)
{
    call_min(j);
    strcpy(j->group_id, "grp.2");
    strcpy(j->trace_id, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    j->has_destination = true, j->destination = 5000;
    j->has_terminal = true, j->terminal = 1;
    j->has_delay = true, j->delay = 30;
    j->has_group_size = true, j->group_size = 100;
    strcpy(j->language, "en-GB");
    j->priority = KD_PRIO_HIGH;
    j->n_allowed_lifts = 3;
    j->allowed_lifts[0] = 1, j->allowed_lifts[1] = -7, j->allowed_lifts[2] = INT64_MAX;
    strcpy(j->media_id, "card 0042");
    strcpy(j->media_cc, "FI");
    strcpy(j->media_type, "rfid");
    j->track = true;
}

static void hold_min(kd_job *j)
{
    job_base(j, KD_OP_HOLD_OPEN);
    j->lift_deck = 1001010;
    j->served_area = 5000;
    j->has_hard_time = true; /* required: KONE needs it for hold_open */
    j->hard_time = 3;
}

static void hold_full(kd_job *j)
{
    hold_min(j);
    strcpy(j->trace_id, "t-1");
    j->has_hard_time = true, j->hard_time = 10;
    j->has_soft_time = true, j->soft_time = 0;
}

static void cancel_min(kd_job *j)
{
    job_base(j, KD_OP_CANCEL);
    j->session_id = 5;
}

static void cancel_full(kd_job *j)
{
    cancel_min(j);
    strcpy(j->group_id, "3");
    strcpy(j->trace_id, "trace");
    j->session_id = INT64_MAX;
}

static void assert_job_equal(const kd_job *a, const kd_job *b)
{
    assert_int_equal(a->v, b->v);
    assert_string_equal(a->job_id, b->job_id);
    assert_int_equal(a->op, b->op);
    assert_string_equal(a->building_id, b->building_id);
    assert_string_equal(a->group_id, b->group_id);
    assert_int_equal(a->created_at, b->created_at);
    assert_int_equal(a->deadline, b->deadline);
    assert_string_equal(a->trace_id, b->trace_id);
    assert_int_equal(a->area, b->area);
    assert_int_equal(a->action, b->action);
    assert_int_equal(a->has_destination, b->has_destination);
    assert_int_equal(a->destination, b->destination);
    assert_int_equal(a->has_terminal, b->has_terminal);
    assert_int_equal(a->terminal, b->terminal);
    assert_int_equal(a->has_delay, b->has_delay);
    assert_int_equal(a->delay, b->delay);
    assert_int_equal(a->has_group_size, b->has_group_size);
    assert_int_equal(a->group_size, b->group_size);
    assert_string_equal(a->language, b->language);
    assert_int_equal(a->priority, b->priority);
    assert_int_equal(a->n_allowed_lifts, b->n_allowed_lifts);
    for (size_t i = 0; i < a->n_allowed_lifts; i++)
        assert_int_equal(a->allowed_lifts[i], b->allowed_lifts[i]);
    assert_string_equal(a->media_id, b->media_id);
    assert_string_equal(a->media_cc, b->media_cc);
    assert_string_equal(a->media_type, b->media_type);
    assert_int_equal(a->track, b->track);
    assert_int_equal(a->lift_deck, b->lift_deck);
    assert_int_equal(a->served_area, b->served_area);
    assert_int_equal(a->has_hard_time, b->has_hard_time);
    assert_int_equal(a->hard_time, b->hard_time);
    assert_int_equal(a->has_soft_time, b->has_soft_time);
    assert_int_equal(a->soft_time, b->soft_time);
    assert_int_equal(a->session_id, b->session_id);
    assert_memory_equal(a, b, sizeof *a); /* nothing else set, padding included */
}

/* ---- msgpack helpers ---- */

static void pack_json(msgpack_packer *pk, const json_t *v)
{
    const char *key;
    json_t *val;
    size_t i;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        msgpack_pack_map(pk, json_object_size(v));
        json_object_foreach((json_t *)v, key, val)
        {
            msgpack_pack_str_with_body(pk, key, strlen(key));
            pack_json(pk, val);
        }
        break;
    case JSON_ARRAY:
        msgpack_pack_array(pk, json_array_size(v));
        json_array_foreach(v, i, val) pack_json(pk, val);
        break;
    case JSON_STRING:
        msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER: msgpack_pack_int64(pk, json_integer_value(v)); break;
    case JSON_REAL: msgpack_pack_double(pk, json_real_value(v)); break;
    case JSON_TRUE: msgpack_pack_true(pk); break;
    case JSON_FALSE: msgpack_pack_false(pk); break;
    case JSON_NULL: msgpack_pack_nil(pk); break;
    }
}

/* Packs obj as a map with `extra` more entries whose raw key/value bytes follow. */
static void pack_with_raw(const json_t *obj, const void *raw, size_t rawlen, size_t extra,
                          msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, json_object_size(obj) + extra);
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val)
    {
        msgpack_pack_str_with_body(&pk, key, strlen(key));
        pack_json(&pk, val);
    }
    if (rawlen)
        msgpack_sbuffer_write(sb, raw, rawlen);
}

static json_t *load(const char *text)
{
    json_error_t je;
    json_t *o = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!o)
        fail_msg("bad test JSON %s: %s", text, je.text);
    return o;
}

/* base with key set to value (JSON text), or deleted when value is NULL. */
static json_t *mutate(const char *base, const char *key, const char *value)
{
    json_t *o = load(base);
    if (value)
        json_object_set_new(o, key, load(value));
    else
        json_object_del(o, key);
    return o;
}

static int decode_obj(const json_t *o, int64_t ttl, kd_job *j, kd_err *e)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_with_raw(o, NULL, 0, 0, &sb);
    int rc = kd_job_decode(sb.data, sb.size, ttl, j, e);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void expect_rc(const char *what, int rc, const kd_err *e, int want, const char *msg)
{
    if (rc != want)
        fail_msg("%s: rc %d, want %d (%s)", what, rc, want, rc ? e->msg : "ok");
    if (want && msg && !strstr(e->msg, msg))
        fail_msg("%s: message \"%s\" lacks \"%s\"", what, e->msg, msg);
}

/* Runs the msgpack reader and the JSON reader on obj; both must agree. */
static void check_both(const json_t *o, int want, const char *msg)
{
    kd_job j;
    kd_err e = {0};
    char *text = json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY);
    expect_rc(text, decode_obj(o, TTL, &j, &e), &e, want, msg);
    expect_rc(text, kd_job_from_json(o, NOW, TTL, &j, &e), &e, want, msg);
    free(text);
}

static void check_case(const char *base, const char *key, const char *value, int want,
                       const char *msg)
{
    json_t *o = mutate(base, key, value);
    check_both(o, want, msg);
    json_decref(o);
}

static void roundtrip(const kd_job *j)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    kd_err e = {0};
    kd_job out;
    expect_rc("encode", kd_job_encode(j, &sb, &e), &e, 0, NULL);
    expect_rc("decode", kd_job_decode(sb.data, sb.size, TTL, &out, &e), &e, 0, NULL);
    assert_job_equal(j, &out);
    msgpack_sbuffer_destroy(&sb);
}

static size_t encoded_keys(const kd_job *j)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(kd_job_encode(j, &sb, NULL), 0);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    assert_int_equal(msgpack_unpack_next(&up, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(up.data.type, MSGPACK_OBJECT_MAP);
    size_t n = up.data.via.map.size;
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static size_t hex_decode(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex) / 2;
    assert_true(n <= cap);
    for (size_t i = 0; i < n; i++) {
        unsigned b;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &b), 1);
        out[i] = (uint8_t)b;
    }
    return n;
}

/* ---- round trips ---- */

static void test_roundtrip_every_op(void **state)
{
    (void)state;
    void (*builders[])(kd_job *) = {call_min,  call_full,  hold_min,
                                    hold_full, cancel_min, cancel_full};
    for (size_t i = 0; i < sizeof builders / sizeof builders[0]; i++) {
        kd_job j;
        builders[i](&j);
        roundtrip(&j);
    }
}

static void test_encode_writes_only_set_fields(void **state)
{
    (void)state;
    kd_job j;
    call_min(&j);
    assert_int_equal(encoded_keys(&j), 9); /* v job_id op building_id group_id created_at
                                              deadline area action */
    call_full(&j);
    assert_int_equal(encoded_keys(&j), 21); /* every row of a call */
    cancel_min(&j);
    assert_int_equal(encoded_keys(&j), 8);
    hold_full(&j);
    assert_int_equal(encoded_keys(&j), 12);
    /* fields of another op are not part of the job */
    cancel_min(&j);
    j.has_delay = true, j.delay = 99, j.area = 7;
    assert_int_equal(encoded_keys(&j), 8);
}

static void test_encode_appends_and_refuses_invalid(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_write(&sb, "xy", 2);
    kd_job j, out;
    kd_err e = {0};
    call_full(&j);
    assert_int_equal(kd_job_encode(&j, &sb, &e), 0);
    assert_memory_equal(sb.data, "xy", 2);
    assert_int_equal(kd_job_decode(sb.data + 2, sb.size - 2, TTL, &out, &e), 0);
    assert_job_equal(&j, &out);

    size_t before = sb.size;
    j.delay = 31;
    expect_rc("encode delay 31", kd_job_encode(&j, &sb, &e), &e, KD_ERR_INVALID,
              "delay: must be an integer 0..30, got 31");
    assert_int_equal(sb.size, before);
    msgpack_sbuffer_destroy(&sb);
}

static void test_validate_struct(void **state)
{
    (void)state;
    kd_job j;
    kd_err e = {0};
    call_full(&j);
    assert_int_equal(kd_job_validate(&j, &e), 0);

    call_min(&j), j.op = 0;
    expect_rc("op 0", kd_job_validate(&j, &e), &e, KD_ERR_INVALID, "op:");
    call_min(&j), j.v = 2;
    expect_rc("v 2", kd_job_validate(&j, &e), &e, KD_ERR_INVALID, "v: unsupported version 2");
    call_min(&j), j.job_id[0] = '\0';
    expect_rc("job_id empty", kd_job_validate(&j, &e), &e, KD_ERR_INVALID, "job_id:");
    call_min(&j), memset(j.job_id, 'a', sizeof j.job_id);
    expect_rc("job_id unterminated", kd_job_validate(&j, &e), &e, KD_ERR_INVALID, "job_id:");
    call_min(&j), j.group_id[0] = '\0';
    expect_rc("group_id empty", kd_job_validate(&j, &e), &e, KD_ERR_INVALID, "group_id:");
    call_min(&j), strcpy(j.building_id, "9990000951");
    expect_rc("building", kd_job_validate(&j, &e), &e, KD_ERR_INVALID, "building_id:");
    call_min(&j), j.n_allowed_lifts = 33;
    expect_rc("lifts", kd_job_validate(&j, &e), &e, KD_ERR_INVALID, "allowed_lifts:");
    call_min(&j), j.priority = 7;
    expect_rc("prio", kd_job_validate(&j, &e), &e, KD_ERR_INVALID, "priority:");
    call_min(&j), j.has_group_size = true, j.group_size = 0;
    expect_rc("group_size", kd_job_validate(&j, &e), &e, KD_ERR_INVALID, "group_size:");
    call_min(&j), j.deadline = j.created_at;
    expect_rc("deadline", kd_job_validate(&j, &e), &e, KD_ERR_INVALID,
              "deadline: must be later than created_at");
    cancel_min(&j), j.session_id = 0;
    expect_rc("session", kd_job_validate(&j, &e), &e, KD_ERR_INVALID, "session_id:");
    hold_min(&j), j.has_soft_time = true, j.soft_time = 31;
    expect_rc("soft", kd_job_validate(&j, &e), &e, KD_ERR_INVALID, "soft_time:");
    /* an unset optional is not checked */
    hold_min(&j), j.has_soft_time = false, j.soft_time = 31;
    assert_int_equal(kd_job_validate(&j, &e), 0);
}

/* ---- required fields ---- */

static void test_missing_required(void **state)
{
    (void)state;
    static const struct {
        const char **base;
        const char *field;
    } cases[] = {
        {&BASE_CALL, "job_id"},
        {&BASE_CALL, "v"},
        {&BASE_CALL, "op"},
        {&BASE_CALL, "building_id"},
        {&BASE_CALL, "area"},
        {&BASE_CALL, "action"},
        {&BASE_HOLD, "job_id"},
        {&BASE_HOLD, "v"},
        {&BASE_HOLD, "op"},
        {&BASE_HOLD, "building_id"},
        {&BASE_HOLD, "lift_deck"},
        {&BASE_HOLD, "served_area"},
        {&BASE_HOLD, "hard_time"},
        {&BASE_CANCEL, "job_id"},
        {&BASE_CANCEL, "v"},
        {&BASE_CANCEL, "op"},
        {&BASE_CANCEL, "building_id"},
        {&BASE_CANCEL, "session_id"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char msg[64];
        snprintf(msg, sizeof msg, "%s: missing", cases[i].field);
        check_case(*cases[i].base, cases[i].field, NULL, KD_ERR_INVALID, msg);
        check_case(*cases[i].base, cases[i].field, "null", KD_ERR_INVALID, msg); /* nil = absent */
    }
}

static void test_created_at_required_in_msgpack_defaulted_in_json(void **state)
{
    (void)state;
    json_t *o = mutate(BASE_CALL, "created_at", NULL);
    kd_job j;
    kd_err e = {0};
    expect_rc("msgpack", decode_obj(o, TTL, &j, &e), &e, KD_ERR_INVALID, "created_at: missing");
    expect_rc("json", kd_job_from_json(o, NOW, TTL, &j, &e), &e, 0, NULL);
    assert_int_equal(j.created_at, NOW);
    assert_int_equal(j.deadline, NOW + TTL);
    json_decref(o);
}

static void test_deadline_default(void **state)
{
    (void)state;
    json_t *o = load(BASE_CALL);
    kd_job j;
    kd_err e = {0};
    expect_rc("default", decode_obj(o, TTL, &j, &e), &e, 0, NULL);
    assert_int_equal(j.deadline, T0 + TTL);
    assert_string_equal(j.group_id, "1");
    expect_rc("ttl 0", decode_obj(o, 0, &j, &e), &e, KD_ERR_INVALID, "deadline: missing");
    json_object_set_new(o, "deadline", json_integer(T0 + 5));
    expect_rc("explicit", decode_obj(o, 0, &j, &e), &e, 0, NULL);
    assert_int_equal(j.deadline, T0 + 5);
    json_decref(o);

    /* near the end of time the default saturates instead of overflowing */
    o = mutate(BASE_CALL, "created_at", "253402300799998");
    expect_rc("saturate", decode_obj(o, INT64_MAX, &j, &e), &e, 0, NULL);
    assert_int_equal(j.deadline, TS_MAX);
    json_decref(o);
}

/* job.max_age_ms: the deadline is lowered to created_at + max age, never raised, and the
 * capped job still validates and round-trips (retry copies are re-encoded from it). */
static void test_cap_deadline(void **state)
{
    (void)state;
    enum { AGE = 600000 };
    kd_job j;
    call_min(&j);
    j.deadline = T0 + 3600000; /* an hour: capped to 10 min */
    assert_true(kd_job_cap_deadline(&j, AGE, NOW));
    assert_int_equal(j.deadline, T0 + AGE);
    assert_false(kd_job_cap_deadline(&j, AGE, NOW)); /* again: nothing changes */
    assert_int_equal(j.deadline, T0 + AGE);
    assert_int_equal(kd_job_validate(&j, NULL), 0);
    roundtrip(&j);

    call_min(&j); /* deadline 30 s after created_at: kept */
    assert_false(kd_job_cap_deadline(&j, AGE, NOW));
    assert_int_equal(j.deadline, T0 + 30000);
    j.deadline = T0 + AGE; /* exactly the cap: kept */
    assert_false(kd_job_cap_deadline(&j, AGE, NOW));
    assert_int_equal(j.deadline, T0 + AGE);
    j.deadline = T0 + AGE + 1;
    assert_true(kd_job_cap_deadline(&j, AGE, NOW));
    assert_int_equal(j.deadline, T0 + AGE);

    /* measured from created_at, not from now: an old job is not given new life */
    call_min(&j);
    j.deadline = T0 + 3600000;
    assert_true(kd_job_cap_deadline(&j, AGE, T0 + 7200000));
    assert_int_equal(j.deadline, T0 + AGE);

    /* no created_at: measured from now */
    call_min(&j);
    j.created_at = 0;
    j.deadline = NOW + 3600000;
    assert_true(kd_job_cap_deadline(&j, AGE, NOW));
    assert_int_equal(j.deadline, NOW + AGE);
    j.deadline = NOW + 1000;
    assert_false(kd_job_cap_deadline(&j, AGE, NOW));

    /* 0 (or less): no cap */
    call_min(&j);
    j.deadline = TS_MAX;
    assert_false(kd_job_cap_deadline(&j, 0, NOW));
    assert_false(kd_job_cap_deadline(&j, -1, NOW));
    assert_int_equal(j.deadline, TS_MAX);

    /* near the end of time the cap saturates instead of overflowing */
    call_min(&j);
    j.created_at = TS_MAX - 10;
    j.deadline = TS_MAX;
    assert_false(kd_job_cap_deadline(&j, INT64_MAX, NOW));
    assert_true(kd_job_cap_deadline(&j, 5, NOW));
    assert_int_equal(j.deadline, TS_MAX - 5);
    assert_int_equal(kd_job_validate(&j, NULL), 0);

    /* a decoded job with the default TTL is below the default cap */
    json_t *o = load(BASE_CALL);
    kd_err e = {0};
    expect_rc("default", decode_obj(o, TTL, &j, &e), &e, 0, NULL);
    assert_false(kd_job_cap_deadline(&j, AGE, NOW));
    json_decref(o);
}

/* ---- types ---- */

static void test_wrong_types(void **state)
{
    (void)state;
    static const struct {
        const char **base;
        const char *key, *value, *msg;
    } cases[] = {
        {&BASE_CALL, "job_id", "5", "job_id: must be a string, got integer"},
        {&BASE_CALL, "v", "\"1\"", "v: must be an integer, got string"},
        {&BASE_CALL, "v", "1.0", "v: must be an integer, got float"},
        {&BASE_CALL, "op", "1", "op: must be a string, got integer"},
        {&BASE_CALL, "op", "\"fly\"", "op: must be one of call, cancel, hold_open, got \"fly\""},
        {&BASE_CALL, "op", "\"CALL\"", "op: must be one of"},
        {&BASE_CALL, "building_id", "[]", "building_id: must be a string, got array"},
        {&BASE_CALL, "group_id", "1", "group_id: must be a string, got integer"},
        {&BASE_CALL, "created_at", "\"now\"", "created_at: must be an integer, got string"},
        {&BASE_CALL, "deadline", "1767225660000.0", "deadline: must be an integer, got float"},
        {&BASE_CALL, "trace_id", "{}", "trace_id: must be a string, got "},
        {&BASE_CALL, "area", "\"3000\"", "area: must be an integer, got string"},
        {&BASE_CALL, "area", "3000.0", "area: must be an integer, got float"},
        {&BASE_CALL, "action", "true", "action: must be an integer, got boolean"},
        {&BASE_CALL, "destination", "\"5000\"", "destination: must be an integer, got string"},
        {&BASE_CALL, "terminal", "[1]", "terminal: must be an integer, got array"},
        {&BASE_CALL, "delay", "\"5\"", "delay: must be an integer, got string"},
        {&BASE_CALL, "group_size", "1.5", "group_size: must be an integer, got float"},
        {&BASE_CALL, "language", "1", "language: must be a string, got integer"},
        {&BASE_CALL, "priority", "1", "priority: must be a string, got integer"},
        {&BASE_CALL, "priority", "\"MEDIUM\"", "priority: must be LOW or HIGH, got \"MEDIUM\""},
        {&BASE_CALL, "priority", "\"low\"", "priority: must be LOW or HIGH"},
        /* a long bad value is quoted cut short */
        {&BASE_CALL, "priority", "\"HIGHEST-PRIORITY-PLEASE-0123456789-0123456789-abcdef\"",
         "got \"HIGHEST-PRIORITY-PLEASE-0123456789-012345678...\""},
        {&BASE_CALL, "allowed_lifts", "1",
         "allowed_lifts: must be an array of integers, got integer"},
        {&BASE_CALL, "allowed_lifts", "[1,\"2\"]",
         "allowed_lifts[1]: must be an integer, got string"},
        {&BASE_CALL, "allowed_lifts", "[1,2.0]", "allowed_lifts[1]: must be an integer, got float"},
        {&BASE_CALL, "allowed_lifts", "[null]", "allowed_lifts[0]: must be an integer, got "},
        {&BASE_CALL, "media_id", "1", "media_id: must be a string, got integer"},
        {&BASE_CALL, "media_cc", "true", "media_cc: must be a string, got boolean"},
        {&BASE_CALL, "media_type", "[]", "media_type: must be a string, got array"},
        {&BASE_CALL, "track", "1", "track: must be a boolean, got integer"},
        {&BASE_CALL, "track", "\"true\"", "track: must be a boolean, got string"},
        {&BASE_HOLD, "lift_deck", "\"1\"", "lift_deck: must be an integer, got string"},
        {&BASE_HOLD, "served_area", "1.0", "served_area: must be an integer, got float"},
        {&BASE_HOLD, "hard_time", "\"1\"", "hard_time: must be an integer, got string"},
        {&BASE_HOLD, "soft_time", "true", "soft_time: must be an integer, got boolean"},
        {&BASE_CANCEL, "session_id", "\"5\"", "session_id: must be an integer, got string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(*cases[i].base, cases[i].key, cases[i].value, KD_ERR_INVALID, cases[i].msg);
}

/* ---- bounds ---- */

static void test_integer_bounds(void **state)
{
    (void)state;
    static const struct {
        const char **base;
        const char *key, *value;
        int rc;
        const char *msg;
    } cases[] = {
        {&BASE_CALL, "delay", "-1", KD_ERR_INVALID, "delay: must be an integer 0..30, got -1"},
        {&BASE_CALL, "delay", "0", 0, NULL},
        {&BASE_CALL, "delay", "30", 0, NULL},
        {&BASE_CALL, "delay", "31", KD_ERR_INVALID, "delay: must be an integer 0..30, got 31"},
        {&BASE_CALL, "group_size", "0", KD_ERR_INVALID,
         "group_size: must be an integer 1..100, got 0"},
        {&BASE_CALL, "group_size", "1", 0, NULL},
        {&BASE_CALL, "group_size", "100", 0, NULL},
        {&BASE_CALL, "group_size", "101", KD_ERR_INVALID,
         "group_size: must be an integer 1..100, got 101"},
        {&BASE_HOLD, "hard_time", "-1", KD_ERR_INVALID,
         "hard_time: must be an integer 0..10, got -1"},
        {&BASE_HOLD, "hard_time", "0", 0, NULL},
        {&BASE_HOLD, "hard_time", "10", 0, NULL},
        {&BASE_HOLD, "hard_time", "11", KD_ERR_INVALID,
         "hard_time: must be an integer 0..10, got 11"},
        {&BASE_HOLD, "soft_time", "-1", KD_ERR_INVALID,
         "soft_time: must be an integer 0..30, got -1"},
        {&BASE_HOLD, "soft_time", "0", 0, NULL},
        {&BASE_HOLD, "soft_time", "30", 0, NULL},
        {&BASE_HOLD, "soft_time", "31", KD_ERR_INVALID,
         "soft_time: must be an integer 0..30, got 31"},
        {&BASE_CANCEL, "session_id", "0", KD_ERR_INVALID,
         "session_id: must be an integer >= 1, got 0"},
        {&BASE_CANCEL, "session_id", "-5", KD_ERR_INVALID,
         "session_id: must be an integer >= 1, got -5"},
        {&BASE_CANCEL, "session_id", "1", 0, NULL},
        {&BASE_CANCEL, "session_id", "9223372036854775807", 0, NULL},
        {&BASE_CALL, "created_at", "-1", KD_ERR_INVALID,
         "created_at: must be an integer 0..253402300799999, got -1"},
        {&BASE_CALL, "created_at", "0", 0, NULL},
        {&BASE_CALL, "created_at", "253402300799998", 0, NULL},
        {&BASE_CALL, "created_at", "253402300800000", KD_ERR_INVALID,
         "created_at: must be an integer"},
        {&BASE_CALL, "deadline", "1767225600000", KD_ERR_INVALID,
         "deadline: must be later than created_at (1767225600000), got 1767225600000"},
        {&BASE_CALL, "deadline", "1767225599999", KD_ERR_INVALID, "deadline: must be later"},
        {&BASE_CALL, "deadline", "1767225600001", 0, NULL},
        {&BASE_CALL, "deadline", "253402300799999", 0, NULL},
        {&BASE_CALL, "deadline", "253402300800000", KD_ERR_INVALID, "deadline: must be an integer"},
        {&BASE_CALL, "deadline", "-1", KD_ERR_INVALID, "deadline: must be an integer"},
        /* unbounded integers take the whole signed 64-bit range */
        {&BASE_CALL, "area", "-9223372036854775808", 0, NULL},
        {&BASE_CALL, "action", "0", 0, NULL},
        {&BASE_CALL, "destination", "9223372036854775807", 0, NULL},
        {&BASE_CALL, "allowed_lifts", "[]", 0, NULL},
        {&BASE_CALL, "allowed_lifts", "[-9223372036854775808, 0, 9223372036854775807]", 0, NULL},
        {&BASE_CALL, "priority", "\"LOW\"", 0, NULL},
        {&BASE_CALL, "priority", "\"HIGH\"", 0, NULL},
        {&BASE_CALL, "track", "false", 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(*cases[i].base, cases[i].key, cases[i].value, cases[i].rc, cases[i].msg);
}

static void test_string_lengths(void **state)
{
    (void)state;
    static const struct {
        const char **base;
        const char *key;
        size_t min, max;
        const char *prefix; /* building_id needs its prefix */
    } cases[] = {
        {&BASE_CALL, "job_id", 1, 64, ""},     {&BASE_CALL, "group_id", 1, 32, ""},
        {&BASE_CALL, "trace_id", 0, 128, ""},  {&BASE_CALL, "language", 0, 16, ""},
        {&BASE_CALL, "media_id", 0, 64, ""},   {&BASE_CALL, "media_cc", 0, 16, ""},
        {&BASE_CALL, "media_type", 0, 16, ""}, {&BASE_CALL, "building_id", 10, 80, "building:"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t pl = strlen(cases[i].prefix);
        const size_t lens[] = {cases[i].min, cases[i].max, cases[i].max + 1};
        for (size_t k = 0; k < 3; k++) {
            size_t len = lens[k];
            char *v = malloc(len + 3);
            assert_non_null(v);
            v[0] = '"';
            memcpy(v + 1, cases[i].prefix, pl);
            memset(v + 1 + pl, 'a', len - pl);
            v[len + 1] = '"', v[len + 2] = '\0';
            char msg[96];
            snprintf(msg, sizeof msg, "%s: must be ", cases[i].key);
            check_case(*cases[i].base, cases[i].key, v, k < 2 ? 0 : KD_ERR_INVALID, msg);
            free(v);
        }
        if (cases[i].min > 0) {
            char msg[96];
            snprintf(msg, sizeof msg, "%s: must be %zu..%zu characters, got 0", cases[i].key,
                     cases[i].min, cases[i].max);
            check_case(*cases[i].base, cases[i].key, "\"\"", KD_ERR_INVALID,
                       pl ? "building_id: must be building:<id>" : msg);
        }
    }
    /* allowed_lifts: 32 items in, 33 out */
    for (int items = 32; items <= 33; items++) {
        char arr[256] = "[0";
        for (int n = 1; n < items; n++)
            snprintf(arr + strlen(arr), sizeof arr - strlen(arr), ",%d", n);
        strcat(arr, "]");
        check_case(BASE_CALL, "allowed_lifts", arr, items == 32 ? 0 : KD_ERR_INVALID,
                   "allowed_lifts: must have at most 32 items, got 33");
    }
}

static void test_string_charsets(void **state)
{
    (void)state;
    static const struct {
        const char *key, *value;
        int rc;
        const char *msg;
    } cases[] = {
        {"job_id", "\"a\"", 0, NULL},
        {"job_id", "\"Ab-09_x.y:z\"", 0, NULL},
        {"job_id", "\"4d2c1c6e-9f0a-4f5e-9e55-0b7c1d7e2a11\"", 0, NULL},
        {"job_id", "\"a b\"", KD_ERR_INVALID, "job_id: invalid character ' ' at position 1"},
        {"job_id", "\"a/b\"", KD_ERR_INVALID, "job_id: invalid character '/'"},
        {"job_id", "\"\\u00e9\"", KD_ERR_INVALID, "job_id: invalid character 0xc3 at position 0"},
        {"job_id", "\"a\\u0000b\"", KD_ERR_INVALID, "job_id: invalid character 0x00 at position 1"},
        {"building_id", "\"building:9990000951\"", 0, NULL},
        {"building_id", "\"building:a.B-c_9\"", 0, NULL},
        {"building_id", "\"9990000951\"", KD_ERR_INVALID, "building_id: must be building:<id>"},
        {"building_id", "\"Building:99900009\"", KD_ERR_INVALID,
         "building_id: must be building:<id>"},
        {"building_id", "\"building:\"", KD_ERR_INVALID, "building_id: must be building:<id>"},
        {"building_id", "\"building:a b\"", KD_ERR_INVALID, "building_id: must be building:<id>"},
        {"building_id", "\"building:a:b\"", KD_ERR_INVALID, "building_id: must be building:<id>"},
        {"building_id", "\"building:\\u00e9\"", KD_ERR_INVALID,
         "building_id: must be building:<id>"},
        {"group_id", "\"a b\"", KD_ERR_INVALID, "group_id: invalid character ' '"},
        {"group_id", "\"a:b\"", KD_ERR_INVALID, "group_id: invalid character ':'"},
        {"language", "\"en-GB\"", 0, NULL},
        {"language", "\"\"", 0, NULL},
        {"language", "\"en_GB\"", KD_ERR_INVALID, "language: invalid character '_'"},
        {"trace_id", "\"00-ab cd-01\"", 0, NULL},
        {"trace_id", "\"a\\tb\"", KD_ERR_INVALID, "trace_id: invalid character 0x09"},
        {"media_id", "\"\\u00e9\"", KD_ERR_INVALID, "media_id: invalid character 0xc3"},
        {"media_cc", "\"F I\"", 0, NULL},
        {"media_type", "\"\\u007f\"", KD_ERR_INVALID, "media_type: invalid character 0x7f"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(BASE_CALL, cases[i].key, cases[i].value, cases[i].rc, cases[i].msg);
}

/* ---- version, identity on error, unknown keys ---- */

static void test_version(void **state)
{
    (void)state;
    static const char *bad[] = {"2", "0", "-1"};
    for (size_t i = 0; i < 3; i++) {
        char msg[64];
        snprintf(msg, sizeof msg, "v: unsupported version %s", bad[i]);
        check_case(BASE_CALL, "v", bad[i], KD_ERR_INVALID, msg);
    }
    json_t *o = mutate(BASE_CALL, "v", "2");
    kd_job j;
    kd_err e = {0};
    assert_int_equal(decode_obj(o, TTL, &j, &e), KD_ERR_INVALID);
    assert_string_equal(j.job_id, "job-1");
    json_decref(o);

    /* a uint64 above INT64_MAX */
    o = mutate(BASE_CALL, "v", NULL);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    static const uint8_t raw[] = {0xa1, 'v', 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    pack_with_raw(o, raw, sizeof raw, 1, &sb);
    expect_rc("v huge", kd_job_decode(sb.data, sb.size, TTL, &j, &e), &e, KD_ERR_INVALID,
              "v: unsupported version 18446744073709551615");
    msgpack_sbuffer_destroy(&sb);
    json_decref(o);
}

static void test_identity_kept_on_invalid(void **state)
{
    (void)state;
    json_t *o = mutate(BASE_CALL, "area", "\"x\"");
    json_object_set_new(o, "trace_id", json_string("t-9"));
    kd_job j;
    kd_err e = {0};
    for (int path = 0; path < 2; path++) {
        int rc = path ? kd_job_from_json(o, NOW, TTL, &j, &e) : decode_obj(o, TTL, &j, &e);
        assert_int_equal(rc, KD_ERR_INVALID);
        assert_string_equal(j.job_id, "job-1");
        assert_string_equal(j.building_id, "building:9990000951");
        assert_string_equal(j.trace_id, "t-9");
        assert_int_equal(j.created_at, 0); /* everything else is zero */
        assert_int_equal(j.op, 0);
    }
    json_object_set_new(o, "job_id", json_string("bad id"));
    assert_int_equal(decode_obj(o, TTL, &j, &e), KD_ERR_INVALID);
    assert_string_equal(e.msg,
                        "job_id: invalid character ' ' at position 3, allowed: [A-Za-z0-9._:-]");
    assert_string_equal(j.job_id, "");
    assert_string_equal(j.building_id, "building:9990000951");
    json_decref(o);
}

static void test_unknown_keys_ignored(void **state)
{
    (void)state;
    json_t *o = load(BASE_CALL);
    json_object_set_new(o, "foo", load("{\"a\":[1,{\"b\":null}],\"c\":1.5}"));
    json_object_set_new(o, "", json_string("x"));
    json_object_set_new(o, "Job_ID", json_integer(3)); /* keys are case-sensitive */
    /* fields of other ops are ignored, not validated */
    json_object_set_new(o, "session_id", json_string("not a number"));
    json_object_set_new(o, "hard_time", json_integer(99));
    check_both(o, 0, NULL);
    kd_job j;
    assert_int_equal(decode_obj(o, TTL, &j, NULL), 0);
    assert_int_equal(j.session_id, 0);
    assert_false(j.has_hard_time);
    json_decref(o);

    /* non-string keys (int, nil, array, map, bool) are ignored too */
    o = load(BASE_CALL);
    static const uint8_t raw[] = {0x01, 0xa1, 'x', 0xc0, 0xc0, 0x91, 0x01, 0x02,
                                  0x81, 0xa1, 'k', 0x01, 0x03, 0xc3, 0x04};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_with_raw(o, raw, sizeof raw, 5, &sb);
    kd_err e = {0};
    expect_rc("odd keys", kd_job_decode(sb.data, sb.size, TTL, &j, &e), &e, 0, NULL);
    msgpack_sbuffer_destroy(&sb);
    json_decref(o);
}

static void test_duplicate_key_refused(void **state)
{
    (void)state;
    json_t *o = load(BASE_CALL);
    static const uint8_t raw[] = {0xa4, 'a', 'r', 'e', 'a', 0xcd, 0x0f, 0xa0}; /* area: 4000 */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_with_raw(o, raw, sizeof raw, 1, &sb);
    kd_job j;
    kd_err e = {0};
    expect_rc("dup", kd_job_decode(sb.data, sb.size, TTL, &j, &e), &e, KD_ERR_INVALID,
              "area: duplicate key");
    assert_string_equal(j.job_id, "job-1");
    msgpack_sbuffer_destroy(&sb);
    json_decref(o);
}

/* ---- encodings other languages emit ---- */

static void test_integer_widths(void **state)
{
    (void)state;
    static const struct {
        uint8_t raw[9];
        size_t len;
        int64_t want;
    } cases[] = {
        {{0x64}, 1, 100},
        {{0xcc, 0x64}, 2, 100},
        {{0xcd, 0x00, 0x64}, 3, 100},
        {{0xce, 0x00, 0x00, 0x00, 0x64}, 5, 100},
        {{0xcf, 0, 0, 0, 0, 0, 0, 0, 0x64}, 9, 100},
        {{0xd0, 0x64}, 2, 100},
        {{0xd1, 0x00, 0x64}, 3, 100},
        {{0xd2, 0x00, 0x00, 0x00, 0x64}, 5, 100},
        {{0xd3, 0, 0, 0, 0, 0, 0, 0, 0x64}, 9, 100},
        {{0xe0}, 1, -32},
        {{0xd0, 0x9c}, 2, -100},
        {{0xd1, 0xff, 0x9c}, 3, -100},
        {{0xd2, 0xff, 0xff, 0xff, 0x9c}, 5, -100},
        {{0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x9c}, 9, -100},
        {{0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, INT64_MAX},
        {{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9, INT64_MIN},
    };
    json_t *o = mutate(BASE_CALL, "area", NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t raw[16] = {0xa4, 'a', 'r', 'e', 'a'};
        memcpy(raw + 5, cases[i].raw, cases[i].len);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        pack_with_raw(o, raw, 5 + cases[i].len, 1, &sb);
        kd_job j;
        kd_err e = {0};
        expect_rc("width", kd_job_decode(sb.data, sb.size, TTL, &j, &e), &e, 0, NULL);
        assert_int_equal(j.area, cases[i].want);
        msgpack_sbuffer_destroy(&sb);
    }
    json_decref(o);
}

static void test_out_of_range_and_float_encodings(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        uint8_t raw[9];
        size_t len;
        const char *msg;
    } cases[] = {
        {"area",
         {0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
         9,
         "area: must be a signed 64-bit integer, got 18446744073709551615"},
        {"area",
         {0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0},
         9,
         "area: must be a signed 64-bit integer, got 9223372036854775808"},
        {"delay",
         {0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
         9,
         "delay: must be an integer 0..30, got 18446744073709551615"},
        {"delay",
         {0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0},
         9,
         "delay: must be an integer 0..30, got -9223372036854775808"},
        {"delay",
         {0xce, 0xff, 0xff, 0xff, 0xff},
         5,
         "delay: must be an integer 0..30, got 4294967295"},
        {"area", {0xca, 0x45, 0x3b, 0x80, 0x00}, 5, "area: must be an integer, got float"},
        {"area", {0xd4, 0x01, 0x02}, 3, "area: must be an integer, got ext"},
        {"allowed_lifts", {0x91, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *o = load(BASE_CALL);
        json_object_del(o, cases[i].key);
        uint8_t raw[32];
        size_t kl = strlen(cases[i].key);
        raw[0] = (uint8_t)(0xa0 | kl);
        memcpy(raw + 1, cases[i].key, kl);
        memcpy(raw + 1 + kl, cases[i].raw, cases[i].len);
        size_t n = 1 + kl + cases[i].len;
        if (!cases[i].msg)
            raw[n++] = 0x01; /* the ninth byte of the uint64 */
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        pack_with_raw(o, raw, n, 1, &sb);
        kd_job j;
        kd_err e = {0};
        expect_rc(cases[i].key, kd_job_decode(sb.data, sb.size, TTL, &j, &e), &e, KD_ERR_INVALID,
                  cases[i].msg ? cases[i].msg
                               : "allowed_lifts[0]: must be a signed 64-bit integer");
        msgpack_sbuffer_destroy(&sb);
        json_decref(o);
    }
}

static void test_bin_strings_and_keys(void **state)
{
    (void)state;
    json_t *o = mutate(BASE_CALL, "job_id", NULL);
    json_object_del(o, "op");
    /* job_id as bin8 value under a str key; "op" as a bin key with a bin value */
    static const uint8_t raw[] = {0xa6, 'j',  'o',  'b', '_', 'i',  'd',  0xc4, 0x03, 'b', 'i',
                                  'n',  0xc4, 0x02, 'o', 'p', 0xc4, 0x04, 'c',  'a',  'l', 'l'};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_with_raw(o, raw, sizeof raw, 2, &sb);
    kd_job j;
    kd_err e = {0};
    expect_rc("bin", kd_job_decode(sb.data, sb.size, TTL, &j, &e), &e, 0, NULL);
    assert_string_equal(j.job_id, "bin");
    assert_int_equal(j.op, KD_OP_CALL);
    msgpack_sbuffer_destroy(&sb);
    json_decref(o);
}

/* Made with python3-msgpack 1.0.3:
 *   msgpack.packb({"v": 1, "job_id": "py-0001", "op": "call",
 *     "building_id": "building:9990000951", "group_id": "1", "created_at": 1767225600000,
 *     "deadline": 1767225630000, "trace_id": "00-abc-01", "area": 3000, "action": 2,
 *     "destination": 5000, "terminal": 70000, "delay": 5, "group_size": 100,
 *     "language": "en-GB", "priority": "HIGH",
 *     "allowed_lifts": [1, 200, 70000, 5000000000, -1, -200, -40000, -5000000000],
 *     "media_id": b"card-42", "media_cc": "FI", "media_type": "rfid", "track": True,
 *     "extra": {"nested": [1.5, None]}}, use_bin_type=True)
 * so: map16, uint8/16/32/64 and int8/16/32/64, a bin value, a float and nil in an
 * unknown key. */
static const char *PY_CALL =
    "de0016a17601a66a6f625f6964a770792d30303031a26f70a463616c6cab6275696c64696e675f6964b362"
    "75696c64696e673a39393930303030393531a867726f75705f6964a131aa637265617465645f6174cf0000"
    "019b76daa800a8646561646c696e65cf0000019b76db1d30a874726163655f6964a930302d6162632d3031"
    "a461726561cd0bb8a6616374696f6e02ab64657374696e6174696f6ecd1388a87465726d696e616cce0001"
    "1170a564656c617905aa67726f75705f73697a6564a86c616e6775616765a5656e2d4742a87072696f7269"
    "7479a448494748ad616c6c6f7765645f6c696674739801ccc8ce00011170cf000000012a05f200ffd1ff38"
    "d2ffff63c0d3fffffffed5fa0e00a86d656469615f6964c407636172642d3432a86d656469615f6363a246"
    "49aa6d656469615f74797065a472666964a5747261636bc3a5657874726181a66e657374656492cb3ff800"
    "0000000000c0";
/* msgpack.packb({"v": 1, "job_id": "py-hold", "op": "hold_open", "building_id": "building:1",
 *   "created_at": 1767225600000, "lift_deck": 1001010, "served_area": 5000, "hard_time": 10,
 *   "soft_time": 0}, use_bin_type=False)  -- old-style raw strings, no deadline */
static const char *PY_HOLD =
    "89a17601a66a6f625f6964a770792d686f6c64a26f70a9686f6c645f6f70656eab6275696c64696e675f69"
    "64aa6275696c64696e673a31aa637265617465645f6174cf0000019b76daa800a96c6966745f6465636bce"
    "000f4632ab7365727665645f61726561cd1388a9686172645f74696d650aa9736f66745f74696d6500";

static void test_python_fixtures(void **state)
{
    (void)state;
    uint8_t buf[512];
    size_t n = hex_decode(PY_CALL, buf, sizeof buf);
    kd_job j;
    kd_err e = {0};
    expect_rc("py call", kd_job_decode(buf, n, TTL, &j, &e), &e, 0, NULL);
    assert_string_equal(j.job_id, "py-0001");
    assert_int_equal(j.op, KD_OP_CALL);
    assert_string_equal(j.building_id, "building:9990000951");
    assert_int_equal(j.created_at, T0);
    assert_int_equal(j.deadline, T0 + 30000);
    assert_string_equal(j.trace_id, "00-abc-01");
    assert_int_equal(j.area, 3000);
    assert_int_equal(j.action, 2);
    assert_true(j.has_destination && j.destination == 5000);
    assert_true(j.has_terminal && j.terminal == 70000);
    assert_true(j.has_delay && j.delay == 5);
    assert_true(j.has_group_size && j.group_size == 100);
    assert_string_equal(j.language, "en-GB");
    assert_int_equal(j.priority, KD_PRIO_HIGH);
    static const int64_t lifts[] = {1, 200, 70000, 5000000000, -1, -200, -40000, -5000000000};
    assert_int_equal(j.n_allowed_lifts, 8);
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(j.allowed_lifts[i], lifts[i]);
    assert_string_equal(j.media_id, "card-42");
    assert_string_equal(j.media_cc, "FI");
    assert_string_equal(j.media_type, "rfid");
    assert_true(j.track);
    roundtrip(&j);

    n = hex_decode(PY_HOLD, buf, sizeof buf);
    expect_rc("py hold", kd_job_decode(buf, n, TTL, &j, &e), &e, 0, NULL);
    assert_int_equal(j.op, KD_OP_HOLD_OPEN);
    assert_int_equal(j.lift_deck, 1001010);
    assert_int_equal(j.served_area, 5000);
    assert_true(j.has_hard_time && j.hard_time == 10);
    assert_true(j.has_soft_time && j.soft_time == 0);
    assert_int_equal(j.deadline, T0 + TTL);
    assert_string_equal(j.group_id, "1");
}

/* ---- bytes that are not a job ---- */

static void expect_decode_error(const char *what, const void *buf, size_t len, const char *msg)
{
    kd_job j;
    kd_err e = {0};
    expect_rc(what, kd_job_decode(buf, len, TTL, &j, &e), &e, KD_ERR_DECODE, msg);
    assert_string_equal(j.job_id, "");
}

static void test_not_a_map(void **state)
{
    (void)state;
    expect_decode_error("empty", "", 0, "job: empty body");
    expect_decode_error("NULL", NULL, 0, "job: empty body");
    static const struct {
        const char *what;
        uint8_t raw[4];
        size_t len;
    } cases[] = {
        {"array", {0x92, 0x01, 0x02}, 3},
        {"int", {0x05}, 1},
        {"str", {0xa1, 'x'}, 2},
        {"nil", {0xc0}, 1},
        {"true", {0xc3}, 1},
        {"bin", {0xc4, 0x01, 0x00}, 3},
        {"c1", {0xc1}, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_decode_error(cases[i].what, cases[i].raw, cases[i].len, "job: not a msgpack map");
    expect_decode_error("json text", "{\"v\":1}", 7, "job: not a msgpack map");
    /* the map scan alone (kone-events checks each Kafka value with it): empty is no map */
    kd_err e = {0};
    assert_int_equal(kd_job_scan_map(NULL, 0, &e), KD_ERR_DECODE);
    assert_string_equal(e.msg, "msgpack: empty");
    assert_int_equal(kd_job_scan_map("\x80", 0, &e), KD_ERR_DECODE);
    assert_int_equal(kd_job_scan_map("\x80", 1, &e), 0);
}

static void test_truncated_and_trailing(void **state)
{
    (void)state;
    kd_job j;
    call_full(&j);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(kd_job_encode(&j, &sb, NULL), 0);
    for (size_t n = 1; n < sb.size; n++)
        expect_decode_error("prefix", sb.data, n, "job: truncated");
    size_t full = sb.size;
    msgpack_sbuffer_write(&sb, "\xc0", 1);
    expect_decode_error("trailing nil", sb.data, sb.size, "job: 1 trailing bytes");
    sb.size = full;
    char *copy = malloc(full);
    assert_non_null(copy);
    memcpy(copy, sb.data, full);
    msgpack_sbuffer_write(&sb, copy, full); /* two jobs back to back */
    free(copy);
    expect_decode_error("two maps", sb.data, sb.size, "trailing bytes");
    msgpack_sbuffer_destroy(&sb);

    static const uint8_t c1[] = {0x81, 0xa1, 'x', 0xc1};
    expect_decode_error("c1 inside", c1, sizeof c1, "job: invalid msgpack byte 0xc1 at offset 3");
}

static void test_hostile_headers(void **state)
{
    (void)state;
    /* lengths far beyond the body: nothing is allocated for them */
    static const struct {
        const char *what;
        uint8_t raw[8];
        size_t len;
    } cases[] = {
        {"map32", {0xdf, 0xff, 0xff, 0xff, 0xff}, 5},
        {"map16", {0xde, 0xff, 0xff}, 3},
        {"array32 value", {0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xff}, 8},
        {"map32 value", {0x81, 0xa1, 'x', 0xdf, 0xff, 0xff, 0xff, 0xff}, 8},
        {"str32 value", {0x81, 0xa1, 'x', 0xdb, 0xff, 0xff, 0xff, 0xff}, 8},
        {"bin32 key", {0x81, 0xc6, 0xff, 0xff, 0xff, 0xff, 0x01}, 7},
        {"ext32 value", {0x81, 0xa1, 'x', 0xc9, 0xff, 0xff, 0xff, 0xff}, 8},
        {"fixext16", {0x81, 0xa1, 'x', 0xd8, 0x01, 0x00}, 6},
        {"uint64 cut", {0x81, 0xa1, 'x', 0xcf, 0x00}, 5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_decode_error(cases[i].what, cases[i].raw, cases[i].len, "job: truncated");
}

static void test_nesting(void **state)
{
    (void)state;
    /* a job with an unknown key nested `levels` deep (the top map counts as one) */
    for (int levels = 15; levels <= 17; levels++) {
        json_t *o = load(BASE_CALL);
        json_t *v = json_integer(1);
        for (int d = 1; d < levels; d++) {
            json_t *a = json_array();
            json_array_append_new(a, v);
            v = a;
        }
        json_object_set_new(o, "deep", v);
        kd_job j;
        kd_err e = {0};
        expect_rc("nest", decode_obj(o, TTL, &j, &e), &e, levels <= 16 ? 0 : KD_ERR_DECODE,
                  "job: msgpack nested deeper than 16 levels");
        json_decref(o);
    }
    /* 10000 nested arrays (and 10000 nested maps) in a tiny body */
    static uint8_t deep[20004];
    for (int m = 0; m < 2; m++) {
        size_t n = 0;
        deep[n++] = 0x81, deep[n++] = 0xa1, deep[n++] = 'x';
        for (int d = 0; d < 10000; d++) {
            if (m)
                deep[n++] = 0x81, deep[n++] = 0x00; /* {0: ...} */
            else
                deep[n++] = 0x91;
        }
        deep[n++] = 0xc0;
        expect_decode_error("deep", deep, n, "nested deeper");
    }
}

static void test_size_limit(void **state)
{
    (void)state;
    for (int big = 0; big < 2; big++) {
        size_t n = big ? 70000 : 60000;
        json_t *o = load(BASE_CALL);
        char *pad = malloc(n + 1);
        assert_non_null(pad);
        memset(pad, 'p', n), pad[n] = '\0';
        json_object_set_new(o, "padding", json_string(pad));
        free(pad);
        kd_job j;
        kd_err e = {0};
        expect_rc("size", decode_obj(o, TTL, &j, &e), &e, big ? KD_ERR_DECODE : 0,
                  "exceeds the limit of 65536");
        json_decref(o);
    }
}

/* ---- fuzz: random and mutated buffers never crash ---- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next_rand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

static int check_any(const uint8_t *buf, size_t len)
{
    kd_job j;
    kd_err e = {0};
    int rc = kd_job_decode(buf, len, TTL, &j, &e);
    assert_true(rc == 0 || rc == KD_ERR_INVALID || rc == KD_ERR_DECODE);
    if (rc) {
        assert_true(e.msg[0] != '\0');
        assert_true(strlen(j.job_id) <= KD_JOB_ID_MAX);
        return rc;
    }
    assert_int_equal(kd_job_validate(&j, &e), 0);
    roundtrip(&j);
    return rc;
}

static void test_random_buffers(void **state)
{
    (void)state;
    uint8_t buf[256];
    for (int i = 0; i < 4000; i++) {
        size_t len = next_rand() % 96;
        for (size_t k = 0; k < len; k++)
            buf[k] = (uint8_t)next_rand();
        if (len && (i & 1))
            buf[0] = (uint8_t)(0x80 | (next_rand() & 0x0f)); /* get past the first byte */
        check_any(buf, len);
    }
}

static void test_mutated_jobs(void **state)
{
    (void)state;
    void (*builders[])(kd_job *) = {call_full, hold_full, cancel_full, call_min};
    int seen[KD_ERR_DECODE + 1] = {0};
    for (size_t b = 0; b < 4; b++) {
        kd_job j;
        builders[b](&j);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        assert_int_equal(kd_job_encode(&j, &sb, NULL), 0);
        uint8_t buf[512];
        assert_true(sb.size < sizeof buf);
        for (int i = 0; i < 1500; i++) {
            memcpy(buf, sb.data, sb.size);
            size_t len = sb.size;
            int flips = 1 + (int)(next_rand() % 4);
            for (int f = 0; f < flips; f++)
                buf[next_rand() % len] = (uint8_t)next_rand();
            if (next_rand() % 4 == 0)
                len = next_rand() % (len + 1);
            seen[check_any(buf, len)]++;
        }
        msgpack_sbuffer_destroy(&sb);
    }
    /* the mutations reach every outcome: still valid, bad fields, broken bytes */
    assert_true(seen[KD_OK] > 0 && seen[KD_ERR_INVALID] > 0 && seen[KD_ERR_DECODE] > 0);
    print_message("mutated jobs: %d ok, %d invalid, %d undecodable\n", seen[KD_OK],
                  seen[KD_ERR_INVALID], seen[KD_ERR_DECODE]);
}

/* Every byte value inside a string of every charset (job_id, group_id, building_id,
 * language, media_id): accepted or refused, with the same message, as by the reference. */
static void test_every_byte_in_every_charset(void **state)
{
    (void)state;
    static const char *const keys[] = {"job_id", "group_id", "building_id", "language", "media_id"};
    int ok = 0, refused = 0;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        for (int c = 0; c < 256; c++) {
            char s[16];
            size_t n = (size_t)snprintf(s, sizeof s, "%sa_b", k == 2 ? "building:" : "");
            s[n - 2] = (char)c; /* "a?b", the byte in the middle */
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            msgpack_pack_map(&pk, 8);
            const char *str_keys[] = {"job_id", "op", "building_id", keys[k]};
            const char *str_vals[] = {"job-1", "call", "building:9990000951", s};
            int mine = 3;           /* the pair that holds s */
            if (k == 0 || k == 2) { /* job_id, building_id: in their own pair, once */
                mine = (int)k;
                str_vals[k] = s;
                str_keys[3] = "trace_id", str_vals[3] = "t";
            }
            for (int i = 0; i < 4; i++) {
                msgpack_pack_str_with_body(&pk, str_keys[i], strlen(str_keys[i]));
                msgpack_pack_str_with_body(&pk, str_vals[i], i == mine ? n : strlen(str_vals[i]));
            }
            const char *int_keys[] = {"v", "created_at", "area", "action"};
            const int64_t int_vals[] = {1, T0, 3000, 2};
            for (int i = 0; i < 4; i++) {
                msgpack_pack_str_with_body(&pk, int_keys[i], strlen(int_keys[i]));
                msgpack_pack_int64(&pk, int_vals[i]);
            }
            kd_job j;
            kd_err e = {0};
            if (kd_job_decode(sb.data, sb.size, TTL, &j, &e) == 0)
                ok++;
            else
                refused++;
            msgpack_sbuffer_destroy(&sb);
        }
    }
    assert_true(ok > 0 && refused > 0);
}

/* Every seed of the fuzz corpora (real jobs, every crash found so far; job_json's JSON
 * lines are msgpack garbage, which must fail alike) through both decoders. */
static void test_corpus_as_reference(void **state)
{
    (void)state;
    const char *src = getenv("KD_SRC_DIR");
    if (!src)
        src = ".";
    int files = 0;
    for (const char *const *d = (const char *const[]){"job", "job_json", NULL}; *d; d++) {
        char dir[4096], cmd[4200];
        snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/%s", src, *d);
        snprintf(cmd, sizeof cmd, "find '%s' -type f", dir);
        FILE *ls = popen(cmd, "r");
        assert_non_null(ls);
        char path[4096];
        while (fgets(path, sizeof path, ls)) {
            path[strcspn(path, "\n")] = '\0';
            FILE *f = fopen(path, "rb");
            assert_non_null(f);
            static uint8_t buf[70 * 1024]; /* above the 64 KiB limit: that refusal too */
            size_t len = fread(buf, 1, sizeof buf, f);
            fclose(f);
            kd_job j;
            kd_job_decode(buf, len, TTL, &j, NULL);
            files++;
        }
        pclose(ls);
    }
    print_message("corpus: %d files decoded alike\n", files);
    assert_true(files >= 27); /* the job corpus alone has 27 */
}

/* ---- JSON specifics ---- */

static void test_json_full_call(void **state)
{
    (void)state;
    json_t *o = load(
        "{\"v\":1,\"job_id\":\"job-1\",\"op\":\"call\",\"building_id\":\"building:9990000951\","
        "\"group_id\":\"grp.2\",\"created_at\":1767225600000,\"deadline\":1767225630000,"
        "\"trace_id\":\"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\","
        "\"area\":3000,\"action\":2,\"destination\":5000,\"terminal\":1,\"delay\":30,"
        "\"group_size\":100,\"language\":\"en-GB\",\"priority\":\"HIGH\","
        "\"allowed_lifts\":[1,-7,9223372036854775807],\"media_id\":\"card 0042\","
        "\"media_cc\":\"FI\",\"media_type\":\"rfid\",\"track\":true,\"comment\":\"ignored\"}");
    kd_job want, j;
    kd_err e = {0};
    call_full(&want);
    expect_rc("json", kd_job_from_json(o, NOW, TTL, &j, &e), &e, 0, NULL);
    assert_job_equal(&want, &j);
    expect_rc("msgpack", decode_obj(o, TTL, &j, &e), &e, 0, NULL);
    assert_job_equal(&want, &j);
    json_decref(o);
}

static void test_json_not_an_object(void **state)
{
    (void)state;
    static const char *texts[] = {"[1,2]", "\"call\"", "3", "null"};
    for (size_t i = 0; i < 4; i++) {
        json_t *o = load(texts[i]);
        kd_job j;
        kd_err e = {0};
        expect_rc(texts[i], kd_job_from_json(o, NOW, TTL, &j, &e), &e, KD_ERR_DECODE,
                  "job: must be a JSON object, got ");
        json_decref(o);
    }
    kd_job j;
    kd_err e = {0};
    expect_rc("NULL", kd_job_from_json(NULL, NOW, TTL, &j, &e), &e, KD_ERR_DECODE, "JSON object");
}

/* ---- op names ---- */

static void test_op_names(void **state)
{
    (void)state;
    static const struct {
        kd_op op;
        const char *name;
    } ops[] = {{KD_OP_CALL, "call"}, {KD_OP_CANCEL, "cancel"}, {KD_OP_HOLD_OPEN, "hold_open"}};
    for (size_t i = 0; i < 3; i++) {
        kd_op op = 0;
        assert_string_equal(kd_op_name(ops[i].op), ops[i].name);
        assert_int_equal(kd_op_parse(ops[i].name, &op), 0);
        assert_int_equal(op, ops[i].op);
    }
    kd_op op = KD_OP_CALL;
    assert_int_equal(kd_op_parse("CALL", &op), KD_ERR_INVALID);
    assert_int_equal(kd_op_parse("", &op), KD_ERR_INVALID);
    assert_int_equal(kd_op_parse("hold", &op), KD_ERR_INVALID);
    assert_int_equal(kd_op_parse(NULL, &op), KD_ERR_INVALID);
    assert_int_equal(op, KD_OP_CALL);
    assert_string_equal(kd_op_name((kd_op)0), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_op),
        cmocka_unit_test(test_encode_writes_only_set_fields),
        cmocka_unit_test(test_encode_appends_and_refuses_invalid),
        cmocka_unit_test(test_validate_struct),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_created_at_required_in_msgpack_defaulted_in_json),
        cmocka_unit_test(test_deadline_default),
        cmocka_unit_test(test_cap_deadline),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_integer_bounds),
        cmocka_unit_test(test_string_lengths),
        cmocka_unit_test(test_string_charsets),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_identity_kept_on_invalid),
        cmocka_unit_test(test_unknown_keys_ignored),
        cmocka_unit_test(test_duplicate_key_refused),
        cmocka_unit_test(test_integer_widths),
        cmocka_unit_test(test_out_of_range_and_float_encodings),
        cmocka_unit_test(test_bin_strings_and_keys),
        cmocka_unit_test(test_python_fixtures),
        cmocka_unit_test(test_not_a_map),
        cmocka_unit_test(test_truncated_and_trailing),
        cmocka_unit_test(test_hostile_headers),
        cmocka_unit_test(test_nesting),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_random_buffers),
        cmocka_unit_test(test_mutated_jobs),
        cmocka_unit_test(test_corpus_as_reference),
        cmocka_unit_test(test_every_byte_in_every_charset),
        cmocka_unit_test(test_json_full_call),
        cmocka_unit_test(test_json_not_an_object),
        cmocka_unit_test(test_op_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
