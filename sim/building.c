/* building.c: loading sim/buildings.json and looking things up in it (see building.h).
 *
 * The file is read once at start-up; every check happens here so that the request
 * handlers and the lift model can trust the topology (ids resolve, floors exist) and only
 * ever meet unknown ids coming from clients. Floors may be written tersely: {"id": 5}
 * gets the single front area 5000; group and lift floor lists accept [from, to] ranges.
 */
#include "building.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const struct {
    sim_mode mode;
    const char *name;
    int code;
} sim_modes[] = {
    /* lift_mode codes: the YAML makes lift_mode an integer and says -1 is out of service;
     * the other codes are the simulator's own (documented in docs/kone-sim.md). */
    {SIM_MODE_NOR, "NOR", 0}, {SIM_MODE_ATS, "ATS", 3},  {SIM_MODE_PRC, "PRC", 5},
    {SIM_MODE_FRD, "FRD", 9}, {SIM_MODE_OSS, "OSS", -1},
};

const char *sim_mode_name(sim_mode m)
{
    for (size_t i = 0; i < sizeof sim_modes / sizeof sim_modes[0]; i++)
        if (sim_modes[i].mode == m)
            return sim_modes[i].name;
    return "NOR";
}

int sim_mode_code(sim_mode m)
{
    for (size_t i = 0; i < sizeof sim_modes / sizeof sim_modes[0]; i++)
        if (sim_modes[i].mode == m)
            return sim_modes[i].code;
    return 0;
}

int sim_mode_parse(const char *s, sim_mode *out)
{
    for (size_t i = 0; i < sizeof sim_modes / sizeof sim_modes[0]; i++)
        if (strcmp(sim_modes[i].name, s) == 0) {
            *out = sim_modes[i].mode;
            return 0;
        }
    return KD_ERR_INVALID;
}

static int floor_index(const sim_building *b, int64_t floor_id)
{
    for (size_t i = 0; i < b->n_floors; i++)
        if (b->floors[i].id == floor_id)
            return (int)i;
    return -1;
}

static const char *str_or(const json_t *o, const char *k, const char *def)
{
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : def;
}

static int int_or(const json_t *o, const char *k, int64_t def, int64_t min, int64_t max,
                  int64_t *out, const char *where, kd_err *err)
{
    const json_t *v = json_object_get(o, k);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return kd_err_set(err, KD_ERR_INVALID, "%s.%s: must be an integer in %lld..%lld", where, k,
                          (long long)min, (long long)max);
    *out = json_integer_value(v);
    return 0;
}

/* Parses one item of a list: list[i], named `where` in errors ("building:1.floors[2]"). */
typedef int (*item_fn)(sim_building *b, void *ctx, const json_t *it, size_t i, const char *where,
                       kd_err *err);

/* The lists of the file (buildings' floors, actions and groups, a group's lifts, a floor's
 * areas): an array of lo..hi items, each parsed by fn, which ctx is handed to. */
static int parse_list(sim_building *b, void *ctx, const json_t *list, size_t lo, size_t hi,
                      const char *parent, const char *what, item_fn fn, kd_err *err)
{
    if (!json_is_array(list) || json_array_size(list) < lo || json_array_size(list) > hi)
        return kd_err_set(err, KD_ERR_INVALID, "%s.%s: must be an array of %zu..%zu %s", parent,
                          what, lo, hi, what);
    size_t i;
    const json_t *it;
    json_array_foreach(list, i, it)
    {
        char where[160];
        snprintf(where, sizeof where, "%s.%s[%zu]", parent, what, i);
        if (fn(b, ctx, it, i, where, err))
            return err ? err->code : KD_ERR_INVALID;
    }
    return 0;
}

/* Fills serves[] from a list of floor ids and [from, to] ranges. */
static int parse_floor_set(const sim_building *b, const json_t *list, bool *serves,
                           const char *where, kd_err *err)
{
    if (!json_is_array(list) || json_array_size(list) == 0)
        return kd_err_set(err, KD_ERR_INVALID, "%s.floors: must be a non-empty array", where);
    size_t i;
    const json_t *it;
    json_array_foreach(list, i, it)
    {
        int64_t from, to;
        if (json_is_integer(it)) {
            from = to = json_integer_value(it);
        } else if (json_is_array(it) && json_array_size(it) == 2 &&
                   json_is_integer(json_array_get(it, 0)) &&
                   json_is_integer(json_array_get(it, 1))) {
            from = json_integer_value(json_array_get(it, 0));
            to = json_integer_value(json_array_get(it, 1));
        } else {
            return kd_err_set(err, KD_ERR_INVALID,
                              "%s.floors[%zu]: must be a floor id or a [from, to] pair", where, i);
        }
        if (from > to)
            return kd_err_set(err, KD_ERR_INVALID, "%s.floors[%zu]: from > to", where, i);
        for (int64_t f = from; f <= to; f++) {
            int fi = floor_index(b, f);
            if (fi < 0)
                return kd_err_set(err, KD_ERR_INVALID, "%s.floors: floor %lld not in building",
                                  where, (long long)f);
            serves[fi] = true;
        }
    }
    return 0;
}

static int parse_area(sim_building *b, void *ctx, const json_t *a, size_t j, const char *where,
                      kd_err *err)
{
    sim_floor *f = ctx;
    (void)b, (void)j;
    int64_t area = 0, side = 0; /* for the analyzer: int_or sets them when it returns 0 */
    if (int_or(a, "area", 0, 1, INT64_MAX / 2, &area, where, err) ||
        int_or(a, "side", 1, 1, SIM_MAX_SIDES, &side, where, err))
        return err ? err->code : KD_ERR_INVALID;
    if (area == 0 || f->area[side])
        return kd_err_set(err, KD_ERR_INVALID, "%s: missing area or side used twice", where);
    f->area[side] = area;
    return 0;
}

static int parse_floor(sim_building *b, void *ctx, const json_t *it, size_t i, const char *where,
                       kd_err *err)
{
    sim_floor *f = &b->floors[i];
    (void)ctx;
    int64_t id = -1; /* as in parse_area */
    if (!json_is_object(it))
        return kd_err_set(err, KD_ERR_INVALID, "%s: must be an object", where);
    if (int_or(it, "id", -1, -1000, 100000, &id, where, err))
        return err ? err->code : KD_ERR_INVALID;
    if (id == -1 || floor_index(b, id) >= 0)
        return kd_err_set(err, KD_ERR_INVALID, "%s.id: missing or duplicate", where);
    if (i > 0 && id <= b->floors[i - 1].id)
        return kd_err_set(err, KD_ERR_INVALID, "%s.id: floors must be listed bottom-up", where);
    f->id = (int)id;
    snprintf(f->name, sizeof f->name, "%s", str_or(it, "name", ""));
    if (!f->name[0])
        snprintf(f->name, sizeof f->name, "%d", f->id);
    const json_t *areas = json_object_get(it, "areas");
    b->n_floors = i + 1;
    if (!areas) {
        f->area[1] = (int64_t)f->id * 1000;
        return 0;
    }
    return parse_list(b, f, areas, 1, SIM_MAX_SIDES, where, "areas", parse_area, err);
}

static int parse_floors(sim_building *b, const json_t *list, kd_err *err)
{
    if (parse_list(b, NULL, list, 2, SIM_MAX_FLOORS, b->id, "floors", parse_floor, err))
        return err ? err->code : KD_ERR_INVALID;
    /* area ids unique in the building */
    for (size_t x = 0; x < b->n_floors; x++)
        for (int s = 1; s <= SIM_MAX_SIDES; s++) {
            int64_t a = b->floors[x].area[s];
            int side = 0;
            if (!a)
                continue;
            int fi = sim_building_area_floor(b, a, &side);
            if (fi != (int)x || side != s)
                return kd_err_set(err, KD_ERR_INVALID, "%s: area %lld defined twice", b->id,
                                  (long long)a);
        }
    return 0;
}

/* The "kind" of an action as buildings.json and the actions answer spell it (0: none). */
static const char *const action_kind_names[] = {[0] = "",
                                                [SIM_ACT_DESTINATION] = "destination",
                                                [SIM_ACT_LANDING_UP] = "landing_up",
                                                [SIM_ACT_LANDING_DOWN] = "landing_down",
                                                [SIM_ACT_CAR] = "car"};

static int parse_action(sim_building *b, void *ctx, const json_t *it, size_t i, const char *where,
                        kd_err *err)
{
    sim_action *a = &b->actions[i];
    (void)ctx;
    int64_t id = 0; /* for the analyzer, as in parse_area */
    if (int_or(it, "id", 0, 1, 1000000, &id, where, err))
        return err ? err->code : KD_ERR_INVALID;
    if (id == 0 || sim_building_action(b, id))
        return kd_err_set(err, KD_ERR_INVALID, "%s.id: missing, 0 or duplicate", where);
    a->id = (int)id;
    snprintf(a->name, sizeof a->name, "%s", str_or(it, "name", ""));
    const char *kind = str_or(it, "kind", "");
    a->kind = (sim_action_kind)sim_name_index(
        action_kind_names, sizeof action_kind_names / sizeof action_kind_names[0], kind);
    if (!a->kind)
        return kd_err_set(err, KD_ERR_INVALID,
                          "%s.kind: must be destination, landing_up, landing_down or car", where);
    a->disabled = json_is_true(json_object_get(it, "disabled"));
    b->n_actions = i + 1;
    return 0;
}

static int parse_faults(sim_building *b, sim_group *g, const json_t *o, const char *where,
                        kd_err *err)
{
    const char *mode = str_or(o, "mode", "NOR");
    if (sim_mode_parse(mode, &g->faults.mode))
        return kd_err_set(err, KD_ERR_INVALID, "%s.mode: must be NOR, ATS, PRC, FRD or OSS", where);
    g->faults.link_down = json_is_true(json_object_get(o, "link_down"));
    g->faults.no_lift = json_is_true(json_object_get(o, "no_lift"));
    const json_t *locked = json_object_get(o, "locked_areas");
    if (!locked)
        return 0;
    if (!json_is_array(locked) || json_array_size(locked) > SIM_MAX_LOCKED)
        return kd_err_set(err, KD_ERR_INVALID, "%s.locked_areas: must be an array of areas", where);
    size_t i;
    const json_t *it;
    json_array_foreach(locked, i, it)
    {
        int side = 0;
        if (!json_is_integer(it) || sim_building_area_floor(b, json_integer_value(it), &side) < 0)
            return kd_err_set(err, KD_ERR_INVALID, "%s.locked_areas[%zu]: not an area", where, i);
        g->faults.locked[g->faults.n_locked++] = json_integer_value(it);
    }
    return 0;
}

static int parse_lift(sim_building *b, void *ctx, const json_t *o, size_t i, const char *where,
                      kd_err *err)
{
    sim_group *g = ctx;
    sim_lift *l = &g->lifts[g->n_lifts];
    (void)i;
    snprintf(l->id, sizeof l->id, "%s", str_or(o, "id", ""));
    snprintf(l->name, sizeof l->name, "%s", str_or(o, "name", ""));
    int64_t deck = 0; /* for the analyzer, as in parse_area */
    if (int_or(o, "deck", 0, 1, INT64_MAX / 2, &deck, where, err))
        return err ? err->code : KD_ERR_INVALID;
    if (!l->id[0] || strchr(l->id, '/') || strchr(l->id, '+') || deck == 0)
        return kd_err_set(err, KD_ERR_INVALID, "%s: needs an id (no '/' or '+') and a deck area",
                          where);
    l->deck = deck;
    l->rear = json_is_true(json_object_get(o, "rear"));
    for (size_t gi = 0; gi < b->n_groups; gi++) {
        const sim_group *og = &b->groups[gi];
        size_t n = (og == g) ? g->n_lifts : og->n_lifts;
        for (size_t li = 0; li < n; li++)
            if (strcmp(og->lifts[li].id, l->id) == 0 || og->lifts[li].deck == deck)
                return kd_err_set(err, KD_ERR_INVALID, "%s: lift id or deck used twice", where);
    }
    const json_t *floors = json_object_get(o, "floors");
    if (floors) {
        if (parse_floor_set(b, floors, l->serves, where, err))
            return err ? err->code : KD_ERR_INVALID;
        for (size_t f = 0; f < b->n_floors; f++)
            if (l->serves[f] && !g->serves[f])
                return kd_err_set(err, KD_ERR_INVALID, "%s.floors: floor %d not served by group",
                                  where, b->floors[f].id);
    } else {
        memcpy(l->serves, g->serves, sizeof l->serves);
    }
    g->n_lifts++;
    return 0;
}

static int parse_group(sim_building *b, void *ctx, const json_t *o, size_t gi, const char *where,
                       kd_err *err)
{
    sim_group *g = &b->groups[gi];
    (void)ctx;
    b->n_groups = gi + 1; /* sim_building_group below finds it */
    snprintf(g->id, sizeof g->id, "%s", str_or(o, "id", ""));
    if (!g->id[0] || sim_building_group(b, g->id) != (int)gi)
        return kd_err_set(err, KD_ERR_INVALID, "%s.id: missing or duplicate", where);
    if (parse_floor_set(b, json_object_get(o, "floors"), g->serves, where, err))
        return err ? err->code : KD_ERR_INVALID;
    g->transfer_floor = -1;
    const json_t *tf = json_object_get(o, "transfer_floor");
    if (tf) {
        g->transfer_floor = json_is_integer(tf) ? floor_index(b, json_integer_value(tf)) : -1;
        if (g->transfer_floor < 0 || !g->serves[g->transfer_floor])
            return kd_err_set(err, KD_ERR_INVALID,
                              "%s.transfer_floor: must be a floor the group serves", where);
    }
    snprintf(g->transfer_reason, sizeof g->transfer_reason, "%s",
             str_or(o, "transfer_reason", "AutomaticTransfer"));
    if (parse_faults(b, g, o, where, err))
        return err ? err->code : KD_ERR_INVALID;
    return parse_list(b, g, json_object_get(o, "lifts"), 1, SIM_MAX_LIFTS, where, "lifts",
                      parse_lift, err);
}

static int parse_building(sim_building *b, const json_t *o, kd_err *err)
{
    snprintf(b->id, sizeof b->id, "%s", str_or(o, "id", ""));
    if (strncmp(b->id, "building:", 9) != 0 || !b->id[9])
        return kd_err_set(err, KD_ERR_INVALID, "building id '%s': must be building:<id>", b->id);
    snprintf(b->name, sizeof b->name, "%s", str_or(o, "name", ""));
    int64_t fm = 0, dm = 0; /* for the analyzer, as in parse_area */
    if (int_or(o, "floor_time_ms", 2000, 10, 600000, &fm, b->id, err) ||
        int_or(o, "door_time_ms", 4000, 10, 600000, &dm, b->id, err))
        return err ? err->code : KD_ERR_INVALID;
    b->floor_ms = (int)fm;
    b->door_ms = (int)dm;
    if (parse_floors(b, json_object_get(o, "floors"), err) ||
        parse_list(b, NULL, json_object_get(o, "actions"), 1, SIM_MAX_ACTIONS, b->id, "actions",
                   parse_action, err))
        return err ? err->code : KD_ERR_INVALID;
    return parse_list(b, NULL, json_object_get(o, "groups"), 1, SIM_MAX_GROUPS, b->id, "groups",
                      parse_group, err);
}

int sim_world_from_json(sim_world *w, const json_t *doc, kd_err *err)
{
    memset(w, 0, sizeof *w);
    const json_t *list = json_object_get(doc, "buildings");
    if (!json_is_array(list) || json_array_size(list) == 0 ||
        json_array_size(list) > SIM_MAX_BUILDINGS)
        return kd_err_set(err, KD_ERR_INVALID, "buildings: must be an array of 1..%d buildings",
                          SIM_MAX_BUILDINGS);
    size_t i;
    const json_t *it;
    json_array_foreach(list, i, it)
    {
        sim_building *b = calloc(1, sizeof *b);
        if (!b) {
            sim_world_free(w);
            return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        }
        w->b[w->n++] = b;
        if (parse_building(b, it, err)) {
            int rc = err ? err->code : KD_ERR_INVALID;
            sim_world_free(w);
            return rc;
        }
        for (size_t j = 0; j + 1 < w->n; j++)
            if (strcmp(w->b[j]->id, b->id) == 0) {
                sim_world_free(w);
                return kd_err_set(err, KD_ERR_INVALID, "%s: defined twice", b->id);
            }
    }
    return 0;
}

int sim_world_load(sim_world *w, const char *path, kd_err *err)
{
    memset(w, 0, sizeof *w);
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    if (!doc)
        return kd_err_set(err, KD_ERR_INVALID, "%s:%d: %s", path, je.line, je.text);
    int rc = sim_world_from_json(w, doc, err);
    json_decref(doc);
    if (rc)
        kd_err_wrap(err, "%s", path);
    return rc;
}

void sim_world_free(sim_world *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->b[i]);
    w->n = 0;
}

sim_building *sim_world_building(const sim_world *w, const char *id)
{
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->b[i]->id, id) == 0)
            return w->b[i];
    return NULL;
}

int sim_building_group(const sim_building *b, const char *group_id)
{
    for (size_t i = 0; i < b->n_groups; i++)
        if (strcmp(b->groups[i].id, group_id) == 0)
            return (int)i;
    return -1;
}

const sim_action *sim_building_action(const sim_building *b, int64_t id)
{
    for (size_t i = 0; i < b->n_actions; i++)
        if (b->actions[i].id == id)
            return &b->actions[i];
    return NULL;
}

int sim_building_area_floor(const sim_building *b, int64_t area, int *side)
{
    for (size_t i = 0; i < b->n_floors; i++)
        for (int s = 1; s <= SIM_MAX_SIDES; s++)
            if (b->floors[i].area[s] == area && area != 0) {
                if (side)
                    *side = s;
                return (int)i;
            }
    return -1;
}

bool sim_group_serves_area(const sim_building *b, const sim_group *g, int64_t area)
{
    int side = 0;
    int fi = sim_building_area_floor(b, area, &side);
    if (fi < 0 || !g->serves[fi])
        return false;
    for (size_t i = 0; i < g->n_lifts; i++)
        if (g->lifts[i].serves[fi] && (side == 1 || g->lifts[i].rear))
            return true;
    return false;
}

int sim_group_lift_by_deck(const sim_group *g, int64_t deck)
{
    for (size_t i = 0; i < g->n_lifts; i++)
        if (g->lifts[i].deck == deck)
            return (int)i;
    return -1;
}

bool sim_faults_locked(const sim_faults *f, int64_t area)
{
    for (size_t i = 0; i < f->n_locked; i++)
        if (f->locked[i] == area)
            return true;
    return false;
}

/* Small helper: json_object_set_new that reports allocation failure through *ok. */
static void put(json_t *o, const char *k, json_t *v, bool *ok)
{
    if (!v || json_object_set_new(o, k, v))
        *ok = false;
}

static void append(json_t *a, json_t *v, bool *ok)
{
    if (!v || json_array_append_new(a, v))
        *ok = false;
}

json_t *sim_building_config_json(const sim_building *b, const sim_group *g)
{
    bool ok = true;
    json_t *o = json_object(), *floors = json_array(), *areas = json_array(), *lifts = json_array();
    if (!o || !floors || !areas || !lifts) {
        json_decref(o), json_decref(floors), json_decref(areas), json_decref(lifts);
        return NULL;
    }
    put(o, "buildingId", json_string(b->id), &ok);
    put(o, "groupId", json_string(g->id), &ok);
    put(o, "name", json_string(b->name), &ok);
    for (size_t f = 0; f < b->n_floors; f++) {
        if (!g->serves[f])
            continue;
        json_t *fl = json_object(), *fa = json_array();
        if (!fl || !fa)
            ok = false;
        for (int s = 1; fa && s <= SIM_MAX_SIDES; s++) {
            int64_t a = b->floors[f].area[s];
            if (!a || !sim_group_serves_area(b, g, a))
                continue;
            append(fa, json_integer(a), &ok);
            json_t *ao = json_pack("{s:I,s:i,s:i,s:s,s:b}", "area", (json_int_t)a, "floor_id",
                                   b->floors[f].id, "side", s, "short_name", b->floors[f].name,
                                   "locked", sim_faults_locked(&g->faults, a));
            append(areas, ao, &ok);
        }
        if (fl) {
            put(fl, "floor_id", json_integer(b->floors[f].id), &ok);
            put(fl, "name", json_string(b->floors[f].name), &ok);
            put(fl, "areas", fa, &ok);
            put(fl, "transfer", json_boolean((int)f == g->transfer_floor), &ok);
            append(floors, fl, &ok);
        } else {
            json_decref(fa);
        }
    }
    for (size_t i = 0; i < g->n_lifts; i++) {
        const sim_lift *l = &g->lifts[i];
        json_t *served = json_array();
        for (size_t f = 0; served && f < b->n_floors; f++)
            if (l->serves[f])
                append(served, json_integer(b->floors[f].id), &ok);
        json_t *lo = served ? json_pack("{s:s,s:s,s:[{s:I,s:o,s:b}]}", "lift_id", l->id, "name",
                                        l->name, "decks", "area", (json_int_t)l->deck, "floors",
                                        served, "rear_doors", l->rear)
                            : NULL;
        append(lifts, lo, &ok);
    }
    put(o, "floors", floors, &ok);
    put(o, "areas", areas, &ok);
    put(o, "lifts", lifts, &ok);
    put(o, "terminals", json_pack("[i]", 1), &ok);
    put(o, "lift_mode", json_integer(sim_mode_code(g->faults.mode)), &ok);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *sim_building_actions_json(const sim_building *b)
{
    json_t *list = json_array();
    bool ok = list != NULL;
    for (size_t i = 0; ok && i < b->n_actions; i++) {
        const sim_action *a = &b->actions[i];
        append(list,
               json_pack("{s:i,s:s,s:s,s:b}", "action_id", a->id, "name", a->name, "kind",
                         action_kind_names[a->kind], "disabled", a->disabled),
               &ok);
    }
    json_t *o = ok ? json_pack("{s:o}", "call_types", list) : NULL;
    if (!o)
        json_decref(list);
    return o;
}
