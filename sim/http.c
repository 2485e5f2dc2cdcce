/* http.c: the HTTP endpoints of kone-sim and the WebSocket upgrade gate.
 *
 *   POST /api/v2/oauth2/token                  client_credentials (auth.c decides)
 *   GET  /api/v2/application/self/resources    Bearer token with application/inventory
 *   GET  /stream-v2?accessToken=...  (Upgrade) checked here, served by stream.c
 *   GET, POST /sim/...                         fault injection control (control.c decides)
 *   GET  /healthz                              kone-sim's own liveness, not part of KONE's API
 *
 * The injected faults of this layer (faults.h) are applied here: the token endpoint down,
 * and upgrades refused, both before any credential is looked at, as a load balancer in
 * front of KONE would answer.
 *
 * Responses are small, so each goes out whole in one lws_write (status line, headers and
 * body, as lws_return_http_status does for HTTP/1.1; ALPN is pinned to http/1.1). Tokens
 * and secrets are never logged: only method, path, status and client id.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_log.h"
#include "http.h"
#include "server.h"

#define SIM_BODY_MAX 16384
/* /healthz fails once the model tick (every SIM_TICK_MS, stamped about once a second in
 * last_sweep_ms) has not run for this long: the loop answers, but its timers are stuck. */
#define SIM_HEALTH_STALE_MS 10000

/* Per HTTP connection: the body of a token or control request being received. */
typedef struct sim_http_pss {
    char *body;
    size_t body_len;
    bool too_big;
    bool control; /* the body is for the control endpoint at `path` */
    char path[64];
} sim_http_pss;

static int64_t now_ms(const sim_server *s)
{
    return sim_clock_real_ms(&s->hub->clock);
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    default: return sim_fault_status_text(status);
    }
}

/* Writes the response. upgrade_refusal: the request was a WebSocket upgrade, whose HTTP
 * version lws has not recorded yet (it would answer HTTP/1.0, which WebSocket clients
 * reject as malformed): write an HTTP/1.1 status line ourselves and close after. */
static int respond_text(struct lws *wsi, int status, const char *text, size_t tl,
                        const char *extra_header, bool upgrade_refusal)
{
    size_t cap = LWS_PRE + 1024 + tl;
    unsigned char *buf = malloc(cap);
    if (!buf)
        return -1;
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + cap - 1;
    char clen[24];
    int n = snprintf(clen, sizeof clen, "%zu", tl);
    int rc = -1;
    if (upgrade_refusal) {
        p += snprintf((char *)p, (size_t)(end - p), "HTTP/1.1 %d %s\r\nconnection: close\r\n",
                      status, reason_phrase(status));
    } else if (lws_add_http_header_status(wsi, (unsigned)status, &p, end)) {
        goto out;
    }
    if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                     (const unsigned char *)"application/json", 16, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
                                     (const unsigned char *)clen, n, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-store", 8, &p, end))
        goto out;
    if (extra_header) {
        const char *colon = strchr(extra_header, ':');
        char name[64];
        if (colon && (size_t)(colon - extra_header) + 2 < sizeof name) {
            snprintf(name, sizeof name, "%.*s:", (int)(colon - extra_header), extra_header);
            const char *v = colon + 1;
            while (*v == ' ')
                v++;
            if (lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                            (const unsigned char *)v, (int)strlen(v), &p, end))
                goto out;
        }
    }
    if (lws_finalize_http_header(wsi, &p, end))
        goto out;
    if ((size_t)(end - p) < tl)
        goto out;
    memcpy(p, text ? text : "", tl);
    p += tl;
    n = (int)(p - start);
    /* A large body (a call listing) may go out partly; lws keeps the rest and sends it
     * before completing the transaction. */
    rc = lws_write(wsi, start, (size_t)n, LWS_WRITE_HTTP) == n ? 0 : -1;
out:
    free(buf);
    return rc;
}

static int respond(struct lws *wsi, int status, const json_t *body, const char *extra_header,
                   bool upgrade_refusal)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    int rc =
        respond_text(wsi, status, text, text ? strlen(text) : 0, extra_header, upgrade_refusal);
    free(text);
    return rc;
}

int sim_http_respond(struct lws *wsi, int status, const json_t *body, const char *extra_header)
{
    return respond(wsi, status, body, extra_header, false);
}

static int respond_msg(struct lws *wsi, int status, const char *msg, const char *extra)
{
    json_t *o = json_pack("{s:s}", "message", msg);
    int rc = respond(wsi, status, o, extra, false);
    json_decref(o);
    return rc;
}

static void refuse_upgrade(struct lws *wsi, int status, const char *msg)
{
    json_t *o = json_pack("{s:s}", "message", msg);
    respond(wsi, status, o, NULL, true);
    json_decref(o);
}

/* Finishes a transaction: 0 keeps the connection for the next request, -1 closes it. */
static int finish(struct lws *wsi, int write_rc)
{
    if (write_rc || lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

/* Test only (sim.token_log): appends an issued token to the file, one per line, so a test can
 * search every log for it. Off (NULL or "") in any real use. */
static void log_token(const char *path, const char *token)
{
    if (!path || !path[0] || !token)
        return;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        kd_warn("sim.token_log %s: %s", path, kd_strerror(errno));
        return;
    }
    char line[SIM_TOKEN_LEN + 2];
    int n = snprintf(line, sizeof line, "%s\n", token);
    if (n < 0 || (size_t)n >= sizeof line || write(fd, line, (size_t)n) != n)
        kd_warn("sim.token_log %s: write failed", path);
    explicit_bzero(line, sizeof line);
    close(fd);
}

/* Answers the token request. The caller owns body (freed after); pss may be gone once the
 * transaction completes, so nothing here touches it after finish(). */
static int handle_token(struct lws *wsi, sim_server *s, char *body, size_t body_len, bool too_big)
{
    char authz[1200] = "";
    if (s->hub->faults.token_down) {
        int st = s->hub->faults.token_down;
        kd_info("POST /api/v2/oauth2/token %d (fault: token endpoint down)", st);
        return finish(wsi, respond_msg(wsi, st, sim_fault_status_text(st), NULL));
    }
    if (lws_hdr_copy(wsi, authz, sizeof authz, WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
        authz[0] = '\0';
    if (too_big) {
        kd_info("POST /api/v2/oauth2/token 400 (body too large)");
        return finish(wsi, respond_msg(wsi, 400, "Request body too large", NULL));
    }
    json_t *answer = NULL;
    int status = sim_auth_token_request(s->auth, authz[0] ? authz : NULL, body ? body : "",
                                        body_len, now_ms(s), &answer);
    explicit_bzero(authz, sizeof authz);
    if (body)
        explicit_bzero(body, body_len);
    const char *scope = json_string_value(json_object_get(answer, "scope"));
    kd_info("POST /api/v2/oauth2/token %d%s%s", status, scope ? " scope=" : "", scope ? scope : "");
    if (status == 200)
        log_token(s->auth->token_log, json_string_value(json_object_get(answer, "access_token")));
    int rc = sim_http_respond(wsi, status, answer,
                              status == 401 ? "WWW-Authenticate: Basic realm=\"kone-sim\"" : NULL);
    json_decref(answer);
    return finish(wsi, rc);
}

static int handle_resources(struct lws *wsi, sim_server *s)
{
    char authz[256] = "";
    if (lws_hdr_copy(wsi, authz, sizeof authz, WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
        authz[0] = '\0';
    const sim_token *t = sim_auth_bearer(s->auth, authz, now_ms(s));
    explicit_bzero(authz, sizeof authz);
    if (!t) {
        kd_info("GET /api/v2/application/self/resources 401");
        return finish(wsi, respond_msg(wsi, 401, "Unauthorized",
                                       "WWW-Authenticate: Bearer realm=\"kone-sim\""));
    }
    if (!sim_scopes_has(&t->scopes, "application/inventory")) {
        kd_info("GET /api/v2/application/self/resources 403 client=%s", t->client_id);
        return finish(wsi, respond_msg(wsi, 403,
                                       "Forbidden: application/inventory scope "
                                       "required",
                                       NULL));
    }
    /* KONE lists "the resources accessible by the application" (the AsyncAPI file's
     * application/inventory): the client's buildings, not the token's, since a client asks
     * for this list precisely to learn which building scopes to ask for next */
    const sim_scopes *app = &t->scopes;
    for (size_t i = 0; i < s->auth->n_clients; i++)
        if (strcmp(s->auth->clients[i].id, t->client_id) == 0)
            app = &s->auth->clients[i].scopes;
    json_t *list = json_array();
    for (size_t i = 0; list && i < s->hub->world->n; i++) {
        const char *id = s->hub->world->b[i]->id;
        if (sim_scopes_allow_building(app, id))
            json_array_append_new(list, json_pack("{s:s}", "id", id));
    }
    json_t *o = list ? json_pack("{s:o,s:[]}", "buildings", list, "equipments") : NULL;
    kd_info("GET /api/v2/application/self/resources %d client=%s", o ? 200 : 500, t->client_id);
    int rc =
        o ? sim_http_respond(wsi, 200, o, NULL) : respond_msg(wsi, 500, "Internal error", NULL);
    json_decref(o);
    return finish(wsi, rc);
}

/* kone-sim's liveness probe (a long-running program, like kone-worker's /healthz). Being
 * answered at all shows the service loop turns (it is the only thread); the tick age shows
 * its model timer still fires. Injected faults never touch it: they emulate KONE, this
 * reports on the simulator itself. No credentials, nothing but the two numbers. */
static int handle_healthz(struct lws *wsi, sim_server *s)
{
    int64_t age = now_ms(s) - s->last_sweep_ms;
    bool ok = age <= SIM_HEALTH_STALE_MS;
    json_t *o = json_pack("{s:s,s:I,s:I}", "status", ok ? "ok" : "stale", "tick_age_ms",
                          (json_int_t)(age > 0 ? age : 0), "stale_after_ms",
                          (json_int_t)SIM_HEALTH_STALE_MS);
    if (!ok)
        kd_warn("GET /healthz 503: model tick %lld ms ago", (long long)age);
    int rc = o ? sim_http_respond(wsi, ok ? 200 : 503, o, NULL)
               : respond_msg(wsi, 500, "Internal error", NULL);
    json_decref(o);
    return finish(wsi, rc);
}

/* Decides a WebSocket upgrade. 0 lets it proceed; 1 after answering with an error. */
static int confirm_upgrade(struct lws *wsi, sim_server *s, const char *up)
{
    char path[128] = "", buf[256], proto[256] = "";
    if (!up || strcasecmp(up, "websocket") != 0)
        return -1;
    if (s->hub->faults.refuse_upgrades) {
        int st = s->hub->faults.refuse_upgrades;
        kd_info("upgrade refused: %d (fault: refuse_upgrades)", st);
        refuse_upgrade(wsi, st, sim_fault_status_text(st));
        return 1;
    }
    if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) < 0 ||
        strcmp(path, "/stream-v2") != 0) {
        kd_info("upgrade %s refused: 404", path);
        refuse_upgrade(wsi, 404, "Not found");
        return 1;
    }
    const char *tok = lws_get_urlarg_by_name(wsi, "accessToken=", buf, sizeof buf);
    const sim_token *t = tok ? sim_auth_lookup(s->auth, tok, now_ms(s)) : NULL;
    explicit_bzero(buf, sizeof buf);
    if (!t) {
        kd_info("upgrade /stream-v2 refused: 401 (%s token)", tok ? "unknown or expired" : "no");
        refuse_upgrade(wsi, 401, "Unauthorized");
        return 1;
    }
    bool ok = false;
    if (lws_hdr_copy(wsi, proto, sizeof proto, WSI_TOKEN_PROTOCOL) > 0) {
        char *save = NULL;
        for (char *p = strtok_r(proto, ", ", &save); p; p = strtok_r(NULL, ", ", &save))
            ok = ok || strcmp(p, "koneapi") == 0;
    }
    if (!ok) {
        kd_info("upgrade /stream-v2 refused: 400 (sub-protocol koneapi not requested) client=%s",
                t->client_id);
        refuse_upgrade(wsi, 400, "WebSocket sub-protocol koneapi required");
        return 1;
    }
    return 0;
}

/* The request's query string ("since=5&limit=10"), rebuilt from the arguments lws parsed
 * (and url-decoded). 0, or -1 when it does not fit in len (the request is then refused:
 * dropping a filter silently would answer more than was asked). */
static int copy_query(struct lws *wsi, char *q, size_t len)
{
    size_t o = 0;
    q[0] = '\0';
    for (int i = 0;; i++) {
        int n = lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n <= 0)
            return 0;
        if (o + (size_t)n + 2 > len)
            return -1;
        if (o)
            q[o++] = '&';
        if (lws_hdr_copy_fragment(wsi, q + o, (int)(len - o), WSI_TOKEN_HTTP_URI_ARGS, i) != n)
            return -1;
        o += (size_t)n;
    }
}

/* The control endpoint: control.c decides, this only moves bytes and logs the outcome. */
static int handle_control(struct lws *wsi, sim_server *s, const char *method, const char *path,
                          const char *body, size_t body_len, bool too_big)
{
    char authz[600] = "", query[512], target[sizeof query + 80];
    if (lws_hdr_copy(wsi, authz, sizeof authz, WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
        authz[0] = '\0';
    bool long_query = copy_query(wsi, query, sizeof query) != 0;
    snprintf(target, sizeof target, "%.70s%s%s", path, query[0] ? "?" : "", query);
    char *text = NULL;
    size_t tl = 0;
    int status;
    if (too_big)
        status = 413;
    else if (long_query)
        status = 414;
    else if (!s->ctl)
        status = 404;
    else
        status = sim_control_request_text(s->ctl, method, target, authz[0] ? authz : NULL, body,
                                          body_len, &text, &tl);
    explicit_bzero(authz, sizeof authz);
    if (!text) {
        const char *m = status == 413   ? "{\"message\":\"Request body too large\"}"
                        : status == 414 ? "{\"message\":\"Query string too long\"}"
                        : status == 404 ? "{\"message\":\"Not found\"}"
                                        : "{\"message\":\"Internal error\"}";
        status = status == 413 || status == 414 || status == 404 ? status : 500;
        text = strdup(m);
        tl = text ? strlen(text) : 0;
    }
    if (status == 200)
        kd_debug("%s %s %d (%zu bytes)", method, target, status, tl);
    else
        kd_info("%s %s %d", method, target, status);
    int rc = text ? respond_text(
                        wsi, status, text, tl,
                        status == 401 ? "WWW-Authenticate: Bearer realm=\"kone-sim\"" : NULL, false)
                  : -1;
    free(text);
    if (status == 200)
        sim_server_arm_flush(s); /* a change may have queued status events */
    return finish(wsi, rc);
}

static int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    sim_http_pss *pss = user;
    sim_server *s = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: return confirm_upgrade(wsi, s, in);
    case LWS_CALLBACK_HTTP: {
        const char *path = in ? in : "";
        bool post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
        bool get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
        free(pss->body);
        pss->body = NULL;
        pss->body_len = 0;
        pss->too_big = false;
        pss->control = false;
        bool is_token = strcmp(path, "/api/v2/oauth2/token") == 0;
        if (strncmp(path, "/sim/", 5) == 0) {
            char cl[32] = "";
            const char *method = get ? "GET" : post ? "POST" : "OTHER";
            if (!post || lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0 ||
                strtoll(cl, NULL, 10) == 0)
                return handle_control(wsi, s, method, path, NULL, 0, false);
            pss->control = true;
            snprintf(pss->path, sizeof pss->path, "%s", path);
            return 0; /* wait for the body */
        }
        if (is_token && post) {
            char cl[32] = "";
            if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0 ||
                strtoll(cl, NULL, 10) == 0)
                return handle_token(wsi, s, NULL, 0, false); /* no body coming */
            return 0;                                        /* wait for the body */
        }
        if (strcmp(path, "/api/v2/application/self/resources") == 0 && get)
            return handle_resources(wsi, s);
        if (strcmp(path, "/healthz") == 0 && get)
            return handle_healthz(wsi, s);
        if (is_token || strcmp(path, "/api/v2/application/self/resources") == 0) {
            kd_info("%s %s 405", post ? "POST" : "GET", path);
            return finish(wsi, respond_msg(wsi, 405, "Method not allowed", NULL));
        }
        kd_info("%s %s 404", post ? "POST" : "GET", path);
        return finish(wsi, respond_msg(wsi, 404, "Not found", NULL));
    }
    case LWS_CALLBACK_HTTP_BODY:
        if (pss->too_big || pss->body_len + len > SIM_BODY_MAX) {
            pss->too_big = true;
            return 0;
        }
        {
            char *nb = realloc(pss->body, pss->body_len + len + 1);
            if (!nb)
                return -1;
            if (len) /* an empty POST may come as (NULL, 0): memcpy must not see NULL */
                memcpy(nb + pss->body_len, in, len);
            pss->body = nb;
            pss->body_len += len;
            nb[pss->body_len] = '\0';
        }
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION: {
        char *body = pss->body;
        size_t body_len = pss->body_len;
        bool too_big = pss->too_big, control = pss->control;
        char path[sizeof pss->path];
        snprintf(path, sizeof path, "%s", pss->path);
        pss->body = NULL;
        pss->body_len = 0;
        pss->control = false;
        int rc = control ? handle_control(wsi, s, "POST", path, body, body_len, too_big)
                         : handle_token(wsi, s, body, body_len, too_big);
        free(body);
        return rc;
    }
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (pss) {
            free(pss->body);
            pss->body = NULL;
            pss->body_len = 0;
        }
        return 0;
    default: break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

struct lws_protocols sim_http_protocol(void)
{
    return (struct lws_protocols){
        .name = "http", .callback = http_callback, .per_session_data_size = sizeof(sim_http_pss)};
}
