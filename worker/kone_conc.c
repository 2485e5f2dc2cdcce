/* kone_conc.c: adaptive concurrency as a pure AIMD limit (see kone_conc.h). */
#include "kone_conc.h"

#include "kone_breaker.h"

void kd_cc_init(kd_cc *c, const kd_cc_cfg *cfg)
{
    c->limit = cfg->max;
    c->inflight = 0;
    c->drops = 0;
}

int kd_cc_max_of(const kd_config *cfg)
{
    /* Not worker.inflight alone: a job holds its place after KONE's answer too (following its
     * call to the decisive state, recording its outcome), so with the two limits one, KONE
     * had fewer requests out than it was allowed and the worker idled between them (issue
     * 17: 0.69 of 64 / 50 ms at 50 ms of KONE latency, and half the rate without latency). */
    int64_t kone = kd_cfg_int(cfg, KD_CFG_KONE_CONCURRENCY_MAX);
    int64_t held = kd_cfg_int(cfg, KD_CFG_WORKER_INFLIGHT);
    return (int)(kone < held ? kone : held);
}

int kd_cc_limit(const kd_cc *c)
{
    return (int)c->limit;
}

bool kd_cc_room(const kd_cc *c)
{
    return c->inflight < kd_cc_limit(c);
}

void kd_cc_take(kd_cc *c)
{
    c->inflight++;
}

bool kd_cc_done(kd_cc *c, const kd_cc_cfg *cfg, kd_cc_signal s)
{
    int before = kd_cc_limit(c);
    /* was the limit in use while this request was out (itself included)? A limit nobody
     * tests learns nothing: not raised (a quiet building would come back to a burst), not
     * lowered (KONE failing a trickle of requests says nothing about how many at once it
     * takes; a request rate held down by 429s must not grind the limit to its minimum) */
    bool in_use = 2 * c->inflight >= before;
    if (c->inflight > 0)
        c->inflight--;
    if (!in_use)
        return false;
    if (s == KD_CC_SUCCESS) {
        c->limit += 1;
        if (c->limit > cfg->max)
            c->limit = cfg->max;
    } else if (s == KD_CC_DROP && cfg->decrease_pct < 100) {
        c->limit = c->limit * cfg->decrease_pct / 100.0;
        if (c->limit < cfg->min)
            c->limit = cfg->min;
        c->drops++;
    }
    return kd_cc_limit(c) != before;
}

kd_cc_signal kd_cc_signal_of(kd_outcome o, const char *code, bool conn_lost)
{
    if (kd_brk_degraded_of(o, code, conn_lost))
        return KD_CC_DROP;
    /* the building answered (a success, or its controller's own refusal) */
    return kd_brk_verdict_of(o, code, conn_lost) == KD_BRK_SUCCESS ? KD_CC_SUCCESS : KD_CC_NEUTRAL;
}
