/**
 * @file kd_kafka.h
 * @brief kd_kafka: the worker's Kafka producer (librdkafka).
 *
 * Settings that keep "nothing is lost" true: enable.idempotence=true, acks=all,
 * message.timeout.ms=0 (retry until delivered; a slow or absent Kafka stalls, it does not
 * drop), key = building id so one building's events stay ordered in one partition.
 * Delivery reports are served by kd_kafka_poll() on the calling thread: the worker polls
 * from the thread that owns the AMQP connection, so it can ack right in the callback.
 * kd_kafka_produce() is thread-safe and copies the payload.
 */
#ifndef KD_KAFKA_H
#define KD_KAFKA_H

#include <stdbool.h>
#include <stddef.h>

#include "kd_config.h"
#include "kd_err.h"

/** An idempotent librdkafka producer (opaque). */
typedef struct kd_kafka kd_kafka;

/** err_code 0: delivered. Otherwise a librdkafka error code and its text (no secrets). */
typedef void (*kd_kafka_dr_fn)(void *opaque, int err_code, const char *errstr, void *arg);

/** librdkafka's configuration object (rdkafka.h), for the two helpers below. */
struct rd_kafka_conf_s;

/** Allocates the zeroed struct of `size` bytes that will own a Kafka client and a new
 * librdkafka configuration for it in *conf: the struct, or NULL with neither left and err
 * set (out of memory). */
void *kd_kafka_owner_new(size_t size, struct rd_kafka_conf_s **conf, kd_err *err);

/** Sets one librdkafka property; an error names the property, never the value. */
int kd_kafka_conf_set(struct rd_kafka_conf_s *conf, const char *name, const char *value,
                      kd_err *err);
/** The transport security of any Kafka client from kafka.security_protocol, kafka.ca_file,
 * kafka.cert_file, kafka.key_file and kafka.sasl_* (kafka_security.c): files checked first,
 * verification always on, plaintext warned about at every start. */
int kd_kafka_conf_security(struct rd_kafka_conf_s *conf, const kd_config *cfg, kd_err *err);

/** librdkafka's client handle (rdkafka.h). */
struct rd_kafka_s;
/** A librdkafka error callback (rd_kafka_conf_set_error_cb). */
typedef void (*kd_kafka_error_fn)(struct rd_kafka_s *rk, int code, const char *reason,
                                  void *opaque);
/** Makes a librdkafka client of `type` (RD_KAFKA_PRODUCER or RD_KAFKA_CONSUMER) from conf, with
 * opaque and on_error, its log lines going to kd_log (librdkafka's syslog levels mapped; its
 * "FAIL" lines, which on_error reports too, at debug). Takes conf over, also on failure: NULL,
 * err naming `what` ("producer"). Any Kafka client of the project: kd_kafka, kone-events. */
struct rd_kafka_s *kd_kafka_client_new(int type, struct rd_kafka_conf_s *conf, void *opaque,
                                       kd_kafka_error_fn on_error, const char *what, kd_err *err);

/** Reads kafka.* keys. dr may be NULL (fire and forget, used by tools). */
int kd_kafka_producer_new(kd_kafka **out, const kd_config *cfg, kd_kafka_dr_fn dr, void *arg,
                          kd_err *err);
/** Queues one message to topic with key (NULL: none); opaque comes back in the delivery report. */
int kd_kafka_produce(kd_kafka *k, const char *topic, const char *key, const void *buf, size_t len,
                     void *opaque, kd_err *err);
/** One attempt, never waits: *full is set (and 0 returned, nothing queued) when librdkafka's
 * local queue is full; try again after the poller served delivery reports. For threads that
 * must not block (the KONE event loop hands such a message to the poller instead). */
int kd_kafka_produce_nowait(kd_kafka *k, const char *topic, const char *key, const void *buf,
                            size_t len, void *opaque, bool *full, kd_err *err);
/** Serves delivery reports; returns how many were served. */
int kd_kafka_poll(kd_kafka *k, int timeout_ms);
/** Makes librdkafka write to eventfd efd when a delivery report (or another callback's
 * event) waits for kd_kafka_poll() and none waited before: a poller that sleeps in poll(2) on
 * efd then wakes for reports instead of polling on a short timer. 0 or KD_ERR_INTERNAL. */
int kd_kafka_wake_fd(kd_kafka *k, int efd, kd_err *err);
/** Waits up to timeout_ms for every queued message to be delivered; 0 when all were. */
int kd_kafka_flush(kd_kafka *k, int timeout_ms);
/** false after a fatal error, or while every broker is down (librdkafka's
 * _ALL_BROKERS_DOWN, until a delivery succeeds or a broker is seen up again). Any thread. */
bool kd_kafka_usable(kd_kafka *k);
/** Messages produced but not yet acknowledged by the broker. */
int kd_kafka_undelivered(kd_kafka *k);
/** Destroys the producer (NULL is a no-op); call kd_kafka_flush() first to keep queued messages. */
void kd_kafka_destroy(kd_kafka *k);

#endif
