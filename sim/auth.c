/* auth.c: clients, tokens and scopes (see auth.h). */
#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIM_MAX_TOKENS 100000

static int parse_scopes(const json_t *list, sim_scopes *out, const char *who, kd_err *err)
{
    memset(out, 0, sizeof *out);
    if (!json_is_array(list) || json_array_size(list) > SIM_MAX_SCOPES)
        return kd_err_set(err, KD_ERR_INVALID, "client %s: scopes must be an array of at most %d",
                          who, SIM_MAX_SCOPES);
    size_t i;
    const json_t *it;
    json_array_foreach(list, i, it)
    {
        const char *s = json_string_value(it);
        if (!s || !*s || strlen(s) >= SIM_SCOPE_MAX || strchr(s, ' '))
            return kd_err_set(err, KD_ERR_INVALID, "client %s: scopes[%zu] is not a scope", who, i);
        snprintf(out->s[out->n++], SIM_SCOPE_MAX, "%s", s);
    }
    return 0;
}

/* client_secret, or client_secrets (1..SIM_MAX_SECRETS non-empty strings, one of them being
 * rotated in or out), never both. */
static int parse_secrets(const json_t *client, sim_client *c)
{
    const json_t *one = json_object_get(client, "client_secret");
    const json_t *list = json_object_get(client, "client_secrets");
    const json_t *v[SIM_MAX_SECRETS];
    size_t n = 0;
    if (one && !list) {
        v[n++] = one;
    } else if (list && !one && json_is_array(list) && json_array_size(list) >= 1 &&
               json_array_size(list) <= SIM_MAX_SECRETS) {
        for (; n < json_array_size(list); n++)
            v[n] = json_array_get(list, n);
    } else {
        return -1;
    }
    for (size_t k = 0; k < n; k++) {
        const char *secret = json_string_value(v[k]);
        if (!secret || !*secret || strlen(secret) >= sizeof c->secret[k])
            return -1;
        snprintf(c->secret[k], sizeof c->secret[k], "%s", secret);
    }
    c->n_secrets = n;
    return 0;
}

int sim_auth_from_json(sim_auth *a, const json_t *doc, int64_t ttl_s, kd_err *err)
{
    memset(a, 0, sizeof *a);
    a->ttl_s = ttl_s;
    if (!json_is_array(doc) || json_array_size(doc) == 0)
        return kd_err_set(err, KD_ERR_INVALID, "clients: must be a non-empty array");
    a->clients = calloc(json_array_size(doc), sizeof *a->clients);
    if (!a->clients)
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    size_t i;
    const json_t *it;
    json_array_foreach(doc, i, it)
    {
        sim_client *c = &a->clients[i];
        const char *id = json_string_value(json_object_get(it, "client_id"));
        a->n_clients = i + 1;
        if (!id || !*id || strlen(id) >= sizeof c->id || strchr(id, ':') || parse_secrets(it, c)) {
            sim_auth_free(a);
            return kd_err_set(err, KD_ERR_INVALID,
                              "clients[%zu]: needs client_id (no ':') and client_secret (or "
                              "client_secrets: 1 to %d of them)",
                              i, SIM_MAX_SECRETS);
        }
        snprintf(c->id, sizeof c->id, "%s", id);
        if (parse_scopes(json_object_get(it, "scopes"), &c->scopes, id, err)) {
            int rc = err ? err->code : KD_ERR_INVALID;
            sim_auth_free(a);
            return rc;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(a->clients[j].id, id) == 0) {
                sim_auth_free(a);
                return kd_err_set(err, KD_ERR_INVALID, "client %s: defined twice", id);
            }
    }
    return 0;
}

int sim_auth_load(sim_auth *a, const char *path, int64_t ttl_s, kd_err *err)
{
    memset(a, 0, sizeof *a);
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    if (!doc)
        return kd_err_set(err, KD_ERR_INVALID, "%s:%d: %s", path, je.line, je.text);
    int rc = sim_auth_from_json(a, doc, ttl_s, err);
    json_decref(doc);
    if (rc)
        kd_err_wrap(err, "%s", path);
    return rc;
}

int sim_auth_reload(sim_auth *a, const char *path, kd_err *err)
{
    sim_auth fresh;
    if (sim_auth_load(&fresh, path, a->ttl_s, err))
        return err ? err->code : KD_ERR_INVALID;
    OPENSSL_cleanse(a->clients, a->n_clients * sizeof *a->clients);
    free(a->clients);
    a->clients = fresh.clients;
    a->n_clients = fresh.n_clients;
    return 0;
}

void sim_auth_free(sim_auth *a)
{
    if (a->clients)
        OPENSSL_cleanse(a->clients, a->n_clients * sizeof *a->clients);
    if (a->tokens)
        OPENSSL_cleanse(a->tokens, a->cap_tokens * sizeof *a->tokens);
    free(a->clients);
    free(a->tokens);
    memset(a, 0, sizeof *a);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int sim_form_get(const char *body, size_t len, const char *name, char *out, size_t out_len)
{
    size_t nl = strlen(name), i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && body[end] != '&')
            end++;
        if (end - i > nl && memcmp(body + i, name, nl) == 0 && body[i + nl] == '=') {
            size_t o = 0;
            for (size_t p = i + nl + 1; p < end; p++) {
                char c = body[p];
                if (c == '+') {
                    c = ' ';
                } else if (c == '%' && p + 2 < end && hexval(body[p + 1]) >= 0 &&
                           hexval(body[p + 2]) >= 0) {
                    c = (char)(hexval(body[p + 1]) * 16 + hexval(body[p + 2]));
                    p += 2;
                }
                if (o + 1 >= out_len || c == '\0')
                    return -1;
                out[o++] = c;
            }
            out[o] = '\0';
            return 0;
        }
        if (end - i == nl && memcmp(body + i, name, nl) == 0) {
            if (out_len)
                out[0] = '\0';
            return 0;
        }
        i = end + 1;
    }
    return -1;
}

/* "Basic base64(id:secret)" → id, secret. */
static int parse_basic(const char *h, char *id, size_t id_len, char *secret, size_t secret_len)
{
    if (!h || strncasecmp(h, "Basic ", 6) != 0)
        return -1;
    h += 6;
    while (*h == ' ')
        h++;
    size_t n = strlen(h);
    while (n && (h[n - 1] == ' ' || h[n - 1] == '\r' || h[n - 1] == '\n'))
        n--;
    if (n == 0 || n % 4 || n > 1024)
        return -1;
    unsigned char dec[800];
    int dl = EVP_DecodeBlock(dec, (const unsigned char *)h, (int)n);
    if (dl < 0)
        return -1;
    if (h[n - 1] == '=')
        dl--;
    if (h[n - 2] == '=')
        dl--;
    dec[dl] = '\0';
    if (memchr(dec, '\0', (size_t)dl))
        return -1;
    char *colon = strchr((char *)dec, ':');
    int rc = -1;
    if (colon && (size_t)(colon - (char *)dec) < id_len && strlen(colon + 1) < secret_len) {
        *colon = '\0';
        snprintf(id, id_len, "%s", (char *)dec);
        snprintf(secret, secret_len, "%s", colon + 1);
        rc = 0;
    }
    OPENSSL_cleanse(dec, sizeof dec);
    return rc;
}

static bool str_eq_ct(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    return la == lb && CRYPTO_memcmp(a, b, la) == 0;
}

static void scopes_add(sim_scopes *s, const char *v)
{
    if (sim_scopes_has(s, v) || s->n >= SIM_MAX_SCOPES)
        return;
    snprintf(s->s[s->n++], SIM_SCOPE_MAX, "%s", v);
}

/* Is `want` within the client's scopes? A group scope is within the same kind's building
 * scope. Wildcards are expanded by the caller. */
static bool client_grants(const sim_client *c, const char *want)
{
    if (sim_scopes_has(&c->scopes, want))
        return true;
    const char *kinds[] = {"callgiving/group:", "robotcall/group:"};
    for (int k = 0; k < 2; k++) {
        size_t kl = strlen(kinds[k]);
        if (strncmp(want, kinds[k], kl) != 0)
            continue;
        const char *rest = want + kl, *colon = strrchr(rest, ':');
        if (!colon || colon == rest || !colon[1])
            return false;
        char b[SIM_SCOPE_MAX];
        snprintf(b, sizeof b, "%.*sbuilding:%.*s", (int)(kl - 6), want, (int)(colon - rest), rest);
        return sim_scopes_has(&c->scopes, b);
    }
    return false;
}

static json_t *oauth_error(const char *code, const char *desc)
{
    return json_pack("{s:s,s:s}", "error", code, "error_description", desc);
}

static sim_token *new_token(sim_auth *a, int64_t now_ms)
{
    /* drop expired tokens, then the oldest if still full */
    size_t o = 0;
    for (size_t i = 0; i < a->n_tokens; i++)
        if (a->tokens[i].expires_ms > now_ms)
            a->tokens[o++] = a->tokens[i];
    a->n_tokens = o;
    if (a->n_tokens >= SIM_MAX_TOKENS) {
        memmove(a->tokens, a->tokens + 1, (a->n_tokens - 1) * sizeof *a->tokens);
        a->n_tokens--;
    }
    if (a->n_tokens == a->cap_tokens) {
        size_t cap = a->cap_tokens ? a->cap_tokens * 2 : 16;
        sim_token *t = realloc(a->tokens, cap * sizeof *t);
        if (!t)
            return NULL;
        a->tokens = t;
        a->cap_tokens = cap;
    }
    sim_token *t = &a->tokens[a->n_tokens];
    memset(t, 0, sizeof *t);
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return NULL;
    static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    /* 32 bytes = 256 bits → 43 base64url characters (6 bits each, last one 4 bits) */
    for (int i = 0; i < SIM_TOKEN_LEN; i++) {
        int bit = i * 6, byte = bit / 8, off = bit % 8;
        unsigned v = (unsigned)raw[byte] << 8 | (byte + 1 < 32 ? raw[byte + 1] : 0);
        t->value[i] = b64url[(v >> (10 - off)) & 63];
    }
    OPENSSL_cleanse(raw, sizeof raw);
    t->expires_ms = now_ms + a->ttl_s * 1000;
    a->n_tokens++;
    return t;
}

int sim_auth_token_request(sim_auth *a, const char *authorization, const char *body,
                           size_t body_len, int64_t now_ms, json_t **answer)
{
    char id[128], secret[256], grant[64], scope[2048];
    *answer = NULL;
    int have = parse_basic(authorization, id, sizeof id, secret, sizeof secret);
    if (have != 0) {
        /* RFC 6749 also allows the credentials in the body; KONE's clients use Basic. */
        if (sim_form_get(body, body_len, "client_id", id, sizeof id) == 0 &&
            sim_form_get(body, body_len, "client_secret", secret, sizeof secret) == 0)
            have = 0;
    }
    const sim_client *c = NULL;
    for (size_t i = 0; have == 0 && i < a->n_clients; i++)
        for (size_t k = 0; strcmp(a->clients[i].id, id) == 0 && k < a->clients[i].n_secrets; k++)
            if (str_eq_ct(a->clients[i].secret[k], secret))
                c = &a->clients[i];
    OPENSSL_cleanse(secret, sizeof secret);
    if (!c) {
        *answer = oauth_error("invalid_client", "Client authentication failed");
        return 401;
    }
    if (sim_form_get(body, body_len, "grant_type", grant, sizeof grant) != 0 ||
        strcmp(grant, "client_credentials") != 0) {
        *answer = oauth_error("unsupported_grant_type", "grant_type must be client_credentials");
        return 400;
    }
    if (sim_form_get(body, body_len, "scope", scope, sizeof scope) != 0)
        scope[0] = '\0';

    sim_scopes granted = {0};
    bool any = false;
    char *save = NULL;
    for (char *tok = strtok_r(scope, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        any = true;
        if (strcmp(tok, "callgiving/*") == 0 || strcmp(tok, "robotcall/*") == 0) {
            size_t pl = strlen(tok) - 1; /* "callgiving/" */
            size_t before = granted.n;
            for (size_t i = 0; i < c->scopes.n; i++)
                if (strncmp(c->scopes.s[i], tok, pl) == 0)
                    scopes_add(&granted, c->scopes.s[i]);
            if (granted.n > before)
                continue;
        } else if (strlen(tok) < SIM_SCOPE_MAX && client_grants(c, tok)) {
            scopes_add(&granted, tok);
            continue;
        }
        char desc[SIM_SCOPE_MAX + 64];
        snprintf(desc, sizeof desc, "Scope not allowed for this client: %.*s", SIM_SCOPE_MAX, tok);
        *answer = oauth_error("invalid_scope", desc);
        return 400;
    }
    if (!any)
        granted = c->scopes;
    /* KONE caps how many buildings one token may carry (sim.max_token_buildings) */
    size_t n_bld = 0;
    for (size_t i = 0; i < granted.n; i++)
        n_bld += strstr(granted.s[i], "/building:") != NULL;
    if (a->max_buildings > 0 && n_bld > (size_t)a->max_buildings) {
        char desc[96];
        snprintf(desc, sizeof desc, "Too many buildings in one token: %zu, at most %lld", n_bld,
                 (long long)a->max_buildings);
        *answer = oauth_error("invalid_scope", desc);
        return 400;
    }

    sim_token *t = new_token(a, now_ms);
    if (!t) {
        *answer = oauth_error("server_error", "out of memory");
        return 500;
    }
    snprintf(t->client_id, sizeof t->client_id, "%s", c->id);
    t->scopes = granted;
    char joined[SIM_MAX_SCOPES * SIM_SCOPE_MAX] = "";
    for (size_t i = 0; i < granted.n; i++) {
        if (i)
            strncat(joined, " ", sizeof joined - strlen(joined) - 1);
        strncat(joined, granted.s[i], sizeof joined - strlen(joined) - 1);
    }
    *answer = json_pack("{s:s,s:s,s:I,s:s}", "access_token", t->value, "token_type", "Bearer",
                        "expires_in", (json_int_t)a->ttl_s, "scope", joined);
    if (!*answer) {
        a->n_tokens--; /* not handed out */
        return 500;
    }
    return 200;
}

const sim_token *sim_auth_lookup(sim_auth *a, const char *value, int64_t now_ms)
{
    if (!value || strlen(value) != SIM_TOKEN_LEN)
        return NULL;
    for (size_t i = 0; i < a->n_tokens; i++)
        if (CRYPTO_memcmp(a->tokens[i].value, value, SIM_TOKEN_LEN) == 0)
            return a->tokens[i].expires_ms > now_ms ? &a->tokens[i] : NULL;
    return NULL;
}

const sim_token *sim_auth_bearer(sim_auth *a, const char *authorization, int64_t now_ms)
{
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
        return NULL;
    const char *v = authorization + 7;
    while (*v == ' ')
        v++;
    char tok[SIM_TOKEN_LEN + 1];
    size_t n = strcspn(v, " \r\n");
    if (n != SIM_TOKEN_LEN)
        return NULL;
    memcpy(tok, v, n);
    tok[n] = '\0';
    return sim_auth_lookup(a, tok, now_ms);
}

bool sim_scopes_has(const sim_scopes *s, const char *scope)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->s[i], scope) == 0)
            return true;
    return false;
}

/* building_id is "building:<n>"; the scopes carry "<kind>/building:<n>" and
 * "<kind>/group:<n>:<group>". group_id NULL: any group matches. */
static bool scope_match(const char *scope, const char *building_id, const char *group_id)
{
    const char *kinds[] = {"callgiving/", "robotcall/"};
    const char *num = building_id + 9;
    size_t nl = strlen(num);
    for (int k = 0; k < 2; k++) {
        size_t kl = strlen(kinds[k]);
        if (strncmp(scope, kinds[k], kl) != 0)
            continue;
        const char *r = scope + kl;
        if (strcmp(r, building_id) == 0)
            return true;
        if (strncmp(r, "group:", 6) == 0 && strncmp(r + 6, num, nl) == 0 && r[6 + nl] == ':')
            return !group_id || strcmp(r + 7 + nl, group_id) == 0;
    }
    return false;
}

bool sim_scopes_allow_group(const sim_scopes *s, const char *building_id, const char *group_id)
{
    if (strncmp(building_id, "building:", 9) != 0)
        return false;
    for (size_t i = 0; i < s->n; i++)
        if (scope_match(s->s[i], building_id, group_id))
            return true;
    return false;
}

bool sim_scopes_allow_building(const sim_scopes *s, const char *building_id)
{
    return sim_scopes_allow_group(s, building_id, NULL);
}
