/* kone_wsrx.c: see kone_wsrx.h. */
#include "kone_wsrx.h"

#include <stdlib.h>
#include <string.h>

/* A buffer grown past this for one big message is not kept for the small ones after it. */
#define WSRX_KEEP_MAX ((size_t)64 * 1024)

static void restart(kd_wsrx *rx)
{
    rx->len = 0;
    rx->skip = false;
    rx->too_big = false;
    rx->keep_at_end = false;
    if (rx->cap > WSRX_KEEP_MAX) {
        free(rx->buf);
        rx->buf = NULL;
        rx->cap = 0;
    }
}

static void append(kd_wsrx *rx, const void *in, size_t len)
{
    if (rx->len + len > rx->max) {
        rx->skip = rx->too_big = true;
        return;
    }
    if (!rx->buf || rx->len + len + 1 > rx->cap) {
        size_t cap = rx->cap ? rx->cap : 4096;
        while (cap < rx->len + len + 1)
            cap *= 2;
        char *nb = realloc(rx->buf, cap);
        if (!nb) {
            rx->skip = true;
            return;
        }
        rx->buf = nb;
        rx->cap = cap;
    }
    if (len) /* an empty fragment may come with no data pointer at all */
        memcpy(rx->buf + rx->len, in, len);
    rx->len += len;
    rx->buf[rx->len] = '\0';
}

kd_wsrx_result kd_wsrx_feed(kd_wsrx *rx, const void *in, size_t len, bool final)
{
    if (rx->keep_at_end)
        restart(rx);
    if (!rx->skip)
        append(rx, in, len); /* allocates even for an empty fragment: buf is never NULL */
    if (!final)
        return KD_WSRX_MORE;
    rx->keep_at_end = true; /* too_big stays readable until the next fragment */
    return rx->skip ? KD_WSRX_DROPPED : KD_WSRX_MESSAGE;
}

void kd_wsrx_free(kd_wsrx *rx)
{
    free(rx->buf);
    rx->buf = NULL;
    rx->len = rx->cap = 0;
    rx->skip = rx->too_big = rx->keep_at_end = false;
}
