/* retry_pub.c: see retry_pub.h. Main thread only.
 *
 * Confirms may cover many tags at once (multiple = true) and, on one channel, arrive in
 * publish order; a basic.return (unroutable: a tier queue or the parking lot was deleted
 * under us) precedes the ack of the same message and carries no tag, so it is matched to
 * the oldest unconfirmed entry with its message_id and turns that ack into a failure.
 */
#include "retry_pub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_log.h"
#include "kd_str.h"

int kd_rpub_init(kd_rpub *t, int cap, kd_rpub_done_fn done, void *arg)
{
    memset(t, 0, sizeof *t);
    t->e = calloc((size_t)cap, sizeof *t->e);
    if (!t->e)
        return KD_ERR_NOMEM;
    t->cap = cap;
    t->done = done;
    t->arg = arg;
    return 0;
}

void kd_rpub_free(kd_rpub *t)
{
    free(t->e);
    t->e = NULL;
    t->n = t->cap = 0;
}

int kd_rpub_pending(const kd_rpub *t)
{
    return t->n;
}

void kd_rpub_error_text(const kd_run *run, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s%s", run->error_code, run->error_message[0] ? ": " : "",
             run->error_message);
}

static int publish(kd_rpub *t, kd_amqp *a, wk_run *r, const kd_amqp_out *m, kd_err *err)
{
    if (t->n == t->cap)
        return kd_err_set(err, KD_ERR_INTERNAL, "more unconfirmed publishes than runs (%d)",
                          t->cap);
    uint64_t tag;
    int rc = kd_amqp_side_publish(a, m, &tag, err);
    if (rc)
        return rc;
    kd_rpub_entry *e = &t->e[t->n++];
    memset(e, 0, sizeof *e);
    e->tag = tag;
    e->run = r;
    kd_str_copy(e->message_id, sizeof e->message_id, m->message_id ? m->message_id : "");
    r->waits |= WK_WAIT_AMQP;
    return 0;
}

static int encode_job(const wk_run *r, msgpack_sbuffer *sb, kd_err *err)
{
    msgpack_sbuffer_init(sb);
    int rc = kd_job_encode(&r->run.job, sb, err);
    if (rc)
        /* GCOVR_EXCL_START: encoding a decoded job fails only when allocation fails */
        msgpack_sbuffer_destroy(sb);
    /* GCOVR_EXCL_STOP */
    return rc;
}

int kd_rpub_retry(kd_rpub *t, kd_amqp *a, wk_run *r, const kd_retry_decision *d, kd_err *err)
{
    const kd_amqp_topology *topo = kd_amqp_names(a);
    msgpack_sbuffer sb;
    int rc = encode_job(r, &sb, err);
    if (rc)
        return rc;
    kd_amqp_headers h = {.attempt = d->next_attempt,
                         .requeues = d->next_requeues,
                         .first_seen_ms = r->first_seen_ms};
    kd_rpub_error_text(&r->run, h.last_error, sizeof h.last_error);
    char tier[300];
    kd_amqp_tier_queue(topo, d->tier, tier, sizeof tier);
    kd_amqp_out m = {.exchange = topo->retry_exchange,
                     .routing_key = tier,
                     .message_id = r->run.job.job_id,
                     .body = sb.data,
                     .len = sb.size,
                     .headers = &h};
    rc = publish(t, a, r, &m, err);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

int kd_rpub_dead(kd_rpub *t, kd_amqp *a, wk_run *r, const char *reason, const char *error,
                 const void *body, size_t len, const char *message_id, kd_err *err)
{
    const kd_amqp_topology *topo = kd_amqp_names(a);
    msgpack_sbuffer sb;
    bool encoded = false;
    if (!body) {
        int rc = encode_job(r, &sb, err);
        if (rc)
            return rc;
        body = sb.data;
        len = sb.size;
        encoded = true;
    }
    kd_amqp_headers h = {
        .attempt = r->run.attempt, .requeues = r->run.requeues, .first_seen_ms = r->first_seen_ms};
    kd_str_copy(h.reason, sizeof h.reason, reason);
    kd_str_copy(h.error, sizeof h.error, error);
    kd_str_copy(h.last_error, sizeof h.last_error, error);
    kd_amqp_out m = {.exchange = topo->dead_exchange,
                     .routing_key = topo->dead_queue,
                     .message_id = message_id,
                     .body = body,
                     .len = len,
                     .headers = &h};
    int rc = publish(t, a, r, &m, err);
    if (encoded)
        msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* Removes entry i and reports its run. */
static void finish_entry(kd_rpub *t, int i, bool ok)
{
    wk_run *r = t->e[i].run;
    if (t->e[i].returned)
        ok = false;
    memmove(&t->e[i], &t->e[i + 1], (size_t)(t->n - i - 1) * sizeof *t->e);
    t->n--;
    t->done(r, ok, t->arg);
}

void kd_rpub_event(kd_rpub *t, const kd_amqp_event *ev)
{
    if (ev->kind == KD_AMQP_EV_RETURN) {
        for (int i = 0; i < t->n; i++)
            if (!t->e[i].returned && strcmp(t->e[i].message_id, ev->message_id) == 0) {
                t->e[i].returned = true;
                kd_warn("amqp: a retry/dead-letter copy of '%s' was returned unroutable "
                        "(%d %s); the job is handed back",
                        ev->message_id, ev->reply_code, ev->reply_text);
                return;
            }
        return;
    }
    bool ok = ev->kind == KD_AMQP_EV_ACK;
    if (!ok)
        kd_warn("amqp: the broker nacked a retry/dead-letter copy (tag %llu%s); the job is "
                "handed back",
                (unsigned long long)ev->tag, ev->multiple ? " and earlier" : "");
    if (ev->multiple) {
        while (t->n > 0 && t->e[0].tag <= ev->tag)
            finish_entry(t, 0, ok);
        return;
    }
    for (int i = 0; i < t->n; i++)
        if (t->e[i].tag == ev->tag) {
            finish_entry(t, i, ok);
            return;
        }
}

void kd_rpub_fail_all(kd_rpub *t)
{
    while (t->n > 0)
        finish_entry(t, 0, false);
}
