/* test_amqp_retry: what kd_amqp does for retries and dead letters. Without a broker: the
 * x-kd-* header codec (round trip, only set fields written, lenient integer widths,
 * unknown keys ignored) and the topology names derived from amqp.queue. With
 * KD_TEST_AMQP=1 and a broker (scripts/dev-up): every tier queue and the parking lot are
 * declared with their arguments (a second connect is idempotent); a side-channel publish to
 * a tier is confirmed while consuming (the confirm is read by kd_amqp_consume_next and
 * handed out by kd_amqp_side_event), and comes back to the work queue after the tier's TTL
 * with its headers; basic.get and the queue count on the parking lot; a delivery from a
 * closed connection is never acked on the new one. Queues are named after the pid and
 * deleted at the end.
 */
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../shared/src/amqp_int.h"
#include "kd_amqp.h"
#include "kd_run.h"

static void load(kd_config *cfg)
{
    char *argv[] = {"test_amqp_retry", NULL};
    kd_err err = {0};
    if (kd_config_load(cfg, KD_PROG_WORKER, "test_amqp_retry", 1, argv, &err) != 0)
        fail_msg("%s", err.msg);
}

/* ---- without a broker ---- */

static void test_headers_round_trip(void **state)
{
    (void)state;
    kd_amqp_headers h = {.attempt = 3, .first_seen_ms = 1764360900000};
    snprintf(h.last_error, sizeof h.last_error, "500: KONE answered 500");
    snprintf(h.reason, sizeof h.reason, "failed");
    snprintf(h.error, sizeof h.error, "timeout: no answer");
    amqp_table_entry_t e[KD_AMQP_HDR_MAX + 1];
    int n = kd_amqp_headers_encode(&h, e);
    assert_int_equal(n, 5);
    /* plus keys the decoder must skip, and the broker's x-delivery-count */
    e[n].key = amqp_cstring_bytes("x-delivery-count");
    e[n].value.kind = AMQP_FIELD_KIND_I64;
    e[n].value.value.i64 = 2;
    amqp_table_t t = {.num_entries = n + 1, .entries = e};
    kd_amqp_headers back;
    int64_t count = -1;
    kd_amqp_headers_decode(&t, &back, &count);
    assert_int_equal(back.attempt, 3);
    assert_int_equal(back.first_seen_ms, 1764360900000);
    assert_string_equal(back.last_error, "500: KONE answered 500");
    assert_string_equal(back.reason, "failed");
    assert_string_equal(back.error, "timeout: no answer");
    assert_int_equal(count, 2);

    /* only set fields are written */
    kd_amqp_headers empty = {0};
    assert_int_equal(kd_amqp_headers_encode(&empty, e), 0);
    kd_amqp_headers only = {.attempt = 2};
    assert_int_equal(kd_amqp_headers_encode(&only, e), 1);
    assert_int_equal(e[0].key.len, strlen("x-kd-attempt"));
}

static void test_headers_lenient(void **state)
{
    (void)state;
    amqp_table_entry_t e[4];
    e[0].key = amqp_cstring_bytes("x-kd-attempt");
    e[0].value.kind = AMQP_FIELD_KIND_U8; /* e.g. a Python client's small int */
    e[0].value.value.u8 = 4;
    e[1].key = amqp_cstring_bytes("x-kd-reason");
    e[1].value.kind = AMQP_FIELD_KIND_BYTES;
    e[1].value.value.bytes = amqp_cstring_bytes("undecodable");
    e[2].key = amqp_cstring_bytes("x-kd-first-seen");
    e[2].value.kind = AMQP_FIELD_KIND_UTF8; /* wrong type: ignored */
    e[2].value.value.bytes = amqp_cstring_bytes("soon");
    e[3].key = amqp_cstring_bytes("x-death");
    e[3].value.kind = AMQP_FIELD_KIND_ARRAY;
    e[3].value.value.array.num_entries = 0;
    e[3].value.value.array.entries = NULL;
    amqp_table_t t = {.num_entries = 4, .entries = e};
    kd_amqp_headers h;
    kd_amqp_headers_decode(&t, &h, NULL);
    assert_int_equal(h.attempt, 4);
    assert_string_equal(h.reason, "undecodable");
    assert_int_equal(h.first_seen_ms, 0);
    assert_string_equal(h.error, "");
}

static void test_topology_names(void **state)
{
    (void)state;
    kd_config cfg;
    load(&cfg);
    kd_config_set(&cfg, "amqp.queue", "it.q1");
    kd_config_set(&cfg, "retry.tiers_ms", "200,500");
    kd_amqp_topology t;
    kd_err err = {0};
    assert_int_equal(kd_amqp_topology_load(&t, &cfg, &err), 0);
    assert_string_equal(t.retry_exchange, "it.q1.retry");
    assert_string_equal(t.dead_exchange, "it.q1.dead");
    assert_string_equal(t.dead_queue, "it.q1.dead");
    char name[300];
    kd_amqp_tier_queue(&t, 1, name, sizeof name);
    assert_string_equal(name, "it.q1.retry.500");
    kd_config_set(&cfg, "amqp.dead_queue", "parking");
    kd_config_set(&cfg, "amqp.retry_exchange", "rx");
    assert_int_equal(kd_amqp_topology_load(&t, &cfg, &err), 0);
    assert_string_equal(t.dead_queue, "parking");
    assert_string_equal(t.retry_exchange, "rx");
    kd_config_set(&cfg, "retry.tiers_ms", "500,200");
    assert_int_equal(kd_amqp_topology_load(&t, &cfg, &err), KD_ERR_INVALID);
    kd_config_free(&cfg);
    /* the defaults */
    load(&cfg);
    assert_int_equal(kd_amqp_topology_load(&t, &cfg, &err), 0);
    assert_string_equal(t.dead_queue, "kone.calls.dead");
    assert_int_equal(t.n_tiers, 5);
    kd_config_free(&cfg);
}

/* ---- with a broker ---- */

static char names[64];

static void live_config(kd_config *cfg)
{
    load(cfg);
    kd_config_set(cfg, "amqp.exchange", names);
    kd_config_set(cfg, "amqp.queue", names);
    kd_config_set(cfg, "amqp.routing_key", names);
    kd_config_set(cfg, "retry.tiers_ms", "300,1000");
}

static kd_amqp *live_connect(kd_config *cfg)
{
    if (!getenv("KD_TEST_AMQP"))
        skip();
    live_config(cfg);
    kd_amqp *a;
    kd_err err = {0};
    if (kd_amqp_connect(&a, cfg, &err) != 0)
        fail_msg("%s", err.msg);
    return a;
}

static int live_setup(void **state)
{
    (void)state;
    snprintf(names, sizeof names, "kd.test.amqpretry.%d", (int)getpid());
    return 0;
}

static int live_teardown(void **state)
{
    (void)state;
    if (!getenv("KD_TEST_AMQP"))
        return 0;
    kd_config cfg;
    live_config(&cfg);
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);
    if (amqp_socket_open(s, kd_config_get(&cfg, "amqp.host"),
                         atoi(kd_config_get(&cfg, "amqp.port"))) == 0 &&
        amqp_login(c, kd_config_get(&cfg, "amqp.vhost"), 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
                   kd_config_get(&cfg, "amqp.user"), kd_config_get(&cfg, "amqp.password"))
                .reply_type == AMQP_RESPONSE_NORMAL) {
        amqp_channel_open(c, 1);
        char q[300];
        const char *suffix[] = {"", ".retry.300", ".retry.1000", ".dead"};
        for (int i = 0; i < 4; i++) {
            snprintf(q, sizeof q, "%s%s", names, suffix[i]);
            amqp_queue_delete(c, 1, amqp_cstring_bytes(q), 0, 0);
        }
        const char *ex[] = {"", ".retry", ".dead"};
        for (int i = 0; i < 3; i++) {
            snprintf(q, sizeof q, "%s%s", names, ex[i]);
            amqp_exchange_delete(c, 1, amqp_cstring_bytes(q), 0);
        }
        amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(c);
    kd_config_free(&cfg);
    return 0;
}

static void test_live_topology(void **state)
{
    (void)state;
    kd_config cfg;
    kd_amqp *a = live_connect(&cfg);
    kd_err err = {0};
    const kd_amqp_topology *t = kd_amqp_names(a);
    uint32_t n = 99;
    for (int i = 0; i < t->n_tiers; i++) {
        char q[300];
        kd_amqp_tier_queue(t, i, q, sizeof q);
        assert_int_equal(kd_amqp_queue_count(a, q, &n, &err), 0);
        assert_int_equal(n, 0);
    }
    assert_int_equal(kd_amqp_queue_count(a, t->dead_queue, &n, &err), 0);
    kd_amqp_close(a);
    kd_config_free(&cfg);
    /* a second connect declares the same again: no inequivalent-argument error */
    a = live_connect(&cfg);
    kd_amqp_close(a);
    kd_config_free(&cfg);
}

static void test_live_side_publish_while_consuming(void **state)
{
    (void)state;
    kd_config cfg;
    kd_amqp *a = live_connect(&cfg);
    kd_err err = {0};
    assert_int_equal(kd_amqp_consume_start(a, 10, &err), 0);
    const kd_amqp_topology *t = kd_amqp_names(a);
    char tier[300];
    kd_amqp_tier_queue(t, 0, tier, sizeof tier);
    kd_amqp_headers h = {.attempt = 2, .first_seen_ms = 12345};
    snprintf(h.last_error, sizeof h.last_error, "500: boom");
    kd_amqp_out m = {.exchange = t->retry_exchange, .routing_key = tier, .message_id = "job-1",
                     .body = "\x80", .len = 1, .headers = &h};
    uint64_t tag;
    assert_int_equal(kd_amqp_side_publish(a, &m, &tag, &err), 0);
    assert_int_equal(tag, 1);
    /* the confirm is read by consume_next (no delivery yet: the tier holds it 300 ms) */
    kd_amqp_event ev;
    int64_t t0 = kd_mono_us();
    bool confirmed = false, delivered = false;
    kd_delivery d;
    while (!(confirmed && delivered) && kd_mono_us() - t0 < 10000000) {
        int rc = kd_amqp_consume_next(a, 50, &d, &err);
        assert_true(rc >= 0);
        while (kd_amqp_side_event(a, &ev)) {
            assert_int_equal(ev.channel, 2);
            assert_int_equal(ev.kind, KD_AMQP_EV_ACK);
            assert_int_equal(ev.tag, 1);
            assert_false(delivered); /* confirmed long before the TTL ran out */
            confirmed = true;
        }
        if (rc == 1) {
            delivered = true;
            assert_true(kd_mono_us() - t0 >= 250000); /* held by the 300 ms tier */
            assert_int_equal(d.kd.attempt, 2);
            assert_int_equal(d.kd.first_seen_ms, 12345);
            assert_string_equal(d.kd.last_error, "500: boom");
            assert_string_equal(d.message_id, "job-1");
            assert_int_equal(kd_amqp_ack(a, d.delivery_tag, d.epoch, &err), 0);
        }
    }
    assert_true(confirmed);
    assert_true(delivered);
    /* unroutable (no such tier): returned, then acked */
    kd_amqp_out lost = m;
    lost.routing_key = "no-such-tier";
    lost.message_id = "job-lost";
    assert_int_equal(kd_amqp_side_publish(a, &lost, &tag, &err), 0);
    assert_int_equal(tag, 2);
    bool returned = false, acked = false;
    t0 = kd_mono_us();
    while (!acked && kd_mono_us() - t0 < 5000000) {
        assert_true(kd_amqp_consume_next(a, 50, &d, &err) >= 0);
        while (kd_amqp_side_event(a, &ev)) {
            if (ev.kind == KD_AMQP_EV_RETURN) {
                assert_string_equal(ev.message_id, "job-lost");
                returned = true;
            } else {
                assert_int_equal(ev.kind, KD_AMQP_EV_ACK);
                assert_true(returned); /* the return comes first */
                acked = true;
            }
        }
    }
    assert_true(acked);
    kd_amqp_close(a);
    kd_config_free(&cfg);
}

static void test_live_get_and_stale_epoch(void **state)
{
    (void)state;
    kd_config cfg;
    kd_amqp *a = live_connect(&cfg);
    kd_err err = {0};
    const kd_amqp_topology *t = kd_amqp_names(a);
    kd_config_free(&cfg); /* live_connect loads it again */
    /* park two messages, then take them with basic.get */
    for (int i = 0; i < 2; i++) {
        kd_amqp_headers h = {.attempt = 5};
        snprintf(h.reason, sizeof h.reason, "failed");
        char id[16];
        snprintf(id, sizeof id, "p%d", i);
        kd_amqp_out m = {.exchange = t->dead_exchange, .routing_key = t->dead_queue,
                         .message_id = id, .body = "\x80", .len = 1, .headers = &h};
        uint64_t tag;
        assert_int_equal(kd_amqp_side_publish(a, &m, &tag, &err), 0);
        kd_amqp_event ev;
        assert_int_equal(kd_amqp_side_wait(a, 5000, &ev, &err), 1);
        assert_int_equal(ev.kind, KD_AMQP_EV_ACK);
    }
    uint32_t n = 0;
    assert_int_equal(kd_amqp_queue_count(a, t->dead_queue, &n, &err), 0);
    assert_int_equal(n, 2);
    kd_delivery d;
    assert_int_equal(kd_amqp_get(a, t->dead_queue, &d, &err), 1);
    assert_string_equal(d.message_id, "p0");
    assert_string_equal(d.kd.reason, "failed");
    assert_int_equal(d.kd.attempt, 5);
    uint64_t held = d.delivery_tag, old = d.epoch;
    assert_int_equal(kd_amqp_get(a, t->dead_queue, &d, &err), 1);
    assert_string_equal(d.message_id, "p1"); /* p0 is held, not handed out again */
    assert_int_equal(kd_amqp_ack(a, d.delivery_tag, d.epoch, &err), 0);
    assert_int_equal(kd_amqp_get(a, t->dead_queue, &d, &err), 0);
    kd_amqp_close(a); /* p0 goes back */

    /* the held delivery is stale on the new connection: its ack is dropped, p0 stays */
    a = live_connect(&cfg);
    t = kd_amqp_names(a);
    assert_true(kd_amqp_epoch(a) > old);
    assert_int_equal(kd_amqp_ack(a, held, old, &err), 0);
    assert_int_equal(kd_amqp_get(a, t->dead_queue, &d, &err), 1);
    assert_string_equal(d.message_id, "p0");
    assert_true(d.redelivered);
    assert_int_equal(kd_amqp_ack(a, d.delivery_tag, d.epoch, &err), 0);
    kd_amqp_close(a);
    kd_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers_round_trip),
        cmocka_unit_test(test_headers_lenient),
        cmocka_unit_test(test_topology_names),
    };
    const struct CMUnitTest live[] = {
        cmocka_unit_test(test_live_topology),
        cmocka_unit_test(test_live_side_publish_while_consuming),
        cmocka_unit_test(test_live_get_and_stale_epoch),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    return rc | cmocka_run_group_tests(live, live_setup, live_teardown);
}
