/* amqp_side.c: the side channel (2) and basic.get (see kd_amqp.h, amqp.c).
 *
 * Why a second channel: on the consuming channel 1, basic.ack already means "the worker
 * settles a delivery"; putting it in confirm mode as well would make the broker send
 * basic.ack frames of its own there, numbered in a second sequence that also starts at 1.
 * Channel 2 keeps publish sequence numbers and delivery tags apart. Both channels share
 * the one socket and thread, so rabbitmq-c hands channel 2's basic.ack/nack/return to
 * whoever reads next: amqp_consume.c queues them here (kd_amqp_side_push), the owner takes them
 * with kd_amqp_side_event. Nothing here ever waits for a confirm except kd_amqp_side_wait, which is
 * for callers that do not consume (kone-producer replay-dead). basic.get is in amqp_get.c, so
 * that this file only takes from amqp_consume.c's reads and never calls back into it.
 */
#include "amqp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_log.h"

static int side_open(kd_amqp *a, kd_err *err)
{
    amqp_channel_open(a->conn, KD_AMQP_SIDE_CHANNEL);
    int rc = kd_amqp_check_reply_on(a, KD_AMQP_SIDE_CHANNEL, amqp_get_rpc_reply(a->conn),
                                    "opening channel 2", err);
    if (rc)
        return rc;
    amqp_confirm_select(a->conn, KD_AMQP_SIDE_CHANNEL);
    rc = kd_amqp_check_reply_on(a, KD_AMQP_SIDE_CHANNEL, amqp_get_rpc_reply(a->conn),
                                "enabling publisher confirms on channel 2", err);
    if (rc)
        return rc;
    a->side_open = true;
    a->side_last_tag = 0;
    return 0;
}

int kd_amqp_side_publish(kd_amqp *a, const kd_amqp_out *m, uint64_t *tag, kd_err *err)
{
    int rc = kd_amqp_if_broken(a, err);
    if (rc)
        return rc;
    if (!a->side_open && (rc = side_open(a, err)) != 0)
        return rc;
    return kd_amqp_publish_out(a, KD_AMQP_SIDE_CHANNEL, m, &a->side_last_tag,
                               "publishing on channel 2", tag, err);
}

int kd_amqp_side_push(kd_amqp *a, const kd_amqp_event *ev, kd_err *err)
{
    if (a->side_head == a->side_n) /* drained: start over at the front */
        a->side_head = a->side_n = 0;
    if (a->side_n == a->side_cap) {
        size_t cap = a->side_cap ? a->side_cap * 2 : 64;
        kd_amqp_event *p = realloc(a->side_ev, cap * sizeof *p);
        if (!p)
            /* GCOVR_EXCL_START: allocation failure (no test injects one) */
            return kd_amqp_set_broken(a, err, KD_ERR_NOMEM,
                                      "amqp %s: out of memory queueing a publisher confirm",
                                      a->where);
        /* GCOVR_EXCL_STOP */
        a->side_ev = p;
        a->side_cap = cap;
    }
    a->side_ev[a->side_n++] = *ev;
    return 0;
}

int kd_amqp_side_event(kd_amqp *a, kd_amqp_event *ev)
{
    if (a->side_head == a->side_n)
        return 0;
    *ev = a->side_ev[a->side_head++];
    return 1;
}

int kd_amqp_side_wait(kd_amqp *a, int timeout_ms, kd_amqp_event *ev, kd_err *err)
{
    if (kd_amqp_side_event(a, ev))
        return 1;
    return kd_amqp_next_event(a, timeout_ms, ev, err);
}
