/* kone.c: the KONE client's public face (kone.h) and its loop thread.
 *
 * kd_kone_start reads the kone.* keys, creates the libwebsockets context (client only,
 * TLS with verification, CA file from kone.ca_file), starts the token thread and then the
 * loop thread, which owns everything else. kd_kone_submit puts a run on a locked inbox
 * and wakes the loop with lws_cancel_service; the loop drains it in
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED, as it picks up new tokens there too.
 *
 * Shutdown: kd_kone_stop flags `stopping` and wakes the loop, which finishes every run it
 * holds as FAILED/transient "worker shutting down" (hooks.done on the loop thread), then
 * leaves lws_service. The context is destroyed after the thread is joined and after the
 * token thread (whose notify uses the context) has stopped. Runs submitted after stop
 * began are finished at once on the caller's thread.
 *
 * libwebsockets logs go through kd_log (errors and warnings only) with any accessToken=
 * value masked: the token travels in the upgrade URL and must never reach a log.
 */
#include "kone.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kd_log.h"
#include "kone_int.h"
#include "kone_inventory.h"

#define SHUTDOWN_MSG "worker shutting down"

/* ------------------------------------------------------------------ lws logging */

static void mask_token(char *line)
{
    for (char *p = strstr(line, "accessToken="); p; p = strstr(p, "accessToken=")) {
        p += 12;
        char *e = p;
        while (*e && *e != '&' && *e != ' ' && *e != '"' && *e != '\'' && *e != '\n')
            e++;
        if (e > p) {
            memmove(p + 3, e, strlen(e) + 1);
            // NOLINTNEXTLINE(bugprone-not-null-terminated-result): 3 bytes inside a string
            memcpy(p, "***", 3);
        }
    }
}

static void lws_log_emit(int level, const char *line)
{
    char buf[768];
    snprintf(buf, sizeof buf, "%s", line);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    mask_token(buf);
    kd_log((level & LLL_ERR) ? KD_LOG_ERROR : KD_LOG_WARN, NULL, "lws: %s", buf);
}

/* ------------------------------------------------------------------ loop thread */

static void notify_loop(void *arg)
{
    kd_kone *k = arg;
    lws_cancel_service(k->ctx);
}

static void shutdown_loop(kd_kone *k, kd_run *inbox)
{
    k->exiting = k->pool.exiting = true;
    while (inbox) {
        kd_run *next = inbox->next;
        inbox->next = NULL;
        kk_finish_run(k, inbox, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "shutdown", SHUTDOWN_MSG);
        inbox = next;
    }
    kk_jobs_fail_all(k, "shutdown", SHUTDOWN_MSG);
    for (int i = 0; i < KK_MAX_SLOTS; i++)
        kk_subs_free(&k->slots[i]);
    kk_sites_free(k);
    kk_pool_shutdown(&k->pool);
    kk_blds_shutdown(k);
}

static void loop_wakeup(void *arg)
{
    kd_kone *k = arg;
    if (k->exiting)
        return;
    pthread_mutex_lock(&k->mu);
    kd_run *list = k->inbox_head;
    k->inbox_head = k->inbox_tail = NULL;
    bool stopping = k->stopping;
    pthread_mutex_unlock(&k->mu);
    if (stopping) {
        shutdown_loop(k, list);
        return;
    }
    while (list) {
        kd_run *next = list->next;
        list->next = NULL;
        kk_job_submit(k, list);
        list = next;
    }
    uint64_t dns_gen = kd_kone_dns_gen(k->pool.dns);
    if (dns_gen != k->dns_gen_seen) { /* a resolution ended: slots waiting for it go on */
        k->dns_gen_seen = dns_gen;
        kk_pool_kick_all(&k->pool);
    }
    for (int t = 0; t < k->n_tokens; t++) {
        uint64_t gen = kd_kone_tokens_gen(k->tokens[t]);
        if (gen != k->token_gen_seen[t]) {
            k->token_gen_seen[t] = gen;
            if (gen)
                kk_pool_kick_all(&k->pool);
        }
    }
}

static void *loop_thread(void *arg)
{
    kd_kone *k = arg;
    for (int i = 0; i < k->n_slots; i++)
        kk_slot_kick(&k->slots[i]);
    loop_wakeup(k); /* runs submitted before the thread ran */
    while (!k->exiting)
        if (lws_service(k->ctx, 0) < 0)
            break;
    if (!k->exiting) { /* lws gave up: still answer for every run */
        pthread_mutex_lock(&k->mu);
        kd_run *list = k->inbox_head;
        k->inbox_head = k->inbox_tail = NULL;
        k->stopping = true;
        pthread_mutex_unlock(&k->mu);
        kd_error("kone: service loop failed; failing every run");
        shutdown_loop(k, list);
    }
    return NULL;
}

/* ------------------------------------------------------------------ configuration */

/* The value was checked against the table's bounds at load, so this cannot fail. It keeps
 * the shape `if ((rc = read_int(...))) return rc;` so that each read here stayed a one-line
 * change while the KONE client is being split into layers; collapse after that merge. */
static int read_int(const kd_config *cfg, kd_config_id id, int64_t *out)
{
    *out = kd_cfg_int(cfg, id);
    return 0;
}

static int parse_ws_url(kd_kone *k, const char *url, kd_err *err)
{
    char *copy = strdup(url);
    if (!copy)
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    const char *prot = NULL, *ads = NULL, *path = NULL;
    int port = 0;
    int rc = 0;
    if (lws_parse_uri(copy, &prot, &ads, &port, &path) || !prot || strcmp(prot, "wss") != 0 ||
        !ads || !*ads) {
        rc = kd_err_set(err, KD_ERR_INVALID,
                        "kone.ws_url: must be wss://HOST[:PORT]/PATH (TLS is required), got '%s'",
                        url);
    } else {
        k->pool.ws_host = strdup(ads);
        k->pool.ws_port = port > 0 ? port : 443;
        size_t n = strlen(path ? path : "") + 2;
        k->pool.ws_path = malloc(n);
        if (!k->pool.ws_host || !k->pool.ws_path)
            rc = kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        else
            snprintf(k->pool.ws_path, n, "/%s", path ? path : "");
    }
    free(copy);
    return rc;
}

/* kone.buildings (and kone.robotcall_buildings, robot set): "building:<id>" each, once; a
 * robotcall building gets the robotcall scope instead of callgiving (make_scopes). */
static int load_buildings(kd_kone *k, const char *list, bool robot, const char *key, kd_err *err)
{
    char *copy = strdup(list), *save = NULL;
    if (!copy)
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    int rc = 0;
    for (char *t = strtok_r(copy, " ,", &save); t && !rc; t = strtok_r(NULL, " ,", &save)) {
        const char *id = strncmp(t, "building:", 9) == 0 ? t + 9 : t;
        bool ok = *id && strlen(id) < KD_JOB_BUILDING_MAX - 9;
        for (const char *p = id; ok && *p; p++)
            ok = isalnum((unsigned char)*p) || *p == '-' || *p == '_';
        if (!ok) {
            rc = kd_err_set(err, KD_ERR_INVALID,
                            "%s: '%.80s' is not a building id (digits, letters, - "
                            "and _, optionally after 'building:')",
                            key, t);
            break;
        }
        int i = 0;
        while (i < k->n_buildings && strcmp(k->buildings[i] + 9, id) != 0)
            i++;
        if (i < k->n_buildings) { /* listed twice, or in both keys */
            k->robot[i] = k->robot[i] || robot;
            continue;
        }
        char **nb = realloc(k->buildings, (size_t)(k->n_buildings + 1) * sizeof *nb);
        if (nb)
            k->buildings = nb;
        bool *nr = nb ? realloc(k->robot, (size_t)(k->n_buildings + 1) * sizeof *nr) : NULL;
        if (nr)
            k->robot = nr;
        if (!nr || !(nb[k->n_buildings] = malloc(strlen(id) + 10))) {
            rc = kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        } else {
            k->robot[k->n_buildings] = robot;
            sprintf(k->buildings[k->n_buildings++], "building:%s", id);
        }
    }
    free(copy);
    return rc;
}

/* The tokens kone.buildings needs (KONE caps the scopes of one token: per_token buildings
 * each) and the callgiving scope of each. */
static int make_scopes(kd_kone *k, kd_err *err)
{
    k->n_tokens = 1;
    if (!k->n_buildings)
        return 0;
    if (k->per_token > 0)
        k->n_tokens = (k->n_buildings + k->per_token - 1) / k->per_token;
    if (k->n_tokens > KK_MAX_TOKENS)
        return kd_err_set(err, KD_ERR_INVALID,
                          "kone.buildings: %d buildings at %d per token need %d tokens; at most "
                          "%d (raise kone.buildings_per_token or run more workers)",
                          k->n_buildings, k->per_token, k->n_tokens, KK_MAX_TOKENS);
    if (k->n_tokens > k->n_slots)
        return kd_err_set(err, KD_ERR_INVALID,
                          "kone.connections: %d, but kone.buildings needs %d tokens and each "
                          "token needs a connection of its own",
                          k->n_slots, k->n_tokens);
    for (int t = 0; t < k->n_tokens; t++) {
        size_t len = 1;
        for (int i = 0; i < k->n_buildings; i++)
            len += strlen(k->buildings[i]) + 12;
        if (!(k->scopes[t] = calloc(1, len)))
            return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        for (int i = 0; i < k->n_buildings; i++)
            if (kk_token_of(k, k->buildings[i]) == t)
                sprintf(k->scopes[t] + strlen(k->scopes[t]), "%s%s/%s", k->scopes[t][0] ? " " : "",
                        k->robot[i] ? "robotcall" : "callgiving", k->buildings[i]);
    }
    return 0;
}

/* kone.lift_modes_refused: "code:NAME,code:NAME". */
static int load_modes(kd_kone *k, const char *list, kd_err *err)
{
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        char *end;
        long long code = strtoll(p, &end, 10);
        size_t n = end[0] == ':' ? strcspn(end + 1, " ,") : 0;
        if (end == p || !n || n >= sizeof k->modes[0].name || k->n_modes >= KK_MODES_MAX)
            return kd_err_set(err, KD_ERR_INVALID,
                              "kone.lift_modes_refused: expected code:NAME pairs separated by "
                              "commas (at most %d), got '%.80s'",
                              KK_MODES_MAX, list);
        k->modes[k->n_modes].code = code;
        snprintf(k->modes[k->n_modes].name, sizeof k->modes[0].name, "%.*s", (int)n, end + 1);
        k->n_modes++;
        p = end + 1 + n;
    }
    return 0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* kone.discover_buildings: the application's buildings from KONE's resources list, served
 * as if listed in kone.buildings. A few tries a second apart (KONE or its token endpoint
 * may be starting too); then the worker does not start (kone_inventory.h says why). */
static int discover_buildings(kd_kone *k, const kd_kone_token_cfg *tc, kd_err *err)
{
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return kd_err_set(err, KD_ERR_INTERNAL, "kone: curl_global_init failed");
    char *list = NULL;
    int rc = 0;
    for (int attempt = 1; attempt <= 3; attempt++) {
        rc = kd_kone_inventory_fetch(tc, &list, err);
        if (!rc || rc == KD_ERR_AUTH || rc == KD_ERR_DECODE)
            break;
        kd_warn("kone: learning the buildings from KONE failed (attempt %d of 3): %s", attempt,
                err->msg);
        if (attempt < 3)
            nanosleep(&(struct timespec){.tv_sec = 1}, NULL); /* sleep(3) is MT-Unsafe */
    }
    if (rc)
        return kd_err_wrap(err, "kone.discover_buildings");
    rc = load_buildings(k, list, false, "kone.discover_buildings", err);
    if (!rc && !k->n_buildings)
        rc = kd_err_set(err, KD_ERR_INVALID,
                        "kone.discover_buildings: KONE lists no building for this application");
    if (!rc)
        kd_info("kone: %d building(s) learned from KONE's resources: %.200s", k->n_buildings, list);
    free(list);
    return rc;
}

static int load_config(kd_kone *k, const kd_config *cfg, kd_kone_token_cfg *tc, kd_err *err)
{
    int64_t v;
    int rc;
    if ((rc = read_int(cfg, KD_CFG_KONE_CONNECTIONS, &v)))
        return rc;
    k->n_slots = (int)v;
    if ((rc = read_int(cfg, KD_CFG_KONE_REQUEST_TIMEOUT_MS, &v)))
        return rc;
    k->request_timeout_us = v * 1000;
    if ((rc = read_int(cfg, KD_CFG_KONE_CALL_TIMEOUT_MS, &v)))
        return rc;
    k->call_timeout_us = v * 1000;
    if ((rc = read_int(cfg, KD_CFG_KONE_TRACK_TIMEOUT_MS, &v)))
        return rc;
    k->track_timeout_us = v * 1000;
    if ((rc = read_int(cfg, KD_CFG_KONE_KEEPALIVE_S, &v)))
        return rc;
    k->pool.keepalive_us = v * 1000000;
    if ((rc = read_int(cfg, KD_CFG_KONE_MAX_CONN_AGE_S, &v)))
        return rc;
    k->pool.max_age_us = v * 1000000;
    if ((rc = read_int(cfg, KD_CFG_KONE_DNS_TTL_S, &v)))
        return rc;
    k->dns_ttl_us = v * 1000000;
    if ((rc = read_int(cfg, KD_CFG_KONE_MONITOR_DURATION_S, &v)))
        return rc;
    k->monitor_duration_s = (int)v;
    if ((rc = read_int(cfg, KD_CFG_KONE_CONFIG_TTL_S, &v)))
        return rc;
    k->config_ttl_us = v * 1000000;
    k->validate_locally = kd_cfg_bool(cfg, KD_CFG_KONE_VALIDATE_LOCALLY);
    if ((rc = read_int(cfg, KD_CFG_KONE_TOKEN_MARGIN_S, &v)))
        return rc;
    tc->margin_s = v;
    if ((rc = read_int(cfg, KD_CFG_KONE_BREAKER_FAILURE_RATE, &v)))
        return rc;
    k->brk_cfg.rate_pct = (int)v;
    if ((rc = read_int(cfg, KD_CFG_KONE_BREAKER_MIN_CALLS, &v)))
        return rc;
    k->brk_cfg.min_calls = (int)v;
    if ((rc = read_int(cfg, KD_CFG_KONE_BREAKER_WINDOW_CALLS, &v)))
        return rc;
    k->brk_cfg.calls = (int)v;
    if ((rc = read_int(cfg, KD_CFG_KONE_BREAKER_WINDOW_MS, &v)))
        return rc;
    k->brk_cfg.window_us = v * 1000;
    if ((rc = read_int(cfg, KD_CFG_KONE_BREAKER_TRIAL_CALLS, &v)))
        return rc;
    k->brk_cfg.trials = (int)v;
    if ((rc = read_int(cfg, KD_CFG_KONE_BREAKER_PROBE_BASE_MS, &v)))
        return rc;
    k->brk_cfg.base_us = v * 1000;
    if ((rc = read_int(cfg, KD_CFG_KONE_BREAKER_PROBE_CAP_MS, &v)))
        return rc;
    k->brk_cfg.cap_us = v * 1000;
    if (k->brk_cfg.cap_us < k->brk_cfg.base_us)
        return kd_err_set(err, KD_ERR_INVALID,
                          "kone.breaker_probe_cap_ms: must be at least "
                          "kone.breaker_probe_base_ms (%lld)",
                          (long long)(k->brk_cfg.base_us / 1000));
    /* adaptive concurrency (kone_conc.h): per building and for the worker, at most
     * worker.inflight (the jobs the worker holds at once) */
    if ((rc = read_int(cfg, KD_CFG_WORKER_INFLIGHT, &v)))
        return rc;
    k->cc_cfg.max = (int)v;
    if ((rc = read_int(cfg, KD_CFG_KONE_CONCURRENCY_MIN, &v)))
        return rc;
    k->cc_cfg.min = v < k->cc_cfg.max ? (int)v : k->cc_cfg.max;
    if ((rc = read_int(cfg, KD_CFG_KONE_CONCURRENCY_DECREASE_PCT, &v)))
        return rc;
    k->cc_cfg.decrease_pct = (int)v;
    kd_cc_init(&k->cc, &k->cc_cfg);
    if ((rc = kk_bld_config(k, cfg, err)))
        return rc;
    if ((rc = read_int(cfg, KD_CFG_KONE_RATE_PER_S, &v)))
        return rc;
    k->rate_per_s = (double)v;
    if ((rc = read_int(cfg, KD_CFG_KONE_RATE_BURST, &v)))
        return rc;
    k->rate_burst = (double)v;
    tc->timeout_ms = k->request_timeout_us / 1000;

    tc->token_url = kd_cfg_str(cfg, KD_CFG_KONE_TOKEN_URL);
    tc->client_id = kd_cfg_str(cfg, KD_CFG_KONE_CLIENT_ID);
    tc->client_secret = kd_cfg_str(cfg, KD_CFG_KONE_CLIENT_SECRET);
    if ((rc = load_buildings(k, kd_cfg_str(cfg, KD_CFG_KONE_BUILDINGS), false, "kone.buildings",
                             err)) ||
        (rc = load_buildings(k, kd_cfg_str(cfg, KD_CFG_KONE_ROBOTCALL_BUILDINGS), true,
                             "kone.robotcall_buildings", err)) ||
        (rc = load_modes(k, kd_cfg_str(cfg, KD_CFG_KONE_LIFT_MODES_REFUSED), err)))
        return rc;
    k->hold_group_mode = strcmp(kd_cfg_str(cfg, KD_CFG_KONE_GROUP_MODE_POLICY), "hold") == 0;
    if ((rc = read_int(cfg, KD_CFG_KONE_BUILDINGS_PER_TOKEN, &v)))
        return rc;
    k->per_token = (int)v;
    tc->scope = kd_cfg_str(cfg, KD_CFG_KONE_SCOPE);
    if (*tc->scope && k->per_token > 0 && k->n_buildings > k->per_token)
        return kd_err_set(err, KD_ERR_INVALID,
                          "kone.scope is set, but kone.buildings needs more than one token "
                          "(kone.buildings_per_token): leave kone.scope empty");
    tc->ca_file = kd_cfg_str(cfg, KD_CFG_KONE_CA_FILE);
    if (strncmp(tc->token_url, "https://", 8) != 0)
        return kd_err_set(err, KD_ERR_INVALID,
                          "kone.token_url: must be an https:// URL (TLS is required), got '%s'",
                          tc->token_url);
    if (!*tc->client_id)
        return kd_err_set(err, KD_ERR_INVALID, "kone.client_id: required");
    if (!*tc->client_secret)
        return kd_err_set(err, KD_ERR_INVALID,
                          "kone.client_secret: required (KD_KONE_CLIENT_SECRET or "
                          "KD_KONE_CLIENT_SECRET_FILE)");
    if (*tc->ca_file) {
        if (access(tc->ca_file, R_OK) != 0)
            return kd_err_set(err, KD_ERR_INVALID, "kone.ca_file: cannot read %s", tc->ca_file);
        if (!(k->ca_file = strdup(tc->ca_file)))
            return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    }
    if ((rc = parse_ws_url(k, kd_cfg_str(cfg, KD_CFG_KONE_WS_URL), err)))
        return rc;
    bool discover = kd_cfg_bool(cfg, KD_CFG_KONE_DISCOVER_BUILDINGS);
    if (discover && !k->n_buildings && !*tc->scope && (rc = discover_buildings(k, tc, err)))
        return rc;
    return make_scopes(k, err);
}

/* ------------------------------------------------------------------ public API */

static void stop_tokens(kd_kone *k)
{
    kd_kone_dns_stop(k->pool.dns); /* its notify uses the context too */
    k->pool.dns = NULL;
    for (int i = 0; i < KK_MAX_SLOTS; i++)
        k->slots[i].link.token = NULL;
    for (int t = 0; t < KK_MAX_TOKENS; t++) {
        kd_kone_tokens_stop(k->tokens[t]);
        k->tokens[t] = NULL;
    }
}

static void kone_free(kd_kone *k)
{
    kk_pool_free(&k->pool);
    free(k->ca_file);
    for (int i = 0; i < k->n_buildings; i++)
        free(k->buildings[i]);
    free(k->buildings);
    free(k->robot);
    for (int t = 0; t < KK_MAX_TOKENS; t++)
        free(k->scopes[t]);
    free(k->early);
    kd_idmap_free(&k->by_req);
    kd_idmap_free(&k->by_sid);
    kk_blds_free(k);
    if (k->bmu_init)
        pthread_mutex_destroy(&k->bmu);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

int kd_kone_start(kd_kone **out, const kd_config *cfg, const kd_kone_hooks *hooks, kd_err *err)
{
    *out = NULL;
    kd_kone *k = calloc(1, sizeof *k);
    if (!k)
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    if (pthread_mutex_init(&k->mu, NULL)) {
        free(k);
        return kd_err_set(err, KD_ERR_INTERNAL, "kone: mutex init failed");
    }
    if (pthread_mutex_init(&k->bmu, NULL)) {
        pthread_mutex_destroy(&k->mu);
        free(k);
        return kd_err_set(err, KD_ERR_INTERNAL, "kone: mutex init failed");
    }
    k->bmu_init = true;
    atomic_init(&k->rate_waits, 0);
    atomic_init(&k->pool.n_ready, 0);
    k->hooks = *hooks;
    /* the layers wired once, here: the connection layer calls up only through this table */
    kk_route_ops(&k->pool.ops);
    k->pool.ops.wakeup = loop_wakeup;
    k->pool.user = k;
    k->wake = &kk_call_wake;
    k->pool.rand_state = (unsigned)(kd_mono_us() ^ (int64_t)getpid());
    /* the subscriber id of our site-monitoring subscriptions (KONE: unique per subscriber) */
    snprintf(k->sub_name, sizeof k->sub_name, "kone-dispatch-%d", (int)getpid());
    kd_kone_token_cfg tc = {0};
    int rc = load_config(k, cfg, &tc, err);
    if (rc) {
        kone_free(k);
        return rc;
    }
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        kone_free(k);
        return kd_err_set(err, KD_ERR_INTERNAL, "kone: curl_global_init failed");
    }
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = kk_protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.client_ssl_ca_filepath = k->ca_file;
    info.user = &k->pool; /* kone_conn.c finds its pool there */
    info.gid = -1;
    info.uid = -1;
    int64_t to = k->request_timeout_us / 1000000;
    info.timeout_secs = (unsigned)(to < 5 ? 5 : to > 60 ? 60 : to);
    for (int i = 0; i < KK_MAX_SLOTS; i++)
        kk_slot_init(k, &k->slots[i], i);
    k->ctx = lws_create_context(&info);
    if (!k->ctx) {
        /* the message reads k->ca_file: set it before k is freed */
        kd_err_set(err, KD_ERR_INTERNAL,
                   "kone: could not create the libwebsockets context (TLS setup or CA file %s?)",
                   k->ca_file ? k->ca_file : "(system)");
        kone_free(k);
        return KD_ERR_INTERNAL;
    }
    k->pool.ctx = k->ctx;
    k->pool.ca_file = k->ca_file; /* the connections' own TLS (kone_tls.h) */
    k->pool.request_timeout_us = k->request_timeout_us;
    k->pool.n_links = k->n_slots;
    for (int i = 0; i < KK_MAX_SLOTS; i++)
        k->slots[i].tok = i % k->n_tokens;
    if (!kd_kone_dns_is_numeric(k->pool.ws_host))
        rc = kd_kone_dns_start(&k->pool.dns, k->pool.ws_host, k->dns_ttl_us, notify_loop, k, err);
    tc.refreshed = k->hooks.metrics.token_refresh; /* the owner's metrics, from each token thread */
    tc.refreshed_arg = k->hooks.arg;
    const char *configured = tc.scope;
    for (int t = 0; t < k->n_tokens && !rc; t++) {
        tc.scope = *configured || !k->scopes[t] ? configured : k->scopes[t];
        rc = kd_kone_tokens_start(&k->tokens[t], &tc, notify_loop, k, err);
    }
    if (rc) {
        stop_tokens(k);
        lws_context_destroy(k->ctx);
        kone_free(k);
        return rc;
    }
    for (int i = 0; i < KK_MAX_SLOTS; i++) /* the connection layer opens with its token */
        k->slots[i].link.token = k->tokens[k->slots[i].tok];
    int e = pthread_create(&k->thread, NULL, loop_thread, k);
    if (e) {
        stop_tokens(k);
        lws_context_destroy(k->ctx);
        kone_free(k);
        return kd_err_set(err, KD_ERR_INTERNAL, "kone: cannot start the loop thread: %s",
                          kd_strerror(e));
    }
    k->thread_started = true;
    kd_info("kone: client started: %d connection(s) to wss://%s:%d%s", k->n_slots, k->pool.ws_host,
            k->pool.ws_port, k->pool.ws_path);
    *out = k;
    return 0;
}

void kd_kone_submit(kd_kone *k, kd_run *run)
{
    run->next = NULL;
    pthread_mutex_lock(&k->mu);
    if (k->stopping) {
        pthread_mutex_unlock(&k->mu);
        kk_finish_run(k, run, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "shutdown", SHUTDOWN_MSG);
        return;
    }
    if (k->inbox_tail)
        k->inbox_tail->next = run;
    else
        k->inbox_head = run;
    k->inbox_tail = run;
    pthread_mutex_unlock(&k->mu);
    lws_cancel_service(k->ctx);
}

bool kd_kone_ready(kd_kone *k)
{
    if (!k || atomic_load(&k->pool.n_ready) == 0)
        return false;
    for (int t = 0; t < k->n_tokens; t++)
        if (kd_kone_tokens_have(k->tokens[t]))
            return true;
    return false;
}

void kd_kone_stop(kd_kone *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->mu);
    k->stopping = true;
    pthread_mutex_unlock(&k->mu);
    lws_cancel_service(k->ctx);
    if (k->thread_started)
        pthread_join(k->thread, NULL);
    stop_tokens(k);                      /* before the context: their notify uses the context */
    k->exiting = k->pool.exiting = true; /* close callbacks during destroy do nothing */
    lws_context_destroy(k->ctx);
    kone_free(k);
    kd_info("kone: client stopped");
}
