/**
 * @file kd_amqp.h
 * @brief kd_amqp: RabbitMQ plumbing shared by the producer and the worker (rabbitmq-c).
 *
 * A kd_amqp is one connection, owned by one thread (rabbitmq-c does no background work:
 * heartbeats are only handled inside its calls, so the owner must call in at least every
 * heartbeat/2 seconds). Channel 1 publishes (producer) or consumes (worker); channel 2,
 * the "side" channel, is opened on first use in confirm mode for the worker's own
 * publishes (retry and dead-letter copies) and for kone-producer replay-dead. Confirms of
 * channel 2 arrive on the same socket as channel 1's deliveries: while consuming they are
 * queued inside the kd_amqp and handed out by kd_amqp_side_event, so the consumer never
 * blocks waiting for one.
 *
 * Topology, declared idempotently on every connect (kd_amqp_topology):
 *   exchange amqp.dead_exchange (direct) → quorum queue amqp.dead_queue (the parking lot,
 *     x-delivery-limit 1000000: never dropped);
 *   exchange amqp.exchange (direct) → quorum queue amqp.queue (routing key amqp.routing_key),
 *     x-delivery-limit = amqp.delivery_limit, dead-lettered (at-least-once, x-overflow
 *     reject-publish) to amqp.dead_exchange with routing key amqp.dead_queue;
 *   exchange amqp.retry_exchange (direct) → one quorum queue per retry tier,
 *     {queue}.retry.{ms}, x-message-ttl = ms, dead-lettered (at-least-once,
 *     x-overflow reject-publish) back to amqp.exchange with amqp.routing_key.
 * A queue made by an older version without the arguments added since (the delivery limits
 * and the work queue's dead-lettering) is used as it is, with a warning per connect naming
 * the RabbitMQ policy that supplies them (kd_amqp_missing_args; RUNBOOK.md).
 * Passwords are never put in error messages.
 */
#ifndef KD_AMQP_H
#define KD_AMQP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kd_config.h"
#include "kd_err.h"
#include "kd_retry.h"

/** One RabbitMQ connection and its channels; owned by one thread (opaque). */
typedef struct kd_amqp kd_amqp;

/** Names of everything kd_amqp_connect declares. The retry and dead names default to
 * {amqp.queue}.retry and {amqp.queue}.dead, so a private work queue (an integration test's)
 * gets private tiers and a private parking lot. */
typedef struct kd_amqp_topology {
    char exchange[256];       /**< amqp.exchange: jobs are published here */
    char queue[256];          /**< amqp.queue: the work queue */
    char routing_key[256];    /**< amqp.routing_key */
    char retry_exchange[256]; /**< amqp.retry_exchange, default {queue}.retry */
    char dead_exchange[256];  /**< amqp.dead_exchange, default {queue}.dead */
    char dead_queue[256];     /**< amqp.dead_queue, default {queue}.dead */
    char vhost[256];          /**< amqp.vhost (named in the policy a warning suggests) */
    int64_t delivery_limit;   /**< amqp.delivery_limit: the work queue's x-delivery-limit */
    int n_tiers;              /**< how many retry tiers */
    int64_t tiers_ms[KD_RETRY_MAX_TIERS]; /**< each tier's delay (x-message-ttl), ascending */
} kd_amqp_topology;

/** The highest amqp.delivery_limit accepted (also the parking lot's own x-delivery-limit). */
#define KD_AMQP_DELIVERY_LIMIT_MAX 1000000

/** Reads the amqp.* names, amqp.delivery_limit and retry.tiers_ms (no I/O). */
int kd_amqp_topology_load(kd_amqp_topology *t, const kd_config *cfg, kd_err *err);
/** "{queue}.retry.{ms}": the tier queue, also its routing key on the retry exchange. */
void kd_amqp_tier_queue(const kd_amqp_topology *t, int tier, char *buf, size_t len);

/** The project's own message headers (docs/failure-handling.md). Absent: 0 / "". */
typedef struct kd_amqp_headers {
    int attempt;           /**< x-kd-attempt: the attempt this delivery is (absent: 1) */
    int requeues;          /**< x-kd-requeues: trips through a retry tier so far (retries
                            * and parked jobs of an open circuit; absent: 0) */
    int64_t first_seen_ms; /**< x-kd-first-seen: when a worker first took the job */
    char last_error[256];  /**< x-kd-last-error: "<code>: <message>" of the last attempt */
    char reason[32];       /**< x-kd-reason (dead letters): "failed", "undecodable" */
    char error[256];       /**< x-kd-error (dead letters): what went wrong */
    int64_t replayed_ms;   /**< x-kd-replayed: when replay-dead moved it back (0: never); the
                            * call ledger lets such a job call again after a `failed` */
} kd_amqp_headers;

/** One message taken from a queue (consumed or pulled). */
typedef struct kd_delivery {
    const void *body;         /**< valid until the next kd_amqp_consume_next() */
    size_t len;               /**< its length in bytes */
    uint64_t delivery_tag;    /**< the broker's tag, for kd_amqp_ack() */
    uint64_t epoch;           /**< channel incarnation; acks with a stale epoch are dropped */
    bool redelivered;         /**< the broker delivered it before */
    int64_t delivery_count;   /**< quorum queue x-delivery-count header, 0 if absent */
    const char *content_type; /**< "" if absent */
    const char *message_id;   /**< "" if absent */
    kd_amqp_headers kd;       /**< x-kd-* headers */
} kd_delivery;

/** Connects (amqp.host, port, vhost, user, password, heartbeat_s) and declares the topology. */
int kd_amqp_connect(kd_amqp **out, const kd_config *cfg, kd_err *err);
/** Queues this connect found without arguments added since they were made: 0 when none, else
 * how many, with "queue (arg, arg); queue (arg)" in buf (may be NULL). Each was logged as a
 * warning naming the `rabbitmqctl set_policy` command that supplies them. */
int kd_amqp_missing_args(const kd_amqp *a, char *buf, size_t len);
/** Closes the connection (NULL is a no-op) and frees it. */
void kd_amqp_close(kd_amqp *a);
/** The channel incarnation: it goes up at every (re)connect, so a delivery tag can be
 * matched to the channel that gave it. */
uint64_t kd_amqp_epoch(const kd_amqp *a);

/** Publishing (producer side): enables confirm mode on first use; publishes persistent
 * messages (delivery_mode 2, content_type application/msgpack, message_id = job id) and
 * waits up to timeout_ms for the broker's confirm. KD_ERR_REFUSED when nacked or returned
 * unroutable (mandatory flag), KD_ERR_TIMEOUT when no confirm came. */
int kd_amqp_publish_confirmed(kd_amqp *a, const char *message_id, const void *body, size_t len,
                              int timeout_ms, kd_err *err);

/** Pipelined publishing, for callers that keep many messages in flight (kone-producer).
 * kd_amqp_publish sends one message as above without waiting and returns its delivery tag
 * (1, 2, ... per connection, in publish order); kd_amqp_next_event then reports the broker's
 * answers. kd_amqp_publish_confirmed is these two calls. A basic.return (unroutable) comes
 * before the ack of the same message and carries no tag: match it by message_id.
 * A kd_amqp that consumes on channel 1 should not also kd_amqp_publish there: it
 * publishes on the side channel instead (below). */
/** What the broker answered to a publish. */
typedef enum {
    KD_AMQP_EV_ACK = 1, /**< the broker confirmed the message */
    KD_AMQP_EV_NACK,    /**< the broker refused it */
    KD_AMQP_EV_RETURN   /**< unroutable, returned (mandatory flag) */
} kd_amqp_event_kind;

/** One broker answer to a publish: an ack, a nack or a basic.return. */
typedef struct kd_amqp_event {
    kd_amqp_event_kind kind; /**< ACK, NACK or RETURN */
    int channel;             /**< 1: kd_amqp_publish, 2: kd_amqp_side_publish */
    uint64_t tag;            /**< ACK/NACK: the delivery tag confirmed */
    bool multiple;           /**< ACK/NACK: also every unconfirmed tag below it */
    int reply_code;          /**< RETURN: e.g. 312 (NO_ROUTE) */
    char reply_text[128];    /**< RETURN: e.g. "NO_ROUTE" */
    char message_id[256];    /**< RETURN: message_id of the returned message ("" if none) */
} kd_amqp_event;

/** Publishes one persistent message without waiting; *tag gets its delivery tag. */
int kd_amqp_publish(kd_amqp *a, const char *message_id, const void *body, size_t len, uint64_t *tag,
                    kd_err *err);
/** 1: *ev is filled; 0: nothing came within timeout_ms (0 polls); <0: the connection or
 * channel is gone (err says why; reconnect). Serves heartbeats while waiting. */
int kd_amqp_next_event(kd_amqp *a, int timeout_ms, kd_amqp_event *ev, kd_err *err);

/** For callers with their own poll() loop: the socket to wait on, and whether rabbitmq-c
 * already holds input (queued frames or buffered bytes): then call in without polling,
 * the socket may stay silent. */
int kd_amqp_fd(const kd_amqp *a);
/** True when rabbitmq-c already holds input: call in without polling kd_amqp_fd(). */
bool kd_amqp_buffered(const kd_amqp *a);

/** The side channel (2), in confirm mode, opened on first use. Publishes a persistent,
 * mandatory message to any exchange without waiting and returns its tag (1, 2, ... per
 * connection). Its ack/nack/return comes back through kd_amqp_side_event (while
 * consuming) or kd_amqp_side_wait. message_id should be unique among unconfirmed side
 * publishes: a basic.return is matched by it. */
typedef struct kd_amqp_out {
    const char *exchange;           /**< where to publish */
    const char *routing_key;        /**< its routing key */
    const char *message_id;         /**< NULL or "": none */
    const char *content_type;       /**< NULL: application/msgpack */
    const void *body;               /**< the message body */
    size_t len;                     /**< its length in bytes */
    const kd_amqp_headers *headers; /**< NULL: none */
} kd_amqp_out;
/** Publishes *m on the side channel without waiting; *tag gets its delivery tag. */
int kd_amqp_side_publish(kd_amqp *a, const kd_amqp_out *m, uint64_t *tag, kd_err *err);
/** 1: *ev is the next side-channel event read while consuming; 0: none is queued. */
int kd_amqp_side_event(kd_amqp *a, kd_amqp_event *ev);
/** Like kd_amqp_next_event, but queued side events first (for a thread that does not
 * consume: kone-producer replay-dead). */
int kd_amqp_side_wait(kd_amqp *a, int timeout_ms, kd_amqp_event *ev, kd_err *err);
/** The names this connection declared. */
const kd_amqp_topology *kd_amqp_names(const kd_amqp *a);

/** Pulling (kone-producer replay-dead): basic.get with manual ack on channel 1.
 * 1: a message is in *d (valid until the next call); 0: the queue is empty; <0: gone. */
int kd_amqp_get(kd_amqp *a, const char *queue, kd_delivery *d, kd_err *err);
/** Ready messages in queue (passive declare). */
int kd_amqp_queue_count(kd_amqp *a, const char *queue, uint32_t *messages, kd_err *err);

/** Consuming (worker side). */
int kd_amqp_consume_start(kd_amqp *a, int prefetch, kd_err *err);
/** 1: a delivery is in *d; 0: timeout; <0: the connection or channel is gone (reconnect).
 * Serves heartbeats while waiting. */
int kd_amqp_consume_next(kd_amqp *a, int timeout_ms, kd_delivery *d, kd_err *err);
int kd_amqp_consume_cancel(kd_amqp *a, kd_err *err); /**< stop new deliveries (drain) */
/** True between kd_amqp_consume_start() and kd_amqp_consume_cancel() on this channel. */
bool kd_amqp_consuming(const kd_amqp *a);
/** Ack/nack are no-ops returning 0 when epoch is stale (the delivery died with its channel
 * and the broker will redeliver it). */
int kd_amqp_ack(kd_amqp *a, uint64_t tag, uint64_t epoch, kd_err *err);
/** Rejects a delivery (requeued, or dead-lettered when requeue is false); a no-op with a
 * stale epoch. */
int kd_amqp_nack(kd_amqp *a, uint64_t tag, uint64_t epoch, bool requeue, kd_err *err);
/** From now on kd_amqp_ack holds its ack (returns 0 unless the connection is broken) until
 * kd_amqp_flush_acks, which the caller must then call once per turn of its loop and before
 * kd_amqp_close: the acks go out together, one `multiple` ack for the settled run from the
 * oldest delivery (amqp_acks.c). Nacks are never held. */
void kd_amqp_hold_acks(kd_amqp *a);
/** Sends the held acks. On failure (the connection is lost) *lost says how many did not go
 * out: the broker delivers those jobs again. */
int kd_amqp_flush_acks(kd_amqp *a, int *lost, kd_err *err);

#endif
