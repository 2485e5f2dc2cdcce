/* kone_ratelimit.c: token bucket with multiplicative decrease on 429 and additive recovery
 * (see kone_ratelimit.h).
 *
 * Why AIMD: KONE does not say how fast a building may be called; a 429 is the only signal.
 * Halving reacts fast to it, a slow linear climb probes for the limit again without
 * causing a storm of 429s (the scheme TCP uses for the same problem).
 */
#include "kone_ratelimit.h"

#include <string.h>

#define EPS 1e-9

static double burst_of(const kd_rl *r)
{
    if (r->burst_cfg > 0)
        return r->burst_cfg;
    return r->rate > 1.0 ? r->rate : 1.0;
}

static double step_of(const kd_rl *r)
{
    double s = r->ceiling / KD_RL_RECOVER_S;
    return s < KD_RL_RECOVER_MIN ? KD_RL_RECOVER_MIN : s;
}

void kd_rl_init(kd_rl *r, double limit, double burst, int64_t now)
{
    memset(r, 0, sizeof *r);
    r->limit = limit > 0 ? limit : 0;
    r->burst_cfg = burst > 0 ? burst : 0;
    r->rate = r->limit;
    r->ceiling = r->limit;
    r->tokens = burst_of(r);
    r->at = now;
    r->win_start = now;
    r->share_pct = KD_RL_SHARE_PCT;
}

void kd_rl_advance(kd_rl *r, int64_t now)
{
    if (now <= r->at)
        return;
    double dt = (double)(now - r->at) / 1e6;
    r->at = now;
    if (r->rate <= 0)
        return; /* unlimited */
    double before = r->rate;
    if (r->rate < r->ceiling) {
        r->rate += step_of(r) * dt;
        if (r->rate >= r->ceiling) {
            r->rate = r->ceiling;
            if (r->limit <= 0) { /* recovered without a configured limit: none again */
                r->rate = 0;
                r->ceiling = 0;
                return;
            }
        }
    }
    r->tokens += (before + r->rate) / 2 * dt;
    double b = burst_of(r);
    if (r->tokens > b)
        r->tokens = b;
}

static void count_send(kd_rl *r, int64_t now)
{
    if (now - r->win_start >= 1000000) {
        r->prev_n = now - r->win_start < 2000000 ? r->win_n : 0;
        r->win_start = now;
        r->win_n = 0;
    }
    r->win_n++;
}

bool kd_rl_take(kd_rl *r, int64_t now)
{
    kd_rl_advance(r, now);
    if (r->rate > 0) {
        if (r->tokens < 1.0 - EPS)
            return false;
        r->tokens -= 1.0;
        if (r->tokens < 0)
            r->tokens = 0;
    }
    count_send(r, now);
    return true;
}

int64_t kd_rl_wait_us(kd_rl *r, int64_t now)
{
    kd_rl_advance(r, now);
    if (r->rate <= 0 || r->tokens >= 1.0 - EPS)
        return 0;
    return (int64_t)((1.0 - r->tokens) / r->rate * 1e6) + 1;
}

/* Requests sent in the last full second (or in this one, when more). */
static double sent_per_s(const kd_rl *r, int64_t now)
{
    int64_t age = now - r->win_start;
    if (age >= 2000000)
        return 0;
    if (age >= 1000000) /* the window is a full second by now */
        return r->win_n;
    return r->prev_n > r->win_n ? r->prev_n : r->win_n;
}

bool kd_rl_slow_down(kd_rl *r, int64_t now)
{
    kd_rl_advance(r, now);
    if (r->slowed_at && now - r->slowed_at < KD_RL_SLOWDOWN_GAP_US)
        return false;
    double base = r->rate;
    if (base <= 0) { /* no limit so far: start from what was actually sent */
        base = sent_per_s(r, now);
        if (base < 2 * KD_RL_FLOOR)
            base = 2 * KD_RL_FLOOR;
        r->ceiling = base;
    }
    r->rate = base / 2 < KD_RL_FLOOR ? KD_RL_FLOOR : base / 2;
    if (r->ceiling < r->rate)
        r->ceiling = r->rate;
    r->tokens = 0; /* the next request waits 1/rate */
    r->slowed_at = now;
    r->slowdowns++;
    return true;
}

void kd_rl_window(const kd_rl *r, int64_t now, int *answers, int *too_many)
{
    int n = 0, t = 0;
    for (int i = 0; i < r->ans_n; i++)
        if (now - r->ans[i].at < KD_RL_WINDOW_US) {
            n++;
            t += r->ans[i].too_many;
        }
    *answers = n;
    *too_many = t;
}

bool kd_rl_answered(kd_rl *r, int64_t now, bool too_many)
{
    r->ans[r->ans_next] = (kd_rl_answer){now, too_many};
    r->ans_next = (r->ans_next + 1) % KD_RL_RING;
    if (r->ans_n < KD_RL_RING)
        r->ans_n++;
    if (!too_many)
        return false;
    if (r->share_pct > 0) {
        int n, t;
        kd_rl_window(r, now, &n, &t);
        if (n < KD_RL_MIN_ANSWERS || (int64_t)t * 100 < (int64_t)r->share_pct * n)
            return false;
    }
    if (!kd_rl_slow_down(r, now))
        return false;
    r->ans_n = r->ans_next = 0; /* the next decrease needs new evidence */
    return true;
}

double kd_rl_rate(const kd_rl *r, int64_t now)
{
    kd_rl c = *r;
    kd_rl_advance(&c, now);
    return c.rate;
}

bool kd_rl_idle(const kd_rl *r, int64_t now)
{
    kd_rl c = *r;
    kd_rl_advance(&c, now);
    if (c.rate != c.limit)
        return false;
    return c.rate <= 0 || c.tokens >= burst_of(&c) - EPS;
}
