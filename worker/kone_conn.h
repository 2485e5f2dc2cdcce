/* kone_conn.h: the connection layer of the KONE client (kone_conn.c), its contract.
 *
 * What it does: a pool of slots (kone.connections), each one logical connection to KONE's
 * stream-v2: TLS + WebSocket upgrade with the token of its share (?accessToken=), a KONE
 * session (create-session once, resume-session after every reconnect or replacement),
 * keep-alive pings, the replacement of a connection older than kone.max_conn_age_s, the
 * reconnect backoff, the reassembly of fragmented frames (kone_wsrx.h), request ids unique
 * per process, and one lws_write per WRITEABLE callback.
 *
 * What it does not know: jobs, subscriptions, building configurations, circuit breakers.
 * It reaches them only through kk_conn_ops, a table of callbacks with a user pointer that the
 * client's owner of the loop (kone.c) gives it, as kone-sim's server takes sim_conn_ops and
 * Redis's ae takes a proc and its clientData. The layers above call down into it (send,
 * want_write, kick, the ids); it never calls up by name. Everything here runs on the KONE
 * loop thread, except kd_kone_ready's read of n_ready (atomic).
 *
 * Remaining shared state (issue 16, not finished): kk_slot (kone_int.h) still carries the
 * upper layers' lists (jobs, wq, subs, site_wq) next to the connection's, and kd_kone its
 * configuration; the connection layer reads only its own fields of both.
 */
#ifndef KD_WORKER_KONE_CONN_H
#define KD_WORKER_KONE_CONN_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stdint.h>

#include "kd_config.h"
#include "kone_msg.h"
#include "kone_wsrx.h"

#define KK_MAX_SLOTS KD_CONFIG_KONE_MAX_CONNECTIONS /* kone.connections: bounded in the table */
#define KK_RX_MAX ((size_t)1024 * 1024)             /* a bigger frame is dropped */
#define KK_BACKOFF_MIN_MS 100
#define KK_BACKOFF_MAX_MS 10000
#define KK_RESEND_STATE_S 30 /* resendLatestStateUpToSeconds on resume */

typedef struct kd_kone kd_kone;
typedef struct kk_slot kk_slot;

typedef enum {
    KC_IDLE = 0,   /* no wsi */
    KC_CONNECTING, /* TCP/TLS/upgrade in progress */
    KC_SESSION,    /* upgraded; create/resume-session written or to be written */
    KC_READY,      /* session held: may carry jobs */
    KC_CLOSING,    /* we asked lws to drop it */
} kk_conn_state;

typedef struct kk_conn {
    kk_slot *slot;
    int idx; /* 0 or 1 within the slot */
    struct lws *wsi;
    kk_conn_state st;
    bool retiring;        /* replaced by the slot's other conn; let it go */
    uint64_t token_gen;   /* token used for its upgrade */
    int64_t opened_mono;  /* upgrade completed */
    int64_t last_tx_mono; /* last frame written */
    /* session request */
    bool sess_write;     /* create/resume to be written */
    bool sess_resume;    /* ... and it is a resume */
    int64_t sess_req_id; /* 0 when none outstanding */
    int64_t sess_sent_mono;
    /* keep-alive ping */
    bool ping_write;
    int64_t ping_req_id; /* 0 when none outstanding */
    int64_t ping_sent_mono;
    kd_wsrx rx;           /* reassembly of fragmented frames (kone_wsrx.h) */
    char tls_refusal[96]; /* why KONE's certificate was refused (OpenSSL's words) */
} kk_conn;

/* What the connection layer tells the layers above it, and asks them. Every member is set
 * (kone.c fills the table: kone_route.c's callbacks and its own wakeup); user is the last
 * argument of each. All are called on the loop thread, from inside an lws callback or a
 * slot timer: they may call down into this layer, never block. */
typedef struct kk_conn_ops {
    /* A call-state frame of call session sid came on s, before it is parsed: true to go on
     * (it is parsed and handed to frame_in), false when nobody follows that call there (the
     * callee keeps it or drops it). */
    bool (*state_in)(kk_slot *s, int64_t sid, const char *buf, size_t len, void *user);
    /* A frame that is not the connection's own (its session request's answer, its pings'),
     * parsed (m) and as it came (buf, len). */
    void (*frame_in)(kk_slot *s, const kd_kone_msg *m, const char *buf, size_t len, void *user);
    /* The active connection c of s may write one frame now (kk_conn_send): 0 (written or
     * nothing to write), -1 the connection must close. */
    int (*writable)(kk_slot *s, kk_conn *c, void *user);
    /* Is a frame waiting to be written on s (ask for another WRITEABLE)? */
    bool (*want_write)(const kk_slot *s, void *user);
    /* s holds a session again: the old one resumed (true) or a new one (false). */
    void (*session_restored)(kk_slot *s, bool resumed, void *user);
    /* s lost its active connection; its session may still be resumed. */
    void (*lost)(kk_slot *s, void *user);
    /* s has no connection and none takes over: what waits to be written moves away. */
    void (*released)(kk_slot *s, void *user);
    /* Requests written on s not answered yet: a replacement waits for them to drain. */
    int (*outstanding)(kk_slot *s, void *user);
    /* The building and group a keep-alive ping on s names; false when there is none. */
    bool (*ping_target)(const kk_slot *s, const char **building, const char **group, void *user);
    /* lws_cancel_service woke the loop (another thread handed something over). */
    void (*wakeup)(void *user);
} kk_conn_ops;

extern const struct lws_protocols kk_protocols[];
void kk_slot_init(kd_kone *k, kk_slot *s, int idx);
void kk_slot_kick(kk_slot *s);       /* evaluate its timers now */
void kk_slot_want_write(kk_slot *s); /* ask for WRITEABLE on the active conn */
bool kk_slot_ready(const kk_slot *s);
void kk_slots_token_changed(kd_kone *k); /* a new token arrived */
void kk_slots_shutdown(kd_kone *k);      /* cancel timers (conns die with ctx) */
int64_t kk_slot_next_id(kk_slot *s);
void kk_conn_kill(kk_conn *c); /* drop this connection now */
/* Writes one text frame (one lws_write, LWS_PRE headroom); only from WRITEABLE.
 * Returns 0, or -1 when the connection must close. */
int kk_conn_send(kk_conn *c, const char *text);
kk_conn *kk_slot_active(kk_slot *s); /* the READY conn carrying jobs, or NULL */
/* An answer arrived on s: a replacement waiting for the old conn to drain may go on. */
void kk_slot_answered(kk_slot *s);
/* The token that serves a building: 0 when kone.buildings is empty (every building goes to
 * the one token); else its share's, or -1 when it is not in kone.buildings (outside every
 * scope the worker asked for: KONE would answer 403). Slots with tok == it carry it. */
int kk_token_of(const kd_kone *k, const char *building_id);
int64_t kk_jitter(kd_kone *k, int64_t max); /* 0..max-1 */

#endif
