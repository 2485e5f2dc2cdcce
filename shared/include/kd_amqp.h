/* kd_amqp: RabbitMQ plumbing shared by the producer and the worker (rabbitmq-c).
 *
 * A kd_amqp is one connection with one channel, owned by one thread (rabbitmq-c does no
 * background work: heartbeats are only handled inside its calls, so the owner must call
 * in at least every heartbeat/2 seconds). Topology is declared idempotently on every
 * connect: durable direct exchange amqp.exchange, quorum queue amqp.queue bound with
 * amqp.routing_key. Passwords are never put in error messages.
 */
#ifndef KD_AMQP_H
#define KD_AMQP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kd_config.h"
#include "kd_err.h"

typedef struct kd_amqp kd_amqp;

typedef struct kd_delivery {
    const void *body;        /* valid until the next kd_amqp_consume_next() */
    size_t len;
    uint64_t delivery_tag;
    uint64_t epoch;          /* channel incarnation; acks with a stale epoch are dropped */
    bool redelivered;
    int64_t delivery_count;  /* quorum queue x-delivery-count header, 0 if absent */
    const char *content_type;/* "" if absent */
} kd_delivery;

/* Connects (amqp.host, port, vhost, user, password, heartbeat_s) and declares the topology. */
int kd_amqp_connect(kd_amqp **out, const kd_config *cfg, kd_err *err);
void kd_amqp_close(kd_amqp *a);
uint64_t kd_amqp_epoch(const kd_amqp *a);

/* Publishing (producer side): enables confirm mode on first use; publishes persistent
 * messages (delivery_mode 2, content_type application/msgpack, message_id = job id) and
 * waits up to timeout_ms for the broker's confirm. KD_ERR_REFUSED when nacked or returned
 * unroutable (mandatory flag), KD_ERR_TIMEOUT when no confirm came. */
int kd_amqp_publish_confirmed(kd_amqp *a, const char *message_id, const void *body, size_t len,
                              int timeout_ms, kd_err *err);

/* Pipelined publishing, for callers that keep many messages in flight (kone-producer).
 * kd_amqp_publish sends one message as above without waiting and returns its delivery tag
 * (1, 2, ... per connection, in publish order); kd_amqp_next_event then reports the broker's
 * answers. kd_amqp_publish_confirmed is these two calls. A basic.return (unroutable) comes
 * before the ack of the same message and carries no tag: match it by message_id.
 * A kd_amqp used for publishing should not also consume (and the other way round). */
typedef enum { KD_AMQP_EV_ACK = 1, KD_AMQP_EV_NACK, KD_AMQP_EV_RETURN } kd_amqp_event_kind;

typedef struct kd_amqp_event {
    kd_amqp_event_kind kind;
    uint64_t tag;              /* ACK/NACK: the delivery tag confirmed */
    bool multiple;             /* ACK/NACK: also every unconfirmed tag below it */
    int reply_code;            /* RETURN: e.g. 312 (NO_ROUTE) */
    char reply_text[128];      /* RETURN: e.g. "NO_ROUTE" */
    char message_id[256];      /* RETURN: message_id of the returned message ("" if none) */
} kd_amqp_event;

int kd_amqp_publish(kd_amqp *a, const char *message_id, const void *body, size_t len,
                    uint64_t *tag, kd_err *err);
/* 1: *ev is filled; 0: nothing came within timeout_ms (0 polls); <0: the connection or
 * channel is gone (err says why; reconnect). Serves heartbeats while waiting. */
int kd_amqp_next_event(kd_amqp *a, int timeout_ms, kd_amqp_event *ev, kd_err *err);

/* For callers with their own poll() loop: the socket to wait on, and whether rabbitmq-c
 * already holds input (queued frames or buffered bytes): then call in without polling,
 * the socket may stay silent. */
int kd_amqp_fd(const kd_amqp *a);
bool kd_amqp_buffered(const kd_amqp *a);

/* Consuming (worker side). */
int kd_amqp_consume_start(kd_amqp *a, int prefetch, kd_err *err);
/* 1: a delivery is in *d; 0: timeout; <0: the connection or channel is gone (reconnect).
 * Serves heartbeats while waiting. */
int kd_amqp_consume_next(kd_amqp *a, int timeout_ms, kd_delivery *d, kd_err *err);
int kd_amqp_consume_cancel(kd_amqp *a, kd_err *err);   /* stop new deliveries (drain) */
/* Ack/nack are no-ops returning 0 when epoch is stale (the delivery died with its channel
 * and the broker will redeliver it). */
int kd_amqp_ack(kd_amqp *a, uint64_t tag, uint64_t epoch, kd_err *err);
int kd_amqp_nack(kd_amqp *a, uint64_t tag, uint64_t epoch, bool requeue, kd_err *err);

#endif
