/* amqp_int.h: what the three files of kd_amqp share (amqp.c: connection, topology and
 * errors; amqp_publish.c: confirms; amqp_consume.c: deliveries and acks). Private to them. */
#ifndef KD_AMQP_INT_H
#define KD_AMQP_INT_H

#include <amqp.h>
#include <amqp_framing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/time.h>

#include "kd_amqp.h"

#define KD_AMQP_CHANNEL 1
#define KD_AMQP_CONNECT_TIMEOUT_MS 10000 /* TCP connect, then the AMQP handshake */
#define KD_AMQP_RPC_TIMEOUT_MS 30000     /* login, declares, qos, consume, close */
#define KD_AMQP_FRAME_MAX 131072

struct kd_amqp {
    amqp_connection_state_t conn;
    char where[300];             /* "host:port", for every message */
    char exchange[256];
    char queue[256];
    char routing_key[256];
    uint64_t epoch;
    bool broken;                 /* closed by the broker or socket failed */
    int broken_code;
    char broken_msg[sizeof(((kd_err *)0)->msg)];

    bool confirm_on;             /* confirm.select done */
    uint64_t last_tag;           /* delivery tag of the last publish */

    bool consuming;
    char consumer_tag[256];
    amqp_envelope_t env;         /* the delivery handed out last, freed on the next call */
    bool have_env;
    char content_type[128];
};

struct timeval kd_amqp_tv(int ms);
int64_t kd_amqp_now_ms(void);
void kd_amqp_str(amqp_bytes_t b, char *out, size_t cap);

/* Errors: each returns the kd_err code it set. Once broken, a kd_amqp stays broken and
 * every call fails with the first error (kd_amqp_if_broken). */
int kd_amqp_set_broken(kd_amqp *a, kd_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int kd_amqp_if_broken(const kd_amqp *a, kd_err *err);
int kd_amqp_server_close(kd_amqp *a, const amqp_method_t *m, const char *what, kd_err *err);
int kd_amqp_lib_fail(kd_amqp *a, int status, const char *what, kd_err *err);
int kd_amqp_check_reply(kd_amqp *a, amqp_rpc_reply_t r, const char *what, kd_err *err);

/* After a basic.return method frame: reads the returned message (its header and body
 * follow) into ev, so the frame stream stays in step. */
int kd_amqp_read_return(kd_amqp *a, const amqp_frame_t *f, kd_amqp_event *ev, kd_err *err);
void kd_amqp_drop_envelope(kd_amqp *a);

#endif
