/* amqp.c: see kd_amqp.h. RabbitMQ through rabbitmq-c 0.11, one connection, channel 1 (and
 * channel 2 for side publishes, amqp_side.c). This file connects, has the topology declared
 * (amqp_topology.c: work queue, retry tiers, parking lot) and turns failures into errors;
 * amqp_publish.c and amqp_consume.c do the two directions (amqp_int.h is what they share).
 *
 * Why it is built this way:
 * - rabbitmq-c does no background work. Heartbeats are sent and checked only inside its
 *   calls, so every wait here goes through amqp_simple_wait_frame_noblock or
 *   amqp_consume_message with a bounded timeout, never a bare poll() on the socket.
 * - rabbitmq-c keeps frames it read ahead (during amqp_basic_publish or an RPC) in a
 *   queue and bytes in a buffer; kd_amqp_buffered() exposes that so a caller's poll loop
 *   does not sleep on a silent socket while a confirm or a delivery is already here.
 * - Decoded frames live in the connection's pools; amqp_maybe_release_buffers is called
 *   only at the top of a wait, when no decoded frame is held any more.
 * - Once the broker closed the channel or the connection, or the socket failed, the
 *   kd_amqp is "broken": every call fails fast with the first error and the owner
 *   reconnects (kd_amqp_close + kd_amqp_connect). kd_amqp_close skips the closing
 *   handshake on a broken connection so it never blocks on a dead peer.
 * - Epochs come from one process-wide counter, so a delivery tag from a previous
 *   connection can never ack a message of the current one (tags restart at 1).
 * - TLS (AMQPS) is the default (amqp.tls); amqp_tls.c sets the socket up and explains a
 *   refused certificate. Plain AMQP and amqp.tls_insecure each log a warning at every start
 *   (the first connect of a process), so neither goes unnoticed.
 * Error messages name host:port and the broker's reply text, never the password.
 */
#include "amqp_int.h"

#include <amqp_tcp_socket.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kd_log.h"
#include "kd_tls.h"
#include "kd_str.h"

static _Atomic uint64_t kd_amqp_epochs;

struct timeval kd_amqp_tv(int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

amqp_table_entry_t kd_amqp_str_entry(const char *key, const char *value)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes(key)};
    e.value.kind = AMQP_FIELD_KIND_UTF8;
    e.value.value.bytes = amqp_cstring_bytes(value);
    return e;
}

amqp_table_entry_t kd_amqp_i64_entry(const char *key, int64_t value)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes(key)};
    e.value.kind = AMQP_FIELD_KIND_I64;
    e.value.value.i64 = value;
    return e;
}

struct timeval kd_amqp_wait_tv(kd_amqp *a, int64_t deadline_ms)
{
    amqp_maybe_release_buffers(a->conn);
    int64_t left = deadline_ms - kd_amqp_now_ms();
    return kd_amqp_tv(left > 0 ? (int)left : 0);
}

int kd_amqp_wait_start(const kd_amqp *a, int timeout_ms, int64_t *deadline_ms, kd_err *err)
{
    *deadline_ms = kd_amqp_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    return kd_amqp_if_broken(a, err);
}

int64_t kd_amqp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void kd_amqp_str(amqp_bytes_t b, char *out, size_t cap)
{
    size_t n = b.len < cap - 1 ? b.len : cap - 1;
    if (n)
        memcpy(out, b.bytes, n);
    out[n] = '\0';
}

/* ---- errors ------------------------------------------------------------------------ */

/* Marks the connection unusable and remembers why, so later calls fail with the cause. */
int kd_amqp_set_broken(kd_amqp *a, kd_err *err, int code, const char *fmt, ...)
{
    char msg[sizeof a->broken_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!a->broken) {
        a->broken = true;
        a->broken_code = code;
        kd_str_copy(a->broken_msg, sizeof a->broken_msg, msg);
    }
    return kd_err_set(err, code, "%s", msg);
}

int kd_amqp_if_broken(const kd_amqp *a, kd_err *err)
{
    if (!a->broken)
        return 0;
    return kd_err_set(err, a->broken_code, "%s", a->broken_msg);
}

/* A channel.close or connection.close from the broker: answer it (the broker waits for
 * close-ok before it frees the channel) and describe it. Returns the kd_err code. */
int kd_amqp_server_close_on(kd_amqp *a, amqp_channel_t channel, const amqp_method_t *m,
                            const char *what, kd_err *err)
{
    char text[256] = "";
    int code = 0;
    if (m->id == AMQP_CONNECTION_CLOSE_METHOD) {
        const amqp_connection_close_t *c = m->decoded;
        code = c->reply_code;
        kd_amqp_str(c->reply_text, text, sizeof text);
        amqp_connection_close_ok_t ok = {0};
        amqp_send_method(a->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
    } else if (m->id == AMQP_CHANNEL_CLOSE_METHOD) {
        const amqp_channel_close_t *c = m->decoded;
        code = c->reply_code;
        kd_amqp_str(c->reply_text, text, sizeof text);
        amqp_channel_close_ok_t ok = {0};
        amqp_send_method(a->conn, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    } else {
        snprintf(text, sizeof text, "unexpected method 0x%08x", (unsigned)m->id);
    }
    int kc = code == AMQP_ACCESS_REFUSED ? KD_ERR_AUTH : KD_ERR_IO;
    const char *which = m->id == AMQP_CONNECTION_CLOSE_METHOD ? "connection" : "channel";
    return kd_amqp_set_broken(a, err, kc, "amqp %s: %s: broker closed the %s: %d %s", a->where,
                              what, which, code, text);
}

int kd_amqp_server_close(kd_amqp *a, const amqp_method_t *m, const char *what, kd_err *err)
{
    return kd_amqp_server_close_on(a, KD_AMQP_CHANNEL, m, what, err);
}

/* Library status (socket error, heartbeat timeout, ...) → broken with a message. */
int kd_amqp_lib_fail(kd_amqp *a, int status, const char *what, kd_err *err)
{
    int code = status == AMQP_STATUS_TIMEOUT     ? KD_ERR_TIMEOUT
               : status == AMQP_STATUS_NO_MEMORY ? KD_ERR_NOMEM
                                                 : KD_ERR_IO;
    return kd_amqp_set_broken(a, err, code, "amqp %s: %s: %s", a->where, what,
                              amqp_error_string2(status));
}

/* Checks the reply of an RPC-style call (login, declare, ...) made on `channel`. */
int kd_amqp_check_reply_on(kd_amqp *a, amqp_channel_t channel, amqp_rpc_reply_t r, const char *what,
                           kd_err *err)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL: return 0;
    case AMQP_RESPONSE_NONE:
        return kd_amqp_set_broken(a, err, KD_ERR_IO, "amqp %s: %s: no reply from the broker",
                                  a->where, what);
    case AMQP_RESPONSE_LIBRARY_EXCEPTION: return kd_amqp_lib_fail(a, r.library_error, what, err);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        return kd_amqp_server_close_on(a, channel, &r.reply, what, err);
    }
    return kd_amqp_set_broken(a, err, KD_ERR_INTERNAL, "amqp %s: %s: unknown reply", a->where,
                              what);
}

int kd_amqp_check_reply(kd_amqp *a, amqp_rpc_reply_t r, const char *what, kd_err *err)
{
    return kd_amqp_check_reply_on(a, KD_AMQP_CHANNEL, r, what, err);
}

/* ---- connection and topology ------------------------------------------------------- */

static int open_socket(kd_amqp *a, const kd_config *cfg, const char *host, int port, bool tls,
                       kd_err *err)
{
    amqp_socket_t *sock =
        tls ? kd_amqp_tls_socket_new(a, cfg, host, err) : amqp_tcp_socket_new(a->conn);
    if (!sock)
        /* GCOVR_EXCL_START: a TLS socket fails only on allocation, its files were checked first */
        return tls ? (err ? err->code : KD_ERR_INVALID)
                   : kd_err_set(err, KD_ERR_NOMEM, "amqp %s: cannot create a socket", a->where);
    /* GCOVR_EXCL_STOP */
    struct timeval tv = kd_amqp_tv(KD_AMQP_CONNECT_TIMEOUT_MS);
    int st = amqp_socket_open_noblock(sock, host, port, &tv);
    if (st == AMQP_STATUS_OK)
        return 0;
    int rc = tls ? kd_amqp_tls_open_error(a, st, err) : 0;
    if (rc)
        return rc;
    /* rabbitmq-c keeps the socket's own error (SO_ERROR) to itself, and errno is stale */
    if (st == AMQP_STATUS_SOCKET_ERROR)
        return kd_err_set(err, KD_ERR_IO,
                          "amqp %s: cannot connect: connection refused or network "
                          "unreachable (is RabbitMQ listening there?)",
                          a->where);
    if (st == AMQP_STATUS_TIMEOUT)
        return kd_err_set(err, KD_ERR_TIMEOUT, "amqp %s: cannot connect: no answer within %d ms",
                          a->where, KD_AMQP_CONNECT_TIMEOUT_MS);
    return kd_err_set(err, KD_ERR_IO, "amqp %s: cannot connect: %s", a->where,
                      amqp_error_string2(st));
}

static int log_in(kd_amqp *a, const kd_config *cfg, int heartbeat, kd_err *err)
{
    /* connection_name shows up in the management UI and rabbitmqctl list_connections */
    char name[128];
    kd_str_copy(name, sizeof name, cfg->prog_name ? cfg->prog_name : "kone-dispatch");
    /* RabbitMQ sends basic.cancel (the work queue deleted under its consumer) and
     * connection.blocked/unblocked (a resource alarm) only to clients that announce them as
     * capabilities; rabbitmq-c announces neither, and without the first a worker whose queue
     * was deleted would wait for deliveries forever. rabbitmq-c merges these with its own. */
    amqp_table_entry_t caps[2];
    caps[0].key = amqp_cstring_bytes("consumer_cancel_notify");
    caps[1].key = amqp_cstring_bytes("connection.blocked");
    for (int i = 0; i < 2; i++) {
        caps[i].value.kind = AMQP_FIELD_KIND_BOOLEAN;
        caps[i].value.value.boolean = 1;
    }
    amqp_table_entry_t props[2];
    props[0].key = amqp_cstring_bytes("connection_name");
    props[0].value.kind = AMQP_FIELD_KIND_UTF8;
    props[0].value.value.bytes = amqp_cstring_bytes(name);
    props[1].key = amqp_cstring_bytes("capabilities");
    props[1].value.kind = AMQP_FIELD_KIND_TABLE;
    props[1].value.value.table = (amqp_table_t){.num_entries = 2, .entries = caps};
    amqp_table_t table = {.num_entries = 2, .entries = props};

    const char *vhost = kd_cfg_str(cfg, KD_CFG_AMQP_VHOST);
    const char *user = kd_cfg_str(cfg, KD_CFG_AMQP_USER);
    amqp_rpc_reply_t r = amqp_login_with_properties(a->conn, vhost, 0, KD_AMQP_FRAME_MAX, heartbeat,
                                                    &table, AMQP_SASL_METHOD_PLAIN, user,
                                                    kd_cfg_str(cfg, KD_CFG_AMQP_PASSWORD));
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return 0;
    char what[400];
    snprintf(what, sizeof what, "login as '%s' to vhost '%s'", user, vhost);
    int rc = kd_amqp_check_reply(a, r, what, err);
    /* RabbitMQ may just drop the socket on bad credentials or an unknown vhost */
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        (r.library_error == AMQP_STATUS_CONNECTION_CLOSED ||
         r.library_error == AMQP_STATUS_SOCKET_CLOSED))
        kd_err_wrap(err, "(check amqp.user, amqp.password and amqp.vhost)");
    return rc;
}

/* Connects to one broker node and declares the topology. */
static int connect_host(kd_amqp **out, const kd_config *cfg, const char *host, int64_t port,
                        bool tls, int64_t heartbeat, kd_err *err)
{
    int rc;
    kd_amqp *a = calloc(1, sizeof *a);
    if (!a)
        /* GCOVR_EXCL_START: allocation failure (no test injects one) */
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    /* GCOVR_EXCL_STOP */
    rc = kd_amqp_topology_load(&a->topo, cfg, err);
    if (rc) {
        free(a);
        return rc;
    }
    kd_str_copy(a->exchange, sizeof a->exchange, a->topo.exchange);
    kd_str_copy(a->queue, sizeof a->queue, a->topo.queue);
    kd_str_copy(a->routing_key, sizeof a->routing_key, a->topo.routing_key);
    snprintf(a->where, sizeof a->where, "%s%s:%d", tls ? "amqps://" : "", host, (int)port);
    a->conn = amqp_new_connection();
    if (!a->conn) {
        /* GCOVR_EXCL_START: allocation failure (no test injects one) */
        free(a);
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        /* GCOVR_EXCL_STOP */
    }
    struct timeval rpc = kd_amqp_tv(KD_AMQP_RPC_TIMEOUT_MS);
    struct timeval hs = kd_amqp_tv(KD_AMQP_CONNECT_TIMEOUT_MS);
    amqp_set_rpc_timeout(a->conn, &rpc);
    amqp_set_handshake_timeout(a->conn, &hs);

    rc = open_socket(a, cfg, host, (int)port, tls, err);
    if (!rc)
        rc = log_in(a, cfg, (int)heartbeat, err);
    if (!rc) {
        amqp_channel_open(a->conn, KD_AMQP_CHANNEL);
        rc = kd_amqp_check_reply(a, amqp_get_rpc_reply(a->conn), "opening channel 1", err);
    }
    if (!rc)
        rc = kd_amqp_declare_topology(a, err);
    if (rc) {
        a->broken = true; /* no closing handshake on a half-open connection */
        kd_amqp_close(a);
        return rc;
    }
    a->epoch = atomic_fetch_add(&kd_amqp_epochs, 1) + 1;
    kd_info("amqp %s: connected (vhost '%s', heartbeat %ds, epoch %llu), queue '%s' ready "
            "with %d retry tiers and dead-letter queue '%s'",
            a->where, kd_cfg_str(cfg, KD_CFG_AMQP_VHOST), (int)heartbeat,
            (unsigned long long)a->epoch, a->queue, a->topo.n_tiers, a->topo.dead_queue);
    *out = a;
    return 0;
}

/* amqp.host may list several nodes of a cluster ("h1,h2:5673,h3"). A process remembers
 * which node it reached last: the next connect (after that connection was lost) starts
 * with the node after it, so a worker whose node died fails over instead of retrying the
 * dead node first. One full round without success is one failure for the caller's backoff. */
static atomic_uint kd_amqp_last_host;

#define KD_AMQP_MAX_HOSTS 16

static atomic_bool kd_amqp_warned; /* the plain/insecure warnings: once per process */

static void warn_weak(bool any_plain, bool insecure)
{
    if (atomic_exchange(&kd_amqp_warned, true))
        return;
    if (any_plain)
        kd_warn("amqp: INSECURE: plain AMQP without TLS (amqp.tls=false or an amqp:// node): "
                "the broker password and every job cross the network in clear");
    if (insecure)
        kd_warn("amqp: INSECURE: amqp.tls_insecure=true: RabbitMQ's certificate and host name "
                "are not verified, anyone on the path can read and forge jobs");
}

int kd_amqp_connect(kd_amqp **out, const kd_config *cfg, kd_err *err)
{
    *out = NULL;
    int64_t port = kd_cfg_int(cfg, KD_CFG_AMQP_PORT);
    int64_t heartbeat = kd_cfg_int(cfg, KD_CFG_AMQP_HEARTBEAT_S);
    bool tls_default = kd_cfg_bool(cfg, KD_CFG_AMQP_TLS);
    bool insecure = kd_cfg_bool(cfg, KD_CFG_AMQP_TLS_INSECURE);
    int rc = kd_tls_check_files(cfg, KD_CFG_AMQP_CA_FILE, KD_CFG_AMQP_CERT_FILE,
                                KD_CFG_AMQP_KEY_FILE, err);
    if (rc)
        return rc;
    char list[1024];
    snprintf(list, sizeof list, "%s", kd_cfg_str(cfg, KD_CFG_AMQP_HOST));
    char *hosts[KD_AMQP_MAX_HOSTS];
    int64_t ports[KD_AMQP_MAX_HOSTS];
    bool tls[KD_AMQP_MAX_HOSTS];
    bool any_plain = false, any_tls = false;
    unsigned n = 0;
    char *save = NULL;
    for (char *h = strtok_r(list, ", ", &save); h && n < KD_AMQP_MAX_HOSTS;
         h = strtok_r(NULL, ", ", &save)) {
        /* amqps://host[:port] and amqp://host[:port] choose TLS for that node */
        tls[n] = tls_default;
        ports[n] = port;
        if (strncmp(h, "amqps://", 8) == 0) {
            h += 8;
            tls[n] = true;
            ports[n] = 5671;
        } else if (strncmp(h, "amqp://", 7) == 0) {
            h += 7;
            tls[n] = false;
            ports[n] = 5672;
        }
        h[strcspn(h, "/")] = '\0'; /* a trailing "/" or "/vhost" of a URL: amqp.vhost decides */
        if (strchr(h, '@'))        /* the value may hold a password: never quoted */
            return kd_err_set(err, KD_ERR_INVALID,
                              "amqp.host: a user or password in a URL is "
                              "not read; set amqp.user and amqp.password (or its _FILE)");
        any_plain = any_plain || !tls[n];
        any_tls = any_tls || tls[n];
        char *colon = strrchr(h, ':');
        if (colon && !strchr(colon + 1, ']')) {
            char *end;
            long p = strtol(colon + 1, &end, 10);
            if (*end || p < 1 || p > 65535)
                return kd_err_set(err, KD_ERR_INVALID, "amqp.host: bad port in '%s'", h);
            *colon = '\0';
            ports[n] = p;
        }
        hosts[n++] = h;
    }
    if (n == 0)
        return kd_err_set(err, KD_ERR_INVALID, "amqp.host: no host given");
    warn_weak(any_plain, insecure && any_tls);
    unsigned start = n > 1 ? (atomic_load(&kd_amqp_last_host) + 1) % n : 0;
    for (unsigned k = 0; k < n; k++) {
        unsigned i = (start + k) % n;
        rc = connect_host(out, cfg, hosts[i], ports[i], tls[i], heartbeat, err);
        if (!rc) {
            atomic_store(&kd_amqp_last_host, i);
            return 0;
        }
        if (n > 1 && k + 1 < n)
            kd_warn("amqp %s:%d: %s; trying the next node", hosts[i], (int)ports[i],
                    err ? err->msg : "connect failed");
    }
    atomic_store(&kd_amqp_last_host, (start + n - 1) % n);
    return rc;
}

void kd_amqp_close(kd_amqp *a)
{
    if (!a)
        return;
    if (a->conn && !a->broken && a->n_held) {
        int lost;
        kd_err err = {0};
        if (kd_amqp_flush_acks(a, &lost, &err)) /* else they go back to the queue */
            kd_warn("amqp %s: %d held acks not sent at close: %s", a->where, lost, err.msg);
    }
    if (a->conn) {
        if (!a->broken) {
            /* unacked deliveries go back to the queue when the channel closes */
            amqp_channel_close(a->conn, KD_AMQP_CHANNEL, AMQP_REPLY_SUCCESS);
            amqp_connection_close(a->conn, AMQP_REPLY_SUCCESS);
        }
        amqp_destroy_connection(a->conn);
    }
    free(a->side_ev);
    free(a->body);
    free(a);
}

uint64_t kd_amqp_epoch(const kd_amqp *a)
{
    return a->epoch;
}

int kd_amqp_fd(const kd_amqp *a)
{
    return amqp_get_sockfd(a->conn);
}

bool kd_amqp_buffered(const kd_amqp *a)
{
    return amqp_frames_enqueued(a->conn) || amqp_data_in_buffer(a->conn);
}
