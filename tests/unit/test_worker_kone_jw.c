/* Unit tests for worker/kone_jw.c: commas and nesting, escaping of every byte against what
 * jansson writes for the same string, integers at their extremes, growth past the first
 * allocation, and the error flag. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "kone_jw.h"

/* Checks the writer's text and frees it. */
static void assert_text(kd_jw *w, const char *want)
{
    char *s = kd_jw_finish(w);
    assert_non_null(s);
    assert_string_equal(s, want);
    free(s);
}

/* What jansson writes for one string value (compact, as the builders once dumped). */
static char *jansson_string(const char *s)
{
    json_t *v = json_string(s);
    assert_non_null(v);
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(t);
    json_decref(v);
    return t;
}

static void test_structure(void **state)
{
    (void)state;
    kd_jw w;
    kd_jw_init(&w, 64);
    kd_jw_obj_begin(&w);
    kd_jw_obj_end(&w);
    assert_text(&w, "{}");

    kd_jw_init(&w, 64);
    kd_jw_obj_begin(&w);
    kd_jw_kint(&w, "a", 1);
    kd_jw_key(&w, "b");
    kd_jw_arr_begin(&w);
    kd_jw_int(&w, 1);
    kd_jw_str(&w, "two");
    kd_jw_obj_begin(&w);
    kd_jw_kstr(&w, "c", "d");
    kd_jw_obj_end(&w);
    kd_jw_arr_begin(&w);
    kd_jw_arr_end(&w);
    kd_jw_obj_begin(&w);
    kd_jw_obj_end(&w);
    kd_jw_arr_end(&w);
    kd_jw_key(&w, "e");
    kd_jw_obj_begin(&w);
    kd_jw_obj_end(&w);
    kd_jw_kstr(&w, "f", "");
    kd_jw_obj_end(&w);
    assert_text(&w, "{\"a\":1,\"b\":[1,\"two\",{\"c\":\"d\"},[],{}],\"e\":{},\"f\":\"\"}");

    /* a writer is reusable after finish */
    kd_jw_arr_begin(&w);
    kd_jw_int(&w, 7);
    kd_jw_arr_end(&w);
    assert_text(&w, "[7]");
}

/* Every byte 0x01..0x7f alone, and all of them in one string, written exactly as jansson
 * writes them, and read back to the same bytes. */
static void test_escapes_match_jansson(void **state)
{
    (void)state;
    char all[128];
    for (int c = 1; c < 128; c++) {
        all[c - 1] = (char)c;
        char one[2] = {(char)c, '\0'};
        kd_jw w;
        kd_jw_init(&w, 16);
        kd_jw_str(&w, one);
        char *want = jansson_string(one);
        assert_text(&w, want);
        free(want);
    }
    all[127] = '\0';
    kd_jw w;
    kd_jw_init(&w, 16);
    kd_jw_str(&w, all);
    char *s = kd_jw_finish(&w);
    char *want = jansson_string(all);
    assert_string_equal(s, want);
    json_t *v = json_loads(s, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    assert_string_equal(json_string_value(v), all);
    json_decref(v);
    free(want);
    free(s);

    kd_jw_init(&w, 16);
    kd_jw_str(&w, "q\"b\\n\nr\rt\tb\bf\fu\x01\x1f/");
    assert_text(&w, "\"q\\\"b\\\\n\\nr\\rt\\tb\\bf\\fu\\u0001\\u001F/\"");
}

/* Bytes >= 0x80 pass through: UTF-8 stays as it is, the same as jansson without
 * JSON_ENSURE_ASCII, and decodes back. */
static void test_utf8_passes_through(void **state)
{
    (void)state;
    const char *texts[] = {"\xc3\xa4", "Helsinki \xe2\x80\x93 Espoo", "\xf0\x9f\x9b\x97!",
                           "\xc3\x84\"\xc3\x96\n"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        kd_jw w;
        kd_jw_init(&w, 16);
        kd_jw_obj_begin(&w);
        kd_jw_kstr(&w, "k", texts[i]);
        kd_jw_obj_end(&w);
        char *s = kd_jw_finish(&w);
        json_t *o = json_object();
        json_object_set_new(o, "k", json_string(texts[i]));
        char *want = json_dumps(o, JSON_COMPACT);
        assert_string_equal(s, want);
        json_t *back = json_loads(s, 0, NULL);
        assert_non_null(back);
        assert_string_equal(json_string_value(json_object_get(back, "k")), texts[i]);
        json_decref(back);
        json_decref(o);
        free(want);
        free(s);
    }
    /* bytes that are not UTF-8 are not the writer's business: copied unchanged */
    kd_jw w;
    kd_jw_init(&w, 16);
    kd_jw_str(&w, "\xff\x80");
    assert_text(&w, "\"\xff\x80\"");
}

static void test_integers(void **state)
{
    (void)state;
    const int64_t vals[] = {0, 1, -1, 9, 10, 252390420, INT64_MAX, INT64_MIN};
    kd_jw w;
    kd_jw_init(&w, 1); /* below the minimum: grown as needed */
    kd_jw_arr_begin(&w);
    json_t *a = json_array();
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        kd_jw_int(&w, vals[i]);
        json_array_append_new(a, json_integer(vals[i]));
    }
    kd_jw_arr_end(&w);
    char *want = json_dumps(a, JSON_COMPACT);
    assert_text(&w, want);
    assert_string_equal(want, "[0,1,-1,9,10,252390420,9223372036854775807,"
                              "-9223372036854775808]");
    free(want);
    json_decref(a);
}

/* A text far past the first allocation (many doublings, escapes straddling them). */
static void test_growth(void **state)
{
    (void)state;
    size_t n = 100000;
    char *big = malloc(n + 1);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = "ab\"\\\n\x01\xc3\xa4"[i % 8];
    big[n] = '\0';
    kd_jw w;
    kd_jw_init(&w, 16);
    kd_jw_obj_begin(&w);
    kd_jw_kstr(&w, "big", big);
    kd_jw_kint(&w, "n", (int64_t)n);
    kd_jw_obj_end(&w);
    char *s = kd_jw_finish(&w);
    json_t *o = json_object();
    json_object_set_new(o, "big", json_string(big));
    json_object_set_new(o, "n", json_integer((json_int_t)n));
    char *want = json_dumps(o, JSON_COMPACT);
    assert_non_null(want);
    assert_string_equal(s, want);
    free(want);
    free(s);
    json_decref(o);
    free(big);
}

/* A NULL string or key sets the flag; later calls do nothing; finish gives NULL and frees. */
static void test_error_flag(void **state)
{
    (void)state;
    kd_jw w;
    kd_jw_init(&w, 16);
    kd_jw_obj_begin(&w);
    kd_jw_kstr(&w, "a", NULL);
    assert_true(w.err);
    size_t len = w.len;
    kd_jw_kstr(&w, "b", "more text than sixteen bytes, which would need growing");
    kd_jw_kint(&w, "c", 1);
    kd_jw_obj_end(&w);
    assert_int_equal(w.len, len);
    assert_null(kd_jw_finish(&w));
    assert_false(w.err); /* finish leaves an empty writer */

    kd_jw_init(&w, 16);
    kd_jw_obj_begin(&w);
    kd_jw_key(&w, NULL);
    assert_null(kd_jw_finish(&w));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_escapes_match_jansson),
        cmocka_unit_test(test_utf8_passes_through),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_error_flag),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
