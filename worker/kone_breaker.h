/* kone_breaker: the circuit breaker of one building, as a pure state machine deciding on a
 * failure rate over a sliding window (the model of resilience4j and Envoy's outlier
 * detection).
 *
 *     failure share >= rate over the window,             a ping answers 200
 *     at least min_calls verdicts in it
 *   CLOSED ─────────────────────────────────> OPEN ─────────────────────────> HALF_OPEN
 *     ▲                                        ▲ │ ping fails: next ping after        │
 *     │                                        │ └ base·2^n (capped, jittered)        │
 *     │ the trial calls' failure share          │ the trial calls' failure share       │
 *     │ cannot reach the rate any more          │ reached the rate                     │
 *     └────────────────────────────────────────┼──────────────────────────────────────┘
 *                                              └──────────────────────────────────────┘
 *
 * CLOSED lets every call through and keeps its last `calls` verdicts (at most KD_BRK_RING),
 * those older than window_us aging out. Once the window holds min_calls verdicts and failures
 * make up rate_pct % of them, the circuit opens. Why the last N calls rather than a pure time
 * window: a link going down stops successes at once, but failures come slowly (each call
 * is stuck until kone.call_timeout_ms, and calls in flight are bounded), so in a time window
 * the successes from before the outage outweighed the failures for as long as the window
 * lasted; failures push them out of a window of calls.
 * What a failure is (kd_brk_verdict_of) is the caller's business: the KONE client counts only
 * evidence that the building's link is down (1005, no progress), never KONE's own trouble
 * (5xx, 429, timeouts: docs/failure-handling.md, "failure domains").
 * OPEN refuses every call and pings the building with exponential backoff until one answers.
 * HALF_OPEN (the ping answered) admits at most `trials` calls at once; further calls are told
 * to HOLD (the caller keeps them until the trials decide, no trip through a retry queue).
 * The decision comes as soon as it is certain: the failures among the trials reach rate_pct %
 * of `trials` (OPEN again, the backoff goes on growing), or can no longer reach it whatever
 * the remaining trials say (CLOSED, with an empty window). A trial without a verdict (429, a
 * connection lost) gives its place to another call.
 *
 * Suspicion (CLOSED): a link that goes down stops the building's call results at once, but
 * its calls fail (1005) only when kone.call_timeout_ms ends, 30 s later by default, and all
 * that while they hold the worker's places (issue 11: the healthy buildings kept 0.11 of
 * their goodput). So the caller pings a building as soon as its calls make no progress for
 * a short while (kd_brk_suspect: one ping at a time, not again before a backoff that grows
 * while the pings answer 200, reset by kd_brk_progress), and a ping failed with the link's
 * own error (FAILURE: KONE and kone-sim answer 1005) opens the circuit at once, like the
 * window would have 30 s later. A ping answered 200 changes nothing; one unanswered says
 * nothing (KONE's service, not the link). A circuit that opens while a suspicion ping is
 * out keeps that ping as the first ping of the open circuit.
 *
 * No flapping: every admission carries a ticket (the breaker's generation, bumped by each
 * transition); verdicts of calls admitted before the last transition are old news and change
 * nothing. A call stuck since before the circuit closed cannot reopen it after.
 *
 * No clock, no randomness, no I/O: the caller passes `now` (monotonic µs) and a random
 * number for the jitter, so every transition is unit-tested with a fake clock
 * (tests/unit/test_worker_kone_breaker.c).
 */
#ifndef KD_WORKER_KONE_BREAKER_H
#define KD_WORKER_KONE_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#include "kd_config.h"
#include "kd_run.h"

#define KD_BRK_RING                                                                                \
    KD_CONFIG_KONE_BREAKER_RING /* most verdicts a window holds (kone.breaker_window_calls) */

typedef enum { KD_BRK_CLOSED = 0, KD_BRK_HALF_OPEN = 1, KD_BRK_OPEN = 2 } kd_brk_state;

/* What one finished call says about its building. */
typedef enum {
    KD_BRK_NEUTRAL = 0, /* nothing (local decision, KONE's own trouble, connection lost) */
    KD_BRK_SUCCESS,     /* the building answered */
    KD_BRK_FAILURE,     /* the building did not: its link is down */
} kd_brk_verdict;

/* What kd_brk_admit says of a new call. */
typedef enum {
    KD_BRK_GO = 0, /* send it */
    KD_BRK_HOLD,   /* half-open, every trial place taken: keep it until they decide */
    KD_BRK_REFUSE, /* open */
} kd_brk_admission;

typedef struct kd_brk_cfg {
    int rate_pct;      /* failure share (%) that opens the circuit; 0: never opens */
    int min_calls;     /* verdicts the window must hold before it may open */
    int calls;         /* verdicts the window holds (1..KD_BRK_RING) */
    int64_t window_us; /* ... none older than this */
    int trials;        /* calls admitted at once while half-open */
    int64_t base_us;   /* first ping delay after opening */
    int64_t cap_us;    /* longest ping delay */
} kd_brk_cfg;

typedef struct kd_brk_entry {
    int64_t at; /* when the verdict came */
    bool fail;
} kd_brk_entry;

typedef struct kd_breaker {
    kd_brk_state st;
    uint64_t gen;                  /* bumped by every transition: admission tickets */
    kd_brk_entry win[KD_BRK_RING]; /* CLOSED: the last verdicts, a ring */
    int win_n, win_next;           /* entries held, next to write */
    int trials_out;                /* HALF_OPEN: trials admitted, no verdict yet */
    int trial_ok, trial_fail;      /* HALF_OPEN: their verdicts so far */
    int probe_fails;  /* failed pings (and probations) since it last closed: backoff exponent */
    bool probing;     /* OPEN: a ping is out */
    int64_t probe_at; /* OPEN: when the next ping is due */
    int64_t since;    /* when the current state began */
    uint64_t opens;   /* times it opened (CLOSED or HALF_OPEN -> OPEN) */
    uint64_t closes;  /* times it closed (HALF_OPEN -> CLOSED) */
    bool suspect;     /* CLOSED: the ping out is a suspicion ping */
    int suspect_n;    /* CLOSED: suspicion pings answered 200 since the last progress */
    int64_t suspect_after; /* CLOSED: no suspicion ping before this */
} kd_breaker;

void kd_brk_init(kd_breaker *b, int64_t now);
const char *kd_brk_state_name(kd_brk_state s);

/* May a call for this building be sent now? *ticket is set for GO (pass it back to
 * kd_brk_record with the call's verdict, exactly once, NEUTRAL included: a trial's place is
 * given back that way). */
kd_brk_admission kd_brk_admit(kd_breaker *b, const kd_brk_cfg *c, uint64_t *ticket);

/* A call admitted with `ticket` says v about its building. retract: the call had already
 * told SUCCESS (it was accepted) and now fails (stuck, no progress): the success is taken
 * back. Returns true when the state changed. */
bool kd_brk_record(kd_breaker *b, const kd_brk_cfg *c, kd_brk_verdict v, uint64_t ticket,
                   bool retract, int64_t now, uint64_t rnd);

/* Verdicts in the window now (CLOSED), for logs and metrics. */
void kd_brk_window(const kd_breaker *b, const kd_brk_cfg *c, int64_t now, int *calls, int *fails);

/* OPEN, no ping out and the next one is due. */
bool kd_brk_probe_due(const kd_breaker *b, int64_t now);
void kd_brk_probe_sent(kd_breaker *b);
/* The ping's verdict. OPEN: SUCCESS (200) -> HALF_OPEN; FAILURE -> next ping after the
 * grown backoff; NEUTRAL (not sent or its connection lost) -> again after the base delay.
 * CLOSED (a suspicion ping): FAILURE (1005) -> OPEN; SUCCESS -> no suspicion ping before
 * base·2^n (n: suspicion pings answered 200 since the last progress); NEUTRAL -> not before
 * the base delay.
 * Returns true when the state changed. */
bool kd_brk_probe_done(kd_breaker *b, const kd_brk_cfg *c, kd_brk_verdict v, int64_t now,
                       uint64_t rnd);

/* CLOSED, its calls make no progress (the caller's judgement): may a suspicion ping go now?
 * true: it is out (kd_brk_probe_done gives its verdict). */
bool kd_brk_suspect(kd_breaker *b, const kd_brk_cfg *c, int64_t now);
/* The building's calls made progress (a call result, an answer): suspicion starts afresh. */
void kd_brk_progress(kd_breaker *b);

/* The delay before ping n (0 first): d = min(cap, base·2^n), uniform in [d/2, d]. */
int64_t kd_brk_backoff_us(const kd_brk_cfg *c, int n, uint64_t rnd);

/* What a finished run says about its building's link. conn_lost: the connection that
 * carried the request was lost before the outcome (a stall then is the connection's fault,
 * not the building's). Only 1005 (link down, no progress) is a FAILURE: 5xx, 408, 429 and
 * unanswered requests are KONE's service in trouble (kd_brk_degraded_of), NEUTRAL here. */
kd_brk_verdict kd_brk_verdict_of(kd_outcome o, const char *code, bool conn_lost);

/* Does a finished run say KONE's service is degraded (5xx, 408, 429, a request unanswered
 * on a connection that stayed up)? Such answers lower the request rate and the concurrency,
 * never stop calls. */
bool kd_brk_degraded_of(kd_outcome o, const char *code, bool conn_lost);

#endif
