/* amqp_int.h: what the files of kd_amqp share (amqp.c: connection and errors;
 * amqp_topology.c: names and declarations; amqp_publish.c: confirms; amqp_consume.c: deliveries and
 * acks; amqp_side.c: the side channel; amqp_get.c: basic.get and queue counts; amqp_headers.c: the
 * x-kd-* headers). Private to them (and to tests/unit/test_amqp_retry.c, which checks the header
 * codec). */
#ifndef KD_AMQP_INT_H
#define KD_AMQP_INT_H

#include <amqp.h>
#include <amqp_framing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/time.h>

#include "kd_amqp.h"

#define KD_AMQP_CHANNEL 1
/* Delivery tags whose acks amqp_acks.c can hold at once past the oldest unsettled one. */
#define KD_AMQP_ACK_WINDOW 4096
#define KD_AMQP_SIDE_CHANNEL 2
#define KD_AMQP_HDR_MAX 8                /* x-kd-* headers a message can carry */
#define KD_AMQP_CONNECT_TIMEOUT_MS 10000 /* TCP connect, then the AMQP handshake */
#define KD_AMQP_RPC_TIMEOUT_MS 30000     /* login, declares, qos, consume, close */
#define KD_AMQP_FRAME_MAX 131072
/* x-delivery-limit of the parking lot: never met, but explicit, so that RabbitMQ 4.x's default
 * (20) does not drop parked jobs that replay-dead runs or management reads handed back. */
#define KD_AMQP_DEAD_DELIVERY_LIMIT 1000000

struct kd_amqp {
    amqp_connection_state_t conn;
    char where[300]; /* "host:port", for every message */
    char exchange[256];
    char queue[256];
    char routing_key[256];
    kd_amqp_topology topo; /* every name declared (exchange..routing_key copied) */
    char missing[1024];    /* queues found without added arguments: "q (arg, arg); ..." */
    int n_missing;
    uint64_t epoch;
    bool broken; /* closed by the broker or socket failed */
    int broken_code;
    char broken_msg[sizeof(((kd_err *)0)->msg)];

    bool confirm_on;   /* confirm.select done */
    uint64_t last_tag; /* delivery tag of the last publish */

    bool consuming;
    char consumer_tag[256];
    char *body; /* the body of the delivery handed out last (kd_amqp_read_content) */
    size_t body_cap;
    char content_type[128];
    char message_id[256];

    /* acks held for one turn (amqp_acks.c) */
    bool hold_acks;                           /* kd_amqp_hold_acks was called */
    uint64_t ack_base;                        /* every tag <= it is settled on the wire */
    uint64_t ack_high;                        /* the highest tag handed out */
    size_t ack_unsettled;                     /* handed out, neither acked nor nacked */
    int n_held;                               /* acks held until kd_amqp_flush_acks */
    unsigned char ack_st[KD_AMQP_ACK_WINDOW]; /* tags (base, base + window], by tag % window */

    bool side_open;         /* channel 2 open and in confirm mode */
    uint64_t side_last_tag; /* tag of the last side publish */
    kd_amqp_event *side_ev; /* side events read while consuming, FIFO */
    size_t side_head, side_n, side_cap;
};

/* Deliveries handed out (amqp_consume.c, amqp_get.c) and their settling (amqp_acks.c). */
void kd_amqp_acks_delivered(kd_amqp *a, uint64_t tag);
/* An ack of tag: true when it is held (sent by kd_amqp_flush_acks), false: send it now. */
bool kd_amqp_acks_hold(kd_amqp *a, uint64_t tag);
/* A nack (or an ack not held) of tag went out. */
void kd_amqp_acks_sent(kd_amqp *a, uint64_t tag);

struct timeval kd_amqp_tv(int ms);
/* One entry of a field table (message headers, queue arguments): a long string ('S') that
 * points into value, or a signed 64-bit integer ('l'). */
amqp_table_entry_t kd_amqp_str_entry(const char *key, const char *value);
amqp_table_entry_t kd_amqp_i64_entry(const char *key, int64_t value);
/* Before each wait of a loop that reads frames until a deadline: frees the decoded frames the
 * last pass left in the connection's pools (or they grow for as long as the loop runs) and
 * gives the time left to the deadline, never negative. */
struct timeval kd_amqp_wait_tv(kd_amqp *a, int64_t deadline_ms);
/* Before such a loop: the connection's error if it is broken (kd_amqp_if_broken), else 0 with
 * *deadline_ms timeout_ms (0 if negative) from now. */
int kd_amqp_wait_start(const kd_amqp *a, int timeout_ms, int64_t *deadline_ms, kd_err *err);
int64_t kd_amqp_now_ms(void);
void kd_amqp_str(amqp_bytes_t b, char *out, size_t cap);

/* Errors: each returns the kd_err code it set. Once broken, a kd_amqp stays broken and
 * every call fails with the first error (kd_amqp_if_broken). */
int kd_amqp_set_broken(kd_amqp *a, kd_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int kd_amqp_if_broken(const kd_amqp *a, kd_err *err);
int kd_amqp_server_close(kd_amqp *a, const amqp_method_t *m, const char *what, kd_err *err);
/* The same for a close that arrived on `channel` (its close-ok goes there). */
int kd_amqp_server_close_on(kd_amqp *a, amqp_channel_t channel, const amqp_method_t *m,
                            const char *what, kd_err *err);
int kd_amqp_lib_fail(kd_amqp *a, int status, const char *what, kd_err *err);
int kd_amqp_check_reply(kd_amqp *a, amqp_rpc_reply_t r, const char *what, kd_err *err);
int kd_amqp_check_reply_on(kd_amqp *a, amqp_channel_t channel, amqp_rpc_reply_t r, const char *what,
                           kd_err *err);

/* TLS (amqp_tls.c): a rabbitmq-c SSL socket set up from amqp.ca_file, amqp.cert_file,
 * amqp.key_file and amqp.tls_insecure, verifying the certificate names host (NULL and err set on
 * failure); and, after amqp_socket_open failed on it with status, the error naming why (0 when
 * status is not a TLS failure). */
amqp_socket_t *kd_amqp_tls_socket_new(kd_amqp *a, const kd_config *cfg, const char *host,
                                      kd_err *err);
int kd_amqp_tls_open_error(kd_amqp *a, int status, kd_err *err);

/* Declares the topology on channel 1 (amqp_topology.c); a queue from an older version
 * that lacks arguments added since is used as it is, with a warning. */
int kd_amqp_declare_topology(kd_amqp *a, kd_err *err);
/* The argument a 406 reply text names ("... inequivalent arg 'x-overflow' for queue ..."):
 * true with it in key. */
bool kd_amqp_inequivalent_arg(const char *reply_text, char *key, size_t len);
/* The `rabbitmqctl set_policy` command that gives queue (exactly that name) the n arguments
 * as policy keys (the argument's name without "x-"); returns its length. */
int kd_amqp_policy_command(const char *vhost, const char *queue, const amqp_table_entry_t *args,
                           int n, char *buf, size_t len);

/* After a basic.return method frame: reads the returned message (its header and body
 * follow) into ev, so the frame stream stays in step. */
int kd_amqp_read_return(kd_amqp *a, const amqp_frame_t *f, kd_amqp_event *ev, kd_err *err);
/* The methods both frame loops meet (kd_amqp_next_event's, and consume's when the connection
 * also publishes): ack, nack and basic.return fill ev (its kind set); the broker's resource
 * alarms (connection.blocked/unblocked) are logged, ev left empty; a channel or connection
 * close breaks the connection (its error names `what`, "publishing"). *handled is false for
 * any other method, which is the caller's. Returns 0 or a kd_err code. */
int kd_amqp_common_method(kd_amqp *a, const amqp_frame_t *f, kd_amqp_event *ev, const char *what,
                          bool *handled, kd_err *err);
/* Publishes *m on channel (its confirms on: the caller's), persistent and mandatory;
 * *tag gets the delivery tag its confirm will carry, counted in *last_tag. A failure breaks
 * the connection, its error naming `what`. */
int kd_amqp_publish_out(kd_amqp *a, amqp_channel_t channel, const kd_amqp_out *m,
                        uint64_t *last_tag, const char *what, uint64_t *tag, kd_err *err);
/* Reads the content (header and body frames) of the message whose basic.deliver or
 * basic.get-ok was just read, and fills *d: the body into a->body, valid until the next
 * read. A failure breaks the connection, its error naming `what`. Returns 0 or a kd_err
 * code (amqp_consume.c). */
int kd_amqp_read_content(kd_amqp *a, uint64_t delivery_tag, bool redelivered, kd_delivery *d,
                         const char *what, kd_err *err);
/* Queues a side event read while consuming; KD_ERR_NOMEM breaks the connection. */
int kd_amqp_side_push(kd_amqp *a, const kd_amqp_event *ev, kd_err *err);

/* The x-kd-* header codec. encode fills up to KD_AMQP_HDR_MAX entries (pointing into h)
 * and returns how many; decode reads every x-kd-* key it knows and x-delivery-count
 * (integers of any width, strings as bytes) and ignores the rest. */
int kd_amqp_headers_encode(const kd_amqp_headers *h, amqp_table_entry_t *entries);
void kd_amqp_headers_decode(const amqp_table_t *t, kd_amqp_headers *h, int64_t *delivery_count);

#endif
