/* metrics.c: the metrics registry and its two outputs (see kd_metrics.h).
 *
 * Layout: a family owns one flat array of atomics sized at registration. A series index
 * is a mixed-radix number over the label value indices (first label most significant),
 * so the exposition walks series in a stable order without sorting. Histogram series
 * keep non-cumulative bucket counts (n_buckets + 1, the last one +Inf) plus the sum as
 * double bits; the exposition accumulates them, and derives _count from the buckets so
 * `le="+Inf"` always equals _count even while other threads observe.
 * Doubles live in _Atomic uint64_t as their bit pattern: C17 has no portable atomic
 * double add, and a CAS loop on the bits is lock-free everywhere we run.
 */
#include "kd_metrics.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_buf.h"
#include "kd_list.h"

struct kd_metric {
    kd_metrics *reg;
    char *name, *help;
    kd_metric_type type;
    size_t n_labels;
    char *labels[KD_METRICS_MAX_LABELS];
    char **values[KD_METRICS_MAX_LABELS]; /* NULL-terminated copies */
    size_t n_values[KD_METRICS_MAX_LABELS];
    long other[KD_METRICS_MAX_LABELS]; /* index of "other", -1 if none */
    double buckets[KD_METRICS_MAX_BUCKETS];
    size_t n_buckets;
    size_t n_series;
    size_t stride;           /* atomics per series */
    _Atomic uint64_t *cells; /* n_series * stride */
    struct kd_metric *next;
};

struct kd_metrics {
    pthread_mutex_t lock; /* registration and reads of the family list */
    kd_metric *first, *last;
    _Atomic uint64_t label_misses;
};

/* ---- doubles in atomics ---- */

static uint64_t d2u(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double u2d(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void atomic_add_double(_Atomic uint64_t *cell, double delta)
{
    uint64_t old = atomic_load_explicit(cell, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(cell, &old, d2u(u2d(old) + delta),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* ---- registry ---- */

int kd_metrics_new(kd_metrics **out, kd_err *err)
{
    kd_metrics *reg = calloc(1, sizeof *reg);
    if (!reg)
        /* GCOVR_EXCL_START: allocation failure (no test injects one) */
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    /* GCOVR_EXCL_STOP */
    pthread_mutex_init(&reg->lock, NULL);
    atomic_init(&reg->label_misses, 0);
    *out = reg;
    return 0;
}

static void family_free(kd_metric *m)
{
    free(m->name);
    free(m->help);
    for (size_t l = 0; l < KD_METRICS_MAX_LABELS; l++) {
        free(m->labels[l]);
        if (m->values[l])
            for (size_t v = 0; m->values[l][v]; v++)
                free(m->values[l][v]);
        free(m->values[l]);
    }
    free((void *)m->cells);
    free(m);
}

void kd_metrics_free(kd_metrics *reg)
{
    if (!reg)
        return;
    kd_metric *m = reg->first;
    while (m) {
        kd_metric *next = m->next;
        family_free(m);
        m = next;
    }
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names the same without ':' and not
 * starting with "__" (reserved by Prometheus). */
static bool valid_name(const char *s, bool label)
{
    if (!s || !*s || isdigit((unsigned char)*s))
        return false;
    if (label && s[0] == '_' && s[1] == '_')
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || (!label && *s == ':')))
            return false;
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int validate(const kd_metrics *reg, const kd_metric_desc *d, size_t *n_series, kd_err *err)
{
    if (!valid_name(d->name, false))
        return kd_err_set(err, KD_ERR_INVALID, "metric name '%s' is not a valid Prometheus name",
                          d->name ? d->name : "(null)");
    if (!d->help || !*d->help)
        return kd_err_set(err, KD_ERR_INVALID, "%s: help text missing", d->name);
    if (d->type == KD_METRIC_COUNTER && !ends_with(d->name, "_total"))
        return kd_err_set(err, KD_ERR_INVALID, "%s: a counter's name must end in _total", d->name);
    if (d->type != KD_METRIC_COUNTER && ends_with(d->name, "_total"))
        return kd_err_set(err, KD_ERR_INVALID, "%s: only counters end in _total", d->name);
    for (const kd_metric *m = reg->first; m; m = m->next)
        if (strcmp(m->name, d->name) == 0)
            return kd_err_set(err, KD_ERR_INVALID, "%s: registered twice", d->name);
    if (d->n_labels > KD_METRICS_MAX_LABELS)
        return kd_err_set(err, KD_ERR_INVALID, "%s: at most %d labels", d->name,
                          KD_METRICS_MAX_LABELS);
    size_t n = 1;
    for (size_t l = 0; l < d->n_labels; l++) {
        if (!valid_name(d->labels[l], true))
            return kd_err_set(err, KD_ERR_INVALID, "%s: label name '%s' is not valid", d->name,
                              d->labels[l] ? d->labels[l] : "(null)");
        if (d->type == KD_METRIC_HISTOGRAM && strcmp(d->labels[l], "le") == 0)
            return kd_err_set(err, KD_ERR_INVALID, "%s: 'le' is reserved in histograms", d->name);
        for (size_t k = 0; k < l; k++)
            if (strcmp(d->labels[k], d->labels[l]) == 0)
                return kd_err_set(err, KD_ERR_INVALID, "%s: label %s twice", d->name, d->labels[l]);
        const char *const *vals = d->values[l];
        size_t nv = 0;
        for (; vals && vals[nv]; nv++) {
            if (!*vals[nv])
                return kd_err_set(err, KD_ERR_INVALID, "%s: label %s: empty value", d->name,
                                  d->labels[l]);
            for (size_t k = 0; k < nv; k++)
                if (strcmp(vals[k], vals[nv]) == 0)
                    return kd_err_set(err, KD_ERR_INVALID, "%s: label %s: value '%s' twice",
                                      d->name, d->labels[l], vals[nv]);
        }
        if (nv == 0)
            return kd_err_set(err, KD_ERR_INVALID,
                              "%s: label %s has no values (label sets "
                              "are enumerated at registration)",
                              d->name, d->labels[l]);
        if (n * nv > KD_METRICS_MAX_SERIES)
            return kd_err_set(err, KD_ERR_INVALID, "%s: more than %d series", d->name,
                              KD_METRICS_MAX_SERIES);
        n *= nv;
    }
    if (d->type == KD_METRIC_HISTOGRAM) {
        if (d->n_buckets == 0 || d->n_buckets > KD_METRICS_MAX_BUCKETS || !d->buckets)
            return kd_err_set(err, KD_ERR_INVALID, "%s: 1..%d buckets needed", d->name,
                              KD_METRICS_MAX_BUCKETS);
        for (size_t b = 0; b < d->n_buckets; b++)
            if (!isfinite(d->buckets[b]) || (b > 0 && d->buckets[b] <= d->buckets[b - 1]))
                return kd_err_set(err, KD_ERR_INVALID,
                                  "%s: buckets must be finite and "
                                  "strictly ascending",
                                  d->name);
    }
    *n_series = n;
    return 0;
}

static char **copy_values(const char *const *vals, size_t *n, long *other)
{
    size_t nv = 0;
    while (vals[nv])
        nv++;
    char **c = calloc(nv + 1, sizeof *c);
    if (!c)
        /* GCOVR_EXCL_START: allocation failure (no test injects one) */
        return NULL;
    /* GCOVR_EXCL_STOP */
    *other = -1;
    for (size_t i = 0; i < nv; i++) {
        if (!(c[i] = strdup(vals[i]))) {
            /* GCOVR_EXCL_START: allocation failure (no test injects one) */
            for (size_t k = 0; k < i; k++)
                free(c[k]);
            free(c);
            return NULL;
            /* GCOVR_EXCL_STOP */
        }
        if (strcmp(vals[i], "other") == 0)
            *other = (long)i;
    }
    *n = nv;
    return c;
}

int kd_metrics_register(kd_metrics *reg, const kd_metric_desc *d, kd_metric **out, kd_err *err)
{
    pthread_mutex_lock(&reg->lock);
    size_t n_series = 0;
    int rc = validate(reg, d, &n_series, err);
    if (rc) {
        pthread_mutex_unlock(&reg->lock);
        return rc;
    }
    kd_metric *m = calloc(1, sizeof *m);
    if (!m)
        /* GCOVR_EXCL_START: allocation failure (no test injects one) */
        goto nomem;
    /* GCOVR_EXCL_STOP */
    m->reg = reg;
    m->type = d->type;
    m->n_labels = d->n_labels;
    m->n_series = n_series;
    if (!(m->name = strdup(d->name)) || !(m->help = strdup(d->help)))
        /* GCOVR_EXCL_START: allocation failure (no test injects one) */
        goto nomem;
    /* GCOVR_EXCL_STOP */
    for (size_t l = 0; l < d->n_labels; l++)
        if (!(m->labels[l] = strdup(d->labels[l])) ||
            !(m->values[l] = copy_values(d->values[l], &m->n_values[l], &m->other[l])))
            /* GCOVR_EXCL_START: allocation failure (no test injects one) */
            goto nomem;
    /* GCOVR_EXCL_STOP */
    if (d->type == KD_METRIC_HISTOGRAM) {
        m->n_buckets = d->n_buckets;
        memcpy(m->buckets, d->buckets, d->n_buckets * sizeof *d->buckets);
        m->stride = d->n_buckets + 1 /* +Inf */ + 1 /* sum */ + 1 /* touched */;
    } else {
        m->stride = 1;
    }
    // NOLINTNEXTLINE(clang-analyzer-optin.portability.UnixAPI): validate() gives n_series >= 1
    m->cells = calloc(n_series * m->stride, sizeof *m->cells);
    if (!m->cells)
        /* GCOVR_EXCL_START: allocation failure (no test injects one) */
        goto nomem;
    /* GCOVR_EXCL_STOP */
    for (size_t i = 0; i < n_series * m->stride; i++)
        atomic_init(&m->cells[i], 0); /* 0 is also the bit pattern of 0.0 */
    KD_SLIST_APPEND(reg->first, reg->last, m, next);
    pthread_mutex_unlock(&reg->lock);
    if (out)
        *out = m;
    return 0;
    /* GCOVR_EXCL_START: allocation failure (no test injects one) */
nomem:
    pthread_mutex_unlock(&reg->lock);
    if (m)
        family_free(m);
    return kd_err_set(err, KD_ERR_NOMEM, "out of memory registering %s", d->name);
    /* GCOVR_EXCL_STOP */
}

const kd_metric *kd_metrics_find(const kd_metrics *reg, const char *name)
{
    for (const kd_metric *m = reg->first; m; m = m->next)
        if (strcmp(m->name, name) == 0)
            return m;
    return NULL;
}

uint64_t kd_metrics_label_misses(const kd_metrics *reg)
{
    return atomic_load_explicit(&reg->label_misses, memory_order_relaxed);
}

/* ---- series ---- */

long kd_metric_series(const kd_metric *m, const char *const *values)
{
    if (!m)
        return -1;
    long idx = 0;
    for (size_t l = 0; l < m->n_labels; l++) {
        const char *v = values ? values[l] : NULL;
        long k = -1;
        /* the first byte before strcmp: most values differ there (a job's labels cost ~20
         * strcmp calls before, issue 17) */
        for (size_t i = 0; v && i < m->n_values[l]; i++)
            if (m->values[l][i][0] == v[0] && strcmp(m->values[l][i], v) == 0) {
                k = (long)i;
                break;
            }
        if (k < 0)
            k = m->other[l];
        if (k < 0)
            return -1;
        idx = idx * (long)m->n_values[l] + k;
    }
    return idx;
}

static bool usable(kd_metric *m, long series, kd_metric_type type)
{
    if (!m || m->type != type)
        return false;
    if (series < 0 || (size_t)series >= m->n_series) {
        atomic_fetch_add_explicit(&m->reg->label_misses, 1, memory_order_relaxed);
        return false;
    }
    return true;
}

void kd_counter_add(kd_metric *m, long series, uint64_t n)
{
    if (usable(m, series, KD_METRIC_COUNTER))
        atomic_fetch_add_explicit(&m->cells[series], n, memory_order_relaxed);
}

void kd_gauge_set(kd_metric *m, long series, double v)
{
    if (usable(m, series, KD_METRIC_GAUGE))
        atomic_store_explicit(&m->cells[series], d2u(v), memory_order_relaxed);
}

void kd_gauge_add(kd_metric *m, long series, double delta)
{
    if (usable(m, series, KD_METRIC_GAUGE))
        atomic_add_double(&m->cells[series], delta);
}

void kd_histogram_observe(kd_metric *m, long series, double v)
{
    if (!usable(m, series, KD_METRIC_HISTOGRAM) || isnan(v))
        return;
    _Atomic uint64_t *c = &m->cells[(size_t)series * m->stride];
    size_t b = 0; /* first bucket whose upper bound holds v (le is inclusive) */
    while (b < m->n_buckets && v > m->buckets[b])
        b++;
    atomic_fetch_add_explicit(&c[b], 1, memory_order_relaxed);
    atomic_add_double(&c[m->n_buckets + 1], v);
    atomic_store_explicit(&c[m->n_buckets + 2], 1, memory_order_relaxed);
}

void kd_counter_addv(kd_metric *m, const char *const *values, uint64_t n)
{
    if (m)
        kd_counter_add(m, kd_metric_series(m, values), n);
}

void kd_gauge_setv(kd_metric *m, const char *const *values, double v)
{
    if (m)
        kd_gauge_set(m, kd_metric_series(m, values), v);
}

void kd_histogram_observev(kd_metric *m, const char *const *values, double v)
{
    if (m)
        kd_histogram_observe(m, kd_metric_series(m, values), v);
}

/* ---- reading ---- */

uint64_t kd_counter_value(const kd_metric *m, long series)
{
    if (!m || m->type != KD_METRIC_COUNTER || series < 0 || (size_t)series >= m->n_series)
        return 0;
    return atomic_load_explicit(&m->cells[series], memory_order_relaxed);
}

double kd_gauge_value(const kd_metric *m, long series)
{
    if (!m || m->type != KD_METRIC_GAUGE || series < 0 || (size_t)series >= m->n_series)
        return 0;
    return u2d(atomic_load_explicit(&m->cells[series], memory_order_relaxed));
}

uint64_t kd_histogram_value(const kd_metric *m, long series, double *sum, uint64_t *buckets)
{
    if (!m || m->type != KD_METRIC_HISTOGRAM || series < 0 || (size_t)series >= m->n_series)
        return 0;
    _Atomic uint64_t *c = &m->cells[(size_t)series * m->stride];
    uint64_t cum = 0;
    for (size_t b = 0; b <= m->n_buckets; b++) {
        cum += atomic_load_explicit(&c[b], memory_order_relaxed);
        if (buckets)
            buckets[b] = cum;
    }
    if (sum)
        *sum = u2d(atomic_load_explicit(&c[m->n_buckets + 1], memory_order_relaxed));
    return cum;
}

static bool series_exported(const kd_metric *m, size_t s)
{
    if (m->type != KD_METRIC_HISTOGRAM || m->n_labels == 0)
        return true;
    return atomic_load_explicit(&m->cells[s * m->stride + m->n_buckets + 2],
                                memory_order_relaxed) != 0;
}

/* Label value indices of series s (inverse of the mixed radix). */
static void series_values(const kd_metric *m, size_t s, size_t *idx)
{
    for (size_t l = m->n_labels; l-- > 0;) {
        idx[l] = s % m->n_values[l];
        s /= m->n_values[l];
    }
}

/* ---- text exposition ---- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (!b->oom && kd_buf_append(&b->p, &b->len, &b->cap, s, n))
        b->oom = true; /* GCOVR_EXCL_LINE: allocation failure (no test injects one) */
}

static void sb_str(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* Escapes for HELP (\\ and \n) or for label values (also \"). */
static void sb_escaped(sbuf *b, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            sb_put(b, "\\\\", 2);
        else if (*s == '\n')
            sb_put(b, "\\n", 2);
        else if (quote && *s == '"')
            sb_put(b, "\\\"", 2);
        else
            sb_put(b, s, 1);
    }
}

void kd_metrics_format_double(double v, char *buf, size_t len)
{
    if (isnan(v)) {
        snprintf(buf, len, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* {a="x",b="y"[,le="..."]} or nothing when there are no labels at all. */
static void sb_labels(sbuf *b, const kd_metric *m, const size_t *idx, const char *le)
{
    if (m->n_labels == 0 && !le)
        return;
    sb_put(b, "{", 1);
    for (size_t l = 0; l < m->n_labels; l++) {
        if (l)
            sb_put(b, ",", 1);
        sb_str(b, m->labels[l]);
        sb_put(b, "=\"", 2);
        sb_escaped(b, m->values[l][idx[l]], true);
        sb_put(b, "\"", 1);
    }
    if (le) {
        if (m->n_labels)
            sb_put(b, ",", 1);
        sb_str(b, "le=\"");
        sb_str(b, le);
        sb_put(b, "\"", 1);
    }
    sb_put(b, "}", 1);
}

static void sb_sample(sbuf *b, const kd_metric *m, const char *suffix, const size_t *idx,
                      const char *le, const char *value)
{
    sb_str(b, m->name);
    sb_str(b, suffix);
    sb_labels(b, m, idx, le);
    sb_put(b, " ", 1);
    sb_str(b, value);
    sb_put(b, "\n", 1);
}

static const char *type_name(kd_metric_type t)
{
    return t == KD_METRIC_COUNTER ? "counter" : t == KD_METRIC_GAUGE ? "gauge" : "histogram";
}

static void expose_family(sbuf *b, const kd_metric *m)
{
    sb_str(b, "# HELP ");
    sb_str(b, m->name);
    sb_put(b, " ", 1);
    sb_escaped(b, m->help, false);
    sb_str(b, "\n# TYPE ");
    sb_str(b, m->name);
    sb_put(b, " ", 1);
    sb_str(b, type_name(m->type));
    sb_put(b, "\n", 1);
    char num[64], le[64];
    size_t idx[KD_METRICS_MAX_LABELS] = {0};
    for (size_t s = 0; s < m->n_series; s++) {
        if (!series_exported(m, s))
            continue;
        series_values(m, s, idx);
        if (m->type == KD_METRIC_COUNTER) {
            snprintf(num, sizeof num, "%llu", (unsigned long long)kd_counter_value(m, (long)s));
            sb_sample(b, m, "", idx, NULL, num);
        } else if (m->type == KD_METRIC_GAUGE) {
            kd_metrics_format_double(kd_gauge_value(m, (long)s), num, sizeof num);
            sb_sample(b, m, "", idx, NULL, num);
        } else {
            /* zeroed for the analyzer, which cannot see kd_histogram_value fill it */
            uint64_t cum[KD_METRICS_MAX_BUCKETS + 1] = {0};
            double sum = 0;
            uint64_t count = kd_histogram_value(m, (long)s, &sum, cum);
            for (size_t k = 0; k <= m->n_buckets; k++) {
                if (k < m->n_buckets)
                    kd_metrics_format_double(m->buckets[k], le, sizeof le);
                else
                    snprintf(le, sizeof le, "+Inf");
                snprintf(num, sizeof num, "%llu", (unsigned long long)cum[k]);
                sb_sample(b, m, "_bucket", idx, le, num);
            }
            kd_metrics_format_double(sum, num, sizeof num);
            sb_sample(b, m, "_sum", idx, NULL, num);
            snprintf(num, sizeof num, "%llu", (unsigned long long)count);
            sb_sample(b, m, "_count", idx, NULL, num);
        }
    }
}

char *kd_metrics_expose(kd_metrics *reg, size_t *len)
{
    sbuf b = {0};
    sb_put(&b, "", 0); /* an empty registry still yields "" */
    pthread_mutex_lock(&reg->lock);
    for (const kd_metric *m = reg->first; m; m = m->next)
        expose_family(&b, m);
    pthread_mutex_unlock(&reg->lock);
    if (b.oom) {
        /* GCOVR_EXCL_START: allocation failure (no test injects one) */
        free(b.p);
        return NULL;
        /* GCOVR_EXCL_STOP */
    }
    if (len)
        *len = b.len;
    return b.p;
}

/* ---- msgpack snapshot ---- */

static void mp_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static size_t exported_series(const kd_metric *m)
{
    size_t n = 0;
    for (size_t s = 0; s < m->n_series; s++)
        n += series_exported(m, s);
    return n;
}

static void snapshot_family(msgpack_packer *pk, const kd_metric *m)
{
    bool hist = m->type == KD_METRIC_HISTOGRAM;
    msgpack_pack_map(pk, hist ? 4 : 3);
    mp_str(pk, "name");
    mp_str(pk, m->name);
    mp_str(pk, "type");
    mp_str(pk, type_name(m->type));
    if (hist) {
        mp_str(pk, "le");
        msgpack_pack_array(pk, m->n_buckets);
        for (size_t k = 0; k < m->n_buckets; k++)
            msgpack_pack_double(pk, m->buckets[k]);
    }
    mp_str(pk, "series");
    msgpack_pack_array(pk, exported_series(m));
    size_t idx[KD_METRICS_MAX_LABELS] = {0};
    for (size_t s = 0; s < m->n_series; s++) {
        if (!series_exported(m, s))
            continue;
        series_values(m, s, idx);
        msgpack_pack_map(pk, hist ? 4 : 2);
        mp_str(pk, "labels");
        msgpack_pack_map(pk, m->n_labels);
        for (size_t l = 0; l < m->n_labels; l++) {
            mp_str(pk, m->labels[l]);
            mp_str(pk, m->values[l][idx[l]]);
        }
        if (m->type == KD_METRIC_COUNTER) {
            mp_str(pk, "value");
            msgpack_pack_uint64(pk, kd_counter_value(m, (long)s));
        } else if (m->type == KD_METRIC_GAUGE) {
            mp_str(pk, "value");
            msgpack_pack_double(pk, kd_gauge_value(m, (long)s));
        } else {
            uint64_t cum[KD_METRICS_MAX_BUCKETS + 1];
            double sum = 0;
            uint64_t count = kd_histogram_value(m, (long)s, &sum, cum);
            mp_str(pk, "count");
            msgpack_pack_uint64(pk, count);
            mp_str(pk, "sum");
            msgpack_pack_double(pk, sum);
            mp_str(pk, "buckets");
            msgpack_pack_array(pk, m->n_buckets + 1);
            for (size_t k = 0; k <= m->n_buckets; k++)
                msgpack_pack_uint64(pk, cum[k]);
        }
    }
}

int kd_metrics_snapshot_msgpack(kd_metrics *reg, const char *worker, int64_t at_ms,
                                msgpack_sbuffer *sb, kd_err *err)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    size_t before = sb->size;
    pthread_mutex_lock(&reg->lock);
    size_t n = 0;
    for (const kd_metric *m = reg->first; m; m = m->next)
        n++;
    msgpack_pack_map(&pk, 4);
    mp_str(&pk, "v");
    msgpack_pack_int(&pk, KD_METRICS_SNAPSHOT_VERSION);
    mp_str(&pk, "worker");
    if (worker)
        mp_str(&pk, worker);
    else
        msgpack_pack_nil(&pk);
    mp_str(&pk, "at");
    msgpack_pack_int64(&pk, at_ms);
    mp_str(&pk, "metrics");
    msgpack_pack_array(&pk, n);
    for (const kd_metric *m = reg->first; m; m = m->next)
        snapshot_family(&pk, m);
    pthread_mutex_unlock(&reg->lock);
    /* msgpack_sbuffer_write fails only on allocation; the buffer then stops growing */
    // cppcheck-suppress knownConditionTrueFalse ; it cannot see the packer write through sb
    if (sb->size == before)
        /* GCOVR_EXCL_START: msgpack's sbuffer fails a write only on allocation failure */
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory encoding the metrics snapshot");
    /* GCOVR_EXCL_STOP */
    return 0;
}
