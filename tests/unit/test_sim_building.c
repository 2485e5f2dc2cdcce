/* test_sim_building: kone-sim's buildings file, as an operator who edits it meets it: a good
 * file loads whole, and each kind of mistake is refused with the place it is at named
 * ("building:1.groups[0].lifts[1]: ..."). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "building.h"

/* One building: floors 1..3 (floor 2 with a front and a rear area), two actions, group 1
 * (floors 1-3, lifts A and B, B serving 1 and 2) and group 2 (floors 1-2, lift C). */
static const char base[] =
    "{\"buildings\": [{\"id\": \"building:1\", \"name\": \"B\","
    " \"floors\": [{\"id\": 1}, {\"id\": 2, \"areas\": [{\"area\": 2000}, {\"area\": 2001, "
    "\"side\": 2}]}, {\"id\": 3}],"
    " \"actions\": [{\"id\": 1, \"kind\": \"destination\"}, {\"id\": 2, \"kind\": \"car\", "
    "\"disabled\": true}],"
    " \"groups\": [{\"id\": \"1\", \"floors\": [[1, 3]], \"lifts\": [{\"id\": \"A\", \"deck\": "
    "9001}, {\"id\": \"B\", \"deck\": 9002, \"floors\": [1, 2]}]},"
    " {\"id\": \"2\", \"floors\": [1, 2], \"transfer_floor\": 2, \"lifts\": [{\"id\": \"C\", "
    "\"deck\": 9003}]}]}]}";

/* The base file with the value at path ("groups/0/lifts", below the building) set to the JSON
 * text value (appended when the last segment is "+"); then loaded. Returns the load's code. */
static int load_with(sim_world *w, const char *path, const char *value, kd_err *err)
{
    json_t *doc = json_loads(base, 0, NULL);
    assert_non_null(doc);
    json_t *node = json_array_get(json_object_get(doc, "buildings"), 0);
    char p[128];
    snprintf(p, sizeof p, "%s", path ? path : "");
    char *save = NULL;
    for (char *seg = strtok_r(p, "/", &save); path && seg;) {
        char *next = strtok_r(NULL, "/", &save);
        json_t *v = next ? NULL : json_loads(value, JSON_DECODE_ANY, NULL);
        assert_true(next || v);
        if (json_is_array(node) && strcmp(seg, "+") == 0)
            json_array_append_new(node, v);
        else if (json_is_array(node) && next)
            node = json_array_get(node, (size_t)atoi(seg));
        else if (json_is_array(node))
            json_array_set_new(node, (size_t)atoi(seg), v);
        else if (next)
            node = json_object_get(node, seg);
        else
            json_object_set_new(node, seg, v);
        assert_non_null(node);
        seg = next;
    }
    int rc = sim_world_from_json(w, doc, err);
    json_decref(doc);
    return rc;
}

static void test_good_file_loads_whole(void **state)
{
    (void)state;
    sim_world w;
    kd_err err = {0};
    if (load_with(&w, NULL, NULL, &err))
        fail_msg("%s", err.msg);
    const sim_building *b = sim_world_building(&w, "building:1");
    assert_non_null(b);
    assert_int_equal(b->n_floors, 3);
    assert_int_equal(b->floors[0].area[1], 1000); /* a terse floor: its front area */
    assert_int_equal(b->floors[1].area[2], 2001);
    assert_int_equal(b->n_actions, 2);
    assert_true(b->actions[1].disabled);
    assert_int_equal(b->n_groups, 2);
    assert_int_equal(b->groups[0].n_lifts, 2);
    assert_true(b->groups[0].lifts[1].serves[1]);
    assert_false(b->groups[0].lifts[1].serves[2]);
    assert_int_equal(b->groups[1].n_lifts, 1);
    assert_int_equal(b->groups[1].transfer_floor, 1);
    sim_world_free(&w);
}

static void test_mistakes_refused_with_their_place(void **state)
{
    (void)state;
    char sizes[5][96];
    snprintf(sizes[0], sizeof sizes[0], "building:1.floors: must be an array of 2..%d floors",
             SIM_MAX_FLOORS);
    snprintf(sizes[1], sizeof sizes[1],
             "building:1.floors[1].areas: must be an array of 1..%d areas", SIM_MAX_SIDES);
    snprintf(sizes[2], sizeof sizes[2], "building:1.actions: must be an array of 1..%d actions",
             SIM_MAX_ACTIONS);
    snprintf(sizes[3], sizeof sizes[3], "building:1.groups: must be an array of 1..%d groups",
             SIM_MAX_GROUPS);
    snprintf(sizes[4], sizeof sizes[4],
             "building:1.groups[0].lifts: must be an array of 1..%d lifts", SIM_MAX_LIFTS);
    static const struct {
        const char *path, *value;
        int size; /* expect sizes[size - 1] */
        const char *want;
    } cases[] = {
        {"floors", "5", 1, NULL},
        {"floors", "[{\"id\": 1}]", 1, NULL},
        {"floors/1", "\"x\"", 0, "building:1.floors[1]: must be an object"},
        {"floors/1/id", "1", 0, "building:1.floors[1].id: missing or duplicate"},
        {"floors/0/id", "5", 0, "building:1.floors[1].id: floors must be listed bottom-up"},
        {"floors/1/areas", "[]", 2, NULL},
        {"floors/1/areas/1/side", "1", 0,
         "building:1.floors[1].areas[1]: missing area or side used twice"},
        {"floors/1/areas/0/area", "\"x\"", 0,
         "building:1.floors[1].areas[0].area: must be an integer in 1..4611686018427387903"},
        {"floors/1/areas/0/area", "1000", 0, "building:1: area 1000 defined twice"},
        {"actions", "[]", 3, NULL},
        {"actions/0/kind", "\"lift\"", 0,
         "building:1.actions[0].kind: must be destination, landing_up, landing_down or car"},
        {"actions/1/id", "1", 0, "building:1.actions[1].id: missing, 0 or duplicate"},
        {"groups", "[]", 4, NULL},
        {"groups/+", "{\"id\": \"1\", \"floors\": [1]}", 0,
         "building:1.groups[2].id: missing or duplicate"},
        {"groups/0/lifts", "\"x\"", 5, NULL},
        {"groups/1/lifts/+", "{\"id\": \"Z\", \"deck\": 9001}", 0,
         "building:1.groups[1].lifts[1]: lift id or deck used twice"},
        {"groups/1/lifts/+", "{\"id\": \"Z\", \"deck\": 9011, \"floors\": [3]}", 0,
         "building:1.groups[1].lifts[1].floors: floor 3 not served by group"},
        {"groups/1/transfer_floor", "3", 0,
         "building:1.groups[1].transfer_floor: must be a floor the group serves"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sim_world w;
        kd_err err = {0};
        const char *want = cases[i].size ? sizes[cases[i].size - 1] : cases[i].want;
        if (load_with(&w, cases[i].path, cases[i].value, &err) != KD_ERR_INVALID)
            fail_msg("%s = %s: loaded (expected '%s')", cases[i].path, cases[i].value, want);
        if (strcmp(err.msg, want) != 0)
            fail_msg("%s = %s: '%s', expected '%s'", cases[i].path, cases[i].value, err.msg, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file_loads_whole),
        cmocka_unit_test(test_mistakes_refused_with_their_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
