/* test_xorshift.h: the seeded xorshift64 the fake-clock tests draw their random failures
 * from (a fixed seed: the same draws every run, so a statistical test cannot flake).
 * Set `xs` to reseed. Included by one test file each (static state). */
#ifndef KD_TEST_XORSHIFT_H
#define KD_TEST_XORSHIFT_H

#include <stdint.h>

static uint64_t xs = 88172645463325252ULL;

static uint64_t xorshift(void)
{
    xs ^= xs << 13;
    xs ^= xs >> 7;
    xs ^= xs << 17;
    return xs;
}

#endif
