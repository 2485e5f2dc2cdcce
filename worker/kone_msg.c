/* kone_msg.c: KONE API 2.0 frames built from jobs and parsed from the wire (see kone_msg.h).
 *
 * Why a JSON writer (kone_jw) rather than printf: every string that reaches a frame
 * (building ids, languages, media ids from upstream jobs) is escaped by it, so no job can
 * inject JSON; and rather than jansson trees, because building and dumping a tree cost one
 * malloc per node on every request (the profile's hot spot). Incoming frames are read through
 * a flat view (kone_jview.h) that a scanner fills without allocating; jansson reads only the
 * frames the scanner leaves to it (escapes, non-ASCII text, reals, errors), into the same view,
 * so one classifier serves both. Why a permissive parser: KONE's published shapes and its live
 * frames differ in details (request ids as numbers or strings, event fields flat or under "decks");
 * the worker must classify every frame it can and drop the rest without harm.
 */
#include "kone_msg.h"
#include "kone_jview.h"
#include "kone_jw.h"

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kd_str.h"

/* ------------------------------------------------------------------ helpers */

void kd_kone_url_escape(const char *in, char *out, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < len; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
}

/* s[0..n) into buf as a string, cut to len - 1 bytes: snprintf(buf, len, "%.*s", n, s)
 * without the format parsing, which cost more than the rest of a frame's reading. */
static void copy_text(char *buf, size_t len, const char *s, size_t n)
{
    if (!len)
        return;
    if (n >= len)
        n = len - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
}

/* n digits of v, zero-padded, at p. */
static char *put_digits(char *p, int v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
    return p + n;
}

/* The time of a request is "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 bytes). Its first 17, up to the
 * minute, are the same for every request of a minute: gmtime_r and those digits were most of
 * the time's cost, so the last minute's are kept per thread (a cache, not state: the text is
 * the same with or without it). */
#define ISO_TIME_LEN 24
#define ISO_MINUTE_LEN 17
static _Thread_local int64_t iso_minute = -1; /* minutes since the epoch of iso_prefix */
static _Thread_local char iso_prefix[ISO_MINUTE_LEN];

/* The time at out (ISO_TIME_LEN bytes, no NUL); false, nothing written, for a year that is
 * not 4 digits (kd_kone_iso8601 writes those with strftime). */
static bool iso8601_put(int64_t us, char *out)
{
    if (us < 0)
        us = 0;
    int64_t s = us / 1000000, minute = s / 60;
    int sec = (int)(s % 60), ms = (int)((us % 1000000) / 1000);
    if (minute != iso_minute) {
        time_t t = (time_t)s;
        struct tm tm;
        gmtime_r(&t, &tm);
        if (tm.tm_year + 1900 < 1000 || tm.tm_year + 1900 > 9999)
            return false;
        char *p = iso_prefix;
        p = put_digits(p, tm.tm_year + 1900, 4);
        *p++ = '-';
        p = put_digits(p, tm.tm_mon + 1, 2);
        *p++ = '-';
        p = put_digits(p, tm.tm_mday, 2);
        *p++ = 'T';
        p = put_digits(p, tm.tm_hour, 2);
        *p++ = ':';
        p = put_digits(p, tm.tm_min, 2);
        *p = ':';
        iso_minute = minute;
    }
    memcpy(out, iso_prefix, ISO_MINUTE_LEN);
    char *p = put_digits(out + ISO_MINUTE_LEN, sec, 2);
    *p++ = '.';
    p = put_digits(p, ms, 3);
    *p = 'Z';
    return true;
}

void kd_kone_iso8601(int64_t us, char *buf, size_t len)
{
    char t[ISO_TIME_LEN];
    if (iso8601_put(us, t)) {
        copy_text(buf, len, t, sizeof t);
        return;
    }
    time_t s = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03dZ", base, (int)((us % 1000000) / 1000));
}

void kd_kone_building_id(const char *building, char *buf, size_t len)
{
    size_t n = strlen(building);
    if (strncmp(building, "building:", 9) == 0) {
        copy_text(buf, len, building, n);
    } else if (len > 9) {
        copy_text(buf, len, "building:", 9); /* terminated; the id goes after it */
        copy_text(buf + 9, len - 9, building, n);
    } else {
        copy_text(buf, len, "building:", 9);
    }
}

/* The frame's text, or NULL with err set: the writer's only failure is memory (a NULL
 * string given to it counts as one, as json_string(NULL) did). */
static char *finish(kd_jw *w, kd_err *err)
{
    char *s = kd_jw_finish(w);
    if (!s)
        kd_err_set(err, KD_ERR_NOMEM, "out of memory building a KONE frame");
    return s;
}

static char *id_text(int64_t id, char *buf, size_t len)
{
    char t[KD_JW_INT_TEXT];
    copy_text(buf, len, t, kd_jw_int_text(t, id));
    return buf;
}

/* Opens the root object with the common envelope of lift-call-api-v2, common-api and
 * site-monitoring; the caller adds its members and closes it. */
static void envelope(kd_jw *w, const char *type, const char *call_type, const char *building,
                     const char *group)
{
    kd_jw_obj_begin(w);
    kd_jw_kstr(w, "type", type);
    if (building && *building) {
        char b[KD_JOB_BUILDING_MAX + 16];
        kd_kone_building_id(building, b, sizeof b);
        kd_jw_kstr(w, "buildingId", b);
    }
    kd_jw_kstr(w, "callType", call_type);
    kd_jw_kstr(w, "groupId", group && *group ? group : "1");
}

/* ------------------------------------------------------------------ builders */

/* A call frame is about 300 bytes; only one with many allowed_lifts grows the buffer. */
#define FRAME_HINT 512

/* ---- the request of a job: written with the keys, quotes and commas as literals (its shape
 * is fixed; each member through the writer's general calls cost about 5k instructions a job,
 * issue 17). The bytes are those of the structured writer, which the other builders use
 * (tests/unit/test_worker_kone_msg.c compares both with jansson's, over many jobs). */

/* ,"key":<v> */
#define KINT(w, key, v)                                                                            \
    do {                                                                                           \
        KD_JW_LIT(w, ",\"" key "\":");                                                             \
        kd_jw_num(w, v);                                                                           \
    } while (0)
/* ,"key":"<escaped s>" */
#define KSTR(w, key, s)                                                                            \
    do {                                                                                           \
        KD_JW_LIT(w, ",\"" key "\":\"");                                                           \
        kd_jw_esc(w, s);                                                                           \
        KD_JW_LIT(w, "\"");                                                                        \
    } while (0)

/* ,"time":"..." */
static void job_time(kd_jw *w, int64_t now_us)
{
    char t[40];
    if (iso8601_put(now_us, t)) {
        KD_JW_LIT(w, ",\"time\":\"");
        kd_jw_raw(w, t, ISO_TIME_LEN);
        KD_JW_LIT(w, "\"");
    } else {
        kd_kone_iso8601(now_us, t, sizeof t);
        KSTR(w, "time", t);
    }
}

static void call_object(kd_jw *w, const kd_job *job)
{
    KD_JW_LIT(w, ",\"call\":{\"action\":");
    kd_jw_num(w, job->action);
    if (job->has_destination)
        KINT(w, "destination", job->destination);
    if (job->has_delay)
        KINT(w, "delay", job->delay);
    if (job->has_group_size)
        KINT(w, "group_size", job->group_size);
    if (job->language[0])
        KSTR(w, "language", job->language);
    if (job->priority == KD_PRIO_HIGH)
        KD_JW_LIT(w, ",\"call_replacement_priority\":\"HIGH\"");
    else if (job->priority != KD_PRIO_UNSET)
        KD_JW_LIT(w, ",\"call_replacement_priority\":\"LOW\"");
    if (job->n_allowed_lifts > 0) {
        /* Plain ASCII key: the published YAML spells it with a soft hyphen by mistake. */
        KD_JW_LIT(w, ",\"allowed_lifts\":[");
        for (size_t i = 0; i < job->n_allowed_lifts && i < KD_JOB_ALLOWED_LIFTS_MAX; i++) {
            if (i)
                KD_JW_LIT(w, ",");
            kd_jw_num(w, job->allowed_lifts[i]);
        }
        KD_JW_LIT(w, "]");
    }
    KD_JW_LIT(w, "}");
}

char *kd_kone_msg_job(const kd_job *job, int64_t request_id, int64_t now_us, kd_err *err)
{
    kd_jw w;
    switch (job->op) {
    case KD_OP_CALL:
    case KD_OP_HOLD_OPEN:
    case KD_OP_CANCEL: break;
    default:
        kd_err_set(err, KD_ERR_INVALID, "job.op: %d cannot be sent to KONE", (int)job->op);
        return NULL;
    }
    kd_jw_init(&w, FRAME_HINT);
    /* the envelope (as envelope() writes it) */
    KD_JW_LIT(&w, "{\"type\":\"lift-call-api-v2\"");
    if (job->building_id[0]) {
        /* memcmp: the array holds more than 9 bytes, and a NUL among them differs anyway */
        if (memcmp(job->building_id, "building:", 9) == 0)
            KD_JW_LIT(&w, ",\"buildingId\":\"");
        else
            KD_JW_LIT(&w, ",\"buildingId\":\"building:");
        kd_jw_esc(&w, job->building_id);
        KD_JW_LIT(&w, "\"");
    }
    switch (job->op) {
    case KD_OP_CALL: KD_JW_LIT(&w, ",\"callType\":\"action\""); break;
    case KD_OP_HOLD_OPEN: KD_JW_LIT(&w, ",\"callType\":\"hold_open\""); break;
    default: KD_JW_LIT(&w, ",\"callType\":\"delete\""); break;
    }
    KSTR(&w, "groupId", job->group_id[0] ? job->group_id : "1");
    KD_JW_LIT(&w, ",\"payload\":{\"request_id\":");
    kd_jw_num(&w, request_id);

    if (job->op == KD_OP_CALL) {
        KINT(&w, "area", job->area);
        job_time(&w, now_us);
        if (job->has_terminal)
            KINT(&w, "terminal", job->terminal);
        if (job->media_id[0])
            KSTR(&w, "media_id", job->media_id);
        if (job->media_cc[0])
            KSTR(&w, "media_cc", job->media_cc);
        if (job->media_type[0])
            KSTR(&w, "media_type", job->media_type);
        call_object(&w, job);
    } else if (job->op == KD_OP_HOLD_OPEN) {
        job_time(&w, now_us);
        KINT(&w, "lift_deck", job->lift_deck);
        KINT(&w, "served_area", job->served_area);
        if (job->has_hard_time)
            KINT(&w, "hard_time", job->hard_time);
        if (job->has_soft_time)
            KINT(&w, "soft_time", job->soft_time);
    } else {
        KINT(&w, "session_id", job->session_id);
    }
    KD_JW_LIT(&w, "}}"); /* payload, root */
    return finish(&w, err);
}

char *kd_kone_msg_create_session(int64_t request_id, kd_err *err)
{
    char id[24];
    kd_jw w;
    kd_jw_init(&w, 64);
    kd_jw_obj_begin(&w);
    kd_jw_kstr(&w, "type", "create-session");
    kd_jw_kstr(&w, "requestId", id_text(request_id, id, sizeof id));
    kd_jw_obj_end(&w);
    return finish(&w, err);
}

char *kd_kone_msg_resume_session(int64_t request_id, const char *session_id, bool session_numeric,
                                 int resend_s, kd_err *err)
{
    char id[24];
    kd_jw w;
    kd_jw_init(&w, 128 + (session_id ? strlen(session_id) : 0));
    kd_jw_obj_begin(&w);
    kd_jw_kstr(&w, "type", "resume-session");
    kd_jw_kstr(&w, "requestId", id_text(request_id, id, sizeof id));
    kd_jw_key(&w, "sessionId");
    char *end = NULL;
    bool numeric = session_numeric && session_id; /* a NULL id is written as null */
    long long n = numeric ? strtoll(session_id, &end, 10) : 0;
    if (numeric && *end == '\0' && end != session_id)
        kd_jw_int(&w, n);
    else
        kd_jw_str(&w, session_id);
    if (resend_s > 0)
        kd_jw_kint(&w, "resendLatestStateUpToSeconds", resend_s);
    kd_jw_obj_end(&w);
    return finish(&w, err);
}

char *kd_kone_msg_common(const char *call_type, const char *building, const char *group,
                         int64_t request_id, kd_err *err)
{
    if (strcmp(call_type, "ping") != 0 && strcmp(call_type, "config") != 0 &&
        strcmp(call_type, "actions") != 0) {
        kd_err_set(err, KD_ERR_INVALID, "common-api: unknown callType '%s'", call_type);
        return NULL;
    }
    kd_jw w;
    kd_jw_init(&w, FRAME_HINT);
    envelope(&w, "common-api", call_type, building, group);
    if (strcmp(call_type, "ping") == 0) {
        kd_jw_key(&w, "payload");
        kd_jw_obj_begin(&w);
        kd_jw_kint(&w, "request_id", request_id);
        kd_jw_obj_end(&w);
    } else {
        char id[24];
        kd_jw_kstr(&w, "requestId", id_text(request_id, id, sizeof id));
    }
    kd_jw_obj_end(&w);
    return finish(&w, err);
}

char *kd_kone_msg_monitor(const char *building, const char *group, int64_t request_id,
                          const char *sub, int duration_s, const char *const *subtopics,
                          size_t n_subtopics, kd_err *err)
{
    kd_jw w;
    kd_jw_init(&w, FRAME_HINT);
    envelope(&w, "site-monitoring", "monitor", building, group);
    char id[24];
    kd_jw_kstr(&w, "requestId", id_text(request_id, id, sizeof id));
    kd_jw_key(&w, "payload");
    kd_jw_obj_begin(&w);
    kd_jw_kstr(&w, "sub", sub);
    kd_jw_kint(&w, "duration", duration_s);
    kd_jw_key(&w, "subtopics");
    kd_jw_arr_begin(&w);
    for (size_t i = 0; i < n_subtopics; i++)
        kd_jw_str(&w, subtopics[i]);
    kd_jw_arr_end(&w);
    kd_jw_obj_end(&w); /* payload */
    kd_jw_obj_end(&w);
    return finish(&w, err);
}

/* ------------------------------------------------------------------ parsing */

const char *kd_kone_msg_kind_name(kd_kone_msg_kind k)
{
    switch (k) {
    case KD_KONE_MSG_MALFORMED: return "malformed";
    case KD_KONE_MSG_UNKNOWN: return "unknown";
    case KD_KONE_MSG_ANSWER: return "answer";
    case KD_KONE_MSG_CALL_RESULT: return "call_result";
    case KD_KONE_MSG_CALL_STATE: return "call_state";
    case KD_KONE_MSG_EVENT: return "event";
    case KD_KONE_MSG_LIFT_STATUS: return "lift_status";
    }
    return "?";
}

/* An integer from the text of a string: digits, with an optional leading '-', at most 19
 * characters (KONE sends some ids as strings). */
static bool text_int(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 19)
        return false;
    bool neg = s[0] == '-' && len > 1;
    uint64_t x = 0;
    for (size_t i = neg; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (uint64_t)(s[i] - '0'); /* 19 digits fit in 64 bits unsigned */
    }
    /* strtoll's answer, without its locale and NUL-terminated copy: beyond the range it
     * gives the nearest end */
    if (neg)
        *out = x > (uint64_t)INT64_MAX + 1 ? INT64_MIN : (int64_t)(0 - x);
    else
        *out = x > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)x;
    return true;
}

/* An integer from a JSON integer, an integral real, or a string of digits. */
static bool get_int(const kj_node *v, int64_t *out)
{
    if (!v)
        return false;
    switch (v->type) {
    case KJ_INT: *out = v->i; return true;
    case KJ_REAL:
        if (v->d >= -9.0e18 && v->d <= 9.0e18 && v->d == (double)(int64_t)v->d) {
            *out = (int64_t)v->d;
            return true;
        }
        return false;
    case KJ_STRING: return text_int(v->s, v->len, out);
    default: return false;
    }
}

/* Copies a string (or a number, as text) into buf; false if absent or another type. */
static bool get_text(const kj_node *v, char *buf, size_t len)
{
    if (v && v->type == KJ_STRING) {
        copy_text(buf, len, v->s, v->len < 65536 ? v->len : 65536);
        return true;
    }
    if (v && v->type == KJ_INT) {
        char t[KD_JW_INT_TEXT];
        copy_text(buf, len, t, kd_jw_int_text(t, v->i));
        return true;
    }
    return false;
}

static bool is_object(const kj_node *v)
{
    return v && v->type == KJ_OBJECT;
}

/* The members a frame's root may have that the worker reads, and those of its data (and of
 * data.decks' object, which the YAML draws for call states): found in one pass over each
 * object (pick) instead of one look-up per field, each the last of its name, as kj_get and
 * jansson take duplicates. */
enum { R_DATA, R_STATUS, R_TOPIC, R_TYPE, R_CTYPE, R_REQID, R_MESSAGE, R_BUILDING, R_GROUP, R_N };
enum {
    D_REQID,
    D_MESSAGE,
    D_ERROR,
    D_SESSIONID,
    D_SUCCESS,
    D_SESSION_ID,
    D_STATE,
    D_CALL_STATE,
    D_TIME,
    D_ETA,
    D_CANCEL_REASON,
    D_MOD_REASON,
    D_MOD_DEST,
    D_DECK,
    D_DECKS,
    D_LIFT_MODE,
    D_N
};

/* n bytes at k are the literal (a constant length: the compiler compares words, no call) */
#define KEY_IS(k, n, lit) ((n) == sizeof(lit) - 1 && memcmp((k), (lit), sizeof(lit) - 1) == 0)

static int root_key(const char *k, size_t n)
{
    switch (n) {
    case 4: return KEY_IS(k, n, "data") ? R_DATA : KEY_IS(k, n, "type") ? R_TYPE : -1;
    case 7: return KEY_IS(k, n, "message") ? R_MESSAGE : KEY_IS(k, n, "groupId") ? R_GROUP : -1;
    case 8: return KEY_IS(k, n, "subtopic") ? R_TOPIC : KEY_IS(k, n, "callType") ? R_CTYPE : -1;
    case 9: return KEY_IS(k, n, "requestId") ? R_REQID : -1;
    case 10:
        return KEY_IS(k, n, "statusCode") ? R_STATUS : KEY_IS(k, n, "buildingId") ? R_BUILDING : -1;
    default: return -1;
    }
}

static int data_key(const char *k, size_t n)
{
    switch (n) {
    case 3: return KEY_IS(k, n, "eta") ? D_ETA : -1;
    case 4: return KEY_IS(k, n, "time") ? D_TIME : -1;
    case 5:
        return KEY_IS(k, n, "state")   ? D_STATE
               : KEY_IS(k, n, "error") ? D_ERROR
               : KEY_IS(k, n, "decks") ? D_DECKS
                                       : -1;
    case 7: return KEY_IS(k, n, "success") ? D_SUCCESS : KEY_IS(k, n, "message") ? D_MESSAGE : -1;
    case 9:
        return KEY_IS(k, n, "sessionId")   ? D_SESSIONID
               : KEY_IS(k, n, "lift_mode") ? D_LIFT_MODE
                                           : -1;
    case 10:
        return KEY_IS(k, n, "session_id")   ? D_SESSION_ID
               : KEY_IS(k, n, "request_id") ? D_REQID
               : KEY_IS(k, n, "call_state") ? D_CALL_STATE
                                            : -1;
    case 13: return KEY_IS(k, n, "cancel_reason") ? D_CANCEL_REASON : -1;
    case 15: return KEY_IS(k, n, "modified_reason") ? D_MOD_REASON : -1;
    case 19: return KEY_IS(k, n, "allocated_lift_deck") ? D_DECK : -1;
    case 20: return KEY_IS(k, n, "modified_destination") ? D_MOD_DEST : -1;
    default: return -1;
    }
}

/* f[k] = obj's member named k by key_of (f zeroed by the caller: NULL for the absent ones);
 * nothing when obj is not an object. */
static inline void pick(const kj_view *j, const kj_node *obj, int (*key_of)(const char *, size_t),
                        const kj_node **f)
{
    if (!is_object(obj))
        return;
    for (int i = obj->child; i >= 0; i = j->n[i].next) {
        int k = key_of(j->n[i].key, j->n[i].key_len);
        if (k >= 0)
            f[k] = &j->n[i];
    }
}

typedef struct {
    const kj_node *r[R_N]; /* the root's */
    const kj_node *d[D_N]; /* data's, all NULL if data is not an object */
} kd_fields;

/* A call result's fields (data.success, data.session_id, data.error). */
static void result_fields(const kd_fields *f, kd_kone_msg *m)
{
    const kj_node *ok = f->d[D_SUCCESS];
    m->has_success = ok && (ok->type == KJ_TRUE || ok->type == KJ_FALSE);
    m->success = ok && ok->type == KJ_TRUE;
    int64_t sid = 0;
    if (get_int(f->d[D_SESSION_ID], &sid))
        m->call_session_id = sid;
    get_text(f->d[D_ERROR], m->error, sizeof m->error);
}

static void parse_answer(const kd_fields *f, kd_kone_msg *m)
{
    const kj_node *data = f->r[R_DATA];
    m->kind = KD_KONE_MSG_ANSWER;
    m->has_request_id = get_int(f->r[R_REQID], &m->request_id);
    if (!m->has_request_id && is_object(data))
        m->has_request_id = get_int(f->d[D_REQID], &m->request_id);
    if (!get_text(f->r[R_MESSAGE], m->message, sizeof m->message) && is_object(data) &&
        !get_text(f->d[D_MESSAGE], m->message, sizeof m->message))
        get_text(f->d[D_ERROR], m->message, sizeof m->message);
    if (data && data->type == KJ_STRING && !m->message[0])
        get_text(data, m->message, sizeof m->message);
    if (is_object(data)) {
        const kj_node *sid = f->d[D_SESSIONID];
        m->session_numeric = sid && sid->type == KJ_INT;
        get_text(sid, m->session_id, sizeof m->session_id);
        result_fields(f, m); /* a call's result may come in its answer */
    }
}

static void parse_call_result(const kd_fields *f, kd_kone_msg *m)
{
    m->kind = KD_KONE_MSG_CALL_RESULT;
    m->has_request_id = get_int(f->d[D_REQID], &m->request_id);
    result_fields(f, m);
    if (!m->error[0])
        get_text(f->d[D_MESSAGE], m->error, sizeof m->error);
}

static void parse_call_state(const kj_view *j, const kd_fields *f, const char *sid_text,
                             const char *state, kd_kone_msg *m)
{
    const kj_node *data = f->r[R_DATA];
    kd_call_event *ev = &m->ev;
    m->kind = KD_KONE_MSG_CALL_STATE;
    int64_t sid = 0;
    if (sid_text && *sid_text && strcmp(sid_text, "+") != 0 &&
        text_int(sid_text, strlen(sid_text), &sid))
        ev->session_id = sid;
    if (!ev->session_id && is_object(data) && get_int(f->d[D_SESSION_ID], &sid))
        ev->session_id = sid;
    if (state && *state && strcmp(state, "+") != 0)
        copy_text(ev->state, sizeof ev->state, state, strlen(state));
    if (!is_object(data))
        return;
    if (!ev->state[0]) {
        if (!get_text(f->d[D_STATE], ev->state, sizeof ev->state))
            get_text(f->d[D_CALL_STATE], ev->state, sizeof ev->state);
    }
    get_text(f->d[D_TIME], ev->kone_time, sizeof ev->kone_time);
    /* the event's fields: flat in data, or (as the YAML draws it) under data.decks (an
     * object, or an array whose first element is used); data's own win */
    const kj_node *e[D_N];
    memcpy(e, f->d, sizeof e);
    const kj_node *d = f->d[D_DECKS];
    if (d && d->type == KJ_ARRAY)
        d = kj_first(j, d);
    if (is_object(d)) {
        const kj_node *under[D_N] = {0};
        pick(j, d, data_key, under);
        for (int k = 0; k < D_N; k++)
            if (!e[k])
                e[k] = under[k];
    }
    get_text(e[D_ETA], ev->eta, sizeof ev->eta);
    get_text(e[D_CANCEL_REASON], ev->cancel_reason, sizeof ev->cancel_reason);
    get_text(e[D_MOD_REASON], ev->modified_reason, sizeof ev->modified_reason);
    int64_t md;
    if (get_int(e[D_MOD_DEST], &md)) {
        ev->has_modified_destination = true;
        ev->modified_destination = md;
    }
    const kj_node *decks = e[D_DECK];
    int64_t one;
    if (decks && decks->type == KJ_ARRAY) {
        for (const kj_node *dk = kj_first(j, decks); dk; dk = kj_next(j, dk))
            if (ev->n_decks < KD_EVENT_MAX_DECKS && get_int(dk, &one))
                ev->allocated_lift_deck[ev->n_decks++] = one;
    } else if (get_int(decks, &one)) {
        ev->allocated_lift_deck[ev->n_decks++] = one;
    }
}

/* "<lift>/status" with a lift_mode (monitor-lift-status): the lift, its building and group.
 * False for any other topic. */
static bool parse_lift_status(const kd_fields *f, kd_kone_msg *m)
{
    const char *slash = strchr(m->subtopic, '/');
    if (!slash || strcmp(slash, "/status") != 0 || slash == m->subtopic)
        return false;
    m->kind = KD_KONE_MSG_LIFT_STATUS;
    snprintf(m->lift, sizeof m->lift, "%.*s", (int)(slash - m->subtopic), m->subtopic);
    get_text(f->r[R_BUILDING], m->building, sizeof m->building);
    if (!get_text(f->r[R_GROUP], m->group, sizeof m->group))
        snprintf(m->group, sizeof m->group, "1");
    m->has_lift_mode = get_int(f->d[D_LIFT_MODE], &m->lift_mode);
    return true;
}

/* "call_state/<sid>/<state>": splits into its two fields; false for other topics. */
static bool split_call_state(const char *topic, char *sid, size_t sid_len, char *state,
                             size_t state_len)
{
    if (strncmp(topic, "call_state/", 11) != 0)
        return false;
    const char *a = topic + 11;
    const char *slash = strchr(a, '/');
    size_t n = slash ? (size_t)(slash - a) : strlen(a);
    copy_text(sid, sid_len, a, n);
    copy_text(state, state_len, slash ? slash + 1 : "", slash ? strlen(slash + 1) : 0);
    return true;
}

/* The session id of a "subtopic" "call_state/<1 to 18 digits>/...". */
static bool topic_sid(const kj_node *t, int64_t *session_id)
{
    if (!t || t->type != KJ_STRING || t->len < 13 || memcmp(t->s, "call_state/", 11) != 0)
        return false;
    const char *p = t->s + 11, *end = t->s + t->len;
    int64_t sid = 0;
    int digits = 0;
    for (; p < end && *p >= '0' && *p <= '9' && digits < 18; p++, digits++)
        sid = sid * 10 + (*p - '0');
    if (!digits || p >= end || *p != '/')
        return false;
    *session_id = sid;
    return true;
}

/* A call-state event's session id from its root: a call_state subtopic and no "statusCode"
 * (an answer naming a topic is an answer). */
static bool call_state_sid(const kd_fields *f, int64_t *session_id)
{
    return !f->r[R_STATUS] && topic_sid(f->r[R_TOPIC], session_id);
}

/* The frame's kind and fields, from its view (either path). */
static void classify(const kj_view *j, const kd_fields *f, kd_kone_msg *out)
{
    const kj_node *data = f->r[R_DATA];
    const kj_node *status = f->r[R_STATUS];
    const kj_node *topic = f->r[R_TOPIC];
    const kj_node *type = f->r[R_TYPE];
    const kj_node *ctype = f->r[R_CTYPE];
    int64_t st;

    if (status && get_int(status, &st)) {
        out->status = (int)st;
        parse_answer(f, out);
    } else if (topic && topic->type == KJ_STRING) {
        get_text(topic, out->subtopic, sizeof out->subtopic);
        char sid[64], state[64];
        if (split_call_state(out->subtopic, sid, sizeof sid, state, sizeof state))
            parse_call_state(j, f, sid, state, out);
        else if (!parse_lift_status(f, out))
            out->kind = KD_KONE_MSG_EVENT;
    } else if (kj_str_is(type, "monitor-call-state") || kj_str_is(ctype, "monitor-call-state")) {
        parse_call_state(j, f, NULL, NULL, out);
    } else if (kj_str_starts(type, "monitor-") || kj_str_starts(ctype, "monitor-")) {
        out->kind = KD_KONE_MSG_EVENT;
    } else if (is_object(data) && (f->d[D_SUCCESS] || f->d[D_SESSION_ID])) {
        parse_call_result(f, out);
    } else {
        out->kind = KD_KONE_MSG_UNKNOWN;
    }
}

/* A view of either path: offered to keep if it is a call state, then classified. */
static int read_view(const kj_view *j, kd_kone_msg_keep_fn keep, void *user, bool *kept,
                     kd_kone_msg *out)
{
    kd_fields f;
    memset(&f, 0, sizeof f); /* the members a frame lacks stay NULL */
    pick(j, &j->n[0], root_key, f.r);
    pick(j, f.r[R_DATA], data_key, f.d);
    int64_t sid;
    if (keep && call_state_sid(&f, &sid) && !keep(sid, user)) {
        if (kept)
            *kept = false;
        return 0;
    }
    if (kept)
        *kept = true;
    memset(out, 0, sizeof *out);
    classify(j, &f, out);
    return 0;
}

static int read_jansson(const char *buf, size_t len, kd_kone_msg_keep_fn keep, void *user,
                        bool *kept, kd_kone_msg *out, kd_err *err)
{
    if (kept)
        *kept = true;
    json_error_t jerr;
    json_t *root = buf ? json_loadb(buf, len, 0, &jerr) : NULL;
    if (!root) {
        memset(out, 0, sizeof *out);
        out->kind = KD_KONE_MSG_MALFORMED;
        return kd_err_set(err, KD_ERR_DECODE, "frame is not JSON (%s at byte %d)",
                          buf ? jerr.text : "no data", buf ? jerr.position : 0);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        memset(out, 0, sizeof *out);
        out->kind = KD_KONE_MSG_MALFORMED;
        return kd_err_set(err, KD_ERR_DECODE, "frame is JSON but not an object");
    }
    kj_view j = {0};
    if (!kj_from_jansson(&j, root)) {
        /* GCOVR_EXCL_START: allocation failure */
        json_decref(root);
        memset(out, 0, sizeof *out);
        out->kind = KD_KONE_MSG_MALFORMED;
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory reading a frame");
        /* GCOVR_EXCL_STOP */
    }
    int rc = read_view(&j, keep, user, kept, out);
    kj_free(&j);
    json_decref(root);
    return rc;
}

/* The question put while the root is scanned (kj_scan_each): at its "subtopic" when no
 * "statusCode" came before it. KONE puts the subtopic before the data (the bulk of a state),
 * so a state nobody follows costs the scan of its first few members. */
typedef struct {
    kd_kone_msg_keep_fn keep;
    void *user;
    bool asked;
} kd_ask;

static kj_each ask_member(const kj_view *v, const kj_node *m, void *user)
{
    (void)v;
    kd_ask *a = user;
    int64_t sid;
    if (KEY_IS(m->key, m->key_len, "statusCode")) {
        /* an answer: nothing to ask */
        return KJ_EACH_DONE;
    }
    if (KEY_IS(m->key, m->key_len, "subtopic") && topic_sid(m, &sid)) {
        a->asked = true;
        return a->keep(sid, a->user) ? KJ_EACH_DONE : KJ_EACH_STOP; /* STOP: dropped */
    }
    return KJ_EACH_GO;
}

int kd_kone_msg_read(const char *buf, size_t len, kd_kone_msg_keep_fn keep, void *user, bool *kept,
                     kd_kone_msg *out, kd_err *err)
{
    kj_node nodes[KJ_SCAN_NODES];
    kj_view j = {.n = nodes, .cap = KJ_SCAN_NODES};
    kd_ask a = {.keep = keep, .user = user};
    switch (kj_scan_each(&j, buf, len, keep ? ask_member : NULL, &a)) {
    case KJ_SCAN_STOPPED:
        if (kept)
            *kept = false;
        return 0;
    case KJ_SCAN_WHOLE: /* asked already if it is a state (its subtopic came before a status) */
        return read_view(&j, NULL, NULL, kept, out);
    case KJ_SCAN_NOT_PLAIN: break;
    }
    /* not the plain case: jansson reads it (and says what is wrong), and asks if the scan
     * did not get as far */
    return read_jansson(buf, len, a.asked ? NULL : keep, user, kept, out, err);
}

int kd_kone_msg_parse(const char *buf, size_t len, kd_kone_msg *out, kd_err *err)
{
    return kd_kone_msg_read(buf, len, NULL, NULL, NULL, out, err);
}

int kd_kone_msg_parse_jansson(const char *buf, size_t len, kd_kone_msg *out, kd_err *err)
{
    return read_jansson(buf, len, NULL, NULL, NULL, out, err);
}

/* ------------------------------------------------------------------ classification */

kd_kone_status_class kd_kone_status_classify(int status)
{
    if (status >= 200 && status < 300)
        return KD_KONE_ST_OK;
    if (status == 401)
        return KD_KONE_ST_AUTH;
    if (status == 429 || status == 408)
        return KD_KONE_ST_TRANSIENT;
    if (status >= 400 && status < 500)
        return KD_KONE_ST_REJECTED;
    return KD_KONE_ST_TRANSIENT;
}

/* One token of A-Z a-z 0-9 _ . - (no spaces), short enough to be a code. */
static bool is_token(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isalnum((unsigned char)s[n]) && s[n] != '_' && s[n] != '-' && s[n] != '.')
            return false;
    return n > 0 && n < max;
}

/* KONE's "building link down" error 1005: the text is that code, starts with it, or
 * names it as an error/code. An area id that happens to be 1005 is not it. */
static bool is_link_down(const char *text)
{
    if (strncmp(text, "1005", 4) == 0 && !isalnum((unsigned char)text[4]))
        return true;
    return strcasestr(text, "error 1005") || strcasestr(text, "error: 1005") ||
           strcasestr(text, "code 1005") || strcasestr(text, "code: 1005");
}

kd_outcome kd_kone_call_error_outcome(const char *text, char *code, size_t code_len)
{
    if (!text)
        text = "";
    while (*text == ' ')
        text++;
    if (is_link_down(text)) {
        snprintf(code, code_len, "1005");
        return KD_OUTCOME_FAILED;
    }
    if (strncasecmp(text, "Ignoring call", 13) == 0)
        snprintf(code, code_len, "ignored_call");
    else if (strncasecmp(text, "Invalid json payload", 20) == 0)
        snprintf(code, code_len, "invalid_payload");
    else if (is_token(text, code_len))
        kd_str_copy(code, code_len, text);
    else
        snprintf(code, code_len, "call_refused");
    return KD_OUTCOME_REJECTED;
}

void kd_kone_cancel_code(const char *reason, char *code, size_t code_len)
{
    if (reason && is_token(reason, code_len))
        kd_str_copy(code, code_len, reason);
    else
        snprintf(code, code_len, "cancelled");
}
