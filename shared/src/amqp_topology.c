/* amqp_topology.c: the names and the declaration of everything kd_amqp uses (see kd_amqp.h):
 * the parking lot (dead exchange and queue), the work exchange and queue, the retry exchange
 * and its tier queues. Declared on every connect, idempotently.
 *
 * Why the arguments are spelled out: RabbitMQ's defaults changed under us. 4.x gives every
 * quorum queue a delivery limit of 20 and *drops* a message returned more often unless the
 * queue has a dead-letter exchange, where 3.x had no limit. So the work queue declares its
 * limit (amqp.delivery_limit) and dead-letters to the parking lot, at-least-once (which
 * needs x-overflow reject-publish); the parking lot declares a limit so high it is never met
 * (a parked job must not vanish after 20 replay-dead dry runs). The tiers are unchanged:
 * nobody consumes them, so no delivery is ever returned to them, and what expires in them
 * is dead-lettered back to the work exchange already.
 *
 * Why a queue from an older version is accepted: queue arguments cannot change on an
 * existing queue; a declare with other arguments fails with 406 PRECONDITION_FAILED and the
 * broker closes the channel. The arguments added in a later version ("added" below) are
 * therefore optional: when the broker refuses one ("inequivalent arg 'x-...'"), the channel
 * is reopened and the queue declared again without it. The broker checks every argument,
 * also the ones left out, so what succeeds proves the queue has exactly the arguments still
 * declared and none of the ones left out; a queue that has an added argument with another
 * value still fails, as does any difference in the original ones. The queue is then used as
 * it is, with one warning per queue and connect naming what is missing and the RabbitMQ
 * policy that supplies it (RUNBOOK.md, "Queue arguments missing").
 */
#include "amqp_int.h"

#include <stdio.h>
#include <string.h>

#include "kd_log.h"
#include "kd_str.h"

#define QARGS_MAX 8

/* One quorum queue: `base` arguments have been declared since the first version and must
 * match; `added` ones came later and an existing queue may lack them. */
typedef struct qspec {
    const char *name;
    amqp_table_entry_t base[QARGS_MAX];
    int n_base;
    amqp_table_entry_t added[QARGS_MAX];
    int n_added;
    const char *exchange, *binding;
    const char *without; /* what goes wrong while added arguments are missing */
} qspec;

/* ---- pure helpers (unit-tested in test_amqp_retry) ----------------------------------- */

bool kd_amqp_inequivalent_arg(const char *reply_text, char *key, size_t len)
{
    const char *p = strstr(reply_text, "inequivalent arg '");
    if (!p || len == 0)
        return false;
    p += strlen("inequivalent arg '");
    const char *end = strchr(p, '\'');
    if (!end || end == p || (size_t)(end - p) >= len)
        return false;
    memcpy(key, p, (size_t)(end - p));
    key[end - p] = '\0';
    return true;
}

/* Appends s to buf[*o..len), JSON-escaped when json, regex-escaped when re. */
static void put(char *buf, size_t len, size_t *o, const char *s, size_t n, bool json, bool re)
{
    for (size_t i = 0; i < n && *o + 3 < len; i++) {
        char c = s[i];
        if ((json && (c == '"' || c == '\\')) || (re && strchr(".^$*+?()[]{}|\\", c)))
            buf[(*o)++] = '\\';
        buf[(*o)++] = c;
    }
    buf[*o] = '\0';
}

static void puts_(char *buf, size_t len, size_t *o, const char *s)
{
    put(buf, len, o, s, strlen(s), false, false);
}

int kd_amqp_policy_command(const char *vhost, const char *queue, const amqp_table_entry_t *args,
                           int n, char *buf, size_t len)
{
    size_t o = 0;
    if (len == 0)
        return 0;
    buf[0] = '\0';
    puts_(buf, len, &o, "rabbitmqctl set_policy -p '");
    puts_(buf, len, &o, vhost);
    puts_(buf, len, &o, "' 'kone-dispatch ");
    puts_(buf, len, &o, queue);
    puts_(buf, len, &o, "' '^");
    put(buf, len, &o, queue, strlen(queue), false, true);
    puts_(buf, len, &o, "$' '{");
    for (int i = 0; i < n; i++) {
        /* the policy key is the argument's name without "x-" */
        const amqp_bytes_t k = args[i].key;
        size_t skip = k.len > 2 && !memcmp(k.bytes, "x-", 2) ? 2 : 0;
        puts_(buf, len, &o, i ? ",\"" : "\"");
        put(buf, len, &o, (const char *)k.bytes + skip, k.len - skip, true, false);
        puts_(buf, len, &o, "\":");
        const amqp_field_value_t *v = &args[i].value;
        if (v->kind == AMQP_FIELD_KIND_I64) {
            char num[32];
            snprintf(num, sizeof num, "%lld", (long long)v->value.i64);
            puts_(buf, len, &o, num);
        } else {
            puts_(buf, len, &o, "\"");
            put(buf, len, &o, v->value.bytes.bytes, v->value.bytes.len, true, false);
            puts_(buf, len, &o, "\"");
        }
    }
    puts_(buf, len, &o, "}' --apply-to queues --priority 10");
    return (int)o;
}

/* ---- declaring ------------------------------------------------------------------------ */

static int declare_exchange(kd_amqp *a, const char *name, kd_err *err)
{
    char what[400];
    amqp_exchange_declare(a->conn, KD_AMQP_CHANNEL, amqp_cstring_bytes(name),
                          amqp_cstring_bytes("direct"), 0, 1, 0, 0, amqp_empty_table);
    snprintf(what, sizeof what, "declaring exchange '%s'", name);
    return kd_amqp_check_reply(a, amqp_get_rpc_reply(a->conn), what, err);
}

static amqp_rpc_reply_t declare_once(kd_amqp *a, const qspec *q, const bool *left_out)
{
    amqp_table_entry_t e[1 + 2 * QARGS_MAX];
    int n = 0;
    e[n++] = kd_amqp_str_entry("x-queue-type", "quorum");
    for (int i = 0; i < q->n_base; i++)
        e[n++] = q->base[i];
    for (int i = 0; i < q->n_added; i++)
        if (!left_out[i])
            e[n++] = q->added[i];
    amqp_table_t args = {.num_entries = n, .entries = e};
    amqp_queue_declare(a->conn, KD_AMQP_CHANNEL, amqp_cstring_bytes(q->name), 0, 1, 0, 0, args);
    return amqp_get_rpc_reply(a->conn);
}

/* The reply is a 406 naming an added argument still declared: its index, else -1. */
static int refused_added(const qspec *q, const bool *left_out, amqp_rpc_reply_t r)
{
    if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION || r.reply.id != AMQP_CHANNEL_CLOSE_METHOD)
        return -1;
    const amqp_channel_close_t *c = r.reply.decoded;
    char text[300], key[64];
    kd_amqp_str(c->reply_text, text, sizeof text);
    if (c->reply_code != AMQP_PRECONDITION_FAILED ||
        !kd_amqp_inequivalent_arg(text, key, sizeof key))
        return -1;
    for (int i = 0; i < q->n_added; i++)
        if (!left_out[i] && q->added[i].key.len == strlen(key) &&
            !memcmp(q->added[i].key.bytes, key, strlen(key)))
            return i;
    return -1;
}

/* After the broker closed channel 1: confirm the close and open it again. */
static int reopen_channel(kd_amqp *a, kd_err *err)
{
    amqp_channel_close_ok_t ok = {0};
    int st = amqp_send_method(a->conn, KD_AMQP_CHANNEL, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    if (st != AMQP_STATUS_OK)
        return kd_amqp_lib_fail(a, st, "confirming the channel close", err);
    amqp_maybe_release_buffers_on_channel(a->conn, KD_AMQP_CHANNEL);
    amqp_channel_open(a->conn, KD_AMQP_CHANNEL);
    return kd_amqp_check_reply(a, amqp_get_rpc_reply(a->conn), "reopening channel 1", err);
}

static void warn_missing(kd_amqp *a, const qspec *q, const bool *left_out)
{
    amqp_table_entry_t missing[QARGS_MAX];
    char names[300] = "";
    int n = 0;
    for (int i = 0; i < q->n_added; i++) {
        if (!left_out[i])
            continue;
        missing[n++] = q->added[i];
        size_t o = strlen(names);
        snprintf(names + o, sizeof names - o, "%s%.*s", o ? ", " : "", (int)q->added[i].key.len,
                 (const char *)q->added[i].key.bytes);
    }
    size_t o = strlen(a->missing);
    snprintf(a->missing + o, sizeof a->missing - o, "%s%s (%s)", o ? "; " : "", q->name, names);
    a->n_missing++;
    char cmd[700];
    kd_amqp_policy_command(a->topo.vhost, q->name, missing, n, cmd, sizeof cmd);
    kd_warn("amqp %s: queue '%s' exists without %s (declared by an older version; queue "
            "arguments cannot change), so it is used as it is: %s. Fix: %s (RUNBOOK.md, "
            "\"Queue arguments missing\")",
            a->where, q->name, names, q->without, cmd);
}

/* Declares q, leaving out the added arguments an existing queue lacks, and binds it. */
static int declare_queue(kd_amqp *a, const qspec *q, kd_err *err)
{
    bool left_out[QARGS_MAX] = {false};
    int n_left = 0;
    amqp_rpc_reply_t r = declare_once(a, q, left_out);
    for (int i; (i = refused_added(q, left_out, r)) >= 0;) {
        left_out[i] = true;
        n_left++;
        int rc = reopen_channel(a, err);
        if (rc)
            return rc;
        r = declare_once(a, q, left_out);
    }
    char what[800];
    snprintf(what, sizeof what,
             "declaring quorum queue '%s' (it exists with other arguments than this version "
             "declares; see RUNBOOK.md, \"Queue arguments missing\")",
             q->name);
    int rc = kd_amqp_check_reply(a, r, what, err);
    if (rc)
        return rc;
    if (n_left)
        warn_missing(a, q, left_out);
    amqp_queue_bind(a->conn, KD_AMQP_CHANNEL, amqp_cstring_bytes(q->name),
                    amqp_cstring_bytes(q->exchange), amqp_cstring_bytes(q->binding),
                    amqp_empty_table);
    snprintf(what, sizeof what, "binding queue '%s' to exchange '%s' with key '%s'", q->name,
             q->exchange, q->binding);
    return kd_amqp_check_reply(a, amqp_get_rpc_reply(a->conn), what, err);
}

/* The parking lot first, so that the work queue's dead-letter target exists; then the work
 * exchange and queue; then the retry tiers, which dead-letter at-least-once (RabbitMQ 3.10+:
 * a message leaves a tier only once the work queue confirmed it, which needs x-overflow
 * reject-publish on the tier). */
int kd_amqp_declare_topology(kd_amqp *a, kd_err *err)
{
    const kd_amqp_topology *t = &a->topo;
    a->missing[0] = '\0';
    a->n_missing = 0;
    int rc = declare_exchange(a, t->dead_exchange, err);
    if (!rc) {
        qspec dead = {.name = t->dead_queue,
                      .exchange = t->dead_exchange,
                      .binding = t->dead_queue,
                      .n_added = 1,
                      .without = "on RabbitMQ 4.0-4.2 a parked job returned 20 times (each "
                                 "replay-dead run that keeps it, each management read) is "
                                 "dropped"};
        dead.added[0] = kd_amqp_i64_entry("x-delivery-limit", KD_AMQP_DEAD_DELIVERY_LIMIT);
        rc = declare_queue(a, &dead, err);
    }
    if (!rc)
        rc = declare_exchange(a, t->exchange, err);
    if (!rc) {
        char why[400];
        snprintf(why, sizeof why,
                 "on RabbitMQ 4.x a job returned 20 times (its workers died holding it) is "
                 "dropped instead of parked in '%s'",
                 t->dead_queue);
        qspec work = {.name = t->queue,
                      .exchange = t->exchange,
                      .binding = t->routing_key,
                      .n_added = 5,
                      .without = why};
        work.added[0] = kd_amqp_i64_entry("x-delivery-limit", t->delivery_limit);
        work.added[1] = kd_amqp_str_entry("x-dead-letter-exchange", t->dead_exchange);
        work.added[2] = kd_amqp_str_entry("x-dead-letter-routing-key", t->dead_queue);
        work.added[3] = kd_amqp_str_entry("x-dead-letter-strategy", "at-least-once");
        work.added[4] = kd_amqp_str_entry("x-overflow", "reject-publish");
        rc = declare_queue(a, &work, err);
    }
    if (!rc)
        rc = declare_exchange(a, t->retry_exchange, err);
    for (int i = 0; i < t->n_tiers && !rc; i++) {
        char name[300];
        kd_amqp_tier_queue(t, i, name, sizeof name);
        qspec tier = {.name = name,
                      .exchange = t->retry_exchange,
                      .binding = name,
                      .n_base = 5,
                      .without = ""};
        tier.base[0] = kd_amqp_i64_entry("x-message-ttl", t->tiers_ms[i]);
        tier.base[1] = kd_amqp_str_entry("x-dead-letter-exchange", t->exchange);
        tier.base[2] = kd_amqp_str_entry("x-dead-letter-routing-key", t->routing_key);
        tier.base[3] = kd_amqp_str_entry("x-dead-letter-strategy", "at-least-once");
        tier.base[4] = kd_amqp_str_entry("x-overflow", "reject-publish");
        rc = declare_queue(a, &tier, err);
    }
    return rc;
}

int kd_amqp_missing_args(const kd_amqp *a, char *buf, size_t len)
{
    if (buf && len)
        kd_str_copy(buf, len, a->missing);
    return a->n_missing;
}

/* ---- names ---------------------------------------------------------------------------- */

static int name_key(const kd_config *cfg, kd_config_id id, const char *suffix, const char *queue,
                    char *out, bool required, kd_err *err)
{
    const char *key = kd_cfg_name(id), *v = kd_cfg_str(cfg, id);
    if (strlen(v) > 255 || (required && !*v))
        return kd_err_set(err, KD_ERR_INVALID, "%s: must be 1..255 characters, got '%s'", key, v);
    if (*v || !suffix) {
        kd_str_copy(out, 256, v);
        return 0;
    }
    if (strlen(queue) + strlen(suffix) > 255)
        return kd_err_set(err, KD_ERR_INVALID,
                          "%s: the default '%s%s' is longer than 255 characters; set it", key,
                          queue, suffix);
    snprintf(out, 256, "%s%s", queue, suffix);
    return 0;
}

int kd_amqp_topology_load(kd_amqp_topology *t, const kd_config *cfg, kd_err *err)
{
    memset(t, 0, sizeof *t);
    int rc = name_key(cfg, KD_CFG_AMQP_EXCHANGE, NULL, NULL, t->exchange, true, err);
    if (!rc)
        rc = name_key(cfg, KD_CFG_AMQP_QUEUE, NULL, NULL, t->queue, true, err);
    if (!rc)
        rc = name_key(cfg, KD_CFG_AMQP_ROUTING_KEY, NULL, NULL, t->routing_key, false, err);
    if (!rc)
        rc = name_key(cfg, KD_CFG_AMQP_RETRY_EXCHANGE, ".retry", t->queue, t->retry_exchange, false,
                      err);
    if (!rc)
        rc = name_key(cfg, KD_CFG_AMQP_DEAD_EXCHANGE, ".dead", t->queue, t->dead_exchange, false,
                      err);
    if (!rc)
        rc = name_key(cfg, KD_CFG_AMQP_DEAD_QUEUE, ".dead", t->queue, t->dead_queue, false, err);
    if (!rc)
        rc = name_key(cfg, KD_CFG_AMQP_VHOST, NULL, NULL, t->vhost, false, err);
    t->delivery_limit = kd_cfg_int(cfg, KD_CFG_AMQP_DELIVERY_LIMIT);
    if (!rc)
        rc = kd_retry_parse_tiers(kd_cfg_str(cfg, KD_CFG_RETRY_TIERS_MS), t->tiers_ms, &t->n_tiers,
                                  err);
    if (!rc && strlen(t->queue) + 32 > 255)
        rc = kd_err_set(err, KD_ERR_INVALID,
                        "amqp.queue: at most 223 characters (tier queues append '.retry.<ms>')");
    return rc;
}

void kd_amqp_tier_queue(const kd_amqp_topology *t, int tier, char *buf, size_t len)
{
    snprintf(buf, len, "%s.retry.%lld", t->queue, (long long)t->tiers_ms[tier]);
}

const kd_amqp_topology *kd_amqp_names(const kd_amqp *a)
{
    return &a->topo;
}
