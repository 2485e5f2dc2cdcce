/**
 * @file kd_str.h
 * @brief kd_str_copy: a bounded string copy for the hot path.
 */
#ifndef KD_STR_H
#define KD_STR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/** Copies src into dst, which holds size bytes (size >= 1): truncated to size - 1 bytes and
 * always NUL-terminated, as snprintf(dst, size, "%s", src) does, at a tenth of its cost (a
 * job's ids and names are copied a dozen times per job, and snprintf's format machinery was
 * about 5 % of a job's instructions: docs/performance.md). Returns dst. */
static inline char *kd_str_copy(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src); /* as snprintf: src is a string, read to its end */
    if (n >= size)
        n = size - 1;
    memmove(dst, src, n);
    dst[n] = '\0';
    return dst;
}

/** vsnprintf(dst, size, fmt, ap), with a fast path for the format "%s" (a message made
 * before: most of the hot path's outcomes). */
static inline void kd_str_vformat(char *dst, size_t size, const char *fmt, va_list ap)
{
    if (fmt[0] == '%' && fmt[1] == 's' && !fmt[2])
        kd_str_copy(dst, size, va_arg(ap, const char *));
    else
        vsnprintf(dst, size, fmt, ap);
}

#endif
