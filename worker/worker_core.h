/* worker_core: the worker's main loop: AMQP deliveries in, runs to KONE, results to
 * Kafka, acks once Kafka confirmed (see worker/main.c for the thread model). */
#ifndef KD_WORKER_CORE_H
#define KD_WORKER_CORE_H

#include <signal.h>

#include "kd_config.h"
#include "kd_err.h"

typedef struct kd_worker kd_worker;

int kd_worker_new(kd_worker **out, const kd_config *cfg, kd_err *err);
/* Runs until *stop is set, then drains (worker.drain_ms) and returns the exit code. */
int kd_worker_run(kd_worker *w, volatile sig_atomic_t *stop);
void kd_worker_free(kd_worker *w);

#endif
