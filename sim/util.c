/* util.c: clock and formatting helpers (see util.h). */
#include "util.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <time.h>

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sim_clock_init(sim_clock *c, double speed)
{
    c->speed = speed > 0 ? speed : 1;
    c->real0_ms = mono_ms();
    c->wall0_ms = wall_ms();
    c->fake = false;
    c->fake_real_ms = 0;
}

void sim_clock_set_fake(sim_clock *c, double speed, int64_t wall0_ms)
{
    c->speed = speed > 0 ? speed : 1;
    c->real0_ms = 0;
    c->wall0_ms = wall0_ms;
    c->fake = true;
    c->fake_real_ms = 0;
}

void sim_clock_fake_advance(sim_clock *c, int64_t real_ms)
{
    c->fake_real_ms += real_ms;
}

int64_t sim_clock_real_ms(const sim_clock *c)
{
    return c->fake ? c->fake_real_ms : mono_ms();
}

int64_t sim_clock_wall_ms(const sim_clock *c)
{
    return c->fake ? c->wall0_ms + c->fake_real_ms : wall_ms();
}

int64_t sim_clock_model_ms(const sim_clock *c)
{
    int64_t real = c->fake ? c->fake_real_ms : mono_ms() - c->real0_ms;
    return (int64_t)((double)real * c->speed);
}

int64_t sim_clock_model_to_wall(const sim_clock *c, int64_t model_ms)
{
    return c->wall0_ms + (int64_t)((double)model_ms / c->speed);
}

void sim_iso_time(int64_t ms, char *buf, size_t len)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03dZ", (int)(ms % 1000));
}

int sim_uuid(char *buf, size_t len)
{
    unsigned char r[16];
    if (len < 37 || RAND_bytes(r, sizeof r) != 1)
        return -1;
    r[6] = (r[6] & 0x0f) | 0x40;
    r[8] = (r[8] & 0x3f) | 0x80;
    snprintf(buf, len, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
    return 0;
}
