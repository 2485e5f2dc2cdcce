/* kafka_test.h: internals of kafka.c that unit tests use. Not part of the public API.
 *
 * kd_kafka_producer_new_ex() is kd_kafka_producer_new() plus extra librdkafka properties
 * applied after ours (and overriding them): a NULL-terminated list of name, value pairs.
 * It exists for tests only (e.g. a tiny queue.buffering.max.messages to exercise the
 * queue-full path); production code configures Kafka through kd_config keys alone.
 */
#ifndef KD_KAFKA_TEST_H
#define KD_KAFKA_TEST_H

#include "kd_kafka.h"

int kd_kafka_producer_new_ex(kd_kafka **out, const kd_config *cfg, kd_kafka_dr_fn dr, void *arg,
                             const char *const *extra_props, kd_err *err);

#endif
