/* limits.c: the worker's settings against RabbitMQ's limits (see kd_limits.h for the bound
 * and why each term is there).
 *
 * Why a check at start rather than a clamp at run time: a hold longer than the broker's
 * consumer_timeout does not fail one job, it closes the channel and redelivers every job on
 * it, each of which runs again (and may call a lift again where no ledger prevents it). That
 * is a configuration mistake, and the only safe answer is to refuse it with the keys named.
 *
 * The values were checked against the configuration table's bounds at load; this file
 * checks only how they combine.
 */
#include "kd_limits.h"

#include <inttypes.h>
#include <string.h>

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* The ledger's part of the hold: 0 without a ledger. */
static int64_t ledger_hold(const kd_config *cfg)
{
    if (!strcmp(kd_cfg_str(cfg, KD_CFG_LEDGER_URL), "none"))
        return 0;
    return kd_cfg_int(cfg, KD_CFG_LEDGER_LEASE_MS) + 2 * kd_cfg_int(cfg, KD_CFG_LEDGER_TIMEOUT_MS);
}

/* The KONE client's part: see kd_limits.h. */
static int64_t kone_hold(const kd_config *cfg, int64_t *follow)
{
    int64_t r = kd_cfg_int(cfg, KD_CFG_KONE_REQUEST_TIMEOUT_MS);
    int64_t c = kd_cfg_int(cfg, KD_CFG_KONE_CALL_TIMEOUT_MS);
    int64_t t = kd_cfg_int(cfg, KD_CFG_KONE_TRACK_TIMEOUT_MS);
    *follow = max64(t, 2 * (c + KD_LIMITS_JOB_DELAY_MS));
    return 3 * r + (int64_t)KD_LIMITS_KONE_AUTH_RETRIES * 2 * r + KD_LIMITS_KONE_RESUME_MS + r + c +
           *follow;
}

int kd_limits_compute(const kd_config *cfg, kd_limits *out, kd_err *err)
{
    (void)err; /* the values were checked at load: nothing left to refuse here */
    memset(out, 0, sizeof *out);
    int64_t follow;
    out->consumer_timeout_ms = kd_cfg_int(cfg, KD_CFG_AMQP_CONSUMER_TIMEOUT_MS);
    out->delivery_limit = kd_cfg_int(cfg, KD_CFG_AMQP_DELIVERY_LIMIT);
    out->max_deliveries = kd_cfg_int(cfg, KD_CFG_WORKER_MAX_DELIVERIES);
    out->job_max_age_ms = kd_cfg_int(cfg, KD_CFG_JOB_MAX_AGE_MS);
    out->hold_ledger_ms = ledger_hold(cfg);
    out->hold_kone_ms = kone_hold(cfg, &follow);
    out->hold_finish_ms = KD_LIMITS_FINISH_MS;
    out->hold_ms = out->hold_ledger_ms + out->hold_kone_ms + out->hold_finish_ms;
    return 0;
}

/* The hold is over the broker's consumer_timeout: name the keys, the largest first. */
static int hold_error(const kd_config *cfg, const kd_limits *l, kd_err *err)
{
    const char *t = kd_cfg_str(cfg, KD_CFG_KONE_TRACK_TIMEOUT_MS);
    const char *c = kd_cfg_str(cfg, KD_CFG_KONE_CALL_TIMEOUT_MS);
    const char *r = kd_cfg_str(cfg, KD_CFG_KONE_REQUEST_TIMEOUT_MS);
    int64_t track = kd_cfg_int(cfg, KD_CFG_KONE_TRACK_TIMEOUT_MS);
    int64_t call = kd_cfg_int(cfg, KD_CFG_KONE_CALL_TIMEOUT_MS);
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
    int64_t ttl = kd_cfg_int(cfg, KD_CFG_JOB_DEFAULT_TTL_MS);
    if (l.job_max_age_ms > 0 && ttl > l.job_max_age_ms)
        return kd_err_set(err, KD_ERR_INVALID,
                          "job.default_ttl_ms (%" PRId64 ") exceeds job.max_age_ms (%" PRId64
                          "): every job without a deadline would have it cut to "
                          "job.max_age_ms; lower job.default_ttl_ms or raise job.max_age_ms",
                          ttl, l.job_max_age_ms);
    return 0;
}
