/* fuzz_wsmsg: what a server (or whatever answers on KONE's address) sends after the upgrade,
 * as the worker reads it: wslay's frame layer, then the message layer of worker/kone_wsmsg.c,
 * fed as kd_ws_rx feeds them. The first byte picks the size of the reads (TLS hands the bytes
 * over in any pieces), the second the length limit; the rest is the stream. A message handed
 * on is never longer than the limit, a text message is UTF-8 by a decoder written another way
 * (code points, below), a ping's payload is at most 125 bytes, and nothing is read after a
 * close or a refusal. kd_utf8_ok is also compared with that decoder on the raw bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kd_utf8.h"
#include "kone_wsmsg.h"
#include "../unit/ws_feed.h"

/* UTF-8 by decoding code points: the shortest form, no surrogate, at most U+10FFFF. */
static int ref_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t c = s[i];
        size_t k = c < 0x80             ? 0
                   : (c & 0xE0) == 0xC0 ? 1
                   : (c & 0xF0) == 0xE0 ? 2
                   : (c & 0xF8) == 0xF0 ? 3
                                        : 9;
        if (k == 9 || n - i <= k)
            return 0;
        if (k)
            c &= 0x3Fu >> k;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            c = c << 6 | (s[i + j] & 0x3F);
        }
        static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
        if (c < min[k] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t len = size - 2;
    uint8_t *in = malloc(len ? len : 1); /* its own allocation: ASan sees any over-read */
    if (!in)
        return 0;
    memcpy(in, data + 2, len);
    if (kd_utf8_ok(in, len) != ref_utf8(in, len))
        abort();
    ws_feed f = {in, len, (size_t)data[0] * 13 + 1};
    struct wslay_frame_callbacks cb = {.recv_callback = ws_feed_in};
    wslay_frame_context_ptr fr;
    if (wslay_frame_context_init(&fr, &cb, &f)) {
        free(in);
        return 0;
    }
    kd_wsmsg m = {.max = (size_t)data[1] * 16};
    for (;;) {
        struct wslay_frame_iocb io;
        memset(&io, 0, sizeof io);
        ssize_t r = wslay_frame_recv(fr, &io);
        if (r == WSLAY_ERR_WANT_READ && f.left)
            continue;
        if (r < 0)
            break;
        uint8_t op = m.msg_op ? m.msg_op : io.opcode; /* the message's own, before the chunk */
        kd_wsmsg_result res = kd_wsmsg_chunk(&m, &io);
        if (res == KD_WSMSG_MESSAGE &&
            (m.msg_len > m.max ||
             (op == WSLAY_TEXT_FRAME && !ref_utf8((const uint8_t *)m.msg, m.msg_len))))
            abort();
        if (res == KD_WSMSG_PING && m.ctl_len > 125)
            abort();
        if (res == KD_WSMSG_CLOSE || res == KD_WSMSG_FAIL) {
            if (res == KD_WSMSG_FAIL && m.code != 1002 && m.code != 1007 && m.code != 1009 &&
                m.code != 1011)
                abort();
            break;
        }
    }
    kd_wsmsg_free(&m);
    wslay_frame_context_free(fr);
    free(in);
    return 0;
}
