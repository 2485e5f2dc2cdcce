/* hub: the simulator's shared state and the fan-out of events to WebSocket connections.
 *
 * The hub owns the world (buildings), the token store, the lift model and its clock, the
 * log of lift-call-api-v2 requests (calls.h), and knows every open connection, every
 * session and every site-monitoring subscription. It knows nothing of libwebsockets: a
 * connection is a pair of callbacks (send a text frame, close with a close frame) given by
 * the transport, so the request layer and the unit tests drive it without sockets.
 *
 * Sessions: every connection always has a session. It starts anonymous (its calls and
 * subscriptions die with the connection); create-session names it, after which it outlives
 * the connection for SIM_SESSION_TTL_S and resume-session on another connection takes it
 * over (closing the connection that held it). Calls and subscriptions refer to their
 * session by serial number, never by pointer, so freeing a session cannot leave one
 * dangling.
 *
 * Delivery: an event goes once to each connection owning at least one live subscription
 * that matches it. Frames are built once per event, not per subscriber. Nothing of a group
 * whose site link is down reaches anyone (the cloud does not hear from the site).
 *
 * Injected latency (faults.h): a frame may carry a send time in the future; it then waits
 * in the connection's delay queue, and so does every later frame of that connection, so a
 * delayed answer is never overtaken by its own call result or events (per-connection order
 * is always the order frames were produced). sim_hub_flush_due sends what is due; the
 * transport calls it from its timer (sim_hub_next_due says when).
 */
#ifndef SIM_HUB_H
#define SIM_HUB_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "building.h"
#include "calls.h"
#include "faults.h"
#include "model.h"
#include "util.h"

#define SIM_SESSION_TTL_S 600
#define SIM_SUB_MAX_S 300
#define SIM_DELAY_MAX_BYTES (8 * 1024 * 1024) /* per connection, then it is closed (1008) */

typedef struct sim_hub sim_hub;
typedef struct sim_session sim_session;

typedef struct sim_conn_ops {
    /* Queues one text frame (copied). 0, or -1 when the connection cannot take it. */
    int (*send)(void *t, const char *text, size_t len);
    /* Asks the transport to send a close frame (code, reason) and drop the connection. */
    void (*close)(void *t, int code, const char *reason);
    /* Drops the connection as a network failure would: no close frame. May be NULL (then
     * close with 1006 is used). */
    void (*drop)(void *t);
    /* WebSocket faults (POST /sim/ws-inject): bytes written as they are after the frames
     * queued so far (len 0: none), and from now on text frames sent in fragments of at most
     * fragment bytes (0: whole; -1: unchanged). May be NULL. */
    void (*inject)(void *t, const unsigned char *bytes, size_t len, int fragment);
} sim_conn_ops;

typedef struct sim_delayed sim_delayed; /* a frame waiting for its send time */

typedef struct sim_idset {
    size_t n, cap;
    char **slot;
} sim_idset;

typedef struct sim_conn {
    char id[40]; /* connectionId */
    char client_id[128];
    sim_scopes scopes;
    sim_session *session; /* never NULL while open, except after a takeover */
    sim_idset ids;        /* request ids seen on this connection */
    const sim_conn_ops *ops;
    void *t;             /* the transport's handle */
    uint64_t last_event; /* de-duplication of one event across subscriptions */
    struct sim_hub *hub;
    sim_delayed *delayed, *delayed_tail; /* frames with a send time in the future */
    size_t delayed_bytes;
    struct sim_conn *next, *prev;
} sim_conn;

struct sim_session {
    char id[40]; /* sessionId ("" while anonymous) */
    uint64_t serial;
    char client_id[128];
    sim_conn *conn;      /* NULL while detached */
    int64_t detached_ms; /* real ms when detached */
    struct sim_session *next;
};

struct sim_hub {
    sim_world *world;
    sim_auth *auth;
    sim_model *model;
    sim_clock clock;
    sim_conn *conns;
    sim_session *sessions;
    /* Subscriptions by building and group: an event walks only its own group's list, so
     * 1,000 buildings' subscriptions (the bench's scale scenario) cost an event no more than
     * one building's do. subs_sweep_ms: no subscription expires before it (real ms). */
    struct sim_sub *subs[SIM_MAX_BUILDINGS][SIM_MAX_GROUPS];
    int64_t subs_sweep_ms;
    uint64_t next_serial, event_seq;
    size_t n_conns, n_subs;
    sim_fault_global faults; /* the global faults (the per-group ones are in the world) */
    sim_rng rng;             /* every random fault decision draws from here */
    sim_calls calls;         /* every lift-call-api-v2 request received (GET /sim/calls) */
    bool snapshot;           /* sim.snapshot: current states to a new subscriber */
};

/* The hub borrows world and auth (the caller frees them after the hub). */
int sim_hub_create(sim_hub **out, sim_world *world, sim_auth *auth, const sim_clock *clock);
void sim_hub_free(sim_hub *h);

/* A connection authenticated with tok. NULL when out of memory. */
sim_conn *sim_hub_conn_open(sim_hub *h, const sim_token *tok, const sim_conn_ops *ops, void *t);
/* The transport saw the connection go; conn is freed. */
void sim_hub_conn_closed(sim_hub *h, sim_conn *c);

/* Advances the model to the clock's model time and expires subscriptions and sessions. */
void sim_hub_tick(sim_hub *h);

/* Sends a JSON frame to one connection (takes the reference). 0 or -1. */
int sim_hub_send(sim_conn *c, json_t *frame);
/* The same, not before real time due_ms (monotonic, sim_clock_real_ms). */
int sim_hub_send_at(sim_conn *c, json_t *frame, int64_t due_ms);
/* Earliest send time waiting in a delay queue, or -1 if none. */
int64_t sim_hub_next_due(const sim_hub *h);
/* Sends every delayed frame whose time has come (also done by sim_hub_tick). */
void sim_hub_flush_due(sim_hub *h);

/* Drops connections (client_id NULL or "": all). code 0: as a network failure (no close
 * frame); else a close frame with code and reason. Returns how many. */
/* POST /sim/ws-inject on every connection (of client_id, when given); how many. */
size_t sim_hub_ws_inject(sim_hub *h, const char *client_id, const unsigned char *bytes, size_t len,
                         int fragment);
size_t sim_hub_drop_connections(sim_hub *h, const char *client_id, int code, const char *reason);
/* Drops the connection whose connectionId is id the same way (code 0: no close frame).
 * Returns 1, or 0 when no open connection has that id. */
size_t sim_hub_drop_connection_id(sim_hub *h, const char *id, int code, const char *reason);
/* Every live site-monitoring subscription (GET /sim/subscriptions, read-only): building,
 * group, topic, sub, the session's id (null while anonymous), its connection's id (null while
 * detached), client_id and the ms left before it lapses. NULL when out of memory. */
json_t *sim_hub_subscriptions(const sim_hub *h);
/* Drops one connection as a network failure would (drop_probability). */
void sim_hub_drop(sim_hub *h, sim_conn *c, const char *why);
/* Sends the current monitor-lift-status of each lift of a group to its subscribers (after
 * a mode change, or when the site link comes back). */
void sim_hub_publish_status(sim_hub *h, int b, int g);

/* Records a request id; false if the connection had already used it. -1 out of memory. */
int sim_conn_remember_id(sim_conn *c, const char *key);

/* create-session / resume-session. Return an HTTP-like status and set *msg on error. */
int sim_hub_create_session(sim_hub *h, sim_conn *c, char *id_out, size_t id_len, const char **msg);
int sim_hub_resume_session(sim_hub *h, sim_conn *c, const char *id, const char **msg);
/* After the resume answer: re-sends the latest state of the session's calls that changed
 * in the last resend_s seconds (real time). */
void sim_hub_resend(sim_hub *h, sim_conn *c, double resend_s);

/* site-monitoring: subscribe (or renew) `topic` for `duration_s`. 201 or 400 with *msg.
 * Sends the snapshots a late subscriber needs (current call states, lift status and
 * position) right after. Call sim_hub_subscribe_snapshot after the answer frame. */
bool sim_hub_topic_valid(const sim_hub *h, int b, int g, const char *topic);
int sim_hub_subscribe(sim_hub *h, sim_conn *c, int b, int g, const char *sub, const char *topic,
                      int64_t duration_s, const char **msg);
void sim_hub_subscribe_snapshot(sim_hub *h, sim_conn *c, int b, int g, const char *topic);

/* Publishes a monitor-action event (takes the reference of `call`). */
void sim_hub_publish_action(sim_hub *h, int b, int g, int64_t area, int64_t terminal, json_t *call,
                            bool success, const char *error, const sim_call *c);

/* Wall-clock ISO time of a model time, and of now. */
void sim_hub_time(const sim_hub *h, int64_t model_ms, char *buf, size_t len);
void sim_hub_now(const sim_hub *h, char *buf, size_t len);

#endif
