/* kone_ratelimit: the request rate of one building, as a pure token bucket with AIMD.
 *
 * A bucket holds up to `burst` tokens and fills at `rate` tokens a second; each request
 * for the building (call, hold_open, delete) takes one. kone.rate_per_s = 0 means no
 * configured limit: every request passes until KONE answers 429.
 *
 * 429s ("too many requests") lower the building's rate multiplicatively when they make up
 * share_pct % or more of its last answers (kd_rl_answered: a window of the last KD_RL_RING
 * answers, none older than KD_RL_WINDOW_US, at least KD_RL_MIN_ANSWERS of them; the window
 * starts afresh after each decrease, so the next one needs new evidence). Why a share and
 * not every 429: a KONE that answers 429 to a fifth of the calls at random (an ordinary
 * partial outage) drove a halving per second to the 1/s floor, 0.11 of the fault-free
 * goodput (issue 11); the adaptive concurrency limit (kone_conc.h) already backs off on
 * each 429, while a rate really above KONE's limit gives a share that keeps growing with
 * the excess (twice the limit: half the answers are 429). share_pct 0: every 429 counts
 * (the old behaviour). At 20 % random 429s, 50 % of 32 answers is about 1e-5 likely, of a
 * full window of 64 about 1e-9 (test: 10 minutes at 200 answers/s, no decrease).
 * A decrease halves the rate, never
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
#define KD_RL_RING 64                 /* answers the 429 window holds */
#define KD_RL_MIN_ANSWERS 32          /* ... before their 429 share may slow down */
#define KD_RL_WINDOW_US 30000000      /* ... none older than this */
#define KD_RL_SHARE_PCT 50            /* kone.rate_slowdown_share's default */

typedef struct kd_rl_answer {
    int64_t at;
    bool too_many; /* 429 */
} kd_rl_answer;

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
    /* the last answers, a ring (kd_rl_answered) */
    int share_pct; /* 429 share (%) of them that slows down; 0: any 429 */
    kd_rl_answer ans[KD_RL_RING];
    int ans_n, ans_next;
} kd_rl;

/* share_pct starts at KD_RL_SHARE_PCT (set it after). */
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
/* KONE answered a request of the building (too_many: with 429). Returns true when the 429
 * share of the window reached share_pct and the rate was lowered (kd_rl_slow_down). */
bool kd_rl_answered(kd_rl *r, int64_t now, bool too_many);
/* Answers and 429s among them in the window now (for logs). */
void kd_rl_window(const kd_rl *r, int64_t now, int *answers, int *too_many);
/* The current rate per second after recovery up to now; 0 when unlimited. */
double kd_rl_rate(const kd_rl *r, int64_t now);
/* Fully recovered and idle: nothing to remember (the caller may forget the bucket). */
bool kd_rl_idle(const kd_rl *r, int64_t now);

#endif
