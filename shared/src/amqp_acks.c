/* amqp_acks.c: acks held and sent together (kd_amqp_hold_acks, kd_amqp_flush_acks).
 *
 * Why: every basic.ack is a frame, a TLS record and a system call; the worker settles jobs
 * in clumps (a ledger batch commits, Kafka reports a batch), so it holds its acks for one
 * turn of its loop and sends, per turn, one `multiple` ack for the longest run of settled
 * deliveries from the oldest unsettled one, and the rest one by one (issue 17: about 7k
 * instructions and one system call per job less). Nothing waits longer than a turn.
 *
 * How: the consumer's delivery tags on a channel are 1, 2, 3, ... in order. ack_base is the
 * highest tag below which every delivery is settled on the wire; the state of the tags in
 * (ack_base, ack_base + KD_AMQP_ACK_WINDOW] is kept in a ring. A `multiple` ack of tag N
 * acks every unacked delivery up to N, so it is sent only for a held N with every tag
 * below it settled (held, or acked or nacked already: those are untouched by it). A tag the
 * ring cannot hold (a delivery left unsettled while thousands pass it) is acked at once; the
 * ring starts again from the highest tag whenever no delivery is unsettled.
 */
#include "amqp_int.h"

#include <string.h>

enum { ACK_OUT = 0, ACK_HELD = 1, ACK_SENT = 2 };

static bool in_window(const kd_amqp *a, uint64_t tag)
{
    return tag > a->ack_base && tag - a->ack_base <= KD_AMQP_ACK_WINDOW;
}

static unsigned char *slot(kd_amqp *a, uint64_t tag)
{
    return &a->ack_st[tag % KD_AMQP_ACK_WINDOW];
}

void kd_amqp_hold_acks(kd_amqp *a)
{
    a->hold_acks = true;
}

void kd_amqp_acks_delivered(kd_amqp *a, uint64_t tag)
{
    if (tag > a->ack_high)
        a->ack_high = tag;
    a->ack_unsettled++;
    if (in_window(a, tag))
        *slot(a, tag) = ACK_OUT;
}

bool kd_amqp_acks_hold(kd_amqp *a, uint64_t tag)
{
    if (a->ack_unsettled)
        a->ack_unsettled--;
    if (!in_window(a, tag))
        return false;
    *slot(a, tag) = a->hold_acks ? ACK_HELD : ACK_SENT;
    if (a->hold_acks)
        a->n_held++;
    return a->hold_acks;
}

void kd_amqp_acks_sent(kd_amqp *a, uint64_t tag)
{
    if (a->ack_unsettled)
        a->ack_unsettled--;
    if (in_window(a, tag))
        *slot(a, tag) = ACK_SENT;
}

int kd_amqp_flush_acks(kd_amqp *a, int *lost, kd_err *err)
{
    *lost = 0;
    if (!a->n_held)
        return 0;
    int rc = kd_amqp_if_broken(a, err);
    if (rc) {
        *lost = a->n_held;
        a->n_held = 0;
        return rc;
    }
    /* the run of settled tags from the oldest: one `multiple` ack up to its last held tag */
    uint64_t t = a->ack_base + 1, last_held = 0;
    int run_held = 0;
    while (t <= a->ack_high && in_window(a, t) && *slot(a, t) != ACK_OUT) {
        if (*slot(a, t) == ACK_HELD) {
            last_held = t;
            run_held++;
            a->n_held--;
        }
        *slot(a, t) = ACK_OUT; /* the slot is tag t + window's from now on */
        t++;
    }
    int st = AMQP_STATUS_OK;
    if (last_held)
        st = amqp_basic_ack(a->conn, KD_AMQP_CHANNEL, last_held, 1);
    if (st != AMQP_STATUS_OK)
        a->n_held += run_held; /* none of them went out */
    a->ack_base = t - 1;
    /* held acks past an unsettled delivery: one by one */
    for (uint64_t u = t; st == AMQP_STATUS_OK && a->n_held && u <= a->ack_high && in_window(a, u);
         u++) {
        if (*slot(a, u) == ACK_HELD &&
            (st = amqp_basic_ack(a->conn, KD_AMQP_CHANNEL, u, 0)) == AMQP_STATUS_OK) {
            *slot(a, u) = ACK_SENT;
            a->n_held--;
        }
    }
    if (st != AMQP_STATUS_OK) {
        *lost = a->n_held; /* held and not sent: the broker delivers them again */
        a->n_held = 0;
        return kd_amqp_lib_fail(a, st, "acking deliveries", err);
    }
    /* nothing out, yet the run stopped short of the newest tag (tags past the window were
     * acked at once, unrecorded): start the ring again from the newest tag. Usually the run
     * reached it, and its slots are reset already: no 4 KiB clear per turn. */
    if (!a->ack_unsettled && a->ack_base < a->ack_high) {
        a->ack_base = a->ack_high;
        memset(a->ack_st, ACK_OUT, sizeof a->ack_st);
    }
    return 0;
}
