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
