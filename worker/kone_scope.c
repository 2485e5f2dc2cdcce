/* kone_scope.c: which token serves which building (kone_scope.h). Moved out of kone.c (the
 * configuration) and kone_call.c (kk_token_of), so that the policy modules that aim pings
 * by token need not call the call layer for it. */
#include "kone_scope.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_job.h"
#include "kone_msg.h"

int kk_scope_add(kk_scope *s, const char *list, bool robot, const char *key, kd_err *err)
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
        while (i < s->n_buildings && strcmp(s->buildings[i] + 9, id) != 0)
            i++;
        if (i < s->n_buildings) { /* listed twice, or in both keys */
            s->robot[i] = s->robot[i] || robot;
            continue;
        }
        char **nb = realloc(s->buildings, (size_t)(s->n_buildings + 1) * sizeof *nb);
        if (nb)
            s->buildings = nb;
        bool *nr = nb ? realloc(s->robot, (size_t)(s->n_buildings + 1) * sizeof *nr) : NULL;
        if (nr)
            s->robot = nr;
        if (!nr || !(nb[s->n_buildings] = malloc(strlen(id) + 10))) {
            rc = kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        } else {
            s->robot[s->n_buildings] = robot;
            sprintf(s->buildings[s->n_buildings++], "building:%s", id);
        }
    }
    free(copy);
    return rc;
}

int kk_scope_make(kk_scope *s, int n_conns, kd_err *err)
{
    s->n_tokens = 1;
    if (!s->n_buildings)
        return 0;
    if (s->per_token > 0)
        s->n_tokens = (s->n_buildings + s->per_token - 1) / s->per_token;
    if (s->n_tokens > KK_MAX_TOKENS)
        return kd_err_set(err, KD_ERR_INVALID,
                          "kone.buildings: %d buildings at %d per token need %d tokens; at most "
                          "%d (raise kone.buildings_per_token or run more workers)",
                          s->n_buildings, s->per_token, s->n_tokens, KK_MAX_TOKENS);
    if (s->n_tokens > n_conns)
        return kd_err_set(err, KD_ERR_INVALID,
                          "kone.connections: %d, but kone.buildings needs %d tokens and each "
                          "token needs a connection of its own",
                          n_conns, s->n_tokens);
    for (int t = 0; t < s->n_tokens; t++) {
        size_t len = 1;
        for (int i = 0; i < s->n_buildings; i++)
            len += strlen(s->buildings[i]) + 12;
        if (!(s->scopes[t] = calloc(1, len)))
            return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        for (int i = 0; i < s->n_buildings; i++)
            if (kk_scope_token_of(s, s->buildings[i]) == t)
                sprintf(s->scopes[t] + strlen(s->scopes[t]), "%s%s/%s", s->scopes[t][0] ? " " : "",
                        s->robot[i] ? "robotcall" : "callgiving", s->buildings[i]);
    }
    return 0;
}

int kk_scope_token_of(const kk_scope *s, const char *building_id)
{
    if (s->n_buildings == 0)
        return 0;
    char b[KD_JOB_BUILDING_MAX + 16];
    kd_kone_building_id(building_id, b, sizeof b);
    for (int i = 0; i < s->n_buildings; i++)
        if (strcmp(s->buildings[i], b) == 0)
            return s->per_token > 0 ? i / s->per_token : 0;
    return -1;
}

void kk_scope_free(kk_scope *s)
{
    for (int i = 0; i < s->n_buildings; i++)
        free(s->buildings[i]);
    free(s->buildings);
    free(s->robot);
    for (int t = 0; t < KK_MAX_TOKENS; t++)
        free(s->scopes[t]);
    *s = (kk_scope){0};
}
