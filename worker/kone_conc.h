/* kone_conc: adaptive concurrency, the number of KONE requests one building (or the whole
 * worker) may have outstanding, as a pure AIMD limit (the model of Netflix's
 * concurrency-limits AIMDLimit, and of TCP's congestion window).
 *
 *   success (answered 2xx, accepted)        limit + 1, up to max
 *   drop (5xx, 408, 429, unanswered on a    limit · decrease_pct / 100, down to min
 *   connection that stayed up)
 *   anything else (a final refusal, a       unchanged
 *   local decision, a connection lost)
 *
 * Both only while the limit is in use (at least half of it taken when the request ends):
 * a limit nobody tests learns nothing from the answers.
 *
 * Why AIMD and not a gradient (RTT-based) limit: KONE's round trip says little about its
 * load (a call's answer time is dominated by the site, not the cloud), while its 5xx, 429
 * and timeouts say it plainly. Why +1 per success and a cut per drop rather than TCP's
 * +1 per window: with p the share of drops the limit settles where the expected change per
 * call is nil, (1 − p) = p · (1 − d) · limit, so at the default d = 0.9 an ordinary partial
 * outage (20 % of calls answered 500) keeps it about 40 (kone.concurrency_max 64: the pool slows
 * a little, never stops), half the calls failing about 10, and a KONE that answers nothing
 * but errors drives it to `min` within a few dozen calls; each success then adds one again.
 * Why only while in use: a quiet building's limit must not grow without end (it would come
 * back to a burst), and a trickle of failures, or a request rate held down by 429s
 * (kone_ratelimit.h), says nothing about how many requests at once KONE takes: without the
 * guard those drove the limit to its minimum in it_fault_kone_errors.
 *
 * Jobs above the limit are not failed: the caller keeps them (kone_bld.c: the building's
 * wait queue) until a request ends and makes room.
 *
 * No clock, no I/O, no lock: the caller serialises (the KONE loop under k->blds.bmu), so every
 * transition is unit-tested (tests/unit/test_worker_kone_conc.c).
 */
#ifndef KD_WORKER_KONE_CONC_H
#define KD_WORKER_KONE_CONC_H

#include <stdbool.h>
#include <stdint.h>

#include "kd_config.h"
#include "kd_run.h"

/* What one finished request says about KONE's load. */
typedef enum {
    KD_CC_NEUTRAL = 0, /* nothing (refused for good, decided locally, connection lost) */
    KD_CC_SUCCESS,     /* answered: KONE keeps up */
    KD_CC_DROP,        /* 5xx, 408, 429, unanswered: KONE is degraded */
} kd_cc_signal;

typedef struct kd_cc_cfg {
    int min;          /* kone.concurrency_min: the lowest limit (>= 1) */
    int max;          /* kd_cc_max_of: the highest, and the start */
    int decrease_pct; /* kone.concurrency_decrease_pct: a drop keeps this share (1..100;
                       * 100: the limit stays at max, adaptive concurrency off) */
} kd_cc_cfg;

typedef struct kd_cc {
    double limit;   /* current limit (its integer part is what admits) */
    int inflight;   /* requests taken, not done */
    uint64_t drops; /* decreases so far */
} kd_cc;

void kd_cc_init(kd_cc *c, const kd_cc_cfg *cfg);
/* Is there room for one more request? */
bool kd_cc_room(const kd_cc *c);
/* One more request is out (the caller checked kd_cc_room). */
void kd_cc_take(kd_cc *c);
/* A request taken is done and says s. Returns true when the integer limit changed. */
bool kd_cc_done(kd_cc *c, const kd_cc_cfg *cfg, kd_cc_signal s);
/* The current limit, an integer in [min, max]. */
int kd_cc_limit(const kd_cc *c);

/* The highest limit, and the start, of the worker's and (unless kone.concurrency_building_max
 * is lower) each building's: kone.concurrency_max, or worker.inflight when that is smaller (a
 * request is always a job the worker holds). */
int kd_cc_max_of(const kd_config *cfg);

/* What a finished run says about KONE's load: kd_brk_degraded_of is a DROP; a success (or
 * an accepted call) SUCCESS; anything else NEUTRAL. */
kd_cc_signal kd_cc_signal_of(kd_outcome o, const char *code, bool conn_lost);

#endif
