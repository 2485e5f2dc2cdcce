/**
 * @file kd_buf.h
 * @brief kd_buf_append: a growable, NUL-terminated byte buffer.
 *
 * One growth rule for the texts built a piece at a time (the metrics exposition, a WebSocket
 * message reassembled from its fragments): doubling from 4 KiB, so appending n bytes costs
 * O(n) over the buffer's life.
 */
#ifndef KD_BUF_H
#define KD_BUF_H

#include <stddef.h>

/** Appends n bytes of in (NULL allowed when n is 0) to *buf, which holds *len bytes in *cap
 * allocated, growing it by doubling from 4 KiB and keeping it NUL-terminated (the buffer is
 * allocated even for n == 0). Returns 0, or -1 with the buffer as it was when memory runs
 * out. */
int kd_buf_append(char **buf, size_t *len, size_t *cap, const void *in, size_t n);

#endif
