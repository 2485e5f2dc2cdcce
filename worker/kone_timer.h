/* kone_timer: the KONE loop's timers (a job's deadlines, a building's, a subscription's, a
 * configuration fetch's, a connection's) in one pairing heap behind one libwebsockets timer.
 *
 * Why not lws_sul for each: libwebsockets keeps its timers in one sorted list and inserts by
 * walking it from the earliest. A worker with 1,000 buildings in use holds ~3,000 timers, most
 * of them later than a job's, so each job's insert walked them all: 23 % of the worker's CPU
 * in the bench's scale scenario (perf, 2026-12-05). Here an insert is O(1) and a cancel or the
 * earliest's removal O(log n) amortised; lws holds one timer, at the heap's earliest deadline
 * or before it (a deadline moved later leaves it early: it fires, finds nothing due, re-arms).
 *
 * Intrusive like lws_sul: a kk_tmr lives in its owner's struct and scheduling allocates
 * nothing, so it cannot fail. Deadlines are kd_mono_us microseconds; equal ones fire in the
 * order they were set. Loop thread only. Layer 0: knows no connection or job.
 */
#ifndef KD_WORKER_KONE_TIMER_H
#define KD_WORKER_KONE_TIMER_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kk_tmr kk_tmr;
typedef struct kk_timers kk_timers;
typedef void (*kk_tmr_cb)(kk_tmr *t);

struct kk_tmr {
    int64_t at;    /* due, kd_mono_us */
    uint64_t seq;  /* when it was set: the order of equal deadlines */
    kk_tmr_cb cb;  /* called once when due, after the timer left the heap */
    kk_timers *in; /* the heap it waits in; NULL when it is not set */
    /* the heap's links: first child, next sibling, previous sibling (or parent when first) */
    kk_tmr *child, *next, *prev;
};

struct kk_timers {
    struct lws_context *ctx; /* where the one lws timer runs; NULL: none (kk_timers_run) */
    lws_sorted_usec_list_t sul;
    kk_tmr *root;     /* the earliest */
    uint64_t seq;     /* the next kk_tmr.seq */
    int64_t armed_at; /* the lws timer's deadline, 0 when it is not set */
    size_t n;         /* timers set */
    bool stopped;     /* kk_timers_stop: nothing fires or is kept any more */
};

/* An empty heap whose timers fire from ctx's loop (NULL: only when kk_timers_run is called). */
void kk_timers_init(kk_timers *ts, struct lws_context *ctx);

/* The loop has ended: the lws timer is cancelled, and from now on setting a timer does nothing
 * and cancelling one only marks it unset, without reading the heap, whose other members may
 * be freed in any order as the client comes down. A timer not cancelled since still reads as
 * set (kk_tmr_is_set) and n is no longer kept: neither means anything after the stop. */
void kk_timers_stop(kk_timers *ts);

/* Sets t to call cb at `at` (kd_mono_us), moving it when it is already set (in any heap). */
void kk_tmr_at(kk_timers *ts, kk_tmr *t, kk_tmr_cb cb, int64_t at);

/* The same, delay_us from now (at least 1 µs: "after what runs now", as lws_sul's 1). */
void kk_tmr_in(kk_timers *ts, kk_tmr *t, kk_tmr_cb cb, int64_t delay_us);

/* Unsets t; nothing when it is not set. */
void kk_tmr_cancel(kk_tmr *t);

static inline bool kk_tmr_is_set(const kk_tmr *t)
{
    return t->in != NULL;
}

/* Fires, earliest first, every timer due at `now` that was set before the call; one its
 * callbacks set (again) waits for the next call, so a callback that re-arms itself for a time
 * already past cannot hold the loop. Returns the earliest deadline left, 0 when no timer is.
 * The lws timer calls it; so do the tests. */
int64_t kk_timers_run(kk_timers *ts, int64_t now);

#endif
