/* Unit tests for worker/kone_wsmsg.c, the message layer of the worker's WebSocket receive over
 * wslay's frame layer: server byte streams (unmasked frames, as KONE sends them) go through a
 * real wslay_frame_context into kd_wsmsg_chunk, as kd_ws_rx feeds them, and each test looks at
 * what a connection would do: the messages handed on, the pings to answer, the peer's close,
 * and the close code a refusal sends (RFC 6455: 1002, 1007, 1009). The same paths against
 * kone-sim (pongs and close codes on the wire) are test_worker_kone_ws_sim.c's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_utf8.h"
#include "kone_wsmsg.h"
#include "ws_feed.h"

/* What came out of one stream: the events in order, as text ("M:<msg>", "P:<payload>",
 * "C:<code>", "F:<code>"), joined by '|'. */
static char got[8192];

static void note(const char *kind, const char *s, size_t n)
{
    size_t at = strlen(got);
    snprintf(got + at, sizeof got - at, "%s%s%.*s", at ? "|" : "", kind, (int)n, s);
}

static const char *run(const char *hex, size_t max, size_t step)
{
    uint8_t bytes[4096];
    size_t n = 0;
    for (const char *h = hex; h[0] && h[1]; h += 2) {
        unsigned v;
        sscanf(h, "%2x", &v);
        bytes[n++] = (uint8_t)v;
    }
    ws_feed f = {bytes, n, step};
    struct wslay_frame_callbacks cb = {.recv_callback = ws_feed_in};
    wslay_frame_context_ptr fr;
    assert_int_equal(wslay_frame_context_init(&fr, &cb, &f), 0);
    kd_wsmsg m = {.max = max};
    got[0] = '\0';
    for (;;) {
        struct wslay_frame_iocb io;
        memset(&io, 0, sizeof io);
        ssize_t r = wslay_frame_recv(fr, &io);
        if (r == WSLAY_ERR_WANT_READ && f.left)
            continue; /* the next read */
        if (r == WSLAY_ERR_WANT_READ)
            break;
        if (r < 0) { /* kd_ws_rx closes with 1002 */
            note("F:", "1002", 4);
            break;
        }
        kd_wsmsg_result res = kd_wsmsg_chunk(&m, &io);
        if (res == KD_WSMSG_MESSAGE)
            note("M:", m.msg_len ? m.msg : "", m.msg_len);
        else if (res == KD_WSMSG_PING)
            note("P:", (const char *)m.ctl, m.ctl_len);
        if (res == KD_WSMSG_CLOSE || res == KD_WSMSG_FAIL) {
            char code[16];
            snprintf(code, sizeof code, "%d", m.code);
            note(res == KD_WSMSG_CLOSE ? "C:" : "F:", code, strlen(code));
            break; /* kd_ws_rx reads no more */
        }
    }
    kd_wsmsg_free(&m);
    wslay_frame_context_free(fr);
    return got;
}

/* Every stream in reads of 1, 2, 3 and 4096 bytes must give the same events. */
static void expect(const char *hex, size_t max, const char *want)
{
    static const size_t steps[] = {4096, 1, 2, 3};
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++)
        if (strcmp(run(hex, max, steps[i]), want) != 0)
            fail_msg("%s (reads of %zu): got \"%s\", want \"%s\"", hex, steps[i], got, want);
}

static void test_messages_and_fragments(void **state)
{
    (void)state;
    expect("8102"
           "6869",
           64, "M:hi");       /* "hi" in one text frame */
    expect("8100", 64, "M:"); /* an empty one */
    expect("8202"
           "6869"
           "8103"
           "796f75",
           64, "M:hi|M:you"); /* binary, then text */
    /* "hello" in three fragments with a ping and a pong between them */
    expect("0102"
           "6865"
           "8901"
           "78"
           "0001"
           "6c"
           "8a00"
           "8002"
           "6c6f",
           64, "P:x|M:hello");
    /* a multi-byte character split across two fragments is whole in the message */
    expect("0102"
           "61c3"
           "8002"
           "a962",
           64,
           "M:a\xc3\xa9"
           "b");
    /* a 200-byte frame (two-byte length) */
    char hex[1024] = "817e00c8", want[256] = "M:";
    for (int i = 0; i < 200; i++) {
        strcat(hex, "61");
        strcat(want, "a");
    }
    expect(hex, 1024, want);
}

static void test_protocol_errors(void **state)
{
    (void)state;
    expect("8300", 64, "F:1002");           /* reserved opcode */
    expect("c100", 64, "F:1002");           /* RSV1 set: no extension was agreed */
    expect("818100000000ff", 64, "F:1002"); /* masked: a server never masks */
    expect("8001"
           "61",
           64, "F:1002"); /* a continuation with nothing begun */
    expect("0101"
           "61"
           "8101"
           "62",
           64, "F:1002");             /* a new message inside a fragmented one */
    expect("0900", 64, "F:1002");     /* a fragmented ping (wslay's frame layer) */
    expect("897e007e", 64, "F:1002"); /* a ping of 126 bytes (likewise) */
    expect("817e0005"
           "6161616161",
           64, "F:1002"); /* a length not in its shortest form */
    /* what came before an error is handed on */
    expect("8101"
           "61"
           "8300",
           64, "M:a|F:1002");
}

static void test_length_limit(void **state)
{
    (void)state;
    expect("8104"
           "61626364",
           4, "M:abcd");
    expect("8105"
           "6162636465",
           4, "F:1009"); /* refused at its header */
    /* two fragments under the limit each, over it together */
    expect("0103"
           "616263"
           "8002"
           "6465",
           4, "F:1009");
    /* 2 MiB announced, a few bytes sent: refused before the payload is read */
    expect("817f0000000000200000"
           "7b22",
           1 << 20, "F:1009");
}

static void test_utf8(void **state)
{
    (void)state;
    expect("8102"
           "c080",
           64, "F:1007"); /* overlong */
    expect("8103"
           "eda080",
           64, "F:1007"); /* a surrogate */
    expect("8104"
           "f4908080",
           64, "F:1007"); /* past U+10FFFF */
    expect("8102"
           "61c3",
           64, "F:1007"); /* cut at the message's end */
    expect("8102"
           "c080",
           64, "F:1007");
    expect("8202"
           "c080",
           64, "M:\xc0\x80"); /* binary is not checked */
    expect("8104"
           "f48fbfbf",
           64, "M:\xf4\x8f\xbf\xbf"); /* U+10FFFF */
    const unsigned char ok[] = "plain ASCII long enough for the 16-byte path \xe2\x82\xac end";
    assert_true(kd_utf8_ok(ok, sizeof ok - 1));
    const unsigned char bad[] = "plain ASCII long enough for the 16-byte path \xe2\x28\xa1 end";
    assert_false(kd_utf8_ok(bad, sizeof bad - 1));
    assert_true(kd_utf8_ok((const unsigned char *)"", 0));
}

static void test_close(void **state)
{
    (void)state;
    expect("8800", 64, "C:0"); /* no code */
    expect("8805"
           "03e8"
           "627965",
           64, "C:1000"); /* 1000 "bye" */
    expect("8802"
           "0fa0",
           64, "C:4000"); /* an application's code */
    expect("8801"
           "03",
           64, "F:1002"); /* one byte */
    expect("8802"
           "03ed",
           64, "F:1002"); /* 1005 never goes on the wire */
    expect("8802"
           "03ec",
           64, "F:1002"); /* 1004 is reserved */
    expect("8802"
           "0bb7",
           64, "F:1002"); /* 2999: unassigned */
    expect("8804"
           "03e8"
           "c080",
           64, "F:1007"); /* a reason that is not UTF-8 */
    /* a close between fragments ends the stream there */
    expect("0101"
           "61"
           "8802"
           "03e8"
           "8001"
           "62",
           64, "C:1000");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_messages_and_fragments),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_length_limit),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
