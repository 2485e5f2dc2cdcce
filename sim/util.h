/* util: the simulator's clock and small formatting helpers.
 *
 * The clock maps real (monotonic) time to model time: model_ms = elapsed_real_ms * speed,
 * and back to wall-clock instants for the `time` and `eta` fields of events, so that an
 * ETA a client reads is a real instant even when the model runs ten times faster. Tests
 * drive it by hand (sim_clock_set_fake) instead of reading the system clocks.
 */
#ifndef SIM_UTIL_H
#define SIM_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct sim_clock {
    double speed;
    int64_t real0_ms; /* monotonic ms at model time 0 */
    int64_t wall0_ms; /* wall-clock ms at model time 0 */
    bool fake;
    int64_t fake_real_ms; /* with fake: monotonic ms since real0 */
} sim_clock;

void sim_clock_init(sim_clock *c, double speed);
/* Fake clock starting at the given wall time; advance with sim_clock_fake_advance. */
void sim_clock_set_fake(sim_clock *c, double speed, int64_t wall0_ms);
void sim_clock_fake_advance(sim_clock *c, int64_t real_ms);
int64_t sim_clock_real_ms(const sim_clock *c);  /* monotonic ms (fake-aware) */
int64_t sim_clock_wall_ms(const sim_clock *c);  /* wall-clock ms now (fake-aware) */
int64_t sim_clock_model_ms(const sim_clock *c); /* model time now */
int64_t sim_clock_model_to_wall(const sim_clock *c, int64_t model_ms);

/* The index of name in names[0..n): for the name tables indexed by an enum whose 0 means
 * none (NULL slots are skipped). 0 when name is not there. Inline: the unit tests that
 * include building.c alone link no util.c. */
static inline int sim_name_index(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 1; i < n; i++)
        if (names[i] && strcmp(names[i], name) == 0)
            return (int)i;
    return 0;
}

/* "2026-11-28T20:15:00.123Z" */
void sim_iso_time(int64_t wall_ms, char *buf, size_t len);
/* Random RFC 4122 version 4 UUID text (36 chars). Returns 0 or -1. */
int sim_uuid(char *buf, size_t len);

#endif
