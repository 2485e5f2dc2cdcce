/* calls.c: the log of lift-call-api-v2 requests (see calls.h). */
#include "calls.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void sim_calls_init(sim_calls *l, size_t max_entries, size_t max_bytes)
{
    memset(l, 0, sizeof *l);
    l->max_entries = max_entries ? max_entries : SIM_CALLS_MAX;
    l->max_bytes = max_bytes ? max_bytes : SIM_CALLS_MAX_BYTES;
    l->next_seq = 1;
    l->base_seq = 1;
}

static sim_call_entry *at(const sim_calls *l, size_t i)
{
    return &l->ring[(l->head + i) % l->max_entries];
}

static void evict_oldest(sim_calls *l)
{
    sim_call_entry *e = at(l, 0);
    l->bytes -= (size_t)e->len + 1;
    free(e->text);
    e->text = NULL;
    l->head = (l->head + 1) % l->max_entries;
    l->n--;
}

size_t sim_calls_reset(sim_calls *l)
{
    size_t n = l->n;
    while (l->n)
        evict_oldest(l);
    l->head = 0;
    l->dropped = 0;
    l->base_seq = l->next_seq;
    return n;
}

void sim_calls_free(sim_calls *l)
{
    sim_calls_reset(l);
    free(l->ring);
    l->ring = NULL;
}

uint64_t sim_calls_last_seq(const sim_calls *l)
{
    return l->next_seq - 1;
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* The request's own value (a reference, not a copy: the entry is dumped and dropped while
 * the request is still alive), or null. */
static json_t *ref_or_null(const json_t *v)
{
    return v ? json_incref((json_t *)v) : json_null();
}

/* The entry's JSON object; keys in the order docs/kone-sim.md lists them. */
static json_t *entry_json(uint64_t seq, const sim_call_note *n, const char *media_id)
{
    char when[40];
    sim_iso_time(n->wall_ms, when, sizeof when);
    json_t *o = json_object();
    if (!o)
        return NULL;
    const json_t *gid = n->group_id;
    int bad = 0;
    bad |= json_object_set_new(o, "seq", json_integer((json_int_t)seq));
    bad |= json_object_set_new(o, "call_type", str_or_null(n->call_type));
    bad |= json_object_set_new(o, "received", json_string(when));
    bad |= json_object_set_new(o, "connection_id", str_or_null(n->connection_id));
    bad |= json_object_set_new(o, "client_id", str_or_null(n->client_id));
    bad |= json_object_set_new(
        o, "kone_session_id",
        str_or_null(n->kone_session_id && n->kone_session_id[0] ? n->kone_session_id : NULL));
    bad |= json_object_set_new(o, "request_id", ref_or_null(n->request_id));
    bad |= json_object_set_new(o, "building_id", str_or_null(n->building_id));
    bad |= json_object_set_new(o, "group_id",
                               json_is_string(gid) || json_is_integer(gid) ? ref_or_null(gid)
                                                                           : json_null());
    bad |= json_object_set_new(o, "media_id", str_or_null(media_id));
    bad |= json_object_set_new(o, "status", json_integer(n->status));
    bad |= json_object_set_new(o, "message", str_or_null(n->message));
    bad |=
        json_object_set_new(o, "success", n->success < 0 ? json_null() : json_boolean(n->success));
    bad |= json_object_set_new(o, "error", str_or_null(n->error));
    bad |= json_object_set_new(
        o, "session_id", n->session_id > 0 ? json_integer((json_int_t)n->session_id) : json_null());
    bad |= json_object_set_new(o, "cancelled",
                               n->cancelled < 0 ? json_null() : json_boolean(n->cancelled));
    bad |= json_object_set_new(o, "payload", ref_or_null(n->payload));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int sim_calls_add(sim_calls *l, const sim_call_note *n)
{
    uint64_t seq = l->next_seq++;
    if (!l->ring && !(l->ring = calloc(l->max_entries, sizeof *l->ring))) {
        l->dropped++;
        return -1;
    }
    const char *media = json_string_value(json_object_get(n->payload, "media_id"));
    json_t *o = entry_json(seq, n, media);
    char *js = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    const char *type = n->call_type ? n->call_type : "";
    size_t jl = js ? strlen(js) : 0, tl = strlen(type), ml = media ? strlen(media) : 0;
    size_t total = jl + 1 + tl + 1 + ml + 1;
    char *text = js && total < UINT32_MAX ? malloc(total) : NULL;
    if (!text) {
        free(js);
        l->dropped++;
        return -1;
    }
    memcpy(text, js, jl + 1);
    memcpy(text + jl + 1, type, tl + 1);
    memcpy(text + jl + 1 + tl + 1, media ? media : "", ml + 1);
    free(js);
    /* make room: the entry cap, then the byte budget (an entry alone over it is kept) */
    while (l->n && (l->n >= l->max_entries || l->bytes + jl + 1 > l->max_bytes)) {
        evict_oldest(l);
        l->dropped++;
    }
    sim_call_entry *e = &l->ring[(l->head + l->n) % l->max_entries];
    *e = (sim_call_entry){.seq = seq,
                          .text = text,
                          .len = (uint32_t)jl,
                          .type_off = (uint32_t)(jl + 1),
                          .media_off = (uint32_t)(jl + 1 + tl + 1),
                          .has_media = media != NULL};
    l->n++;
    l->bytes += jl + 1;
    return 0;
}

static bool matches(const sim_call_entry *e, const sim_calls_query *q)
{
    if (q->call_type && strcmp(e->text + e->type_off, q->call_type) != 0)
        return false;
    if (q->media_id_prefix) {
        size_t pl = strlen(q->media_id_prefix);
        if (!e->has_media || strncmp(e->text + e->media_off, q->media_id_prefix, pl) != 0)
            return false;
    }
    return true;
}

char *sim_calls_list(const sim_calls *l, const sim_calls_query *q, size_t *len)
{
    size_t limit = q->limit ? q->limit : SIM_CALLS_LIMIT_DEFAULT;
    uint64_t last = sim_calls_last_seq(l);
    uint64_t first = l->n ? at(l, 0)->seq : l->next_seq; /* oldest held, or the next one */
    /* pass 1: which entries, and how many bytes */
    size_t start = q->since + 1 <= first ? 0 : (size_t)(q->since + 1 - first);
    if (start > l->n)
        start = l->n;
    size_t count = 0, bytes = 0, i;
    uint64_t next_since = last;
    bool more = false;
    for (i = start; i < l->n; i++) {
        const sim_call_entry *e = at(l, i);
        if (!matches(e, q))
            continue;
        count++;
        bytes += e->len + 1;
        if (count == limit) {
            next_since = e->seq;
            more = i + 1 < l->n;
            break;
        }
    }
    size_t end = i < l->n ? i + 1 : l->n;
    uint64_t lo = q->since + 1 > l->base_seq ? q->since + 1 : l->base_seq;
    uint64_t missed = first > lo ? first - lo : 0;
    char head[512], firsts[24] = "null";
    if (l->n)
        snprintf(firsts, sizeof firsts, "%" PRIu64, first);
    int hl = snprintf(head, sizeof head,
                      "{\"since\":%" PRIu64 ",\"next_since\":%" PRIu64 ",\"more\":%s,"
                      "\"count\":%zu,\"first_seq\":%s,\"last_seq\":%" PRIu64 ",\"held\":%zu,"
                      "\"dropped\":%" PRIu64 ",\"missed\":%" PRIu64 ",\"capacity\":%zu,"
                      "\"calls\":[",
                      q->since, next_since, more ? "true" : "false", count, firsts, last, l->n,
                      l->dropped, missed, l->max_entries);
    if (hl < 0 || (size_t)hl >= sizeof head)
        return NULL;
    char *out = malloc((size_t)hl + bytes + 3);
    if (!out)
        return NULL;
    char *p = out;
    memcpy(p, head, (size_t)hl);
    p += hl;
    size_t written = 0;
    for (i = start; i < end && written < count; i++) {
        const sim_call_entry *e = at(l, i);
        if (!matches(e, q))
            continue;
        if (written++)
            *p++ = ',';
        memcpy(p, e->text, e->len);
        p += e->len;
    }
    *p++ = ']';
    *p++ = '}';
    *p = '\0';
    *len = (size_t)(p - out);
    return out;
}
