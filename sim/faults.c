/* faults.c: the fault state's JSON form, its merge and diff, the pure decisions (faults.h).
 *
 * The JSON form is one object for the global faults with a "buildings" member holding, per
 * building, fields that apply to all its groups and a "groups" member with per-group fields:
 *
 *   {"latency_ms":200, "call_error":{"share":0.5,"status":429},
 *    "buildings":{"building:9990000951":{"groups":{"1":{"mode":"FRD"}}}}}
 *
 * Unknown members are errors (a misspelt fault must not pass silently as "no fault"); null
 * switches a field off. Field validation is table-free on purpose: every field has its own
 * range and its own message, and the code reads top to bottom like the docs table.
 */
#include "faults.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- readers: each returns 0, or -1 after writing msg ---- */

typedef struct ctx {
    char *msg;
    size_t len;
} ctx;

static int bad(ctx *c, const char *where, const char *field, const char *what)
{
    snprintf(c->msg, c->len, "%s%s%s: %s", where, where[0] && field[0] ? "." : "", field, what);
    return -1;
}

static int read_ms(ctx *c, const char *where, const char *field, const json_t *v, int64_t max,
                   int64_t *out)
{
    if (json_is_null(v)) {
        *out = 0;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max) {
        char what[64];
        snprintf(what, sizeof what, "must be an integer in 0..%lld", (long long)max);
        return bad(c, where, field, what);
    }
    *out = json_integer_value(v);
    return 0;
}

static int read_share(ctx *c, const char *where, const char *field, const json_t *v, double *out)
{
    if (json_is_null(v)) {
        *out = 0;
        return 0;
    }
    if (!json_is_number(v) || !(json_number_value(v) >= 0 && json_number_value(v) <= 1))
        return bad(c, where, field, "must be a number in 0..1");
    *out = json_number_value(v);
    return 0;
}

static int read_bool(ctx *c, const char *where, const char *field, const json_t *v, bool *out)
{
    if (json_is_null(v)) {
        *out = false;
        return 0;
    }
    if (!json_is_boolean(v))
        return bad(c, where, field, "must be true or false");
    *out = json_is_true(v);
    return 0;
}

static int read_status(ctx *c, const char *where, const char *field, const json_t *v, int *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 400 || json_integer_value(v) > 599)
        return bad(c, where, field, "must be an HTTP status in 400..599");
    *out = (int)json_integer_value(v);
    return 0;
}

/* true: 503; false, null or 0: off; or a status in 400..599. */
static int read_switch(ctx *c, const char *where, const char *field, const json_t *v, int *out)
{
    if (json_is_null(v) || json_is_false(v) || (json_is_integer(v) && json_integer_value(v) == 0)) {
        *out = 0;
        return 0;
    }
    if (json_is_true(v)) {
        *out = 503;
        return 0;
    }
    if (read_status(c, where, field, v, out))
        return bad(c, where, field, "must be true, false, 0 or an HTTP status in 400..599");
    return 0;
}

static int check_keys(ctx *c, const char *where, const json_t *o, const char *const *allowed)
{
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(k, allowed[i]) == 0;
        if (!ok)
            return bad(c, where, k, "unknown field (see docs/kone-sim.md, Fault injection)");
    }
    return 0;
}

/* {"share": 0..1, "status": 400..599} or null. A share without a status keeps the current
 * status, 429 if there is none. */
static int read_error(ctx *c, const char *where, const char *field, const json_t *v, double *share,
                      int *status)
{
    static const char *const keys[] = {"share", "status", NULL};
    if (json_is_null(v)) {
        *share = 0;
        return 0;
    }
    char w[160];
    snprintf(w, sizeof w, "%s%s%s", where, where[0] ? "." : "", field);
    if (!json_is_object(v))
        return bad(c, where, field, "must be an object {\"share\":0..1,\"status\":429}");
    if (check_keys(c, w, v, keys))
        return -1;
    double sh = *share;
    int st = *status;
    const json_t *x = json_object_get(v, "share");
    if (x && read_share(c, w, "share", x, &sh))
        return -1;
    x = json_object_get(v, "status");
    if (x && read_status(c, w, "status", x, &st))
        return -1;
    if (!st)
        st = SIM_FAULT_DEFAULT_STATUS;
    *share = sh;
    *status = st;
    return 0;
}

static int read_area(ctx *c, const sim_building *b, const char *where, const char *field, size_t i,
                     const json_t *v, int64_t *out)
{
    if (!json_is_integer(v) || sim_building_area_floor(b, json_integer_value(v), NULL) < 0) {
        char what[96];
        snprintf(what, sizeof what, "[%zu] is not an area of %s", i, b->id);
        return bad(c, where, field, what);
    }
    *out = json_integer_value(v);
    return 0;
}

static void unlock_area(sim_faults *f, int64_t a)
{
    for (size_t i = 0; i < f->n_locked; i++)
        if (f->locked[i] == a) {
            memmove(&f->locked[i], &f->locked[i + 1], (f->n_locked - i - 1) * sizeof a);
            f->n_locked--;
            return;
        }
}

static int lock_area(ctx *c, const char *where, const char *field, sim_faults *f, int64_t a)
{
    if (sim_faults_locked(f, a))
        return 0;
    if (f->n_locked >= SIM_MAX_LOCKED) {
        char what[64];
        snprintf(what, sizeof what, "at most %d locked areas per group", SIM_MAX_LOCKED);
        return bad(c, where, field, what);
    }
    f->locked[f->n_locked++] = a;
    return 0;
}

/* locked_areas (the whole list), then unlock, then lock. */
static int read_locks(ctx *c, const sim_building *b, const char *where, const json_t *o,
                      sim_faults *f)
{
    static const char *const fields[] = {"locked_areas", "unlock", "lock"};
    for (int k = 0; k < 3; k++) {
        const json_t *v = json_object_get(o, fields[k]);
        if (!v)
            continue;
        if (k == 0 && json_is_null(v)) {
            f->n_locked = 0;
            continue;
        }
        if (!json_is_array(v))
            return bad(c, where, fields[k], "must be an array of area ids");
        if (k == 0)
            f->n_locked = 0;
        size_t i;
        const json_t *it;
        json_array_foreach(v, i, it)
        {
            int64_t a = 0; /* GCC with --coverage cannot see read_area set it */
            if (read_area(c, b, where, fields[k], i, it, &a))
                return -1;
            if (k == 1)
                unlock_area(f, a);
            else if (lock_area(c, where, fields[k], f, a))
                return -1;
        }
    }
    return 0;
}

/* The per-group fields of o, applied to f. Other members of o are the caller's business. */
static int read_group_fields(ctx *c, const sim_building *b, const char *where, const json_t *o,
                             sim_faults *f)
{
    const json_t *v;
    if ((v = json_object_get(o, "mode"))) {
        if (json_is_null(v))
            f->mode = SIM_MODE_NOR;
        else if (!json_is_string(v) || sim_mode_parse(json_string_value(v), &f->mode))
            return bad(c, where, "mode", "must be NOR, ATS, PRC, FRD or OSS");
    }
    if (((v = json_object_get(o, "link_down")) &&
         read_bool(c, where, "link_down", v, &f->link_down)) ||
        ((v = json_object_get(o, "no_lift")) && read_bool(c, where, "no_lift", v, &f->no_lift)) ||
        ((v = json_object_get(o, "latency_ms")) &&
         read_ms(c, where, "latency_ms", v, SIM_FAULT_MAX_LATENCY_MS, &f->latency_ms)) ||
        ((v = json_object_get(o, "jitter_ms")) &&
         read_ms(c, where, "jitter_ms", v, SIM_FAULT_MAX_LATENCY_MS, &f->jitter_ms)) ||
        ((v = json_object_get(o, "call_error")) &&
         read_error(c, where, "call_error", v, &f->error_share, &f->error_status)))
        return -1;
    return read_locks(c, b, where, o, f);
}

#define GROUP_KEYS                                                                                 \
    "mode", "link_down", "no_lift", "latency_ms", "jitter_ms", "call_error", "locked_areas",       \
        "lock", "unlock"

static int read_building(ctx *c, sim_fault_state *s, const sim_world *w, const char *bid,
                         const json_t *o)
{
    static const char *const keys[] = {GROUP_KEYS, "groups", NULL};
    static const char *const gkeys[] = {GROUP_KEYS, NULL};
    char where[160];
    snprintf(where, sizeof where, "buildings.%s", bid);
    int bi = -1;
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->b[i]->id, bid) == 0)
            bi = (int)i;
    if (bi < 0)
        return bad(c, "buildings", bid, "not a simulated building");
    const sim_building *b = w->b[bi];
    if (!json_is_object(o))
        return bad(c, "buildings", bid, "must be an object");
    if (check_keys(c, where, o, keys))
        return -1;
    for (size_t g = 0; g < b->n_groups; g++)
        if (read_group_fields(c, b, where, o, &s->group[bi][g]))
            return -1;
    const json_t *groups = json_object_get(o, "groups");
    if (!groups)
        return 0;
    if (!json_is_object(groups))
        return bad(c, where, "groups", "must be an object keyed by group id");
    const char *gid;
    const json_t *go;
    json_object_foreach((json_t *)groups, gid, go)
    {
        char gw[200];
        snprintf(gw, sizeof gw, "%s.groups.%s", where, gid);
        int g = sim_building_group(b, gid);
        if (g < 0)
            return bad(c, gw, "", "no such group in this building");
        if (!json_is_object(go))
            return bad(c, gw, "", "must be an object");
        if (check_keys(c, gw, go, gkeys) || read_group_fields(c, b, gw, go, &s->group[bi][g]))
            return -1;
    }
    return 0;
}

static int read_global(ctx *c, sim_fault_global *g, const json_t *o)
{
    const json_t *v;
    if (((v = json_object_get(o, "latency_ms")) &&
         read_ms(c, "", "latency_ms", v, SIM_FAULT_MAX_LATENCY_MS, &g->latency_ms)) ||
        ((v = json_object_get(o, "jitter_ms")) &&
         read_ms(c, "", "jitter_ms", v, SIM_FAULT_MAX_LATENCY_MS, &g->jitter_ms)) ||
        ((v = json_object_get(o, "call_error")) &&
         read_error(c, "", "call_error", v, &g->error_share, &g->error_status)) ||
        ((v = json_object_get(o, "monitor_error")) &&
         read_error(c, "", "monitor_error", v, &g->monitor_share, &g->monitor_status)) ||
        ((v = json_object_get(o, "drop_probability")) &&
         read_share(c, "", "drop_probability", v, &g->drop_probability)) ||
        ((v = json_object_get(o, "refuse_upgrades")) &&
         read_switch(c, "", "refuse_upgrades", v, &g->refuse_upgrades)) ||
        ((v = json_object_get(o, "token_down")) &&
         read_switch(c, "", "token_down", v, &g->token_down)) ||
        ((v = json_object_get(o, "token_ttl_s")) &&
         read_ms(c, "", "token_ttl_s", v, SIM_FAULT_MAX_TTL_S, &g->token_ttl_s)))
        return -1;
    return 0;
}

int sim_fault_merge(sim_fault_state *s, const sim_world *w, const json_t *spec, char *msg,
                    size_t msg_len, bool *has_seed, uint64_t *seed)
{
    static const char *const keys[] = {"latency_ms",
                                       "jitter_ms",
                                       "call_error",
                                       "monitor_error",
                                       "drop_probability",
                                       "refuse_upgrades",
                                       "token_down",
                                       "token_ttl_s",
                                       "buildings",
                                       "seed",
                                       NULL};
    ctx c = {msg, msg_len};
    *has_seed = false;
    if (!json_is_object(spec)) {
        snprintf(msg, msg_len, "the fault spec must be a JSON object");
        return -1;
    }
    if (check_keys(&c, "", spec, keys))
        return -1;
    sim_fault_state *t = malloc(sizeof *t);
    if (!t) {
        snprintf(msg, msg_len, "out of memory");
        return -1;
    }
    *t = *s;
    int rc = read_global(&c, &t->global, spec);
    const json_t *bl = json_object_get(spec, "buildings");
    if (!rc && bl && !json_is_object(bl))
        rc = bad(&c, "", "buildings", "must be an object keyed by building id");
    if (!rc && bl) {
        const char *bid;
        const json_t *bo;
        json_object_foreach((json_t *)bl, bid, bo)
        {
            if ((rc = read_building(&c, t, w, bid, bo)))
                break;
        }
    }
    const json_t *sv = json_object_get(spec, "seed");
    if (!rc && sv) {
        if (!json_is_integer(sv) || json_integer_value(sv) < 0)
            rc = bad(&c, "", "seed", "must be a non-negative integer");
        else
            *has_seed = true, *seed = (uint64_t)json_integer_value(sv);
    }
    if (!rc)
        *s = *t;
    free(t);
    return rc;
}

/* ---- state in and out ---- */

void sim_fault_state_get(sim_fault_state *s, const sim_world *w, const sim_fault_global *g)
{
    memset(s, 0, sizeof *s);
    s->global = *g;
    for (size_t b = 0; b < w->n; b++)
        for (size_t i = 0; i < w->b[b]->n_groups; i++)
            s->group[b][i] = w->b[b]->groups[i].faults;
}

void sim_fault_state_put(const sim_fault_state *s, sim_world *w, sim_fault_global *g)
{
    *g = s->global;
    for (size_t b = 0; b < w->n; b++)
        for (size_t i = 0; i < w->b[b]->n_groups; i++)
            w->b[b]->groups[i].faults = s->group[b][i];
}

static int eff_status(int status)
{
    return status ? status : SIM_FAULT_DEFAULT_STATUS;
}

static json_t *call_error_json(double share, int status)
{
    return json_pack("{s:f,s:i}", "share", share, "status", eff_status(status));
}

static json_t *group_json(const sim_faults *f)
{
    json_t *locked = json_array();
    for (size_t i = 0; locked && i < f->n_locked; i++)
        json_array_append_new(locked, json_integer(f->locked[i]));
    if (!locked)
        return NULL;
    return json_pack("{s:s,s:b,s:b,s:I,s:I,s:o,s:o}", "mode", sim_mode_name(f->mode), "link_down",
                     f->link_down, "no_lift", f->no_lift, "latency_ms", (json_int_t)f->latency_ms,
                     "jitter_ms", (json_int_t)f->jitter_ms, "call_error",
                     call_error_json(f->error_share, f->error_status), "locked_areas", locked);
}

json_t *sim_fault_state_json(const sim_fault_state *s, const sim_world *w)
{
    const sim_fault_global *g = &s->global;
    json_t *bl = json_object();
    bool ok = bl != NULL;
    for (size_t b = 0; ok && b < w->n; b++) {
        json_t *groups = json_object();
        ok = groups != NULL;
        for (size_t i = 0; ok && i < w->b[b]->n_groups; i++) {
            json_t *gj = group_json(&s->group[b][i]);
            ok = gj && json_object_set_new(groups, w->b[b]->groups[i].id, gj) == 0;
        }
        json_t *bj = groups ? json_pack("{s:o}", "groups", groups) : NULL;
        ok = ok && bj && json_object_set_new(bl, w->b[b]->id, bj) == 0;
    }
    if (!ok) {
        json_decref(bl);
        return NULL;
    }
    return json_pack("{s:I,s:I,s:o,s:o,s:f,s:i,s:i,s:I,s:o}", "latency_ms",
                     (json_int_t)g->latency_ms, "jitter_ms", (json_int_t)g->jitter_ms, "call_error",
                     call_error_json(g->error_share, g->error_status), "monitor_error",
                     call_error_json(g->monitor_share, g->monitor_status), "drop_probability",
                     g->drop_probability, "refuse_upgrades", g->refuse_upgrades, "token_down",
                     g->token_down, "token_ttl_s", (json_int_t)g->token_ttl_s, "buildings", bl);
}

/* ---- diff, for the log ---- */

typedef struct differ {
    void (*line)(void *arg, const char *text);
    void *arg;
    size_t n;
    const char *prefix; /* "" or "building:… group 1 " */
} differ;

static void emit(differ *d, const char *field, const char *from, const char *to)
{
    char text[512];
    snprintf(text, sizeof text, "%s%s: %s -> %s", d->prefix, field, from, to);
    d->line(d->arg, text);
    d->n++;
}

static void diff_int(differ *d, const char *field, int64_t a, int64_t b)
{
    char x[32], y[32];
    if (a == b)
        return;
    snprintf(x, sizeof x, "%lld", (long long)a);
    snprintf(y, sizeof y, "%lld", (long long)b);
    emit(d, field, x, y);
}

static void diff_double(differ *d, const char *field, double a, double b)
{
    char x[32], y[32];
    if (a == b)
        return;
    snprintf(x, sizeof x, "%g", a);
    snprintf(y, sizeof y, "%g", b);
    emit(d, field, x, y);
}

static void diff_error(differ *d, const char *field, double sa, int sta, double sb, int stb)
{
    char x[48], y[48];
    if (sa == sb && (sa == 0 || eff_status(sta) == eff_status(stb)))
        return;
    if (sa > 0)
        snprintf(x, sizeof x, "share %g status %d", sa, eff_status(sta));
    else
        snprintf(x, sizeof x, "off");
    if (sb > 0)
        snprintf(y, sizeof y, "share %g status %d", sb, eff_status(stb));
    else
        snprintf(y, sizeof y, "off");
    emit(d, field, x, y);
}

static void locked_text(const sim_faults *f, char *buf, size_t len)
{
    size_t o = (size_t)snprintf(buf, len, "[");
    for (size_t i = 0; i < f->n_locked && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? "," : "", (long long)f->locked[i]);
    if (o < len)
        snprintf(buf + o, len - o, "]");
}

static void diff_group(differ *d, const sim_faults *a, const sim_faults *b)
{
    if (a->mode != b->mode)
        emit(d, "mode", sim_mode_name(a->mode), sim_mode_name(b->mode));
    if (a->link_down != b->link_down)
        emit(d, "link_down", a->link_down ? "true" : "false", b->link_down ? "true" : "false");
    if (a->no_lift != b->no_lift)
        emit(d, "no_lift", a->no_lift ? "true" : "false", b->no_lift ? "true" : "false");
    diff_int(d, "latency_ms", a->latency_ms, b->latency_ms);
    diff_int(d, "jitter_ms", a->jitter_ms, b->jitter_ms);
    diff_error(d, "call_error", a->error_share, a->error_status, b->error_share, b->error_status);
    bool same = a->n_locked == b->n_locked;
    for (size_t i = 0; same && i < a->n_locked; i++)
        same = a->locked[i] == b->locked[i];
    if (!same) {
        char x[200], y[200];
        locked_text(a, x, sizeof x);
        locked_text(b, y, sizeof y);
        emit(d, "locked_areas", x, y);
    }
}

size_t sim_fault_diff(const sim_fault_state *a, const sim_fault_state *b, const sim_world *w,
                      void (*line)(void *arg, const char *text), void *arg)
{
    differ d = {line, arg, 0, ""};
    const sim_fault_global *x = &a->global, *y = &b->global;
    diff_int(&d, "latency_ms", x->latency_ms, y->latency_ms);
    diff_int(&d, "jitter_ms", x->jitter_ms, y->jitter_ms);
    diff_error(&d, "call_error", x->error_share, x->error_status, y->error_share, y->error_status);
    diff_error(&d, "monitor_error", x->monitor_share, x->monitor_status, y->monitor_share,
               y->monitor_status);
    diff_double(&d, "drop_probability", x->drop_probability, y->drop_probability);
    diff_int(&d, "refuse_upgrades", x->refuse_upgrades, y->refuse_upgrades);
    diff_int(&d, "token_down", x->token_down, y->token_down);
    diff_int(&d, "token_ttl_s", x->token_ttl_s, y->token_ttl_s);
    for (size_t bi = 0; bi < w->n; bi++)
        for (size_t gi = 0; gi < w->b[bi]->n_groups; gi++) {
            char prefix[128];
            snprintf(prefix, sizeof prefix, "%s group %s ", w->b[bi]->id, w->b[bi]->groups[gi].id);
            d.prefix = prefix;
            diff_group(&d, &a->group[bi][gi], &b->group[bi][gi]);
        }
    return d.n;
}

/* ---- decisions ---- */

int64_t sim_fault_delay_ms(const sim_fault_global *g, const sim_faults *gf, double u)
{
    int64_t fixed = g->latency_ms + (gf ? gf->latency_ms : 0);
    int64_t jitter = g->jitter_ms + (gf ? gf->jitter_ms : 0);
    if (u < 0)
        u = 0;
    return fixed + (jitter > 0 ? (int64_t)floor((double)jitter * u) : 0);
}

int sim_fault_call_status(const sim_fault_global *g, const sim_faults *gf, double u)
{
    double share = g->error_share;
    int status = g->error_status;
    if (gf && gf->error_share > 0) {
        share = gf->error_share;
        status = gf->error_status;
    }
    return sim_fault_roll(share, u) ? eff_status(status) : 0;
}

int sim_fault_monitor_status(const sim_fault_global *g, double u)
{
    return sim_fault_roll(g->monitor_share, u) ? eff_status(g->monitor_status) : 0;
}

bool sim_fault_roll(double p, double u)
{
    return p > 0 && (p >= 1 || u < p);
}

const char *sim_fault_status_text(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status >= 500 ? "Server Error" : "Client Error";
    }
}

void sim_rng_seed(sim_rng *r, uint64_t seed)
{
    r->s = seed;
}

double sim_rng_next(sim_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0; /* 53 bits / 2^53 */
}
