/* kone_validate.c: see kone_validate.h. Parsing is lenient on purpose: KONE's answers are
 * read for what they list (an area with its floor and side, an action with its kind and
 * disabled flag); a field of the wrong type is absent, an entry without its id is skipped,
 * and a part with nothing usable checks nothing (the job goes to KONE, which decides). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kone_msg.h"
#include "kone_validate.h"

static bool int_of(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    if (json_is_string(v)) { /* "area:1000" or "1000" */
        const char *t = json_string_value(v);
        const char *c = strrchr(t, ':');
        char *end;
        long long n = strtoll(c ? c + 1 : t, &end, 10);
        if (end != (c ? c + 1 : t) && !*end) {
            *out = n;
            return true;
        }
    }
    return false;
}

/* The answer's data object (or the root, when a server sends the fields flat). */
static json_t *load_data(const char *frame, size_t len, json_t **root, kd_err *err)
{
    json_error_t je;
    *root = json_loadb(frame, len, 0, &je);
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        kd_err_set(err, KD_ERR_DECODE, "not a JSON object: %s", je.text);
        return NULL;
    }
    json_t *d = json_object_get(*root, "data");
    return json_is_object(d) ? d : *root;
}

static int cmp_area(const void *a, const void *b)
{
    int64_t x = ((const kd_kval_area *)a)->area, y = ((const kd_kval_area *)b)->area;
    return x < y ? -1 : x > y;
}

static int cmp_action(const void *a, const void *b)
{
    int64_t x = ((const kd_kval_action *)a)->id, y = ((const kd_kval_action *)b)->id;
    return x < y ? -1 : x > y;
}

int kd_kval_parse_config(kd_kval_site *s, const char *frame, size_t len, kd_err *err)
{
    json_t *root;
    json_t *d = load_data(frame, len, &root, err);
    if (!d)
        return KD_ERR_DECODE;
    const json_t *areas = json_object_get(d, "areas"), *floors = json_object_get(d, "floors");
    size_t cap = json_array_size(areas);
    size_t i, j;
    const json_t *v, *a;
    json_array_foreach(floors, i, v) cap += json_array_size(json_object_get(v, "areas"));
    kd_kval_area *out = cap ? calloc(cap, sizeof *out) : NULL;
    if (cap && !out) {
        /* GCOVR_EXCL_START: allocation failure */
        json_decref(root);
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        /* GCOVR_EXCL_STOP */
    }
    size_t n = 0;
    bool transfer = false;
    /* areas: [{area, floor_id, side}] (the detailed list) */
    json_array_foreach(areas, i, v)
    {
        kd_kval_area x = {0};
        int64_t side = 0;
        if (!int_of(json_object_get(v, "area"), &x.area) ||
            !int_of(json_object_get(v, "floor_id"), &x.floor))
            continue;
        int_of(json_object_get(v, "side"), &side);
        x.side = side == 1 || side == 2 ? (int)side : 0;
        // NOLINTNEXTLINE(clang-analyzer-core.NullDereference): out is NULL only for empty lists
        out[n++] = x;
    }
    /* floors: [{floor_id, areas: [ids], transfer}] (areas the detailed list missed) */
    json_array_foreach(floors, i, v)
    {
        int64_t fid;
        transfer |= json_is_true(json_object_get(v, "transfer"));
        if (!int_of(json_object_get(v, "floor_id"), &fid))
            continue;
        json_array_foreach(json_object_get(v, "areas"), j, a)
        {
            kd_kval_area x = {.floor = fid};
            if (!int_of(a, &x.area))
                continue;
            bool seen = false;
            for (size_t k = 0; k < n && !seen; k++)
                seen = out[k].area == x.area;
            if (!seen)
                // NOLINTNEXTLINE(clang-analyzer-core.NullDereference): as above
                out[n++] = x;
        }
    }
    json_decref(root);
    if (!n) {
        free(out);
        return kd_err_set(err, KD_ERR_DECODE, "config: no areas with a floor_id");
    }
    qsort(out, n, sizeof *out, cmp_area);
    free(s->areas);
    s->areas = out;
    s->n_areas = n;
    s->has_transfer = transfer;
    s->have_config = true;
    return 0;
}

static kd_kval_kind kind_of(const char *k)
{
    if (!k)
        return KD_KVAL_KIND_OTHER;
    if (!strcmp(k, "destination") || !strcmp(k, "car"))
        return KD_KVAL_KIND_DESTINATION;
    if (!strncmp(k, "landing", 7))
        return KD_KVAL_KIND_LANDING;
    return KD_KVAL_KIND_OTHER;
}

int kd_kval_parse_actions(kd_kval_site *s, const char *frame, size_t len, kd_err *err)
{
    json_t *root;
    json_t *d = load_data(frame, len, &root, err);
    if (!d)
        return KD_ERR_DECODE;
    const json_t *list = json_object_get(d, "call_types");
    if (!json_is_array(list))
        list = json_object_get(d, "actions");
    size_t cap = json_array_size(list), n = 0, i;
    kd_kval_action *out = cap ? calloc(cap, sizeof *out) : NULL;
    if (cap && !out) {
        /* GCOVR_EXCL_START: allocation failure */
        json_decref(root);
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        /* GCOVR_EXCL_STOP */
    }
    const json_t *v;
    json_array_foreach(list, i, v)
    {
        kd_kval_action x = {0};
        if (!int_of(json_object_get(v, "action_id"), &x.id))
            continue;
        const json_t *k = json_object_get(v, "kind");
        if (!json_is_string(k))
            k = json_object_get(v, "action_type");
        x.kind = kind_of(json_string_value(k));
        x.disabled = json_is_true(json_object_get(v, "disabled"));
        // NOLINTNEXTLINE(clang-analyzer-core.NullDereference): out is NULL only for an empty list
        out[n++] = x;
    }
    json_decref(root);
    if (!n) {
        free(out);
        return kd_err_set(err, KD_ERR_DECODE, "actions: no call_types with an action_id");
    }
    qsort(out, n, sizeof *out, cmp_action);
    free(s->actions);
    s->actions = out;
    s->n_actions = n;
    s->have_actions = true;
    return 0;
}

void kd_kval_free(kd_kval_site *s)
{
    free(s->areas);
    free(s->actions);
    memset(s, 0, sizeof *s);
}

const char *kd_kval_reason_name(kd_kval_reason r)
{
    switch (r) {
    case KD_KVAL_OK: return "ok";
    case KD_KVAL_UNKNOWN_ACTION: return "unknown_action";
    case KD_KVAL_DISABLED_ACTION: return "disabled_action";
    case KD_KVAL_UNKNOWN_AREA: return "unknown_area";
    case KD_KVAL_NO_DESTINATION: return "no_destination";
    case KD_KVAL_UNKNOWN_DESTINATION: return "unknown_destination";
    case KD_KVAL_SAME_FLOOR: return "same_floor";
    }
    return "other";
}

static const kd_kval_area *find_area(const kd_kval_site *s, int64_t area)
{
    kd_kval_area key = {.area = area};
    return s->n_areas ? bsearch(&key, s->areas, s->n_areas, sizeof key, cmp_area) : NULL;
}

static const kd_kval_action *find_action(const kd_kval_site *s, int64_t id)
{
    kd_kval_action key = {.id = id};
    return s->n_actions ? bsearch(&key, s->actions, s->n_actions, sizeof key, cmp_action) : NULL;
}

/* A refusal as KONE words it: the code is what the client derives from KONE's own text. */
static kd_kval_reason ignored(kd_kval_reason r, char *code, size_t code_len, char *text,
                              size_t text_len, const char *what, long long n)
{
    if (n >= 0) /* -1: a text without a number */
        snprintf(text, text_len, "Ignoring call, %s%lld", what, n);
    else
        snprintf(text, text_len, "Ignoring call, %s", what);
    kd_kone_call_error_outcome(text, code, code_len);
    return r;
}

kd_kval_reason kd_kval_check(const kd_kval_site *s, const kd_job *job, char *code, size_t code_len,
                             char *text, size_t text_len)
{
    if (job->op != KD_OP_CALL)
        return KD_KVAL_OK;
    const kd_kval_action *a = NULL;
    if (s->have_actions) {
        if (job->action == 0)
            return ignored(KD_KVAL_UNKNOWN_ACTION, code, code_len, text, text_len,
                           "unknown call action: UNDEFINED", -1);
        if (!(a = find_action(s, job->action)))
            return ignored(KD_KVAL_UNKNOWN_ACTION, code, code_len, text, text_len,
                           "unknown call action: ", (long long)job->action);
        if (a->disabled)
            return ignored(KD_KVAL_DISABLED_ACTION, code, code_len, text, text_len,
                           "disabled call action: ", (long long)job->action);
    }
    if (!s->have_config)
        return KD_KVAL_OK;
    const kd_kval_area *src = find_area(s, job->area);
    if (!src)
        return ignored(KD_KVAL_UNKNOWN_AREA, code, code_len, text, text_len,
                       "unable to resolve area: area:", (long long)job->area);
    if (!a || a->kind == KD_KVAL_KIND_LANDING)
        return KD_KVAL_OK; /* a landing call, or an action whose needs are unknown */
    if (a->kind == KD_KVAL_KIND_DESTINATION && !job->has_destination)
        return ignored(KD_KVAL_NO_DESTINATION, code, code_len, text, text_len,
                       "destination not defined", -1);
    if (!job->has_destination)
        return KD_KVAL_OK;
    const kd_kval_area *dst = find_area(s, job->destination);
    if (!dst && !s->has_transfer)
        return ignored(KD_KVAL_UNKNOWN_DESTINATION, code, code_len, text, text_len,
                       "unable to resolve destination: area:", (long long)job->destination);
    if (dst && dst->floor == src->floor) {
        snprintf(text, text_len, "SAME_SOURCE_AND_DEST_FLOOR");
        kd_kone_cancel_code(text, code, code_len);
        return KD_KVAL_SAME_FLOOR;
    }
    return KD_KVAL_OK;
}

bool kd_kval_contradicts(const char *code, const char *message)
{
    if (!code || !message)
        return false;
    if (!strcmp(code, "404"))
        return true;
    if (strcmp(code, "ignored_call") != 0)
        return false;
    return strstr(message, "unable to resolve area") ||
           strstr(message, "unable to resolve "
                           "destination") ||
           strstr(message, "unknown call action") || strstr(message, "disabled call action");
}

/* ------------------------------------------------------------------ freshness */

kd_kval_decision kd_kval_decide(const kd_kval_fresh *f, int64_t now)
{
    if (f->valid && !f->stale && now < f->fetched_at + f->ttl_us)
        return KD_KVAL_USE;
    if (f->failures && now < f->retry_at)
        return KD_KVAL_UNVALIDATED;
    return KD_KVAL_FETCH;
}

void kd_kval_fetched(kd_kval_fresh *f, bool ok, int64_t asked, int64_t now)
{
    if (ok) {
        f->valid = true;
        f->stale = false;
        f->fetched_at = asked;
        f->failures = 0;
        f->retry_at = 0;
        return;
    }
    int64_t backoff = KD_KVAL_RETRY_MIN_US << (f->failures < 6 ? f->failures : 6);
    if (backoff > KD_KVAL_RETRY_MAX_US)
        backoff = KD_KVAL_RETRY_MAX_US;
    f->failures++;
    f->valid = false;
    f->retry_at = now + backoff;
}

void kd_kval_contradicted(kd_kval_fresh *f)
{
    f->stale = true;
}
