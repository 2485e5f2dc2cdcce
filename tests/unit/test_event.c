/* test_event.c: result and call-state events, and msgpack → JSON.
 *
 * Every encode test decodes what was written with msgpack_unpack + kd_msgpack_to_json and
 * compares it with json_equal to the whole expected object: that checks the exact set of
 * keys (nothing missing, nothing extra) and each value with its JSON type.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include <cmocka.h>

#include "event_result_ref.h"
#include "kd_event.h"
#include "test_xorshift.h"

/* ---- helpers ---- */

/* Decodes the object at *off in sb and converts it; advances *off. */
static json_t *decode_at(const msgpack_sbuffer *sb, size_t *off)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, sb->data, sb->size, off), MSGPACK_UNPACK_SUCCESS);
    json_t *j = kd_msgpack_to_json(&u.data);
    msgpack_unpacked_destroy(&u);
    assert_non_null(j);
    return j;
}

/* The whole buffer must be exactly one object. */
static json_t *decode_one(const msgpack_sbuffer *sb)
{
    size_t off = 0;
    json_t *j = decode_at(sb, &off);
    assert_int_equal(off, sb->size);
    return j;
}

static void assert_json(json_t *got, const char *expected_text)
{
    json_error_t je;
    json_t *want = json_loads(expected_text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!want)
        fail_msg("bad expected JSON in test: %s", je.text);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        print_error("got:  %s\nwant: %s\n", g, w);
        free(g);
        free(w);
        fail();
    }
    json_decref(want);
}

static void base_run(kd_run *r)
{
    memset(r, 0, sizeof *r);
    r->job_valid = true;
    r->job.v = 1;
    strcpy(r->job.job_id, "job-0001");
    r->job.op = KD_OP_CALL;
    strcpy(r->job.building_id, "building:9990000951");
    strcpy(r->job.group_id, "1");
    r->job.created_at = 1764360900000;
    r->job.deadline = 1764360960000;
    r->attempt = 1;
    r->received_us = 1764360900100000;
}

/* ---- result events ---- */

static void test_result_succeeded(void **state)
{
    (void)state;
    kd_run r;
    base_run(&r);
    strcpy(r.job.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    r.started_us = 1764360900200123;
    r.finished_us = 1764360900450999;
    r.kone_rtt_us = 48211;
    r.outcome = KD_OUTCOME_SUCCEEDED;
    r.kone_status = 201;
    r.session_id = 1234567;
    r.has_modified_destination = true; /* a transfer call */
    r.modified_destination = 11000;
    strcpy(r.modified_reason, "transfer floor");

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    kd_err err = {0};
    assert_int_equal(kd_event_encode_result(&r, "worker-a-1", &sb, &err), 0);
    json_t *j = decode_one(&sb);
    assert_json(j, "{\"v\":1,\"job_id\":\"job-0001\",\"op\":\"call\","
                   "\"building_id\":\"building:9990000951\",\"group_id\":\"1\","
                   "\"outcome\":\"succeeded\",\"kone_status\":201,\"session_id\":1234567,"
                   "\"error\":null,\"attempt\":1,\"requeues\":0,\"worker\":\"worker-a-1\","
                   "\"created_at\":1764360900000,\"started_at\":1764360900200,"
                   "\"finished_at\":1764360900450,\"kone_rtt_us\":48211,"
                   "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"redelivered\":false,"
                   "\"failure\":null,"
                   "\"modified_destination\":11000,\"modified_reason\":\"transfer floor\","
                   "\"validated_locally\":false}");
    json_decref(j);
    msgpack_sbuffer_destroy(&sb);
}

/* A note without a code on a success is not an error; a code on a success is (e.g. the
 * call was allocated but tracking stopped before `served`). */
static void test_result_succeeded_error_only_with_code(void **state)
{
    (void)state;
    kd_run r;
    base_run(&r);
    kd_run_finish(&r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "", "call accepted");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(kd_event_encode_result(&r, "w", &sb, NULL), 0);
    json_t *j = decode_one(&sb);
    assert_true(json_is_null(json_object_get(j, "error")));
    json_decref(j);
    msgpack_sbuffer_destroy(&sb);

    kd_run_finish(&r, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "track_timeout", "still not served");
    msgpack_sbuffer_init(&sb);
    assert_int_equal(kd_event_encode_result(&r, "w", &sb, NULL), 0);
    j = decode_one(&sb);
    assert_json(json_object_get(j, "error"),
                "{\"code\":\"track_timeout\",\"message\":\"still not served\"}");
    assert_string_equal(json_string_value(json_object_get(j, "outcome")), "succeeded");
    json_decref(j);
    msgpack_sbuffer_destroy(&sb);
}

static void test_result_rejected_with_error(void **state)
{
    (void)state;
    kd_run r;
    base_run(&r);
    r.job.op = KD_OP_HOLD_OPEN;
    r.attempt = 3;
    r.requeues = 5; /* two retries before, three waits while its circuit was open */
    r.redelivered = true;
    r.started_us = 1764360900200000;
    r.kone_rtt_us = 51000;
    kd_run_finish(&r, KD_OUTCOME_REJECTED, KD_FAIL_FINAL, "SAME_SOURCE_AND_DEST_FLOOR",
                  "KONE cancelled the call: %s", "SAME_SOURCE_AND_DEST_FLOOR");
    r.finished_us = 1764360900300000;
    r.kone_status = 201;
    r.session_id = 77;

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(kd_event_encode_result(&r, "w2", &sb, NULL), 0);
    json_t *j = decode_one(&sb);
    assert_json(j, "{\"v\":1,\"job_id\":\"job-0001\",\"op\":\"hold_open\","
                   "\"building_id\":\"building:9990000951\",\"group_id\":\"1\","
                   "\"outcome\":\"rejected\",\"kone_status\":201,\"session_id\":77,"
                   "\"error\":{\"code\":\"SAME_SOURCE_AND_DEST_FLOOR\","
                   "\"message\":\"KONE cancelled the call: SAME_SOURCE_AND_DEST_FLOOR\"},"
                   "\"attempt\":3,\"requeues\":5,\"worker\":\"w2\",\"created_at\":1764360900000,"
                   "\"started_at\":1764360900200,\"finished_at\":1764360900300,"
                   "\"kone_rtt_us\":51000,\"trace_id\":null,\"redelivered\":true,"
                   "\"failure\":\"final\","
                   "\"modified_destination\":null,\"modified_reason\":null,"
                   "\"validated_locally\":false}");
    json_decref(j);
    msgpack_sbuffer_destroy(&sb);
}

/* A call the worker refused against the building's cached configuration: KONE's code and
 * words, no call (no status, session or start), marked validated_locally. */
static void test_result_validated_locally(void **state)
{
    (void)state;
    kd_run r;
    base_run(&r);
    kd_run_finish(&r, KD_OUTCOME_REJECTED, KD_FAIL_FINAL, "ignored_call",
                  "Ignoring call, unable to resolve area: area:9999");
    r.validated_locally = true;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(kd_event_encode_result(&r, "w", &sb, NULL), 0);
    json_t *j = decode_one(&sb);
    assert_true(json_is_true(json_object_get(j, "validated_locally")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "ignored_call");
    assert_true(json_is_null(json_object_get(j, "session_id")));
    assert_int_equal(json_object_size(j), 22);
    json_decref(j);
    msgpack_sbuffer_destroy(&sb);
}

static void test_result_expired(void **state)
{
    (void)state;
    kd_run r;
    base_run(&r);
    r.job.op = KD_OP_CANCEL;
    r.job.session_id = 55;
    r.outcome = KD_OUTCOME_EXPIRED;
    r.failure = KD_FAIL_FINAL;
    strcpy(r.error_code, "expired");
    r.finished_us = 1764360970000000;
    r.attempt = 2;

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(kd_event_encode_result(&r, NULL, &sb, NULL), 0);
    json_t *j = decode_one(&sb);
    /* never sent to KONE: no status, session, start or RTT; the error has a code only */
    assert_json(j, "{\"v\":1,\"job_id\":\"job-0001\",\"op\":\"cancel\","
                   "\"building_id\":\"building:9990000951\",\"group_id\":\"1\","
                   "\"outcome\":\"expired\",\"kone_status\":0,\"session_id\":null,"
                   "\"error\":{\"code\":\"expired\",\"message\":null},\"attempt\":2,\"requeues\":0,"
                   "\"worker\":null,\"created_at\":1764360900000,\"started_at\":null,"
                   "\"finished_at\":1764360970000,\"kone_rtt_us\":null,\"trace_id\":null,"
                   "\"redelivered\":false,\"failure\":\"final\","
                   "\"modified_destination\":null,\"modified_reason\":null,"
                   "\"validated_locally\":false}");
    json_decref(j);
    msgpack_sbuffer_destroy(&sb);
}

static void test_result_invalid_job(void **state)
{
    (void)state;
    kd_run r;
    memset(&r, 0, sizeof r);
    r.job_valid = false; /* decode read the building, nothing else */
    strcpy(r.job.building_id, "building:1");
    r.attempt = 1;
    kd_run_finish(&r, KD_OUTCOME_REJECTED, KD_FAIL_FINAL, "invalid_job", "job.job_id: missing");
    r.finished_us = 1764360900000999;

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(kd_event_encode_result(&r, "w", &sb, NULL), 0);
    json_t *j = decode_one(&sb);
    assert_json(
        j, "{\"v\":1,\"job_id\":null,\"op\":null,\"building_id\":\"building:1\","
           "\"group_id\":null,\"outcome\":\"rejected\",\"kone_status\":0,"
           "\"session_id\":null,\"error\":{\"code\":\"invalid_job\","
           "\"message\":\"job.job_id: missing\"},\"attempt\":1,\"requeues\":0,\"worker\":\"w\","
           "\"created_at\":null,\"started_at\":null,\"finished_at\":1764360900000,"
           "\"kone_rtt_us\":null,\"trace_id\":null,\"redelivered\":false,"
           "\"failure\":\"final\","
           "\"modified_destination\":null,\"modified_reason\":null,"
           "\"validated_locally\":false}");
    json_decref(j);
    msgpack_sbuffer_destroy(&sb);
}

static void test_result_undecodable_and_transient(void **state)
{
    (void)state;
    kd_run r;
    memset(&r, 0, sizeof r);
    r.attempt = 1;
    r.redelivered = true;
    kd_run_finish(&r, KD_OUTCOME_REJECTED, KD_FAIL_UNDECODABLE, "undecodable", "not msgpack");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(kd_event_encode_result(&r, "w", &sb, NULL), 0);

    base_run(&r);
    kd_run_finish(&r, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "503", "KONE busy");
    r.kone_status = 503;
    assert_int_equal(kd_event_encode_result(&r, "w", &sb, NULL), 0);

    /* two events appended to one buffer decode one after the other */
    size_t off = 0;
    json_t *a = decode_at(&sb, &off);
    json_t *b = decode_at(&sb, &off);
    assert_int_equal(off, sb.size);
    assert_string_equal(json_string_value(json_object_get(a, "failure")), "undecodable");
    assert_true(json_is_null(json_object_get(a, "job_id")));
    assert_true(json_is_true(json_object_get(a, "redelivered")));
    assert_int_equal(json_object_size(a), 22);
    assert_string_equal(json_string_value(json_object_get(b, "outcome")), "failed");
    assert_string_equal(json_string_value(json_object_get(b, "failure")), "transient");
    assert_int_equal(json_integer_value(json_object_get(b, "kone_status")), 503);
    assert_int_equal(json_object_size(b), 22);
    json_decref(a);
    json_decref(b);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- the result's bytes against the encoder before issue 17 ---- */

/* Integers at every boundary of msgpack's widths, and random ones. */
static int64_t gen_int(void)
{
    static const int64_t edge[] = {0,          1,
                                   -1,         31,
                                   32,         -32,
                                   -33,        127,
                                   128,        -128,
                                   -129,       255,
                                   256,        -32768,
                                   -32769,     65535,
                                   65536,      INT32_MIN,
                                   INT32_MAX,  (int64_t)INT32_MIN - 1,
                                   UINT32_MAX, (int64_t)UINT32_MAX + 1,
                                   INT64_MIN,  INT64_MAX};
    uint64_t r = xorshift();
    if (r % 3 == 0)
        return edge[(r >> 8) % (sizeof edge / sizeof edge[0])];
    return (int64_t)(xorshift() >> (r % 64)) * ((r & 128) ? -1 : 1);
}

/* A string in a char array of cap bytes: empty, short or up to cap - 1, ASCII or any byte
 * but NUL (non-ASCII, invalid UTF-8), now and then filling the array with no NUL at all. */
static void gen_str(char *s, size_t cap)
{
    uint64_t r = xorshift();
    size_t n = r % 4 == 0 ? 0 : r % 4 == 1 ? xorshift() % 12 : xorshift() % cap;
    bool any_byte = (r >> 8) % 3 == 0;
    for (size_t i = 0; i < n; i++)
        s[i] = any_byte ? (char)(1 + xorshift() % 255) : (char)('a' + xorshift() % 26);
    if ((r >> 12) % 16 == 0)
        memset(s + n, 'z', cap - n); /* unterminated: the encoder must stop at cap */
    else
        s[n] = '\0';
}

/* Every outcome, failure class and op (and values outside them), nil and present fields,
 * long strings (str8, str16, str32 for the worker), non-ASCII, integers at every width
 * boundary, appended after bytes already in the buffer: the same bytes as before. */
static void test_result_bytes_as_reference(void **state)
{
    (void)state;
    static char worker[70000];
    int kinds[256] = {0}; /* first bytes of the worker's string header seen */
    for (int i = 0; i < 20000; i++) {
        static kd_run r;
        memset(&r, 0, sizeof r);
        r.outcome = (kd_outcome)(1 + xorshift() % 6); /* 6: none of them */
        r.failure = (kd_failure_class)(xorshift() % 5);
        r.job.op = (kd_op)(xorshift() % 5);
        gen_str(r.job.job_id, sizeof r.job.job_id);
        gen_str(r.job.building_id, sizeof r.job.building_id);
        gen_str(r.job.group_id, sizeof r.job.group_id);
        gen_str(r.job.trace_id, sizeof r.job.trace_id);
        gen_str(r.error_code, sizeof r.error_code);
        gen_str(r.error_message, sizeof r.error_message);
        gen_str(r.modified_reason, sizeof r.modified_reason);
        r.job.created_at = gen_int();
        r.session_id = gen_int();
        r.started_us = gen_int();
        r.finished_us = gen_int();
        r.kone_rtt_us = gen_int();
        r.modified_destination = gen_int();
        r.has_modified_destination = xorshift() & 1;
        r.kone_status = (int)gen_int();
        r.attempt = (int)gen_int();
        r.requeues = (int)gen_int();
        r.redelivered = xorshift() & 1;
        r.validated_locally = xorshift() & 1;
        const char *w = worker;
        uint64_t wr = xorshift() % 8;
        size_t wn = wr == 0   ? 65535 + xorshift() % 3
                    : wr == 1 ? 200 + xorshift() % 200
                              : xorshift() % 40;
        memset(worker, 'w', wn);
        worker[wn] = '\0';
        if (wr == 2)
            w = NULL;
        kinds[wn < 32 ? 0xa0 : wn < 256 ? 0xd9 : wn < 65536 ? 0xda : 0xdb]++;

        msgpack_sbuffer got, want;
        msgpack_sbuffer_init(&got);
        msgpack_sbuffer_init(&want);
        size_t pre = xorshift() % 3 == 0 ? 1 + xorshift() % 9000 : 0; /* bytes already there */
        for (size_t k = 0; k < pre; k++) {
            char c = (char)k;
            msgpack_sbuffer_write(&got, &c, 1);
            msgpack_sbuffer_write(&want, &c, 1);
        }
        kd_err e1 = {0}, e2 = {0};
        int rc = kd_event_encode_result(&r, w, &got, &e1);
        assert_int_equal(rc, kd_event_encode_result_ref(&r, w, &want, &e2));
        assert_int_equal(rc, 0);
        assert_int_equal(got.size, want.size);
        assert_memory_equal(got.data, want.data, want.size);
        msgpack_sbuffer_destroy(&got);
        msgpack_sbuffer_destroy(&want);
    }
    /* every string header width was written */
    assert_true(kinds[0xa0] && kinds[0xd9] && kinds[0xda] && kinds[0xdb]);
}

static void test_result_without_outcome_is_refused(void **state)
{
    (void)state;
    kd_run r;
    base_run(&r);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_write(&sb, "x", 1);
    kd_err err = {0};
    assert_int_equal(kd_event_encode_result(&r, "w", &sb, &err), KD_ERR_INTERNAL);
    assert_non_null(strstr(err.msg, "job-0001"));
    assert_int_equal(sb.size, 1); /* nothing appended */
    msgpack_sbuffer_destroy(&sb);
    assert_string_equal(kd_outcome_name(KD_OUTCOME_NONE), "none");
}

/* A caller bug (no run, no event, no buffer) is an internal error, never a crash. */
static void test_encode_refuses_null(void **state)
{
    (void)state;
    kd_run r;
    base_run(&r);
    kd_call_event ev = {0};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    kd_err err = {0};
    assert_int_equal(kd_event_encode_result(NULL, "w", &sb, &err), KD_ERR_INTERNAL);
    assert_non_null(strstr(err.msg, "result event"));
    assert_int_equal(kd_event_encode_result(&r, "w", NULL, &err), KD_ERR_INTERNAL);
    assert_int_equal(kd_event_encode_call(NULL, "w", &sb, &err), KD_ERR_INTERNAL);
    assert_non_null(strstr(err.msg, "call event"));
    assert_int_equal(kd_event_encode_call(&ev, "w", NULL, &err), KD_ERR_INTERNAL);
    assert_int_equal(sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- call-state events ---- */

static void test_call_event_full(void **state)
{
    (void)state;
    kd_run r;
    base_run(&r);
    strcpy(r.job.trace_id, "t-1");
    kd_call_event ev;
    memset(&ev, 0, sizeof ev);
    ev.run = &r;
    ev.session_id = 1234567;
    strcpy(ev.state, "being_served");
    ev.n_decks = 2;
    ev.allocated_lift_deck[0] = 1001010;
    ev.allocated_lift_deck[1] = 1001020;
    strcpy(ev.eta, "2026-11-28T20:15:31.000Z");
    ev.has_modified_destination = true;
    ev.modified_destination = 3000;
    strcpy(ev.modified_reason, "TRANSFER");
    strcpy(ev.kone_time, "2026-11-28T20:15:01.500Z");
    ev.received_us = 1764360901600777;

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(kd_event_encode_call(&ev, "worker-a-1", &sb, NULL), 0);
    json_t *j = decode_one(&sb);
    assert_json(j, "{\"v\":1,\"job_id\":\"job-0001\",\"building_id\":\"building:9990000951\","
                   "\"group_id\":\"1\",\"session_id\":1234567,\"state\":\"being_served\","
                   "\"allocated_lift_deck\":[1001010,1001020],"
                   "\"eta\":\"2026-11-28T20:15:31.000Z\",\"cancel_reason\":null,"
                   "\"modified_destination\":3000,\"modified_reason\":\"TRANSFER\","
                   "\"time\":\"2026-11-28T20:15:01.500Z\",\"received_at\":1764360901600,"
                   "\"worker\":\"worker-a-1\",\"trace_id\":\"t-1\"}");
    json_decref(j);
    msgpack_sbuffer_destroy(&sb);
}

static void test_call_event_cancelled_minimal(void **state)
{
    (void)state;
    kd_run r;
    base_run(&r);
    kd_call_event ev;
    memset(&ev, 0, sizeof ev);
    ev.run = &r;
    ev.session_id = 9;
    strcpy(ev.state, "cancelled");
    strcpy(ev.cancel_reason, "NO_LIFT_AVAILABLE");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(kd_event_encode_call(&ev, "w", &sb, NULL), 0);
    json_t *j = decode_one(&sb);
    assert_json(j, "{\"v\":1,\"job_id\":\"job-0001\",\"building_id\":\"building:9990000951\","
                   "\"group_id\":\"1\",\"session_id\":9,\"state\":\"cancelled\","
                   "\"allocated_lift_deck\":null,\"eta\":null,"
                   "\"cancel_reason\":\"NO_LIFT_AVAILABLE\",\"modified_destination\":null,"
                   "\"modified_reason\":null,\"time\":null,\"received_at\":null,"
                   "\"worker\":\"w\",\"trace_id\":null}");
    json_decref(j);
    msgpack_sbuffer_destroy(&sb);
}

static void test_call_event_without_run_and_bad_decks(void **state)
{
    (void)state;
    kd_call_event ev;
    memset(&ev, 0, sizeof ev);
    strcpy(ev.state, "served");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(kd_event_encode_call(&ev, NULL, &sb, NULL), 0);
    json_t *j = decode_one(&sb);
    assert_int_equal(json_object_size(j), 15);
    assert_true(json_is_null(json_object_get(j, "job_id")));
    assert_true(json_is_null(json_object_get(j, "trace_id")));
    assert_string_equal(json_string_value(json_object_get(j, "state")), "served");
    json_decref(j);

    size_t before = sb.size;
    ev.n_decks = KD_EVENT_MAX_DECKS + 1;
    kd_err err = {0};
    assert_int_equal(kd_event_encode_call(&ev, NULL, &sb, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "decks"));
    assert_int_equal(sb.size, before);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- msgpack → JSON ---- */

typedef void (*pack_fn)(msgpack_packer *pk);

static json_t *convert(pack_fn fn)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    fn(&pk);
    json_t *j = decode_one(&sb);
    msgpack_sbuffer_destroy(&sb);
    return j;
}

static void str(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}
#define STR(pk, lit) str((pk), (lit), sizeof(lit) - 1)

static void pack_scalars(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 12);
    msgpack_pack_nil(pk);
    msgpack_pack_true(pk);
    msgpack_pack_false(pk);
    msgpack_pack_uint64(pk, 42);
    msgpack_pack_int64(pk, -42);
    msgpack_pack_int64(pk, INT64_MIN);
    msgpack_pack_uint64(pk, UINT64_MAX);
    msgpack_pack_float(pk, 1.5f);
    msgpack_pack_double(pk, -0.25);
    msgpack_pack_double(pk, NAN);
    msgpack_pack_double(pk, INFINITY);
    msgpack_pack_double(pk, -1.0 / 0.0);
}

static void test_json_scalars(void **state)
{
    (void)state;
    json_t *j = convert(pack_scalars);
    assert_json(j, "[null,true,false,42,-42,-9223372036854775808,\"18446744073709551615\","
                   "1.5,-0.25,\"NaN\",\"Infinity\",\"-Infinity\"]");
    json_decref(j);
}

static void pack_strings(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 8);
    STR(pk, "");
    STR(pk, "plain");
    STR(pk, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"); /* é € 😀: valid, kept */
    STR(pk, "a\xff"
            "b");            /* stray byte */
    STR(pk, "\xc0\xaf");     /* overlong '/' */
    STR(pk, "\xed\xa0\x80"); /* UTF-16 surrogate */
    STR(pk, "end\xe2\x82");  /* truncated sequence */
    STR(pk, "nul\0in");      /* embedded NUL */
}

static void test_json_strings_and_invalid_utf8(void **state)
{
    (void)state;
    json_t *j = convert(pack_strings);
    assert_json(j, "[\"\",\"plain\",\"\\u00e9\\u20ac\\ud83d\\ude00\",\"a\\ufffdb\","
                   "\"\\ufffd\\ufffd\",\"\\ufffd\\ufffd\\ufffd\",\"end\\ufffd\\ufffd\","
                   "\"nul\\u0000in\"]");
    /* and it still serialises to valid JSON */
    char *s = json_dumps(j, JSON_COMPACT);
    assert_non_null(s);
    json_t *back = json_loads(s, JSON_ALLOW_NUL, NULL);
    assert_non_null(back);
    assert_true(json_equal(j, back));
    json_decref(back);
    free(s);
    json_decref(j);
}

/* Four-byte sequences in a string that is not valid UTF-8 as a whole: the valid ones (an
 * emoji, U+10FFFF) are kept, each byte of an overlong, out-of-range or broken one becomes
 * U+FFFD. */
static void pack_four_byte(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    STR(pk, "\xff"
            "\xf0\x9f\x98\x80" /* U+1F600: kept */
            "\xf4\x8f\xbf\xbf" /* U+10FFFF: kept */
            "\xf0\x80\x80\x80" /* overlong */
            "\xf4\x90\x80\x80" /* above U+10FFFF */
            "\xf0\x9f\x28\x80" /* bad third byte */
            "\xf0\x9f\x98");   /* cut short */
}

static void test_json_four_byte_sequences(void **state)
{
    (void)state;
    json_t *j = convert(pack_four_byte);
    assert_json(j, "[\"\\ufffd\\ud83d\\ude00\\udbff\\udfff"
                   "\\ufffd\\ufffd\\ufffd\\ufffd"
                   "\\ufffd\\ufffd\\ufffd\\ufffd"
                   "\\ufffd\\ufffd(\\ufffd"
                   "\\ufffd\\ufffd\\ufffd\"]");
    json_decref(j);
}

static void pack_bytes(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_bin(pk, 4);
    msgpack_pack_bin_body(pk, "\x01\x02\x03\xff", 4);
    msgpack_pack_bin(pk, 0);
    msgpack_pack_ext(pk, 5, 7);
    msgpack_pack_ext_body(pk, "hello", 5);
    msgpack_pack_ext(pk, 1, -1);
    msgpack_pack_ext_body(pk, "x", 1);
}

static void test_json_bin_and_ext(void **state)
{
    (void)state;
    json_t *j = convert(pack_bytes);
    assert_json(j, "[\"AQID/w==\",\"\",{\"ext\":7,\"data\":\"aGVsbG8=\"},"
                   "{\"ext\":-1,\"data\":\"eA==\"}]");
    json_decref(j);
}

static void pack_nested(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 4);
    STR(pk, "outer");
    msgpack_pack_map(pk, 2);
    msgpack_pack_int(pk, 1);
    STR(pk, "one");
    msgpack_pack_int(pk, -2);
    msgpack_pack_map(pk, 1);
    msgpack_pack_uint64(pk, 3);
    msgpack_pack_array(pk, 2);
    msgpack_pack_int(pk, 4);
    msgpack_pack_map(pk, 0);
    STR(pk, "k\xff"); /* invalid UTF-8 key */
    msgpack_pack_true(pk);
    STR(pk, "empty");
    msgpack_pack_array(pk, 0);
    STR(pk, "dup");
    msgpack_pack_int(pk, 1);
}

static void test_json_nested_maps_with_int_keys(void **state)
{
    (void)state;
    json_t *j = convert(pack_nested);
    assert_json(j, "{\"outer\":{\"1\":\"one\",\"-2\":{\"3\":[4,{}]}},\"k\\ufffd\":true,"
                   "\"empty\":[],\"dup\":1}");
    json_decref(j);
}

static void pack_odd_keys(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 9);
    msgpack_pack_nil(pk);
    msgpack_pack_int(pk, 1);
    msgpack_pack_true(pk);
    msgpack_pack_int(pk, 2);
    msgpack_pack_double(pk, 2.5);
    msgpack_pack_int(pk, 3);
    msgpack_pack_bin(pk, 2);
    msgpack_pack_bin_body(pk, "\x00\x01", 2);
    msgpack_pack_int(pk, 4);
    msgpack_pack_array(pk, 2);
    msgpack_pack_int(pk, 1);
    STR(pk, "a");
    msgpack_pack_int(pk, 5);
    msgpack_pack_map(pk, 1);
    msgpack_pack_int(pk, 7);
    msgpack_pack_nil(pk);
    msgpack_pack_int(pk, 6);
    msgpack_pack_uint64(pk, UINT64_MAX);
    msgpack_pack_int(pk, 7);
    STR(pk, "same"); /* duplicate key: the later value wins */
    msgpack_pack_int(pk, 8);
    STR(pk, "same");
    msgpack_pack_int(pk, 9);
}

static void test_json_non_string_keys(void **state)
{
    (void)state;
    json_t *j = convert(pack_odd_keys);
    assert_json(j, "{\"null\":1,\"true\":2,\"2.5\":3,\"AAE=\":4,\"[1,\\\"a\\\"]\":5,"
                   "\"{\\\"7\\\":null}\":6,\"18446744073709551615\":7,\"same\":9}");
    json_decref(j);
}

static void test_json_deep_and_null(void **state)
{
    (void)state;
    assert_null(kd_msgpack_to_json(NULL));
    /* a hand-built chain deeper than any unpacker makes: converted without crashing */
    enum { DEPTH = 1000 };
    msgpack_object *objs = calloc(DEPTH, sizeof *objs);
    assert_non_null(objs);
    for (int i = 0; i < DEPTH; i++) {
        objs[i].type = MSGPACK_OBJECT_ARRAY;
        objs[i].via.array.size = i + 1 < DEPTH ? 1 : 0;
        objs[i].via.array.ptr = i + 1 < DEPTH ? &objs[i + 1] : NULL;
    }
    json_t *j = kd_msgpack_to_json(&objs[0]);
    assert_non_null(j);
    assert_true(json_is_array(j));
    json_decref(j);
    free(objs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result_succeeded),
        cmocka_unit_test(test_result_succeeded_error_only_with_code),
        cmocka_unit_test(test_result_rejected_with_error),
        cmocka_unit_test(test_result_validated_locally),
        cmocka_unit_test(test_result_expired),
        cmocka_unit_test(test_result_invalid_job),
        cmocka_unit_test(test_result_undecodable_and_transient),
        cmocka_unit_test(test_result_bytes_as_reference),
        cmocka_unit_test(test_result_without_outcome_is_refused),
        cmocka_unit_test(test_encode_refuses_null),
        cmocka_unit_test(test_call_event_full),
        cmocka_unit_test(test_call_event_cancelled_minimal),
        cmocka_unit_test(test_call_event_without_run_and_bad_decks),
        cmocka_unit_test(test_json_scalars),
        cmocka_unit_test(test_json_strings_and_invalid_utf8),
        cmocka_unit_test(test_json_four_byte_sequences),
        cmocka_unit_test(test_json_bin_and_ext),
        cmocka_unit_test(test_json_nested_maps_with_int_keys),
        cmocka_unit_test(test_json_non_string_keys),
        cmocka_unit_test(test_json_deep_and_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
