/* kone_breaker.c: the per-building circuit breaker state machine (see kone_breaker.h).
 *
 * Why consecutive failures rather than a failure rate: a building whose site link is down
 * fails every call, and calls for one building are few; a run of N failures with no
 * success between them is a clear signal, cheap to keep (one counter), and one success
 * (the building answered) proves the link is up again.
 * Why the backoff keeps growing across a failed probation: a building that answers pings
 * but not calls would otherwise be probed at the base rate for ever.
 * Why half-open lets every call through rather than one trial: the ping that answered
 * already tested what the breaker guards against (KONE fails a building's ping with 1005
 * while its site link is down). Holding all but one call back until a trial call finished
 * (which for a call means its state changed, seconds later) made every other job of the
 * building take a trip through the retry queues, and a building without new jobs stayed
 * half-open for ever. Now calls flow at once and the first verdict among them decides.
 */
#include "kone_breaker.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

void kd_brk_init(kd_breaker *b, int64_t now)
{
    memset(b, 0, sizeof *b);
    b->st = KD_BRK_CLOSED;
    b->since = now;
}

const char *kd_brk_state_name(kd_brk_state s)
{
    switch (s) {
    case KD_BRK_CLOSED: return "closed";
    case KD_BRK_HALF_OPEN: return "half-open";
    case KD_BRK_OPEN: return "open";
    }
    return "?";
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

static void go_open(kd_breaker *b, const kd_brk_cfg *c, int64_t now, uint64_t rnd)
{
    b->st = KD_BRK_OPEN;
    b->fails = 0;
    b->probing = false;
    b->since = now;
    b->probe_at = now + kd_brk_backoff_us(c, b->probe_fails, rnd);
    b->opens++;
}

static void go_closed(kd_breaker *b, int64_t now)
{
    b->st = KD_BRK_CLOSED;
    b->fails = 0;
    b->probe_fails = 0;
    b->probing = false;
    b->since = now;
}

bool kd_brk_admit(kd_breaker *b, const kd_brk_cfg *c, bool *trial)
{
    *trial = false;
    if (c->failures <= 0)
        return true;
    switch (b->st) {
    case KD_BRK_CLOSED: return true;
    case KD_BRK_OPEN: return false;
    case KD_BRK_HALF_OPEN:
        *trial = true; /* admitted on probation: its verdict decides */
        return true;
    }
    return true;
}

bool kd_brk_record(kd_breaker *b, const kd_brk_cfg *c, kd_brk_verdict v, bool trial, int64_t now,
                   uint64_t rnd)
{
    if (c->failures <= 0 || v == KD_BRK_NEUTRAL)
        return false; /* no verdict: a later call decides */
    switch (b->st) {
    case KD_BRK_CLOSED:
        if (v == KD_BRK_SUCCESS) {
            b->fails = 0;
            return false;
        }
        if (++b->fails < c->failures)
            return false;
        go_open(b, c, now, rnd);
        return true;
    case KD_BRK_HALF_OPEN:
        if (!trial)
            return false; /* a call admitted before the ping answered: old news */
        if (v == KD_BRK_SUCCESS) {
            go_closed(b, now);
        } else {
            b->probe_fails++;
            go_open(b, c, now, rnd);
        }
        return true;
    case KD_BRK_OPEN: return false;
    }
    return false;
}

bool kd_brk_probe_due(const kd_breaker *b, int64_t now)
{
    return b->st == KD_BRK_OPEN && !b->probing && now >= b->probe_at;
}

void kd_brk_probe_sent(kd_breaker *b)
{
    b->probing = true;
}

bool kd_brk_probe_done(kd_breaker *b, const kd_brk_cfg *c, kd_brk_verdict v, int64_t now,
                       uint64_t rnd)
{
    b->probing = false;
    if (b->st != KD_BRK_OPEN)
        return false;
    switch (v) {
    case KD_BRK_SUCCESS:
        b->st = KD_BRK_HALF_OPEN;
        b->since = now;
        return true;
    case KD_BRK_FAILURE:
        b->probe_fails++;
        b->probe_at = now + kd_brk_backoff_us(c, b->probe_fails, rnd);
        return false;
    case KD_BRK_NEUTRAL: b->probe_at = now + kd_brk_backoff_us(c, 0, rnd); return false;
    }
    return false;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

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
        if (!*code || all_digits(code) || !strcmp(code, "invalid_job") || !strcmp(code, "expired"))
            return KD_BRK_NEUTRAL;
        return KD_BRK_SUCCESS;
    case KD_OUTCOME_FAILED:
    case KD_OUTCOME_UNKNOWN: /* a call accepted, then lost track of: judged like a failure */
        if (!strcmp(code, "1005") || !strcmp(code, "timeout"))
            return conn_lost ? KD_BRK_NEUTRAL : KD_BRK_FAILURE;
        if (all_digits(code)) {
            long s = strtol(code, NULL, 10);
            return s >= 500 || s == 408 ? KD_BRK_FAILURE : KD_BRK_NEUTRAL; /* not 429/401 */
        }
        return KD_BRK_NEUTRAL; /* no_connection, session_lost, result_lost, shutdown, ... */
    case KD_OUTCOME_EXPIRED:
    case KD_OUTCOME_NONE: return KD_BRK_NEUTRAL;
    }
    return KD_BRK_NEUTRAL;
}
