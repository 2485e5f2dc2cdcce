/* kone_inventory.c: the application's buildings from KONE's resources endpoint (see
 * kone_inventory.h). */
#include "kone_inventory.h"

#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODY_MAX ((size_t)1024 * 1024) /* 4096 buildings' ids fit many times over */

static bool plain_id(const char *id)
{
    const char *p = strncmp(id, "building:", 9) == 0 ? id + 9 : id;
    if (!*p || strlen(p) > 100)
        return false;
    for (; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return false;
    return true;
}

int kd_kone_inventory_parse(const char *body, size_t len, char **list, kd_err *err)
{
    *list = NULL;
    json_error_t jerr;
    json_t *j = body ? json_loadb(body, len, 0, &jerr) : NULL;
    const json_t *b = json_object_get(j, "buildings");
    if (!json_is_array(b)) {
        json_decref(j);
        return kd_err_set(err, KD_ERR_DECODE, "resources answer has no buildings array");
    }
    size_t cap = 1, i;
    const json_t *it;
    json_array_foreach(b, i, it)
    {
        const char *id = json_string_value(json_object_get(it, "id"));
        if (!id || !plain_id(id)) {
            /* the message first: id lives in the tree */
            int rc = kd_err_set(err, KD_ERR_DECODE,
                                "resources answer: buildings[%zu] has no usable id (%.60s)", i,
                                id ? id : "none");
            json_decref(j);
            return rc;
        }
        cap += strlen(id) + 1;
    }
    char *out = calloc(1, cap);
    if (!out) {
        /* GCOVR_EXCL_START: allocation failure */
        json_decref(j);
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        /* GCOVR_EXCL_STOP */
    }
    json_array_foreach(b, i, it)
    {
        if (i)
            strncat(out, ",", cap - strlen(out) - 1);
        strncat(out, json_string_value(json_object_get(it, "id")), cap - strlen(out) - 1);
    }
    json_decref(j);
    *list = out;
    return 0;
}

char *kd_kone_inventory_url(const char *token_url)
{
    static const char tail[] = "/oauth2/token";
    size_t n = strlen(token_url), tl = strlen(tail);
    char *out = NULL;
    if (n > tl && strcmp(token_url + n - tl, tail) == 0) {
        if (asprintf(&out, "%.*s/application/self/resources", (int)(n - tl), token_url) < 0)
            out = NULL;
        return out;
    }
    const char *host = strstr(token_url, "://");
    host = host ? host + 3 : token_url;
    size_t origin = (size_t)(host - token_url) + strcspn(host, "/?#");
    if (asprintf(&out, "%.*s/api/v2/application/self/resources", (int)origin, token_url) < 0)
        out = NULL;
    return out;
}

/* GET url with the bearer token; the body in *body (heap), the status in *status. */
static int get_resources(const kd_kone_token_cfg *cfg, const char *url, const char *token,
                         kd_kone_body *body, long *status, kd_err *err)
{
    CURL *c = curl_easy_init();
    if (!c)
        /* GCOVR_EXCL_START: curl_easy_init fails only when allocation fails */
        return kd_err_set(err, KD_ERR_NOMEM, "resources: curl_easy_init failed");
    /* GCOVR_EXCL_STOP */
    char *authz = NULL;
    struct curl_slist *hdrs = NULL;
    int rc = 0;
    if (asprintf(&authz, "Authorization: Bearer %s", token) < 0) {
        /* GCOVR_EXCL_START: allocation failure */
        authz = NULL;
        rc = kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        goto out;
        /* GCOVR_EXCL_STOP */
    }
    hdrs = curl_slist_append(NULL, authz);
    long timeout = cfg->timeout_ms > 0 ? (long)cfg->timeout_ms : 10000;
    char ebuf[CURL_ERROR_SIZE] = "";
    CURLcode cc = kd_kone_curl_https(c, url, cfg->ca_file, timeout, body, ebuf);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    if (cc == CURLE_OK)
        cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        rc = kd_err_set(err, cc == CURLE_OPERATION_TIMEDOUT ? KD_ERR_TIMEOUT : KD_ERR_IO,
                        "resources request to %s failed: %s", url,
                        ebuf[0] ? ebuf : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
out:
    if (authz) {
        explicit_bzero(authz, strlen(authz));
        free(authz);
    }
    curl_slist_free_all(hdrs); /* its copy of the header: libcurl's, freed here */
    curl_easy_cleanup(c);
    return rc;
}

int kd_kone_inventory_fetch(const kd_kone_token_cfg *cfg, char **list, kd_err *err)
{
    *list = NULL;
    kd_kone_token_cfg tc = *cfg;
    tc.scope = "application/inventory";
    kd_kone_token tok;
    int rc = tc.fetch ? tc.fetch(&tc, &tok, err) : kd_kone_token_fetch(&tc, &tok, err);
    if (rc)
        return kd_err_wrap(err, "token for application/inventory");
    char *url = kd_kone_inventory_url(cfg->token_url);
    kd_kone_body body = {.max = BODY_MAX};
    long status = 0;
    if (!url)
        /* GCOVR_EXCL_START: allocation failure */
        rc = kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    else
        /* GCOVR_EXCL_STOP */
        rc = get_resources(cfg, url, tok.access_token, &body, &status, err);
    kd_kone_token_clear(&tok);
    if (!rc && status != 200) {
        kd_kone_mask(body.p, body.n + 1, cfg->client_secret);
        rc = kd_err_set(err, status == 401 || status == 403 ? KD_ERR_AUTH : KD_ERR_IO,
                        "GET %s answered HTTP %ld%s%.120s", url, status, body.p ? ": " : "",
                        body.p ? body.p : "");
    } else if (!rc) {
        rc = kd_kone_inventory_parse(body.p, body.n, list, err);
    }
    free(url);
    free(body.p);
    return rc;
}
