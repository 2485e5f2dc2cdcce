/* test_metrics: the metrics registry: math, label bounds, "other", exact exposition text,
 * concurrent updates, the msgpack snapshot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kd_metrics.h"

static const char *const v_ops[] = {"call", "cancel", NULL};
static const char *const v_outcomes[] = {"ok", "failed", NULL};
static const char *const v_buildings[] = {"building:1", "building:2", "other", NULL};
static const double b_small[] = {0.1, 0.5, 1};

static kd_metrics *new_reg(void)
{
    kd_metrics *reg = NULL;
    assert_int_equal(kd_metrics_new(&reg, NULL), 0);
    return reg;
}

static void test_counter_gauge_histogram_math(void **state)
{
    (void)state;
    kd_metrics *reg = new_reg();
    kd_metric *c, *g, *h;
    kd_metric_desc dc = {.name = "t_jobs_total",
                         .help = "h",
                         .type = KD_METRIC_COUNTER,
                         .n_labels = 2,
                         .labels = {"op", "outcome"},
                         .values = {v_ops, v_outcomes}};
    kd_metric_desc dg = {.name = "t_inflight", .help = "h", .type = KD_METRIC_GAUGE};
    kd_metric_desc dh = {.name = "t_seconds",
                         .help = "h",
                         .type = KD_METRIC_HISTOGRAM,
                         .buckets = b_small,
                         .n_buckets = 3};
    assert_int_equal(kd_metrics_register(reg, &dc, &c, NULL), 0);
    assert_int_equal(kd_metrics_register(reg, &dg, &g, NULL), 0);
    assert_int_equal(kd_metrics_register(reg, &dh, &h, NULL), 0);

    kd_counter_addv(c, KD_LV("call", "ok"), 1);
    kd_counter_addv(c, KD_LV("call", "ok"), 2);
    kd_counter_addv(c, KD_LV("cancel", "failed"), 5);
    assert_int_equal(kd_counter_value(c, kd_metric_series(c, KD_LV("call", "ok"))), 3);
    assert_int_equal(kd_counter_value(c, kd_metric_series(c, KD_LV("cancel", "failed"))), 5);
    assert_int_equal(kd_counter_value(c, kd_metric_series(c, KD_LV("call", "failed"))), 0);
    /* mixed radix: (call, ok) = 0, (call, failed) = 1, (cancel, ok) = 2, (cancel, failed) = 3 */
    assert_int_equal(kd_metric_series(c, KD_LV("cancel", "failed")), 3);

    kd_gauge_set(g, 0, 10);
    kd_gauge_add(g, 0, -2.5);
    assert_true(kd_gauge_value(g, 0) == 7.5);

    double obs[] = {0.05, 0.1, 0.3, 0.5, 0.9, 2, 100};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
        kd_histogram_observe(h, 0, obs[i]);
    kd_histogram_observe(h, 0, NAN); /* ignored */
    uint64_t cum[4];
    double sum = 0;
    assert_int_equal(kd_histogram_value(h, 0, &sum, cum), 7);
    assert_int_equal(cum[0], 2); /* le 0.1 is inclusive: 0.05, 0.1 */
    assert_int_equal(cum[1], 4); /* + 0.3, 0.5 */
    assert_int_equal(cum[2], 5); /* + 0.9 */
    assert_int_equal(cum[3], 7); /* +Inf */
    assert_true(fabs(sum - 103.85) < 1e-9);
    kd_metrics_free(reg);
}

static void test_registration_refuses_unbounded_or_bad(void **state)
{
    (void)state;
    kd_metrics *reg = new_reg();
    kd_err err = {0};
    static const char *const empty[] = {NULL};
    static const char *const dup[] = {"a", "a", NULL};
    static const char *const blank[] = {"a", "", NULL};
    static const double unsorted[] = {1, 0.5};
    struct {
        kd_metric_desc d;
        const char *msg;
    } bad[] = {
        {{.name = "t_jobs", .help = "h", .type = KD_METRIC_COUNTER}, "_total"},
        {{.name = "t_gauge_total", .help = "h", .type = KD_METRIC_GAUGE}, "only counters"},
        {{.name = "9bad", .help = "h", .type = KD_METRIC_GAUGE}, "not a valid"},
        {{.name = "t_x", .help = "", .type = KD_METRIC_GAUGE}, "help"},
        {{.name = "t_x",
          .help = "h",
          .type = KD_METRIC_GAUGE,
          .n_labels = 1,
          .labels = {"job_id"},
          .values = {NULL}},
         "no values"},
        {{.name = "t_x",
          .help = "h",
          .type = KD_METRIC_GAUGE,
          .n_labels = 1,
          .labels = {"op"},
          .values = {empty}},
         "no values"},
        {{.name = "t_x",
          .help = "h",
          .type = KD_METRIC_GAUGE,
          .n_labels = 1,
          .labels = {"op"},
          .values = {dup}},
         "twice"},
        {{.name = "t_x",
          .help = "h",
          .type = KD_METRIC_GAUGE,
          .n_labels = 1,
          .labels = {"op"},
          .values = {blank}},
         "label op: empty value"},
        {{.name = "t_x",
          .help = "h",
          .type = KD_METRIC_GAUGE,
          .n_labels = 2,
          .labels = {"op", "op"},
          .values = {v_ops, v_ops}},
         "label op twice"},
        {{.name = "t_x",
          .help = "h",
          .type = KD_METRIC_GAUGE,
          .n_labels = 1,
          .labels = {"__op"},
          .values = {v_ops}},
         "not valid"},
        {{.name = "t_x",
          .help = "h",
          .type = KD_METRIC_HISTOGRAM,
          .n_labels = 1,
          .labels = {"le"},
          .values = {v_ops},
          .buckets = b_small,
          .n_buckets = 3},
         "reserved"},
        {{.name = "t_x",
          .help = "h",
          .type = KD_METRIC_HISTOGRAM,
          .buckets = unsorted,
          .n_buckets = 2},
         "ascending"},
        {{.name = "t_x", .help = "h", .type = KD_METRIC_HISTOGRAM}, "buckets"},
        {{.name = "t_x", .help = "h", .type = KD_METRIC_GAUGE, .n_labels = 4}, "at most"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kd_metric *m = NULL;
        assert_int_equal(kd_metrics_register(reg, &bad[i].d, &m, &err), KD_ERR_INVALID);
        assert_null(m);
        if (!strstr(err.msg, bad[i].msg))
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bad[i].msg);
    }
    /* too many series: 17^3 > 4096 */
    static const char *v17[18];
    static char names[17][8];
    for (int i = 0; i < 17; i++) {
        snprintf(names[i], sizeof names[i], "v%d", i);
        v17[i] = names[i];
    }
    kd_metric_desc big = {.name = "t_big",
                          .help = "h",
                          .type = KD_METRIC_GAUGE,
                          .n_labels = 3,
                          .labels = {"a", "b", "c"},
                          .values = {v17, v17, v17}};
    assert_int_equal(kd_metrics_register(reg, &big, NULL, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "series"));
    /* the same name twice */
    kd_metric_desc ok = {.name = "t_ok", .help = "h", .type = KD_METRIC_GAUGE};
    assert_int_equal(kd_metrics_register(reg, &ok, NULL, &err), 0);
    assert_int_equal(kd_metrics_register(reg, &ok, NULL, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "twice"));
    kd_metrics_free(reg);
}

static void test_unknown_values_map_to_other_or_are_dropped(void **state)
{
    (void)state;
    kd_metrics *reg = new_reg();
    kd_metric *waits, *jobs;
    kd_metric_desc dw = {.name = "t_waits_total",
                         .help = "h",
                         .type = KD_METRIC_COUNTER,
                         .n_labels = 1,
                         .labels = {"building"},
                         .values = {v_buildings}};
    kd_metric_desc dj = {.name = "t_jobs_total",
                         .help = "h",
                         .type = KD_METRIC_COUNTER,
                         .n_labels = 1,
                         .labels = {"op"},
                         .values = {v_ops}};
    assert_int_equal(kd_metrics_register(reg, &dw, &waits, NULL), 0);
    assert_int_equal(kd_metrics_register(reg, &dj, &jobs, NULL), 0);
    kd_counter_addv(waits, KD_LV("building:1"), 1);
    kd_counter_addv(waits, KD_LV("building:999"), 1);
    kd_counter_addv(waits, KD_LV("job-1234"), 1);
    kd_counter_addv(waits, KD_LV(NULL), 1);
    assert_int_equal(kd_counter_value(waits, kd_metric_series(waits, KD_LV("building:1"))), 1);
    assert_int_equal(kd_counter_value(waits, kd_metric_series(waits, KD_LV("other"))), 3);
    assert_int_equal(kd_metric_series(waits, KD_LV("nope")),
                     kd_metric_series(waits, KD_LV("other")));
    /* no "other" in the list: dropped and counted */
    assert_int_equal(kd_metric_series(jobs, KD_LV("hold_open")), -1);
    kd_counter_addv(jobs, KD_LV("hold_open"), 1);
    kd_counter_add(jobs, 99, 1);
    assert_int_equal(kd_metrics_label_misses(reg), 2);
    /* wrong type and NULL family are no-ops */
    kd_gauge_set(jobs, 0, 5);
    kd_counter_add(NULL, 0, 1);
    assert_int_equal(kd_counter_value(jobs, 0), 0);
    size_t len;
    char *text = kd_metrics_expose(reg, &len);
    assert_null(strstr(text, "job-1234"));
    assert_null(strstr(text, "building:999"));
    free(text);
    kd_metrics_free(reg);
}

static void test_exposition_exact_text(void **state)
{
    (void)state;
    kd_metrics *reg = new_reg();
    kd_metric *c, *g, *h, *hl, *info;
    static const char *const v_ver[] = {"1.2.3", NULL};
    static const char *const v_odd[] = {"a\"b\\c\nd", NULL};
    kd_metric_desc d[] = {
        {.name = "t_jobs_total",
         .help = "Jobs done.\nSecond \\ line.",
         .type = KD_METRIC_COUNTER,
         .n_labels = 2,
         .labels = {"op", "outcome"},
         .values = {v_ops, v_outcomes}},
        {.name = "t_temperature_celsius",
         .help = "A gauge.",
         .type = KD_METRIC_GAUGE,
         .n_labels = 1,
         .labels = {"odd"},
         .values = {v_odd}},
        {.name = "t_wait_seconds",
         .help = "A histogram.",
         .type = KD_METRIC_HISTOGRAM,
         .buckets = b_small,
         .n_buckets = 3},
        {.name = "t_rtt_seconds",
         .help = "Sparse.",
         .type = KD_METRIC_HISTOGRAM,
         .n_labels = 1,
         .labels = {"op"},
         .values = {v_ops},
         .buckets = b_small,
         .n_buckets = 3},
        {.name = "t_build_info",
         .help = "Build.",
         .type = KD_METRIC_GAUGE,
         .n_labels = 1,
         .labels = {"version"},
         .values = {v_ver}},
    };
    kd_metric **slots[] = {&c, &g, &h, &hl, &info};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(kd_metrics_register(reg, &d[i], slots[i], NULL), 0);
    kd_counter_addv(c, KD_LV("call", "ok"), 7);
    kd_gauge_set(g, 0, 0.1);
    kd_histogram_observe(h, 0, 0.25);
    kd_histogram_observe(h, 0, 3);
    kd_histogram_observev(hl, KD_LV("cancel"), 0.5);
    kd_gauge_set(info, 0, 1);
    size_t len = 0;
    char *text = kd_metrics_expose(reg, &len);
    const char *want = "# HELP t_jobs_total Jobs done.\\nSecond \\\\ line.\n"
                       "# TYPE t_jobs_total counter\n"
                       "t_jobs_total{op=\"call\",outcome=\"ok\"} 7\n"
                       "t_jobs_total{op=\"call\",outcome=\"failed\"} 0\n"
                       "t_jobs_total{op=\"cancel\",outcome=\"ok\"} 0\n"
                       "t_jobs_total{op=\"cancel\",outcome=\"failed\"} 0\n"
                       "# HELP t_temperature_celsius A gauge.\n"
                       "# TYPE t_temperature_celsius gauge\n"
                       "t_temperature_celsius{odd=\"a\\\"b\\\\c\\nd\"} 0.1\n"
                       "# HELP t_wait_seconds A histogram.\n"
                       "# TYPE t_wait_seconds histogram\n"
                       "t_wait_seconds_bucket{le=\"0.1\"} 0\n"
                       "t_wait_seconds_bucket{le=\"0.5\"} 1\n"
                       "t_wait_seconds_bucket{le=\"1\"} 1\n"
                       "t_wait_seconds_bucket{le=\"+Inf\"} 2\n"
                       "t_wait_seconds_sum 3.25\n"
                       "t_wait_seconds_count 2\n"
                       "# HELP t_rtt_seconds Sparse.\n"
                       "# TYPE t_rtt_seconds histogram\n"
                       "t_rtt_seconds_bucket{op=\"cancel\",le=\"0.1\"} 0\n"
                       "t_rtt_seconds_bucket{op=\"cancel\",le=\"0.5\"} 1\n"
                       "t_rtt_seconds_bucket{op=\"cancel\",le=\"1\"} 1\n"
                       "t_rtt_seconds_bucket{op=\"cancel\",le=\"+Inf\"} 1\n"
                       "t_rtt_seconds_sum{op=\"cancel\"} 0.5\n"
                       "t_rtt_seconds_count{op=\"cancel\"} 1\n"
                       "# HELP t_build_info Build.\n"
                       "# TYPE t_build_info gauge\n"
                       "t_build_info{version=\"1.2.3\"} 1\n";
    assert_string_equal(text, want);
    assert_int_equal(len, strlen(want));
    free(text);
    kd_metrics_free(reg);

    kd_metrics *empty = new_reg();
    text = kd_metrics_expose(empty, &len);
    assert_string_equal(text, "");
    free(text);
    kd_metrics_free(empty);
}

static void test_format_double(void **state)
{
    (void)state;
    char b[64];
    struct {
        double v;
        const char *s;
    } cases[] = {
        {0, "0"},
        {1, "1"},
        {0.1, "0.1"},
        {0.005, "0.005"},
        {12345678, "12345678"},
        {1.0 / 3, "0.333333333333333"},
        {INFINITY, "+Inf"},
        {-INFINITY, "-Inf"},
        {NAN, "NaN"},
        {1e21, "1e+21"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kd_metrics_format_double(cases[i].v, b, sizeof b);
        if (i == 5) { /* shortest text that reads back exactly */
            assert_true(strtod(b, NULL) == cases[i].v);
            continue;
        }
        assert_string_equal(b, cases[i].s);
    }
}

/* ---- concurrency ---- */

#define THREADS 8
#define PER_THREAD 100000

typedef struct {
    kd_metric *c, *g, *h;
} conc;

static void *hammer(void *arg)
{
    conc *x = arg;
    long s = kd_metric_series(x->c, KD_LV("call", "ok"));
    for (int i = 0; i < PER_THREAD; i++) {
        kd_counter_add(x->c, s, 1);
        kd_gauge_add(x->g, 0, 1);
        kd_histogram_observe(x->h, 0, (i % 4) * 0.25); /* 0, .25, .5, .75 */
    }
    return NULL;
}

static void test_concurrent_updates_are_exact(void **state)
{
    (void)state;
    kd_metrics *reg = new_reg();
    conc x;
    kd_metric_desc dc = {.name = "t_jobs_total",
                         .help = "h",
                         .type = KD_METRIC_COUNTER,
                         .n_labels = 2,
                         .labels = {"op", "outcome"},
                         .values = {v_ops, v_outcomes}};
    kd_metric_desc dg = {.name = "t_g", .help = "h", .type = KD_METRIC_GAUGE};
    kd_metric_desc dh = {.name = "t_h_seconds",
                         .help = "h",
                         .type = KD_METRIC_HISTOGRAM,
                         .buckets = b_small,
                         .n_buckets = 3};
    assert_int_equal(kd_metrics_register(reg, &dc, &x.c, NULL), 0);
    assert_int_equal(kd_metrics_register(reg, &dg, &x.g, NULL), 0);
    assert_int_equal(kd_metrics_register(reg, &dh, &x.h, NULL), 0);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &x), 0);
    /* expose while they run: must not crash, and +Inf must equal _count */
    for (int k = 0; k < 20; k++) {
        char *text = kd_metrics_expose(reg, NULL);
        assert_non_null(text);
        unsigned long long inf = 0, count = 0;
        const char *p = strstr(text, "t_h_seconds_bucket{le=\"+Inf\"} ");
        const char *q = strstr(text, "t_h_seconds_count ");
        assert_non_null(p);
        assert_non_null(q);
        sscanf(p + strlen("t_h_seconds_bucket{le=\"+Inf\"} "), "%llu", &inf);
        sscanf(q + strlen("t_h_seconds_count "), "%llu", &count);
        assert_int_equal(inf, count);
        free(text);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    uint64_t total = (uint64_t)THREADS * PER_THREAD;
    assert_int_equal(kd_counter_value(x.c, 0), total);
    assert_true(kd_gauge_value(x.g, 0) == (double)total);
    uint64_t cum[4];
    double sum;
    assert_int_equal(kd_histogram_value(x.h, 0, &sum, cum), total);
    assert_int_equal(cum[0], total / 4);         /* 0 */
    assert_int_equal(cum[1], total / 4 * 3);     /* + 0.25 and 0.5 (le is inclusive) */
    assert_int_equal(cum[2], total);             /* + 0.75 */
    assert_true(sum == (double)total / 4 * 1.5); /* exact: quarters add exactly */
    kd_metrics_free(reg);
}

/* ---- snapshot ---- */

static const msgpack_object *map_get(const msgpack_object *o, const char *key)
{
    assert_int_equal(o->type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, strlen(key)) == 0)
            return &kv->val;
    }
    fail_msg("key %s missing", key);
    return NULL;
}

static bool str_is(const msgpack_object *o, const char *s)
{
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, strlen(s)) == 0;
}

static void test_snapshot_msgpack(void **state)
{
    (void)state;
    kd_metrics *reg = new_reg();
    kd_metric *c, *g, *h;
    kd_metric_desc dc = {.name = "t_jobs_total",
                         .help = "h",
                         .type = KD_METRIC_COUNTER,
                         .n_labels = 2,
                         .labels = {"op", "outcome"},
                         .values = {v_ops, v_outcomes}};
    kd_metric_desc dg = {.name = "t_g", .help = "h", .type = KD_METRIC_GAUGE};
    kd_metric_desc dh = {.name = "t_h_seconds",
                         .help = "h",
                         .type = KD_METRIC_HISTOGRAM,
                         .n_labels = 1,
                         .labels = {"op"},
                         .values = {v_ops},
                         .buckets = b_small,
                         .n_buckets = 3};
    assert_int_equal(kd_metrics_register(reg, &dc, &c, NULL), 0);
    assert_int_equal(kd_metrics_register(reg, &dg, &g, NULL), 0);
    assert_int_equal(kd_metrics_register(reg, &dh, &h, NULL), 0);
    kd_counter_addv(c, KD_LV("cancel", "failed"), 4);
    kd_gauge_set(g, 0, 2.5);
    kd_histogram_observev(h, KD_LV("call"), 0.3);

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(kd_metrics_snapshot_msgpack(reg, "w-1", 1764360900000, &sb, NULL), 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, sb.size);
    const msgpack_object *root = &u.data;
    assert_int_equal(root->via.map.size, 4);
    assert_int_equal(map_get(root, "v")->via.u64, 1);
    assert_true(str_is(map_get(root, "worker"), "w-1"));
    assert_int_equal(map_get(root, "at")->via.u64, 1764360900000ULL);
    const msgpack_object *ms = map_get(root, "metrics");
    assert_int_equal(ms->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(ms->via.array.size, 3);

    const msgpack_object *jobs = &ms->via.array.ptr[0];
    assert_true(str_is(map_get(jobs, "name"), "t_jobs_total"));
    assert_true(str_is(map_get(jobs, "type"), "counter"));
    const msgpack_object *series = map_get(jobs, "series");
    assert_int_equal(series->via.array.size, 4); /* counters: every series */
    const msgpack_object *last = &series->via.array.ptr[3];
    assert_true(str_is(map_get(map_get(last, "labels"), "op"), "cancel"));
    assert_true(str_is(map_get(map_get(last, "labels"), "outcome"), "failed"));
    assert_int_equal(map_get(last, "value")->via.u64, 4);

    const msgpack_object *gauge = &ms->via.array.ptr[1];
    const msgpack_object *gs = &map_get(gauge, "series")->via.array.ptr[0];
    assert_int_equal(map_get(gs, "labels")->via.map.size, 0);
    assert_int_equal(map_get(gs, "value")->type, MSGPACK_OBJECT_FLOAT64);
    assert_true(map_get(gs, "value")->via.f64 == 2.5);

    const msgpack_object *hist = &ms->via.array.ptr[2];
    assert_true(str_is(map_get(hist, "type"), "histogram"));
    assert_int_equal(map_get(hist, "le")->via.array.size, 3);
    const msgpack_object *hs = map_get(hist, "series");
    assert_int_equal(hs->via.array.size, 1); /* only the observed series */
    const msgpack_object *h0 = &hs->via.array.ptr[0];
    assert_true(str_is(map_get(map_get(h0, "labels"), "op"), "call"));
    assert_int_equal(map_get(h0, "count")->via.u64, 1);
    assert_true(map_get(h0, "sum")->via.f64 == 0.3);
    const msgpack_object *bk = map_get(h0, "buckets");
    assert_int_equal(bk->via.array.size, 4);
    assert_int_equal(bk->via.array.ptr[0].via.u64, 0);
    assert_int_equal(bk->via.array.ptr[1].via.u64, 1);
    assert_int_equal(bk->via.array.ptr[3].via.u64, 1);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    kd_metrics_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_gauge_histogram_math),
        cmocka_unit_test(test_registration_refuses_unbounded_or_bad),
        cmocka_unit_test(test_unknown_values_map_to_other_or_are_dropped),
        cmocka_unit_test(test_exposition_exact_text),
        cmocka_unit_test(test_format_double),
        cmocka_unit_test(test_concurrent_updates_are_exact),
        cmocka_unit_test(test_snapshot_msgpack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
