/* kone_timer.c: see kone_timer.h. A pairing heap (Fredman, Sedgewick, Sleator, Tarjan 1986):
 * a tree whose every node is due no later than its children, each node's children in a list.
 * Insert melds the new node with the root; removing a node melds its children in pairs, left
 * to right, then the pairs right to left (the "two-pass" rule its amortised bound needs). */
#include "kone_timer.h"

#include "kd_time.h"

/* a before b: the earlier deadline, then the one set first */
static bool before(const kk_tmr *a, const kk_tmr *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

/* Melds two roots into one: the later becomes the first child of the earlier. */
static kk_tmr *meld(kk_tmr *a, kk_tmr *b)
{
    if (before(b, a)) {
        kk_tmr *x = a;
        a = b;
        b = x;
    }
    b->prev = a;
    b->next = a->child;
    if (a->child)
        a->child->prev = b;
    a->child = b;
    a->next = a->prev = NULL;
    return a;
}

/* One root of the sibling list that starts at first (NULL when it is empty). */
static kk_tmr *merge_pairs(kk_tmr *first)
{
    kk_tmr *pairs = NULL; /* the melded pairs, the last one first (linked by next) */
    while (first) {
        kk_tmr *a = first, *b = a->next;
        first = b ? b->next : NULL;
        kk_tmr *m = b ? meld(a, b) : a;
        m->prev = NULL;
        m->next = pairs;
        pairs = m;
    }
    kk_tmr *root = pairs;
    if (root) {
        pairs = root->next;
        root->next = NULL;
    }
    while (pairs) {
        kk_tmr *p = pairs;
        pairs = p->next;
        root = meld(root, p);
    }
    return root;
}

static void take_out(kk_timers *ts, kk_tmr *t)
{
    kk_tmr *sub = merge_pairs(t->child);
    if (t == ts->root) {
        ts->root = sub;
    } else {
        if (t->prev->child == t) /* the first of its parent's children */
            t->prev->child = t->next;
        else
            t->prev->next = t->next;
        if (t->next)
            t->next->prev = t->prev;
        if (sub)
            ts->root = meld(ts->root, sub);
    }
    t->child = t->next = t->prev = NULL;
    t->in = NULL;
    ts->n--;
}

static void fire(lws_sorted_usec_list_t *sul);

/* The lws timer no later than `at`: left alone when it already is (it fires early at worst). */
static void arm(kk_timers *ts, int64_t at)
{
    if (!ts->ctx || (ts->armed_at && ts->armed_at <= at))
        return;
    int64_t d = at - kd_mono_us();
    lws_sul_schedule(ts->ctx, 0, &ts->sul, fire, d > 0 ? d : 1);
    ts->armed_at = at;
}

static void fire(lws_sorted_usec_list_t *sul)
{
    kk_timers *ts = lws_container_of(sul, kk_timers, sul);
    ts->armed_at = 0;
    int64_t next = kk_timers_run(ts, kd_mono_us());
    if (next)
        arm(ts, next);
}

void kk_timers_init(kk_timers *ts, struct lws_context *ctx)
{
    *ts = (kk_timers){.ctx = ctx};
}

void kk_timers_stop(kk_timers *ts)
{
    if (ts->ctx && ts->armed_at)
        lws_sul_cancel(&ts->sul);
    ts->armed_at = 0;
    ts->stopped = true;
    ts->root = NULL;
}

void kk_tmr_at(kk_timers *ts, kk_tmr *t, kk_tmr_cb cb, int64_t at)
{
    kk_tmr_cancel(t);
    if (ts->stopped)
        return;
    t->at = at;
    t->seq = ts->seq++;
    t->cb = cb;
    t->in = ts;
    t->child = t->next = t->prev = NULL;
    ts->root = ts->root ? meld(ts->root, t) : t;
    ts->n++;
    if (ts->root == t)
        arm(ts, at);
}

void kk_tmr_in(kk_timers *ts, kk_tmr *t, kk_tmr_cb cb, int64_t delay_us)
{
    kk_tmr_at(ts, t, cb, kd_mono_us() + (delay_us > 0 ? delay_us : 1));
}

void kk_tmr_cancel(kk_tmr *t)
{
    kk_timers *ts = t->in;
    if (!ts)
        return;
    if (ts->stopped) {
        t->in = NULL;
        return;
    }
    take_out(ts, t);
}

int64_t kk_timers_run(kk_timers *ts, int64_t now)
{
    uint64_t seq0 = ts->seq; /* set before this call */
    while (ts->root && ts->root->at <= now && ts->root->seq < seq0) {
        kk_tmr *t = ts->root;
        take_out(ts, t);
        t->cb(t);
    }
    return ts->root ? ts->root->at : 0;
}
