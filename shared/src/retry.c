/* retry.c: see kd_retry.h. Pure functions: the caller brings the clock and the RNG state.
 *
 * Why tiers rather than a per-message TTL: RabbitMQ expires messages only at the head of a
 * queue, so a 30 s message in front of a 1 s one would hold it back. With one queue per
 * delay every message in a queue has the same TTL and leaves in order. The drawn delay is
 * rounded *up* to a tier, so the spread of full jitter survives as a spread over tiers.
 */
#include "kd_retry.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int kd_retry_parse_tiers(const char *text, int64_t *tiers, int *n, kd_err *err)
{
    *n = 0;
    const char *p = text;
    while (*p) {
        while (*p == ' ')
            p++;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 1 || v > KD_RETRY_TIER_MAX_MS)
            return kd_err_set(err, KD_ERR_INVALID,
                              "retry.tiers_ms: each tier must be an integer 1..%d ms, got '%s'",
                              KD_RETRY_TIER_MAX_MS, text);
        if (*n == KD_RETRY_MAX_TIERS)
            return kd_err_set(err, KD_ERR_INVALID, "retry.tiers_ms: at most %d tiers, got '%s'",
                              KD_RETRY_MAX_TIERS, text);
        if (*n > 0 && v <= tiers[*n - 1])
            return kd_err_set(err, KD_ERR_INVALID,
                              "retry.tiers_ms: tiers must be strictly ascending, got '%s'", text);
        tiers[(*n)++] = v;
        p = end;
        while (*p == ' ')
            p++;
        if (*p == ',') {
            p++;
            if (!*p)
                break;
        } else if (*p) {
            return kd_err_set(err, KD_ERR_INVALID,
                              "retry.tiers_ms: expected comma-separated integers, got '%s'", text);
        }
    }
    if (*n == 0)
        return kd_err_set(err, KD_ERR_INVALID, "retry.tiers_ms: at least one tier is needed");
    return 0;
}

int kd_retry_policy_load(kd_retry_policy *p, const kd_config *cfg, kd_err *err)
{
    memset(p, 0, sizeof *p);
    p->base_ms = kd_cfg_int(cfg, KD_CFG_RETRY_BASE_MS);
    p->cap_ms = kd_cfg_int(cfg, KD_CFG_RETRY_CAP_MS);
    int64_t attempts = kd_cfg_int(cfg, KD_CFG_RETRY_MAX_ATTEMPTS);
    int64_t requeues = kd_cfg_int(cfg, KD_CFG_RETRY_MAX_REQUEUES);
    int rc =
        kd_retry_parse_tiers(kd_cfg_str(cfg, KD_CFG_RETRY_TIERS_MS), p->tiers_ms, &p->n_tiers, err);
    if (rc)
        return rc;
    if (p->cap_ms < p->base_ms)
        return kd_err_set(err, KD_ERR_INVALID,
                          "retry.cap_ms: must be at least retry.base_ms (%lld), got %lld",
                          (long long)p->base_ms, (long long)p->cap_ms);
    p->max_attempts = (int)attempts;
    p->max_requeues = (int)requeues;
    return 0;
}

uint64_t kd_retry_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int64_t kd_retry_ceiling_ms(const kd_retry_policy *p, int attempt)
{
    int64_t c = p->base_ms;
    for (int i = 1; i < attempt && c < p->cap_ms; i++)
        c *= 2; /* base and cap are <= 1 day: no overflow before c reaches cap */
    return c < p->cap_ms ? c : p->cap_ms;
}

int64_t kd_retry_backoff_ms(const kd_retry_policy *p, int attempt, uint64_t *rng)
{
    uint64_t span = (uint64_t)kd_retry_ceiling_ms(p, attempt < 1 ? 1 : attempt) + 1;
    return (int64_t)(kd_retry_rand(rng) % span);
}

int kd_retry_tier_for(const kd_retry_policy *p, int64_t delay_ms)
{
    for (int i = 0; i < p->n_tiers; i++)
        if (p->tiers_ms[i] >= delay_ms)
            return i;
    return p->n_tiers - 1;
}

/* ---- taxonomy ------------------------------------------------------------------------ */

/* Codes the worker and its KONE client set for failures retrying may fix. */
static const char *const transient_codes[] = {
    "timeout",         /* no answer within kone.request_timeout_ms */
    "no_connection",   /* no KONE connection (token endpoint down, upgrade refused, ...) */
    "session_lost",    /* connection lost after the request; the session could not resume */
    "result_lost",     /* call accepted, then the connection went down before its result */
    "1005",            /* site link down: the call stayed in `created` */
    "nomem",           /* the worker ran out of memory */
    "shutdown",        /* the worker stopped before KONE answered (handed back, not retried) */
    "circuit_open",    /* the building's circuit is open: not sent, no attempt used */
    "rate_limited",    /* the building's rate limit held it back past its wait */
    "monitor_failed",  /* its call-state subscription failed (429, 5xx, no answer): not made */
    "group_mode_held", /* its group is in a refused lift mode, kone.group_mode_policy=hold */
};

/* Codes that are final whatever retrying would do. Every other word-like code is a
 * KONE refusal text or cancel reason ("INVALID_DIRECTION", "SAME_SOURCE_AND_DEST_FLOOR",
 * "NO_LIFT_AVAILABLE", ...), which is final too. */
static const char *const final_codes[] = {
    "invalid_job", "expired", "ignored_call", "invalid_payload", "call_refused", "cancelled",
};

static bool in_list(const char *code, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(code, list[i]) == 0)
            return true;
    return false;
}

bool kd_retry_code_is_status(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

kd_failure_class kd_retry_classify(const char *code)
{
    if (!code || !*code)
        return KD_FAIL_NONE;
    if (strcmp(code, "undecodable") == 0)
        return KD_FAIL_UNDECODABLE;
    if (in_list(code, transient_codes, sizeof transient_codes / sizeof *transient_codes))
        return KD_FAIL_TRANSIENT;
    if (in_list(code, final_codes, sizeof final_codes / sizeof *final_codes))
        return KD_FAIL_FINAL;
    if (kd_retry_code_is_status(code)) {
        /* a status of KONE's answer: 4xx is a refusal, except 401 (token: refreshed and
         * sent again, transient when that keeps failing), 408 and 429 (slow down) */
        long s = strtol(code, NULL, 10);
        if (s >= 400 && s < 500 && s != 401 && s != 408 && s != 429)
            return KD_FAIL_FINAL;
        return KD_FAIL_TRANSIENT;
    }
    return KD_FAIL_FINAL;
}

bool kd_retry_consumes_attempt(const char *code)
{
    /* not sent because of the building's state, not the job's: delayed, never used up */
    return !(code && (strcmp(code, "circuit_open") == 0 || strcmp(code, "group_mode_held") == 0));
}

/* ---- the decision ---------------------------------------------------------------------- */

kd_retry_decision kd_retry_decide(const kd_retry_policy *p, const kd_run *run, int64_t now_ms,
                                  uint64_t *rng)
{
    kd_retry_decision d = {.action = KD_RETRY_RESULT, .next_attempt = run->attempt};
    kd_failure_class f = run->failure;
    if (f == KD_FAIL_NONE)
        f = kd_retry_classify(run->error_code);
    if (run->outcome != KD_OUTCOME_FAILED || f != KD_FAIL_TRANSIENT)
        return d;
    int attempt = run->attempt < 1 ? 1 : run->attempt;
    bool uses = kd_retry_consumes_attempt(run->error_code);
    if (uses && attempt >= p->max_attempts) {
        d.action = KD_RETRY_DEAD;
        return d;
    }
    /* a job held for its group's lift mode (kone.group_mode_policy=hold) waits until its
     * deadline by design: counted, never cut short by the limit */
    bool held = run->error_code[0] && strcmp(run->error_code, "group_mode_held") == 0;
    if (p->max_requeues > 0 && run->requeues >= p->max_requeues && !held) {
        bool late = run->job.deadline > 0 && run->job.deadline <= now_ms;
        d.action = late ? KD_RETRY_EXPIRED : KD_RETRY_DEAD;
        d.requeue_limit = true;
        return d;
    }
    d.next_attempt = uses ? attempt + 1 : attempt;
    d.next_requeues = run->requeues + 1;
    /* parked (not tried): back at its building's next ping; a retry: the backoff */
    d.delay_ms = !uses && run->park_ms > 0 ? run->park_ms : kd_retry_backoff_ms(p, attempt, rng);
    d.tier = kd_retry_tier_for(p, d.delay_ms);
    if (run->job.deadline > 0) {
        int64_t left = run->job.deadline - now_ms;
        while (d.tier >= 0 && p->tiers_ms[d.tier] >= left)
            d.tier--;
        if (d.tier < 0) {
            d.action = KD_RETRY_EXPIRED;
            d.tier = 0;
            return d;
        }
    }
    d.action = KD_RETRY_AGAIN;
    return d;
}
