/* Unit tests for worker/idmap.c, the id -> pointer multimap the KONE client finds jobs in
 * (by request id, by call session id): an empty map, a thousand ids as in flight, several
 * values under one key, and a long seeded churn of puts and deletes checked against a plain
 * model after every step, during which the table must not grow past what it holds (deleted
 * entries are reclaimed: a worker runs for weeks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "idmap.h"
#include "test_xorshift.h"

static int objs[8];

static int count_of(const kd_idmap *m, int64_t key, const void *val)
{
    int n = 0;
    size_t it = 0;
    for (void *v; (v = kd_idmap_next(m, key, &it));)
        n += v == val;
    return n;
}

static int values_of(const kd_idmap *m, int64_t key)
{
    int n = 0;
    size_t it = 0;
    while (kd_idmap_next(m, key, &it))
        n++;
    return n;
}

static void test_empty(void **state)
{
    (void)state;
    kd_idmap m = {0};
    size_t it = 0;
    assert_null(kd_idmap_next(&m, 1, &it));
    assert_false(kd_idmap_del(&m, 1, &objs[0]));
    assert_int_equal(kd_idmap_put(&m, 1, NULL), -1); /* NULL is no value */
    assert_int_equal(values_of(&m, 1), 0);
    kd_idmap_free(&m);
}

static void test_thousand_in_flight(void **state)
{
    (void)state;
    kd_idmap m = {0};
    static int jobs[1000];
    /* request ids as the client hands them out: consecutive */
    for (int i = 0; i < 1000; i++)
        assert_int_equal(kd_idmap_put(&m, 5000 + i, &jobs[i]), 0);
    assert_int_equal(m.n, 1000);
    for (int i = 0; i < 1000; i++) {
        size_t it = 0;
        assert_ptr_equal(kd_idmap_next(&m, 5000 + i, &it), &jobs[i]);
        assert_null(kd_idmap_next(&m, 5000 + i, &it)); /* and nothing else */
    }
    assert_int_equal(values_of(&m, 4999), 0);
    assert_int_equal(values_of(&m, 6000), 0);
    /* answered in another order than sent: each leaves, the others stay found */
    for (int i = 999; i >= 0; i -= 2)
        assert_true(kd_idmap_del(&m, 5000 + i, &jobs[i]));
    for (int i = 0; i < 1000; i++)
        assert_int_equal(count_of(&m, 5000 + i, &jobs[i]), i % 2 ? 0 : 1);
    assert_false(kd_idmap_del(&m, 5001, &jobs[1])); /* gone already */
    kd_idmap_free(&m);
}

static void test_several_values(void **state)
{
    (void)state;
    kd_idmap m = {0};
    assert_int_equal(kd_idmap_put(&m, 42, &objs[0]), 0);
    assert_int_equal(kd_idmap_put(&m, 42, &objs[1]), 0);
    assert_int_equal(kd_idmap_put(&m, 42, &objs[2]), 0);
    assert_int_equal(kd_idmap_put(&m, 42, &objs[1]), 0); /* held once */
    assert_int_equal(kd_idmap_put(&m, 43, &objs[1]), 0); /* one value under two keys */
    assert_int_equal(values_of(&m, 42), 3);
    assert_int_equal(count_of(&m, 42, &objs[1]), 1);
    assert_true(kd_idmap_del(&m, 42, &objs[1]));
    assert_int_equal(values_of(&m, 42), 2);
    assert_int_equal(count_of(&m, 42, &objs[0]) + count_of(&m, 42, &objs[2]), 2);
    assert_int_equal(count_of(&m, 43, &objs[1]), 1); /* its other key keeps it */
    assert_false(kd_idmap_del(&m, 42, &objs[1]));
    assert_false(kd_idmap_del(&m, 44, &objs[0]));
    kd_idmap_free(&m);
}

#define KEYS 300 /* x 8 values: 2400 pairs possible */
static void test_churn_against_model(void **state)
{
    (void)state;
    static bool model[KEYS][8];
    kd_idmap m = {0};
    size_t held = 0, max_cap = 0;
    for (int step = 0; step < 200000; step++) {
        int64_t key = (int64_t)(xorshift() % KEYS) - KEYS / 2; /* negative and 0 too */
        int v = (int)(xorshift() % 8);
        bool *in = &model[key + KEYS / 2][v];
        /* puts lead until ~1000 pairs are held; then deletes lead (a delete of a random
         * pair misses more often than a put does), so about 1000 stay held */
        if ((int)(xorshift() % 10) < (held < 1000 ? 7 : 4)) {
            assert_int_equal(kd_idmap_put(&m, key, &objs[v]), 0);
            held += !*in;
            *in = true;
        } else {
            assert_int_equal(kd_idmap_del(&m, key, &objs[v]), *in);
            held -= *in;
            *in = false;
        }
        assert_int_equal(m.n, held);
        int n = 0;
        for (int w = 0; w < 8; w++) {
            assert_int_equal(count_of(&m, key, &objs[w]), model[key + KEYS / 2][w] ? 1 : 0);
            n += model[key + KEYS / 2][w];
        }
        assert_int_equal(values_of(&m, key), n);
        if (m.cap > max_cap)
            max_cap = m.cap;
    }
    assert_true(held > 800);
    /* ~1000 pairs held: at most half full, so 4096 entries; deletions never made it grow
     * further */
    assert_true(max_cap <= 4096);
    for (int k = 0; k < KEYS; k++)
        for (int w = 0; w < 8; w++)
            assert_int_equal(count_of(&m, k - KEYS / 2, &objs[w]), model[k][w] ? 1 : 0);
    kd_idmap_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_thousand_in_flight),
        cmocka_unit_test(test_several_values),
        cmocka_unit_test(test_churn_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
