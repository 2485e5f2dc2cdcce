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
 * Queue arguments (docs/failure-handling.md, "Broker limits"): without a broker, the 406
 * reply parser and the policy command of the warning; with one, a fresh work queue, parking
 * lot and tiers have exactly the arguments declared (a plain redeclare with exactly those
 * succeeds, one with another value fails), a queue made by an older version without the
 * added arguments is used as it is with the warning (and works: a job goes through it),
 * a queue whose added argument has another value is refused with the queue named, and a job
 * returned more than amqp.delivery_limit times is parked by the broker, not dropped.
 */
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <fcntl.h>
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
#include "raw_amqp.h"

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
    kd_amqp_headers h = {.attempt = 3, .requeues = 7, .first_seen_ms = 1764360900000};
    snprintf(h.last_error, sizeof h.last_error, "500: KONE answered 500");
    snprintf(h.reason, sizeof h.reason, "failed");
    snprintf(h.error, sizeof h.error, "timeout: no answer");
    amqp_table_entry_t e[KD_AMQP_HDR_MAX + 1];
    int n = kd_amqp_headers_encode(&h, e);
    assert_int_equal(n, 6);
    /* plus keys the decoder must skip, and the broker's x-delivery-count */
    e[n].key = amqp_cstring_bytes("x-delivery-count");
    e[n].value.kind = AMQP_FIELD_KIND_I64;
    e[n].value.value.i64 = 2;
    amqp_table_t t = {.num_entries = n + 1, .entries = e};
    kd_amqp_headers back;
    int64_t count = -1;
    kd_amqp_headers_decode(&t, &back, &count);
    assert_int_equal(back.attempt, 3);
    assert_int_equal(back.requeues, 7);
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

/* Another client may send the counters in any AMQP integer width; each one is read, a
 * negative attempt counts as 0 and an unsigned 64-bit value beyond int64 saturates. */
static void test_headers_integer_widths(void **state)
{
    (void)state;
    static const struct {
        char kind;
        int64_t want;
    } cases[] = {
        {AMQP_FIELD_KIND_I8, 0},       {AMQP_FIELD_KIND_I16, 300},
        {AMQP_FIELD_KIND_U16, 65535},  {AMQP_FIELD_KIND_I32, 70000},
        {AMQP_FIELD_KIND_U32, 123456}, {AMQP_FIELD_KIND_U64, INT64_MAX},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        amqp_table_entry_t e[2];
        e[0].key = amqp_cstring_bytes("x-kd-first-seen");
        e[1].key = amqp_cstring_bytes("x-kd-attempt");
        e[0].value.kind = e[1].value.kind = (uint8_t)cases[i].kind;
        switch (cases[i].kind) {
        case AMQP_FIELD_KIND_I8: e[0].value.value.i8 = e[1].value.value.i8 = -5; break;
        case AMQP_FIELD_KIND_I16: e[0].value.value.i16 = e[1].value.value.i16 = 300; break;
        case AMQP_FIELD_KIND_U16: e[0].value.value.u16 = e[1].value.value.u16 = 65535; break;
        case AMQP_FIELD_KIND_I32: e[0].value.value.i32 = e[1].value.value.i32 = 70000; break;
        case AMQP_FIELD_KIND_U32: e[0].value.value.u32 = e[1].value.value.u32 = 123456; break;
        default: e[0].value.value.u64 = e[1].value.value.u64 = UINT64_MAX; break;
        }
        amqp_table_t t = {.num_entries = 2, .entries = e};
        kd_amqp_headers h;
        kd_amqp_headers_decode(&t, &h, NULL);
        if (h.first_seen_ms != cases[i].want)
            fail_msg("kind '%c': first_seen %lld, want %lld", cases[i].kind,
                     (long long)h.first_seen_ms, (long long)cases[i].want);
        /* the attempt is clamped to 0..1000000 */
        int64_t attempt = cases[i].want > 1000000 ? 1000000 : cases[i].want;
        assert_int_equal(h.attempt, attempt);
    }
}

static void test_topology_names(void **state)
{
    (void)state;
    kd_config cfg;
    load(&cfg);
    kd_config_set(&cfg, KD_CFG_AMQP_QUEUE, "it.q1", NULL);
    kd_config_set(&cfg, KD_CFG_RETRY_TIERS_MS, "200,500", NULL);
    kd_amqp_topology t;
    kd_err err = {0};
    assert_int_equal(kd_amqp_topology_load(&t, &cfg, &err), 0);
    assert_string_equal(t.retry_exchange, "it.q1.retry");
    assert_string_equal(t.dead_exchange, "it.q1.dead");
    assert_string_equal(t.dead_queue, "it.q1.dead");
    char name[300];
    kd_amqp_tier_queue(&t, 1, name, sizeof name);
    assert_string_equal(name, "it.q1.retry.500");
    kd_config_set(&cfg, KD_CFG_AMQP_DEAD_QUEUE, "parking", NULL);
    kd_config_set(&cfg, KD_CFG_AMQP_RETRY_EXCHANGE, "rx", NULL);
    assert_int_equal(kd_amqp_topology_load(&t, &cfg, &err), 0);
    assert_string_equal(t.dead_queue, "parking");
    assert_string_equal(t.retry_exchange, "rx");
    kd_config_set(&cfg, KD_CFG_RETRY_TIERS_MS, "500,200", NULL);
    assert_int_equal(kd_amqp_topology_load(&t, &cfg, &err), KD_ERR_INVALID);
    kd_config_free(&cfg);
    /* the defaults */
    load(&cfg);
    assert_int_equal(kd_amqp_topology_load(&t, &cfg, &err), 0);
    assert_string_equal(t.dead_queue, "kone.calls.dead");
    assert_int_equal(t.n_tiers, 5);
    assert_int_equal(t.delivery_limit, 20);
    assert_string_equal(t.vhost, "/");
    /* amqp.delivery_limit: 1..1000000, refused by the table as it is set (as at load) */
    const char *bad[] = {"0", "-1", "1000001", "x", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(kd_config_set(&cfg, KD_CFG_AMQP_DELIVERY_LIMIT, bad[i], &err),
                         KD_ERR_INVALID);
        assert_non_null(strstr(err.msg, "amqp.delivery_limit: must be an integer in 1..1000000"));
    }
    kd_config_set(&cfg, KD_CFG_AMQP_DELIVERY_LIMIT, "50", NULL);
    assert_int_equal(kd_amqp_topology_load(&t, &cfg, &err), 0);
    assert_int_equal(t.delivery_limit, 50);
    /* a queue name too long for the names derived from it: the error says which */
    char q[256];
    memset(q, 'q', 250);
    q[250] = '\0';
    kd_config_set(&cfg, KD_CFG_AMQP_QUEUE, q, NULL);
    assert_int_equal(kd_amqp_topology_load(&t, &cfg, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "amqp.retry_exchange: the default"));
    assert_non_null(strstr(err.msg, "longer than 255 characters; set it"));
    q[224] = '\0'; /* its .retry/.dead names fit, a tier queue's would not */
    kd_config_set(&cfg, KD_CFG_AMQP_QUEUE, q, NULL);
    assert_int_equal(kd_amqp_topology_load(&t, &cfg, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "amqp.queue: at most 223 characters"));
    q[223] = '\0';
    kd_config_set(&cfg, KD_CFG_AMQP_QUEUE, q, NULL);
    assert_int_equal(kd_amqp_topology_load(&t, &cfg, &err), 0);
    kd_config_free(&cfg);
}

/* The argument named by RabbitMQ's 406 reply texts (3.10 and 4.x word them alike). */
static void test_inequivalent_arg(void **state)
{
    (void)state;
    char key[64];
    assert_true(kd_amqp_inequivalent_arg(
        "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'kone.calls' in "
        "vhost '/': received the value '20' of type 'signedint' but current is none",
        key, sizeof key));
    assert_string_equal(key, "x-delivery-limit");
    assert_true(kd_amqp_inequivalent_arg("PRECONDITION_FAILED - inequivalent arg "
                                         "'x-dead-letter-exchange' for queue 'q'",
                                         key, sizeof key));
    assert_string_equal(key, "x-dead-letter-exchange");
    assert_false(
        kd_amqp_inequivalent_arg("PRECONDITION_FAILED - inequivalent arg '", key, sizeof key));
    assert_false(
        kd_amqp_inequivalent_arg("PRECONDITION_FAILED - inequivalent arg '' for", key, sizeof key));
    assert_false(kd_amqp_inequivalent_arg("NOT_FOUND - no queue 'q'", key, sizeof key));
    char tiny[4];
    assert_false(kd_amqp_inequivalent_arg("inequivalent arg 'x-overflow'", tiny, sizeof tiny));
}

/* The command the warning prints: exactly the queue (regex-escaped), the arguments as policy
 * keys (no "x-"), numbers as numbers, strings JSON-escaped. */
static void test_policy_command(void **state)
{
    (void)state;
    amqp_table_entry_t e[5];
    e[0].key = amqp_cstring_bytes("x-delivery-limit");
    e[0].value.kind = AMQP_FIELD_KIND_I64;
    e[0].value.value.i64 = 20;
    const char *k[] = {"x-dead-letter-exchange", "x-dead-letter-routing-key",
                       "x-dead-letter-strategy", "x-overflow"};
    const char *v[] = {"kone.calls.dead", "kone.calls.dead", "at-least-once", "reject-publish"};
    for (int i = 0; i < 4; i++) {
        e[1 + i].key = amqp_cstring_bytes(k[i]);
        e[1 + i].value.kind = AMQP_FIELD_KIND_UTF8;
        e[1 + i].value.value.bytes = amqp_cstring_bytes(v[i]);
    }
    char cmd[700];
    int n = kd_amqp_policy_command("/", "kone.calls", e, 5, cmd, sizeof cmd);
    assert_string_equal(cmd,
                        "rabbitmqctl set_policy -p '/' 'kone-dispatch kone.calls' '^kone\\.calls$' "
                        "'{\"delivery-limit\":20,\"dead-letter-exchange\":\"kone.calls.dead\","
                        "\"dead-letter-routing-key\":\"kone.calls.dead\",\"dead-letter-strategy\":"
                        "\"at-least-once\",\"overflow\":\"reject-publish\"}' --apply-to queues "
                        "--priority 10");
    assert_int_equal(n, (int)strlen(cmd));
    e[1].value.value.bytes = amqp_cstring_bytes("odd\"name");
    kd_amqp_policy_command("prod", "a+b(c)", e, 2, cmd, sizeof cmd);
    assert_non_null(strstr(cmd, "-p 'prod' 'kone-dispatch a+b(c)' '^a\\+b\\(c\\)$'"));
    assert_non_null(strstr(cmd, "\"dead-letter-exchange\":\"odd\\\"name\""));
    /* a short buffer is cut, never overrun */
    char small[40];
    kd_amqp_policy_command("/", "kone.calls", e, 5, small, sizeof small);
    assert_true(strlen(small) < sizeof small);
}

/* ---- with a broker ---- */

static char names[64];

static void live_config(kd_config *cfg)
{
    load(cfg);
    kd_config_set(cfg, KD_CFG_AMQP_EXCHANGE, names, NULL);
    kd_config_set(cfg, KD_CFG_AMQP_QUEUE, names, NULL);
    kd_config_set(cfg, KD_CFG_AMQP_ROUTING_KEY, names, NULL);
    kd_config_set(cfg, KD_CFG_RETRY_TIERS_MS, "300,1000", NULL);
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
    amqp_connection_state_t c = raw_amqp_login(&cfg);
    if (c) {
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
    kd_amqp_out m = {.exchange = t->retry_exchange,
                     .routing_key = tier,
                     .message_id = "job-1",
                     .body = "\x80",
                     .len = 1,
                     .headers = &h};
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
        kd_amqp_out m = {.exchange = t->dead_exchange,
                         .routing_key = t->dead_queue,
                         .message_id = id,
                         .body = "\x80",
                         .len = 1,
                         .headers = &h};
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

/* ---- queue arguments, with a broker ---- */

static char args_names[64];

/* A plain rabbitmq-c connection with channel 1 open, for declaring what an older version
 * (or an operator) made. */
static amqp_connection_state_t raw_open(void)
{
    kd_config cfg;
    load(&cfg);
    amqp_connection_state_t c = raw_amqp_login(&cfg);
    assert_non_null(c);
    amqp_channel_open(c, 1);
    assert_int_equal(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    kd_config_free(&cfg);
    return c;
}

static void raw_close(amqp_connection_state_t c)
{
    amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
}

/* Declares a durable quorum queue with x-queue-type plus args: 0, or the channel-close code
 * (then channel 1 is open again) with the broker's text in text. */
static int raw_declare(amqp_connection_state_t c, const char *queue, const amqp_table_entry_t *args,
                       int n, char *text, size_t len)
{
    amqp_table_entry_t e[8];
    e[0].key = amqp_cstring_bytes("x-queue-type");
    e[0].value.kind = AMQP_FIELD_KIND_UTF8;
    e[0].value.value.bytes = amqp_cstring_bytes("quorum");
    for (int i = 0; i < n; i++)
        e[1 + i] = args[i];
    amqp_table_t t = {.num_entries = n + 1, .entries = e};
    amqp_queue_declare(c, 1, amqp_cstring_bytes(queue), 0, 1, 0, 0, t);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return 0;
    assert_int_equal(r.reply_type, AMQP_RESPONSE_SERVER_EXCEPTION);
    assert_int_equal(r.reply.id, AMQP_CHANNEL_CLOSE_METHOD);
    const amqp_channel_close_t *cl = r.reply.decoded;
    int code = cl->reply_code;
    if (text)
        kd_amqp_str(cl->reply_text, text, len);
    amqp_channel_close_ok_t ok = {0};
    amqp_send_method(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    amqp_channel_open(c, 1);
    assert_int_equal(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    return code;
}

static amqp_table_entry_t t_int(const char *k, int64_t v)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes(k)};
    e.value.kind = AMQP_FIELD_KIND_I64;
    e.value.value.i64 = v;
    return e;
}

static amqp_table_entry_t t_str(const char *k, const char *v)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes(k)};
    e.value.kind = AMQP_FIELD_KIND_UTF8;
    e.value.value.bytes = amqp_cstring_bytes(v);
    return e;
}

/* Everything kd_amqp_connect declares for queue q (tiers 300 and 1000 ms), deleted. */
static void args_cleanup(const char *q)
{
    amqp_connection_state_t c = raw_open();
    char n[300];
    const char *qs[] = {"", ".retry.300", ".retry.1000", ".dead"};
    for (int i = 0; i < 4; i++) {
        snprintf(n, sizeof n, "%s%s", q, qs[i]);
        amqp_queue_delete(c, 1, amqp_cstring_bytes(n), 0, 0);
    }
    const char *xs[] = {"", ".retry", ".dead"};
    for (int i = 0; i < 3; i++) {
        snprintf(n, sizeof n, "%s%s", q, xs[i]);
        amqp_exchange_delete(c, 1, amqp_cstring_bytes(n), 0);
    }
    raw_close(c);
}

static void args_config(kd_config *cfg, const char *q)
{
    load(cfg);
    kd_config_set(cfg, KD_CFG_AMQP_EXCHANGE, q, NULL);
    kd_config_set(cfg, KD_CFG_AMQP_QUEUE, q, NULL);
    kd_config_set(cfg, KD_CFG_AMQP_ROUTING_KEY, q, NULL);
    kd_config_set(cfg, KD_CFG_RETRY_TIERS_MS, "300,1000", NULL);
}

/* kd_amqp_connect with stderr (the log) captured into log. */
static int connect_logged(const kd_config *cfg, kd_amqp **a, kd_err *err, char *log, size_t len)
{
    char path[] = "/tmp/kd-test-amqp-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    int rc = kd_amqp_connect(a, cfg, err);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, log, len - 1);
    log[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    fputs(log, stderr);
    return rc;
}

static void test_live_fresh_queue_arguments(void **state)
{
    (void)state;
    if (!getenv("KD_TEST_AMQP"))
        skip();
    char q[96], dead[128], tier[128], text[300];
    snprintf(q, sizeof q, "%s.fresh", args_names);
    snprintf(dead, sizeof dead, "%s.dead", q);
    snprintf(tier, sizeof tier, "%s.retry.300", q);
    kd_config cfg;
    args_config(&cfg, q);
    kd_config_set(&cfg, KD_CFG_AMQP_DELIVERY_LIMIT, "23", NULL);
    kd_amqp *a;
    kd_err err = {0};
    char log[4096];
    if (connect_logged(&cfg, &a, &err, log, sizeof log) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(kd_amqp_missing_args(a, NULL, 0), 0);
    assert_null(strstr(log, "exists without"));
    kd_amqp_close(a);

    /* the broker compares every argument, also absent ones: a redeclare with exactly these
     * succeeds only if the queue has exactly these */
    amqp_connection_state_t c = raw_open();
    amqp_table_entry_t work[] = {
        t_int("x-delivery-limit", 23), t_str("x-dead-letter-exchange", dead),
        t_str("x-dead-letter-routing-key", dead), t_str("x-dead-letter-strategy", "at-least-once"),
        t_str("x-overflow", "reject-publish")};
    assert_int_equal(raw_declare(c, q, work, 5, text, sizeof text), 0);
    work[0] = t_int("x-delivery-limit", 24);
    assert_int_equal(raw_declare(c, q, work, 5, text, sizeof text), 406);
    assert_non_null(strstr(text, "x-delivery-limit"));
    assert_int_equal(raw_declare(c, q, work + 1, 4, text, sizeof text), 406); /* limit left out */
    amqp_table_entry_t parked[] = {t_int("x-delivery-limit", 1000000)};
    assert_int_equal(raw_declare(c, dead, parked, 1, text, sizeof text), 0);
    amqp_table_entry_t tiered[] = {t_int("x-message-ttl", 300), t_str("x-dead-letter-exchange", q),
                                   t_str("x-dead-letter-routing-key", q),
                                   t_str("x-dead-letter-strategy", "at-least-once"),
                                   t_str("x-overflow", "reject-publish")};
    assert_int_equal(raw_declare(c, tier, tiered, 5, text, sizeof text), 0);
    raw_close(c);
    kd_config_free(&cfg);
    args_cleanup(q);
}

/* The backstop works: a job returned more than amqp.delivery_limit times is parked by the
 * broker itself in the dead-letter queue (not dropped, as RabbitMQ 4.x would without it). */
static void test_live_delivery_limit_parks(void **state)
{
    (void)state;
    if (!getenv("KD_TEST_AMQP"))
        skip();
    char q[96];
    snprintf(q, sizeof q, "%s.limit", args_names);
    kd_config cfg;
    args_config(&cfg, q);
    kd_config_set(&cfg, KD_CFG_AMQP_DELIVERY_LIMIT, "2", NULL);
    kd_amqp *a;
    kd_err err = {0};
    if (kd_amqp_connect(&a, &cfg, &err) != 0)
        fail_msg("%s", err.msg);
    const kd_amqp_topology *t = kd_amqp_names(a);
    if (kd_amqp_publish_confirmed(a, "poison-1", "\x80", 1, 5000, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(kd_amqp_consume_start(a, 1, &err), 0);
    int deliveries = 0;
    uint32_t parked = 0;
    int64_t t0 = kd_mono_us();
    while (parked == 0 && kd_mono_us() - t0 < 10000000) {
        kd_delivery d;
        int rc = kd_amqp_consume_next(a, 50, &d, &err);
        assert_true(rc >= 0);
        if (rc == 1) {
            assert_string_equal(d.message_id, "poison-1");
            assert_int_equal(d.delivery_count, deliveries); /* 0, 1, 2 */
            deliveries++;
            assert_int_equal(kd_amqp_nack(a, d.delivery_tag, d.epoch, true, &err), 0);
        }
        assert_int_equal(kd_amqp_queue_count(a, t->dead_queue, &parked, &err), 0);
    }
    assert_int_equal(deliveries, 3); /* handed out, returned 3 times > limit 2: parked */
    assert_int_equal(parked, 1);
    kd_delivery d;
    assert_int_equal(kd_amqp_get(a, t->dead_queue, &d, &err), 1);
    assert_string_equal(d.message_id, "poison-1");
    assert_int_equal(kd_amqp_ack(a, d.delivery_tag, d.epoch, &err), 0);
    kd_amqp_close(a);
    kd_config_free(&cfg);
    args_cleanup(q);
}

static void test_live_old_queue_used_with_warning(void **state)
{
    (void)state;
    if (!getenv("KD_TEST_AMQP"))
        skip();
    char q[96], dead[128];
    snprintf(q, sizeof q, "%s.old", args_names);
    snprintf(dead, sizeof dead, "%s.dead", q);
    /* what the previous version declared: quorum, nothing else */
    amqp_connection_state_t c = raw_open();
    assert_int_equal(raw_declare(c, q, NULL, 0, NULL, 0), 0);
    assert_int_equal(raw_declare(c, dead, NULL, 0, NULL, 0), 0);
    raw_close(c);

    kd_config cfg;
    args_config(&cfg, q);
    kd_amqp *a;
    kd_err err = {0};
    char log[8192], missing[1024];
    if (connect_logged(&cfg, &a, &err, log, sizeof log) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(kd_amqp_missing_args(a, missing, sizeof missing), 2);
    char want[512];
    snprintf(want, sizeof want,
             "%s (x-delivery-limit); %s (x-delivery-limit, x-dead-letter-exchange, "
             "x-dead-letter-routing-key, x-dead-letter-strategy, x-overflow)",
             dead, q);
    assert_string_equal(missing, want);
    /* one warning per queue, naming it, what is missing, and the policy that fixes it */
    snprintf(want, sizeof want, "queue '%s' exists without x-delivery-limit, x-dead-letter", q);
    assert_non_null(strstr(log, want));
    assert_non_null(strstr(log, "rabbitmqctl set_policy"));
    assert_non_null(strstr(log, "Queue arguments missing"));
    assert_non_null(strstr(log, "\"log.level\":\"warn\""));

    /* and it works: a job goes through the old queue on the reopened channel */
    const kd_amqp_topology *t = kd_amqp_names(a);
    assert_int_equal(kd_amqp_consume_start(a, 10, &err), 0);
    kd_amqp_out m = {.exchange = t->exchange,
                     .routing_key = t->routing_key,
                     .message_id = "old-1",
                     .body = "\x80",
                     .len = 1};
    uint64_t tag;
    assert_int_equal(kd_amqp_side_publish(a, &m, &tag, &err), 0);
    bool delivered = false, confirmed = false;
    int64_t t0 = kd_mono_us();
    while (!(delivered && confirmed) && kd_mono_us() - t0 < 5000000) {
        kd_delivery d;
        int rc = kd_amqp_consume_next(a, 50, &d, &err);
        assert_true(rc >= 0);
        kd_amqp_event ev;
        while (kd_amqp_side_event(a, &ev))
            confirmed = confirmed || ev.kind == KD_AMQP_EV_ACK;
        if (rc == 1) {
            assert_string_equal(d.message_id, "old-1");
            assert_int_equal(kd_amqp_ack(a, d.delivery_tag, d.epoch, &err), 0);
            delivered = true;
        }
    }
    assert_true(delivered);
    assert_true(confirmed);
    kd_amqp_close(a);

    /* every connect warns again (and a queue is counted once per connect) */
    if (connect_logged(&cfg, &a, &err, log, sizeof log) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(kd_amqp_missing_args(a, NULL, 0), 2);
    kd_amqp_close(a);
    kd_config_free(&cfg);
    args_cleanup(q);
}

static void test_live_other_value_refused(void **state)
{
    (void)state;
    if (!getenv("KD_TEST_AMQP"))
        skip();
    char q[96];
    snprintf(q, sizeof q, "%s.other", args_names);
    amqp_connection_state_t c = raw_open();
    amqp_table_entry_t limit[] = {t_int("x-delivery-limit", 50)};
    assert_int_equal(raw_declare(c, q, limit, 1, NULL, 0), 0);
    raw_close(c);
    kd_config cfg;
    args_config(&cfg, q);
    kd_amqp *a = NULL;
    kd_err err = {0};
    assert_int_not_equal(kd_amqp_connect(&a, &cfg, &err), 0);
    assert_null(a);
    assert_non_null(strstr(err.msg, q));
    assert_non_null(strstr(err.msg, "x-delivery-limit"));
    assert_non_null(strstr(err.msg, "406"));
    kd_config_free(&cfg);
    args_cleanup(q);
}

static int args_setup(void **state)
{
    (void)state;
    snprintf(args_names, sizeof args_names, "kd.test.amqpargs.%d", (int)getpid());
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers_round_trip),     cmocka_unit_test(test_headers_lenient),
        cmocka_unit_test(test_headers_integer_widths), cmocka_unit_test(test_topology_names),
        cmocka_unit_test(test_inequivalent_arg),       cmocka_unit_test(test_policy_command),
    };
    const struct CMUnitTest live[] = {
        cmocka_unit_test(test_live_topology),
        cmocka_unit_test(test_live_side_publish_while_consuming),
        cmocka_unit_test(test_live_get_and_stale_epoch),
    };
    const struct CMUnitTest args[] = {
        cmocka_unit_test(test_live_fresh_queue_arguments),
        cmocka_unit_test(test_live_delivery_limit_parks),
        cmocka_unit_test(test_live_old_queue_used_with_warning),
        cmocka_unit_test(test_live_other_value_refused),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rc |= cmocka_run_group_tests(live, live_setup, live_teardown);
    return rc | cmocka_run_group_tests(args, args_setup, NULL);
}
