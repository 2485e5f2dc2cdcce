/**
 * @file kd_producer.h
 * @brief kd_producer: the small C API an upstream application links to queue elevator calls.
 *
 *   kd_producer *p;
 *   kd_producer_open(&p, &cfg, &err);          connects, declares the topology
 *   kd_producer_publish(p, &job, &err);        validates, encodes, waits for the confirm
 *   kd_producer_close(p);
 *
 * kd_producer_publish returns 0 only once RabbitMQ confirmed the job (it is on the quorum
 * queue's disks). It is synchronous: one job, one round trip. If the connection had
 * dropped (broker restart, idle connection closed after missed heartbeats) it reconnects
 * once and publishes again, so delivery is at least once: a job whose first confirm was
 * lost with the connection may be queued twice (same job_id). One producer belongs to
 * one thread; the configuration must outlive it. docs/producer.md has a complete example.
 */
#ifndef KD_PRODUCER_H
#define KD_PRODUCER_H

#include "kd_config.h"
#include "kd_err.h"
#include "kd_job.h"

/** A job producer: one AMQP connection publishing with confirms (opaque). */
typedef struct kd_producer kd_producer;

/** Reads amqp.* and producer.confirm_timeout_ms from cfg (kept by pointer for reconnects)
 * and connects. KD_ERR_IO / KD_ERR_AUTH / KD_ERR_TIMEOUT when the
 * broker cannot be reached, KD_ERR_INVALID for a bad configuration value. */
int kd_producer_open(kd_producer **out, const kd_config *cfg, kd_err *err);

/** 0: confirmed. KD_ERR_INVALID: the job breaks the format (the message names the field);
 * KD_ERR_REFUSED: nacked or unroutable; KD_ERR_TIMEOUT: no confirm within
 * producer.confirm_timeout_ms (the job may or may not be queued); KD_ERR_IO: the broker
 * stayed unreachable after one reconnect. The next call reconnects again. */
int kd_producer_publish(kd_producer *p, const kd_job *job, kd_err *err);

/** Closes the connection and frees the producer (NULL is a no-op). */
void kd_producer_close(kd_producer *p);

#endif
