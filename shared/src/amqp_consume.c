/* amqp_consume.c: consuming with manual acks (see kd_amqp.h, amqp.c for the invariants).
 *
 * The delivery handed out last stays in the kd_amqp (its envelope) until the next call,
 * so the body needs no copy. A method other than basic.deliver is read here too: channel
 * or connection close and basic.cancel from the broker become errors; confirms and returns
 * of the side channel (the worker's retry and dead-letter publishes share this socket) are
 * queued for kd_amqp_side_event. Acks carry the epoch of the connection that delivered the
 * message and are dropped when it is stale.
 */
#include "amqp_int.h"

#include <stdio.h>
#include <string.h>

#include "kd_log.h"

int kd_amqp_consume_start(kd_amqp *a, int prefetch, kd_err *err)
{
    int rc = kd_amqp_if_broken(a, err);
    if (rc)
        return rc;
    if (prefetch < 1 || prefetch > 65535)
        return kd_err_set(err, KD_ERR_INVALID, "prefetch: must be 1..65535, got %d", prefetch);
    amqp_basic_qos(a->conn, KD_AMQP_CHANNEL, 0, (uint16_t)prefetch, 0);
    rc = kd_amqp_check_reply(a, amqp_get_rpc_reply(a->conn), "setting prefetch (basic.qos)", err);
    if (rc)
        return rc;
    amqp_basic_consume_ok_t *ok =
        amqp_basic_consume(a->conn, KD_AMQP_CHANNEL, amqp_cstring_bytes(a->queue), amqp_empty_bytes,
                           0, 0 /* manual ack */, 0, amqp_empty_table);
    char what[300];
    snprintf(what, sizeof what, "consuming queue '%s'", a->queue);
    rc = kd_amqp_check_reply(a, amqp_get_rpc_reply(a->conn), what, err);
    if (rc)
        return rc;
    kd_amqp_str(ok->consumer_tag, a->consumer_tag, sizeof a->consumer_tag);
    a->consuming = true;
    return 0;
}

void kd_amqp_fill_delivery(kd_amqp *a, kd_delivery *d)
{
    const amqp_basic_properties_t *p = &a->env.message.properties;
    memset(d, 0, sizeof *d);
    d->body = a->env.message.body.bytes;
    d->len = a->env.message.body.len;
    d->delivery_tag = a->env.delivery_tag;
    d->epoch = a->epoch;
    kd_amqp_acks_delivered(a, d->delivery_tag);
    d->redelivered = a->env.redelivered;
    a->content_type[0] = '\0';
    a->message_id[0] = '\0';
    if (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
        kd_amqp_str(p->content_type, a->content_type, sizeof a->content_type);
    if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        kd_amqp_str(p->message_id, a->message_id, sizeof a->message_id);
    d->content_type = a->content_type;
    d->message_id = a->message_id;
    if (p->_flags & AMQP_BASIC_HEADERS_FLAG)
        kd_amqp_headers_decode(&p->headers, &d->kd, &d->delivery_count);
}

/* A method other than basic.deliver arrived first: read it and decide. Returns 0 to keep
 * waiting, or a kd_err code when the channel or connection is gone. */
static int other_method(kd_amqp *a, kd_err *err)
{
    amqp_frame_t f;
    struct timeval zero = {0, 0};
    int st = amqp_simple_wait_frame_noblock(a->conn, &f, &zero);
    if (st == AMQP_STATUS_TIMEOUT)
        return 0;
    if (st != AMQP_STATUS_OK)
        return kd_amqp_lib_fail(a, st, "consuming", err);
    if (f.frame_type != AMQP_FRAME_METHOD)
        return 0;
    kd_amqp_event ev = {.channel = f.channel};
    bool handled;
    int rc = kd_amqp_common_method(a, &f, &ev, "consuming", &handled, err);
    if (rc)
        return rc;
    if (handled) /* a confirm or a return waits for the publisher's next kd_amqp_next_event */
        return ev.kind ? kd_amqp_side_push(a, &ev, err) : 0;
    switch (f.payload.method.id) {
    case AMQP_BASIC_CANCEL_METHOD: /* the broker cancelled us: queue deleted or moved */
        a->consuming = false;
        return kd_amqp_set_broken(a, err, KD_ERR_IO,
                                  "amqp %s: the broker cancelled the consumer of queue '%s' (queue "
                                  "deleted or its leader moved)",
                                  a->where, a->queue);
    case AMQP_BASIC_CANCEL_OK_METHOD: a->consuming = false; return 0;
    default:
        kd_debug("amqp %s: ignoring method 0x%08x while consuming", a->where,
                 (unsigned)f.payload.method.id);
        return 0;
    }
}

int kd_amqp_consume_next(kd_amqp *a, int timeout_ms, kd_delivery *d, kd_err *err)
{
    kd_amqp_drop_envelope(a);
    int64_t deadline;
    int rc = kd_amqp_wait_start(a, timeout_ms, &deadline, err);
    if (rc)
        return -rc;
    for (;;) {
        /* amqp_consume_message takes frames rabbitmq-c already queued (read ahead during
         * an RPC such as basic.cancel) before it touches the socket. */
        struct timeval tv = kd_amqp_wait_tv(a, deadline);
        amqp_rpc_reply_t r = amqp_consume_message(a->conn, &a->env, &tv, 0);
        if (r.reply_type == AMQP_RESPONSE_NORMAL) {
            a->have_env = true;
            kd_amqp_fill_delivery(a, d);
            return 1;
        }
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
            if (r.library_error == AMQP_STATUS_TIMEOUT)
                return 0;
            if (r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
                rc = other_method(a, err);
                if (rc)
                    return -rc;
                if (deadline - kd_amqp_now_ms() <= 0 && !kd_amqp_buffered(a))
                    return 0;
                continue;
            }
            return -kd_amqp_lib_fail(a, r.library_error, "consuming", err);
        }
        return -kd_amqp_check_reply(a, r, "consuming", err);
    }
}

int kd_amqp_consume_cancel(kd_amqp *a, kd_err *err)
{
    int rc = kd_amqp_if_broken(a, err);
    if (rc || !a->consuming)
        return rc;
    /* Deliveries that cross the cancel stay queued in rabbitmq-c; consume_next still
     * returns them, and they must be acked or nacked like any other. */
    amqp_basic_cancel(a->conn, KD_AMQP_CHANNEL, amqp_cstring_bytes(a->consumer_tag));
    rc = kd_amqp_check_reply(a, amqp_get_rpc_reply(a->conn), "cancelling the consumer", err);
    if (!rc)
        a->consuming = false;
    return rc;
}

bool kd_amqp_consuming(const kd_amqp *a)
{
    return a->consuming;
}

static int settle(kd_amqp *a, uint64_t tag, uint64_t epoch, bool ack, bool requeue, kd_err *err)
{
    if (epoch != a->epoch) {
        kd_debug("amqp %s: %s of delivery %llu from epoch %llu dropped (now %llu)", a->where,
                 ack ? "ack" : "nack", (unsigned long long)tag, (unsigned long long)epoch,
                 (unsigned long long)a->epoch);
        return 0;
    }
    int rc = kd_amqp_if_broken(a, err);
    if (rc)
        return rc;
    if (ack && kd_amqp_acks_hold(a, tag))
        return 0; /* sent by kd_amqp_flush_acks */
    if (!ack)
        kd_amqp_acks_sent(a, tag);
    int st = ack ? amqp_basic_ack(a->conn, KD_AMQP_CHANNEL, tag, 0)
                 : amqp_basic_nack(a->conn, KD_AMQP_CHANNEL, tag, 0, requeue);
    if (st != AMQP_STATUS_OK)
        return kd_amqp_lib_fail(a, st, ack ? "acking a delivery" : "nacking a delivery", err);
    return 0;
}

int kd_amqp_ack(kd_amqp *a, uint64_t tag, uint64_t epoch, kd_err *err)
{
    return settle(a, tag, epoch, true, false, err);
}

int kd_amqp_nack(kd_amqp *a, uint64_t tag, uint64_t epoch, bool requeue, kd_err *err)
{
    return settle(a, tag, epoch, false, requeue, err);
}
