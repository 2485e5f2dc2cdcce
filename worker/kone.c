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

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kd_list.h"
#include "kd_log.h"
#include "kd_tls.h"
#include "kone_int.h"
#include "kone_inventory.h"
#include "kone_lws.h"

#define SHUTDOWN_MSG "worker shutting down"

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
        kk_subs_free(&k->slots[i].sub);
    kk_sites_free(&k->sites);
    kk_pool_shutdown(&k->pool);
    kk_blds_shutdown(&k->blds);
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
    for (int t = 0; t < k->scope.n_tokens; t++) {
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
    pthread_setname_np(pthread_self(),
                       "kone-loop"); /* top, perf and the bench tell threads apart */
    kd_kone *k = arg;
    for (int i = 0; i < k->pool.n_links; i++)
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

static int parse_ws_url(kk_pool *p, const char *url, kd_err *err)
{
    char *copy = strdup(url);
    if (!copy)
        /* GCOVR_EXCL_START: allocation failure */
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    /* GCOVR_EXCL_STOP */
    const char *prot = NULL, *ads = NULL, *path = NULL;
    int port = 0;
    int rc = 0;
    if (lws_parse_uri(copy, &prot, &ads, &port, &path) || !prot || strcmp(prot, "wss") != 0 ||
        !ads || !*ads) {
        rc = kd_err_set(err, KD_ERR_INVALID,
                        "kone.ws_url: must be wss://HOST[:PORT]/PATH (TLS is required), got '%s'",
                        url);
    } else {
        p->ws_host = strdup(ads);
        p->ws_port = port > 0 ? port : 443;
        size_t n = strlen(path ? path : "") + 2;
        p->ws_path = malloc(n);
        if (!p->ws_host || !p->ws_path)
            /* GCOVR_EXCL_START: allocation failure */
            rc = kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        /* GCOVR_EXCL_STOP */
        else
            snprintf(p->ws_path, n, "/%s", path ? path : "");
    }
    free(copy);
    return rc;
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
        /* GCOVR_EXCL_START: curl_global_init fails only without memory */
        return kd_err_set(err, KD_ERR_INTERNAL, "kone: curl_global_init failed");
    /* GCOVR_EXCL_STOP */
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
    rc = kk_scope_add(&k->scope, list, false, "kone.discover_buildings", err);
    if (!rc && !k->scope.n_buildings)
        rc = kd_err_set(err, KD_ERR_INVALID,
                        "kone.discover_buildings: KONE lists no building for this application");
    if (!rc)
        kd_info("kone: %d building(s) learned from KONE's resources: %.200s", k->scope.n_buildings,
                list);
    free(list);
    return rc;
}

/* The connection layer's configuration (kk_pool, kone_conn.h). */
static int conn_config(kk_pool *p, const kd_config *cfg, kd_err *err)
{
    p->n_links = (int)kd_cfg_int(cfg, KD_CFG_KONE_CONNECTIONS);
    p->request_timeout_us = kd_cfg_int(cfg, KD_CFG_KONE_REQUEST_TIMEOUT_MS) * 1000;
    p->keepalive_us = kd_cfg_int(cfg, KD_CFG_KONE_KEEPALIVE_S) * 1000000;
    p->max_age_us = kd_cfg_int(cfg, KD_CFG_KONE_MAX_CONN_AGE_S) * 1000000;
    p->dns_ttl_us = kd_cfg_int(cfg, KD_CFG_KONE_DNS_TTL_S) * 1000000;
    const char *ca = kd_cfg_str(cfg, KD_CFG_KONE_CA_FILE);
    if (*ca) {
        /* a file with no certificate is a start-up error, as for amqp.ca_file and
         * kafka.ca_file, not every connection refused later */
        int rc = kd_tls_check_paths("kone.ca_file", ca, NULL, NULL, NULL, NULL, err);
        if (rc)
            return rc;
        if (!(p->ca_file = strdup(ca)))
            /* GCOVR_EXCL_START: allocation failure */
            return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        /* GCOVR_EXCL_STOP */
    }
    return parse_ws_url(p, kd_cfg_str(cfg, KD_CFG_KONE_WS_URL), err);
}

/* Each layer reads its own keys (values checked against the table's bounds at load); this
 * reads the token's and the scopes', in the order the errors were always reported. */
static int load_config(kd_kone *k, const kd_config *cfg, kd_kone_token_cfg *tc, kd_err *err)
{
    int rc;
    kk_call_config(&k->call_cfg, cfg);
    kk_site_config(&k->sites.cfg, cfg);
    tc->margin_s = kd_cfg_int(cfg, KD_CFG_KONE_TOKEN_MARGIN_S);
    if ((rc = kk_bld_config(&k->blds.cfg, cfg, err)))
        return rc;
    kd_cc_init(&k->blds.cc, &k->blds.cfg.cc);
    tc->timeout_ms = kd_cfg_int(cfg, KD_CFG_KONE_REQUEST_TIMEOUT_MS);

    tc->token_url = kd_cfg_str(cfg, KD_CFG_KONE_TOKEN_URL);
    tc->client_id = kd_cfg_str(cfg, KD_CFG_KONE_CLIENT_ID);
    tc->client_secret = kd_cfg_str(cfg, KD_CFG_KONE_CLIENT_SECRET);
    if ((rc = kk_scope_add(&k->scope, kd_cfg_str(cfg, KD_CFG_KONE_BUILDINGS), false,
                           "kone.buildings", err)) ||
        (rc = kk_scope_add(&k->scope, kd_cfg_str(cfg, KD_CFG_KONE_ROBOTCALL_BUILDINGS), true,
                           "kone.robotcall_buildings", err)) ||
        (rc = kk_sub_config(&k->subs.cfg, cfg, err)))
        return rc;
    k->scope.per_token = (int)kd_cfg_int(cfg, KD_CFG_KONE_BUILDINGS_PER_TOKEN);
    tc->scope = kd_cfg_str(cfg, KD_CFG_KONE_SCOPE);
    if (*tc->scope && k->scope.per_token > 0 && k->scope.n_buildings > k->scope.per_token)
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
    if ((rc = conn_config(&k->pool, cfg, err)))
        return rc;
    bool discover = kd_cfg_bool(cfg, KD_CFG_KONE_DISCOVER_BUILDINGS);
    if (discover && !k->scope.n_buildings && !*tc->scope && (rc = discover_buildings(k, tc, err)))
        return rc;
    return kk_scope_make(&k->scope, k->pool.n_links, err);
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

/* The loop's context goes, its timer heap first: the heap cancels its one lws timer while the
 * context exists, and the objects freed after it (kone_free) no longer read each other
 * through the heap (kk_timers_stop). */
static void end_loop(kd_kone *k)
{
    kk_timers_stop(&k->pool.timers);
    lws_context_destroy(k->ctx);
}

static void kone_free(kd_kone *k)
{
    kk_pool_free(&k->pool);
    free(k->pool.ca_file);
    kk_scope_free(&k->scope);
    free(k->early);
    KD_SLIST_FREE(k->spare_jobs, spare_next);
    kd_idmap_free(&k->by_req);
    kd_idmap_free(&k->by_sid);
    kk_blds_free(&k->blds);
    if (k->blds.bmu_init)
        pthread_mutex_destroy(&k->blds.bmu);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

int kd_kone_start(kd_kone **out, const kd_config *cfg, const kd_kone_hooks *hooks, kd_err *err)
{
    *out = NULL;
    kd_kone *k = calloc(1, sizeof *k);
    if (!k)
        /* GCOVR_EXCL_START: allocation failure; mutex init fails only without resources */
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    if (pthread_mutex_init(&k->mu, NULL)) {
        free(k);
        return kd_err_set(err, KD_ERR_INTERNAL, "kone: mutex init failed");
    }
    if (pthread_mutex_init(&k->blds.bmu, NULL)) {
        pthread_mutex_destroy(&k->mu);
        free(k);
        return kd_err_set(err, KD_ERR_INTERNAL, "kone: mutex init failed");
    }
    /* GCOVR_EXCL_STOP */
    k->blds.bmu_init = true;
    atomic_init(&k->blds.rate_waits, 0);
    atomic_init(&k->pool.n_ready, 0);
    k->hooks = *hooks;
    /* the layers wired once, here: the connection layer calls up only through this table */
    kk_route_ops(&k->pool.ops);
    k->pool.ops.wakeup = loop_wakeup;
    k->pool.user = k;
    k->blds.pool = k->subs.pool = &k->pool; /* the policies: what they are given */
    k->blds.hooks = k->subs.hooks = &k->hooks;
    k->blds.scope = k->subs.scope = &k->scope;
    k->blds.ops = &kk_call_wake.bld;
    k->subs.ops = &kk_call_wake.sub;
    kk_sites_init(&k->sites, &k->pool, &k->hooks, kk_call_wake.site_released);
    k->pool.rand_state = (unsigned)(kd_mono_us() ^ (int64_t)getpid());
    kd_kone_token_cfg tc = {0};
    int rc = load_config(k, cfg, &tc, err);
    if (rc) {
        kone_free(k);
        return rc;
    }
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        /* GCOVR_EXCL_START: curl_global_init fails only without memory */
        kone_free(k);
        return kd_err_set(err, KD_ERR_INTERNAL, "kone: curl_global_init failed");
        /* GCOVR_EXCL_STOP */
    }
    int64_t to = k->pool.request_timeout_us / 1000000;
    for (int i = 0; i < KK_MAX_SLOTS; i++)
        kk_slot_init(k, &k->slots[i], i);
    /* kone_conn.c finds its pool in the context's user */
    k->ctx = kk_lws_context(kk_protocols, k->pool.ca_file, &k->pool,
                            (unsigned)(to < 5    ? 5
                                       : to > 60 ? 60
                                                 : to));
    if (!k->ctx) {
        /* GCOVR_EXCL_START: kone.ca_file checked at load; fails only without memory */
        /* the message reads k->pool.ca_file: set it before k is freed */
        kd_err_set(err, KD_ERR_INTERNAL,
                   "kone: could not create the libwebsockets context (TLS setup or CA file %s?)",
                   k->pool.ca_file ? k->pool.ca_file : "(system)");
        kone_free(k);
        return KD_ERR_INTERNAL;
        /* GCOVR_EXCL_STOP */
    }
    k->pool.ctx = k->ctx;
    kk_timers_init(&k->pool.timers, k->ctx);
    for (int i = 0; i < KK_MAX_SLOTS; i++)
        k->slots[i].tok = k->slots[i].sub.tok = i % k->scope.n_tokens;
    if (!kd_kone_dns_is_numeric(k->pool.ws_host))
        rc = kd_kone_dns_start(&k->pool.dns, k->pool.ws_host, k->pool.dns_ttl_us, notify_loop, k,
                               err);
    tc.refreshed = k->hooks.metrics.token_refresh; /* the owner's metrics, from each token thread */
    tc.refreshed_arg = k->hooks.arg;
    const char *configured = tc.scope;
    for (int t = 0; t < k->scope.n_tokens && !rc; t++) {
        tc.scope = *configured || !k->scope.scopes[t] ? configured : k->scope.scopes[t];
        rc = kd_kone_tokens_start(&k->tokens[t], &tc, notify_loop, k, err);
    }
    if (rc) {
        stop_tokens(k);
        end_loop(k);
        kone_free(k);
        return rc;
    }
    for (int i = 0; i < KK_MAX_SLOTS; i++) /* the connection layer opens with its token */
        k->slots[i].link.token = k->tokens[k->slots[i].tok];
    int e = pthread_create(&k->thread, NULL, loop_thread, k);
    if (e) {
        /* GCOVR_EXCL_START: thread creation fails only without resources */
        stop_tokens(k);
        end_loop(k);
        kone_free(k);
        return kd_err_set(err, KD_ERR_INTERNAL, "kone: cannot start the loop thread: %s",
                          kd_strerror(e));
        /* GCOVR_EXCL_STOP */
    }
    k->thread_started = true;
    kd_info("kone: client started: %d connection(s) to wss://%s:%d%s", k->pool.n_links,
            k->pool.ws_host, k->pool.ws_port, k->pool.ws_path);
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
    /* the loop takes the whole inbox at once: only the run that finds it empty wakes it
     * (a wake-up is a write and a context switch: issue 17) */
    bool was_empty = !k->inbox_head;
    KD_SLIST_APPEND(k->inbox_head, k->inbox_tail, run, next);
    pthread_mutex_unlock(&k->mu);
    if (was_empty)
        lws_cancel_service(k->ctx);
}

bool kd_kone_ready(kd_kone *k)
{
    if (!k || atomic_load(&k->pool.n_ready) == 0)
        return false;
    for (int t = 0; t < k->scope.n_tokens; t++)
        if (kd_kone_tokens_have(k->tokens[t]))
            return true;
    return false;
}

int kd_kone_links_ready(kd_kone *k)
{
    return k ? atomic_load(&k->pool.n_ready) : 0;
}

/* The per-building getters (any thread): kone_bld.c's table, read under its lock. */
bool kd_kone_building(kd_kone *k, const char *building, kd_kone_building_stats *out)
{
    return k && kk_blds_building(&k->blds, building, out);
}

kd_kone_circuit kd_kone_circuit_state(kd_kone *k, const char *building)
{
    kd_kone_building_stats s;
    return kd_kone_building(k, building, &s) ? s.circuit : KD_KONE_CIRCUIT_CLOSED;
}

int kd_kone_buildings(kd_kone *k, void (*fn)(const kd_kone_building_stats *s, void *arg), void *arg)
{
    return k ? kk_blds_each(&k->blds, fn, arg) : 0;
}

uint64_t kd_kone_rate_limit_waits(kd_kone *k)
{
    return k ? atomic_load(&k->blds.rate_waits) : 0;
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
    end_loop(k);
    kone_free(k);
    kd_info("kone: client stopped");
}
