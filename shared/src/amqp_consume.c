/* amqp_consume.c: consuming with manual acks (see kd_amqp.h, amqp.c for the invariants).
 *
 * The delivery handed out last stays in the kd_amqp (its body in a->body) until the next
 * call. A method other than basic.deliver is read here too: channel
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

/* *d's fields from the message's properties (copied: the header frame they were decoded
 * into lives in rabbitmq-c's channel pool only until its next release). */
static void fill_properties(kd_amqp *a, const amqp_basic_properties_t *p, kd_delivery *d)
{
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

/* Room for a body of n bytes in a->body. One buffer serves every delivery; after a body
 * over 64 KiB it is given back at the next smaller one. */
static bool body_room(kd_amqp *a, size_t n)
{
    enum { KEEP = 64 * 1024 };
    if (n <= a->body_cap && (a->body_cap <= KEEP || n > KEEP))
        return true;
    size_t cap = n > KEEP ? n : KEEP;
    char *b = realloc(a->body, cap);
    if (!b)
        return false; /* GCOVR_EXCL_LINE: allocation failure */
    a->body = b;
    a->body_cap = cap;
    return true;
}

/* A method frame that is not a delivery: a confirm or a return of the side channel (the
 * worker's retry and dead-letter publishes share this socket) is queued for
 * kd_amqp_side_event; channel or connection close and basic.cancel from the broker become
 * errors. Returns 0 to go on, or a kd_err code when the channel or connection is gone. */
static int other_method(kd_amqp *a, const amqp_frame_t *f, const char *what, kd_err *err)
{
    kd_amqp_event ev = {.channel = f->channel};
    bool handled;
    int rc = kd_amqp_common_method(a, f, &ev, what, &handled, err);
    if (rc)
        return rc;
    if (handled) /* a confirm or a return waits for the publisher's next kd_amqp_next_event */
        return ev.kind ? kd_amqp_side_push(a, &ev, err) : 0;
    switch (f->payload.method.id) {
    case AMQP_BASIC_CANCEL_METHOD: /* the broker cancelled us: queue deleted or moved */
        a->consuming = false;
        return kd_amqp_set_broken(a, err, KD_ERR_IO,
                                  "amqp %s: the broker cancelled the consumer of queue '%s' (queue "
                                  "deleted or its leader moved)",
                                  a->where, a->queue);
    case AMQP_BASIC_CANCEL_OK_METHOD: a->consuming = false; return 0;
    default:
        kd_debug("amqp %s: ignoring method 0x%08x while consuming", a->where,
                 (unsigned)f->payload.method.id);
        return 0;
    }
}

/* The next frame of the consuming channel, a content frame expected (of type `want`): the
 * side channel's methods in between are served (other_method). rabbitmq-c's own
 * amqp_read_message waits the same way, without a deadline: the broker sends a message's
 * frames together, and a dead connection ends the wait (heartbeats, or the socket). */
static int content_frame(kd_amqp *a, amqp_frame_t *f, uint8_t want, const char *what, kd_err *err)
{
    for (;;) {
        int st = amqp_simple_wait_frame(a->conn, f);
        if (st != AMQP_STATUS_OK)
            return kd_amqp_lib_fail(a, st, what, err);
        if (f->channel != KD_AMQP_CHANNEL && f->frame_type == AMQP_FRAME_METHOD) {
            int rc = other_method(a, f, what, err);
            if (rc)
                return rc;
            continue;
        }
        if (f->frame_type == want && f->channel == KD_AMQP_CHANNEL)
            return 0;
        if (f->frame_type == AMQP_FRAME_METHOD &&
            (f->payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
             f->payload.method.id == AMQP_CONNECTION_CLOSE_METHOD))
            return kd_amqp_server_close_on(a, f->channel, &f->payload.method, what, err);
        return kd_amqp_set_broken(a, err, KD_ERR_IO,
                                  "amqp %s: %s: frame type %d on channel %d where a message's "
                                  "content was expected",
                                  a->where, what, (int)f->frame_type, (int)f->channel);
    }
}

/* As amqp_read_message (and amqp_consume_message around it), without their allocations:
 * they cloned the properties into a new pool (a zeroed 4 KiB page), malloc'ed the body and
 * copied three of the method's strings, all freed again at the next delivery (~6k
 * instructions a job, docs/performance.md). The properties are copied out of the header
 * frame before the body's frames are read. */
int kd_amqp_read_content(kd_amqp *a, uint64_t delivery_tag, bool redelivered, kd_delivery *d,
                         const char *what, kd_err *err)
{
    amqp_frame_t f;
    memset(d, 0, sizeof *d);
    int rc = content_frame(a, &f, AMQP_FRAME_HEADER, what, err);
    if (rc)
        return rc;
    fill_properties(a, f.payload.properties.decoded, d);
    uint64_t size = f.payload.properties.body_size;
    if (size > SIZE_MAX / 2 || !body_room(a, (size_t)size))
        return kd_amqp_set_broken(a, err, KD_ERR_NOMEM,
                                  "amqp %s: %s: no memory for a body of %llu bytes", a->where, what,
                                  (unsigned long long)size);
    size_t got = 0;
    while (got < size) {
        if ((rc = content_frame(a, &f, AMQP_FRAME_BODY, what, err)))
            return rc;
        size_t n = f.payload.body_fragment.len;
        if (n > size - got)
            return kd_amqp_set_broken(a, err, KD_ERR_IO,
                                      "amqp %s: %s: body frames longer than the %llu bytes "
                                      "announced",
                                      a->where, what, (unsigned long long)size);
        memcpy(a->body + got, f.payload.body_fragment.bytes, n);
        got += n;
    }
    d->body = size ? a->body : "";
    d->len = (size_t)size;
    d->delivery_tag = delivery_tag;
    d->epoch = a->epoch;
    d->redelivered = redelivered;
    kd_amqp_acks_delivered(a, delivery_tag);
    return 0;
}

int kd_amqp_consume_next(kd_amqp *a, int timeout_ms, kd_delivery *d, kd_err *err)
{
    int64_t deadline;
    int rc = kd_amqp_wait_start(a, timeout_ms, &deadline, err);
    if (rc)
        return -rc;
    for (;;) {
        /* amqp_simple_wait_frame_noblock takes frames rabbitmq-c already queued (read ahead
         * during an RPC such as basic.cancel) before it touches the socket. */
        struct timeval tv = kd_amqp_wait_tv(a, deadline);
        amqp_frame_t f;
        int st = amqp_simple_wait_frame_noblock(a->conn, &f, &tv);
        if (st == AMQP_STATUS_TIMEOUT)
            return 0;
        if (st != AMQP_STATUS_OK)
            return -kd_amqp_lib_fail(a, st, "consuming", err);
        if (f.frame_type == AMQP_FRAME_METHOD) {
            if (f.payload.method.id == AMQP_BASIC_DELIVER_METHOD && f.channel == KD_AMQP_CHANNEL) {
                const amqp_basic_deliver_t *m = f.payload.method.decoded;
                rc = kd_amqp_read_content(a, m->delivery_tag, m->redelivered, d, "consuming", err);
                return rc ? -rc : 1;
            }
            if ((rc = other_method(a, &f, "consuming", err)))
                return -rc;
        }
        if (deadline - kd_amqp_now_ms() <= 0 && !kd_amqp_buffered(a))
            return 0;
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
