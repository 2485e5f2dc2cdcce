/**
 * @file kd_time.h
 * @brief The two clocks every program reads: wall time for what is reported, monotonic time
 * for what is measured or waited for.
 *
 * Their own header so that the producer, kone-events, the Kafka and HTTP layers and the
 * benchmarks read the time without including the worker's run type (kd_run.h).
 */
#ifndef KD_TIME_H
#define KD_TIME_H

#include <stdint.h>

/** Wall clock, µs since the epoch: timestamps in events, logs and job deadlines. */
int64_t kd_now_us(void);
/** Monotonic clock, µs: timeouts and durations (a wall-clock step never fires them). */
int64_t kd_mono_us(void);

#endif
