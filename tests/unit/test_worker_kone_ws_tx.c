/* test_worker_kone_ws_tx: what the worker's WebSocket writes (kone_ws.c), read back by a
 * decoder of RFC 6455's frame format written here from section 5.2 (not wslay's, not ours).
 * Text frames are framed by kone_ws.c itself when nothing of wslay's waits before them, and
 * queued in wslay otherwise (a pong or a close queued, a frame only partly handed over, more
 * than the output's bound): every length form (7-bit, 16-bit, 64-bit) and the 8-byte masking's
 * edges come back as sent, masked, in the order they were sent, across partial socket writes;
 * a pong queued before a text frame goes first; after KONE's close no frame is taken. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kone_ws.h"

typedef struct {
    int opcode;
    size_t len;
    char *data; /* unmasked */
    uint8_t mask[4];
} frame;

#define MAXF 64
static frame got[MAXF];
static int n_got;
static unsigned char *wire; /* everything written, for the decoder */
static size_t wire_len;
static int msgs_in;

static void on_msg(const char *msg, size_t len, void *user)
{
    (void)msg, (void)len, (void)user;
    msgs_in++;
}

/* Takes what the WebSocket has to write, chunk bytes at a time (a socket taking part of it). */
static void drain(kd_ws *w, size_t chunk)
{
    for (;;) {
        const unsigned char *p;
        size_t n;
        assert_true(kd_ws_pending(w, &p, &n));
        if (!n)
            return;
        size_t take = n < chunk ? n : chunk;
        unsigned char *more = realloc(wire, wire_len + take);
        assert_non_null(more);
        wire = more;
        memcpy(wire + wire_len, p, take);
        wire_len += take;
        kd_ws_consumed(w, take);
    }
}

/* Decodes the client's frames in wire (RFC 6455 5.2): each must be final and masked. */
static void decode(void)
{
    size_t at = 0;
    n_got = 0;
    while (at < wire_len) {
        assert_true(n_got < MAXF);
        assert_true(wire_len - at >= 2);
        uint8_t b0 = wire[at], b1 = wire[at + 1];
        assert_int_equal(b0 & 0xf0, 0x80); /* FIN, no RSV bits */
        assert_int_equal(b1 & 0x80, 0x80); /* a client's frames are masked (5.3) */
        uint64_t len = b1 & 0x7f;
        at += 2;
        if (len == 126) {
            len = (uint64_t)wire[at] << 8 | wire[at + 1];
            assert_true(len >= 126); /* the shortest form (5.2) */
            at += 2;
        } else if (len == 127) {
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | wire[at + i];
            assert_true(len > 0xffff);
            at += 8;
        }
        assert_true(wire_len - at >= 4 + len);
        frame *f = &got[n_got++];
        f->opcode = b0 & 0x0f;
        memcpy(f->mask, wire + at, 4);
        at += 4;
        f->len = (size_t)len;
        f->data = malloc(f->len + 1);
        for (size_t i = 0; i < f->len; i++)
            f->data[i] = (char)(wire[at + i] ^ f->mask[i % 4]);
        at += f->len;
    }
}

static void reset_wire(void)
{
    for (int i = 0; i < n_got; i++)
        free(got[i].data);
    n_got = 0;
    free(wire);
    wire = NULL;
    wire_len = 0;
}

/* An upgraded WebSocket: the request drained, kone-sim's kind of 101 answer fed. */
static void open_ws(kd_ws *w)
{
    memset(w, 0, sizeof *w);
    assert_true(kd_ws_open(w, "kone.example", 443, "/stream-v2", "koneapi", 1 << 20, on_msg, NULL));
    char acc[29];
    assert_true(kd_wshs_accept_of(w->hs->key, acc));
    drain(w, 1 << 20);
    reset_wire();
    char a[300];
    int n =
        snprintf(a, sizeof a,
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                 "Upgrade\r\nSec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: koneapi\r\n\r\n",
                 acc);
    assert_int_equal(kd_ws_rx(w, a, (size_t)n), KD_WS_OPENED);
    assert_true(kd_ws_upgraded(w));
}

static char *text_of(size_t len, unsigned seed)
{
    char *t = malloc(len + 1);
    for (size_t i = 0; i < len; i++)
        t[i] = (char)('!' + (i * 7 + seed) % 90);
    t[len] = '\0';
    return t;
}

/* Every length form and every tail of the 8-byte masking; the last two pass the output's
 * bound (64 KiB), so they wait in wslay's queue, and what follows them waits behind them. */
static void test_lengths_and_order(void **state)
{
    (void)state;
    static kd_ws w;
    open_ws(&w);
    static const size_t lens[] = {0,  1,   3,   4,   7,    8,     9,     15,    16,
                                  17, 125, 126, 127, 1000, 65535, 65536, 70000, 5};
    enum { N = sizeof lens / sizeof lens[0] };
    char *texts[N];
    uint64_t sent = kd_ws_sent(&w);
    for (size_t i = 0; i < N; i++) {
        texts[i] = text_of(lens[i], (unsigned)i);
        assert_true(kd_ws_send(&w, texts[i], lens[i]));
    }
    assert_int_equal(kd_ws_sent(&w) - sent, N);
    assert_true(wslay_event_want_write(w.ev)); /* the last three wait in wslay's queue */
    drain(&w, 1000);                           /* the socket takes 1000 bytes at a time */
    decode();
    assert_int_equal(n_got, N);
    int same_mask = 0;
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(got[i].opcode, 1); /* text */
        assert_int_equal(got[i].len, lens[i]);
        assert_memory_equal(got[i].data, texts[i], lens[i]);
        if (i && !memcmp(got[i].mask, got[i - 1].mask, 4))
            same_mask++;
        free(texts[i]);
    }
    assert_true(same_mask < 2); /* drawn from OpenSSL's generator, not one key for all */
    /* with everything written, a new frame goes straight out again */
    reset_wire();
    assert_true(kd_ws_send(&w, "{\"x\":1}", 7));
    assert_false(wslay_event_want_write(w.ev)); /* framed into the output, not queued */
    assert_true(kd_ws_want_write(&w));
    drain(&w, 3);
    decode();
    assert_int_equal(n_got, 1);
    assert_memory_equal(got[0].data, "{\"x\":1}", 7);
    reset_wire();
    kd_ws_free(&w);
}

/* A ping from KONE queues a pong in wslay: a text frame sent after it goes after it. */
static void test_pong_first(void **state)
{
    (void)state;
    static kd_ws w;
    open_ws(&w);
    static const unsigned char ping[] = {0x89, 0x02, 'h', 'i'};
    assert_int_equal(kd_ws_rx(&w, ping, sizeof ping), KD_WS_OK);
    assert_true(kd_ws_send(&w, "after", 5));
    assert_true(kd_ws_send(&w, "and this", 8));
    drain(&w, 4096);
    decode();
    assert_int_equal(n_got, 3);
    assert_int_equal(got[0].opcode, 0xa); /* pong, with the ping's payload */
    assert_int_equal(got[0].len, 2);
    assert_memory_equal(got[0].data, "hi", 2);
    assert_int_equal(got[1].opcode, 1);
    assert_memory_equal(got[1].data, "after", 5);
    assert_memory_equal(got[2].data, "and this", 8);
    reset_wire();
    kd_ws_free(&w);
}

/* KONE closes: our close answers it, and no text frame is taken after it. */
static void test_nothing_after_close(void **state)
{
    (void)state;
    static kd_ws w;
    open_ws(&w);
    assert_true(kd_ws_send(&w, "before", 6));
    static const unsigned char close_1000[] = {0x88, 0x02, 0x03, 0xe8};
    assert_int_equal(kd_ws_rx(&w, close_1000, sizeof close_1000), KD_WS_END);
    assert_true(w.peer_closed);
    assert_false(kd_ws_send(&w, "queued after the close", 22));
    drain(&w, 4096);
    assert_false(kd_ws_send(&w, "after the close went out", 24));
    decode();
    assert_int_equal(n_got, 2);
    assert_memory_equal(got[0].data, "before", 6);
    assert_int_equal(got[1].opcode, 8);
    assert_int_equal(got[1].len, 2);
    assert_memory_equal(got[1].data, "\x03\xe8", 2);
    assert_true(kd_ws_done(&w));
    reset_wire();
    kd_ws_free(&w);
    assert_int_equal(msgs_in, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lengths_and_order),
        cmocka_unit_test(test_pong_first),
        cmocka_unit_test(test_nothing_after_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
