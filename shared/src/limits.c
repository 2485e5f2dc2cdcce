/* limits.c: the worker's settings against RabbitMQ's limits (see kd_limits.h for the bound
 * and why each term is there).
 *
 * Why a check at start rather than a clamp at run time: a hold longer than the broker's
 * consumer_timeout does not fail one job, it closes the channel and redelivers every job on
 * it, each of which runs again (and may call a lift again where no ledger prevents it). That
 * is a configuration mistake, and the only safe answer is to refuse it with the keys named.
 *
 * The ledger keys are read only when the table has them, so this file does not depend on
 * the ledger having landed in a given build.
 */
#include "kd_limits.h"

#include <inttypes.h>
#include <string.h>

static bool has_key(const char *key)
{
    size_t n;
    const kd_config_key *t = kd_config_table(&n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i].name, key))
            return true;
    return false;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* The ledger's part of the hold: 0 without a ledger. */
static int ledger_hold(const kd_config *cfg, int64_t *out, kd_err *err)
{
    *out = 0;
    if (!has_key("ledger.url") || !strcmp(kd_config_get(cfg, "ledger.url"), "none"))
        return 0;
    int64_t lease = 0, timeout = 0;
    int rc = 0;
    if (has_key("ledger.lease_ms"))
        rc = kd_config_int(cfg, "ledger.lease_ms", 0, 86400000, &lease, err);
    if (!rc && has_key("ledger.timeout_ms"))
        rc = kd_config_int(cfg, "ledger.timeout_ms", 0, 86400000, &timeout, err);
    *out = lease + 2 * timeout;
    return rc;
}

/* The KONE client's part: see kd_limits.h. Ranges as the worker's KONE client reads them. */
static int kone_hold(const kd_config *cfg, int64_t *out, int64_t *follow, kd_err *err)
{
    int64_t r, c, t;
    int rc = kd_config_int(cfg, "kone.request_timeout_ms", 100, 600000, &r, err);
    if (!rc)
        rc = kd_config_int(cfg, "kone.call_timeout_ms", 100, 3600000, &c, err);
    if (!rc)
        rc = kd_config_int(cfg, "kone.track_timeout_ms", 100, 86400000, &t, err);
    if (rc)
        return rc;
    *follow = max64(t, 2 * (c + KD_LIMITS_JOB_DELAY_MS));
    *out = 3 * r + (int64_t)KD_LIMITS_KONE_AUTH_RETRIES * 2 * r + KD_LIMITS_KONE_RESUME_MS + r + c +
           *follow;
    return 0;
}

int kd_limits_compute(const kd_config *cfg, kd_limits *out, kd_err *err)
{
    memset(out, 0, sizeof *out);
    int64_t follow;
    int rc = kd_config_int(cfg, "amqp.consumer_timeout_ms", 0, KD_LIMITS_CONSUMER_TIMEOUT_MAX_MS,
                           &out->consumer_timeout_ms, err);
    if (!rc)
        rc = kd_config_int(cfg, "amqp.delivery_limit", 1, 1000000, &out->delivery_limit, err);
    if (!rc)
        rc = kd_config_int(cfg, "worker.max_deliveries", 0, 1000000, &out->max_deliveries, err);
    if (!rc)
        rc = kd_config_int(cfg, "job.max_age_ms", 0, KD_LIMITS_MAX_AGE_MAX_MS, &out->job_max_age_ms,
                           err);
    if (!rc)
        rc = ledger_hold(cfg, &out->hold_ledger_ms, err);
    if (!rc)
        rc = kone_hold(cfg, &out->hold_kone_ms, &follow, err);
    if (rc)
        return rc;
    out->hold_finish_ms = KD_LIMITS_FINISH_MS;
    out->hold_ms = out->hold_ledger_ms + out->hold_kone_ms + out->hold_finish_ms;
    return 0;
}

/* The hold is over the broker's consumer_timeout: name the keys, the largest first. */
static int hold_error(const kd_config *cfg, const kd_limits *l, kd_err *err)
{
    const char *t = kd_config_get(cfg, "kone.track_timeout_ms");
    const char *c = kd_config_get(cfg, "kone.call_timeout_ms");
    const char *r = kd_config_get(cfg, "kone.request_timeout_ms");
    int64_t track = 0, call = 0;
    kd_config_int(cfg, "kone.track_timeout_ms", 0, INT64_MAX, &track, NULL);
    kd_config_int(cfg, "kone.call_timeout_ms", 0, INT64_MAX, &call, NULL);
    const char *first = track >= 2 * (call + KD_LIMITS_JOB_DELAY_MS) ? "kone.track_timeout_ms"
                                                                     : "kone.call_timeout_ms";
    char ledger[96] = "";
    if (l->hold_ledger_ms)
        snprintf(ledger, sizeof ledger, ", ledger.lease_ms + 2 x ledger.timeout_ms %" PRId64,
                 l->hold_ledger_ms);
    return kd_err_set(err, KD_ERR_INVALID,
                      "amqp.consumer_timeout_ms: the worker may hold a delivery %" PRId64
                      " ms (kone.track_timeout_ms %s, kone.call_timeout_ms %s, "
                      "kone.request_timeout_ms %s%s), longer than RabbitMQ's consumer_timeout "
                      "of %" PRId64 " ms, which would close the channel and redeliver its jobs; "
                      "lower %s, or raise consumer_timeout on the broker and "
                      "amqp.consumer_timeout_ms with it (docs/failure-handling.md)",
                      l->hold_ms, t, c, r, ledger, l->consumer_timeout_ms, first);
}

int kd_limits_check(const kd_config *cfg, kd_err *err)
{
    kd_limits l;
    int rc = kd_limits_compute(cfg, &l, err);
    if (rc)
        return rc;
    if (l.consumer_timeout_ms > 0 && l.hold_ms >= l.consumer_timeout_ms)
        return hold_error(cfg, &l, err);
    if (l.max_deliveries > 0 && l.max_deliveries >= l.delivery_limit)
        return kd_err_set(err, KD_ERR_INVALID,
                          "worker.max_deliveries (%" PRId64 ") must be below "
                          "amqp.delivery_limit (%" PRId64 "): the worker parks a job returned "
                          "that often with a result, the broker's limit is only the backstop "
                          "and parks it without one; raise amqp.delivery_limit or lower "
                          "worker.max_deliveries",
                          l.max_deliveries, l.delivery_limit);
    int64_t ttl;
    rc = kd_config_int(cfg, "job.default_ttl_ms", 0, INT64_MAX, &ttl, err);
    if (rc)
        return rc;
    if (l.job_max_age_ms > 0 && ttl > l.job_max_age_ms)
        return kd_err_set(err, KD_ERR_INVALID,
                          "job.default_ttl_ms (%" PRId64 ") exceeds job.max_age_ms (%" PRId64
                          "): every job without a deadline would have it cut to "
                          "job.max_age_ms; lower job.default_ttl_ms or raise job.max_age_ms",
                          ttl, l.job_max_age_ms);
    return 0;
}
