/* test_worker_retry_pub: the worker's table of unconfirmed retry / dead-letter copies,
 * without a broker: single and multiple acks settle exactly the runs they cover, a nack
 * fails them, a basic.return turns the following ack of the same message into a failure,
 * an ack for an unknown tag changes nothing, and a lost connection fails every entry.
 * (Publishing itself is covered live by test_amqp_retry and it_retry.sh.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "retry_pub.h"

static wk_run runs[8];
static int results[8]; /* 0 pending, 1 ok, -1 failed */
static int calls;

// cppcheck-suppress constParameter ; the signature is kd_rpub's callback type
static void done(wk_run *r, bool ok, void *arg)
{
    (void)arg;
    int i = (int)(r - runs);
    assert_int_equal(results[i], 0); /* reported once */
    results[i] = ok ? 1 : -1;
    calls++;
}

/* Fills the table as kd_rpub_retry would, without a broker: tags 1..n. */
static void fill(kd_rpub *t, int n)
{
    memset(runs, 0, sizeof runs);
    memset(results, 0, sizeof results);
    calls = 0;
    assert_int_equal(kd_rpub_init(t, 8, done, NULL), 0);
    for (int i = 0; i < n; i++) {
        kd_rpub_entry *e = &t->e[t->n++];
        memset(e, 0, sizeof *e);
        e->tag = (uint64_t)i + 1;
        e->run = &runs[i];
        snprintf(e->message_id, sizeof e->message_id, "job-%d", i);
    }
}

static kd_amqp_event ev(kd_amqp_event_kind k, uint64_t tag, bool multiple, const char *mid)
{
    kd_amqp_event e = {.kind = k, .channel = 2, .tag = tag, .multiple = multiple};
    if (mid)
        snprintf(e.message_id, sizeof e.message_id, "%s", mid);
    return e;
}

static void test_acks(void **state)
{
    (void)state;
    kd_rpub t;
    fill(&t, 5);
    kd_amqp_event e = ev(KD_AMQP_EV_ACK, 2, false, NULL);
    kd_rpub_event(&t, &e);
    assert_int_equal(results[1], 1);
    assert_int_equal(kd_rpub_pending(&t), 4);
    e = ev(KD_AMQP_EV_ACK, 4, true, NULL); /* 1, 3, 4 */
    kd_rpub_event(&t, &e);
    assert_int_equal(results[0], 1);
    assert_int_equal(results[2], 1);
    assert_int_equal(results[3], 1);
    assert_int_equal(results[4], 0);
    e = ev(KD_AMQP_EV_ACK, 99, false, NULL); /* unknown: nothing */
    kd_rpub_event(&t, &e);
    assert_int_equal(calls, 4);
    e = ev(KD_AMQP_EV_NACK, 5, false, NULL);
    kd_rpub_event(&t, &e);
    assert_int_equal(results[4], -1);
    assert_int_equal(kd_rpub_pending(&t), 0);
    kd_rpub_free(&t);
}

static void test_return_then_ack(void **state)
{
    (void)state;
    kd_rpub t;
    fill(&t, 3);
    kd_amqp_event e = ev(KD_AMQP_EV_RETURN, 0, false, "job-1");
    kd_rpub_event(&t, &e);
    assert_int_equal(calls, 0); /* the ack decides */
    e = ev(KD_AMQP_EV_ACK, 3, true, NULL);
    kd_rpub_event(&t, &e);
    assert_int_equal(results[0], 1);
    assert_int_equal(results[1], -1);
    assert_int_equal(results[2], 1);
    kd_rpub_free(&t);
}

static void test_fail_all(void **state)
{
    (void)state;
    kd_rpub t;
    fill(&t, 3);
    kd_amqp_event e = ev(KD_AMQP_EV_ACK, 1, false, NULL);
    kd_rpub_event(&t, &e);
    kd_rpub_fail_all(&t);
    assert_int_equal(results[0], 1);
    assert_int_equal(results[1], -1);
    assert_int_equal(results[2], -1);
    assert_int_equal(kd_rpub_pending(&t), 0);
    kd_rpub_free(&t);
}

static void test_error_text(void **state)
{
    (void)state;
    kd_run r;
    memset(&r, 0, sizeof r);
    kd_run_finish(&r, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "timeout", "no answer in %d ms", 5);
    char buf[64];
    kd_rpub_error_text(&r, buf, sizeof buf);
    assert_string_equal(buf, "timeout: no answer in 5 ms");
    kd_run_finish(&r, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "1005", NULL);
    kd_rpub_error_text(&r, buf, sizeof buf);
    assert_string_equal(buf, "1005");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acks),
        cmocka_unit_test(test_return_then_ack),
        cmocka_unit_test(test_fail_all),
        cmocka_unit_test(test_error_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
