/* fuzz_kone_msg: a WebSocket text frame from KONE (or from anything on the path to it), as
 * worker/kone_conn.c hands it to kd_kone_msg_read (which asks about call states before it
 * reads their fields). It must never read past len: frames are not NUL-terminated. The
 * scanner's path and jansson's must give the same parsed frame, and the frame kd_kone_msg_read
 * keeps must be the one kd_kone_msg_parse gives. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kone_msg.h"

/* Drops every call state (records the id asked about). */
static bool drop(int64_t session_id, void *user)
{
    *(int64_t *)user = session_id;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so ASan sees any read past the frame's end. */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    kd_kone_msg m, slow, asked;
    kd_err err = {0}, slow_err = {0}, asked_err = {0};
    int rc = kd_kone_msg_parse(buf, size, &m, &err);
    /* kept: the same result as kd_kone_msg_parse; dropped: only once asked, about the id
     * of a call_state subtopic the frame holds, as it is (the scanner's question: what
     * follows it is not read, it may be anything, as a peek would not read it either) or
     * escaped (jansson's, on the whole frame: then it parses as a call state) */
    int64_t sid = -1;
    bool kept = false;
    int arc = kd_kone_msg_read(buf, size, drop, &sid, &kept, &asked, &asked_err);
    if (kept && (arc != rc || sid != -1 || memcmp(&asked, &m, sizeof m) != 0 ||
                 strcmp(err.msg, asked_err.msg) != 0))
        abort();
    if (!kept &&
        (arc != 0 || sid < 0 ||
         (!memmem(buf, size, "call_state/", 11) && (rc != 0 || m.kind != KD_KONE_MSG_CALL_STATE))))
        abort();
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
