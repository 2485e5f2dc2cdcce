/* kone_wsmsg: the message layer of the worker's WebSocket receive (RFC 6455's client side),
 * over wslay's frame layer (wslay_frame_recv: headers, lengths, minimal length encodings,
 * control frames short and final), which hands over each frame's payload in chunks.
 *
 * Why not wslay's event layer (wslay_event_recv), which the sending side still uses: it checks
 * the UTF-8 of text messages one byte at a time through a state machine, whatever the buffering
 * (about 2,000 of its 2,600 instructions a frame, docs/performance.md "The KONE thread's cost
 * per frame"), and its API has no way round that. Here the check is an ASCII fast path (16 bytes
 * at a time; KONE's frames are ASCII) with the full rules of RFC 3629 for the rest.
 *
 * What is refused, as wslay refused it: a reserved bit set or a masked frame (1002: a server
 * never masks), a reserved opcode, a continuation with no message begun or a new message
 * inside a fragmented one (1002), a message longer than max (1009, at the frame that makes it
 * so, before its payload is read), a text message or a close reason that is not UTF-8 (1007),
 * a close frame of one byte or with a code RFC 6455 does not allow on the wire (1002).
 * Control frames may come between the fragments of a message. No I/O, no allocation but the
 * message buffer (kept between messages); one per connection, loop thread only.
 */
#ifndef KD_WORKER_KONE_WSMSG_H
#define KD_WORKER_KONE_WSMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <wslay/wslay.h>

typedef struct kd_wsmsg {
    size_t max; /* longest message taken (set before the first chunk) */
    char *msg;  /* the message so far, msg[0..msg_len) (kd_buf) */
    size_t msg_len, msg_cap;
    uint8_t msg_op; /* WSLAY_TEXT_FRAME or WSLAY_BINARY_FRAME while one is begun, else 0 */
    bool in_frame;  /* a frame's payload is being received */
    uint8_t fr_op;  /* its opcode and FIN */
    bool fr_fin;
    uint64_t fr_len, fr_off;
    uint8_t ctl[125]; /* a control frame's payload (at most 125 bytes: wslay checks) */
    size_t ctl_len;
    int code;        /* KD_WSMSG_CLOSE: the peer's code (0: none); KD_WSMSG_FAIL: ours */
    const char *why; /* KD_WSMSG_FAIL: what was wrong (a static string) */
} kd_wsmsg;

typedef enum {
    KD_WSMSG_MORE = 0, /* nothing to do */
    KD_WSMSG_MESSAGE,  /* a whole text or binary message: msg, msg_len (until the next call) */
    KD_WSMSG_PING,     /* a ping: answer with a pong of ctl[0..ctl_len) */
    KD_WSMSG_CLOSE,    /* the peer's close frame: code; answer with a close, read no more */
    KD_WSMSG_FAIL,     /* refused: close with code, read no more */
} kd_wsmsg_result;

/* One chunk as wslay_frame_recv returned it (a frame's first chunk carries its header). */
kd_wsmsg_result kd_wsmsg_chunk(kd_wsmsg *m, const struct wslay_frame_iocb *io);
void kd_wsmsg_free(kd_wsmsg *m); /* m may be used again (max kept) */

#endif
