/* ledger: the call ledger, one PostgreSQL row per job_id, so that one job places at most one
 * elevator call across redeliveries, crashes, hand-overs and workers (docs/failure-handling.md,
 * "The call ledger").
 *
 * The rule it enforces: a claim (job_id, attempt, state `writing`) is committed before the
 * call is written to KONE; KONE's answer moves the row to `accepted` (with the call's session
 * id) or `done` (with the outcome and the result event); a transient failure before KONE
 * accepted anything moves it to `retry`. A delivery meets the row first and is told what to
 * do (kd_ledger_verdict): call, produce the recorded result again, follow the accepted call,
 * report `unknown` for a call written but never answered, or wait for another delivery that
 * holds the job.
 *
 * Threads: one connection, owned by the worker's main thread (libpq connections are not
 * shared). Statements are queued and sent in batches, one batch per loop turn, in libpq's
 * pipeline mode: a batch is one transaction (one commit, one WAL flush) and the loop never
 * waits for it. Callbacks run on the main thread from kd_ledger_turn, after the commit.
 *
 * Failure: a claim that cannot be committed is answered KD_LEDGER_FAILED at once (the job is
 * handed back, never called unclaimed). Every other statement is an idempotent update that is
 * kept and sent again after a reconnect until it commits. While the ledger does not answer,
 * kd_ledger_up() is false and the worker takes no jobs.
 *
 * Ownership: rows carry the worker's owner name (worker.id plus a random instance nonce) and
 * a lease, renewed for this worker's rows every third of ledger.lease_ms. A row whose lease
 * ran out belongs to no live worker: the next delivery takes it over.
 */
#ifndef KD_WORKER_LEDGER_H
#define KD_WORKER_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kd_config.h"
#include "kd_err.h"
#include "kd_run.h"

#define KD_LEDGER_SCHEMA_VERSION 3

typedef struct kd_ledger kd_ledger;

typedef enum {
    KD_LEDGER_CALL = 0,  /* claimed for this attempt: make the call */
    KD_LEDGER_DONE,      /* the job ended before: its recorded outcome is in `found` */
    KD_LEDGER_FOLLOW,    /* KONE accepted its call (session_id), its worker is gone: follow it */
    KD_LEDGER_AMBIGUOUS, /* its call was written, never answered, its worker is gone */
    KD_LEDGER_BUSY,      /* another delivery holds the job (lease live): ask again later */
    KD_LEDGER_FAILED,    /* the ledger did not answer: hand the job back */
} kd_ledger_verdict;

/* What a claim met. Outcome fields are filled for DONE; session_id for FOLLOW. */
typedef struct kd_ledger_found {
    kd_ledger_verdict verdict;
    int attempt; /* the attempt recorded in the row */
    int64_t session_id;
    kd_outcome outcome;
    kd_failure_class failure;
    int kone_status;
    char error_code[48];
    char error_message[256];
    int64_t started_us, finished_us, kone_rtt_us;
    char worker[160]; /* the row's owner before this claim */
} kd_ledger_found;

/* What the ledger tells the worker's metrics (may be NULL members). No context argument: the
 * one user is the metrics catalogue, whose update functions (kd_wm_ledger_*) are the hooks
 * themselves (the catalogue is one per process, metrics_catalog.c). */
typedef struct kd_ledger_hooks {
    void (*up)(bool up);
    void (*op)(const char *op, bool ok);
    void (*commit)(int64_t us);
    void (*rows)(const char *state, int64_t n);
} kd_ledger_hooks;

typedef void (*kd_ledger_claim_fn)(const kd_ledger_found *found, void *ctx);
/* result/len: the encoded result as recorded (valid during the call only; NULL when a
 * closing ledger had none), so that the caller produces the very bytes it recorded without
 * encoding the result again. */
typedef void (*kd_ledger_done_fn)(bool ok, const void *result, size_t len, void *ctx);

/* Who made the call a cancel job names (kd_ledger_route). */
typedef struct kd_ledger_call_owner {
    bool ok;    /* the ledger answered */
    bool found; /* a row has that session id in that building */
    bool mine;  /* made by this worker */
    bool alive; /* its worker's heartbeat is recent (within ledger.lease_ms) */
    char owner[160];
    char kone_session[64];
} kd_ledger_call_owner;
typedef void (*kd_ledger_route_fn)(const kd_ledger_call_owner *o, void *ctx);
/* answered: the owner sent the delete and KONE answered status/message. */
typedef void (*kd_ledger_poll_fn)(bool ok, bool answered, int status, const char *message,
                                  void *ctx);
/* A cancel another worker asks of this one (the call was made on one of its sessions). */
typedef void (*kd_ledger_cancel_fn)(const char *cancel_job_id, int64_t call_session_id,
                                    const char *building, const char *group, void *ctx);

/* Reads ledger.* keys. ledger.url=none: *out is NULL, 0 returned (the caller warns). Else
 * connects (bounded by ledger.timeout_ms), creates or migrates the schema, and returns 0, or
 * an error naming the URL with its password masked (the ledger cannot be reached, the URL is
 * malformed, the schema is newer than this worker knows). */
int kd_ledger_open(kd_ledger **out, const kd_config *cfg, const char *worker_id,
                   const kd_ledger_hooks *hooks, kd_err *err);
void kd_ledger_close(kd_ledger *l);

/* The URL with any password replaced by "***" (for logs and errors). */
void kd_ledger_mask_url(const char *url, char *out, size_t len);

/* Connected and the last batch committed. */
bool kd_ledger_up(const kd_ledger *l);
/* What the ledger refused at its first connection, when that came after the open (PostgreSQL
 * did not answer then): a newer or broken schema, which stops a start. NULL: nothing. The
 * worker stops (exit 2) on it, as it would have at start. */
const char *kd_ledger_fatal(const kd_ledger *l);
/* The owner name written into rows ("<worker.id>/<nonce>"). */
const char *kd_ledger_owner(const kd_ledger *l);
/* Statements queued or in flight. */
int kd_ledger_pending(const kd_ledger *l);
/* What to wait on, for reading: the socket while a batch is in flight (its answer is due),
 * the reconnect attempt's eventfd while one runs (readable once it connected or failed),
 * else -1. The worker's loop polls it with its other sockets so that a commit, or a
 * connection made, is acted on at once. */
int kd_ledger_wait_fd(const kd_ledger *l);
/* true while a batch is in flight and TLS holds bytes of PostgreSQL's answer that libpq has
 * not read yet: its socket may stay silent, so the loop must not sleep on it. */
bool kd_ledger_buffered(const kd_ledger *l);

/* Claims run->job.job_id for run->attempt; fn(found, ctx) after the commit (or at once with
 * KD_LEDGER_FAILED when the ledger is down). The time its batch waited for PostgreSQL (sent
 * to committed) is added to run->ledger_claim_us: run must live until fn. */
void kd_ledger_claim(kd_ledger *l, kd_run *run, kd_ledger_claim_fn fn, void *ctx);
/* KONE accepted the call: state accepted with its session id and the KONE session (the
 * create-session id of the connection) that made it. */
void kd_ledger_accept(kd_ledger *l, const char *job_id, int64_t session_id,
                      const char *kone_session);

/* ---- cancels across workers ----
 * KONE's sessions own their calls: a delete must be sent on the session that made the call.
 * A cancel job on another worker asks the ledger who that is (route); when it is another
 * live worker, it leaves the cancel in that worker's mailbox (cancel_request) and polls for
 * KONE's answer (cancel_poll); the owner takes it (kd_ledger_on_cancel, every 250 ms), sends
 * the delete on its own session and records what KONE answered (cancel_answer). */
void kd_ledger_route(kd_ledger *l, int64_t call_session_id, const char *building,
                     kd_ledger_route_fn fn, void *ctx);
void kd_ledger_cancel_request(kd_ledger *l, const char *cancel_job_id, int64_t call_session_id,
                              const char *building, const char *group, const char *owner);
void kd_ledger_cancel_poll(kd_ledger *l, const char *cancel_job_id, kd_ledger_poll_fn fn,
                           void *ctx);
void kd_ledger_cancel_answer(kd_ledger *l, const char *cancel_job_id, int status,
                             const char *message);
/* Takes the cancels asked of this worker from now on (fn on the main thread). */
void kd_ledger_on_cancel(kd_ledger *l, kd_ledger_cancel_fn fn, void *ctx);
/* The job ended: state done with the run's outcome and the encoded result event. fn(ok)
 * after the commit; ok=false only when the row is no longer this worker's (taken over).
 * PostgreSQL's time is added to run->ledger_done_us, as for the claim. */
void kd_ledger_done(kd_ledger *l, kd_run *run, const void *result, size_t len, kd_ledger_done_fn fn,
                    void *ctx);
/* A transient failure before KONE accepted anything: the next attempt may call. */
void kd_ledger_retry(kd_ledger *l, const kd_run *run);
/* This worker lets go of the job without an outcome. written=false: the call was never
 * written, the claim is deleted (the next delivery calls). written=true: the row stays as
 * it is (`writing` or `accepted`) and its lease ends now, so the next worker decides at once. */
void kd_ledger_release(kd_ledger *l, const kd_run *run, bool written);

/* Once per loop turn: reconnects (with backoff), sends the queued batch, reads answers and
 * runs callbacks, renews leases, purges expired rows and refreshes the row counts. */
void kd_ledger_turn(kd_ledger *l);
/* The caller's wait found the ledger's socket (kd_ledger_wait_fd) silent: the next
 * kd_ledger_turn does not read it (a recv that would fail EAGAIN), unless OpenSSL holds
 * bytes already. Once; a wrong hint only delays the answers to the turn after. */
void kd_ledger_quiet(kd_ledger *l);
/* At shutdown: ends this worker's leases and waits up to timeout_us for queued statements. */
void kd_ledger_drain(kd_ledger *l, int64_t timeout_us);

#endif
