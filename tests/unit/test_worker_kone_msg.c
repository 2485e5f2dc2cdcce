/* Unit tests for worker/kone_msg.c: every request frame built from jobs, every incoming
 * frame type parsed (malformed ones included), and how KONE's refusals are classified. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kd_str.h"
#include "kone_msg.h"

#define T0_US 1606288653298515LL /* 2020-11-25T07:17:33.298515Z */

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
    /* a year of five digits (a clock far off) is written whole, not wrapped */
    kd_kone_iso8601(253402300800000000 + 5000, b, sizeof b);
    assert_string_equal(b, "10000-01-01T00:00:00.005Z");
    /* a short buffer cuts the text, terminated */
    kd_kone_iso8601(T0_US, b, 11);
    assert_string_equal(b, "2020-11-25");
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
    assert_string_equal(small, "%2B%2B"); /* 7 bytes and the NUL: the third does not fit */
}

/* kd_kone_msg_read's question: say no to session 4711, yes to any other; count the asks. */
typedef struct {
    int asked;
    int64_t sid;
} asks;

static bool keep_but_4711(int64_t session_id, void *user)
{
    asks *a = user;
    a->asked++;
    a->sid = session_id;
    return session_id != 4711;
}

/* One read: 0 and whether it was kept; the asks counted in *a. */
static int read_one(const char *f, size_t len, asks *a, bool *kept, kd_kone_msg *m)
{
    kd_err e = {0};
    *a = (asks){0};
    return kd_kone_msg_read(f, len, keep_but_4711, a, kept, m, &e);
}

/* The question before a call state's fields are read: a call-state event is offered with its
 * session id and dropped when the client says so; an answer (even one naming call_state),
 * another event, a broken subtopic or a broken frame is not offered. */
static void test_read_asks_call_states(void **state)
{
    (void)state;
    asks a;
    bool kept = true;
    kd_kone_msg m;
    const char *ev = "{\"type\":\"monitor-call-state\",\"buildingId\":\"building:1\","
                     "\"subtopic\": \"call_state/4711/served\",\"data\":{\"state\":\"served\"}}";
    assert_int_equal(read_one(ev, strlen(ev), &a, &kept, &m), 0);
    assert_false(kept);
    assert_int_equal(a.asked, 1);
    assert_int_equal(a.sid, 4711);
    /* followed: the same frame as kd_kone_msg_parse reads */
    const char *ev2 = "{\"subtopic\":\"call_state/4712/served\",\"data\":{\"state\":\"served\","
                      "\"eta\":\"2026-12-05T07:00:00Z\"}}";
    assert_int_equal(read_one(ev2, strlen(ev2), &a, &kept, &m), 0);
    assert_true(kept);
    assert_int_equal(a.asked, 1);
    assert_int_equal(a.sid, 4712);
    kd_kone_msg p;
    kd_err e = {0};
    assert_int_equal(kd_kone_msg_parse(ev2, strlen(ev2), &p, &e), 0);
    assert_memory_equal(&m, &p, sizeof m);
    assert_int_equal(m.kind, KD_KONE_MSG_CALL_STATE);
    assert_int_equal(m.ev.session_id, 4712);
    assert_string_equal(m.ev.eta, "2026-12-05T07:00:00Z");
    const char *not_asked[] = {
        "{\"statusCode\":201,\"requestId\":5,\"subtopic\":\"call_state/4711/+\"}",
        "{\"subtopic\":\"1/position\",\"data\":{}}",
        "{\"subtopic\":\"call_state/x1/served\"}",
        "{\"subtopic\":\"call_state/4711\"}",
        "{\"data\":{\"text\":\"call_state/4711/served\"},\"subtopic\":\"2/status\"}",
    };
    for (size_t i = 0; i < sizeof not_asked / sizeof *not_asked; i++) {
        assert_int_equal(read_one(not_asked[i], strlen(not_asked[i]), &a, &kept, &m), 0);
        assert_true(kept);
        assert_int_equal(a.asked, 0);
    }
    /* a frame cut in its topic is malformed, not asked about; never read past len */
    const char *cut = "{\"subtopic\":\"call_state/4711";
    assert_int_equal(read_one(cut, strlen(cut), &a, &kept, &m), KD_ERR_DECODE);
    assert_int_equal(m.kind, KD_KONE_MSG_MALFORMED);
    assert_int_equal(a.asked, 0);
    assert_int_equal(read_one(ev, (size_t)(strstr(ev, "4711") - ev) + 2, &a, &kept, &m),
                     KD_ERR_DECODE);
    assert_int_equal(a.asked, 0);
    /* asked as soon as the subtopic is read: a dropped state's data is not read at all (here
     * it is cut), a followed one's is (and the cut makes it malformed) */
    const char *early = "{\"subtopic\":\"call_state/4711/served\",\"data\":{\"sta";
    assert_int_equal(read_one(early, strlen(early), &a, &kept, &m), 0);
    assert_false(kept);
    const char *early2 = "{\"subtopic\":\"call_state/4712/served\",\"data\":{\"sta";
    assert_int_equal(read_one(early2, strlen(early2), &a, &kept, &m), KD_ERR_DECODE);
    assert_int_equal(a.asked, 1);
    /* a statusCode before the subtopic makes it an answer: not asked */
    const char *st = "{\"statusCode\":201,\"subtopic\":\"call_state/4711/+\",\"requestId\":5}";
    assert_int_equal(read_one(st, strlen(st), &a, &kept, &m), 0);
    assert_true(kept);
    assert_int_equal(a.asked, 0);
    assert_int_equal(m.kind, KD_KONE_MSG_ANSWER);
    /* the jansson path (an escape) asks the same */
    const char *esc =
        "{\"subtopic\":\"call_state/4711/served\",\"data\":{\"state\":\"s\\u0065rved\"}}";
    assert_int_equal(read_one(esc, strlen(esc), &a, &kept, &m), 0);
    assert_false(kept);
    assert_int_equal(a.sid, 4711);
    /* no keep: every frame is read */
    assert_int_equal(kd_kone_msg_read(ev, strlen(ev), NULL, NULL, &kept, &m, &e), 0);
    assert_true(kept);
    assert_int_equal(m.ev.session_id, 4711);
}

static void test_building_id(void **state)
{
    (void)state;
    char b[100];
    kd_kone_building_id("9990000951", b, sizeof b);
    assert_string_equal(b, "building:9990000951");
    kd_kone_building_id("building:9990000951", b, sizeof b);
    assert_string_equal(b, "building:9990000951");
    /* short buffers cut the id, terminated, never past len */
    kd_kone_building_id("9990000951", b, 12);
    assert_string_equal(b, "building:99");
    memset(b, 'x', sizeof b);
    kd_kone_building_id("9990000951", b, 6);
    assert_string_equal(b, "build");
    assert_int_equal(b[6], 'x');
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
    snprintf(j.building_id, sizeof j.building_id, "4242"); /* no prefix */
    snprintf(j.group_id, sizeof j.group_id, "2");
    j.area = 1000;
    j.action = 2001;
    j.priority = KD_PRIO_LOW;
    kd_err err = {0};
    char *s = kd_kone_msg_job(&j, 7, T0_US, &err);
    assert_json(
        s,
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
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(o, "payload"), "media_id")), "a\"b\\c");
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
    assert_json(s, "{\"type\":\"lift-call-api-v2\",\"buildingId\":\"building:9990000951\","
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
    s = kd_kone_msg_common("ping", "", NULL, 8, &err); /* no building known yet */
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
    char *s = kd_kone_msg_monitor("building:9990000951", "1", 21, "kd-24387", 300, topics, 1, &err);
    assert_json(s, "{\"type\":\"site-monitoring\",\"buildingId\":\"building:9990000951\","
                   "\"callType\":\"monitor\",\"groupId\":\"1\",\"requestId\":\"21\","
                   "\"payload\":{\"sub\":\"kd-24387\",\"duration\":300,"
                   "\"subtopics\":[\"call_state/24387/+\"]}}");
    free(s);
}

/* ------------------------------------------------------------------ byte identity
 *
 * The builders write JSON text directly (worker/kone_jw.c) instead of dumping a jansson
 * tree. The references below build that tree with jansson, as the builders once did, and
 * dump it with JSON_COMPACT (insertion order kept): the text must be the same, byte for
 * byte, so nothing KONE (or the simulator, or a capture) sees changes. */

static void set(json_t *o, const char *key, json_t *v)
{
    assert_non_null(v);
    assert_int_equal(json_object_set_new(o, key, v), 0);
}

static json_t *ref_envelope(const char *type, const char *call_type, const char *building,
                            const char *group)
{
    json_t *o = json_object();
    assert_non_null(o);
    set(o, "type", json_string(type));
    if (building && *building) {
        char b[KD_JOB_BUILDING_MAX + 16];
        kd_kone_building_id(building, b, sizeof b);
        set(o, "buildingId", json_string(b));
    }
    set(o, "callType", json_string(call_type));
    set(o, "groupId", json_string(group && *group ? group : "1"));
    return o;
}

static char *ref_dump(json_t *root)
{
    char *s = json_dumps(root, JSON_COMPACT);
    assert_non_null(s);
    json_decref(root);
    return s;
}

static char *ref_id(int64_t id, char *buf, size_t len)
{
    snprintf(buf, len, "%" PRId64, id);
    return buf;
}

/* The request's time as strftime writes it (kd_kone_iso8601 keeps the minute's digits per
 * thread and writes the rest itself: this is the reference it is held to). */
static void ref_time(int64_t us, char *buf, size_t len)
{
    if (us < 0)
        us = 0;
    time_t s = (time_t)(us / 1000000);
    struct tm tm;
    assert_non_null(gmtime_r(&s, &tm));
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03dZ", base, (int)((us % 1000000) / 1000));
}

static char *ref_job(const kd_job *job, int64_t request_id, int64_t now_us)
{
    const char *ct = job->op == KD_OP_CALL        ? "action"
                     : job->op == KD_OP_HOLD_OPEN ? "hold_open"
                                                  : "delete";
    json_t *root = ref_envelope("lift-call-api-v2", ct, job->building_id, job->group_id);
    json_t *p = json_object();
    set(root, "payload", p);
    set(p, "request_id", json_integer(request_id));
    char when[40];
    ref_time(now_us, when, sizeof when);
    if (job->op == KD_OP_CALL) {
        set(p, "area", json_integer(job->area));
        set(p, "time", json_string(when));
        if (job->has_terminal)
            set(p, "terminal", json_integer(job->terminal));
        if (job->media_id[0])
            set(p, "media_id", json_string(job->media_id));
        if (job->media_cc[0])
            set(p, "media_cc", json_string(job->media_cc));
        if (job->media_type[0])
            set(p, "media_type", json_string(job->media_type));
        json_t *call = json_object();
        set(p, "call", call);
        set(call, "action", json_integer(job->action));
        if (job->has_destination)
            set(call, "destination", json_integer(job->destination));
        if (job->has_delay)
            set(call, "delay", json_integer(job->delay));
        if (job->has_group_size)
            set(call, "group_size", json_integer(job->group_size));
        if (job->language[0])
            set(call, "language", json_string(job->language));
        if (job->priority != KD_PRIO_UNSET)
            set(call, "call_replacement_priority",
                json_string(job->priority == KD_PRIO_HIGH ? "HIGH" : "LOW"));
        if (job->n_allowed_lifts > 0) {
            json_t *a = json_array();
            set(call, "allowed_lifts", a);
            for (size_t i = 0; i < job->n_allowed_lifts; i++)
                assert_int_equal(json_array_append_new(a, json_integer(job->allowed_lifts[i])), 0);
        }
    } else if (job->op == KD_OP_HOLD_OPEN) {
        set(p, "time", json_string(when));
        set(p, "lift_deck", json_integer(job->lift_deck));
        set(p, "served_area", json_integer(job->served_area));
        if (job->has_hard_time)
            set(p, "hard_time", json_integer(job->hard_time));
        if (job->has_soft_time)
            set(p, "soft_time", json_integer(job->soft_time));
    } else {
        set(p, "session_id", json_integer(job->session_id));
    }
    return ref_dump(root);
}

static char *ref_resume(int64_t request_id, const char *session_id, bool numeric, int resend)
{
    char id[24];
    json_t *root = json_object();
    set(root, "type", json_string("resume-session"));
    set(root, "requestId", json_string(ref_id(request_id, id, sizeof id)));
    char *end;
    long long n = strtoll(session_id, &end, 10);
    set(root, "sessionId",
        numeric && *end == '\0' && end != session_id ? json_integer(n) : json_string(session_id));
    if (resend > 0)
        set(root, "resendLatestStateUpToSeconds", json_integer(resend));
    return ref_dump(root);
}

static char *ref_common(const char *call_type, const char *building, const char *group,
                        int64_t request_id)
{
    json_t *root = ref_envelope("common-api", call_type, building, group);
    if (strcmp(call_type, "ping") == 0) {
        json_t *p = json_object();
        set(root, "payload", p);
        set(p, "request_id", json_integer(request_id));
    } else {
        char id[24];
        set(root, "requestId", json_string(ref_id(request_id, id, sizeof id)));
    }
    return ref_dump(root);
}

static char *ref_monitor(const char *building, const char *group, int64_t request_id,
                         const char *sub, int duration, const char *const *topics, size_t n)
{
    json_t *root = ref_envelope("site-monitoring", "monitor", building, group);
    char id[24];
    set(root, "requestId", json_string(ref_id(request_id, id, sizeof id)));
    json_t *p = json_object();
    set(root, "payload", p);
    set(p, "sub", json_string(sub));
    set(p, "duration", json_integer(duration));
    json_t *a = json_array();
    set(p, "subtopics", a);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(json_array_append_new(a, json_string(topics[i])), 0);
    return ref_dump(root);
}

/* Frees both texts after checking they are the same bytes. */
static void assert_same_text(char *got, char *want, const char *what)
{
    assert_non_null(got);
    assert_non_null(want);
    if (strcmp(got, want) != 0)
        fail_msg("%s:\n  got  %s\n  want %s", what, got, want);
    free(got);
    free(want);
}

static void assert_job_identical(const kd_job *j, int64_t rid, int64_t now_us)
{
    kd_err err = {0};
    char what[64];
    snprintf(what, sizeof what, "job op %d request %" PRId64, (int)j->op, rid);
    assert_same_text(kd_kone_msg_job(j, rid, now_us, &err), ref_job(j, rid, now_us), what);
}

/* Every combination of a call's optional fields: terminal, media_id/cc/type, destination,
 * delay, group_size, language, priority (unset/LOW/HIGH), allowed_lifts (none/one/many). */
static void test_identity_call_fields(void **state)
{
    (void)state;
    for (unsigned m = 0; m < (1u << 12); m++) {
        kd_job j;
        base_job(&j, KD_OP_CALL);
        j.area = 3000;
        j.action = m % 7 == 0 ? 2001 : 2;
        if (m & 1u) {
            j.has_terminal = true;
            j.terminal = 1;
        }
        if (m & 2u)
            snprintf(j.media_id, sizeof j.media_id, "0123345abcd");
        if (m & 4u)
            snprintf(j.media_cc, sizeof j.media_cc, "0123");
        if (m & 8u)
            snprintf(j.media_type, sizeof j.media_type, "RFID");
        if (m & 16u) {
            j.has_destination = true;
            j.destination = 5000;
        }
        if (m & 32u) {
            j.has_delay = true;
            j.delay = (m & 64u) ? 30 : 0;
        }
        if (m & 128u) {
            j.has_group_size = true;
            j.group_size = 100;
        }
        if (m & 256u)
            snprintf(j.language, sizeof j.language, "en-GB");
        j.priority = (kd_priority)((m >> 9) % 3); /* bits 9-10: unset, LOW, HIGH */
        if (m & 2048u) {
            j.n_allowed_lifts = (m & 1u) ? 1 : KD_JOB_ALLOWED_LIFTS_MAX;
            for (size_t i = 0; i < j.n_allowed_lifts; i++)
                j.allowed_lifts[i] = 1001010 + (int64_t)i * 100;
        }
        assert_job_identical(&j, 252390420 + m, T0_US + m * 1000LL);
    }
}

/* Extremes of the numbers, building ids with and without prefix, odd groups and times. */
static void test_identity_call_edges(void **state)
{
    (void)state;
    kd_job j;
    base_job(&j, KD_OP_CALL);
    j.area = INT64_MIN;
    j.action = INT64_MAX;
    j.has_destination = true;
    j.destination = -1;
    j.has_terminal = true;
    j.terminal = 0;
    assert_job_identical(&j, INT64_MAX, 0);
    assert_job_identical(&j, INT64_MIN, -5);
    assert_job_identical(&j, 0, 4102444800000000LL); /* 2100-01-01 */
    snprintf(j.building_id, sizeof j.building_id, "4242");
    j.group_id[0] = '\0';
    assert_job_identical(&j, 1, T0_US);
    memset(j.building_id, 'b', KD_JOB_BUILDING_MAX); /* the longest id a job carries */
    j.building_id[KD_JOB_BUILDING_MAX] = '\0';
    memset(j.group_id, 'g', KD_JOB_GROUP_MAX);
    j.group_id[KD_JOB_GROUP_MAX] = '\0';
    memset(j.media_id, 'm', KD_JOB_MEDIA_ID_MAX);
    j.media_id[KD_JOB_MEDIA_ID_MAX] = '\0';
    assert_job_identical(&j, 2, T0_US);
    j.building_id[0] = '\0'; /* no building: key left out */
    assert_job_identical(&j, 3, T0_US);
}

/* xorshift64*: the same jobs on every run. */
static uint64_t rnd(uint64_t *x)
{
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 2685821657736338717ULL;
}

/* An integer of 1 to 19 digits, either sign, or an edge (0, the extremes). */
static int64_t rnd_int(uint64_t *x)
{
    uint64_t r = rnd(x);
    switch (r % 16) {
    case 0: return 0;
    case 1: return INT64_MAX;
    case 2: return INT64_MIN;
    default: break;
    }
    uint64_t mod = 1;
    for (unsigned d = (unsigned)(r >> 8) % 19 + 1; d > 0; d--)
        mod *= 10;
    int64_t v = (int64_t)(rnd(x) % mod);
    return (r >> 4) & 1 ? -v : v;
}

/* Many jobs of every op with random numbers, strings (escapes and UTF-8 among them) and
 * times that cross seconds, minutes, days and years, in an order that makes the time's
 * per-thread minute go back and forth: each the same bytes as jansson's. */
static void test_identity_random_jobs(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "",          "1",        "en-GB",       "RFID",        "a\"b\\c",
        "tab\there", "\x01\x1f", "caf\xc3\xa9", "building:42", "</script>"};
    const size_t nt = sizeof texts / sizeof texts[0];
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 20000; i++) {
        kd_job j;
        base_job(&j, (kd_op)(KD_OP_CALL + (int)(rnd(&x) % 3)));
        assert_true(j.op == KD_OP_CALL || j.op == KD_OP_HOLD_OPEN || j.op == KD_OP_CANCEL);
        uint64_t f = rnd(&x);
        if (f & 1u)
            snprintf(j.building_id, sizeof j.building_id, "%s%" PRIu64, (f & 2u) ? "building:" : "",
                     (uint64_t)(rnd(&x) % 100000000000ULL));
        if (f & 4u)
            kd_str_copy(j.group_id, sizeof j.group_id, texts[rnd(&x) % nt]);
        j.area = rnd_int(&x);
        j.action = rnd_int(&x);
        j.has_destination = f & 8u;
        j.destination = rnd_int(&x);
        j.has_terminal = f & 16u;
        j.terminal = rnd_int(&x);
        j.has_delay = f & 32u;
        j.delay = rnd_int(&x);
        j.has_group_size = f & 64u;
        j.group_size = rnd_int(&x);
        j.priority = (kd_priority)((f >> 7) % 3);
        j.n_allowed_lifts = (f >> 9) % (KD_JOB_ALLOWED_LIFTS_MAX + 1);
        for (size_t k = 0; k < j.n_allowed_lifts; k++)
            j.allowed_lifts[k] = rnd_int(&x);
        kd_str_copy(j.language, sizeof j.language, texts[(f >> 14) % nt]);
        kd_str_copy(j.media_id, sizeof j.media_id, texts[(f >> 18) % nt]);
        kd_str_copy(j.media_cc, sizeof j.media_cc, texts[(f >> 22) % nt]);
        kd_str_copy(j.media_type, sizeof j.media_type, texts[(f >> 26) % nt]);
        j.lift_deck = rnd_int(&x);
        j.served_area = rnd_int(&x);
        j.has_hard_time = f & (1ull << 30);
        j.hard_time = rnd_int(&x);
        j.has_soft_time = f & (1ull << 31);
        j.soft_time = rnd_int(&x);
        j.session_id = rnd_int(&x);
        /* now: near T0 (same minute, the next, the one before), any time to 9999, or before 1970 */
        int64_t now;
        switch ((f >> 32) % 5) {
        case 0: now = T0_US + (int64_t)(rnd(&x) % 1000000); break;
        case 1: now = T0_US + 60000000 + (int64_t)(rnd(&x) % 120000000); break;
        case 2: now = T0_US - (int64_t)(rnd(&x) % 120000000); break;
        case 3: now = (int64_t)(rnd(&x) % 253402300800000000ULL); break;
        default: now = -(int64_t)(rnd(&x) % 1000000000); break;
        }
        assert_job_identical(&j, rnd_int(&x), now);
    }
}

/* The time alone against strftime's, second by second across a minute, an hour, a day and a
 * year's end, then at random: the minute kept per thread never leaks into another minute. */
static void test_iso8601_against_strftime(void **state)
{
    (void)state;
    const int64_t starts[] = {T0_US, 1609459170000000LL /* 2020-12-31T23:59:30Z */, 0};
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++)
        for (int64_t us = starts[i]; us < starts[i] + 120 * 1000000LL; us += 999999) {
            char got[40], want[40];
            kd_kone_iso8601(us, got, sizeof got);
            ref_time(us, want, sizeof want);
            assert_string_equal(got, want);
        }
    uint64_t x = 42;
    for (int i = 0; i < 20000; i++) {
        int64_t us = (int64_t)(rnd(&x) % 253402300800000000ULL);
        char got[40], want[40];
        kd_kone_iso8601(us, got, sizeof got);
        ref_time(us, want, sizeof want);
        assert_string_equal(got, want);
    }
}

static void test_identity_hold_open_cancel(void **state)
{
    (void)state;
    kd_job j;
    base_job(&j, KD_OP_HOLD_OPEN);
    j.lift_deck = 1001010;
    j.served_area = 5000;
    for (int m = 0; m < 4; m++) {
        j.has_hard_time = m & 1;
        j.hard_time = 10;
        j.has_soft_time = m & 2;
        j.soft_time = 0;
        assert_job_identical(&j, 11 + m, T0_US);
    }
    base_job(&j, KD_OP_CANCEL);
    j.session_id = 24387;
    assert_job_identical(&j, 13, T0_US);
    j.session_id = INT64_MAX;
    snprintf(j.building_id, sizeof j.building_id, "9990000951");
    assert_job_identical(&j, -13, T0_US);
}

static void test_identity_sessions(void **state)
{
    (void)state;
    kd_err err = {0};
    const int64_t ids[] = {0, 1, 252390420, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        char id[24];
        json_t *root = json_object();
        set(root, "type", json_string("create-session"));
        set(root, "requestId", json_string(ref_id(ids[i], id, sizeof id)));
        assert_same_text(kd_kone_msg_create_session(ids[i], &err), ref_dump(root),
                         "create-session");
    }
    static const struct {
        const char *sid;
        bool numeric;
        int resend;
    } rs[] = {
        {"55bf5b37-e0b8", false, 30},
        {"55bf5b37-e0b8", true, 0},
        {"1234", true, 0},
        {"1234", false, 0},
        {"-77", true, 60},
        {"12a", true, 1},
        {"", true, 0},
        {"", false, -1},
        {"9223372036854775807", true, 0},
        {"a\"b\\c\n", false, 5},
    };
    for (size_t i = 0; i < sizeof rs / sizeof rs[0]; i++)
        assert_same_text(
            kd_kone_msg_resume_session((int64_t)i, rs[i].sid, rs[i].numeric, rs[i].resend, &err),
            ref_resume((int64_t)i, rs[i].sid, rs[i].numeric, rs[i].resend), rs[i].sid);
}

static void test_identity_common(void **state)
{
    (void)state;
    kd_err err = {0};
    const char *types[] = {"ping", "config", "actions"};
    const char *buildings[] = {NULL, "", "1", "building:9990000951"};
    const char *groups[] = {NULL, "", "1", "3"};
    for (size_t t = 0; t < 3; t++)
        for (size_t b = 0; b < 4; b++)
            for (size_t g = 0; g < 4; g++) {
                int64_t rid = (int64_t)(t * 16 + b * 4 + g);
                assert_same_text(kd_kone_msg_common(types[t], buildings[b], groups[g], rid, &err),
                                 ref_common(types[t], buildings[b], groups[g], rid), types[t]);
            }
    assert_same_text(kd_kone_msg_common("ping", "1", "1", INT64_MIN, &err),
                     ref_common("ping", "1", "1", INT64_MIN), "ping min");
}

static void test_identity_monitor(void **state)
{
    (void)state;
    kd_err err = {0};
    const char *topics[] = {"call_state/24387/+", "lift_1/doors", "lift_1/position",
                            "deck_1/\"odd\\topic\"", "call_state/+/served"};
    for (size_t n = 0; n <= 5; n++)
        assert_same_text(
            kd_kone_msg_monitor("building:9990000951", "1", (int64_t)(21 + n), "kd-24387", 300,
                                topics, n, &err),
            ref_monitor("building:9990000951", "1", (int64_t)(21 + n), "kd-24387", 300, topics, n),
            "monitor");
    assert_same_text(kd_kone_msg_monitor("9990000951", NULL, -1, "", 0, NULL, 0, &err),
                     ref_monitor("9990000951", NULL, -1, "", 0, NULL, 0), "monitor empty");
    assert_same_text(kd_kone_msg_monitor("", "2", 5, "s\x01", -300, topics, 3, &err),
                     ref_monitor("", "2", 5, "s\x01", -300, topics, 3), "monitor odd");
}

/* Strings a job may carry that need escaping (and a UTF-8 one that must not be): the same
 * bytes as jansson writes, and they decode back to what went in. */
static void test_identity_escapes(void **state)
{
    (void)state;
    static const char *texts[] = {
        "a\"b\\c",                      /* quote and backslash */
        "\n\r\t\b\f",                   /* the named escapes */
        "\x01\x02\x1f\x7f/x",           /* \u00XX, DEL and '/' as they are */
        "fi-\xc3\x84\xc3\x96",          /* fi-ÄÖ: UTF-8 passes through */
        "\xe2\x82\xac\xf0\x9f\x9b\x97", /* a 3- and a 4-byte sequence */
        "\"",                           /* nothing but a quote */
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        kd_job j;
        base_job(&j, KD_OP_CALL);
        snprintf(j.media_id, sizeof j.media_id, "%s", texts[i]);
        snprintf(j.media_type, sizeof j.media_type, "%s", texts[i]);
        snprintf(j.language, sizeof j.language, "%s", texts[i]);
        snprintf(j.group_id, sizeof j.group_id, "%s", texts[i]);
        kd_err err = {0};
        char *s = kd_kone_msg_job(&j, 1, T0_US, &err);
        assert_non_null(s);
        json_error_t e;
        json_t *o = json_loads(s, 0, &e);
        if (!o)
            fail_msg("not JSON (%s): %s", e.text, s);
        json_t *p = json_object_get(o, "payload");
        assert_string_equal(json_string_value(json_object_get(p, "media_id")), texts[i]);
        assert_string_equal(json_string_value(json_object_get(p, "media_type")), texts[i]);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(p, "call"), "language")), texts[i]);
        assert_string_equal(json_string_value(json_object_get(o, "groupId")), texts[i]);
        json_decref(o);
        assert_same_text(s, ref_job(&j, 1, T0_US), texts[i]);
    }
}

/* The documented failure: a NULL string is reported like a failed allocation was. */
static void test_null_strings(void **state)
{
    (void)state;
    kd_err err = {0};
    const char *topics[] = {"a", NULL};
    assert_null(kd_kone_msg_monitor("1", "1", 1, "s", 1, topics, 2, &err));
    assert_int_equal(err.code, KD_ERR_NOMEM);
    err = (kd_err){0};
    assert_null(kd_kone_msg_monitor("1", "1", 1, NULL, 1, topics, 1, &err));
    assert_int_equal(err.code, KD_ERR_NOMEM);
    err = (kd_err){0};
    assert_null(kd_kone_msg_resume_session(1, NULL, false, 0, &err));
    assert_int_equal(err.code, KD_ERR_NOMEM);
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

/* KONE's answers carry "type":"ok"/"error" (its example client keys on it; kone-sim sends
 * it too). The parser keys on statusCode: the type neither hides an answer nor changes its
 * status, and an answer whose type disagrees with its status is judged by the status. */
static void test_parse_answer_with_type(void **state)
{
    (void)state;
    kd_kone_msg m =
        parse_ok("{\"type\":\"ok\",\"statusCode\":201,\"connectionId\":\"c1\","
                 "\"requestId\":252390420,\"data\":{\"time\":\"2022-03-28T08:17:09Z\"}}");
    assert_int_equal(m.kind, KD_KONE_MSG_ANSWER);
    assert_int_equal(m.status, 201);
    assert_int_equal(m.request_id, 252390420);

    m = parse_ok("{\"type\":\"error\",\"statusCode\":409,\"connectionId\":\"c1\","
                 "\"requestId\":7,\"message\":\"Request id already used in this connection\"}");
    assert_int_equal(m.kind, KD_KONE_MSG_ANSWER);
    assert_int_equal(m.status, 409);
    assert_int_equal(m.request_id, 7);
    assert_string_equal(m.message, "Request id already used in this connection");
    assert_int_equal(kd_kone_status_classify(m.status), KD_KONE_ST_REJECTED);

    /* a failed ping: type error, status 500, data with the link-down error */
    m = parse_ok("{\"type\":\"error\",\"statusCode\":500,\"connectionId\":\"c1\","
                 "\"requestId\":9,\"message\":\"Ping failed: site link down (error 1005)\","
                 "\"data\":{\"request_id\":9,\"error\":1005}}");
    assert_int_equal(m.kind, KD_KONE_MSG_ANSWER);
    assert_int_equal(m.status, 500);
    assert_int_equal(m.request_id, 9);

    /* the status decides, whatever the type says */
    m = parse_ok("{\"type\":\"error\",\"statusCode\":201,\"requestId\":3}");
    assert_int_equal(m.kind, KD_KONE_MSG_ANSWER);
    assert_int_equal(kd_kone_status_classify(m.status), KD_KONE_ST_OK);
    /* a type "ok" without a statusCode is no answer */
    m = parse_ok("{\"type\":\"ok\",\"requestId\":3}");
    assert_int_equal(m.kind, KD_KONE_MSG_UNKNOWN);
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

    /* the deck as one number, not an array */
    m = parse_ok("{\"subtopic\":\"call_state/8/being_served\",\"data\":{\"time\":\"t\","
                 "\"allocated_lift_deck\":1001020}}");
    assert_int_equal(m.ev.n_decks, 1);
    assert_int_equal(m.ev.allocated_lift_deck[0], 1001020);

    /* wildcard topic: state from data */
    m = parse_ok("{\"subtopic\":\"call_state/6/+\",\"data\":{\"state\":\"served\","
                 "\"modified_destination\":15010,\"modified_reason\":\"AutomaticTransfer\","
                 "\"allocated_lift_deck\":[1,2,3,4,5,6,7,8,9,10]}}");
    assert_int_equal(m.ev.session_id, 6);
    assert_string_equal(m.ev.state, "served");
    assert_true(m.ev.has_modified_destination);
    assert_int_equal(m.ev.modified_destination, 15010);
    assert_string_equal(m.ev.modified_reason, "AutomaticTransfer");
    assert_int_equal(m.ev.n_decks, KD_EVENT_MAX_DECKS); /* capped, not overflowed */

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
    m = parse_ok("{\"statusCode\":\"abc\"}"); /* not a status: not an answer */
    assert_int_equal(m.kind, KD_KONE_MSG_UNKNOWN);
    m = parse_ok("{\"data\":\"text\"}");
    assert_int_equal(m.kind, KD_KONE_MSG_UNKNOWN);
}

static void test_parse_malformed(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "not json",
                         "[1,2]",
                         "{",
                         "null",
                         "\"str\"",
                         "42",
                         "{\"statusCode\":201,",
                         "{\"a\":1}garbage"};
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
    kd_kone_msg_parse(huge, strlen(huge), &m, NULL); /* jansson refuses it: malformed */
    assert_true(m.kind == KD_KONE_MSG_MALFORMED || m.kind == KD_KONE_MSG_UNKNOWN);
    m = parse_ok("{\"statusCode\":201,\"requestId\":1e300}"); /* a real, not an id */
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
        {"Ignoring call, unable to resolve area: area:1005", KD_OUTCOME_REJECTED, "ignored_call"},
        {"INVALID_DIRECTION", KD_OUTCOME_REJECTED, "INVALID_DIRECTION"},
        {"Invalid json payload", KD_OUTCOME_REJECTED, "invalid_payload"},
        {"SAME_SOURCE_AND_DEST_FLOOR", KD_OUTCOME_REJECTED, "SAME_SOURCE_AND_DEST_FLOOR"},
        {"floor locked", KD_OUTCOME_REJECTED, "call_refused"},
        {"", KD_OUTCOME_REJECTED, "call_refused"},
        {"1005", KD_OUTCOME_FAILED, "1005"},
        {"Error 1005: site link down", KD_OUTCOME_FAILED, "1005"},
        {"  1005", KD_OUTCOME_FAILED, "1005"}, /* leading blanks */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char code[48];
        kd_outcome o = kd_kone_call_error_outcome(cases[i].text, code, sizeof code);
        if (o != cases[i].outcome || strcmp(code, cases[i].code) != 0)
            fail_msg("'%s' -> %d %s, expected %d %s", cases[i].text, o, code, cases[i].outcome,
                     cases[i].code);
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

/* The kind names the client's debug log gives a frame it ignored ("ignored a %s frame"). */
static void test_kind_names(void **state)
{
    (void)state;
    const char *want[] = {"malformed",  "unknown", "answer",     "call_result",
                          "call_state", "event",   "lift_status"};
    for (int k = KD_KONE_MSG_MALFORMED; k <= KD_KONE_MSG_LIFT_STATUS; k++)
        assert_string_equal(kd_kone_msg_kind_name((kd_kone_msg_kind)k), want[k]);
    assert_string_equal(kd_kone_msg_kind_name((kd_kone_msg_kind)42), "?");
    kd_kone_msg m;
    kd_err err = {0};
    const char *frame = "{\"type\":\"ok\",\"statusCode\":201,\"requestId\":7}";
    assert_int_equal(kd_kone_msg_parse(frame, strlen(frame), &m, &err), 0);
    assert_string_equal(kd_kone_msg_kind_name(m.kind), "answer");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iso8601),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_building_id),
        cmocka_unit_test(test_url_escape),
        cmocka_unit_test(test_read_asks_call_states),
        cmocka_unit_test(test_call_destination_full),
        cmocka_unit_test(test_call_landing_minimal),
        cmocka_unit_test(test_call_escapes_strings),
        cmocka_unit_test(test_hold_open),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_bad_op),
        cmocka_unit_test(test_sessions),
        cmocka_unit_test(test_common),
        cmocka_unit_test(test_monitor),
        cmocka_unit_test(test_identity_call_fields),
        cmocka_unit_test(test_identity_call_edges),
        cmocka_unit_test(test_identity_random_jobs),
        cmocka_unit_test(test_iso8601_against_strftime),
        cmocka_unit_test(test_identity_hold_open_cancel),
        cmocka_unit_test(test_identity_sessions),
        cmocka_unit_test(test_identity_common),
        cmocka_unit_test(test_identity_monitor),
        cmocka_unit_test(test_identity_escapes),
        cmocka_unit_test(test_null_strings),
        cmocka_unit_test(test_parse_answer),
        cmocka_unit_test(test_parse_answer_with_type),
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
