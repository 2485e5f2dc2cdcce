/* fuzz_kone_msg: a WebSocket text frame from KONE (or from anything on the path to it), as
 * worker/kone_conn.c hands it to kd_kone_msg_parse; kd_kone_msg_peek_call_state sees the
 * same bytes first. Both must never read past len: frames are not NUL-terminated. The
 * scanner's path and jansson's must give the same parsed frame. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kone_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so ASan sees any read past the frame's end. */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    int64_t sid;
    (void)kd_kone_msg_peek_call_state(buf, size, &sid);
    kd_kone_msg m, slow;
    kd_err err = {0}, slow_err = {0};
    int rc = kd_kone_msg_parse(buf, size, &m, &err);
    /* the allocation-free reader (kone_jview.c) must read every frame as jansson does */
    if (rc != kd_kone_msg_parse_jansson(buf, size, &slow, &slow_err) ||
        memcmp(&m, &slow, sizeof m) != 0 || strcmp(err.msg, slow_err.msg) != 0)
        abort();
    if (rc == 0) {
        /* the text fields are NUL-terminated within their arrays */
        if (memchr(m.message, 0, sizeof m.message) == NULL ||
            memchr(m.session_id, 0, sizeof m.session_id) == NULL ||
            memchr(m.error, 0, sizeof m.error) == NULL)
            abort();
        (void)kd_kone_msg_kind_name(m.kind);
    }
    free(buf);
    return 0;
}
