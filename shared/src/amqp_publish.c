/* amqp_publish.c: publishing with confirms (see kd_amqp.h, amqp.c for the invariants).
 *
 * Every message is persistent and mandatory. Confirms are reported as events, in the
 * order the broker sends them; a basic.return (unroutable) is reported before the ack of
 * the same message, and identified by its message_id because it carries no tag.
 * kd_amqp_publish_confirmed is the one-message case of the same two calls.
 */
#include "amqp_int.h"

#include <stdio.h>
#include <string.h>

#include "kd_log.h"

int kd_amqp_publish(kd_amqp *a, const char *message_id, const void *body, size_t len, uint64_t *tag,
                    kd_err *err)
{
    int rc = kd_amqp_if_broken(a, err);
    if (rc)
        return rc;
    if (!a->confirm_on) {
        amqp_confirm_select(a->conn, KD_AMQP_CHANNEL);
        rc =
            kd_amqp_check_reply(a, amqp_get_rpc_reply(a->conn), "enabling publisher confirms", err);
        if (rc)
            return rc;
        a->confirm_on = true;
        a->last_tag = 0;
    }
    kd_amqp_out m = {.exchange = a->exchange,
                     .routing_key = a->routing_key,
                     .message_id = message_id,
                     .body = body,
                     .len = len};
    return kd_amqp_publish_out(a, KD_AMQP_CHANNEL, &m, &a->last_tag, "publishing", tag, err);
}

int kd_amqp_publish_out(kd_amqp *a, amqp_channel_t channel, const kd_amqp_out *m,
                        uint64_t *last_tag, const char *what, uint64_t *tag, kd_err *err)
{
    amqp_basic_properties_t props = {0};
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.content_type = amqp_cstring_bytes(
        m->content_type && *m->content_type ? m->content_type : "application/msgpack");
    props.delivery_mode = 2; /* persistent */
    if (m->message_id && *m->message_id) {
        props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        props.message_id = amqp_cstring_bytes(m->message_id);
    }
    amqp_table_entry_t entries[KD_AMQP_HDR_MAX];
    if (m->headers) {
        int n = kd_amqp_headers_encode(m->headers, entries);
        if (n > 0) {
            props._flags |= AMQP_BASIC_HEADERS_FLAG;
            props.headers.num_entries = n;
            props.headers.entries = entries;
        }
    }
    amqp_bytes_t b = {.len = m->len, .bytes = (void *)m->body};
    int st = amqp_basic_publish(a->conn, channel, amqp_cstring_bytes(m->exchange),
                                amqp_cstring_bytes(m->routing_key), 1 /* mandatory */,
                                0 /* immediate */, &props, b);
    if (st != AMQP_STATUS_OK)
        return kd_amqp_lib_fail(a, st, what, err);
    *tag = ++*last_tag;
    return 0;
}

/* After a basic.return method: its header and body follow; read them to learn which
 * message came back (message_id) and to keep the frame stream in step. */
int kd_amqp_read_return(kd_amqp *a, const amqp_frame_t *f, kd_amqp_event *ev, kd_err *err)
{
    const amqp_basic_return_t *r = f->payload.method.decoded;
    ev->kind = KD_AMQP_EV_RETURN;
    ev->reply_code = r->reply_code;
    kd_amqp_str(r->reply_text, ev->reply_text, sizeof ev->reply_text);
    ev->message_id[0] = '\0';
    amqp_message_t msg;
    amqp_rpc_reply_t rr = amqp_read_message(a->conn, f->channel, &msg, 0);
    if (rr.reply_type != AMQP_RESPONSE_NORMAL)
        return kd_amqp_check_reply(a, rr, "reading a returned message", err);
    if (msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        kd_amqp_str(msg.properties.message_id, ev->message_id, sizeof ev->message_id);
    amqp_destroy_message(&msg);
    return 0;
}

int kd_amqp_common_method(kd_amqp *a, const amqp_frame_t *f, kd_amqp_event *ev, const char *what,
                          bool *handled, kd_err *err)
{
    *handled = true;
    switch (f->payload.method.id) {
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
        return kd_amqp_server_close_on(a, f->channel, &f->payload.method, what, err);
    case AMQP_BASIC_ACK_METHOD:
    case AMQP_BASIC_NACK_METHOD: {
        /* amqp_basic_ack_t and amqp_basic_nack_t begin alike, but are read apart: */
        bool ack = f->payload.method.id == AMQP_BASIC_ACK_METHOD;
        const amqp_basic_ack_t *ak = f->payload.method.decoded;
        const amqp_basic_nack_t *nk = f->payload.method.decoded;
        ev->kind = ack ? KD_AMQP_EV_ACK : KD_AMQP_EV_NACK;
        ev->tag = ack ? ak->delivery_tag : nk->delivery_tag;
        ev->multiple = ack ? ak->multiple : nk->multiple;
        break;
    }
    case AMQP_BASIC_RETURN_METHOD: {
        int rc = kd_amqp_read_return(a, f, ev, err);
        if (rc)
            return rc;
        break;
    }
    case AMQP_CONNECTION_BLOCKED_METHOD:
        kd_warn("amqp %s: the broker blocks publishers (resource alarm: memory or disk)", a->where);
        return 0;
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
        kd_info("amqp %s: the broker unblocked publishers", a->where);
        return 0;
    default: *handled = false; return 0;
    }
    ev->channel = f->channel;
    return 0;
}

int kd_amqp_next_event(kd_amqp *a, int timeout_ms, kd_amqp_event *ev, kd_err *err)
{
    int64_t deadline;
    int rc = kd_amqp_wait_start(a, timeout_ms, &deadline, err);
    if (rc)
        return -rc;
    for (;;) {
        amqp_frame_t f;
        struct timeval tv = kd_amqp_wait_tv(a, deadline);
        int st = amqp_simple_wait_frame_noblock(a->conn, &f, &tv);
        if (st == AMQP_STATUS_TIMEOUT)
            return 0;
        if (st != AMQP_STATUS_OK)
            return -kd_amqp_lib_fail(a, st, "waiting for publisher confirms", err);
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue; /* stray content frame: nothing of ours */
        memset(ev, 0, sizeof *ev);
        ev->channel = f.channel;
        bool handled;
        rc = kd_amqp_common_method(a, &f, ev, "publishing", &handled, err);
        if (rc)
            return -rc;
        if (handled && ev->kind)
            return 1;
        if (!handled)
            kd_debug("amqp %s: ignoring method 0x%08x while publishing", a->where,
                     (unsigned)f.payload.method.id);
        /* else a resource alarm: logged */
    }
}

int kd_amqp_publish_confirmed(kd_amqp *a, const char *message_id, const void *body, size_t len,
                              int timeout_ms, kd_err *err)
{
    uint64_t tag = 0; /* the analyzer cannot see that rc == 0 means set */
    int rc = kd_amqp_publish(a, message_id, body, len, &tag, err);
    if (rc)
        return rc;
    bool returned = false;
    char why[200] = "";
    int64_t deadline = kd_amqp_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - kd_amqp_now_ms();
        if (left <= 0)
            return kd_err_set(err, KD_ERR_TIMEOUT,
                              "amqp %s: no publisher confirm within %d ms (the message may "
                              "or may not be queued)",
                              a->where, timeout_ms);
        kd_amqp_event ev = {0}; /* the analyzer cannot see that n > 0 means filled */
        int n = kd_amqp_next_event(a, (int)left, &ev, err);
        if (n < 0)
            return -n;
        if (n == 0)
            continue;
        if (ev.channel != KD_AMQP_CHANNEL)
            continue; /* a side publish's confirm: not ours */
        if (ev.kind == KD_AMQP_EV_RETURN) {
            if (message_id && strcmp(ev.message_id, message_id) == 0) {
                returned = true;
                snprintf(why, sizeof why, "%d %s", ev.reply_code, ev.reply_text);
            }
            continue;
        }
        if (!(ev.tag == tag || (ev.multiple && ev.tag > tag)))
            continue; /* a late confirm of an earlier, timed-out publish */
        if (ev.kind == KD_AMQP_EV_NACK)
            return kd_err_set(err, KD_ERR_REFUSED,
                              "amqp %s: the broker nacked the message (it could not store "
                              "it; retry)",
                              a->where);
        if (returned)
            return kd_err_set(err, KD_ERR_REFUSED,
                              "amqp %s: unroutable: exchange '%s' has no queue bound with "
                              "routing key '%s' (%s)",
                              a->where, a->exchange, a->routing_key, why);
        return 0;
    }
}
