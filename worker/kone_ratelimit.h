/* kone_ratelimit: the request rate of one building, as a pure token bucket with AIMD.
 *
 * A bucket holds up to `burst` tokens and fills at `rate` tokens a second; each request
 * for the building (call, hold_open, delete) takes one. kone.rate_per_s = 0 means no
 * configured limit: every request passes until KONE answers 429.
 *
 * A 429 ("too many requests") lowers the building's rate multiplicatively: halved, never
 * below KD_RL_FLOOR (1/s), at most once per KD_RL_SLOWDOWN_GAP_US so that a burst of
 * requests already in flight, all answered 429, counts as one signal. Without a configured
 * limit the first 429 starts from the rate actually sent in the last second. The rate then
 * recovers additively, by max(KD_RL_RECOVER_MIN, ceiling / KD_RL_RECOVER_S) per second,
 * up to its ceiling (the configured limit; with none, the rate it had when slowed, after
 * which the bucket is unlimited again).
 *
 * No clock, no I/O: `now` (monotonic µs) is passed in, so the token math, the decrease and
 * the recovery are unit-tested with a fake clock (tests/unit/test_worker_kone_ratelimit.c).
 */
#ifndef KD_WORKER_KONE_RATELIMIT_H
#define KD_WORKER_KONE_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#define KD_RL_FLOOR 1.0               /* lowest rate a 429 leads to, per second */
#define KD_RL_SLOWDOWN_GAP_US 1000000 /* one decrease per second at most */
#define KD_RL_RECOVER_S 20.0          /* back to the ceiling in about this long */
#define KD_RL_RECOVER_MIN 0.5         /* ... but at least this much per second */

typedef struct kd_rl {
    double limit;     /* configured rate per second; 0: none */
    double burst_cfg; /* configured burst; 0: one second's worth */
    double rate;      /* current rate; 0: unlimited */
    double ceiling;   /* what the rate recovers to */
    double tokens;
    int64_t at;         /* last refill */
    int64_t slowed_at;  /* last decrease; 0 none */
    uint64_t slowdowns; /* decreases so far */
    /* requests sent, counted per second (the starting point when no limit is set) */
    int64_t win_start;
    unsigned win_n, prev_n;
} kd_rl;

void kd_rl_init(kd_rl *r, double limit, double burst, int64_t now);
/* Refills tokens and recovers the rate up to now. */
void kd_rl_advance(kd_rl *r, int64_t now);
/* Takes a token for one request; false when none is there (the caller queues the request
 * and asks kd_rl_wait_us when to try again). Always true while unlimited. */
bool kd_rl_take(kd_rl *r, int64_t now);
/* µs until a token is there (0: now). */
int64_t kd_rl_wait_us(kd_rl *r, int64_t now);
/* KONE answered 429: lowers the rate (returns false when a decrease in the last
 * KD_RL_SLOWDOWN_GAP_US already covered it). */
bool kd_rl_slow_down(kd_rl *r, int64_t now);
/* The current rate per second after recovery up to now; 0 when unlimited. */
double kd_rl_rate(const kd_rl *r, int64_t now);
/* Fully recovered and idle: nothing to remember (the caller may forget the bucket). */
bool kd_rl_idle(const kd_rl *r, int64_t now);

#endif
