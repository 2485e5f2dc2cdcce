/* consumer.c: a librdkafka consumer reading every partition of one topic.
 *
 * kone-events is a reader for people and scripts. Without a named group it joins a fresh
 * random group that never commits, so each run reads independently and leaves no offsets
 * behind that could hide events from the next run. With a named group it auto-commits,
 * like any consumer, so a reader can resume.
 *
 * The time of the first assignment is kept because the idle timeout counts from it: a
 * group join takes seconds (the broker's initial rebalance delay), and that wait must
 * not count as "no new events".
 */
#include "consumer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "kd_kafka.h"
#include "kd_log.h"
#include "kd_time.h"

struct kev_consumer {
    rd_kafka_t *rk;
    int64_t assigned_at;
};

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    kev_consumer *c = opaque;
    bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *ce = NULL;
    rd_kafka_resp_err_t ee = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        kd_debug("kafka: assigned %d partitions", parts->cnt);
        /* GCOVR_EXCL_START: no cooperative assignor is ever configured */
        if (coop)
            ce = rd_kafka_incremental_assign(rk, parts);
        /* GCOVR_EXCL_STOP */
        else
            ee = rd_kafka_assign(rk, parts);
        if (c->assigned_at == 0)
            c->assigned_at = kd_mono_us();
    } else {
        /* GCOVR_EXCL_START: no cooperative assignor is ever configured */
        if (coop)
            ce = rd_kafka_incremental_unassign(rk, parts);
        /* GCOVR_EXCL_STOP */
        else
            ee = rd_kafka_assign(rk, NULL);
    }
    /* GCOVR_EXCL_START: eager (un)assign fails only after a fatal error (no static membership) */
    if (ce) {
        kd_warn("kafka: rebalance: %s", rd_kafka_error_string(ce));
        rd_kafka_error_destroy(ce);
    } else if (ee) {
        kd_warn("kafka: rebalance: %s", rd_kafka_err2str(ee));
    }
    /* GCOVR_EXCL_STOP */
}

static void on_error(rd_kafka_t *rk, int code, const char *reason, void *opaque)
{
    (void)rk;
    (void)opaque;
    kd_warn("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)code), reason);
}

static void random_group(char *buf, size_t len)
{
    unsigned char r[8] = {0};
    /* GCOVR_EXCL_START: getrandom does not fail for 8 bytes once the kernel's pool is ready */
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        int64_t t = kd_now_us();
        memcpy(r, &t, sizeof r);
    }
    /* GCOVR_EXCL_STOP */
    snprintf(buf, len, "kone-events-%d-%02x%02x%02x%02x%02x%02x%02x%02x", (int)getpid(), r[0], r[1],
             r[2], r[3], r[4], r[5], r[6], r[7]);
}

static int build_conf(rd_kafka_conf_t *conf, const kev_options *o, kd_err *err)
{
    char group[64];
    bool named = o->group && o->group[0];
    if (!named)
        random_group(group, sizeof group);
    const char *props[][2] = {
        {"bootstrap.servers", o->brokers},
        {"client.id", "kone-events"},
        {"group.id", named ? o->group : group},
        {"enable.auto.commit", named ? "true" : "false"},
        {"auto.offset.reset", o->from_beginning ? "earliest" : "latest"},
        /* as the producer's (shared/src/kafka.c): no request waits for the broker's ACK */
        {"socket.nagle.disable", "true"},
    };
    for (size_t i = 0; i < sizeof props / sizeof props[0]; i++) {
        int rc = kd_kafka_conf_set(conf, props[i][0], props[i][1], err);
        /* GCOVR_EXCL_START: librdkafka accepts any string for these properties */
        if (rc)
            return rc;
        /* GCOVR_EXCL_STOP */
    }
    return o->cfg ? kd_kafka_conf_security(conf, o->cfg, err) : 0;
}

static int subscribe(kev_consumer *c, const char *topic, kd_err *err)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    /* GCOVR_EXCL_START: allocation failure */
    if (!l)
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    /* GCOVR_EXCL_STOP */
    rd_kafka_topic_partition_list_add(l, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e)
        return kd_err_set(err, KD_ERR_IO, "kafka: cannot subscribe to %s: %s", topic,
                          rd_kafka_err2str(e));
    return 0;
}

int kev_consumer_new(kev_consumer **out, const kev_options *o, kd_err *err)
{
    *out = NULL;
    if (!o->brokers || !o->brokers[0])
        return kd_err_set(err, KD_ERR_INVALID, "kafka.brokers: must not be empty");
    if (!o->topic || !o->topic[0])
        return kd_err_set(err, KD_ERR_INVALID, "events.topic: must not be empty");
    rd_kafka_conf_t *conf;
    kev_consumer *c = kd_kafka_owner_new(sizeof *c, &conf, err);
    if (!c)
        return KD_ERR_NOMEM; /* GCOVR_EXCL_LINE: allocation failure */
    int rc = build_conf(conf, o, err);
    if (rc) {
        rd_kafka_conf_destroy(conf);
        free(c);
        return rc;
    }
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    c->rk = kd_kafka_client_new(RD_KAFKA_CONSUMER, conf, c, on_error, "consumer", err);
    /* GCOVR_EXCL_START: rd_kafka_new checks the TLS files, which kd_kafka_conf_security checked */
    if (!c->rk) {
        free(c);
        return err ? err->code : KD_ERR_INVALID;
    }
    /* GCOVR_EXCL_STOP */
    rd_kafka_poll_set_consumer(c->rk); /* callbacks are served by consumer_poll */
    if ((rc = subscribe(c, o->topic, err))) {
        rd_kafka_destroy(c->rk);
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

rd_kafka_message_t *kev_consumer_poll(kev_consumer *c, int timeout_ms)
{
    return rd_kafka_consumer_poll(c->rk, timeout_ms);
}

int64_t kev_consumer_assigned_at(const kev_consumer *c)
{
    return c->assigned_at;
}

void kev_consumer_close(kev_consumer *c)
{
    if (!c)
        return;
    rd_kafka_resp_err_t e = rd_kafka_consumer_close(c->rk);
    /* GCOVR_EXCL_START: a close fails only after a fatal error (no static membership) */
    if (e)
        kd_warn("kafka: closing the consumer: %s", rd_kafka_err2str(e));
    /* GCOVR_EXCL_STOP */
    rd_kafka_destroy(c->rk);
    free(c);
}
