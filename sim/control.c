/* control.c: the /sim/ endpoint, fault changes with their side effects, and the call log's
 * listing and reset (control.h). */
#include "control.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_log.h"

int sim_control_init(sim_control *c, sim_hub *h, int64_t base_ttl_s, const char *token)
{
    memset(c, 0, sizeof *c);
    c->hub = h;
    c->base_ttl_s = base_ttl_s;
    c->base = malloc(sizeof *c->base);
    if (!c->base)
        return KD_ERR_NOMEM;
    sim_fault_global none = {0};
    sim_fault_state_get(c->base, h->world, &none);
    if (token && token[0] && !(c->token = strdup(token))) {
        free(c->base);
        c->base = NULL;
        return KD_ERR_NOMEM;
    }
    return 0;
}

void sim_control_free(sim_control *c)
{
    if (c->token)
        explicit_bzero(c->token, strlen(c->token));
    free(c->token);
    free(c->base);
    c->token = NULL;
    c->base = NULL;
}

typedef struct log_ctx {
    const char *origin;
} log_ctx;

static void log_line(void *arg, const char *text)
{
    const log_ctx *l = arg;
    kd_info("fault %s (%s)", text, l->origin);
}

/* Installs `next` (old is the state it replaces): world, hub, token lifetime, logs, and the
 * lift status events a mode change or a returning site link causes. */
static void install(sim_control *c, const sim_fault_state *old, const sim_fault_state *next,
                    const char *origin)
{
    sim_hub *h = c->hub;
    sim_fault_state_put(next, h->world, &h->faults);
    h->auth->ttl_s = next->global.token_ttl_s ? next->global.token_ttl_s : c->base_ttl_s;
    log_ctx l = {origin};
    if (sim_fault_diff(old, next, h->world, log_line, &l) == 0)
        kd_info("fault state unchanged (%s)", origin);
    for (size_t b = 0; b < h->world->n; b++)
        for (size_t g = 0; g < h->world->b[b]->n_groups; g++) {
            const sim_faults *o = &old->group[b][g], *n = &next->group[b][g];
            if (!n->link_down && (o->mode != n->mode || o->link_down))
                sim_hub_publish_status(h, (int)b, (int)g);
        }
}

int sim_control_apply(sim_control *c, const json_t *spec, const char *origin, char *msg,
                      size_t msg_len)
{
    sim_fault_state *old = malloc(sizeof *old), *next = malloc(sizeof *next);
    int rc = -1;
    if (!old || !next) {
        snprintf(msg, msg_len, "out of memory");
        goto out;
    }
    sim_fault_state_get(old, c->hub->world, &c->hub->faults);
    *next = *old;
    bool has_seed = false;
    uint64_t seed = 0;
    if (sim_fault_merge(next, c->hub->world, spec, msg, msg_len, &has_seed, &seed))
        goto out;
    if (has_seed) {
        sim_rng_seed(&c->hub->rng, seed);
        kd_info("fault seed %llu (%s)", (unsigned long long)seed, origin);
    }
    install(c, old, next, origin);
    rc = 0;
out:
    free(old);
    free(next);
    return rc;
}

int sim_control_apply_text(sim_control *c, const char *text, const char *origin, char *msg,
                           size_t msg_len)
{
    json_error_t je;
    json_t *spec = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!spec) {
        snprintf(msg, msg_len, "not JSON: %s (at character %d)", je.text, je.position);
        return -1;
    }
    int rc = sim_control_apply(c, spec, origin, msg, msg_len);
    json_decref(spec);
    return rc;
}

void sim_control_reset(sim_control *c, const char *origin)
{
    sim_fault_state *old = malloc(sizeof *old);
    if (!old) { /* cannot log the diff; reset anyway */
        sim_fault_state_put(c->base, c->hub->world, &c->hub->faults);
        c->hub->auth->ttl_s = c->base_ttl_s;
        return;
    }
    sim_fault_state_get(old, c->hub->world, &c->hub->faults);
    install(c, old, c->base, origin);
    free(old);
}

/* ---- the endpoint ---- */

static int fail(json_t **answer, int status, const char *msg)
{
    *answer = json_pack("{s:s}", "message", msg);
    return status;
}

static int state_answer(sim_control *c, json_t **answer)
{
    sim_fault_state *s = malloc(sizeof *s);
    if (!s)
        return fail(answer, 500, "out of memory");
    sim_fault_state_get(s, c->hub->world, &c->hub->faults);
    *answer = sim_fault_state_json(s, c->hub->world);
    free(s);
    return *answer ? 200 : fail(answer, 500, "out of memory");
}

static bool authorized(const sim_control *c, const char *authorization)
{
    if (!c->token)
        return true;
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
        return false;
    const char *v = authorization + 7;
    size_t n = strlen(v), tl = strlen(c->token);
    return n == tl && CRYPTO_memcmp(v, c->token, n) == 0;
}

static json_t *parse_body(const char *body, size_t len, char *msg, size_t msg_len)
{
    json_error_t je;
    json_t *o = len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &je) : NULL;
    if (!json_is_object(o)) {
        if (o || !len)
            snprintf(msg, msg_len, "the body must be a JSON object");
        else
            snprintf(msg, msg_len, "the body is not JSON: %s (at character %d)", je.text,
                     je.position);
        json_decref(o);
        return NULL;
    }
    return o;
}

/* 0 when every member of o is one of names (NULL-terminated), else the 400 answer naming
 * them. */
static int only_fields(const json_t *o, const char *const *names, const char *what, json_t **answer)
{
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        size_t i = 0;
        while (names[i] && strcmp(k, names[i]) != 0)
            i++;
        if (names[i])
            continue;
        char m[200];
        int n = snprintf(m, sizeof m, "unknown field; %s takes ", what);
        for (i = 0; names[i] && n > 0 && (size_t)n < sizeof m; i++)
            n += snprintf(m + n, sizeof m - (size_t)n, "%s%s",
                          i ? (names[i + 1] ? ", " : " and ") : "", names[i]);
        return fail(answer, 400, m);
    }
    return 0;
}

/* A fault's body of optional fields: {} when empty, else a JSON object with only `names`,
 * whose client_id (when given) is a string. 0, or the 400 answer; *o is the parsed body (the
 * caller frees it), NULL when there is none to read. */
static int fault_body(const char *body, size_t len, const char *const *names, const char *what,
                      json_t **o, json_t **answer)
{
    char msg[200] = "out of memory";
    *o = len ? parse_body(body, len, msg, sizeof msg) : json_object();
    if (!*o)
        return fail(answer, len ? 400 : 500, msg);
    int status = only_fields(*o, names, what, answer);
    const json_t *cid = json_object_get(*o, "client_id");
    if (!status && cid && !json_is_string(cid))
        status = fail(answer, 400, "client_id: must be a string");
    return status;
}

/* {"client_id": "...", "connection_id": "...", "code": 1000..4999, "reason": "..."}, all
 * optional; connection_id drops that one connection only (GET /sim/subscriptions names the
 * connection of each subscription); no code: dropped without a close frame. */
static int drop_connections(sim_control *c, const char *body, size_t len, json_t **answer)
{
    static const char *const fields[] = {"client_id", "connection_id", "code", "reason", NULL};
    json_t *o;
    int status = fault_body(body, len, fields, "drop-connections", &o, answer);
    if (!o)
        return status;
    const json_t *cid = json_object_get(o, "client_id"), *code = json_object_get(o, "code"),
                 *reason = json_object_get(o, "reason"),
                 *conn = json_object_get(o, "connection_id");
    if (!status && conn && (!json_is_string(conn) || cid))
        status = fail(answer, 400, "connection_id: must be a string, and without client_id");
    int64_t cv = json_integer_value(code);
    if (!status && code && !json_is_null(code) &&
        (!json_is_integer(code) ||
         (cv != 0 && (cv < 1000 || cv > 4999 || cv == 1005 || cv == 1006 || cv == 1015))))
        status = fail(answer, 400,
                      "code: must be a close code 1000..4999 that may be sent "
                      "(not 1005, 1006, 1015), or 0 for no close frame");
    if (!status && reason && (!json_is_string(reason) || json_string_length(reason) > 60))
        status = fail(answer, 400, "reason: must be a string of at most 60 bytes");
    if (!status) {
        const char *why = reason ? json_string_value(reason) : "Connection closed by kone-sim";
        size_t n = conn ? sim_hub_drop_connection_id(c->hub, json_string_value(conn), (int)cv, why)
                        : sim_hub_drop_connections(c->hub, json_string_value(cid), (int)cv, why);
        kd_info("fault drop-connections: %zu connection%s%s%s", n, n == 1 ? "" : "s",
                cid ? " of client " : (conn ? " with id " : ""),
                cid ? json_string_value(cid) : (conn ? json_string_value(conn) : ""));
        *answer = json_pack("{s:I}", "dropped", (json_int_t)n);
        status = *answer ? 200 : fail(answer, 500, "out of memory");
    }
    json_decref(o);
    return status;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* {"client_id": "...", "hex": "<bytes>", "fragment": N}, all optional: WebSocket faults on the
 * open connections (docs/kone-sim.md): bytes written as they are (a malformed frame, a ping,
 * ...), and text frames sent in fragments of at most N bytes from now on (0: whole). */
static int ws_inject(sim_control *c, const char *body, size_t len, json_t **answer)
{
    static const char *const fields[] = {"client_id", "hex", "fragment", NULL};
    json_t *o;
    int status = fault_body(body, len, fields, "ws-inject", &o, answer);
    if (!o)
        return status;
    const json_t *cid = json_object_get(o, "client_id"), *hex = json_object_get(o, "hex"),
                 *frag = json_object_get(o, "fragment");
    unsigned char bytes[4096];
    size_t n = 0;
    const char *h = hex && json_is_string(hex) ? json_string_value(hex) : "";
    size_t hl = strlen(h);
    if (!status && hex && (!json_is_string(hex) || hl % 2 || hl / 2 > sizeof bytes))
        status = fail(answer, 400, "hex: must be an even number of hex digits, at most 4096 bytes");
    for (size_t i = 0; !status && i < hl; i += 2) {
        int hi = hex_digit(h[i]), lo = hex_digit(h[i + 1]);
        if (hi < 0 || lo < 0) {
            status = fail(answer, 400, "hex: not a hex digit");
            break;
        }
        bytes[n++] = (unsigned char)(hi << 4 | lo);
    }
    if (!status && frag &&
        (!json_is_integer(frag) || json_integer_value(frag) < 0 ||
         json_integer_value(frag) > 65536))
        status = fail(answer, 400, "fragment: must be a byte count 0..65536");
    if (!status) {
        size_t m = sim_hub_ws_inject(c->hub, json_string_value(cid), bytes, n,
                                     frag ? (int)json_integer_value(frag) : -1);
        *answer = json_pack("{s:I}", "connections", (json_int_t)m);
        status = *answer ? 200 : fail(answer, 500, "out of memory");
    }
    json_decref(o);
    return status;
}

/* ---- /sim/calls ---- */

/* Reads the query of GET /sim/calls into q (values point into buf). 0, or -1 with msg. */
static int parse_calls_query(const char *query, char *buf, size_t buf_len, sim_calls_query *q,
                             char *msg, size_t msg_len)
{
    memset(q, 0, sizeof *q);
    if (!query || !query[0])
        return 0;
    if (strlen(query) >= buf_len) {
        snprintf(msg, msg_len, "query string too long");
        return -1;
    }
    snprintf(buf, buf_len, "%s", query);
    char *save = NULL;
    for (char *kv = strtok_r(buf, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
        char *v = strchr(kv, '=');
        if (v)
            *v++ = '\0';
        else
            v = "";
        bool num = strcmp(kv, "since") == 0 || strcmp(kv, "limit") == 0;
        if (num) {
            char *end = NULL;
            unsigned long long n = strtoull(v, &end, 10);
            bool ok = v[0] >= '0' && v[0] <= '9' && *end == '\0' && strlen(v) <= 18;
            if (kv[0] == 's' && ok) {
                q->since = n;
            } else if (kv[0] == 'l' && ok && n >= 1 && n <= SIM_CALLS_LIMIT_MAX) {
                q->limit = (size_t)n;
            } else {
                if (kv[0] == 's')
                    snprintf(msg, msg_len, "since: must be a sequence number (0 or more)");
                else
                    snprintf(msg, msg_len, "limit: must be 1..%d", SIM_CALLS_LIMIT_MAX);
                return -1;
            }
        } else if (strcmp(kv, "call_type") == 0 && v[0]) {
            q->call_type = v;
        } else if (strcmp(kv, "media_id_prefix") == 0) {
            q->media_id_prefix = v;
        } else {
            snprintf(msg, msg_len,
                     "%.40s: unknown or empty parameter; /sim/calls takes since, "
                     "limit, call_type and media_id_prefix",
                     kv);
            return -1;
        }
    }
    return 0;
}

static int calls_list(sim_control *c, const char *query, json_t **answer, char **text,
                      size_t *text_len)
{
    char buf[512], msg[200];
    sim_calls_query q;
    if (parse_calls_query(query, buf, sizeof buf, &q, msg, sizeof msg))
        return fail(answer, 400, msg);
    *text = sim_calls_list(&c->hub->calls, &q, text_len);
    return *text ? 200 : fail(answer, 500, "out of memory");
}

static int calls_reset(sim_control *c, json_t **answer)
{
    size_t n = sim_calls_reset(&c->hub->calls);
    uint64_t last = sim_calls_last_seq(&c->hub->calls);
    kd_info("call log reset: %zu entr%s cleared, last seq %llu (POST /sim/calls/reset)", n,
            n == 1 ? "y" : "ies", (unsigned long long)last);
    *answer = json_pack("{s:I,s:I}", "cleared", (json_int_t)n, "last_seq", (json_int_t)last);
    return *answer ? 200 : fail(answer, 500, "out of memory");
}

/* ---- /sim/subscriptions ---- */

/* Read-only: every live site-monitoring subscription, so a test sees what a client holds. */
static int subscriptions(sim_control *c, json_t **answer)
{
    json_t *list = sim_hub_subscriptions(c->hub);
    *answer = list ? json_pack("{s:I,s:o}", "count", (json_int_t)json_array_size(list),
                               "subscriptions", list)
                   : NULL;
    return *answer ? 200 : fail(answer, 500, "out of memory");
}

/* ---- routing ---- */

/* Answers one request: either *answer (JSON) or, for a call listing, *text. */
static int route(sim_control *c, const char *method, const char *target, const char *authorization,
                 const char *body, size_t body_len, json_t **answer, char **text, size_t *text_len)
{
    *answer = NULL;
    *text = NULL;
    char path[128];
    const char *qm = strchr(target, '?');
    size_t pl = qm ? (size_t)(qm - target) : strlen(target);
    snprintf(path, sizeof path, "%.*s", (int)(pl < sizeof path ? pl : sizeof path - 1), target);
    const char *query = qm ? qm + 1 : NULL;
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    bool faults = strcmp(path, "/sim/faults") == 0, reset = strcmp(path, "/sim/faults/reset") == 0,
         drop = strcmp(path, "/sim/drop-connections") == 0, calls = strcmp(path, "/sim/calls") == 0,
         calls_rst = strcmp(path, "/sim/calls/reset") == 0,
         subs = strcmp(path, "/sim/subscriptions") == 0, inj = strcmp(path, "/sim/ws-inject") == 0;
    if (pl >= sizeof path || (!faults && !reset && !drop && !calls && !calls_rst && !subs && !inj))
        return fail(answer, 404,
                    "Not found: the control endpoint has /sim/faults, "
                    "/sim/faults/reset, /sim/drop-connections, /sim/ws-inject, /sim/calls, "
                    "/sim/calls/reset and /sim/subscriptions");
    if (!authorized(c, authorization))
        return fail(answer, 401,
                    "Unauthorized: Authorization: Bearer <sim.control_token> "
                    "required");
    if (calls)
        return get ? calls_list(c, query, answer, text, text_len)
                   : fail(answer, 405, "Method not allowed: GET");
    if (subs)
        return get ? subscriptions(c, answer) : fail(answer, 405, "Method not allowed: GET");
    if (faults && get)
        return state_answer(c, answer);
    if (!post)
        return fail(answer, 405,
                    faults ? "Method not allowed: GET or POST" : "Method not allowed: POST");
    if (calls_rst)
        return calls_reset(c, answer);
    if (drop)
        return drop_connections(c, body, body_len, answer);
    if (inj)
        return ws_inject(c, body, body_len, answer);
    if (reset) {
        sim_control_reset(c, "POST /sim/faults/reset");
        return state_answer(c, answer);
    }
    char msg[300];
    json_t *spec = parse_body(body, body_len, msg, sizeof msg);
    if (!spec)
        return fail(answer, 400, msg);
    int rc = sim_control_apply(c, spec, "POST /sim/faults", msg, sizeof msg);
    json_decref(spec);
    if (rc)
        return fail(answer, 400, msg);
    return state_answer(c, answer);
}

int sim_control_request(sim_control *c, const char *method, const char *path,
                        const char *authorization, const char *body, size_t body_len,
                        json_t **answer)
{
    char *text = NULL;
    size_t len = 0;
    int status = route(c, method, path, authorization, body, body_len, answer, &text, &len);
    if (text) {
        json_error_t je;
        *answer = json_loadb(text, len, 0, &je);
        free(text);
        if (!*answer)
            return fail(answer, 500, "out of memory");
    }
    return status;
}

int sim_control_request_text(sim_control *c, const char *method, const char *path,
                             const char *authorization, const char *body, size_t body_len,
                             char **text, size_t *text_len)
{
    json_t *answer = NULL;
    *text_len = 0;
    int status = route(c, method, path, authorization, body, body_len, &answer, text, text_len);
    if (answer) {
        *text = json_dumps(answer, JSON_COMPACT);
        json_decref(answer);
        *text_len = *text ? strlen(*text) : 0;
    }
    return *text ? status : 500;
}
