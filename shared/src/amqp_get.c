/* amqp_get.c: reads by polling instead of consuming: basic.get of one message and a queue's
 * message count (passive declare). For callers that do not consume, such as kone-producer
 * replay-dead and the tests. A message taken here is handed out like a delivery
 * (kd_amqp_read_content, amqp_consume.c) and settled with kd_amqp_ack/kd_amqp_nack.
 */
#include "amqp_int.h"

#include <stdio.h>
#include <string.h>

int kd_amqp_get(kd_amqp *a, const char *queue, kd_delivery *d, kd_err *err)
{
    int rc = kd_amqp_if_broken(a, err);
    if (rc)
        return -rc;
    amqp_maybe_release_buffers(a->conn);
    amqp_rpc_reply_t r = amqp_basic_get(a->conn, KD_AMQP_CHANNEL, amqp_cstring_bytes(queue), 0);
    char what[300];
    snprintf(what, sizeof what, "basic.get from queue '%s'", queue);
    rc = kd_amqp_check_reply(a, r, what, err);
    if (rc)
        return -rc;
    if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
        return 0;
    const amqp_basic_get_ok_t *ok = r.reply.decoded;
    rc = kd_amqp_read_content(a, ok->delivery_tag, ok->redelivered, d, what, err);
    return rc ? -rc : 1;
}

int kd_amqp_queue_count(kd_amqp *a, const char *queue, uint32_t *messages, kd_err *err)
{
    int rc = kd_amqp_if_broken(a, err);
    if (rc)
        return rc;
    amqp_queue_declare_ok_t *ok =
        amqp_queue_declare(a->conn, KD_AMQP_CHANNEL, amqp_cstring_bytes(queue), 1 /* passive */, 0,
                           0, 0, amqp_empty_table);
    char what[300];
    snprintf(what, sizeof what, "looking up queue '%s'", queue);
    rc = kd_amqp_check_reply(a, amqp_get_rpc_reply(a->conn), what, err);
    if (rc)
        return rc;
    *messages = ok->message_count;
    return 0;
}
