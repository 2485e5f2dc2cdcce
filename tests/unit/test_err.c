/* test_err: kd_err, the error values every module returns. kd_err_code_name is what
 * replay-dead prints when a move fails without a message, so each code has its own short
 * name and a code from nowhere says so instead of crashing or borrowing another's name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kd_err.h"

static void test_code_names(void **state)
{
    (void)state;
    static const struct {
        int code;
        const char *name;
    } want[] = {
        {KD_OK, "ok"},           {KD_ERR_INVALID, "invalid"}, {KD_ERR_DECODE, "decode"},
        {KD_ERR_NOMEM, "nomem"}, {KD_ERR_IO, "io"},           {KD_ERR_TIMEOUT, "timeout"},
        {KD_ERR_AUTH, "auth"},   {KD_ERR_REFUSED, "refused"}, {KD_ERR_INTERNAL, "internal"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_string_equal(kd_err_code_name(want[i].code), want[i].name);
    assert_string_equal(kd_err_code_name(KD_ERR_INTERNAL + 1), "unknown");
    assert_string_equal(kd_err_code_name(-1), "unknown");
}

static void test_set_and_wrap(void **state)
{
    (void)state;
    kd_err err = {0};
    assert_int_equal(kd_err_set(&err, KD_ERR_IO, "cannot reach %s", "host:1"), KD_ERR_IO);
    assert_int_equal(err.code, KD_ERR_IO);
    assert_int_equal(kd_err_wrap(&err, "job %s", "j-1"), KD_ERR_IO);
    assert_string_equal(err.msg, "job j-1: cannot reach host:1");
    /* a caller that does not want the message still gets the code */
    assert_int_equal(kd_err_set(NULL, KD_ERR_AUTH, "x"), KD_ERR_AUTH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_names),
        cmocka_unit_test(test_set_and_wrap),
    };
    return cmocka_run_group_tests_name("err", tests, NULL, NULL);
}
