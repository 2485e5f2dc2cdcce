/* kone_token: KONE's OAuth2 client-credentials token, fetched with libcurl.
 *
 * Why a thread of its own: a token fetch is a blocking HTTPS request (DNS, TLS handshake,
 * up to kone.request_timeout_ms). Run on the libwebsockets loop it would stall every
 * connection and timer of the worker, so fetches run on one small "token thread" that
 * sleeps until the token needs refreshing (obtained + expires_in - margin) or until the
 * loop asks for a fresh one (kd_kone_tokens_invalidate, after a 401 at the WebSocket
 * upgrade). When a fetch ends, the thread calls `notify` (the loop's lws_cancel_service)
 * and the loop picks the token up with kd_kone_tokens_get. curl multi driven from the
 * loop would avoid the thread, but costs a second event integration for one request an
 * hour; the thread is ~100 lines and cannot block the loop by construction.
 *
 * Secrets: the client secret and the access token never appear in an error message or a
 * log line. Errors name the URL, the HTTP status and KONE's error fields, with any
 * occurrence of the secret or the token masked. Token buffers are zeroed before release.
 *
 * The pure parts (answer parsing, the refresh rule) are separate functions so that
 * tests/unit/test_worker_kone_token.c checks them with a fake clock.
 */
#ifndef KD_WORKER_KONE_TOKEN_H
#define KD_WORKER_KONE_TOKEN_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kd_config.h"
#include "kd_err.h"

#define KD_KONE_TOKEN_MAX 8192 /* longest access_token accepted */

typedef struct kd_kone_token {
    char *access_token;   /* heap, NUL-terminated; NULL when none */
    int64_t expires_in_s; /* as KONE said */
    int64_t obtained_us;  /* monotonic clock when it arrived */
} kd_kone_token;

typedef struct kd_kone_token_cfg {
    const char *token_url;
    const char *client_id;
    const char *client_secret;
    const char *scope;   /* "" for the application's default */
    const char *ca_file; /* "" for the system CAs */
    int64_t timeout_ms;  /* whole request */
    int64_t margin_s;    /* refresh this long before expiry */
    /* Tests replace the HTTP fetch; NULL means kd_kone_token_fetch. */
    int (*fetch)(const struct kd_kone_token_cfg *cfg, kd_kone_token *out, kd_err *err);
    void *fetch_arg;
    /* Told after every fetch by the token thread (its owner's metrics, kd_kone_metrics
     * .token_refresh): 200 ok, 401 refused, 0 any other failure; the new token's expiry
     * (Unix s) when ok. NULL: not told. */
    void (*refreshed)(int http_status, int64_t rtt_us, int64_t expires_at_s, void *arg);
    void *refreshed_arg;
} kd_kone_token_cfg;

/* ---- pure functions */

/* Parses the token endpoint's answer. http_status 200 with JSON access_token (string) and
 * expires_in (number > 0) fills *out (obtained_us left 0). Anything else is an error:
 * KD_ERR_AUTH for 400/401/403 (credentials or scope refused), KD_ERR_IO for other
 * statuses, KD_ERR_DECODE for a 200 that is not a usable token answer. `secret` (may be
 * NULL) is masked in any text copied from the body. */
int kd_kone_token_parse(const char *body, size_t len, long http_status, const char *secret,
                        kd_kone_token *out, kd_err *err);

/* The monotonic time at which a token should be replaced: obtained + expires_in - margin,
 * where the margin is capped at half the lifetime so that a short-lived token is not
 * refreshed in a tight loop. */
int64_t kd_kone_token_refresh_at(const kd_kone_token *t, int64_t margin_s);
/* True when there is no token or now_us >= kd_kone_token_refresh_at(). */
bool kd_kone_token_needs_refresh(const kd_kone_token *t, int64_t now_us, int64_t margin_s);
/* Zeroes and frees the token text. */
void kd_kone_token_clear(kd_kone_token *t);

/* Retry delay after `failures` consecutive failed fetches: 1 s doubling to 30 s. */
int64_t kd_kone_token_backoff_us(int failures);

/* Replaces every occurrence of `secret` in buf by "***" (in place, truncating if needed). */
void kd_kone_mask(char *buf, size_t len, const char *secret);

/* ---- the blocking fetch (libcurl, TLS verification always on) */

/* A libcurl write callback's sink (CURLOPT_WRITEDATA), shared with kone_inventory.c: the body
 * grows up to `max` bytes, NUL-terminated; past that the transfer stops with overflow set. */
typedef struct kd_kone_body {
    char *p;
    size_t n, max;
    bool overflow;
} kd_kone_body;
size_t kd_kone_body_write(char *data, size_t size, size_t nmemb, void *arg);
/* The options every request to KONE's HTTPS API takes (token and resources fetches): url over
 * https only (redirects too), the peer and its host name verified (against ca_file when set),
 * the timeout (and a connect timeout of at most 5 s), the body into *body, libcurl's message
 * into ebuf (CURL_ERROR_SIZE), our user agent. The first option refused, or CURLE_OK. */
CURLcode kd_kone_curl_https(CURL *c, const char *url, const char *ca_file, long timeout_ms,
                            kd_kone_body *body, char *ebuf);
int kd_kone_token_fetch(const kd_kone_token_cfg *cfg, kd_kone_token *out, kd_err *err);

/* ---- the token thread */
typedef struct kd_kone_tokens kd_kone_tokens;

/* Copies cfg (strings too) and starts the thread, which fetches at once. notify(arg) is
 * called from the token thread after every fetch, successful or not. */
int kd_kone_tokens_start(kd_kone_tokens **out, const kd_kone_token_cfg *cfg,
                         void (*notify)(void *arg), void *arg, kd_err *err);
/* Stops the thread (an in-flight fetch is aborted) and frees everything. */
void kd_kone_tokens_stop(kd_kone_tokens *t);
/* Copies the current token into buf. Returns its generation (1, 2, ... increasing with
 * every new token), or 0 when none is held (not yet fetched, or invalidated). */
uint64_t kd_kone_tokens_get(kd_kone_tokens *t, char *buf, size_t len, int64_t *expires_in_s);
/* The token of generation `gen` was refused (401): drop it and fetch a new one now.
 * A stale gen (a newer token already arrived) is ignored. */
void kd_kone_tokens_invalidate(kd_kone_tokens *t, uint64_t gen);
/* The generation kd_kone_tokens_get would return, without copying the token. */
uint64_t kd_kone_tokens_gen(kd_kone_tokens *t);
/* True when a token is held. */
bool kd_kone_tokens_have(kd_kone_tokens *t);
/* The last fetch error ("" when the last fetch succeeded), for logs and /readyz. */
void kd_kone_tokens_last_error(kd_kone_tokens *t, char *buf, size_t len);

#endif
