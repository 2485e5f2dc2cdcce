/* Unit tests for worker/kone_jview.c: the allocation-free reader of KONE's frames gives the
 * same parsed frame as jansson for every frame it takes, leaves the others to jansson, and
 * takes the frames a job is made of (answers, call results, call states, lift status).
 * Compared on hand-made frames, on every prefix of them (a frame cut anywhere), on single-byte
 * changes of them, and on the kone_msg fuzz corpus (tests/fuzz/corpus/kone_msg). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kone_jview.h"
#include "kone_msg.h"

/* The frames a job costs, as KONE (and kone-sim) send them, and their variants. */
static const char *const frames[] = {
    "{\"type\":\"ok\",\"statusCode\":201,\"requestId\":\"17\",\"data\":{\"time\":\"2026-12-04T20:"
    "00:00.000Z\"}}",
    "{\"statusCode\":201,\"data\":{\"request_id\":17,\"success\":true,\"session_id\":4242}}",
    "{\"data\":{\"request_id\":17,\"success\":true,\"session_id\":4242},\"callType\":\"action\"}",
    "{\"data\":{\"request_id\":\"18\",\"success\":false,\"error\":\"Ignoring call, SAME_SOURCE\"}}",
    "{\"statusCode\":201,\"requestId\":3,\"data\":{\"sessionId\":\"abc-123\"}}",
    "{\"statusCode\":201,\"requestId\":3,\"data\":{\"sessionId\":77}}",
    "{\"statusCode\":429,\"message\":\"Too many requests\"}",
    "{\"statusCode\":400,\"data\":\"bad request text\"}",
    "{\"statusCode\":\"403\",\"data\":{\"error\":\"no scope\"}}",
    "{\"type\":\"monitor-call-state\",\"subtopic\":\"call_state/4242/being_fixed\",\"buildingId\":"
    "\"building:1\",\"data\":{\"state\":\"being_fixed\",\"time\":\"2026-12-04T20:00:01Z\","
    "\"allocated_lift_deck\":[1001010],\"eta\":\"2026-12-04T20:00:31Z\"}}",
    "{\"subtopic\":\"call_state/4242/"
    "cancelled\",\"data\":{\"cancel_reason\":\"NO_LIFT_AVAILABLE\"}}",
    "{\"subtopic\":\"call_state/4242/"
    "served\",\"data\":{\"decks\":[{\"allocated_lift_deck\":[1,2,3],"
    "\"modified_destination\":5000,\"modified_reason\":\"TRANSFER\"}]}}",
    "{\"subtopic\":\"call_state/+/+\",\"data\":{\"session_id\":9,\"call_state\":\"created\","
    "\"decks\":{\"eta\":\"x\"}}}",
    "{\"type\":\"monitor-call-state\",\"data\":{\"session_id\":\"9\",\"state\":\"served_soon\"}}",
    "{\"subtopic\":\"1001010/status\",\"buildingId\":\"building:1\",\"groupId\":\"2\",\"data\":"
    "{\"lift_mode\":5}}",
    "{\"subtopic\":\"1001010/status\",\"data\":{\"lift_mode\":-1}}",
    "{\"subtopic\":\"1001010/position\",\"data\":{\"cur\":3}}",
    "{\"callType\":\"monitor-lift-position\",\"data\":{}}",
    "{\"hello\":[1,2,{\"a\":null,\"b\":true,\"c\":false}],\"x\":{}}",
    /* duplicates: the last wins, in jansson too */
    "{\"statusCode\":200,\"statusCode\":404,\"message\":\"a\",\"message\":\"b\"}",
    /* the scanner leaves these to jansson (escapes, UTF-8, reals, big or odd numbers) */
    "{\"statusCode\":201,\"message\":\"quote \\\" and \\u00e9\"}",
    "{\"statusCode\":201,\"message\":\"h\xc3\xa9llo\"}",
    "{\"statusCode\":201.0,\"requestId\":1e1}",
    "{\"data\":{\"success\":true,\"session_id\":12345678901234567890}}",
    "{\"data\":{\"success\":true,\"session_id\":1234567890123456789}}",
    "{\"data\":{\"success\":true,\"session_id\":-0}}",
    "{\"statusCode\":01}",
    "  \t\r\n{ \"statusCode\" : 201 , \"requestId\" : \"5\" }  \n",
    "{\"statusCode\":201}x",
    "[1,2]",
    "\"just a string\"",
    "{\"a\":tru}",
    "{\"a\":nulls}",
    "{\"a\":\"\x01\"}",
    "{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}",
    "{}",
    "",
};

/* Both paths on one input: the same return code and the same parsed frame, byte for byte
 * (kd_kone_msg_parse zeroes the struct first, so padding and unused text compare too). */
static void same_both_ways(const char *buf, size_t len)
{
    kd_kone_msg a, b;
    kd_err ea = {0}, eb = {0};
    int ra = kd_kone_msg_parse(buf, len, &a, &ea);
    int rb = kd_kone_msg_parse_jansson(buf, len, &b, &eb);
    if (ra != rb || memcmp(&a, &b, sizeof a) != 0 || strcmp(ea.msg, eb.msg) != 0)
        fail_msg("the two readers differ on %zu bytes: \"%.*s\" (kind %s/%s, rc %d/%d)", len,
                 (int)len, buf, kd_kone_msg_kind_name(a.kind), kd_kone_msg_kind_name(b.kind), ra,
                 rb);
}

static void test_frames_same_both_ways(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof frames / sizeof *frames; i++)
        same_both_ways(frames[i], strlen(frames[i]));
}

/* A frame cut anywhere (the WebSocket layer hands frames whole, but a peer may send any
 * bytes): each prefix, each with one byte changed to each of a few troublesome values. */
static void test_prefixes_and_mutations(void **state)
{
    (void)state;
    static const char subst[] = {'"', '\\', '{', '}', '[', ']', ',', ':', '0', '-', ' ', 0, '\x80'};
    char buf[512];
    for (size_t i = 0; i < sizeof frames / sizeof *frames; i++) {
        size_t n = strlen(frames[i]);
        assert_true(n < sizeof buf);
        for (size_t k = 0; k <= n; k++) {
            memcpy(buf, frames[i], k); /* exact length: nothing after it is read */
            same_both_ways(buf, k);
        }
        for (size_t at = 0; at < n; at++)
            for (size_t s = 0; s < sizeof subst; s++) {
                memcpy(buf, frames[i], n);
                buf[at] = subst[s];
                same_both_ways(buf, n);
            }
    }
}

/* Every input of the fuzz corpus (real frames from the tests, and what fuzzing kept). */
static void test_fuzz_corpus_same_both_ways(void **state)
{
    (void)state;
    const char *src = getenv("KD_SRC_DIR");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/kone_msg", src ? src : ".");
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open %s (KD_SRC_DIR)", dir);
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        static char buf[1 << 20];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        char *exact = malloc(n ? n : 1); /* ASan sees a read past the end */
        assert_non_null(exact);
        memcpy(exact, buf, n);
        same_both_ways(exact, n);
        free(exact);
        files++;
    }
    closedir(d);
    assert_true(files >= 20);
}

/* The frames that make up a job are read without jansson: the point of the reader. */
static void test_job_frames_take_the_fast_path(void **state)
{
    (void)state;
    for (size_t i = 0; i < 19; i++) { /* frames[0..18]: what KONE sends for calls */
        kj_node nodes[KJ_SCAN_NODES];
        kj_view v = {.n = nodes, .cap = KJ_SCAN_NODES};
        if (!kj_scan(&v, frames[i], strlen(frames[i])))
            fail_msg("left to jansson: %s", frames[i]);
    }
    /* and these are not taken (escape, UTF-8, real, 19 or 20 digits, leading zero, trailing
     * bytes, not an object, a bad literal, a control byte, nesting over KJ_SCAN_DEPTH) */
    for (size_t i = 20; i < 37; i++) {
        if (i == 25 || i == 27 || i == 35) /* plain after all: -0, whitespace, {} */
            continue;
        kj_node nodes[KJ_SCAN_NODES];
        kj_view v = {.n = nodes, .cap = KJ_SCAN_NODES};
        if (kj_scan(&v, frames[i], strlen(frames[i])))
            fail_msg("taken by the scanner: %s", frames[i]);
    }
}

static void test_view_reading(void **state)
{
    (void)state;
    const char *f = "{\"a\":1,\"b\":[true,\"x\"],\"a\":\"two\",\"c\":{}}";
    kj_node nodes[KJ_SCAN_NODES];
    kj_view v = {.n = nodes, .cap = KJ_SCAN_NODES};
    assert_true(kj_scan(&v, f, strlen(f)));
    const kj_node *a = kj_get(&v, &v.n[0], "a");
    assert_true(kj_str_is(a, "two")); /* the last of two */
    assert_true(kj_str_starts(a, "tw"));
    assert_false(kj_str_starts(a, "twos"));
    const kj_node *b = kj_get(&v, &v.n[0], "b");
    const kj_node *e = kj_first(&v, b);
    assert_int_equal(e->type, KJ_TRUE);
    assert_true(kj_str_is(kj_next(&v, e), "x"));
    assert_null(kj_next(&v, kj_next(&v, e)));
    assert_null(kj_first(&v, kj_get(&v, &v.n[0], "c")));
    assert_null(kj_get(&v, b, "a")); /* not an object */
    assert_null(kj_get(&v, NULL, "a"));
    /* a view too small for the frame leaves it to jansson */
    kj_view small = {.n = nodes, .cap = 3};
    assert_false(kj_scan(&small, f, strlen(f)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_same_both_ways),
        cmocka_unit_test(test_prefixes_and_mutations),
        cmocka_unit_test(test_fuzz_corpus_same_both_ways),
        cmocka_unit_test(test_job_frames_take_the_fast_path),
        cmocka_unit_test(test_view_reading),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
