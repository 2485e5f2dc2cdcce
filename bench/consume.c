/* kd-bench-consume: the RabbitMQ baseline of scripts/bench.
 *
 *   kd-bench-consume --queue Q --count N --size BYTES [--prefetch P] [--timeout-s S]
 *
 * The raw consume-and-ack rate of a minimal consumer on a quorum queue declared exactly as
 * the worker declares its work queue: kd_amqp_connect with amqp.queue = Q runs the
 * worker's own topology code (quorum work queue, its retry tiers and parking lot). It
 * publishes N persistent messages of BYTES bytes with publisher confirms (not timed), then,
 * on a fresh connection as a worker would open it, consumes them with manual acks and
 * prefetch P (default: worker.inflight, the worker's prefetch) and acks each one
 * as it arrives, one basic.ack per message as the worker does. Timed from the first
 * delivery to the last ack. Nothing else happens per message: no decoding, no KONE, no
 * Kafka, so this is the ceiling the broker puts on any worker (docs/benchmark-baselines.md).
 *
 * Q is bound to the work exchange with routing key Q, so the benchmark's messages never
 * reach the real work queue. Q and everything declared for it (tier queues, parking lot,
 * their exchanges) are deleted before the run (a crashed earlier run may have left
 * messages) and after it, also when it failed.
 */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kd_amqp.h"
#include "kd_time.h"

#define PUBLISH_WINDOW 1000 /* unconfirmed publishes at once: keeps the broker busy, bounded */
#define CLEANUP_TIMEOUT_MS 10000

/* ---- cleanup on a plain rabbitmq-c connection (kd_amqp only declares) ---- */

static bool amqp_ok(amqp_connection_state_t c, const char *what, char *why, size_t len)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return true;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
        snprintf(why, len, "%s: %s", what, amqp_error_string2(r.library_error));
    else
        snprintf(why, len, "%s: refused by the broker", what);
    return false;
}

/* Deletes Q, its tier queues and parking lot, and the retry and dead-letter exchanges made
 * for it (not the work exchange: the worker's too). Deleting what does not exist is fine in
 * AMQP 0-9-1; a failure here is reported, not fatal. */
static int cleanup(const kd_bench *b, const kd_amqp_topology *t, char *why, size_t len)
{
    const kd_config *cfg = &b->cfg;
    char host[256];
    snprintf(host, sizeof host, "%s", kd_cfg_str(cfg, KD_CFG_AMQP_HOST));
    host[strcspn(host, ", ")] = '\0'; /* a cluster list: its first node will do */
    int port = (int)kd_cfg_int(cfg, KD_CFG_AMQP_PORT);
    char *colon = strrchr(host, ':');
    if (colon && !strchr(colon, ']')) {
        *colon = '\0';
        port = atoi(colon + 1);
    }
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = c ? amqp_tcp_socket_new(c) : NULL;
    struct timeval tv = {CLEANUP_TIMEOUT_MS / 1000, 0};
    if (!s) {
        snprintf(why, len, "out of memory");
        if (c)
            amqp_destroy_connection(c);
        return -1;
    }
    amqp_set_rpc_timeout(c, &tv);
    if (amqp_socket_open_noblock(s, host, port, &tv) != AMQP_STATUS_OK) {
        snprintf(why, len, "cannot connect to %s:%d", host, port);
        amqp_destroy_connection(c);
        return -1;
    }
    amqp_rpc_reply_t r =
        amqp_login(c, kd_cfg_str(cfg, KD_CFG_AMQP_VHOST), 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
                   kd_cfg_str(cfg, KD_CFG_AMQP_USER), kd_cfg_str(cfg, KD_CFG_AMQP_PASSWORD));
    int rc = 0;
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        snprintf(why, len, "login as '%s' refused", kd_cfg_str(cfg, KD_CFG_AMQP_USER));
        rc = -1;
    }
    if (!rc) {
        amqp_channel_open(c, 1);
        rc = amqp_ok(c, "opening a channel", why, len) ? 0 : -1;
    }
    char name[300];
    for (int i = -2; i < t->n_tiers && !rc; i++) {
        const char *q = i == -2 ? t->queue : i == -1 ? t->dead_queue : name;
        if (i >= 0)
            kd_amqp_tier_queue(t, i, name, sizeof name);
        amqp_queue_delete(c, 1, amqp_cstring_bytes(q), 0, 0);
        char what[400];
        snprintf(what, sizeof what, "deleting queue '%s'", q);
        rc = amqp_ok(c, what, why, len) ? 0 : -1;
    }
    const char *exchanges[] = {t->retry_exchange, t->dead_exchange};
    for (int i = 0; i < 2 && !rc; i++) {
        if (!strcmp(exchanges[i], t->exchange))
            continue;
        amqp_exchange_delete(c, 1, amqp_cstring_bytes(exchanges[i]), 0);
        char what[400];
        snprintf(what, sizeof what, "deleting exchange '%s'", exchanges[i]);
        rc = amqp_ok(c, what, why, len) ? 0 : -1;
    }
    if (!rc) {
        amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
        amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(c);
    return rc;
}

/* ---- publishing (not timed) ---- */

/* Which delivery tags (1..n) the broker confirmed. Acks may be single or "multiple" (every
 * tag up to this one) and need not come in order, so a bitmap counts each tag once. */
typedef struct confirms {
    unsigned char *bits;
    uint64_t low; /* every tag <= low is confirmed */
    uint64_t n;
} confirms;

static bool mark(confirms *c, uint64_t tag)
{
    if (tag == 0 || tag > c->n || (c->bits[tag / 8] & (1u << (tag % 8))))
        return false;
    c->bits[tag / 8] |= (unsigned char)(1u << (tag % 8));
    return true;
}

/* Records an ack; returns how many tags it newly confirmed. */
static uint64_t confirm(confirms *c, uint64_t tag, bool multiple)
{
    uint64_t added = 0;
    if (multiple)
        for (uint64_t t = c->low + 1; t <= tag && t <= c->n; t++)
            added += mark(c, t);
    else
        added += mark(c, tag);
    while (c->low < c->n && (c->bits[(c->low + 1) / 8] & (1u << ((c->low + 1) % 8))))
        c->low++;
    return added;
}

static int publish_all(kd_bench *b, uint64_t n, const unsigned char *body, size_t size)
{
    kd_err err = {0};
    kd_amqp *a = NULL;
    if (kd_amqp_connect(&a, &b->cfg, &err))
        return kd_bench_fail(b, "%s", err.msg);
    confirms cs = {calloc(n / 8 + 1, 1), 0, n};
    if (!cs.bits) {
        kd_amqp_close(a);
        return kd_bench_fail(b, "out of memory");
    }
    uint64_t sent = 0, confirmed = 0, next_note = 0;
    int rc = 0;
    while (confirmed < n && !rc) {
        while (sent < n && sent - confirmed < PUBLISH_WINDOW) {
            uint64_t tag;
            if (kd_amqp_publish(a, NULL, body, size, &tag, &err)) {
                rc = kd_bench_fail(b, "publishing: %s", err.msg);
                break;
            }
            sent++;
        }
        if (rc)
            break;
        if ((rc = kd_bench_timed_out(b, "publishing", confirmed, n, "confirmed")))
            break;
        kd_amqp_event ev;
        int got = kd_amqp_next_event(a, kd_bench_wait_ms(b, 1000), &ev, &err);
        if (got < 0) {
            rc = kd_bench_fail(b, "waiting for publisher confirms: %s", err.msg);
        } else if (got == 1 && ev.kind == KD_AMQP_EV_RETURN) {
            rc = kd_bench_fail(b, "a message came back unroutable (%d %s)", ev.reply_code,
                               ev.reply_text);
        } else if (got == 1 && ev.kind == KD_AMQP_EV_NACK) {
            rc = kd_bench_fail(b, "the broker nacked message %llu (could not store it)",
                               (unsigned long long)ev.tag);
        } else if (got == 1 && ev.kind == KD_AMQP_EV_ACK) {
            confirmed += confirm(&cs, ev.tag, ev.multiple);
        }
        if (confirmed >= next_note) {
            kd_bench_note(b, "published %llu of %llu (confirmed)", (unsigned long long)confirmed,
                          (unsigned long long)n);
            next_note = confirmed + (n / 4 > 0 ? n / 4 : 1);
        }
    }
    free(cs.bits);
    kd_amqp_close(a);
    return rc;
}

/* ---- consuming (timed) ---- */

static int consume_all(kd_bench *b, uint64_t n, int prefetch, int64_t *t0, int64_t *t1)
{
    kd_err err = {0};
    kd_amqp *a = NULL;
    if (kd_amqp_connect(&a, &b->cfg, &err))
        return kd_bench_fail(b, "%s", err.msg);
    int rc = 0;
    if (kd_amqp_consume_start(a, prefetch, &err))
        rc = kd_bench_fail(b, "%s", err.msg);
    uint64_t acked = 0;
    while (!rc && acked < n) {
        if ((rc = kd_bench_timed_out(b, "consuming", acked, n, "acked")))
            break;
        kd_delivery d;
        int got = kd_amqp_consume_next(a, kd_bench_wait_ms(b, 1000), &d, &err);
        if (got < 0) {
            rc = kd_bench_fail(b, "consuming: %s", err.msg);
            break;
        }
        if (got == 0)
            continue;
        if (acked == 0)
            *t0 = kd_mono_us();
        if (kd_amqp_ack(a, d.delivery_tag, d.epoch, &err)) {
            rc = kd_bench_fail(b, "acking: %s", err.msg);
            break;
        }
        if (++acked == n)
            *t1 = kd_mono_us();
    }
    kd_amqp_close(a);
    return rc;
}

int main(int argc, char **argv)
{
    kd_bench_str strs[] = {
        {"queue", true, NULL, "quorum queue to create, fill, drain and delete"},
    };
    kd_bench_opt opts[] = {
        {"count", true, 1, 100000000, 0, false, "messages to publish, then consume and ack"},
        {"size", true, 0, 16 * 1024 * 1024, 0, false, "bytes per message"},
        {"prefetch", false, 1, 65535, 0, false,
         "AMQP prefetch while consuming (default: worker.inflight)"},
    };
    kd_bench b;
    /* without --prefetch: worker.inflight as the worker would read it (its default unless
     * KD_WORKER_INFLIGHT says otherwise), the worker's own prefetch */
    kd_bench_init(&b, "consume", "--queue Q --count N --size BYTES [--prefetch P]", argc, argv,
                  opts, 3, strs, 1);
    uint64_t n = (uint64_t)opts[0].value;
    size_t size = (size_t)opts[1].value;
    int64_t prefetch = opts[2].value;
    kd_err err = {0};
    kd_amqp_topology work, topo;
    /* Q is deleted before and after the run: never the worker's queues and their messages */
    if (!kd_amqp_topology_load(&work, &b.cfg, &err) &&
        (!strcmp(strs[0].value, work.queue) || !strcmp(strs[0].value, work.dead_queue))) {
        fprintf(stderr,
                "%s: --queue %s is the worker's queue (amqp.queue / amqp.dead_queue); "
                "the benchmark deletes its queue: give it a name of its own\n",
                b.prog, strs[0].value);
        kd_bench_free(&b);
        return 2;
    }
    err = (kd_err){0};
    if (!opts[2].set)
        prefetch = kd_cfg_int(&b.cfg, KD_CFG_WORKER_INFLIGHT);
    if (kd_config_set(&b.cfg, KD_CFG_AMQP_QUEUE, strs[0].value, &err) ||
        kd_config_set(&b.cfg, KD_CFG_AMQP_ROUTING_KEY, strs[0].value, &err) ||
        kd_amqp_topology_load(&topo, &b.cfg, &err)) {
        fprintf(stderr, "%s: %s\n", b.prog, err.msg[0] ? err.msg : "out of memory");
        kd_bench_free(&b);
        return 2;
    }
    unsigned char *body = kd_bench_payload(size);
    if (!body) {
        kd_bench_fail(&b, "out of memory");
        kd_bench_free(&b);
        return 1;
    }

    char why[512];
    if (cleanup(&b, &topo, why, sizeof why))
        kd_bench_note(&b, "warning: removing what an earlier run left: %s", why);
    kd_bench_note(&b, "queue '%s': publishing %llu messages of %zu bytes (not timed)", topo.queue,
                  (unsigned long long)n, size);
    int rc = publish_all(&b, n, body, size);
    int64_t t0 = 0, t1 = 0;
    if (!rc) {
        kd_bench_note(&b, "consuming %llu with prefetch %lld, one ack each (timed)",
                      (unsigned long long)n, (long long)prefetch);
        rc = consume_all(&b, n, (int)prefetch, &t0, &t1);
    }
    if (cleanup(&b, &topo, why, sizeof why))
        kd_bench_note(&b, "warning: could not delete queue '%s' and its tiers: %s", topo.queue,
                      why);
    if (!rc)
        kd_bench_report(&b, n, t0, t1);
    free(body);
    kd_bench_free(&b);
    return rc;
}
