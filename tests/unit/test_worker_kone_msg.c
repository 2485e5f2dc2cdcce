/* Unit tests for worker/kone_msg.c: every request frame built from jobs, every incoming
 * frame type parsed (malformed ones included), and how KONE's refusals are classified. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "kone_msg.h"

#define T0_US 1606288653298515LL   /* 2020-11-25T07:17:33.298515Z */

/* Asserts that `text` is the same JSON as `expected` (key order does not matter). */
static void assert_json(const char *text, const char *expected)
{
    assert_non_null(text);
    json_error_t e;
    json_t *a = json_loads(text, 0, &e);
    json_t *b = json_loads(expected, 0, &e);
    assert_non_null(a);
    assert_non_null(b);
    if (!json_equal(a, b))
        fail_msg("frame\n  %s\nexpected\n  %s", text, expected);
    json_decref(a);
    json_decref(b);
}

static void base_job(kd_job *j, kd_op op)
{
    memset(j, 0, sizeof *j);
    j->v = 1;
    snprintf(j->job_id, sizeof j->job_id, "job-1");
    j->op = op;
    snprintf(j->building_id, sizeof j->building_id, "building:9990000951");
    snprintf(j->group_id, sizeof j->group_id, "1");
}

/* ------------------------------------------------------------------ builders */

static void test_iso8601(void **state)
{
    (void)state;
    char b[40];
    kd_kone_iso8601(T0_US, b, sizeof b);
    assert_string_equal(b, "2020-11-25T07:17:33.298Z");
    kd_kone_iso8601(0, b, sizeof b);
    assert_string_equal(b, "1970-01-01T00:00:00.000Z");
}

/* The token goes into the upgrade URL's query: everything but unreserved characters is
 * percent-encoded (a '+' or '/' of a base64 token would otherwise change it), and a short
 * buffer truncates rather than overflows. */
static void test_url_escape(void **state)
{
    (void)state;
    char out[64];
    kd_kone_url_escape("aZ09-_.~+/= &%", out, sizeof out);
    assert_string_equal(out, "aZ09-_.~%2B%2F%3D%20%26%25");
    kd_kone_url_escape("\xc3\xa4", out, sizeof out);
    assert_string_equal(out, "%C3%A4");
    char small[8];
    kd_kone_url_escape("++++", small, sizeof small);
    assert_string_equal(small, "%2B%2B");   /* 7 bytes and the NUL: the third does not fit */
}

/* The peek before the full parse: a call-state event gives its session id; an answer (even
 * one naming call_state in its data), another event, or a broken subtopic does not. */
static void test_peek_call_state(void **state)
{
    (void)state;
    int64_t sid = 0;
    const char *ev = "{\"type\":\"monitor-call-state\",\"buildingId\":\"building:1\","
                     "\"subtopic\": \"call_state/4711/served\",\"data\":{\"state\":\"served\"}}";
    assert_true(kd_kone_msg_peek_call_state(ev, strlen(ev), &sid));
    assert_int_equal(sid, 4711);
    /* the peek agrees with the full parse */
    kd_kone_msg m;
    kd_err e = {0};
    assert_int_equal(kd_kone_msg_parse(ev, strlen(ev), &m, &e), 0);
    assert_int_equal(m.kind, KD_KONE_MSG_CALL_STATE);
    assert_int_equal(m.ev.session_id, 4711);
    const char *answer = "{\"statusCode\":201,\"requestId\":5,\"subtopic\":\"call_state/4711/+\"}";
    assert_false(kd_kone_msg_peek_call_state(answer, strlen(answer), &sid));
    const char *lift = "{\"subtopic\":\"1/position\",\"data\":{}}";
    assert_false(kd_kone_msg_peek_call_state(lift, strlen(lift), &sid));
    const char *bad = "{\"subtopic\":\"call_state/x1/served\"}";
    assert_false(kd_kone_msg_peek_call_state(bad, strlen(bad), &sid));
    const char *cut = "{\"subtopic\":\"call_state/4711";
    assert_false(kd_kone_msg_peek_call_state(cut, strlen(cut), &sid));
    /* never reads past len: the id is cut by the length, not by the terminator */
    assert_false(kd_kone_msg_peek_call_state(ev, (size_t)(strstr(ev, "4711") - ev) + 2, &sid));
}

static void test_building_id(void **state)
{
    (void)state;
    char b[100];
    kd_kone_building_id("9990000951", b, sizeof b);
    assert_string_equal(b, "building:9990000951");
    kd_kone_building_id("building:9990000951", b, sizeof b);
    assert_string_equal(b, "building:9990000951");
}

static void test_call_destination_full(void **state)
{
    (void)state;
    kd_job j;
    base_job(&j, KD_OP_CALL);
    j.area = 3000;
    j.action = 2;
    j.has_destination = true;
    j.destination = 5000;
    j.has_terminal = true;
    j.terminal = 1;
    j.has_delay = true;
    j.delay = 10;
    j.has_group_size = true;
    j.group_size = 3;
    snprintf(j.language, sizeof j.language, "en-GB");
    j.priority = KD_PRIO_HIGH;
    j.n_allowed_lifts = 2;
    j.allowed_lifts[0] = 1001010;
    j.allowed_lifts[1] = 1001110;
    snprintf(j.media_id, sizeof j.media_id, "0123345abcd");
    snprintf(j.media_cc, sizeof j.media_cc, "0123");
    snprintf(j.media_type, sizeof j.media_type, "RFID");
    kd_err err = {0};
    char *s = kd_kone_msg_job(&j, 252390420, T0_US, &err);
    assert_json(s,
        "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"building:9990000951\","
        "\"callType\":\"action\",\"groupId\":\"1\",\"payload\":{\"request_id\":252390420,"
        "\"area\":3000,\"time\":\"2020-11-25T07:17:33.298Z\",\"terminal\":1,"
        "\"media_id\":\"0123345abcd\",\"media_cc\":\"0123\",\"media_type\":\"RFID\","
        "\"call\":{\"action\":2,\"destination\":5000,\"delay\":10,\"group_size\":3,"
        "\"language\":\"en-GB\",\"call_replacement_priority\":\"HIGH\","
        "\"allowed_lifts\":[1001010,1001110]}}}");
    /* the key is plain ASCII, not the YAML's soft-hyphenated spelling */
    assert_non_null(strstr(s, "\"allowed_lifts\""));
    free(s);
}

static void test_call_landing_minimal(void **state)
{
    (void)state;
    kd_job j;
    base_job(&j, KD_OP_CALL);
    snprintf(j.building_id, sizeof j.building_id, "4242");   /* no prefix */
    snprintf(j.group_id, sizeof j.group_id, "2");
    j.area = 1000;
    j.action = 2001;
    j.priority = KD_PRIO_LOW;
    kd_err err = {0};
    char *s = kd_kone_msg_job(&j, 7, T0_US, &err);
    assert_json(s,
        "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"building:4242\",\"callType\":\"action\","
        "\"groupId\":\"2\",\"payload\":{\"request_id\":7,\"area\":1000,"
        "\"time\":\"2020-11-25T07:17:33.298Z\",\"call\":{\"action\":2001,"
        "\"call_replacement_priority\":\"LOW\"}}}");
    free(s);
}

static void test_call_escapes_strings(void **state)
{
    (void)state;
    kd_job j;
    base_job(&j, KD_OP_CALL);
    snprintf(j.media_id, sizeof j.media_id, "a\"b\\c");
    kd_err err = {0};
    char *s = kd_kone_msg_job(&j, 1, T0_US, &err);
    json_t *o = json_loads(s, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "payload"),
                                                          "media_id")), "a\"b\\c");
    json_decref(o);
    free(s);
}

static void test_hold_open(void **state)
{
    (void)state;
    kd_job j;
    base_job(&j, KD_OP_HOLD_OPEN);
    j.lift_deck = 1001010;
    j.served_area = 5000;
    j.has_hard_time = true;
    j.hard_time = 5;
    j.has_soft_time = true;
    j.soft_time = 15;
    kd_err err = {0};
    char *s = kd_kone_msg_job(&j, 11, T0_US, &err);
    assert_json(s,
        "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"building:9990000951\","
        "\"callType\":\"hold_open\",\"groupId\":\"1\",\"payload\":{\"request_id\":11,"
        "\"time\":\"2020-11-25T07:17:33.298Z\",\"lift_deck\":1001010,\"served_area\":5000,"
        "\"hard_time\":5,\"soft_time\":15}}");
    free(s);
    j.has_soft_time = false;
    s = kd_kone_msg_job(&j, 12, T0_US, &err);
    assert_null(strstr(s, "soft_time"));
    free(s);
}

static void test_cancel(void **state)
{
    (void)state;
    kd_job j;
    base_job(&j, KD_OP_CANCEL);
    j.session_id = 24387;
    kd_err err = {0};
    char *s = kd_kone_msg_job(&j, 13, T0_US, &err);
    assert_json(s,
        "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"building:9990000951\","
        "\"callType\":\"delete\",\"groupId\":\"1\",\"payload\":{\"request_id\":13,"
        "\"session_id\":24387}}");
    free(s);
}

static void test_bad_op(void **state)
{
    (void)state;
    kd_job j;
    base_job(&j, (kd_op)0);
    kd_err err = {0};
    assert_null(kd_kone_msg_job(&j, 1, T0_US, &err));
    assert_int_equal(err.code, KD_ERR_INVALID);
}

static void test_sessions(void **state)
{
    (void)state;
    kd_err err = {0};
    char *s = kd_kone_msg_create_session(1, &err);
    assert_json(s, "{\"type\":\"create-session\",\"requestId\":\"1\"}");
    free(s);
    s = kd_kone_msg_resume_session(9, "55bf5b37-e0b8", false, 30, &err);
    assert_json(s, "{\"type\":\"resume-session\",\"requestId\":\"9\","
                   "\"sessionId\":\"55bf5b37-e0b8\",\"resendLatestStateUpToSeconds\":30}");
    free(s);
    s = kd_kone_msg_resume_session(10, "1234", true, 0, &err);
    assert_json(s, "{\"type\":\"resume-session\",\"requestId\":\"10\",\"sessionId\":1234}");
    free(s);
}

static void test_common(void **state)
{
    (void)state;
    kd_err err = {0};
    char *s = kd_kone_msg_common("ping", "building:1", "1", 5, &err);
    assert_json(s, "{\"type\":\"common-api\",\"buildingId\":\"building:1\",\"callType\":\"ping\","
                   "\"groupId\":\"1\",\"payload\":{\"request_id\":5}}");
    free(s);
    s = kd_kone_msg_common("config", "1", NULL, 6, &err);
    assert_json(s, "{\"type\":\"common-api\",\"buildingId\":\"building:1\",\"callType\":\"config\","
                   "\"groupId\":\"1\",\"requestId\":\"6\"}");
    free(s);
    s = kd_kone_msg_common("actions", "building:1", "3", 7, &err);
    assert_json(s, "{\"type\":\"common-api\",\"buildingId\":\"building:1\","
                   "\"callType\":\"actions\",\"groupId\":\"3\",\"requestId\":\"7\"}");
    free(s);
    s = kd_kone_msg_common("ping", "", NULL, 8, &err);   /* no building known yet */
    assert_json(s, "{\"type\":\"common-api\",\"callType\":\"ping\",\"groupId\":\"1\","
                   "\"payload\":{\"request_id\":8}}");
    free(s);
    assert_null(kd_kone_msg_common("reboot", "1", "1", 9, &err));
    assert_int_equal(err.code, KD_ERR_INVALID);
}

static void test_monitor(void **state)
{
    (void)state;
    kd_err err = {0};
    const char *topics[] = {"call_state/24387/+"};
    char *s = kd_kone_msg_monitor("building:9990000951", "1", 21, "kd-24387", 300, topics, 1,
                                  &err);
    assert_json(s, "{\"type\":\"site-monitoring\",\"buildingId\":\"building:9990000951\","
                   "\"callType\":\"monitor\",\"groupId\":\"1\",\"requestId\":\"21\","
                   "\"payload\":{\"sub\":\"kd-24387\",\"duration\":300,"
                   "\"subtopics\":[\"call_state/24387/+\"]}}");
    free(s);
}

/* ------------------------------------------------------------------ parsing */

static kd_kone_msg parse_ok(const char *text)
{
    kd_kone_msg m;
    kd_err err = {0};
    assert_int_equal(kd_kone_msg_parse(text, strlen(text), &m, &err), 0);
    return m;
}

static void test_parse_answer(void **state)
{
    (void)state;
    kd_kone_msg m = parse_ok("{\"connectionId\":\"abc\",\"requestId\":\"252390420\","
                             "\"statusCode\":201,"
                             "\"data\":{\"time\":\"2022-03-28T08:17:09.163Z\"}}");
    assert_int_equal(m.kind, KD_KONE_MSG_ANSWER);
    assert_int_equal(m.status, 201);
    assert_true(m.has_request_id);
    assert_int_equal(m.request_id, 252390420);

    m = parse_ok("{\"requestId\":17,\"statusCode\":404,"
                 "\"message\":\"Building data not found for ID building:1\"}");
    assert_int_equal(m.kind, KD_KONE_MSG_ANSWER);
    assert_int_equal(m.status, 404);
    assert_int_equal(m.request_id, 17);
    assert_string_equal(m.message, "Building data not found for ID building:1");

    m = parse_ok("{\"statusCode\":\"400\","
                 "\"data\":{\"request_id\":5,\"message\":\"Invalid json payload\"}}");
    assert_int_equal(m.status, 400);
    assert_int_equal(m.request_id, 5);
    assert_string_equal(m.message, "Invalid json payload");

    m = parse_ok("{\"statusCode\":200,\"requestId\":\"not-a-number\"}");
    assert_false(m.has_request_id);
}

static void test_parse_session_answer(void **state)
{
    (void)state;
    kd_kone_msg m = parse_ok("{\"requestId\":\"1\",\"statusCode\":201,"
                             "\"data\":{\"sessionId\":\"55bf5b37-e0b8-a2s0\"}}");
    assert_int_equal(m.kind, KD_KONE_MSG_ANSWER);
    assert_string_equal(m.session_id, "55bf5b37-e0b8-a2s0");
    assert_false(m.session_numeric);
    m = parse_ok("{\"requestId\":\"1\",\"statusCode\":201,\"data\":{\"sessionId\":4711}}");
    assert_string_equal(m.session_id, "4711");
    assert_true(m.session_numeric);
}

static void test_parse_call_result(void **state)
{
    (void)state;
    kd_kone_msg m = parse_ok("{\"callType\":\"action\",\"buildingId\":\"building:1\","
                             "\"groupId\":\"1\",\"data\":{\"request_id\":252390420,"
                             "\"success\":true,\"session_id\":24387}}");
    assert_int_equal(m.kind, KD_KONE_MSG_CALL_RESULT);
    assert_true(m.has_request_id);
    assert_int_equal(m.request_id, 252390420);
    assert_true(m.has_success);
    assert_true(m.success);
    assert_int_equal(m.call_session_id, 24387);

    m = parse_ok("{\"data\":{\"request_id\":\"9\",\"success\":false,"
                 "\"error\":\"Ignoring call, unknown call action: 200\"}}");
    assert_int_equal(m.kind, KD_KONE_MSG_CALL_RESULT);
    assert_int_equal(m.request_id, 9);
    assert_false(m.success);
    assert_string_equal(m.error, "Ignoring call, unknown call action: 200");

    m = parse_ok("{\"data\":{\"request_id\":9,\"success\":false,\"error\":1005}}");
    assert_string_equal(m.error, "1005");
}

static void test_parse_call_state(void **state)
{
    (void)state;
    kd_kone_msg m = parse_ok(
        "{\"callType\":\"monitor-call-state\",\"buildingId\":\"building:1\",\"groupId\":\"1\","
        "\"subtopic\":\"call_state/24387/being_served\","
        "\"data\":{\"time\":\"2022-03-28T08:17:09.163Z\","
        "\"allocated_lift_deck\":[1001010],\"eta\":\"2022-03-28T08:17:10.163Z\"}}");
    assert_int_equal(m.kind, KD_KONE_MSG_CALL_STATE);
    assert_int_equal(m.ev.session_id, 24387);
    assert_string_equal(m.ev.state, "being_served");
    assert_int_equal(m.ev.n_decks, 1);
    assert_int_equal(m.ev.allocated_lift_deck[0], 1001010);
    assert_string_equal(m.ev.eta, "2022-03-28T08:17:10.163Z");
    assert_string_equal(m.ev.kone_time, "2022-03-28T08:17:09.163Z");
    assert_null(m.ev.run);

    /* fields under "decks", as the YAML draws them */
    m = parse_ok("{\"subtopic\":\"call_state/5/cancelled\",\"data\":{\"time\":\"t\","
                 "\"decks\":{\"area\":1001010,\"cancel_reason\":\"NO_LIFT_AVAILABLE\"}}}");
    assert_string_equal(m.ev.state, "cancelled");
    assert_string_equal(m.ev.cancel_reason, "NO_LIFT_AVAILABLE");

    /* wildcard topic: state from data */
    m = parse_ok("{\"subtopic\":\"call_state/6/+\",\"data\":{\"state\":\"served\","
                 "\"modified_destination\":15010,\"modified_reason\":\"AutomaticTransfer\","
                 "\"allocated_lift_deck\":[1,2,3,4,5,6,7,8,9,10]}}");
    assert_int_equal(m.ev.session_id, 6);
    assert_string_equal(m.ev.state, "served");
    assert_true(m.ev.has_modified_destination);
    assert_int_equal(m.ev.modified_destination, 15010);
    assert_string_equal(m.ev.modified_reason, "AutomaticTransfer");
    assert_int_equal(m.ev.n_decks, KD_EVENT_MAX_DECKS);   /* capped, not overflowed */

    /* envelope without subtopic */
    m = parse_ok("{\"type\":\"monitor-call-state\",\"data\":{\"session_id\":7,"
                 "\"state\":\"being_allocated\"}}");
    assert_int_equal(m.kind, KD_KONE_MSG_CALL_STATE);
    assert_int_equal(m.ev.session_id, 7);
    assert_string_equal(m.ev.state, "being_allocated");

    /* wrong types are treated as absent */
    m = parse_ok("{\"subtopic\":\"call_state/x/served\",\"data\":{\"eta\":5,"
                 "\"allocated_lift_deck\":\"no\",\"cancel_reason\":[]}}");
    assert_int_equal(m.kind, KD_KONE_MSG_CALL_STATE);
    assert_int_equal(m.ev.session_id, 0);
    assert_int_equal(m.ev.n_decks, 0);
    assert_string_equal(m.ev.cancel_reason, "");
}

static void test_parse_events_and_unknown(void **state)
{
    (void)state;
    kd_kone_msg m = parse_ok("{\"subtopic\":\"lift_1/doors\",\"data\":{\"state\":\"OPENED\"}}");
    assert_int_equal(m.kind, KD_KONE_MSG_EVENT);
    assert_string_equal(m.subtopic, "lift_1/doors");
    m = parse_ok("{\"callType\":\"monitor-lift-position\",\"data\":{}}");
    assert_int_equal(m.kind, KD_KONE_MSG_EVENT);
    m = parse_ok("{\"hello\":\"world\"}");
    assert_int_equal(m.kind, KD_KONE_MSG_UNKNOWN);
    m = parse_ok("{\"statusCode\":\"abc\"}");   /* not a status: not an answer */
    assert_int_equal(m.kind, KD_KONE_MSG_UNKNOWN);
    m = parse_ok("{\"data\":\"text\"}");
    assert_int_equal(m.kind, KD_KONE_MSG_UNKNOWN);
}

static void test_parse_malformed(void **state)
{
    (void)state;
    const char *bad[] = {"", "not json", "[1,2]", "{", "null", "\"str\"", "42",
                         "{\"statusCode\":201,", "{\"a\":1}garbage"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kd_kone_msg m;
        kd_err err = {0};
        assert_int_equal(kd_kone_msg_parse(bad[i], strlen(bad[i]), &m, &err), KD_ERR_DECODE);
        assert_int_equal(m.kind, KD_KONE_MSG_MALFORMED);
        assert_true(err.msg[0] != '\0');
    }
    kd_kone_msg m;
    assert_int_equal(kd_kone_msg_parse(NULL, 0, &m, NULL), KD_ERR_DECODE);
    /* length is honoured: a valid prefix parses, bytes past len are never read */
    const char *two = "{\"statusCode\":200}{\"x\":";
    assert_int_equal(kd_kone_msg_parse(two, 18, &m, NULL), 0);
    assert_int_equal(m.kind, KD_KONE_MSG_ANSWER);
    /* deep nesting and huge numbers do not crash */
    char deep[5000];
    size_t n = 0;
    for (int i = 0; i < 2400; i++)
        deep[n++] = '[';
    deep[n] = '\0';
    assert_int_equal(kd_kone_msg_parse(deep, n, &m, NULL), KD_ERR_DECODE);
    const char *huge = "{\"statusCode\":99999999999999999999999,\"requestId\":1e400}";
    kd_kone_msg_parse(huge, strlen(huge), &m, NULL);   /* jansson refuses it: malformed */
    assert_true(m.kind == KD_KONE_MSG_MALFORMED || m.kind == KD_KONE_MSG_UNKNOWN);
    m = parse_ok("{\"statusCode\":201,\"requestId\":1e300}");   /* a real, not an id */
    assert_int_equal(m.kind, KD_KONE_MSG_ANSWER);
    assert_false(m.has_request_id);
    /* an embedded NUL inside the length is read safely (jansson skips it) */
    const char nul[] = "{\"statusCode\":200\0}";
    kd_kone_msg_parse(nul, sizeof nul - 1, &m, NULL);
    assert_true(m.kind == KD_KONE_MSG_ANSWER || m.kind == KD_KONE_MSG_MALFORMED);
}

/* ------------------------------------------------------------------ classification */

static void test_status_classes(void **state)
{
    (void)state;
    assert_int_equal(kd_kone_status_classify(200), KD_KONE_ST_OK);
    assert_int_equal(kd_kone_status_classify(201), KD_KONE_ST_OK);
    assert_int_equal(kd_kone_status_classify(202), KD_KONE_ST_OK);
    assert_int_equal(kd_kone_status_classify(401), KD_KONE_ST_AUTH);
    assert_int_equal(kd_kone_status_classify(400), KD_KONE_ST_REJECTED);
    assert_int_equal(kd_kone_status_classify(403), KD_KONE_ST_REJECTED);
    assert_int_equal(kd_kone_status_classify(404), KD_KONE_ST_REJECTED);
    assert_int_equal(kd_kone_status_classify(409), KD_KONE_ST_REJECTED);
    assert_int_equal(kd_kone_status_classify(429), KD_KONE_ST_TRANSIENT);
    assert_int_equal(kd_kone_status_classify(500), KD_KONE_ST_TRANSIENT);
    assert_int_equal(kd_kone_status_classify(503), KD_KONE_ST_TRANSIENT);
    assert_int_equal(kd_kone_status_classify(0), KD_KONE_ST_TRANSIENT);
}

static void test_rejection_texts(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        kd_outcome outcome;
        const char *code;
    } cases[] = {
        {"Ignoring call, unknown call action: 200", KD_OUTCOME_REJECTED, "ignored_call"},
        {"Ignoring call, unknown call action: UNDEFINED", KD_OUTCOME_REJECTED, "ignored_call"},
        {"Ignoring call, disabled call action: 4", KD_OUTCOME_REJECTED, "ignored_call"},
        {"Ignoring call, unable to resolve destination: area:9999", KD_OUTCOME_REJECTED,
         "ignored_call"},
        {"Ignoring call, destination not defined", KD_OUTCOME_REJECTED, "ignored_call"},
        {"Ignoring call, unable to resolve area: area:1005", KD_OUTCOME_REJECTED,
         "ignored_call"},
        {"INVALID_DIRECTION", KD_OUTCOME_REJECTED, "INVALID_DIRECTION"},
        {"Invalid json payload", KD_OUTCOME_REJECTED, "invalid_payload"},
        {"SAME_SOURCE_AND_DEST_FLOOR", KD_OUTCOME_REJECTED, "SAME_SOURCE_AND_DEST_FLOOR"},
        {"floor locked", KD_OUTCOME_REJECTED, "call_refused"},
        {"", KD_OUTCOME_REJECTED, "call_refused"},
        {"1005", KD_OUTCOME_FAILED, "1005"},
        {"Error 1005: site link down", KD_OUTCOME_FAILED, "1005"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char code[48];
        kd_outcome o = kd_kone_call_error_outcome(cases[i].text, code, sizeof code);
        if (o != cases[i].outcome || strcmp(code, cases[i].code) != 0)
            fail_msg("'%s' -> %d %s, expected %d %s", cases[i].text, o, code,
                     cases[i].outcome, cases[i].code);
    }
    char code[48];
    assert_int_equal(kd_kone_call_error_outcome(NULL, code, sizeof code), KD_OUTCOME_REJECTED);
    /* a very long single token does not overflow the code */
    char longtok[200];
    memset(longtok, 'A', sizeof longtok - 1);
    longtok[sizeof longtok - 1] = '\0';
    kd_kone_call_error_outcome(longtok, code, sizeof code);
    assert_string_equal(code, "call_refused");
}

static void test_cancel_codes(void **state)
{
    (void)state;
    char code[48];
    kd_kone_cancel_code("SAME_SOURCE_AND_DEST_FLOOR", code, sizeof code);
    assert_string_equal(code, "SAME_SOURCE_AND_DEST_FLOOR");
    kd_kone_cancel_code("NO_LIFT_AVAILABLE", code, sizeof code);
    assert_string_equal(code, "NO_LIFT_AVAILABLE");
    kd_kone_cancel_code("no lifts are available", code, sizeof code);
    assert_string_equal(code, "cancelled");
    kd_kone_cancel_code("", code, sizeof code);
    assert_string_equal(code, "cancelled");
    kd_kone_cancel_code(NULL, code, sizeof code);
    assert_string_equal(code, "cancelled");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iso8601),
        cmocka_unit_test(test_building_id),
        cmocka_unit_test(test_url_escape),
        cmocka_unit_test(test_peek_call_state),
        cmocka_unit_test(test_call_destination_full),
        cmocka_unit_test(test_call_landing_minimal),
        cmocka_unit_test(test_call_escapes_strings),
        cmocka_unit_test(test_hold_open),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_bad_op),
        cmocka_unit_test(test_sessions),
        cmocka_unit_test(test_common),
        cmocka_unit_test(test_monitor),
        cmocka_unit_test(test_parse_answer),
        cmocka_unit_test(test_parse_session_answer),
        cmocka_unit_test(test_parse_call_result),
        cmocka_unit_test(test_parse_call_state),
        cmocka_unit_test(test_parse_events_and_unknown),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_status_classes),
        cmocka_unit_test(test_rejection_texts),
        cmocka_unit_test(test_cancel_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
