/* server: the libwebsockets side of kone-sim: one context, one TLS vhost, two protocols.
 *
 * The protocols come from main.c (http.c, stream.c) through sim_server_opts.
 * Protocol "http" (the vhost default) serves the token and resources endpoints and the /sim/
 * control endpoint, and decides WebSocket upgrades (bad token → 401, sub-protocol other
 * than koneapi → 400, injected refusals); protocol
 * "koneapi" carries stream-v2. All of it runs on the one lws service thread: the model tick
 * is an lws_sul timer on that thread too, so the hub needs no locks. Other threads (the
 * signal handler) only set `stop` or `reload` and wake the loop with lws_cancel_service.
 * `reload` (SIGHUP) re-reads sim.clients and the server certificate and key on the loop's
 * thread: secrets and certificates are rotated without dropping a connection, as a KONE
 * portal change or a certificate renewal would be (docs/kone-sim.md).
 */
#ifndef SIM_SERVER_H
#define SIM_SERVER_H

#include <libwebsockets.h>
#include <signal.h>
#include <stdint.h>

#include "auth.h"
#include "control.h"
#include "hub.h"
#include "kd_err.h"

#define SIM_TICK_MS 50
#define SIM_QUEUE_MAX_BYTES (8 * 1024 * 1024)

struct sim_ws;
struct sim_server;

typedef struct sim_server_opts {
    const char *listen;
    int port;
    const char *cert, *key;
    const char *clients; /* sim.clients, re-read on reload */
    int64_t idle_timeout_s, max_conn_s;
    sim_control *ctl; /* the /sim/ control endpoint */
    /* The protocols it serves, in lws's form, ending with an all-zero entry; the first is the
     * vhost's default (HTTP). main.c passes http.c's and stream.c's: the server calls them
     * and they call the server (arm_flush), never the other way round by name. */
    const struct lws_protocols *protocols;
    /* Called about once a second on the loop (stream.c: the idle/age sweep); may be NULL. */
    void (*sweep)(struct sim_server *s);
} sim_server_opts;

typedef struct sim_server {
    struct lws_context *ctx;
    void (*sweep)(struct sim_server *s);
    sim_hub *hub;
    sim_auth *auth;
    int64_t idle_ms, max_ms;
    sim_control *ctl;
    lws_sorted_usec_list_t tick;
    lws_sorted_usec_list_t flush; /* fires when the next delayed frame is due */
    int64_t flush_at;             /* real ms it is armed for, 0 when not armed */
    int64_t last_sweep_ms;
    struct sim_ws *conns;
    const char *cert, *key, *clients;
    volatile sig_atomic_t stop;
    volatile sig_atomic_t reload; /* SIGHUP: re-read clients, certificate and key */
} sim_server;

int sim_server_start(sim_server *s, sim_hub *hub, sim_auth *auth, const sim_server_opts *o,
                     kd_err *err);
/* Runs the service loop until s->stop is set; reloads when s->reload is set. */
void sim_server_run(sim_server *s);
/* (Re)arms the timer sending frames held back by injected latency (after new ones queued). */
void sim_server_arm_flush(sim_server *s);
/* Closes every connection and destroys the context. */
void sim_server_stop(sim_server *s);

#endif
