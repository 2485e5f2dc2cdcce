/* consumer: the Kafka side of kone-events (see consumer.c). */
#ifndef KEV_CONSUMER_H
#define KEV_CONSUMER_H

#include <stdbool.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "kd_err.h"

typedef struct kev_options {
    const char *brokers;
    const char *topic;
    const char *group; /* "" or NULL: a fresh random group that never commits */
    bool from_beginning;
} kev_options;

typedef struct kev_consumer kev_consumer;

int kev_consumer_new(kev_consumer **out, const kev_options *o, kd_err *err);
/* The next message or error (caller destroys it with rd_kafka_message_destroy), or NULL
 * when none came within timeout_ms. */
rd_kafka_message_t *kev_consumer_poll(kev_consumer *c, int timeout_ms);
/* Monotonic µs of the first partition assignment, 0 before it. */
int64_t kev_consumer_assigned_at(const kev_consumer *c);
/* Leaves the group (committing offsets if a named group auto-commits) and frees. */
void kev_consumer_close(kev_consumer *c);

#endif
