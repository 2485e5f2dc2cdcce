/* kone_scope.h: which of the worker's KONE tokens serves which building (kone_scope.c), its
 * contract. Configuration of the layers above the connection, read once at start by kone.c
 * and read-only afterwards (any thread).
 *
 * KONE caps the scopes one token may carry, so kone.buildings is cut into shares of
 * kone.buildings_per_token buildings, one token each; building i is served by token
 * i / per_token, on the connections opened with that token. A building of
 * kone.robotcall_buildings asks the robotcall scope instead of callgiving. No knowledge of
 * connections or jobs: the call layer places a job by kk_scope_token_of, the policies aim
 * pings and keep-alives with it, kone.c asks each token for its scope.
 */
#ifndef KD_WORKER_KONE_SCOPE_H
#define KD_WORKER_KONE_SCOPE_H

#include <stdbool.h>

#include "kd_err.h"

#define KK_MAX_TOKENS 8 /* tokens held at once (kone.buildings_per_token) */

typedef struct kk_scope {
    char **buildings; /* kone.buildings ("building:<id>"), each once, in order */
    bool *robot;      /* per building: robotcall scope (kone.robotcall_buildings) */
    int n_buildings;
    int per_token;               /* kone.buildings_per_token (0: one token for all) */
    int n_tokens;                /* tokens needed (kk_scope_make) */
    char *scopes[KK_MAX_TOKENS]; /* the scope each token asks for (kk_scope_make) */
} kk_scope;

/* Adds the buildings of list ("id" or "building:id", separated by commas or spaces); robot:
 * they ask robotcall. A building listed twice is kept once (robot if either says so). key
 * names the setting in errors. */
int kk_scope_add(kk_scope *s, const char *list, bool robot, const char *key, kd_err *err);
/* Once the buildings are in: the tokens they need and each one's scope; n_conns is
 * kone.connections (each token needs a connection of its own). */
int kk_scope_make(kk_scope *s, int n_conns, kd_err *err);
/* The token that serves a building: 0 when kone.buildings is empty (every building goes to
 * the one token); else its share's, or -1 when it is not in kone.buildings (outside every
 * scope the worker asked for: KONE would answer 403). */
int kk_scope_token_of(const kk_scope *s, const char *building_id);
void kk_scope_free(kk_scope *s);

#endif
