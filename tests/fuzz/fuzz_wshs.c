/* fuzz_wshs: the WebSocket upgrade answer as the worker reads it (worker/kone_wshs.c), the
 * first bytes a server (or whatever answers on KONE's address) sends. The first byte picks
 * the size of the reads the answer arrives in (TLS hands it over in any pieces); the rest is
 * the answer, fed with a fixed key. An accepted answer must have said 101, the header block
 * must never be held past KD_WSHS_MAX, and no read may claim more bytes than it had. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kone_wshs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] * 37 + 1, len = size - 1;
    char *in = malloc(len ? len : 1); /* its own allocation: ASan sees any over-read */
    if (!in)
        return 0;
    memcpy(in, data + 1, len);
    static kd_wshs h;
    memset(&h, 0, sizeof h);
    memcpy(h.key, "dGhlIHNhbXBsZSBub25jZQ==", KD_WSHS_KEY_LEN + 1);
    h.protocol = "koneapi";
    int status = -1;
    char why[KD_WSHS_WHY_MAX];
    kd_wshs_result r = KD_WSHS_MORE;
    for (size_t off = 0; off < len && r == KD_WSHS_MORE;) {
        size_t n = len - off < step ? len - off : step, used = 0;
        r = kd_wshs_feed(&h, in + off, n, &used, &status, why, sizeof why);
        if (used > n || h.len > KD_WSHS_MAX || (r == KD_WSHS_OK && status != 101))
            abort();
        off += used;
    }
    /* the whole-block check on its own, as the feed calls it */
    if (kd_wshs_check(in, len, h.key, "koneapi", &status, why, sizeof why) == KD_WSHS_OK &&
        status != 101)
        abort();
    free(in);
    return 0;
}
