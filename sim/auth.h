/* auth: the simulator's OAuth2 side: clients, issued tokens and scope checks.
 *
 * Clients come from sim.clients (sim/clients.json: [{client_id, client_secret, scopes[]}]).
 * A client may hold two valid secrets at once (`client_secrets: [old, new]` instead of
 * `client_secret`): an extension of ours, for rotating a secret without downtime the way an
 * OAuth2 provider's portal lets an application add a second secret before revoking the first
 * (KONE's documentation here says nothing either way; docs/kone-sim.md states the assumption).
 * sim_auth_reload swaps in a new client list on SIGHUP and keeps the tokens already issued:
 * revoking a secret does not end the tokens it got, which live until they expire.
 * The token endpoint (client_credentials grant, HTTP Basic auth) issues random opaque
 * tokens kept in memory with their expiry and granted scopes; nothing else is persisted, so
 * a restart invalidates every token, as a real outage would.
 *
 * Scopes follow KONE's forms: `application/inventory`, `callgiving/building:<id>`,
 * `callgiving/group:<id>:<group>`, the same with `robotcall/`, and the request-only
 * wildcards `callgiving/` + `*` and `robotcall/` + `*` that expand to the client's scopes of that
 * kind. A building scope grants every group of the building; a group scope only that group.
 *
 * Secrets and tokens never reach a log line or an error message: errors name the client id
 * at most. Secrets and tokens are compared in constant time.
 */
#ifndef SIM_AUTH_H
#define SIM_AUTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kd_err.h"

/* a client or token may hold one scope per building of a 1,000-building world (the bench's
 * scale scenario), plus a few others */
#define SIM_MAX_SCOPES 1040
#define SIM_SCOPE_MAX 128
#define SIM_TOKEN_LEN 43 /* 32 random bytes, base64url without padding */

typedef struct sim_scopes {
    size_t n;
    char s[SIM_MAX_SCOPES][SIM_SCOPE_MAX];
} sim_scopes;

#define SIM_MAX_SECRETS 2

typedef struct sim_client {
    char id[128];
    size_t n_secrets;
    char secret[SIM_MAX_SECRETS][256];
    sim_scopes scopes;
} sim_client;

typedef struct sim_token {
    char value[SIM_TOKEN_LEN + 1];
    char client_id[128];
    int64_t expires_ms; /* monotonic ms */
    sim_scopes scopes;
} sim_token;

typedef struct sim_auth {
    size_t n_clients;
    sim_client *clients;
    size_t n_tokens, cap_tokens;
    sim_token *tokens;
    int64_t ttl_s;
    int64_t max_buildings; /* sim.max_token_buildings: building scopes per token (0: any) */
    const char *token_log; /* test only (sim.token_log): file every issued token is appended to */
} sim_auth;

int sim_auth_load(sim_auth *a, const char *path, int64_t ttl_s, kd_err *err);
int sim_auth_from_json(sim_auth *a, const json_t *doc, int64_t ttl_s, kd_err *err);
void sim_auth_free(sim_auth *a);
/* Replaces the clients with those of `path`, keeping every issued token. On error nothing
 * changes. */
int sim_auth_reload(sim_auth *a, const char *path, kd_err *err);

/* The whole token endpoint as a pure function: Authorization header value (NULL if
 * absent), form body, current monotonic time. Returns the HTTP status and sets *answer to
 * the JSON body (OAuth2 error objects {"error","error_description"} for 400/401). */
int sim_auth_token_request(sim_auth *a, const char *authorization, const char *body,
                           size_t body_len, int64_t now_ms, json_t **answer);

/* A live token, or NULL if unknown or expired. */
const sim_token *sim_auth_lookup(sim_auth *a, const char *value, int64_t now_ms);
/* "Bearer <token>" header → token, as above. */
const sim_token *sim_auth_bearer(sim_auth *a, const char *authorization, int64_t now_ms);

bool sim_scopes_has(const sim_scopes *s, const char *scope);
/* Call giving / monitoring in group `group_id` of building `building_id` ("building:<n>"). */
bool sim_scopes_allow_group(const sim_scopes *s, const char *building_id, const char *group_id);
/* Any scope naming the building (or one of its groups). */
bool sim_scopes_allow_building(const sim_scopes *s, const char *building_id);

/* Decodes application/x-www-form-urlencoded `name` from body into out (NUL-terminated).
 * Returns 0 if found, -1 if absent or too long. */
int sim_form_get(const char *body, size_t len, const char *name, char *out, size_t out_len);

#endif
