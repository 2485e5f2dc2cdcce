/**
 * @file kd_utf8.h
 * @brief UTF-8 well-formedness (RFC 3629): no overlongs, no surrogates, nothing above
 * U+10FFFF.
 */
#ifndef KD_UTF8_H
#define KD_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/** Length of the valid UTF-8 sequence at s (n bytes left, n >= 1), or 0 if the bytes there
 * are not one. */
size_t kd_utf8_seq_len(const unsigned char *s, size_t n);
/** True when s[0..n) is well-formed UTF-8 throughout. ASCII runs are skipped 16 bytes at a
 * time (KONE's frames are all ASCII). */
bool kd_utf8_ok(const unsigned char *s, size_t n);

#endif
