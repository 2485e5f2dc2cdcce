/* kone_inventory: the buildings an application may use, learned from KONE
 * (kone.discover_buildings).
 *
 * KONE lists an application's resources at GET /api/v2/application/self/resources, for a
 * token carrying the `application/inventory` scope (PROTOCOL.md, the AsyncAPI file's
 * securitySchemes). The answer's `buildings` (each with an `id`) are what the worker may ask
 * callgiving scopes for. Why at start and blocking: the buildings decide how many tokens
 * the worker holds and which connections each gets (kone.buildings_per_token), which are
 * fixed for the client's life; a worker that cannot learn them cannot serve anything, so it
 * does not start (the orchestrator restarts it) rather than run with a guessed scope.
 *
 * The parse is pure, so tests/unit/test_worker_kone_inventory.c checks it without KONE;
 * the fetch is proved against kone-sim by tests/unit/test_worker_kone_tokens_sim.c.
 * The client secret and both tokens never reach an error: the token's buffers are zeroed.
 */
#ifndef KD_WORKER_KONE_INVENTORY_H
#define KD_WORKER_KONE_INVENTORY_H

#include <stddef.h>

#include "kd_err.h"
#include "kone_token.h"

/* Parses the resources answer: {"buildings":[{"id":"building:<id>"},...],...}. On success
 * *list is a heap string of the building ids, comma-separated ("" when there are none);
 * ids are checked to be plain ids (letters, digits, - and _, after an optional
 * "building:"). An answer that is not that shape is KD_ERR_DECODE. */
int kd_kone_inventory_parse(const char *body, size_t len, char **list, kd_err *err);

/* The resources URL on the token endpoint's host: ".../oauth2/token" becomes
 * ".../application/self/resources", any other URL keeps its origin and gets
 * "/api/v2/application/self/resources". Heap string, NULL when out of memory. */
char *kd_kone_inventory_url(const char *token_url);

/* Fetches a token with scope application/inventory (cfg's credentials, CA and timeout; its
 * scope is ignored), then the resources list with it, and parses it. Blocking (libcurl;
 * curl_global_init done by the caller). */
int kd_kone_inventory_fetch(const kd_kone_token_cfg *cfg, char **list, kd_err *err);

#endif
