/**
 * @file kd_metrics.h
 * @brief kd_metrics: a small Prometheus metrics registry (counters, gauges, histograms).
 *
 * Why our own and not a client library: there is no maintained Prometheus client for C in
 * Debian, and what the worker needs is small. What it does:
 *   - families are registered once, at start-up, with every label value enumerated up
 *     front (kd_metric_desc.values). The number of series is fixed at registration, so
 *     memory is allocated once and no job id or other unbounded value can ever become a
 *     label. A value list that contains "other" makes it the fallback for values not in
 *     the list (buildings not configured in metrics.buildings map to "other"); without
 *     "other", an unknown value is a caller's bug: the update is dropped and counted
 *     (kd_metrics_label_misses);
 *   - updates are lock-free and allocation-free: one atomic add for a counter, a CAS loop
 *     for a gauge or a histogram's sum. Registration and exposition take a mutex, so
 *     families may not be added while being read, but nothing on the hot path waits;
 *   - the text exposition follows the Prometheus text format 0.0.4 and passes
 *     `promtool check metrics`; the snapshot is the same data as one msgpack map for the
 *     kone.worker.metrics Kafka topic (docs/events.md).
 * Units are base units, in the name (seconds, bytes); counters end in _total.
 * Counters and gauges export every series (zeros included: rate() needs the first
 * sample); histograms export only the series that have been observed at least once
 * (a label-less histogram always), because each series costs buckets + 3 lines.
 */
#ifndef KD_METRICS_H
#define KD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "kd_err.h"

/** Most labels per metric family. */
#define KD_METRICS_MAX_LABELS 3
/** Most finite buckets per histogram. */
#define KD_METRICS_MAX_BUCKETS 24
#define KD_METRICS_MAX_SERIES 4096 /**< per family: the product of the value counts */

/** A metric family's type. */
typedef enum {
    KD_METRIC_COUNTER = 0, /**< only goes up */
    KD_METRIC_GAUGE,       /**< any value */
    KD_METRIC_HISTOGRAM    /**< observations in buckets */
} kd_metric_type;

/** A metric family's description: name, type, labels and their allowed values, buckets. */
typedef struct kd_metric_desc {
    const char *name;                                 /**< kone_jobs_total */
    const char *help;                                 /**< one line */
    kd_metric_type type;                              /**< counter, gauge or histogram */
    size_t n_labels;                                  /**< 0..KD_METRICS_MAX_LABELS */
    const char *labels[KD_METRICS_MAX_LABELS];        /**< label names */
    const char *const *values[KD_METRICS_MAX_LABELS]; /**< per label: NULL-terminated list */
    const double *buckets;                            /**< histogram upper bounds, ascending, */
    size_t n_buckets;                                 /**< finite; +Inf is implicit */
} kd_metric_desc;

typedef struct kd_metrics kd_metrics; /**< a registry */
typedef struct kd_metric kd_metric;   /**< one family */

/** Makes an empty registry. */
int kd_metrics_new(kd_metrics **out, kd_err *err);
/** Frees a registry and its families (NULL is a no-op). */
void kd_metrics_free(kd_metrics *reg);

/** Validates the description (names, _total on counters, unique family names, non-empty
 * value lists without duplicates, le reserved for histograms, ascending finite buckets,
 * at most KD_METRICS_MAX_SERIES series), copies it (the value lists may be freed after)
 * and allocates every series. */
int kd_metrics_register(kd_metrics *reg, const kd_metric_desc *d, kd_metric **out, kd_err *err);
/** The family named name, or NULL. */
const kd_metric *kd_metrics_find(const kd_metrics *reg, const char *name);

/** ---- addressing a series ----
 * A series is an index computed from one value per label (NULL for a label-less
 * family). Unknown values map to "other" where the list has it, else -1. Callers on a
 * hot path may compute the index once and keep it. */
long kd_metric_series(const kd_metric *m, const char *const *values);

/** ---- updates: m NULL or series < 0 is a no-op (a miss is counted for series < 0) ---- */
void kd_counter_add(kd_metric *m, long series, uint64_t n);
/** Sets a gauge series. */
void kd_gauge_set(kd_metric *m, long series, double v);
/** Adds delta (may be negative) to a gauge series. */
void kd_gauge_add(kd_metric *m, long series, double delta);
/** Records one observation in a histogram series. */
void kd_histogram_observe(kd_metric *m, long series, double v);

/** Same, addressed by label values; `values` has one entry per label (NULL when none). */
void kd_counter_addv(kd_metric *m, const char *const *values, uint64_t n);
/** kd_gauge_set() by label values. */
void kd_gauge_setv(kd_metric *m, const char *const *values, double v);
/** kd_histogram_observe() by label values. */
void kd_histogram_observev(kd_metric *m, const char *const *values, double v);

/** Label values as a literal: kd_counter_addv(m, KD_LV("call", "succeeded"), 1). */
#define KD_LV(...) ((const char *const[]){__VA_ARGS__})

/** ---- reading (tests, snapshots) ---- */
uint64_t kd_counter_value(const kd_metric *m, long series);
/** A gauge series' value. */
double kd_gauge_value(const kd_metric *m, long series);
/** Count and sum of a histogram series; buckets (may be NULL) gets n_buckets + 1
 * cumulative counts, the last for +Inf. */
uint64_t kd_histogram_value(const kd_metric *m, long series, double *sum, uint64_t *buckets);
/** Updates dropped because a label value was unknown and the label has no "other". */
uint64_t kd_metrics_label_misses(const kd_metrics *reg);

/** ---- output ----
 * Text format 0.0.4 (Content-Type text/plain; version=0.0.4). Returns a malloc'd,
 * NUL-terminated buffer (length in *len) or NULL when out of memory. */
#define KD_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/** The Prometheus text exposition of every family (free() it); *len gets its length. */
char *kd_metrics_expose(kd_metrics *reg, size_t *len);

/** Appends one msgpack map (format in docs/events.md, "kone.worker.metrics"):
 * {"v":1,"worker":...,"at":ms,"metrics":[{"name","type","le":[...] (histograms only),
 *   "series":[{"labels":{name:value},"value"} or {"labels","count","sum","buckets"}]}]}
 * The same series as the text exposition. */
#define KD_METRICS_SNAPSHOT_VERSION 1
/** Appends a snapshot of every family to sb (docs/events.md). */
int kd_metrics_snapshot_msgpack(kd_metrics *reg, const char *worker, int64_t at_ms,
                                msgpack_sbuffer *sb, kd_err *err);

/** Formats a sample value the way the exposition does ("0.25", "12", "+Inf", "NaN"):
 * the shortest text that reads back as the same double. */
void kd_metrics_format_double(double v, char *buf, size_t len);

#endif
