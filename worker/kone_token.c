/* kone_token.c: OAuth2 client credentials for KONE (see kone_token.h for the design).
 *
 * Invariants: the token thread is the only caller of curl; the token text is touched only
 * under `mu`; every buffer that held the secret or a token is zeroed before it is freed.
 */
#include "kone_token.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kd_log.h"
#include "kd_time.h"
#include "kd_str.h"

#define TOKEN_MAX_LIFE_S (365LL * 24 * 3600) /* longest expires_in taken as it is */
#define BODY_MAX (64 * 1024)

/* ------------------------------------------------------------------ pure parts */

void kd_kone_mask(char *buf, size_t len, const char *secret)
{
    if (!buf || !secret || !*secret || len == 0)
        return;
    size_t sl = strlen(secret);
    char *from = buf;
    char *p;
    while ((p = strstr(from, secret)) != NULL) {
        size_t head = (size_t)(p - buf);
        if (head + 4 > len) { /* no room even for the mask: cut here */
            *p = '\0';
            break;
        }
        size_t keep = strlen(p + sl);
        if (head + 3 + keep + 1 > len)
            keep = len - head - 4;
        memmove(p + 3, p + sl, keep);
        memcpy(p, "***", 3);
        p[3 + keep] = '\0';
        from = p + 3; /* never rescan the mask itself (a secret like "**") */
    }
}

void kd_kone_token_clear(kd_kone_token *t)
{
    if (t->access_token) {
        explicit_bzero(t->access_token, strlen(t->access_token));
        free(t->access_token);
    }
    memset(t, 0, sizeof *t);
}

int64_t kd_kone_token_refresh_at(const kd_kone_token *t, int64_t margin_s)
{
    int64_t life = t->expires_in_s;
    int64_t margin = margin_s < 0 ? 0 : margin_s;
    if (margin > life / 2)
        margin = life / 2;
    return t->obtained_us + (life - margin) * 1000000;
}

bool kd_kone_token_needs_refresh(const kd_kone_token *t, int64_t now_us, int64_t margin_s)
{
    if (!t->access_token || t->expires_in_s <= 0)
        return true;
    return now_us >= kd_kone_token_refresh_at(t, margin_s);
}

int64_t kd_kone_token_backoff_us(int failures)
{
    int64_t d = 1000000;
    for (int i = 1; i < failures && d < 30000000; i++)
        d *= 2;
    return d > 30000000 ? 30000000 : d;
}

/* KONE's (or any OAuth2 server's) explanation of a refusal, masked. */
static void refusal_text(const char *body, size_t len, const char *secret, char *out,
                         size_t out_len)
{
    out[0] = '\0';
    json_t *j = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    if (!json_is_object(j)) {
        json_decref(j);
        return;
    }
    const char *e = json_string_value(json_object_get(j, "error"));
    const char *d = json_string_value(json_object_get(j, "error_description"));
    const char *m = json_string_value(json_object_get(j, "message"));
    if (e && d)
        snprintf(out, out_len, ": %s (%s)", e, d);
    else if (e || d || m)
        snprintf(out, out_len, ": %s", e ? e : d ? d : m);
    json_decref(j);
    kd_kone_mask(out, out_len, secret);
}

int kd_kone_token_parse(const char *body, size_t len, long http_status, const char *secret,
                        kd_kone_token *out, kd_err *err)
{
    memset(out, 0, sizeof *out);
    if (http_status != 200) {
        char why[200];
        refusal_text(body, len, secret, why, sizeof why);
        int code = (http_status == 400 || http_status == 401 || http_status == 403) ? KD_ERR_AUTH
                                                                                    : KD_ERR_IO;
        return kd_err_set(err, code, "token endpoint answered HTTP %ld%s%s", http_status, why,
                          code == KD_ERR_AUTH ? " (check kone.client_id, kone.client_secret "
                                                "and kone.scope)"
                                              : "");
    }
    json_error_t jerr;
    json_t *j = body ? json_loadb(body, len, 0, &jerr) : NULL;
    if (!j)
        return kd_err_set(err, KD_ERR_DECODE, "token answer is not JSON (byte %d)",
                          body ? jerr.position : 0);
    int rc = 0;
    const json_t *at = json_object_get(j, "access_token");
    const json_t *ex = json_object_get(j, "expires_in");
    int64_t exp = 0;
    if (json_is_integer(ex))
        exp = (int64_t)json_integer_value(ex);
    else if (json_is_real(ex)) /* compared before the cast: a huge double cannot convert */
        exp = json_real_value(ex) >= TOKEN_MAX_LIFE_S
                  ? TOKEN_MAX_LIFE_S
                  : (int64_t)(json_real_value(ex) > 0 ? json_real_value(ex) : 0);
    else if (json_is_string(ex)) /* some servers send it quoted */
        exp = strtoll(json_string_value(ex), NULL, 10);
    /* A lifetime past a year is taken as a year, so µs arithmetic on it cannot overflow
     * (scripts/fuzz kone_token found a float beyond int64's range); the token is replaced
     * long before, on a 401 at the latest. */
    if (exp > TOKEN_MAX_LIFE_S)
        exp = TOKEN_MAX_LIFE_S;
    if (!json_is_object(j)) {
        rc = kd_err_set(err, KD_ERR_DECODE, "token answer is not a JSON object");
    } else if (!json_is_string(at) || json_string_length(at) == 0) {
        rc = kd_err_set(err, KD_ERR_DECODE, "token answer has no access_token string");
    } else if (json_string_length(at) >= KD_KONE_TOKEN_MAX) {
        rc = kd_err_set(err, KD_ERR_DECODE, "token answer: access_token longer than %d bytes",
                        KD_KONE_TOKEN_MAX);
    } else if (exp <= 0) {
        rc = kd_err_set(err, KD_ERR_DECODE, "token answer has no positive expires_in");
    } else {
        const char *tt = json_string_value(json_object_get(j, "token_type"));
        if (tt && strcasecmp(tt, "Bearer") != 0) {
            /* Masked before it is cut to 32 bytes, so no part of the secret is quoted
             * (scripts/fuzz kone_token found the unmasked echo). */
            char *shown = strdup(tt);
            if (shown)
                kd_kone_mask(shown, strlen(shown) + 1, secret);
            rc = kd_err_set(err, KD_ERR_DECODE, "token answer: token_type '%.32s' is not Bearer",
                            shown ? shown : "?");
            free(shown);
        } else {
            out->access_token = strdup(json_string_value(at));
            if (!out->access_token) {
                /* GCOVR_EXCL_START: allocation failure */
                rc = kd_err_set(err, KD_ERR_NOMEM, "out of memory");
                /* GCOVR_EXCL_STOP */
            }
            out->expires_in_s = exp;
        }
    }
    /* jansson's copy of the token: zero it before the object is freed */
    if (json_is_string(at))
        explicit_bzero((char *)json_string_value(at), json_string_length(at));
    json_decref(j);
    if (rc)
        kd_kone_token_clear(out);
    return rc;
}

/* ------------------------------------------------------------------ the fetch */

CURLcode kd_kone_curl_https(CURL *c, const char *url, const char *ca_file, long timeout_ms,
                            kd_kone_body *body, char *ebuf)
{
    CURLcode cc = CURLE_OK;
#define SET(opt, val)                                                                              \
    if (cc == CURLE_OK)                                                                            \
    cc = curl_easy_setopt(c, opt, val)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PROTOCOLS_STR, "https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "https");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (ca_file && *ca_file)
        SET(CURLOPT_CAINFO, ca_file);
    SET(CURLOPT_TIMEOUT_MS, timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 5000 ? timeout_ms : 5000L);
    SET(CURLOPT_WRITEFUNCTION, kd_kone_body_write);
    SET(CURLOPT_WRITEDATA, body);
    SET(CURLOPT_ERRORBUFFER, ebuf);
    SET(CURLOPT_USERAGENT, "kone-worker/" KD_VERSION);
#undef SET
    return cc;
}

size_t kd_kone_body_write(char *data, size_t size, size_t nmemb, void *arg)
{
    kd_kone_body *b = arg;
    size_t n = size * nmemb;
    if (b->n + n > b->max) {
        b->overflow = true;
        return 0;
    }
    char *np = realloc(b->p, b->n + n + 1);
    if (!np)
        return 0;
    b->p = np;
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    const atomic_bool *abort_flag = arg;
    return abort_flag && atomic_load(abort_flag) ? 1 : 0;
}

static int fetch_with_abort(const kd_kone_token_cfg *cfg, const atomic_bool *abort_flag,
                            kd_kone_token *out, kd_err *err)
{
    memset(out, 0, sizeof *out);
    CURL *c = curl_easy_init();
    if (!c)
        /* GCOVR_EXCL_START: curl_easy_init fails only when allocation fails */
        return kd_err_set(err, KD_ERR_NOMEM, "token: curl_easy_init failed");
    /* GCOVR_EXCL_STOP */
    int rc = 0;
    kd_kone_body body = {.max = (size_t)BODY_MAX};
    char *form = NULL, *esc = NULL;
    char ebuf[CURL_ERROR_SIZE] = "";
    if (cfg->scope && *cfg->scope) {
        esc = curl_easy_escape(c, cfg->scope, 0);
        if (!esc || asprintf(&form, "grant_type=client_credentials&scope=%s", esc) < 0)
            form = NULL;
    } else {
        form = strdup("grant_type=client_credentials");
    }
    if (!form) {
        /* GCOVR_EXCL_START: allocation failure */
        rc = kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        goto out;
        /* GCOVR_EXCL_STOP */
    }
    long timeout = cfg->timeout_ms > 0 ? (long)cfg->timeout_ms : 10000;
    CURLcode cc = kd_kone_curl_https(c, cfg->token_url, cfg->ca_file, timeout, &body, ebuf);
#define SET(opt, val)                                                                              \
    if (cc == CURLE_OK)                                                                            \
    cc = curl_easy_setopt(c, opt, val)
    SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    SET(CURLOPT_USERNAME, cfg->client_id);
    SET(CURLOPT_PASSWORD, cfg->client_secret);
    SET(CURLOPT_POSTFIELDS, form);
    SET(CURLOPT_NOPROGRESS, 0L);
    SET(CURLOPT_XFERINFOFUNCTION, on_progress);
    SET(CURLOPT_XFERINFODATA, (void *)abort_flag);
#undef SET
    if (cc != CURLE_OK) {
        rc = kd_err_set(err, KD_ERR_INTERNAL, "token: curl option: %s", curl_easy_strerror(cc));
        goto out;
    }
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        const char *what = ebuf[0] ? ebuf : curl_easy_strerror(cc);
        char msg[CURL_ERROR_SIZE + 64];
        kd_str_copy(msg, sizeof msg, what);
        kd_kone_mask(msg, sizeof msg, cfg->client_secret);
        if (cc == CURLE_ABORTED_BY_CALLBACK)
            rc = kd_err_set(err, KD_ERR_IO, "token fetch aborted (shutting down)");
        else if (body.overflow)
            rc = kd_err_set(err, KD_ERR_DECODE, "token answer longer than %d bytes", BODY_MAX);
        else
            rc = kd_err_set(err, cc == CURLE_OPERATION_TIMEDOUT ? KD_ERR_TIMEOUT : KD_ERR_IO,
                            "token request to %s failed: %s", cfg->token_url, msg);
        goto out;
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    rc = kd_kone_token_parse(body.p, body.n, status, cfg->client_secret, out, err);
    if (rc)
        kd_err_wrap(err, "%s", cfg->token_url);
out:
    if (body.p) {
        explicit_bzero(body.p, body.n);
        free(body.p);
    }
    curl_free(esc);
    free(form);
    curl_easy_cleanup(c);
    return rc;
}

int kd_kone_token_fetch(const kd_kone_token_cfg *cfg, kd_kone_token *out, kd_err *err)
{
    return fetch_with_abort(cfg, NULL, out, err);
}

/* ------------------------------------------------------------------ the token thread */

struct kd_kone_tokens {
    kd_kone_token_cfg cfg; /* strings below are our own copies */
    char *s_url, *s_id, *s_secret, *s_scope, *s_ca;
    void (*notify)(void *);
    void *notify_arg;

    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    atomic_bool abort;

    kd_kone_token tok; /* under mu */
    uint64_t gen;
    bool have;
    bool force;
    int failures;
    int64_t next_try_us;
    char last_err[300];
};

static void wait_until(kd_kone_tokens *t, int64_t mono_us)
{
    struct timespec ts;
    if (mono_us <= 0) {
        pthread_cond_wait(&t->cv, &t->mu);
        return;
    }
    ts.tv_sec = mono_us / 1000000;
    ts.tv_nsec = (mono_us % 1000000) * 1000;
    pthread_cond_timedwait(&t->cv, &t->mu, &ts);
}

static void *token_thread(void *arg)
{
    pthread_setname_np(pthread_self(),
                       "kone-token"); /* top, perf and the bench tell threads apart */
    kd_kone_tokens *t = arg;
    int (*fetch)(const kd_kone_token_cfg *, kd_kone_token *, kd_err *) = t->cfg.fetch;
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        int64_t now = kd_mono_us();
        bool due =
            t->force || !t->have || kd_kone_token_needs_refresh(&t->tok, now, t->cfg.margin_s);
        if (due && now >= t->next_try_us) {
            t->force = false;
            pthread_mutex_unlock(&t->mu);
            kd_kone_token nt;
            kd_err e = {0};
            int64_t t0 = kd_mono_us();
            int rc =
                fetch ? fetch(&t->cfg, &nt, &e) : fetch_with_abort(&t->cfg, &t->abort, &nt, &e);
            /* the fetch does not surface the HTTP status: ok is 200, refused credentials
             * 401, anything else (endpoint down, bad answer) counts as an error */
            if (t->cfg.refreshed)
                t->cfg.refreshed(
                    rc == 0 ? 200 : (e.code == KD_ERR_AUTH ? 401 : 0), kd_mono_us() - t0,
                    rc == 0 ? kd_now_us() / 1000000 + nt.expires_in_s : 0, t->cfg.refreshed_arg);
            pthread_mutex_lock(&t->mu);
            if (t->stop) {
                if (!rc)
                    kd_kone_token_clear(&nt);
                break;
            }
            if (!rc) {
                nt.obtained_us = kd_mono_us();
                kd_kone_token_clear(&t->tok);
                t->tok = nt;
                t->gen++;
                t->have = true;
                t->failures = 0;
                t->next_try_us = 0;
                t->last_err[0] = '\0';
                kd_info("kone: token refreshed, expires in %lld s", (long long)nt.expires_in_s);
            } else {
                t->failures++;
                int64_t d = kd_kone_token_backoff_us(t->failures);
                t->next_try_us = kd_mono_us() + d;
                kd_kone_mask(e.msg, sizeof e.msg, t->cfg.client_secret);
                kd_str_copy(t->last_err, sizeof t->last_err, e.msg);
                kd_warn("kone: token fetch failed (attempt %d, retry in %lld ms): %s", t->failures,
                        (long long)(d / 1000), e.msg);
            }
            pthread_mutex_unlock(&t->mu);
            if (t->notify)
                t->notify(t->notify_arg);
            pthread_mutex_lock(&t->mu);
            continue;
        }
        wait_until(t, due ? t->next_try_us : kd_kone_token_refresh_at(&t->tok, t->cfg.margin_s));
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

static void tokens_free(kd_kone_tokens *t)
{
    kd_kone_token_clear(&t->tok);
    if (t->s_secret)
        explicit_bzero(t->s_secret, strlen(t->s_secret));
    free(t->s_url);
    free(t->s_id);
    free(t->s_secret);
    free(t->s_scope);
    free(t->s_ca);
    free(t);
}

int kd_kone_tokens_start(kd_kone_tokens **out, const kd_kone_token_cfg *cfg,
                         void (*notify)(void *arg), void *arg, kd_err *err)
{
    *out = NULL;
    kd_kone_tokens *t = calloc(1, sizeof *t);
    if (!t)
        /* GCOVR_EXCL_START: allocation failure */
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    /* GCOVR_EXCL_STOP */
    t->cfg = *cfg;
    t->s_url = dup_or_empty(cfg->token_url);
    t->s_id = dup_or_empty(cfg->client_id);
    t->s_secret = dup_or_empty(cfg->client_secret);
    t->s_scope = dup_or_empty(cfg->scope);
    t->s_ca = dup_or_empty(cfg->ca_file);
    if (!t->s_url || !t->s_id || !t->s_secret || !t->s_scope || !t->s_ca) {
        /* GCOVR_EXCL_START: allocation failure */
        tokens_free(t);
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        /* GCOVR_EXCL_STOP */
    }
    t->cfg.token_url = t->s_url;
    t->cfg.client_id = t->s_id;
    t->cfg.client_secret = t->s_secret;
    t->cfg.scope = t->s_scope;
    t->cfg.ca_file = t->s_ca;
    t->notify = notify;
    t->notify_arg = arg;
    atomic_init(&t->abort, false);

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int e1 = pthread_mutex_init(&t->mu, NULL);
    int e2 = pthread_cond_init(&t->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (e1 || e2) {
        /* GCOVR_EXCL_START: mutex/cond init fail only when resources are exhausted */
        if (!e1)
            pthread_mutex_destroy(&t->mu);
        if (!e2)
            pthread_cond_destroy(&t->cv);
        tokens_free(t);
        return kd_err_set(err, KD_ERR_INTERNAL, "token thread: mutex/cond init failed");
        /* GCOVR_EXCL_STOP */
    }
    int e = pthread_create(&t->th, NULL, token_thread, t);
    if (e) {
        /* GCOVR_EXCL_START: pthread_create fails only when resources are exhausted */
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cv);
        tokens_free(t);
        return kd_err_set(err, KD_ERR_INTERNAL, "token thread: %s", kd_strerror(e));
        /* GCOVR_EXCL_STOP */
    }
    *out = t;
    return 0;
}

void kd_kone_tokens_stop(kd_kone_tokens *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->stop = true;
    atomic_store(&t->abort, true);
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->th, NULL);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    tokens_free(t);
}

/* Held and not past its expiry (under mu). */
static bool usable(kd_kone_tokens *t)
{
    return t->have && t->tok.access_token &&
           kd_mono_us() < t->tok.obtained_us + t->tok.expires_in_s * 1000000;
}

uint64_t kd_kone_tokens_get(kd_kone_tokens *t, char *buf, size_t len, int64_t *expires_in_s)
{
    uint64_t gen = 0;
    pthread_mutex_lock(&t->mu);
    if (usable(t) && strlen(t->tok.access_token) < len) {
        memcpy(buf, t->tok.access_token, strlen(t->tok.access_token) + 1);
        gen = t->gen;
        if (expires_in_s)
            *expires_in_s = t->tok.expires_in_s;
    }
    pthread_mutex_unlock(&t->mu);
    return gen;
}

void kd_kone_tokens_invalidate(kd_kone_tokens *t, uint64_t gen)
{
    pthread_mutex_lock(&t->mu);
    if (gen == t->gen && t->have) {
        t->have = false;
        kd_kone_token_clear(&t->tok);
        t->force = true;
        t->next_try_us = 0;
        pthread_cond_broadcast(&t->cv);
        kd_info("kone: token refused by KONE, fetching a new one");
    }
    pthread_mutex_unlock(&t->mu);
}

uint64_t kd_kone_tokens_gen(kd_kone_tokens *t)
{
    pthread_mutex_lock(&t->mu);
    uint64_t g = usable(t) ? t->gen : 0;
    pthread_mutex_unlock(&t->mu);
    return g;
}

bool kd_kone_tokens_have(kd_kone_tokens *t)
{
    pthread_mutex_lock(&t->mu);
    bool h = usable(t);
    pthread_mutex_unlock(&t->mu);
    return h;
}

void kd_kone_tokens_last_error(kd_kone_tokens *t, char *buf, size_t len)
{
    pthread_mutex_lock(&t->mu);
    kd_str_copy(buf, len, t->last_err);
    pthread_mutex_unlock(&t->mu);
}
