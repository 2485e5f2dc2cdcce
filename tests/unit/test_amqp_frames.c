/* test_amqp_frames.c: how kd_amqp reads a delivery's frames (amqp_consume.c), fed by hand
 * over a socketpair: what a conforming RabbitMQ never sends (a body longer than announced, a
 * frame out of place, a channel closed between a delivery's frames, the side channel's
 * confirm between them, a connection lost mid-message) must break the connection with an
 * error that says so, or be served, and never hand out a wrong body. The live broker cases
 * are in test_amqp.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <amqp_tcp_socket.h>
#include <cmocka.h>

#include "../../shared/src/amqp_int.h"

typedef struct fx {
    kd_amqp *a;
    int peer; /* the "broker" end */
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    f->a = calloc(1, sizeof *f->a);
    f->a->conn = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(f->a->conn);
    assert_non_null(s);
    amqp_tcp_socket_set_sockfd(s, sv[0]);
    snprintf(f->a->where, sizeof f->a->where, "test");
    f->a->consuming = true;
    f->peer = sv[1];
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f->peer >= 0)
        close(f->peer);
    amqp_destroy_connection(f->a->conn); /* closes the worker's end */
    free(f->a->side_ev);
    free(f->a->body);
    free(f->a);
    free(f);
    return 0;
}

/* ---- frames, encoded by hand (AMQP 0-9-1, section 4.2.3) ---- */

typedef struct pb {
    unsigned char b[4096];
    size_t n;
} pb;

static void u8(pb *p, unsigned v)
{
    p->b[p->n++] = (unsigned char)v;
}
static void u16(pb *p, unsigned v)
{
    u8(p, v >> 8);
    u8(p, v & 0xff);
}
static void u32(pb *p, uint32_t v)
{
    u16(p, v >> 16);
    u16(p, v & 0xffff);
}
static void u64(pb *p, uint64_t v)
{
    u32(p, (uint32_t)(v >> 32));
    u32(p, (uint32_t)v);
}
static void sstr(pb *p, const char *s)
{
    u8(p, (unsigned)strlen(s));
    memcpy(p->b + p->n, s, strlen(s));
    p->n += strlen(s);
}

static void send_frame(fx *f, unsigned type, unsigned channel, const void *payload, size_t len)
{
    pb h = {0};
    u8(&h, type);
    u16(&h, channel);
    u32(&h, (uint32_t)len);
    assert_int_equal(write(f->peer, h.b, h.n), (ssize_t)h.n);
    if (len)
        assert_int_equal(write(f->peer, payload, len), (ssize_t)len);
    unsigned char end = 0xCE;
    assert_int_equal(write(f->peer, &end, 1), 1);
}

static void deliver(fx *f, uint64_t tag)
{
    pb p = {0};
    u16(&p, 60), u16(&p, 60); /* basic.deliver */
    sstr(&p, "ctag");
    u64(&p, tag);
    u8(&p, 0); /* redelivered */
    sstr(&p, "ex");
    sstr(&p, "rk");
    send_frame(f, AMQP_FRAME_METHOD, 1, p.b, p.n);
}

static void header(fx *f, uint64_t body_size)
{
    pb p = {0};
    u16(&p, 60), u16(&p, 0); /* class basic, weight */
    u64(&p, body_size);
    u16(&p, 0x0080); /* property flags: message-id only */
    sstr(&p, "job-1");
    send_frame(f, AMQP_FRAME_HEADER, 1, p.b, p.n);
}

static void body(fx *f, unsigned channel, const char *s)
{
    send_frame(f, AMQP_FRAME_BODY, channel, s, strlen(s));
}

static void confirm(fx *f, uint64_t tag)
{
    pb p = {0};
    u16(&p, 60), u16(&p, 80); /* basic.ack */
    u64(&p, tag);
    u8(&p, 0);
    send_frame(f, AMQP_FRAME_METHOD, KD_AMQP_SIDE_CHANNEL, p.b, p.n);
}

static void method(fx *f, unsigned channel, unsigned cls, unsigned id, const pb *args)
{
    pb p = {0};
    u16(&p, cls), u16(&p, id);
    memcpy(p.b + p.n, args->b, args->n);
    p.n += args->n;
    send_frame(f, AMQP_FRAME_METHOD, channel, p.b, p.n);
}

static int next(fx *f, kd_delivery *d, kd_err *err)
{
    memset(err, 0, sizeof *err);
    return kd_amqp_consume_next(f->a, 1000, d, err);
}

/* ---- cases ---- */

/* A body over two frames, with the side channel's confirm between the header and the body:
 * the body is whole, the confirm waits for the publisher. */
static void test_body_over_frames_and_a_confirm_between(void **state)
{
    fx *f = *state;
    deliver(f, 7);
    header(f, 5);
    confirm(f, 3);
    body(f, 1, "ab");
    body(f, 1, "cde");
    kd_delivery d;
    kd_err err;
    assert_int_equal(next(f, &d, &err), 1);
    assert_int_equal(d.len, 5);
    assert_memory_equal(d.body, "abcde", 5);
    assert_int_equal(d.delivery_tag, 7);
    assert_string_equal(d.message_id, "job-1");
    kd_amqp_event ev;
    assert_int_equal(kd_amqp_side_event(f->a, &ev), 1);
    assert_int_equal(ev.kind, KD_AMQP_EV_ACK);
    assert_int_equal(ev.tag, 3);
}

static void test_body_longer_than_announced(void **state)
{
    fx *f = *state;
    deliver(f, 1);
    header(f, 3);
    body(f, 1, "abcd");
    kd_delivery d;
    kd_err err;
    assert_true(next(f, &d, &err) < 0);
    assert_non_null(strstr(err.msg, "longer than the 3 bytes announced"));
}

/* A header announcing more than memory holds: refused before any allocation. */
static void test_body_size_beyond_memory(void **state)
{
    fx *f = *state;
    deliver(f, 1);
    header(f, UINT64_C(1) << 63);
    kd_delivery d;
    kd_err err;
    assert_true(next(f, &d, &err) < 0);
    assert_non_null(strstr(err.msg, "no memory for a body"));
}

static void test_frame_out_of_place(void **state)
{
    fx *f = *state;
    deliver(f, 1);
    body(f, 1, "ab"); /* no header first */
    kd_delivery d;
    kd_err err;
    assert_true(next(f, &d, &err) < 0);
    assert_non_null(strstr(err.msg, "where a message's content was expected"));
}

static void test_channel_closed_between_frames(void **state)
{
    fx *f = *state;
    deliver(f, 1);
    header(f, 4);
    pb a = {0};
    u16(&a, 406);
    sstr(&a, "PRECONDITION_FAILED - test");
    u16(&a, 60), u16(&a, 60);
    method(f, 1, 20, 40, &a); /* channel.close */
    kd_delivery d;
    kd_err err;
    assert_true(next(f, &d, &err) < 0);
    assert_non_null(strstr(err.msg, "PRECONDITION_FAILED - test"));
}

static void test_connection_lost_mid_message(void **state)
{
    fx *f = *state;
    deliver(f, 1);
    header(f, 4);
    close(f->peer);
    f->peer = -1;
    kd_delivery d;
    kd_err err;
    assert_true(next(f, &d, &err) < 0);
    assert_true(err.msg[0] != '\0');
}

/* Methods of the consuming channel that are no delivery: cancel-ok ends consuming, others
 * are ignored, and the delivery after them (an empty body) comes out. */
static void test_other_methods_then_an_empty_body(void **state)
{
    fx *f = *state;
    pb tag = {0};
    sstr(&tag, "ctag");
    method(f, 1, 60, 31, &tag); /* basic.cancel-ok */
    pb flow = {0};
    u8(&flow, 1);
    method(f, 1, 20, 20, &flow); /* channel.flow: not ours */
    deliver(f, 9);
    header(f, 0);
    kd_delivery d;
    kd_err err;
    assert_int_equal(next(f, &d, &err), 1);
    assert_int_equal(d.len, 0);
    assert_int_equal(d.delivery_tag, 9);
    assert_false(kd_amqp_consuming(f->a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_body_over_frames_and_a_confirm_between, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_body_longer_than_announced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_size_beyond_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frame_out_of_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_channel_closed_between_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_lost_mid_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_methods_then_an_empty_body, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
