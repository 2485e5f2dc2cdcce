/* kone_wsrx.c: see kone_wsrx.h. */
#include "kone_wsrx.h"

#include <stdlib.h>
#include <string.h>

#include "kd_buf.h"

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
    if (kd_buf_append(&rx->buf, &rx->len, &rx->cap, in, len))
        rx->skip = true;
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
