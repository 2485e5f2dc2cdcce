/* mp_write.h: msgpack written straight into memory the caller has sized (issue 17).
 *
 * msgpack-c's packer calls its write callback once per item (a result event made 72 calls
 * to msgpack_sbuffer_write, each checking room and maybe growing the buffer). The writers
 * here store into a buffer already big enough and return the position after what they
 * wrote; the caller bounds its output once (KD_MPW_*_MAX) and reserves that much first.
 *
 * The bytes are exactly msgpack-c's (pack_template.h): the smallest encoding of each
 * integer, with non-negative values as fixint/uint8..64 and negative ones as
 * fixint/int8..64; str8 for 32..255 bytes; fixmap below 16 entries. Events encoded before
 * and after this change are byte-identical (tests/unit/test_event.c compares them).
 */
#ifndef KD_MP_WRITE_H
#define KD_MP_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define KD_MPW_INT_MAX 9  /**< most bytes of an integer */
#define KD_MPW_HEAD_MAX 5 /**< most bytes of a str or map header */

static inline uint8_t *kd_mpw_be(uint8_t *o, uint64_t x, int n)
{
    for (int i = n - 1; i >= 0; i--, x >>= 8)
        o[i] = (uint8_t)x;
    return o + n;
}

static inline uint8_t *kd_mpw_nil(uint8_t *o)
{
    *o = 0xc0;
    return o + 1;
}

static inline uint8_t *kd_mpw_bool(uint8_t *o, bool b)
{
    *o = b ? 0xc3 : 0xc2;
    return o + 1;
}

static inline uint8_t *kd_mpw_map(uint8_t *o, uint32_t n)
{
    if (n < 16) {
        *o = (uint8_t)(0x80 | n);
        return o + 1;
    }
    *o = n < 65536 ? 0xde : 0xdf;
    return kd_mpw_be(o + 1, n, n < 65536 ? 2 : 4);
}

static inline uint8_t *kd_mpw_str(uint8_t *o, const char *s, size_t n)
{
    if (n < 32) {
        *o++ = (uint8_t)(0xa0 | n);
    } else if (n < 256) {
        *o++ = 0xd9;
        *o++ = (uint8_t)n;
    } else if (n < 65536) {
        *o = 0xda;
        o = kd_mpw_be(o + 1, n, 2);
    } else {
        *o = 0xdb;
        o = kd_mpw_be(o + 1, n, 4);
    }
    memcpy(o, s, n);
    return o + n;
}

/* A literal key: its length is known when compiling. */
#define KD_MPW_KEY(o, lit) kd_mpw_str((o), (lit), sizeof(lit) - 1)

/* msgpack_pack_int64's choice of width (msgpack_pack_int's too, for values of an int). */
static inline uint8_t *kd_mpw_int(uint8_t *o, int64_t d)
{
    if (d >= 0) {
        uint64_t u = (uint64_t)d;
        if (u < 128) {
            *o = (uint8_t)u;
            return o + 1;
        }
        int n = u < 256 ? 1 : u < 65536 ? 2 : u < (UINT64_C(1) << 32) ? 4 : 8;
        *o = (uint8_t)(n == 1 ? 0xcc : n == 2 ? 0xcd : n == 4 ? 0xce : 0xcf);
        return kd_mpw_be(o + 1, u, n);
    }
    if (d >= -32) {
        *o = (uint8_t)(int8_t)d;
        return o + 1;
    }
    int n = d >= -128 ? 1 : d >= -32768 ? 2 : d >= INT32_MIN ? 4 : 8;
    *o = (uint8_t)(n == 1 ? 0xd0 : n == 2 ? 0xd1 : n == 4 ? 0xd2 : 0xd3);
    return kd_mpw_be(o + 1, (uint64_t)d, n);
}

#endif
