/* ws_recv_wslay.c: what wslay (Debian's libwslay1) costs to receive one WebSocket frame, to
 * compare with libwebsockets' receive path in the worker's profile (docs/performance.md,
 * issue 17: "replace lws only if a measured alternative is at least 2x cheaper per frame").
 * Not part of the build (the worker now links wslay: worker/kone_ws.c); run by hand:
 *
 *   cc -O2 -o /tmp/ws_recv_wslay docs/perf/ws_recv_wslay.c -lwslay
 *   valgrind --tool=callgrind /tmp/ws_recv_wslay 1000   # and 11000: the difference / 10000
 *
 * N server-to-client text frames (unmasked, as KONE sends them), each holding a call-state
 * frame as kone-sim writes it (the size of the frames a call job receives), are fed to a
 * client context by its recv callback in reads of at most 16 KiB, as a TLS read would hand
 * them over; the message callback only counts. What the difference of two N counts gives is
 * wslay's framing per frame plus one memcpy of the bytes, and no TLS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

static const char frame[] =
    "{\"callType\":\"monitor-call-state\",\"buildingId\":\"building:9990000951\",\"groupId\":"
    "\"1\",\"subtopic\":\"call_state/4242/being_served\",\"data\":{\"time\":\"2026-12-04T23:42:"
    "40.490Z\",\"session_id\":4242,\"state\":\"being_served\",\"allocated_lift_deck\":[1001010],"
    "\"eta\":\"2026-12-04T23:42:41.100Z\",\"subgroup_id\":1}}";

static unsigned char *wire;
static size_t wire_len, wire_pos;
static long got;

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user)
{
    (void)flags, (void)user;
    size_t n = wire_len - wire_pos;
    if (!n) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (n > len)
        n = len;
    if (n > 16384)
        n = 16384;
    memcpy(buf, wire + wire_pos, n);
    wire_pos += n;
    return (ssize_t)n;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                   void *user)
{
    (void)ctx, (void)user;
    got += a->opcode == WSLAY_TEXT_FRAME && a->msg_length == sizeof frame - 1;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    size_t plen = sizeof frame - 1, flen = 4 + plen; /* 126 < plen < 65536: 2-byte length */
    wire_len = (size_t)n * flen;
    wire = malloc(wire_len);
    if (!wire)
        return 1;
    for (long i = 0; i < n; i++) {
        unsigned char *p = wire + (size_t)i * flen;
        p[0] = 0x81, p[1] = 126, p[2] = (unsigned char)(plen >> 8), p[3] = (unsigned char)plen;
        memcpy(p + 4, frame, plen);
    }
    struct wslay_event_callbacks cb = {.recv_callback = on_recv, .on_msg_recv_callback = on_msg};
    wslay_event_context_ptr ctx;
    if (wslay_event_context_client_init(&ctx, &cb, NULL))
        return 1;
    while (wire_pos < wire_len)
        if (wslay_event_recv(ctx) != 0)
            break;
    wslay_event_context_free(ctx);
    printf("frames %ld of %ld, %zu bytes each on the wire\n", got, n, flen);
    free(wire);
    return got == n ? 0 : 1;
}
