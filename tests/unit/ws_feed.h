/* ws_feed.h: a server's byte stream handed to wslay's frame layer in reads of at most `step`
 * bytes (TLS hands bytes over in any pieces), for test_worker_kone_wsmsg.c and fuzz_wsmsg.c,
 * which feed kone_wsmsg.c as kd_ws_rx does. Header-only: each includes it once. */
#ifndef KD_TESTS_WS_FEED_H
#define KD_TESTS_WS_FEED_H

#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <wslay/wslay.h>

typedef struct {
    const uint8_t *p;
    size_t left, step;
} ws_feed;

/* wslay_frame_callbacks.recv_callback: the next read, 0 when the stream is all read. */
static ssize_t ws_feed_in(uint8_t *buf, size_t len, int flags, void *user)
{
    (void)flags;
    ws_feed *f = user;
    size_t n = f->left < len ? f->left : len;
    if (n > f->step)
        n = f->step;
    memcpy(buf, f->p, n);
    f->p += n;
    f->left -= n;
    return (ssize_t)n;
}

#endif
