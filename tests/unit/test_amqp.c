/* test_amqp: kd_amqp. Without a broker: configuration checks and connect errors (they
 * name host:port, never the password). With KD_TEST_AMQP=1 and a broker reachable through
 * the KD_AMQP_* variables (e.g. after scripts/dev-up): the topology, confirmed and
 * pipelined publishing, an unroutable publish, consuming with manual acks and a stale
 * ack after a reconnect. The live tests use their own exchange and queue, named after the
 * pid, and delete them at the end.
 */
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_stderr.h"
#include "kd_amqp.h"
#include "raw_amqp.h"

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void load(kd_config *cfg)
{
    char *argv[] = {"test_amqp", NULL};
    kd_err err = {0};
    if (kd_config_load(cfg, KD_PROG_WORKER, "test_amqp", 1, argv, &err) != 0)
        fail_msg("%s", err.msg);
}

/* Runs kd_amqp_connect with stderr (the log) captured into log (NUL-terminated). */
static int connect_logged(kd_amqp **a, const kd_config *cfg, kd_err *err, char *log, size_t cap)
{
    int saved;
    FILE *f = test_stderr_begin(&saved);
    assert_non_null(f);
    int rc = kd_amqp_connect(a, cfg, err);
    test_stderr_end(saved, f, log, cap);
    return rc;
}

/* amqp.host's forms: a list of nodes, each may be an amqps:// or amqp:// URL choosing TLS,
 * with its own port; a node that cannot be reached is skipped for the next, with a warning
 * naming it. The weak settings (a plain node, amqp.tls_insecure) are warned about once per
 * process: this runs first. */
static void test_host_forms(void **state)
{
    (void)state;
    kd_config cfg;
    load(&cfg);
    int p1 = closed_port(), p2 = closed_port();
    char hosts[128], log[8192];
    snprintf(hosts, sizeof hosts, "amqps://127.0.0.1:%d, amqp://127.0.0.1:%d/vhost", p1, p2);
    kd_config_set(&cfg, KD_CFG_AMQP_HOST, hosts, NULL);
    kd_config_set(&cfg, KD_CFG_AMQP_TLS_INSECURE, "true", NULL);
    kd_amqp *a = NULL;
    kd_err err = {0};
    assert_int_equal(connect_logged(&a, &cfg, &err, log, sizeof log), KD_ERR_IO);
    assert_null(a);
    assert_non_null(strstr(log, "INSECURE: plain AMQP without TLS"));
    assert_non_null(strstr(log, "INSECURE: amqp.tls_insecure=true"));
    /* whichever node came first was skipped with a warning, the other gave the error */
    char first[64], last[64];
    snprintf(first, sizeof first, "127.0.0.1:%d: ", strstr(err.msg, "amqps://") ? p2 : p1);
    snprintf(last, sizeof last, "127.0.0.1:%d", strstr(err.msg, "amqps://") ? p1 : p2);
    assert_non_null(strstr(log, first));
    assert_non_null(strstr(log, "trying the next node"));
    assert_non_null(strstr(err.msg, last));
    /* the plain node is reached without TLS: its error does not say amqps:// */
    snprintf(hosts, sizeof hosts, "amqp://127.0.0.1:%d", p2);
    kd_config_set(&cfg, KD_CFG_AMQP_HOST, hosts, NULL);
    assert_int_equal(connect_logged(&a, &cfg, &err, log, sizeof log), KD_ERR_IO);
    assert_null(strstr(err.msg, "amqps://"));
    assert_null(strstr(log, "INSECURE")); /* once per process */

    static const char *bad[][2] = {
        {"127.0.0.1:99999", "bad port in '127.0.0.1:99999'"},
        {"amqps://127.0.0.1:x", "bad port"},
        {" , ", "no host given"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kd_config_set(&cfg, KD_CFG_AMQP_HOST, bad[i][0], NULL);
        assert_int_equal(kd_amqp_connect(&a, &cfg, &err), KD_ERR_INVALID);
        if (!strstr(err.msg, "amqp.host") || !strstr(err.msg, bad[i][1]))
            fail_msg("'%s': '%s' lacks '%s'", bad[i][0], err.msg, bad[i][1]);
    }
    kd_config_free(&cfg);
}

/* A TLS node whose port speaks something else (here: an HTTP server's answer): the
 * handshake fails, and the error says to check the port. */
static void test_tls_handshake_with_plain_server(void **state)
{
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 1), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int c = accept(lfd, NULL, NULL);
        static const char answer[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        if (c >= 0 && write(c, answer, sizeof answer - 1) > 0)
            shutdown(c, SHUT_WR);
        char buf[512];
        while (c >= 0 && read(c, buf, sizeof buf) > 0)
            ;
        _exit(0);
    }
    close(lfd);
    kd_config cfg;
    load(&cfg);
    char host[64];
    snprintf(host, sizeof host, "amqps://127.0.0.1:%d", ntohs(sa.sin_port));
    kd_config_set(&cfg, KD_CFG_AMQP_HOST, host, NULL);
    kd_amqp *a = NULL;
    kd_err err = {0};
    assert_int_equal(kd_amqp_connect(&a, &cfg, &err), KD_ERR_IO);
    assert_null(a);
    if (!strstr(err.msg, "TLS handshake failed") ||
        !strstr(err.msg, "is this RabbitMQ's TLS port?"))
        fail_msg("'%s'", err.msg);
    assert_non_null(strstr(err.msg, host));
    int st = 0;
    waitpid(pid, &st, 0);
    kd_config_free(&cfg);
}

static void test_bad_config_values(void **state)
{
    (void)state;
    static const char *cases[][3] = {
        {"amqp.port", "0", "amqp.port"},
        {"amqp.port", "http", "amqp.port"},
        {"amqp.heartbeat_s", "-1", "amqp.heartbeat_s"},
        {"amqp.queue", "", "amqp.queue"},
        {"amqp.exchange", "", "amqp.exchange"},
        {"amqp.delivery_limit", "0", "amqp.delivery_limit"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kd_config cfg;
        load(&cfg);
        kd_amqp *a = (kd_amqp *)&cfg;
        kd_err err = {0};
        /* a value of the wrong type or out of bounds is refused as it is set (as at load,
         * from the table); one the table accepts but AMQP does not, by kd_amqp_connect */
        int rc = kd_config_set(&cfg, (kd_config_id)kd_config_find(cases[i][0]), cases[i][1], &err);
        if (!rc) {
            assert_int_equal(kd_amqp_connect(&a, &cfg, &err), KD_ERR_INVALID);
            assert_null(a);
        } else {
            assert_int_equal(rc, KD_ERR_INVALID);
        }
        if (!strstr(err.msg, cases[i][2]))
            fail_msg("case %zu: '%s' does not name %s", i, err.msg, cases[i][2]);
        kd_config_free(&cfg);
    }
}

static void test_connect_refused(void **state)
{
    (void)state;
    kd_config cfg;
    load(&cfg);
    char port[16];
    snprintf(port, sizeof port, "%d", closed_port());
    kd_config_set(&cfg, KD_CFG_AMQP_PORT, port, NULL);
    kd_config_set(&cfg, KD_CFG_AMQP_PASSWORD, "hunter2-secret", NULL);
    kd_amqp *a = NULL;
    kd_err err = {0};
    assert_int_equal(kd_amqp_connect(&a, &cfg, &err), KD_ERR_IO);
    assert_null(a);
    char where[64];
    snprintf(where, sizeof where, "127.0.0.1:%s", port);
    assert_non_null(strstr(err.msg, where));
    assert_null(strstr(err.msg, "hunter2"));
    kd_config_free(&cfg);
}

static void test_unresolvable_host(void **state)
{
    (void)state;
    kd_config cfg;
    load(&cfg);
    kd_config_set(&cfg, KD_CFG_AMQP_HOST, "no-such-host.invalid", NULL);
    kd_amqp *a = NULL;
    kd_err err = {0};
    assert_int_not_equal(kd_amqp_connect(&a, &cfg, &err), 0);
    assert_non_null(strstr(err.msg, "no-such-host.invalid:"));
    kd_config_free(&cfg);
}

/* ---- with a broker ---- */

static char names[64];

static int live_setup(void **state)
{
    (void)state;
    snprintf(names, sizeof names, "kd.test.amqp.%d", (int)getpid());
    return 0;
}

static void live_config(kd_config *cfg)
{
    load(cfg);
    kd_config_set(cfg, KD_CFG_AMQP_EXCHANGE, names, NULL);
    kd_config_set(cfg, KD_CFG_AMQP_QUEUE, names, NULL);
    kd_config_set(cfg, KD_CFG_AMQP_ROUTING_KEY, names, NULL);
}

/* A plain rabbitmq-c connection for what kd_amqp deliberately cannot do. */
static void raw_admin(bool unbind_only)
{
    kd_config cfg;
    live_config(&cfg);
    amqp_connection_state_t c = raw_amqp_login(&cfg);
    assert_non_null(c);
    amqp_channel_open(c, 1);
    amqp_bytes_t n = amqp_cstring_bytes(names);
    if (unbind_only) {
        amqp_queue_unbind(c, 1, n, n, n, amqp_empty_table);
    } else {
        amqp_queue_delete(c, 1, n, 0, 0);
        amqp_exchange_delete(c, 1, n, 0);
    }
    assert_int_equal(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
    kd_config_free(&cfg);
}

static int live_teardown(void **state)
{
    (void)state;
    if (getenv("KD_TEST_AMQP"))
        raw_admin(false);
    return 0;
}

static kd_amqp *reconnect(const kd_config *cfg)
{
    kd_amqp *a;
    kd_err err = {0};
    if (kd_amqp_connect(&a, cfg, &err) != 0)
        fail_msg("%s", err.msg);
    return a;
}

static kd_amqp *live_connect(kd_config *cfg)
{
    if (!getenv("KD_TEST_AMQP"))
        skip();
    live_config(cfg);
    kd_amqp *a;
    kd_err err = {0};
    if (kd_amqp_connect(&a, cfg, &err) != 0)
        fail_msg("%s", err.msg);
    return a;
}

static void test_live_publish_and_consume(void **state)
{
    (void)state;
    kd_config cfg;
    kd_amqp *a = live_connect(&cfg);
    kd_err err = {0};
    if (kd_amqp_publish_confirmed(a, "one", "\x81\xa1x\x01", 4, 5000, &err) != 0)
        fail_msg("%s", err.msg);

    /* pipelined: 200 in flight, every tag confirmed exactly once */
    enum { N = 200 };
    for (int i = 0; i < N; i++) {
        uint64_t tag;
        assert_int_equal(kd_amqp_publish(a, "many", "\x80", 1, &tag, &err), 0);
        assert_int_equal(tag, (uint64_t)i + 2); /* tag 1 was "one" */
    }
    bool acked[N + 2] = {false};
    int left = N;
    while (left > 0) {
        kd_amqp_event ev;
        int n = kd_amqp_next_event(a, 5000, &ev, &err);
        if (n <= 0)
            fail_msg("no confirm: %d %s", n, err.msg);
        assert_int_equal(ev.kind, KD_AMQP_EV_ACK);
        assert_true(ev.tag >= 2 && ev.tag <= N + 1);
        for (uint64_t t = ev.multiple ? 2 : ev.tag; t <= ev.tag; t++) {
            if (!acked[t] && (t == ev.tag || ev.multiple)) {
                acked[t] = true;
                left--;
            }
        }
        assert_true(acked[ev.tag]);
    }
    kd_amqp_close(a);

    /* consume them back on a fresh connection */
    a = reconnect(&cfg);
    assert_int_equal(kd_amqp_consume_start(a, 10, &err), 0);
    kd_delivery d;
    assert_int_equal(kd_amqp_consume_next(a, 5000, &d, &err), 1);
    assert_int_equal(d.len, 4);
    assert_memory_equal(d.body, "\x81\xa1x\x01", 4);
    assert_string_equal(d.content_type, "application/msgpack");
    assert_int_equal(d.epoch, kd_amqp_epoch(a));
    assert_int_equal(kd_amqp_ack(a, d.delivery_tag, d.epoch, &err), 0);
    int got = 0;
    while (got < N && kd_amqp_consume_next(a, 5000, &d, &err) == 1) {
        assert_int_equal(kd_amqp_ack(a, d.delivery_tag, d.epoch, &err), 0);
        got++;
    }
    assert_int_equal(got, N);
    assert_int_equal(kd_amqp_consume_next(a, 200, &d, &err), 0); /* empty: timeout */
    kd_amqp_close(a);
    kd_config_free(&cfg);
}

/* Bodies of every size come back byte for byte, each valid until the next call: empty, over
 * several frames (frame_max is 128 KiB), then small again (the kept buffer shrinks after a
 * body over 64 KiB), and the message id each carried. */
static void test_live_bodies_of_every_size(void **state)
{
    (void)state;
    kd_config cfg;
    kd_amqp *a = live_connect(&cfg);
    kd_err err = {0};
    static const size_t sizes[] = {0, 300 * 1024, 10, 70 * 1024, 1, 131072 - 8, 131072};
    enum { N = sizeof sizes / sizeof sizes[0] };
    unsigned char *body = malloc(300 * 1024);
    assert_non_null(body);
    for (size_t i = 0; i < 300 * 1024; i++)
        body[i] = (unsigned char)(i * 7 + i / 251);
    for (int i = 0; i < N; i++) {
        char id[16];
        snprintf(id, sizeof id, "size-%d", i);
        body[0] = (unsigned char)i; /* each body its own */
        if (kd_amqp_publish_confirmed(a, id, body, sizes[i], 5000, &err) != 0)
            fail_msg("%s", err.msg);
    }
    assert_int_equal(kd_amqp_consume_start(a, 3, &err), 0);
    for (int i = 0; i < N; i++) {
        kd_delivery d;
        char id[16];
        snprintf(id, sizeof id, "size-%d", i);
        if (kd_amqp_consume_next(a, 5000, &d, &err) != 1)
            fail_msg("delivery %d: %s", i, err.msg);
        assert_int_equal(d.len, sizes[i]);
        assert_string_equal(d.message_id, id);
        body[0] = (unsigned char)i;
        if (sizes[i])
            assert_memory_equal(d.body, body, sizes[i]);
        assert_int_equal(kd_amqp_ack(a, d.delivery_tag, d.epoch, &err), 0);
    }
    free(body);
    kd_amqp_close(a);
    kd_config_free(&cfg);
}

static void test_live_stale_ack_after_reconnect(void **state)
{
    (void)state;
    kd_config cfg;
    kd_amqp *a = live_connect(&cfg);
    kd_err err = {0};
    for (int i = 0; i < 3; i++)
        assert_int_equal(kd_amqp_publish_confirmed(a, "s", "\x80", 1, 5000, &err), 0);
    assert_int_equal(kd_amqp_consume_start(a, 10, &err), 0);
    kd_delivery d;
    uint64_t tags[3], old = kd_amqp_epoch(a);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(kd_amqp_consume_next(a, 5000, &d, &err), 1);
        tags[i] = d.delivery_tag;
    }
    kd_amqp_close(a); /* the three go back to the queue */

    a = reconnect(&cfg);
    assert_true(kd_amqp_epoch(a) > old);
    assert_int_equal(kd_amqp_consume_start(a, 1, &err), 0);
    assert_int_equal(kd_amqp_consume_next(a, 5000, &d, &err), 1);
    assert_true(d.redelivered);
    assert_true(d.delivery_count >= 1); /* x-delivery-count of the quorum queue */
    /* tag 3 of the old channel does not exist on this one: acking it for real would make
     * the broker close the channel (406), so a stale ack must be dropped */
    assert_int_equal(kd_amqp_ack(a, tags[2], old, &err), 0);
    assert_int_equal(kd_amqp_nack(a, tags[2], old, true, &err), 0);
    for (int i = 0; i < 3; i++) {
        if (i > 0)
            assert_int_equal(kd_amqp_consume_next(a, 5000, &d, &err), 1);
        assert_int_equal(kd_amqp_ack(a, d.delivery_tag, d.epoch, &err), 0);
    }
    /* a bogus ack with the current epoch: the broker closes the channel, and it shows */
    assert_int_equal(kd_amqp_ack(a, 999, kd_amqp_epoch(a), &err), 0);
    assert_true(kd_amqp_consume_next(a, 5000, &d, &err) < 0);
    assert_non_null(strstr(err.msg, "PRECONDITION_FAILED"));
    assert_non_null(strstr(err.msg, kd_cfg_str(&cfg, KD_CFG_AMQP_HOST)));
    /* the connection stays broken, and every later call says why */
    kd_err again = {0};
    assert_int_equal(kd_amqp_publish_confirmed(a, "after", "\x80", 1, 1000, &again), KD_ERR_IO);
    assert_string_equal(again.msg, err.msg);
    kd_amqp_close(a);
    kd_config_free(&cfg);
}

/* Held acks (kd_amqp_hold_acks): settled in any order, sent per flush as one `multiple` ack
 * for the run from the oldest unsettled delivery and one by one past it; what the broker
 * delivers again after a close is exactly what was never acked. */
static void test_live_held_acks(void **state)
{
    (void)state;
    kd_config cfg;
    kd_amqp *a = live_connect(&cfg);
    kd_err err = {0};
    for (int i = 0; i < 6; i++) {
        char body[2] = {(char)('0' + i), 0};
        assert_int_equal(kd_amqp_publish_confirmed(a, "h", body, 1, 5000, &err), 0);
    }
    kd_amqp_hold_acks(a);
    assert_int_equal(kd_amqp_consume_start(a, 10, &err), 0);
    kd_delivery d;
    uint64_t t[6], ep = kd_amqp_epoch(a);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(kd_amqp_consume_next(a, 5000, &d, &err), 1);
        assert_int_equal(((const char *)d.body)[0], '0' + i);
        t[i] = d.delivery_tag;
    }
    int lost = -1;
    /* 1, 2 and 4 past the unsettled 0: sent one by one */
    const int past[] = {1, 2, 4};
    for (int i = 0; i < 3; i++)
        assert_int_equal(kd_amqp_ack(a, t[past[i]], ep, &err), 0);
    assert_int_equal(kd_amqp_flush_acks(a, &lost, &err), 0);
    assert_int_equal(lost, 0);
    /* 0 settles the run 0..2: one multiple ack of 0 (1 and 2 are acked already) */
    assert_int_equal(kd_amqp_ack(a, t[0], ep, &err), 0);
    assert_int_equal(kd_amqp_flush_acks(a, &lost, &err), 0);
    /* 5 past the unsettled 3 */
    assert_int_equal(kd_amqp_ack(a, t[5], ep, &err), 0);
    assert_int_equal(kd_amqp_flush_acks(a, &lost, &err), 0);
    assert_int_equal(kd_amqp_flush_acks(a, &lost, &err), 0); /* nothing held: nothing sent */
    kd_amqp_close(a);                                        /* 3 goes back to the queue */

    a = reconnect(&cfg);
    kd_amqp_hold_acks(a);
    assert_int_equal(kd_amqp_consume_start(a, 10, &err), 0);
    assert_int_equal(kd_amqp_consume_next(a, 5000, &d, &err), 1);
    assert_int_equal(((const char *)d.body)[0], '3');
    assert_true(d.redelivered);
    assert_int_equal(kd_amqp_consume_next(a, 300, &d, &err), 0); /* only 3 came back */
    /* a held ack dies with its channel: flush says so, and the broker redelivers its job */
    assert_int_equal(kd_amqp_ack(a, d.delivery_tag, d.epoch, &err), 0);
    assert_int_equal(kd_amqp_nack(a, 999, kd_amqp_epoch(a), true, &err), 0); /* 406 */
    assert_true(kd_amqp_consume_next(a, 5000, &d, &err) < 0);
    kd_err ferr = {0};
    assert_int_not_equal(kd_amqp_flush_acks(a, &lost, &ferr), 0);
    assert_int_equal(lost, 1);
    kd_amqp_close(a);

    /* the socket dies under a held ack, unnoticed until the flush writes: said, and lost */
    a = reconnect(&cfg);
    kd_amqp_hold_acks(a);
    assert_int_equal(kd_amqp_consume_start(a, 10, &err), 0);
    assert_int_equal(kd_amqp_consume_next(a, 5000, &d, &err), 1);
    assert_int_equal(((const char *)d.body)[0], '3');
    assert_int_equal(kd_amqp_ack(a, d.delivery_tag, d.epoch, &err), 0);
    assert_int_equal(shutdown(kd_amqp_fd(a), SHUT_RDWR), 0);
    kd_err werr = {0};
    assert_int_not_equal(kd_amqp_flush_acks(a, &lost, &werr), 0);
    assert_int_equal(lost, 1);
    assert_non_null(strstr(werr.msg, "acking deliveries"));
    kd_amqp_close(a);

    a = reconnect(&cfg);
    assert_int_equal(kd_amqp_consume_start(a, 10, &err), 0);
    assert_int_equal(kd_amqp_consume_next(a, 5000, &d, &err), 1);
    assert_int_equal(((const char *)d.body)[0], '3');
    assert_int_equal(kd_amqp_ack(a, d.delivery_tag, d.epoch, &err), 0); /* not held: sent */
    kd_amqp_close(a);
    a = reconnect(&cfg);
    assert_int_equal(kd_amqp_consume_start(a, 10, &err), 0);
    assert_int_equal(kd_amqp_consume_next(a, 300, &d, &err), 0); /* empty */
    kd_amqp_close(a);
    kd_config_free(&cfg);
}

static void test_live_unroutable(void **state)
{
    (void)state;
    kd_config cfg;
    kd_amqp *a = live_connect(&cfg);
    raw_admin(true); /* remove the binding behind kd_amqp's back */
    kd_err err = {0};
    assert_int_equal(kd_amqp_publish_confirmed(a, "lost", "\x80", 1, 5000, &err), KD_ERR_REFUSED);
    assert_non_null(strstr(err.msg, "unroutable"));
    assert_non_null(strstr(err.msg, "NO_ROUTE"));
    kd_amqp_close(a);
    a = reconnect(&cfg); /* connecting binds again */
    assert_int_equal(kd_amqp_publish_confirmed(a, "found", "\x80", 1, 5000, &err), 0);
    kd_amqp_close(a);
    kd_config_free(&cfg);
}

/* The work queue deleted under a consumer (by an operator, or a policy): the broker cancels
 * the consumer, and the next read says so, so the worker reconnects and declares the queue
 * again rather than wait for deliveries that cannot come. */
static void test_live_queue_deleted_while_consuming(void **state)
{
    (void)state;
    kd_config cfg;
    kd_amqp *a = live_connect(&cfg);
    kd_err err = {0};
    assert_int_equal(kd_amqp_consume_start(a, 10, &err), 0);
    assert_true(kd_amqp_consuming(a));
    raw_admin(false);
    kd_delivery d;
    int rc = 0;
    for (int i = 0; i < 50 && rc == 0; i++)
        rc = kd_amqp_consume_next(a, 100, &d, &err);
    assert_int_equal(rc, -KD_ERR_IO);
    assert_non_null(strstr(err.msg, "the broker cancelled the consumer of queue"));
    assert_non_null(strstr(err.msg, names));
    assert_false(kd_amqp_consuming(a));
    kd_amqp_close(a);
    a = reconnect(&cfg); /* connecting declares it again */
    assert_int_equal(kd_amqp_publish_confirmed(a, "back", "\x80", 1, 5000, &err), 0);
    kd_amqp_close(a);
    kd_config_free(&cfg);
}

/* basic.get from a queue that does not exist (replay-dead with a wrong amqp.dead_queue): the
 * broker closes the channel, the error names the queue and the reason, and the connection
 * then refuses everything with that same reason until it is replaced. */
static void test_live_get_missing_queue(void **state)
{
    (void)state;
    kd_config cfg;
    kd_amqp *a = live_connect(&cfg);
    kd_err err = {0};
    assert_int_equal(kd_amqp_consume_start(a, 0, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "prefetch"));
    kd_delivery d;
    assert_true(kd_amqp_get(a, "kd.test.no-such-queue", &d, &err) < 0);
    assert_non_null(strstr(err.msg, "basic.get from queue 'kd.test.no-such-queue'"));
    assert_non_null(strstr(err.msg, "NOT_FOUND"));
    kd_err again = {0};
    assert_int_equal(kd_amqp_get(a, names, &d, &again), -KD_ERR_IO);
    assert_string_equal(again.msg, err.msg);
    assert_int_equal(kd_amqp_consume_next(a, 100, &d, &again), -KD_ERR_IO);
    kd_amqp_event ev;
    assert_int_equal(kd_amqp_next_event(a, 100, &ev, &again), -KD_ERR_IO);
    assert_string_equal(again.msg, err.msg);
    kd_amqp_close(a);
    kd_config_free(&cfg);
}

/* A queue bound to the same routing key that refuses new messages (full, overflow
 * reject-publish): the broker nacks the publish. The confirmed publish says so (the caller
 * retries), and a side publish's nack reaches the consumer's side events. */
static void full_queue(bool create)
{
    kd_config cfg;
    live_config(&cfg);
    amqp_connection_state_t c = raw_amqp_login(&cfg);
    assert_non_null(c);
    amqp_channel_open(c, 1);
    char full[80];
    snprintf(full, sizeof full, "%s.full", names);
    amqp_bytes_t q = amqp_cstring_bytes(full), n = amqp_cstring_bytes(names);
    if (create) {
        amqp_table_entry_t e[2];
        e[0].key = amqp_cstring_bytes("x-max-length");
        e[0].value.kind = AMQP_FIELD_KIND_I64;
        e[0].value.value.i64 = 0;
        e[1].key = amqp_cstring_bytes("x-overflow");
        e[1].value.kind = AMQP_FIELD_KIND_UTF8;
        e[1].value.value.bytes = amqp_cstring_bytes("reject-publish");
        amqp_table_t args = {.num_entries = 2, .entries = e};
        amqp_queue_declare(c, 1, q, 0, 0, 0, 1 /* auto-delete */, args);
        assert_int_equal(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
        amqp_queue_bind(c, 1, q, n, n, amqp_empty_table);
    } else {
        amqp_queue_delete(c, 1, q, 0, 0);
    }
    assert_int_equal(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
    kd_config_free(&cfg);
}

static void test_live_nacked(void **state)
{
    (void)state;
    kd_config cfg;
    kd_amqp *a = live_connect(&cfg);
    full_queue(true);
    kd_err err = {0};
    assert_int_equal(kd_amqp_publish_confirmed(a, "refused", "\x80", 1, 5000, &err),
                     KD_ERR_REFUSED);
    assert_non_null(strstr(err.msg, "nacked"));
    /* the connection is still usable: a side publish while consuming, nacked too */
    assert_int_equal(kd_amqp_consume_start(a, 10, &err), 0);
    kd_amqp_out m = {
        .exchange = names, .routing_key = names, .message_id = "side", .body = "\x80", .len = 1};
    uint64_t tag = 0;
    assert_int_equal(kd_amqp_side_publish(a, &m, &tag, &err), 0);
    kd_amqp_event ev = {0};
    bool nacked = false;
    for (int i = 0; i < 100 && !nacked; i++) {
        kd_delivery d;
        int rc = kd_amqp_consume_next(a, 100, &d, &err);
        if (rc < 0)
            fail_msg("%s", err.msg);
        if (rc == 1) /* the first message, which the work queue took */
            assert_int_equal(kd_amqp_ack(a, d.delivery_tag, d.epoch, &err), 0);
        while (kd_amqp_side_event(a, &ev)) {
            assert_int_equal(ev.kind, KD_AMQP_EV_NACK);
            assert_int_equal(ev.tag, tag);
            nacked = true;
        }
    }
    assert_true(nacked);
    kd_amqp_close(a);
    full_queue(false);
    kd_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_forms), /* first: the warnings are once per process */
        cmocka_unit_test(test_tls_handshake_with_plain_server),
        cmocka_unit_test(test_bad_config_values),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_unresolvable_host),
    };
    const struct CMUnitTest live[] = {
        cmocka_unit_test(test_live_publish_and_consume),
        cmocka_unit_test(test_live_bodies_of_every_size),
        cmocka_unit_test(test_live_stale_ack_after_reconnect),
        cmocka_unit_test(test_live_held_acks),
        cmocka_unit_test(test_live_unroutable),
        cmocka_unit_test(test_live_nacked),
        cmocka_unit_test(test_live_get_missing_queue),
        cmocka_unit_test(test_live_queue_deleted_while_consuming),
    };
    int failed = cmocka_run_group_tests_name("amqp", tests, NULL, NULL);
    return failed + cmocka_run_group_tests_name("amqp_live", live, live_setup, live_teardown);
}
