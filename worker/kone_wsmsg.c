/* kone_wsmsg.c: see kone_wsmsg.h. */
#include "kone_wsmsg.h"

#include <stdlib.h>
#include <string.h>

#include "kd_buf.h"
#include "kd_utf8.h"

static kd_wsmsg_result fail(kd_wsmsg *m, int code, const char *why)
{
    m->code = code;
    m->why = why;
    return KD_WSMSG_FAIL;
}

/* The codes a close frame may carry (RFC 6455 7.4: 1004-1006 and 1015 never go on the wire;
 * 1012-2999 are unassigned or for extensions; 3000-4999 are for applications), as wslay. */
static bool close_code_ok(unsigned c)
{
    return (c >= 1000 && c <= 1011 && c != 1004 && c != 1005 && c != 1006) ||
           (c >= 3000 && c <= 4999);
}

/* A frame's header, at its first chunk: refused, or the frame begun. */
static kd_wsmsg_result frame_start(kd_wsmsg *m, const struct wslay_frame_iocb *io)
{
    if (io->rsv || io->mask)
        return fail(m, WSLAY_CODE_PROTOCOL_ERROR, "malformed frame from KONE");
    switch (io->opcode) {
    case WSLAY_TEXT_FRAME:
    case WSLAY_BINARY_FRAME:
        if (m->msg_op)
            return fail(m, WSLAY_CODE_PROTOCOL_ERROR, "malformed frame from KONE");
        m->msg_op = io->opcode;
        m->msg_len = 0;
        break;
    case WSLAY_CONTINUATION_FRAME:
        if (!m->msg_op)
            return fail(m, WSLAY_CODE_PROTOCOL_ERROR, "malformed frame from KONE");
        break;
    case WSLAY_CONNECTION_CLOSE:
    case WSLAY_PING:
    case WSLAY_PONG: /* wslay refuses them longer or fragmented already; kept as a guard */
        if (io->payload_length > sizeof m->ctl || !io->fin)
            return fail(m, WSLAY_CODE_PROTOCOL_ERROR, "malformed frame from KONE");
        m->ctl_len = 0;
        break;
    default: return fail(m, WSLAY_CODE_PROTOCOL_ERROR, "malformed frame from KONE");
    }
    if (!wslay_is_ctrl_frame(io->opcode) && io->payload_length > m->max - m->msg_len)
        return fail(m, WSLAY_CODE_MESSAGE_TOO_BIG, "message from KONE longer than the limit");
    m->in_frame = true;
    m->fr_op = io->opcode;
    m->fr_fin = io->fin;
    m->fr_len = io->payload_length;
    m->fr_off = 0;
    return KD_WSMSG_MORE;
}

/* A frame's last chunk is in: what it means. */
static kd_wsmsg_result frame_end(kd_wsmsg *m)
{
    m->in_frame = false;
    switch (m->fr_op) {
    case WSLAY_PING: return KD_WSMSG_PING;
    case WSLAY_PONG: return KD_WSMSG_MORE;
    case WSLAY_CONNECTION_CLOSE:
        if (m->ctl_len == 0) {
            m->code = 0;
            return KD_WSMSG_CLOSE;
        }
        m->code = m->ctl[0] << 8 | m->ctl[1];
        if (m->ctl_len == 1 || !close_code_ok((unsigned)m->code))
            return fail(m, WSLAY_CODE_PROTOCOL_ERROR, "malformed close frame from KONE");
        if (!kd_utf8_ok(m->ctl + 2, m->ctl_len - 2))
            return fail(m, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA,
                        "close reason from KONE that is not UTF-8");
        return KD_WSMSG_CLOSE;
    default:
        if (!m->fr_fin)
            return KD_WSMSG_MORE; /* the message goes on in a continuation */
        uint8_t op = m->msg_op;
        m->msg_op = 0;
        if (op == WSLAY_TEXT_FRAME && !kd_utf8_ok((const unsigned char *)m->msg, m->msg_len))
            return fail(m, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA,
                        "text frame from KONE that is not UTF-8");
        return KD_WSMSG_MESSAGE;
    }
}

kd_wsmsg_result kd_wsmsg_chunk(kd_wsmsg *m, const struct wslay_frame_iocb *io)
{
    if (!m->in_frame) {
        kd_wsmsg_result r = frame_start(m, io);
        if (r != KD_WSMSG_MORE)
            return r;
    }
    size_t n = io->data_length;
    if (n > m->fr_len - m->fr_off) /* wslay never gives more than the frame holds */
        return fail(m, WSLAY_CODE_PROTOCOL_ERROR, "malformed frame from KONE");
    if (n && wslay_is_ctrl_frame(m->fr_op)) {
        memcpy(m->ctl + m->ctl_len, io->data, n); /* fr_len <= 125: wslay refuses longer */
        m->ctl_len += n;
    } else if (n && kd_buf_append(&m->msg, &m->msg_len, &m->msg_cap, io->data, n)) {
        return fail(m, WSLAY_CODE_INTERNAL_SERVER_ERROR, "out of memory reading a frame");
    }
    m->fr_off += n;
    return m->fr_off == m->fr_len ? frame_end(m) : KD_WSMSG_MORE;
}

void kd_wsmsg_free(kd_wsmsg *m)
{
    free(m->msg);
    size_t max = m->max;
    memset(m, 0, sizeof *m);
    m->max = max;
}
