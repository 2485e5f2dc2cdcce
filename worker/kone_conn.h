/* kone_conn.h: the connection layer of the KONE client (kone_conn.c), its contract.
 *
 * What it does: a pool (kk_pool) of links (kk_link, kone.connections of them), each one
 * logical connection to KONE's stream-v2: TLS (GnuTLS, kone_tls.h, on a socket that
 * libwebsockets' loop watches) + WebSocket upgrade and framing (kone_ws.h, wslay) with the token of
 * its share (?accessToken=), a KONE session (create-session once, resume-session after every
 * reconnect or replacement), keep-alive pings, the replacement of a connection older than
 * kone.max_conn_age_s, the reconnect backoff, the reassembly of fragmented frames
 * (wslay, kone_ws.h), request ids unique per process, and one frame of the layers above per
 * WRITEABLE callback.
 *
 * What it does not know: jobs, subscriptions, building configurations, circuit breakers,
 * metrics. Its structs hold only its own state and configuration; the layer above keeps its
 * per-connection lists in a struct of its own that embeds a kk_link (kone_int.h's kk_slot)
 * and finds it again from the kk_link it is handed (container_of). It reaches the layers
 * above only through kk_conn_ops, a table of callbacks with a user pointer that the client's
 * owner of the loop (kone.c) gives it, as kone-sim's server takes sim_conn_ops and Redis's ae
 * takes a proc and its clientData. The layers above call down into it (send, want_write,
 * kick, the ids); it never calls up by name. kone_conn.c includes this header and lower ones
 * only (shared/, kone_msg.h, kone_ws.h, kone_token.h, kone_dns.h).
 *
 * Threads: everything here runs on the KONE loop thread, except kk_pool.n_ready, which
 * kd_kone_ready reads from any thread (atomic).
 */
#ifndef KD_WORKER_KONE_CONN_H
#define KD_WORKER_KONE_CONN_H

#include <libwebsockets.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "kd_config.h"
#include "kone_dns.h"
#include "kone_msg.h"
#include "kone_timer.h"
#include "kone_token.h"
#include "kone_tls.h"
#include "kone_ws.h"

#define KK_MAX_SLOTS KD_CONFIG_KONE_MAX_CONNECTIONS /* kone.connections: bounded in the table */
#define KK_RX_MAX ((size_t)1024 * 1024)             /* a longer message closes the conn (1009) */
#define KK_BACKOFF_MIN_MS 100
#define KK_BACKOFF_MAX_MS 10000
#define KK_RESEND_STATE_S 30 /* resendLatestStateUpToSeconds on resume */

typedef struct kk_pool kk_pool;
typedef struct kk_link kk_link;

typedef enum {
    KC_IDLE = 0,   /* no wsi */
    KC_CONNECTING, /* TCP/TLS/upgrade in progress */
    KC_SESSION,    /* upgraded; create/resume-session written or to be written */
    KC_READY,      /* session held: may carry jobs */
    KC_CLOSING,    /* we asked lws to drop it */
} kk_conn_state;

/* A request a connection makes for itself (its session, its keep-alive ping): due to be
 * written, then outstanding until its answer or kone.request_timeout_ms. */
typedef struct kk_own_req {
    bool write;        /* to be written */
    int64_t id;        /* its request id; 0 when none outstanding */
    int64_t sent_mono; /* when it was written */
} kk_own_req;

typedef struct kk_conn {
    kk_link *link;
    int idx; /* 0 or 1 within the link */
    struct lws *wsi;
    kk_conn_state st;
    bool retiring;        /* replaced by the link's other conn; let it go */
    uint64_t token_gen;   /* token used for its upgrade */
    int64_t opened_mono;  /* upgrade completed */
    int64_t last_tx_mono; /* last frame written */
    kk_own_req sess;      /* session request (create or resume) */
    bool sess_resume;     /* ... and it is a resume */
    kk_own_req ping;      /* keep-alive ping */
    kd_ws ws;             /* the WebSocket: upgrade, framing, reassembly (kone_ws.h) */
    bool ending;          /* the stream ended (kd_ws_rx): flush its close frame, then drop */
    kd_tls tls;           /* the socket and its TLS (kone_tls.h) */
    bool tls_up;          /* TLS handshake done: the WebSocket's bytes flow */
    bool in_writeable;    /* inside its WRITEABLE callback (conn_want_write) */
    kk_tmr wtmr;          /* asks for WRITEABLE after that callback */
} kk_conn;

/* What the connection layer tells the layers above it, and asks them. Every member is set
 * (kone.c fills the table: kone_route.c's callbacks and its own wakeup); user is the last
 * argument of each; s is the kk_link that the layer above embeds in its own per-connection
 * struct. All are called on the loop thread, from inside an lws callback or a link timer:
 * they may call down into this layer, never block. */
typedef struct kk_conn_ops {
    /* A call-state frame of call session sid came on s, its JSON read but no field taken
     * out yet (kd_kone_msg_read): true to go on (its fields are read and it is handed to
     * frame_in), false when nobody follows that call there (the callee keeps it or drops it). */
    bool (*state_in)(kk_link *s, int64_t sid, const char *buf, size_t len, void *user);
    /* A frame that is not the connection's own (its session request's answer, its pings'),
     * parsed (m) and as it came (buf, len). */
    void (*frame_in)(kk_link *s, const kd_kone_msg *m, const char *buf, size_t len, void *user);
    /* The active connection c of s may write one frame now (kk_conn_send_owned): 0 (written or
     * nothing to write), -1 the connection must close. */
    int (*writable)(kk_link *s, kk_conn *c, void *user);
    /* Is a frame waiting to be written on s (ask for another WRITEABLE)? */
    bool (*want_write)(const kk_link *s, void *user);
    /* s holds a session again: the old one resumed (true) or a new one (false). */
    void (*session_restored)(kk_link *s, bool resumed, void *user);
    /* s lost its active connection; its session may still be resumed. */
    void (*lost)(kk_link *s, void *user);
    /* s has no connection and none takes over: what waits to be written moves away. */
    void (*released)(kk_link *s, void *user);
    /* Requests written on s not answered yet: a replacement waits for them to drain. */
    int (*outstanding)(kk_link *s, void *user);
    /* The building and group a keep-alive ping on s names; false when there is none. */
    bool (*ping_target)(const kk_link *s, const char **building, const char **group, void *user);
    /* lws_cancel_service woke the loop (another thread handed something over). */
    void (*wakeup)(void *user);
    /* Links with an active READY connection, after every change (the owner's metric). */
    void (*ready_count)(int n, void *user);
    /* An active connection was lost unexpectedly: its link reconnects (the owner's metric). */
    void (*reconnecting)(void *user);
    /* A connection closed because the peer's frames broke the protocol (the owner's metric):
     * the close code sent, 1002, 1007 or 1009. */
    void (*protocol_error)(int code, void *user);
} kk_conn_ops;

/* One logical connection: a KONE session, its two physical connections (so that an old one
 * can be replaced, at kone.max_conn_age_s, by a new one that resumes the same session before
 * the old one goes away) and its reconnect state. */
struct kk_link {
    kk_pool *pool;
    int idx;
    kd_kone_tokens *token; /* the token source its connections open with (NULL: none yet) */
    kk_conn conn[2];
    int active; /* conn carrying frames (READY), -1 none */
    char session_id[KD_KONE_SESSION_MAX];
    bool session_numeric;
    unsigned losses;          /* active connections lost so far (for timeout messages) */
    int64_t lost_mono;        /* when it last lost its active connection */
    int backoff_ms;           /* next reconnect delay */
    int64_t reconnect_at;     /* mono µs; 0 = now */
    int64_t replace_retry_at; /* after a failed replacement */
    kk_tmr tmr;
};

/* The links and what they share. The owner fills the configuration, ops and user, then
 * calls kk_link_init for each link before the loop runs; the lws context's user must be the
 * pool (LWS_CALLBACK_EVENT_WAIT_CANCELLED finds it there). */
struct kk_pool {
    /* configuration */
    char *ws_host; /* from kone.ws_url: the TLS name and the Host header (kk_pool_free) */
    int ws_port;
    char *ws_path; /* "/stream-v2" (with any query of the URL) (kk_pool_free) */
    int64_t request_timeout_us, keepalive_us, max_age_us;
    char *ca_file; /* kone.ca_file (NULL: the system CAs), for the connections' TLS (kone_tls.h;
                      kone.c frees it) */
    int64_t dns_ttl_us; /* kone.dns_ttl_s, for the resolver (kone_dns.h) */
    struct lws_context *ctx;
    kk_timers timers;    /* every timer of the client's loop (kone_timer.h), on ctx's one */
    kd_kone_dns *dns;    /* ws_host resolved off the loop (kone_dns.h); NULL when numeric */
    kd_tls_ctx *tls_ctx; /* made at the first connection (kk_pool_free) */
    kk_conn_ops ops;
    void *user;
    int n_links; /* kone.connections: links[0..n_links) are in use */
    kk_link *links[KK_MAX_SLOTS];
    /* state */
    bool exiting;       /* shutting down: close callbacks do nothing */
    atomic_int n_ready; /* links with an active READY connection (any thread reads it) */
    unsigned rand_state;
    int64_t next_req_id; /* request ids, unique per process (kk_pool_next_id) */
};

/* The lws protocol the loop's context must carry: the connections' sockets are adopted
 * into it as raw descriptors. */
extern const struct lws_protocols kk_protocols[];
void kk_link_init(kk_pool *p, kk_link *l, int idx); /* zeroes l, registers it as links[idx] */
void kk_link_kick(kk_link *l);                      /* evaluate its timers now */
void kk_link_want_write(kk_link *l);                /* ask for WRITEABLE on the active conn */
bool kk_link_ready(const kk_link *l);
kk_conn *kk_link_active(kk_link *l); /* the READY conn carrying frames, or NULL */
/* An answer arrived on l: a replacement waiting for the old conn to drain may go on. */
void kk_link_answered(kk_link *l);
void kk_pool_kick_all(kk_pool *p); /* a new token (or address) arrived */
void kk_pool_shutdown(kk_pool *p); /* cancel timers (conns die with ctx) */
int64_t kk_pool_next_id(kk_pool *p);
int64_t kk_pool_jitter(kk_pool *p, int64_t max); /* 0..max-1 */
void kk_pool_free(kk_pool *p); /* ws_host, ws_path, tls_ctx, the links' WebSockets */
void kk_conn_kill(kk_conn *c); /* drop this connection now */
/* Queues one text frame, written by the same WRITEABLE callback (what the socket does not
 * take then, by the next ones); only from WRITEABLE. text is the caller's malloc'ed frame
 * (kd_kone_msg_*), freed here whatever happens. Returns 0, or -1 when the connection must
 * close. */
int kk_conn_send_owned(kk_conn *c, char *text);

#endif
