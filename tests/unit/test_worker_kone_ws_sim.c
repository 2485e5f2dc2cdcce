/* test_worker_kone_ws_sim: the worker's own WebSocket framing (kone_ws.c, wslay over
 * kone_tls.c) against kone-sim's WebSocket faults (POST /sim/ws-inject, /sim/drop-connections;
 * docs/kone-sim.md): a ping from KONE is answered, fragmented frames are put back together,
 * a malformed frame or a message over the limit closes that connection with the code RFC 6455
 * gives (1002, 1009) and the link reconnects, and KONE's close frame is answered (the link
 * reconnects). What each test looks at is where a user would: the call's outcome, and the close
 * codes and pongs kone-sim received (its log). The upgrade answer's checks (wrong accept key,
 * oversize header) are test_worker_kone_wshs.c's; a refused upgrade (503, 401) is
 * test_worker_kone_refused_sim.c's and test_worker_kone_sim.c's.
 */
#include "kone_sim_fixture.h"

/* Waits until the simulator's log holds needle n times. */
static bool log_has(const char *needle, int n, int ms)
{
    for (int i = 0; i < ms / 20; i++) {
        if (count_in_log(needle) >= n)
            return true;
        usleep(20000);
    }
    return count_in_log(needle) >= n;
}

/* Injects bytes (hex) on every open connection, then waits until the worker has connected
 * again (a new "opened" line) and a call goes through. */
static void expect_closed_with(client *c, const char *hex, const char *code_line)
{
    int opened = count_in_log("opened client=kd-dev");
    char body[200];
    snprintf(body, sizeof body, "{\"hex\":\"%s\"}", hex);
    assert_int_equal(sim_post("/sim/ws-inject", body), 200);
    assert_true(log_has(code_line, 1, 10000));
    assert_true(log_has("opened client=kd-dev", opened + 1, 10000));
    expect_success_within(c, B951, "1", 1000, 5000, 50);
}

static void test_ping_answered(void **state)
{
    (void)state;
    if (!sim.have)
        skip();
    client c;
    client_start(&c, "--kone-connections=1");
    /* 0x89: a final ping frame, 4 bytes of payload "kd-1" (unmasked, as a server sends) */
    assert_int_equal(sim_post("/sim/ws-inject", "{\"hex\":\"89046b642d31\"}"), 200);
    assert_true(log_has("pong received (4 bytes)", 1, 10000));
    /* the connection stays: a call goes through on it */
    expect_success_within(&c, B951, "1", 1000, 5000, 1);
    assert_int_equal(count_in_log("opened client=kd-dev"), 1);
    client_stop(&c);
}

static void test_fragmented_frames(void **state)
{
    (void)state;
    if (!sim.have)
        skip();
    client c;
    client_start(&c, "--kone-connections=1");
    /* every frame kone-sim sends from now on comes in fragments of 7 bytes */
    assert_int_equal(sim_post("/sim/ws-inject", "{\"fragment\":7}"), 200);
    expect_success_within(&c, B951, "1", 1000, 5000, 1);
    assert_true(count_in_log("fragments of 7") >= 1);
    client_stop(&c);
}

static void test_malformed_frame_closes(void **state)
{
    (void)state;
    if (!sim.have)
        skip();
    client c;
    client_start(&c, "--kone-connections=1");
    /* 0x83: opcode 3, reserved: a protocol error (1002) */
    expect_closed_with(&c, "8300", "client closed with code 1002");
    /* a masked frame from a server is one too */
    expect_closed_with(&c, "818100000000ff", "client closed with code 1002");
    /* each counted (kone_ws_protocol_errors_total{code="1002"}), nothing else */
    assert_int_equal(protocol_errors(1002), 2);
    assert_int_equal(protocol_errors(1009), 0);
    client_stop(&c);
}

static void test_oversize_message_closes(void **state)
{
    (void)state;
    if (!sim.have)
        skip();
    client c;
    client_start(&c, "--kone-connections=1");
    /* a text frame announcing 2 MiB (over KK_RX_MAX, 1 MiB), its first bytes: refused at
     * once, the rest never read */
    expect_closed_with(&c, "817f00000000002000007b226b223a", "client closed with code 1009");
    assert_int_equal(protocol_errors(1009), 1);
    assert_int_equal(protocol_errors(1002), 0);
    client_stop(&c);
}

static void test_close_code_answered(void **state)
{
    (void)state;
    if (!sim.have)
        skip();
    client c;
    client_start(&c, "--kone-connections=1");
    int opened = count_in_log("opened client=kd-dev");
    assert_int_equal(
        sim_post("/sim/drop-connections", "{\"code\":4000,\"reason\":\"maintenance\"}"), 200);
    /* the worker answers KONE's close (lws takes it as the end of the closing handshake:
     * the connection is closed with KONE's reason, not dropped), then connects again */
    assert_true(log_has("closed: maintenance", 1, 10000));
    assert_true(log_has("opened client=kd-dev", opened + 1, 10000));
    expect_success_within(&c, B951, "1", 1000, 5000, 50);
    assert_int_equal(protocol_errors(1002) + protocol_errors(1009), 0); /* KONE's own close */
    client_stop(&c);
}

KS_MAIN(cmocka_unit_test_setup_teardown(test_ping_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fragmented_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_frame_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize_message_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_code_answered, setup, teardown))
