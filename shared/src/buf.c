/* buf.c: see kd_buf.h. */
#include "kd_buf.h"

#include <stdlib.h>
#include <string.h>

int kd_buf_append(char **buf, size_t *len, size_t *cap, const void *in, size_t n)
{
    if (!*buf || *len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < *len + n + 1)
            c *= 2;
        char *p = realloc(*buf, c);
        if (!p)
            return -1; /* GCOVR_EXCL_LINE: allocation failure (no test injects one) */
        *buf = p;
        *cap = c;
    }
    if (n)
        memcpy(*buf + *len, in, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}
