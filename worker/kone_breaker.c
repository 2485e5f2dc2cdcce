/* kone_breaker.c: the per-building circuit breaker state machine (see kone_breaker.h).
 *
 * Why a failure rate over a window rather than a run of consecutive failures: with
 * 64 calls in flight and KONE failing 20% of them, five failures in a row come within a
 * second, and the old breaker stopped a healthy building for nothing (issue 11). A share
 * over a window with a minimum number of verdicts is a statistic: at a 20% failure rate the
 * chance that >= 80% of 20 calls fail is about 1e-8, while a building whose link is down
 * fails nearly every call.
 * Why a window of the last N calls, with an age limit: see kone_breaker.h.
 * Why a bounded half-open trial decided by its failure share: one bad verdict among calls
 * that were in flight anyway no longer reopens it (flapping); calls beyond the trial are held
 * by the caller, not refused, so they do not take a trip through the retry queues.
 * Why the backoff keeps growing across a failed probation: a building that answers pings but
 * not calls would otherwise be probed at the base rate for ever.
 */
#include "kone_breaker.h"

#include <stdlib.h>
#include <string.h>

#include "kd_retry.h"

void kd_brk_init(kd_breaker *b, int64_t now)
{
    memset(b, 0, sizeof *b);
    b->st = KD_BRK_CLOSED;
    b->since = now;
}

const char *kd_brk_state_name(kd_brk_state s)
{
    static const char *const names[] = {
        [KD_BRK_CLOSED] = "closed", [KD_BRK_HALF_OPEN] = "half-open", [KD_BRK_OPEN] = "open"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

int64_t kd_brk_backoff_us(const kd_brk_cfg *c, int n, uint64_t rnd)
{
    int64_t d = c->base_us > 0 ? c->base_us : 1;
    for (int i = 0; i < n && d < c->cap_us; i++)
        d *= 2;
    if (d > c->cap_us && c->cap_us > 0)
        d = c->cap_us;
    int64_t half = d / 2;
    return half + (int64_t)(rnd % (uint64_t)(d - half + 1));
}

/* ------------------------------------------------------------------ the window */

static int ring_of(const kd_brk_cfg *c)
{
    return c->calls < 1 ? 1 : c->calls > KD_BRK_RING ? KD_BRK_RING : c->calls;
}

static void win_clear(kd_breaker *b)
{
    b->win_n = b->win_next = 0;
}

static void win_add(kd_breaker *b, const kd_brk_cfg *c, int64_t now, bool fail)
{
    int n = ring_of(c);
    if (b->win_next >= n)
        b->win_next = 0;
    b->win[b->win_next] = (kd_brk_entry){now, fail};
    b->win_next = (b->win_next + 1) % n;
    if (b->win_n < n)
        b->win_n++;
}

static bool fresh(const kd_brk_entry *e, const kd_brk_cfg *c, int64_t now)
{
    return c->window_us <= 0 || now - e->at < c->window_us;
}

/* The newest success still in the window becomes a failure (false: none). */
static bool win_retract(kd_breaker *b, const kd_brk_cfg *c, int64_t now)
{
    int n = ring_of(c);
    for (int k = 1; k <= b->win_n; k++) {
        kd_brk_entry *e = &b->win[(b->win_next - k + n) % n];
        if (!e->fail && fresh(e, c, now)) {
            e->fail = true;
            return true;
        }
    }
    return false;
}

void kd_brk_window(const kd_breaker *b, const kd_brk_cfg *c, int64_t now, int *calls, int *fails)
{
    int n = 0, f = 0;
    for (int i = 0; i < b->win_n; i++)
        if (fresh(&b->win[i], c, now)) {
            n++;
            f += b->win[i].fail;
        }
    *calls = n;
    *fails = f;
}

/* ------------------------------------------------------------------ transitions */

static void go_open(kd_breaker *b, const kd_brk_cfg *c, int64_t now, uint64_t rnd)
{
    b->st = KD_BRK_OPEN;
    b->gen++;
    /* a suspicion ping out (CLOSED) stays out: the open circuit's first ping */
    b->suspect = false;
    b->since = now;
    b->probe_at = now + kd_brk_backoff_us(c, b->probe_fails, rnd);
    b->opens++;
    win_clear(b);
}

static void go_closed(kd_breaker *b, int64_t now)
{
    b->st = KD_BRK_CLOSED;
    b->gen++;
    b->probe_fails = 0;
    b->probing = false;
    b->suspect = false;
    b->suspect_n = 0;
    b->suspect_after = 0;
    b->since = now;
    b->closes++;
    win_clear(b);
}

static void go_half_open(kd_breaker *b, int64_t now)
{
    b->st = KD_BRK_HALF_OPEN;
    b->gen++;
    b->since = now;
    b->trials_out = b->trial_ok = b->trial_fail = 0;
}

static int trials_of(const kd_brk_cfg *c)
{
    return c->trials > 0 ? c->trials : 1;
}

kd_brk_admission kd_brk_admit(kd_breaker *b, const kd_brk_cfg *c, uint64_t *ticket)
{
    *ticket = b->gen;
    if (c->rate_pct <= 0)
        return KD_BRK_GO;
    switch (b->st) {
    case KD_BRK_CLOSED: return KD_BRK_GO;
    case KD_BRK_OPEN: return KD_BRK_REFUSE;
    case KD_BRK_HALF_OPEN:
        /* decided trials keep their place: exactly `trials` verdicts decide */
        if (b->trials_out + b->trial_ok + b->trial_fail >= trials_of(c))
            return KD_BRK_HOLD;
        b->trials_out++;
        return KD_BRK_GO;
    }
    return KD_BRK_GO;
}

/* rate_pct % of n, compared without rounding: f/n >= rate/100 */
static bool at_rate(const kd_brk_cfg *c, int fails, int n)
{
    return n > 0 && (int64_t)fails * 100 >= (int64_t)c->rate_pct * n;
}

static bool record_half_open(kd_breaker *b, const kd_brk_cfg *c, kd_brk_verdict v, bool retract,
                             int64_t now, uint64_t rnd)
{
    if (retract) {
        if (v != KD_BRK_FAILURE || b->trial_ok <= 0)
            return false;
        b->trial_ok--;
        b->trial_fail++;
    } else {
        if (b->trials_out > 0)
            b->trials_out--;
        if (v == KD_BRK_SUCCESS)
            b->trial_ok++;
        else if (v == KD_BRK_FAILURE)
            b->trial_fail++;
        else
            return false; /* no verdict: its place goes to another call */
    }
    int n = trials_of(c);
    if (at_rate(c, b->trial_fail, n)) {
        b->probe_fails++;
        go_open(b, c, now, rnd);
        return true;
    }
    /* even if every trial still out and every place still free fails, the share stays below */
    int undecided = n - b->trial_ok - b->trial_fail;
    if (!at_rate(c, b->trial_fail + undecided, n)) {
        go_closed(b, now);
        return true;
    }
    return false;
}

bool kd_brk_record(kd_breaker *b, const kd_brk_cfg *c, kd_brk_verdict v, uint64_t ticket,
                   bool retract, int64_t now, uint64_t rnd)
{
    if (c->rate_pct <= 0 || ticket != b->gen)
        return false; /* off, or admitted before the last transition: old news */
    switch (b->st) {
    case KD_BRK_CLOSED: {
        if (v == KD_BRK_NEUTRAL || (retract && v != KD_BRK_FAILURE))
            return false;
        if (!retract)
            win_add(b, c, now, v == KD_BRK_FAILURE);
        else if (!win_retract(b, c, now))
            win_add(b, c, now, true); /* its success aged out: a failure of its own */
        if (v != KD_BRK_FAILURE)
            return false;
        int n, f;
        kd_brk_window(b, c, now, &n, &f);
        if (n < (c->min_calls > 0 ? c->min_calls : 1) || !at_rate(c, f, n))
            return false;
        go_open(b, c, now, rnd);
        return true;
    }
    case KD_BRK_HALF_OPEN: return record_half_open(b, c, v, retract, now, rnd);
    case KD_BRK_OPEN: return false;
    }
    return false;
}

/* ------------------------------------------------------------------ pings */

bool kd_brk_probe_due(const kd_breaker *b, int64_t now)
{
    return b->st == KD_BRK_OPEN && !b->probing && now >= b->probe_at;
}

void kd_brk_probe_sent(kd_breaker *b)
{
    b->probing = true;
}

bool kd_brk_suspect(kd_breaker *b, const kd_brk_cfg *c, int64_t now)
{
    if (c->rate_pct <= 0 || b->st != KD_BRK_CLOSED || b->probing || now < b->suspect_after)
        return false;
    b->probing = true;
    b->suspect = true;
    return true;
}

void kd_brk_progress(kd_breaker *b)
{
    b->suspect_n = 0;
    b->suspect_after = 0;
}

static bool suspicion_done(kd_breaker *b, const kd_brk_cfg *c, kd_brk_verdict v, int64_t now,
                           uint64_t rnd)
{
    b->suspect = false;
    switch (v) {
    case KD_BRK_FAILURE: go_open(b, c, now, rnd); return true;
    case KD_BRK_SUCCESS:
        b->suspect_after = now + kd_brk_backoff_us(c, b->suspect_n, rnd);
        if (b->suspect_n < 30)
            b->suspect_n++;
        return false;
    case KD_BRK_NEUTRAL: b->suspect_after = now + kd_brk_backoff_us(c, 0, rnd); return false;
    }
    return false;
}

bool kd_brk_probe_done(kd_breaker *b, const kd_brk_cfg *c, kd_brk_verdict v, int64_t now,
                       uint64_t rnd)
{
    b->probing = false;
    if (b->st == KD_BRK_CLOSED && b->suspect)
        return suspicion_done(b, c, v, now, rnd);
    if (b->st != KD_BRK_OPEN)
        return false;
    switch (v) {
    case KD_BRK_SUCCESS: go_half_open(b, now); return true;
    case KD_BRK_FAILURE:
        b->probe_fails++;
        b->probe_at = now + kd_brk_backoff_us(c, b->probe_fails, rnd);
        return false;
    case KD_BRK_NEUTRAL: b->probe_at = now + kd_brk_backoff_us(c, 0, rnd); return false;
    }
    return false;
}

/* ------------------------------------------------------------------ verdicts */

kd_brk_verdict kd_brk_verdict_of(kd_outcome o, const char *code, bool conn_lost)
{
    if (!code)
        code = "";
    switch (o) {
    case KD_OUTCOME_SUCCEEDED: return KD_BRK_SUCCESS;
    case KD_OUTCOME_REJECTED:
        /* KONE's group controller refused the call ("Ignoring call ...", a cancel reason):
         * the building answered. A 4xx status comes from the API in front of it (scope,
         * unknown building, validation) and says nothing about the site; invalid jobs
         * never left the worker. */
        if (!*code || kd_retry_code_is_status(code) || !strcmp(code, "invalid_job") ||
            !strcmp(code, "expired"))
            return KD_BRK_NEUTRAL;
        return KD_BRK_SUCCESS;
    case KD_OUTCOME_FAILED:
    case KD_OUTCOME_UNKNOWN: /* a call accepted, then lost track of: judged like a failure */
        /* 1005: the site link is down, or an accepted call made no progress. Everything
         * else is KONE's service (5xx, 429, timeouts: kd_brk_degraded_of) or ours. */
        if (!strcmp(code, "1005"))
            return conn_lost ? KD_BRK_NEUTRAL : KD_BRK_FAILURE;
        return KD_BRK_NEUTRAL;
    case KD_OUTCOME_EXPIRED:
    case KD_OUTCOME_NONE: return KD_BRK_NEUTRAL;
    }
    return KD_BRK_NEUTRAL;
}

bool kd_brk_degraded_of(kd_outcome o, const char *code, bool conn_lost)
{
    if (!code || (o != KD_OUTCOME_FAILED && o != KD_OUTCOME_UNKNOWN))
        return false;
    if (!strcmp(code, "timeout"))
        return !conn_lost;
    if (!kd_retry_code_is_status(code))
        return false;
    long s = strtol(code, NULL, 10);
    return (s >= 500 && s < 600) || s == 408 || s == 429; /* 1005 is the link's */
}
