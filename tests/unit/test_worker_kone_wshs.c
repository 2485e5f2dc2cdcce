/* test_worker_kone_wshs: the WebSocket upgrade as the worker does it (kone_wshs.c): the request
 * it writes and each way an upgrade answer is refused (not 101, the wrong accept key, a header
 * block longer than KD_WSHS_MAX, a missing Upgrade or Connection, another subprotocol, an
 * extension), and an answer that arrives a few bytes at a time with frames after it. The
 * accept keys are computed from RFC 6455's example (section 1.3) and from the request's key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kone_wshs.h"

static void test_rfc_example(void **state)
{
    (void)state;
    char out[29];
    assert_true(kd_wshs_accept_of("dGhlIHNhbXBsZSBub25jZQ==", out));
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/* The request, and the answer a correct server gives to it. */
static size_t start(kd_wshs *h, char *answer, size_t cap, const char *extra)
{
    char req[1024];
    size_t n = kd_wshs_start(h, "kone.example", 443, "/stream-v2?accessToken=t", "koneapi", req,
                             sizeof req);
    assert_true(n > 0);
    assert_non_null(strstr(req, "GET /stream-v2?accessToken=t HTTP/1.1\r\n"));
    assert_non_null(strstr(req, "Host: kone.example\r\n"));
    assert_non_null(strstr(req, "Sec-WebSocket-Protocol: koneapi\r\n"));
    assert_non_null(strstr(req, "Sec-WebSocket-Version: 13\r\n"));
    assert_int_equal(strlen(h->key), KD_WSHS_KEY_LEN);
    assert_non_null(strstr(req, h->key));
    char acc[29];
    assert_true(kd_wshs_accept_of(h->key, acc));
    snprintf(answer, cap,
             "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: keep-alive, "
             "Upgrade\r\nSec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: koneapi\r\n%s\r\n",
             acc, extra);
    return n;
}

static kd_wshs_result feed_all(kd_wshs *h, const char *a, size_t len, int *status, char *why)
{
    size_t used = 0;
    return kd_wshs_feed(h, a, len, &used, status, why, KD_WSHS_WHY_MAX);
}

static void test_accepted_in_pieces(void **state)
{
    (void)state;
    static kd_wshs h;
    char a[600], why[KD_WSHS_WHY_MAX] = "";
    start(&h, a, sizeof a, "");
    size_t al = strlen(a);
    /* a frame (0x81 0x02 "{}") right behind the header block, all fed 5 bytes at a time */
    char wire[700];
    memcpy(wire, a, al);
    memcpy(wire + al, "\x81\x02{}", 4);
    size_t total = al + 4, off = 0, used = 0;
    int status = -1;
    kd_wshs_result r = KD_WSHS_MORE;
    while (r == KD_WSHS_MORE && off < total) {
        size_t n = total - off < 5 ? total - off : 5;
        r = kd_wshs_feed(&h, wire + off, n, &used, &status, why, sizeof why);
        if (r == KD_WSHS_MORE)
            assert_int_equal(used, n);
        else
            off += used;
        if (r == KD_WSHS_MORE)
            off += n;
    }
    assert_int_equal(r, KD_WSHS_OK);
    assert_int_equal(status, 101);
    assert_int_equal(off, al); /* the frame is left for wslay */
}

static void test_port_in_host(void **state)
{
    (void)state;
    static kd_wshs h;
    char req[512];
    assert_true(kd_wshs_start(&h, "127.0.0.1", 8443, "/x", "koneapi", req, sizeof req) > 0);
    assert_non_null(strstr(req, "Host: 127.0.0.1:8443\r\n"));
    assert_int_equal(kd_wshs_start(&h, "127.0.0.1", 8443, "/x", "koneapi", req, 40), 0);
}

static void refused(const char *answer, const char *key, int want_status, const char *want_why)
{
    int status = -1;
    char why[KD_WSHS_WHY_MAX] = "";
    assert_int_equal(
        kd_wshs_check(answer, strlen(answer), key, "koneapi", &status, why, sizeof why),
        KD_WSHS_REFUSED);
    assert_int_equal(status, want_status);
    if (!strstr(why, want_why))
        fail_msg("refused for '%s', expected '%s'", why, want_why);
}

static void test_refusals(void **state)
{
    (void)state;
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
#define OK_ACCEPT "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
#define UPG "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    refused("HTTP/1.1 503 Service Unavailable\r\n\r\n", key, 503, "upgrade refused");
    refused("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", key, 401, "upgrade refused");
    refused("HTTP/1.1 200 OK\r\n" UPG OK_ACCEPT "\r\n", key, 200, "upgrade refused");
    refused("SSH-2.0-OpenSSH\r\n\r\n", key, 0, "no HTTP status line");
    refused("HTTP/1.1 1010 x\r\n\r\n", key, 0, "no HTTP status line");
    refused("HTTP/1.1 101 Switching Protocols\r\n" UPG
            "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
            key, 101, "wrong Sec-WebSocket-Accept");
    refused("HTTP/1.1 101 Switching Protocols\r\n" UPG "\r\n", key, 101, "no Sec-WebSocket-Accept");
    refused("HTTP/1.1 101 Switching Protocols\r\n" UPG OK_ACCEPT OK_ACCEPT "\r\n", key, 101,
            "Sec-WebSocket-Accept twice");
    refused("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n" OK_ACCEPT "\r\n", key,
            101, "no Upgrade: websocket");
    refused("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" OK_ACCEPT "\r\n", key, 101,
            "no Connection: upgrade");
    refused("HTTP/1.1 101 Switching Protocols\r\n" UPG OK_ACCEPT
            "Sec-WebSocket-Protocol: other\r\n\r\n",
            key, 101, "another subprotocol");
    refused("HTTP/1.1 101 Switching Protocols\r\n" UPG OK_ACCEPT
            "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
            key, 101, "an extension");
    refused("HTTP/1.1 101 Switching Protocols\r\n" UPG " folded\r\n" OK_ACCEPT "\r\n", key, 101,
            "malformed header line");
    /* no subprotocol in the answer is accepted (the server took the one offered) */
    int status;
    char why[KD_WSHS_WHY_MAX];
    const char *ok = "HTTP/1.1 101 Switching Protocols\n" UPG OK_ACCEPT "\n";
    assert_int_equal(kd_wshs_check(ok, strlen(ok), key, "koneapi", &status, why, sizeof why),
                     KD_WSHS_OK);
}

static void test_oversize_header(void **state)
{
    (void)state;
    static kd_wshs h;
    char a[600], why[KD_WSHS_WHY_MAX] = "";
    start(&h, a, sizeof a, "");
    int status = -1;
    assert_int_equal(feed_all(&h, "HTTP/1.1 101 Switching Protocols\r\n", 34, &status, why),
                     KD_WSHS_MORE);
    /* header lines that never end the block: refused once KD_WSHS_MAX bytes are held */
    char filler[1000];
    memset(filler, 'a', sizeof filler);
    memcpy(filler, "X-Pad: ", 7);
    memcpy(filler + sizeof filler - 2, "\r\n", 2);
    kd_wshs_result r = KD_WSHS_MORE;
    int rounds = 0;
    while (r == KD_WSHS_MORE && rounds++ < 20)
        r = feed_all(&h, filler, sizeof filler, &status, why);
    assert_int_equal(r, KD_WSHS_REFUSED);
    assert_int_equal(h.len, KD_WSHS_MAX);
    assert_non_null(strstr(why, "header longer than 8192 bytes"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_example),     cmocka_unit_test(test_accepted_in_pieces),
        cmocka_unit_test(test_port_in_host),    cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_oversize_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
