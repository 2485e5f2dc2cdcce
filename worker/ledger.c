/* ledger.c: the call ledger in PostgreSQL (see ledger.h for the contract).
 *
 * Invariants:
 *   - up to LEDGER_MAX_BATCHES batches are in flight, in order; each is one implicit
 *     transaction (statements between two pipeline syncs), so either every statement of it
 *     committed or none did, and a failed batch does not touch the next one;
 *   - a callback runs only after its batch's sync came back: a claim is reported committed
 *     only when it is;
 *   - a claim whose batch failed is answered FAILED and a release of it is queued (its commit
 *     is unknown: the row may exist under this worker's lease, which is renewed, so it must
 *     go or the job's next delivery would wait on it for ever);
 *   - every other statement stays queued until a batch containing it commits.
 * The connection is blocking while it is opened (bounded by connect_timeout) and
 * non-blocking after that; a batch that takes longer than ledger.timeout_ms counts as a lost
 * connection.
 */
#include "ledger.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_job.h"
#include "kd_log.h"

#define LEDGER_BACKOFF_MIN_US 200000
#define LEDGER_BACKOFF_MAX_US 5000000
#define LEDGER_PURGE_EVERY_US 60000000
#define LEDGER_MAX_TRIES 5
/* Batches sent before the first is answered: a commit's round trip (a WAL flush) no longer
 * holds back the statements queued meanwhile, so a loaded worker waits less for its ledger. */
#define LEDGER_MAX_BATCHES 4

typedef enum {
    OP_CLAIM = 0,
    OP_ACCEPT,
    OP_DONE,
    OP_RETRY,
    OP_RELEASE_NEW,
    OP_RELEASE_WRITTEN,
    OP_RENEW,
    OP_PURGE,
    OP_COUNT,
    OP_END_LEASES,
    OP_ROUTE,           /* who owns the call a cancel job names */
    OP_CANCEL_REQUEST,  /* ask the owner to cancel */
    OP_CANCEL_POLL,     /* has the owner answered? */
    OP_CANCEL_TAKE,     /* (owner) cancels asked of this worker */
    OP_CANCEL_ANSWER,   /* (owner) what KONE answered */
    OP_ALIVE,           /* this worker is alive (kd_workers) */
    OP_GONE,            /* this worker stops */
    OP_N
} op_kind;

/* Prepared statement name and metric label of each kind. */
static const char *const op_name[OP_N] = {"claim",  "accept", "done",   "retry",  "release",
                                          "release", "renew", "purge",  "count",  "renew",
                                          "cancel", "cancel", "cancel", "cancel", "cancel",
                                          "renew",  "renew"};

typedef struct op {
    op_kind kind;
    char job_id[KD_JOB_ID_MAX + 1];
    char building[KD_JOB_BUILDING_MAX + 1];
    int attempt;
    bool replayed;
    int64_t session_id;
    /* done */
    char outcome[16];
    int failure, kone_status;
    char error_code[48];
    char error_message[256];
    int64_t started_us, finished_us, kone_rtt_us;
    void *result;
    size_t result_len;
    /* cancels across workers */
    char group[KD_JOB_GROUP_MAX + 1];
    char owner[160];
    int status;
    char message[200];
    /* callbacks */
    kd_ledger_claim_fn claim_fn;
    kd_ledger_done_fn done_fn;
    kd_ledger_route_fn route_fn;
    kd_ledger_poll_fn poll_fn;
    void *ctx;
    kd_ledger_call_owner route;
    /* answer */
    bool failed;
    int tries;              /* batches it failed in (a statement refused 5 times is dropped) */
    unsigned batch_id;      /* the batch it was sent in */
    int affected;
    kd_ledger_found found;
    struct op *next_taken;      /* OP_CANCEL_TAKE: the cancels taken */
    struct op *next;
} op;

typedef struct op_list {
    op *head, *tail;
    int n;
} op_list;

struct kd_ledger {
    char *url;
    char masked[512];
    char owner[200];
    bool retry_ambiguous;   /* ledger.ambiguous=retry */
    int64_t lease_ms, retention_h, timeout_ms;
    kd_ledger_hooks hooks;

    PGconn *pg;             /* NULL while disconnected */
    bool up;
    int64_t reconnect_at;   /* mono µs */
    int64_t backoff_us;
    op_list queue;          /* waiting to be sent */
    op_list batch;          /* sent, waiting for their batches' syncs, in order */
    op *reading;            /* the op of batch whose results are being read */
    unsigned head_batch, next_batch; /* the oldest batch in flight, the next to send */
    int n_batches;          /* batches in flight */
    int64_t sent_at[LEDGER_MAX_BATCHES]; /* mono µs each batch was sent, by id % max */
    int64_t next_renew, next_purge, next_take;
    kd_ledger_cancel_fn cancel_fn;  /* cancels asked of this worker (NULL: none taken) */
    void *cancel_ctx;
};

/* ------------------------------------------------------------------ SQL */

/* The schema, version 1. Created idempotently under an advisory lock (several workers start
 * at once). `taken_from` records the state a row was taken over from (audit, and how a
 * claim tells what it met in one round trip). */
static const char *const schema_v1[] = {
    "CREATE TABLE IF NOT EXISTS kd_calls ("
    " job_id text PRIMARY KEY,"
    " state text NOT NULL CHECK (state IN ('writing', 'accepted', 'retry', 'done')),"
    " attempt integer NOT NULL,"
    " worker text NOT NULL,"
    " building_id text,"
    " session_id bigint,"
    " outcome text,"
    " failure smallint,"
    " kone_status integer,"
    " error_code text,"
    " error_message text,"
    " started_us bigint, finished_us bigint, kone_rtt_us bigint,"
    " result bytea,"
    " taken_from text,"
    " lease_until timestamptz NOT NULL,"
    " expires_at timestamptz NOT NULL,"
    " created_at timestamptz NOT NULL DEFAULT now(),"
    " updated_at timestamptz NOT NULL DEFAULT now())",
    "CREATE INDEX IF NOT EXISTS kd_calls_expires_at ON kd_calls (expires_at)",
    "CREATE INDEX IF NOT EXISTS kd_calls_worker ON kd_calls (worker) WHERE state IN "
    "('writing', 'accepted')",
    NULL,
};

/* Version 2: the KONE session (create-session id) that made each accepted call, so that a
 * cancel job on any worker can reach the session that owns the call (kd_cancels, a mailbox
 * between workers), and the workers alive (kd_workers, their heartbeat). */
static const char *const schema_v2[] = {
    "ALTER TABLE kd_calls ADD COLUMN IF NOT EXISTS kone_session text",
    "CREATE INDEX IF NOT EXISTS kd_calls_session ON kd_calls (session_id, building_id)"
    " WHERE session_id IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS kd_workers ("
    " owner text PRIMARY KEY,"
    " seen timestamptz NOT NULL)",
    "CREATE TABLE IF NOT EXISTS kd_cancels ("
    " cancel_job_id text PRIMARY KEY,"
    " call_session_id bigint NOT NULL,"
    " building_id text NOT NULL,"
    " group_id text,"
    " owner text NOT NULL,"
    " requested_by text NOT NULL,"
    " state text NOT NULL CHECK (state IN ('requested', 'sent', 'answered')),"
    " status integer,"
    " message text,"
    " created_at timestamptz NOT NULL DEFAULT now(),"
    " expires_at timestamptz NOT NULL)",
    "CREATE INDEX IF NOT EXISTS kd_cancels_owner ON kd_cancels (owner) WHERE state = 'requested'",
    NULL,
};

/* $1 job_id, $2 attempt, $3 owner, $4 building, $5 lease ms, $6 retention h, $7 take over
 * an unanswered `writing` row as a new call (ledger.ambiguous=retry), $8 a replayed delivery
 * (replay-dead: an operator asks for a `failed` job to be tried again; failed means no call
 * of it is outstanding).
 * `prev` reads the row as it was before this statement; `ins` inserts, or takes over a row
 * that belongs to nobody any more (state retry, or its lease ran out), keeping an accepted
 * row accepted and a writing row writing unless $7. What comes back is one row: whether it
 * was taken (and from what), and the previous row. A row inserted concurrently by another
 * delivery is invisible to `prev` and not taken: taken = 0 and prev empty (BUSY). */
static const char sql_claim[] =
    "WITH prev AS (SELECT state, attempt, worker, session_id, outcome, failure, kone_status,"
    "  error_code, error_message, started_us, finished_us, kone_rtt_us"
    "  FROM kd_calls WHERE job_id = $1),"
    " ins AS (INSERT INTO kd_calls AS c (job_id, state, attempt, worker, building_id,"
    "   lease_until, expires_at)"
    "  VALUES ($1, 'writing', $2, $3, $4, now() + $5 * interval '1 millisecond',"
    "   now() + $6 * interval '1 hour')"
    "  ON CONFLICT (job_id) DO UPDATE SET"
    "   taken_from = c.state,"
    "   state = CASE WHEN c.state = 'accepted' OR (c.state = 'writing' AND NOT $7)"
    "     THEN c.state ELSE 'writing' END,"
    "   attempt = CASE WHEN c.state IN ('retry', 'done') OR (c.state = 'writing' AND $7)"
    "     THEN excluded.attempt ELSE c.attempt END,"
    "   outcome = CASE WHEN c.state = 'done' THEN NULL ELSE c.outcome END,"
    "   session_id = CASE WHEN c.state = 'accepted' THEN c.session_id ELSE NULL END,"
    "   worker = excluded.worker, lease_until = excluded.lease_until,"
    "   expires_at = excluded.expires_at, updated_at = now()"
    "  WHERE c.state = 'retry' OR (c.state IN ('writing', 'accepted') AND c.lease_until < now())"
    "   OR (c.state = 'done' AND c.outcome = 'failed' AND $8)"
    "  RETURNING c.state, c.taken_from)"
    " SELECT ins.state, ins.taken_from, prev.state, prev.attempt, prev.worker, prev.session_id,"
    "  prev.outcome, prev.failure, prev.kone_status, prev.error_code, prev.error_message,"
    "  prev.started_us, prev.finished_us, prev.kone_rtt_us"
    " FROM (SELECT 1) one LEFT JOIN ins ON true LEFT JOIN prev ON true";

/* $1 job_id, $2 owner, $3 session id, $4 KONE session */
static const char sql_accept[] =
    "UPDATE kd_calls SET state = 'accepted', session_id = $3, kone_session = $4,"
    " updated_at = now() WHERE job_id = $1 AND worker = $2 AND state = 'writing'";

/* $1 job_id, $2 owner, $3 outcome, $4 failure, $5 kone_status, $6 code, $7 message,
 * $8 started, $9 finished, $10 rtt, $11 result (binary), $12 retention h, $13 session id */
static const char sql_done[] =
    "UPDATE kd_calls SET state = 'done', outcome = $3, failure = $4, kone_status = $5,"
    " error_code = $6, error_message = $7, started_us = $8, finished_us = $9,"
    " kone_rtt_us = $10, result = $11, session_id = COALESCE($13, session_id),"
    " lease_until = now(), expires_at = now() + $12 * interval '1 hour', updated_at = now()"
    " WHERE job_id = $1 AND worker = $2 AND state IN ('writing', 'accepted')";

/* $1 job_id, $2 owner: nothing of this attempt stands at KONE (it answered 5xx/429, or the
 * call it accepted was deleted): the next attempt may call. */
static const char sql_retry[] =
    "UPDATE kd_calls SET state = 'retry', lease_until = now(), updated_at = now()"
    " WHERE job_id = $1 AND worker = $2 AND state IN ('writing', 'accepted')";

/* $1 job_id, $2 owner, $3 attempt: a claim whose call was never written. State retry says
 * exactly that: no call is outstanding, the next delivery may call. A row taken over from an
 * unanswered `writing` (ledger.ambiguous=retry) stays `writing`: that first call may exist. */
static const char sql_release_new[] =
    "UPDATE kd_calls SET state = CASE WHEN taken_from = 'writing' THEN 'writing' ELSE 'retry'"
    " END, lease_until = now(), updated_at = now()"
    " WHERE job_id = $1 AND worker = $2 AND state = 'writing' AND attempt = $3";

/* $1 job_id, $2 owner: written or accepted, let the next worker decide now */
static const char sql_release_written[] =
    "UPDATE kd_calls SET lease_until = now(), updated_at = now()"
    " WHERE job_id = $1 AND worker = $2 AND state IN ('writing', 'accepted')";

/* $1 owner, $2 lease ms */
static const char sql_renew[] =
    "UPDATE kd_calls SET lease_until = now() + $2 * interval '1 millisecond'"
    " WHERE worker = $1 AND state IN ('writing', 'accepted')";

static const char sql_purge[] =
    "WITH c AS (DELETE FROM kd_cancels WHERE expires_at < now())"
    " DELETE FROM kd_calls WHERE ctid IN (SELECT ctid FROM kd_calls WHERE expires_at < now()"
    " LIMIT 10000)";

static const char sql_count[] = "SELECT state, count(*) FROM kd_calls GROUP BY state";

/* $1 owner */
static const char sql_end_leases[] =
    "UPDATE kd_calls SET lease_until = now() WHERE worker = $1"
    " AND state IN ('writing', 'accepted')";

/* $1 call session id, $2 building, $3 this worker's owner name, $4 lease ms: who made the
 * call, with which KONE session, and whether that worker is alive. */
static const char sql_route[] =
    "SELECT c.worker, c.kone_session, c.worker = $3,"
    "  EXISTS (SELECT 1 FROM kd_workers w WHERE w.owner = c.worker"
    "    AND w.seen > now() - $4 * interval '1 millisecond')"
    " FROM kd_calls c WHERE c.session_id = $1 AND c.building_id = $2"
    " ORDER BY c.updated_at DESC LIMIT 1";

/* $1 cancel job, $2 call session, $3 building, $4 group, $5 owner, $6 by, $7 retention h */
static const char sql_cancel_request[] =
    "INSERT INTO kd_cancels (cancel_job_id, call_session_id, building_id, group_id, owner,"
    " requested_by, state, expires_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, 'requested', now() + $7 * interval '1 hour')"
    " ON CONFLICT (cancel_job_id) DO NOTHING";

/* $1 cancel job */
static const char sql_cancel_poll[] =
    "SELECT state, status, message FROM kd_cancels WHERE cancel_job_id = $1";

/* $1 owner: the cancels asked of this worker, taken once */
static const char sql_cancel_take[] =
    "UPDATE kd_cancels SET state = 'sent' WHERE owner = $1 AND state = 'requested'"
    " RETURNING cancel_job_id, call_session_id, building_id, group_id";

/* $1 cancel job, $2 status, $3 message */
static const char sql_cancel_answer[] =
    "UPDATE kd_cancels SET state = 'answered', status = $2, message = $3"
    " WHERE cancel_job_id = $1";

/* $1 owner */
static const char sql_alive[] =
    "INSERT INTO kd_workers (owner, seen) VALUES ($1, now())"
    " ON CONFLICT (owner) DO UPDATE SET seen = now()";
static const char sql_gone[] = "DELETE FROM kd_workers WHERE owner = $1";

static const char *const op_sql[OP_N] = {
    sql_claim,          sql_accept,        sql_done,        sql_retry,
    sql_release_new,    sql_release_written, sql_renew,     sql_purge,
    sql_count,          sql_end_leases,    sql_route,       sql_cancel_request,
    sql_cancel_poll,    sql_cancel_take,   sql_cancel_answer, sql_alive,
    sql_gone};
static const char *const op_stmt[OP_N] = {
    "kd_claim",          "kd_accept",          "kd_done",          "kd_retry",
    "kd_release_new",    "kd_release_written", "kd_renew",         "kd_purge",
    "kd_count",          "kd_end_leases",      "kd_route",         "kd_cancel_request",
    "kd_cancel_poll",    "kd_cancel_take",     "kd_cancel_answer", "kd_alive",
    "kd_gone"};

/* ------------------------------------------------------------------ helpers */

static void hook_up(kd_ledger *l, bool up)
{
    if (l->up != up && l->hooks.up)
        l->hooks.up(up, l->hooks.arg);
    l->up = up;
}

static void hook_op(kd_ledger *l, op_kind k, bool ok)
{
    if (l->hooks.op && k != OP_COUNT)
        l->hooks.op(op_name[k], ok, l->hooks.arg);
}

void kd_ledger_mask_url(const char *url, char *out, size_t len)
{
    /* postgresql://user:password@host...: the password sits between the first ':' after
     * the scheme and the '@'. A `password=` query parameter is masked too. */
    const char *scheme = strstr(url, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *colon = scheme ? strchr(scheme + 3, ':') : NULL;
    char tmp[1024];
    if (scheme && at && colon && colon < at)
        snprintf(tmp, sizeof tmp, "%.*s:***%s", (int)(colon - url), url, at);
    else
        snprintf(tmp, sizeof tmp, "%s", url);
    char *pw = strstr(tmp, "password=");
    if (pw) {
        char *end = strchr(pw, '&');
        char rest[1024];
        snprintf(rest, sizeof rest, "%s", end ? end : "");
        snprintf(pw, sizeof tmp - (size_t)(pw - tmp), "password=***%s", rest);
    }
    snprintf(out, len, "%s", tmp);
}

/* libpq's own message without its trailing newline. */
static const char *pg_msg(PGconn *pg, char *buf, size_t len)
{
    snprintf(buf, len, "%s", pg ? PQerrorMessage(pg) : "no connection");
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return buf;
}

static void push(op_list *q, op *o)
{
    o->next = NULL;
    if (q->tail)
        q->tail->next = o;
    else
        q->head = o;
    q->tail = o;
    q->n++;
}

static op *pop(op_list *q)
{
    op *o = q->head;
    if (o) {
        q->head = o->next;
        if (!q->head)
            q->tail = NULL;
        q->n--;
        o->next = NULL;
    }
    return o;
}

static op *new_op(op_kind kind, const kd_run *run)
{
    op *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->kind = kind;
    if (run) {
        snprintf(o->job_id, sizeof o->job_id, "%s", run->job.job_id);
        snprintf(o->building, sizeof o->building, "%s", run->job.building_id);
        o->attempt = run->attempt;
        o->replayed = run->replayed;
        o->session_id = run->session_id;
    }
    return o;
}

static void free_op(op *o)
{
    if (!o)
        return;
    for (op *c = o->next_taken, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    free(o->result);
    free(o);
}

static kd_outcome outcome_from(const char *s)
{
    for (int o = KD_OUTCOME_SUCCEEDED; o <= KD_OUTCOME_UNKNOWN; o++)
        if (!strcmp(s, kd_outcome_name((kd_outcome)o)))
            return (kd_outcome)o;
    return KD_OUTCOME_NONE;
}

/* ------------------------------------------------------------------ connection */

static int exec_ok(PGconn *pg, const char *sql, char *why, size_t len)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (rc)
        snprintf(why, len, "%s", PQresultErrorMessage(r));
    PQclear(r);
    return rc;
}

/* Creates or migrates the schema; refuses a newer one. Blocking, at connect time. */
static int migrate(kd_ledger *l, kd_err *err)
{
    char why[512] = "";
    PGconn *pg = l->pg;
    if (exec_ok(pg, "BEGIN", why, sizeof why) ||
        exec_ok(pg, "SELECT pg_advisory_xact_lock(4242424242)", why, sizeof why) ||
        exec_ok(pg, "CREATE TABLE IF NOT EXISTS kd_schema (version integer NOT NULL)", why,
                sizeof why))
        goto fail;
    PGresult *r = PQexec(pg, "SELECT max(version) FROM kd_schema");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(why, sizeof why, "%s", PQresultErrorMessage(r));
        PQclear(r);
        goto fail;
    }
    int have = PQgetisnull(r, 0, 0) ? 0 : atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (have > KD_LEDGER_SCHEMA_VERSION) {
        PQclear(PQexec(pg, "ROLLBACK"));
        return kd_err_set(err, KD_ERR_INVALID,
                          "ledger %s has schema version %d, newer than this worker's %d: "
                          "refusing to start (run the newer worker, or roll the ledger back)",
                          l->masked, have, KD_LEDGER_SCHEMA_VERSION);
    }
    if (have < 1) {
        for (int i = 0; schema_v1[i]; i++)
            if (exec_ok(pg, schema_v1[i], why, sizeof why))
                goto fail;
        if (exec_ok(pg, "DELETE FROM kd_schema", why, sizeof why) ||
            exec_ok(pg, "INSERT INTO kd_schema (version) VALUES (1)", why, sizeof why))
            goto fail;
        kd_info("ledger: schema version 1 created");
    }
    if (have < 2) {
        for (int i = 0; schema_v2[i]; i++)
            if (exec_ok(pg, schema_v2[i], why, sizeof why))
                goto fail;
        if (exec_ok(pg, "DELETE FROM kd_schema", why, sizeof why) ||
            exec_ok(pg, "INSERT INTO kd_schema (version) VALUES (2)", why, sizeof why))
            goto fail;
        kd_info("ledger: schema migrated from version %d to 2", have < 1 ? 1 : have);
    }
    if (exec_ok(pg, "COMMIT", why, sizeof why))
        goto fail;
    return 0;
fail:
    PQclear(PQexec(pg, "ROLLBACK"));
    return kd_err_set(err, KD_ERR_IO, "ledger %s: schema: %s", l->masked, why);
}

static int prepare_all(kd_ledger *l, char *why, size_t len)
{
    for (int k = 0; k < OP_N; k++) {
        PGresult *r = PQprepare(l->pg, op_stmt[k], op_sql[k], 0, NULL);
        int bad = PQresultStatus(r) != PGRES_COMMAND_OK;
        if (bad)
            snprintf(why, len, "%s", PQresultErrorMessage(r));
        PQclear(r);
        if (bad)
            return -1;
    }
    return 0;
}

/* Opens the connection (blocking, bounded), sets the statement timeout, optionally migrates,
 * prepares the statements and enters pipeline mode. */
static int connect_pg(kd_ledger *l, bool do_migrate, kd_err *err)
{
    char ct[16], why[512];
    int64_t s = (l->timeout_ms + 999) / 1000;
    snprintf(ct, sizeof ct, "%lld", (long long)(s < 2 ? 2 : s));
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {l->url, ct, "kone-worker", NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (!pg)
        return kd_err_set(err, KD_ERR_NOMEM, "ledger: out of memory");
    l->pg = pg;
    if (PQstatus(pg) != CONNECTION_OK) {
        kd_err_set(err, KD_ERR_IO, "ledger %s: cannot connect: %s", l->masked,
                   pg_msg(pg, why, sizeof why));
        goto fail;
    }
    char set[64];
    /* statement_timeout bounds a hung statement; NOTICEs (IF NOT EXISTS) stay out of logs */
    snprintf(set, sizeof set, "SET statement_timeout = %lld; SET client_min_messages = warning",
             (long long)l->timeout_ms);
    if (exec_ok(pg, set, why, sizeof why)) {
        kd_err_set(err, KD_ERR_IO, "ledger %s: %s", l->masked, why);
        goto fail;
    }
    if (do_migrate && migrate(l, err))
        goto fail;
    if (prepare_all(l, why, sizeof why)) {
        kd_err_set(err, KD_ERR_IO, "ledger %s: prepare: %s", l->masked, why);
        goto fail;
    }
    if (!PQenterPipelineMode(pg) || PQsetnonblocking(pg, 1)) {
        kd_err_set(err, KD_ERR_IO, "ledger %s: pipeline mode: %s", l->masked,
                   pg_msg(pg, why, sizeof why));
        goto fail;
    }
    return 0;
fail:
    PQfinish(pg);
    l->pg = NULL;
    return err ? err->code : KD_ERR_IO;
}

static void finish_op(kd_ledger *l, op *o, bool ok);

/* The connection is gone (or hung): the batch in flight failed, the statements queued stay
 * (claims excepted: answered FAILED now, with a release queued behind them). */
static void lost(kd_ledger *l, const char *why)
{
    if (l->up || l->pg)
        kd_warn("ledger %s lost (%s); no new job is taken until it answers again; %d "
                "statements wait", l->masked, why, l->queue.n + l->batch.n);
    if (l->pg)
        PQfinish(l->pg);
    l->pg = NULL;
    l->reading = NULL;
    l->n_batches = 0;
    l->head_batch = l->next_batch;
    hook_up(l, false);
    /* put the batch back in front of the queue, in order; claims fail now */
    op_list keep = {0};
    op *o;
    while ((o = pop(&l->batch)))
        push(&keep, o);
    while ((o = pop(&l->queue)))
        push(&keep, o);
    while ((o = pop(&keep))) {
        if (o->kind == OP_CLAIM || o->kind == OP_ROUTE || o->kind == OP_CANCEL_POLL ||
            o->kind == OP_CANCEL_TAKE)
            finish_op(l, o, false);
        else
            push(&l->queue, o);
    }
    l->backoff_us = l->backoff_us ? l->backoff_us * 2 : LEDGER_BACKOFF_MIN_US;
    if (l->backoff_us > LEDGER_BACKOFF_MAX_US)
        l->backoff_us = LEDGER_BACKOFF_MAX_US;
    l->reconnect_at = kd_mono_us() + l->backoff_us;
}

static void try_reconnect(kd_ledger *l)
{
    if (l->pg || kd_mono_us() < l->reconnect_at)
        return;
    kd_err err = {0};
    if (connect_pg(l, false, &err)) {
        kd_warn("%s; retrying in %lld ms", err.msg, (long long)(l->backoff_us / 1000));
        l->backoff_us = l->backoff_us * 2 > LEDGER_BACKOFF_MAX_US ? LEDGER_BACKOFF_MAX_US
                                                                   : l->backoff_us * 2;
        l->reconnect_at = kd_mono_us() + l->backoff_us;
        return;
    }
    kd_info("ledger %s: connected again; %d statements to send", l->masked, l->queue.n);
    l->backoff_us = 0;
    hook_up(l, true);
}

/* ------------------------------------------------------------------ open / close */

int kd_ledger_open(kd_ledger **out, const kd_config *cfg, const char *worker_id,
                   const kd_ledger_hooks *hooks, kd_err *err)
{
    *out = NULL;
    const char *url = kd_config_get(cfg, "ledger.url");
    if (!strcmp(url, "none"))
        return 0;
    if (strncmp(url, "postgresql://", 13) && strncmp(url, "postgres://", 11))
        return kd_err_set(err, KD_ERR_INVALID,
                          "ledger.url: expected postgresql://user@host:port/db?... or none, "
                          "got a value starting '%.12s'", url);
    const char *amb = kd_config_get(cfg, "ledger.ambiguous");
    if (strcmp(amb, "unknown") && strcmp(amb, "retry"))
        return kd_err_set(err, KD_ERR_INVALID, "ledger.ambiguous: must be unknown or retry, "
                          "got '%.32s'", amb);
    kd_ledger *l = calloc(1, sizeof *l);
    /* TLS with the server's certificate and host name verified unless the URL says
     * otherwise (libpq's own default, prefer, verifies nothing). */
    const char *mode = strstr(url, "sslmode=");
    size_t n = strlen(url) + 32;
    if (l && (l->url = malloc(n)))
        snprintf(l->url, n, "%s%s", url,
                 mode ? "" : strchr(url, '?') ? "&sslmode=verify-full" : "?sslmode=verify-full");
    if (!l || !l->url) {
        free(l);
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
    }
    if (mode && strncmp(mode + 8, "verify-full", 11))
        kd_warn("ledger.url sets sslmode=%.*s: the ledger's certificate or host name is NOT "
                "verified (verify-full is the default; docs/configuration.md)",
                (int)strcspn(mode + 8, "&"), mode + 8);
    if (hooks)
        l->hooks = *hooks;
    l->retry_ambiguous = !strcmp(amb, "retry");
    kd_ledger_mask_url(l->url, l->masked, sizeof l->masked);
    if (kd_config_int(cfg, "ledger.lease_ms", 1000, 3600000, &l->lease_ms, err) ||
        kd_config_int(cfg, "ledger.retention_h", 1, 24 * 365, &l->retention_h, err) ||
        kd_config_int(cfg, "ledger.timeout_ms", 100, 600000, &l->timeout_ms, err))
        goto fail;
    /* The owner is this process's, not only worker.id's: two workers given the same id
     * must not renew each other's leases. */
    unsigned nonce = (unsigned)(kd_now_us() ^ ((int64_t)getpid() << 16));
    snprintf(l->owner, sizeof l->owner, "%.150s/%08x", worker_id, nonce);
    if (connect_pg(l, true, err))
        goto fail;
    hook_up(l, true);
    int64_t now = kd_mono_us();
    l->next_renew = now; /* say this worker is alive at once (kd_workers) */
    l->next_purge = now; /* count rows at once */
    kd_info("ledger %s: schema version %d, owner %s, ambiguous calls: %s", l->masked,
            KD_LEDGER_SCHEMA_VERSION, l->owner, amb);
    *out = l;
    return 0;
fail:
    kd_ledger_close(l);
    return err ? err->code : KD_ERR_IO;
}

void kd_ledger_close(kd_ledger *l)
{
    if (!l)
        return;
    /* Statements never committed: their callers get their answer (a claim failed, an
     * outcome not recorded) so that no run is left waiting. */
    op *o;
    for (op_list *q = &l->batch; q; q = q == &l->batch ? &l->queue : NULL)
        while ((o = pop(q))) {
            if (o->claim_fn) {
                kd_ledger_found f = {.verdict = KD_LEDGER_FAILED};
                o->claim_fn(&f, o->ctx);
            } else if (o->route_fn) {
                kd_ledger_call_owner none = {0};
                o->route_fn(&none, o->ctx);
            } else if (o->poll_fn) {
                o->poll_fn(false, false, 0, "", o->ctx);
            } else if (o->done_fn) {
                o->done_fn(false, o->ctx);
            }
            free_op(o);
        }
    if (l->pg)
        PQfinish(l->pg);
    free(l->url);
    free(l);
}

bool kd_ledger_up(const kd_ledger *l)
{
    return l && l->up;
}

const char *kd_ledger_owner(const kd_ledger *l)
{
    return l ? l->owner : "";
}

int kd_ledger_wait_fd(const kd_ledger *l)
{
    return l && l->pg && l->n_batches ? PQsocket(l->pg) : -1;
}

int kd_ledger_pending(const kd_ledger *l)
{
    return l ? l->queue.n + l->batch.n : 0;
}

/* ------------------------------------------------------------------ queueing */

/* Every entry point is a no-op on a NULL ledger (ledger.url=none, or after close): the
 * worker's lists may still hold hand-overs while it shuts down. */
static void enqueue(kd_ledger *l, op *o)
{
    if (!l) {
        free_op(o);
        return;
    }
    push(&l->queue, o);
}

void kd_ledger_claim(kd_ledger *l, const kd_run *run, kd_ledger_claim_fn fn, void *ctx)
{
    op *o = new_op(OP_CLAIM, run);
    if (!o || !l || !l->pg) {
        kd_ledger_found f = {.verdict = KD_LEDGER_FAILED};
        free_op(o);
        fn(&f, ctx);
        return;
    }
    o->claim_fn = fn;
    o->ctx = ctx;
    enqueue(l, o);
}

static void enqueue_simple(kd_ledger *l, op_kind kind, const kd_run *run)
{
    op *o = new_op(kind, run);
    if (!o) {
        kd_error("ledger: out of memory; %s of job %s not recorded", op_name[kind],
                 run ? run->job.job_id : "-");
        return;
    }
    enqueue(l, o);
}

void kd_ledger_accept(kd_ledger *l, const char *job_id, int64_t session_id,
                      const char *kone_session)
{
    op *o = new_op(OP_ACCEPT, NULL);
    if (!o) {
        kd_error("ledger: out of memory; acceptance of job %s not recorded", job_id);
        return;
    }
    snprintf(o->job_id, sizeof o->job_id, "%s", job_id);
    snprintf(o->message, sizeof o->message, "%s", kone_session ? kone_session : "");
    o->session_id = session_id;
    enqueue(l, o);
}

/* ------------------------------------------------------------------ cancels across workers */

static op *cancel_op(kd_ledger *l, op_kind kind, const char *cancel_job_id)
{
    op *o = new_op(kind, NULL);
    if (!o) {
        kd_error("ledger: out of memory; cancel %s not handled", cancel_job_id);
        return NULL;
    }
    snprintf(o->job_id, sizeof o->job_id, "%s", cancel_job_id);
    (void)l;
    return o;
}

void kd_ledger_route(kd_ledger *l, int64_t call_session_id, const char *building,
                     kd_ledger_route_fn fn, void *ctx)
{
    op *o = l && l->pg ? cancel_op(l, OP_ROUTE, "-") : NULL;
    if (!o) {
        kd_ledger_call_owner none = {0};
        fn(&none, ctx);
        return;
    }
    o->session_id = call_session_id;
    snprintf(o->building, sizeof o->building, "%s", building);
    o->route_fn = fn;
    o->ctx = ctx;
    enqueue(l, o);
}

void kd_ledger_cancel_request(kd_ledger *l, const char *cancel_job_id, int64_t call_session_id,
                              const char *building, const char *group, const char *owner)
{
    op *o = cancel_op(l, OP_CANCEL_REQUEST, cancel_job_id);
    if (!o)
        return;
    o->session_id = call_session_id;
    snprintf(o->building, sizeof o->building, "%s", building);
    snprintf(o->group, sizeof o->group, "%s", group);
    snprintf(o->owner, sizeof o->owner, "%s", owner);
    enqueue(l, o);
}

void kd_ledger_cancel_poll(kd_ledger *l, const char *cancel_job_id, kd_ledger_poll_fn fn,
                           void *ctx)
{
    op *o = l && l->pg ? cancel_op(l, OP_CANCEL_POLL, cancel_job_id) : NULL;
    if (!o) {
        fn(false, false, 0, "", ctx);
        return;
    }
    o->poll_fn = fn;
    o->ctx = ctx;
    enqueue(l, o);
}

void kd_ledger_cancel_answer(kd_ledger *l, const char *cancel_job_id, int status,
                             const char *message)
{
    op *o = cancel_op(l, OP_CANCEL_ANSWER, cancel_job_id);
    if (!o)
        return;
    o->status = status;
    snprintf(o->message, sizeof o->message, "%s", message ? message : "");
    enqueue(l, o);
}

void kd_ledger_on_cancel(kd_ledger *l, kd_ledger_cancel_fn fn, void *ctx)
{
    if (!l)
        return;
    l->cancel_fn = fn;
    l->cancel_ctx = ctx;
}

void kd_ledger_retry(kd_ledger *l, const kd_run *run)
{
    enqueue_simple(l, OP_RETRY, run);
}

void kd_ledger_release(kd_ledger *l, const kd_run *run, bool written)
{
    enqueue_simple(l, written ? OP_RELEASE_WRITTEN : OP_RELEASE_NEW, run);
}

void kd_ledger_done(kd_ledger *l, const kd_run *run, const void *result, size_t len,
                    kd_ledger_done_fn fn, void *ctx)
{
    op *o = l ? new_op(OP_DONE, run) : NULL;
    if (!l) {
        fn(false, ctx);
        return;
    }
    if (o && len && !(o->result = malloc(len))) {
        free_op(o);
        o = NULL;
    }
    if (!o) {
        kd_error("ledger: out of memory; outcome of job %s not recorded", run->job.job_id);
        fn(true, ctx); /* its result still goes out; a redelivery would meet `writing` */
        return;
    }
    if (len)
        memcpy(o->result, result, len);
    o->result_len = len;
    snprintf(o->outcome, sizeof o->outcome, "%s", kd_outcome_name(run->outcome));
    o->failure = (int)run->failure;
    o->kone_status = run->kone_status;
    snprintf(o->error_code, sizeof o->error_code, "%s", run->error_code);
    snprintf(o->error_message, sizeof o->error_message, "%s", run->error_message);
    o->started_us = run->started_us;
    o->finished_us = run->finished_us;
    o->kone_rtt_us = run->kone_rtt_us;
    o->done_fn = fn;
    o->ctx = ctx;
    enqueue(l, o);
}

/* ------------------------------------------------------------------ sending */

static int send_op(kd_ledger *l, op *o)
{
    char a[24], b[24], c[24], d[24], e[24], f[24], g[24], h[24];
    const char *v[13] = {0};
    int lens[13] = {0}, fmts[13] = {0}, n = 0;
    switch (o->kind) {
    case OP_CLAIM:
        snprintf(a, sizeof a, "%d", o->attempt);
        snprintf(b, sizeof b, "%lld", (long long)l->lease_ms);
        snprintf(c, sizeof c, "%lld", (long long)l->retention_h);
        v[0] = o->job_id, v[1] = a, v[2] = l->owner, v[3] = o->building, v[4] = b, v[5] = c;
        v[6] = l->retry_ambiguous ? "true" : "false";
        v[7] = o->replayed ? "true" : "false";
        n = 8;
        break;
    case OP_ACCEPT:
        snprintf(a, sizeof a, "%lld", (long long)o->session_id);
        v[0] = o->job_id, v[1] = l->owner, v[2] = a;
        v[3] = o->message[0] ? o->message : NULL;
        n = 4;
        break;
    case OP_ROUTE:
        snprintf(a, sizeof a, "%lld", (long long)o->session_id);
        snprintf(b, sizeof b, "%lld", (long long)l->lease_ms);
        v[0] = a, v[1] = o->building, v[2] = l->owner, v[3] = b;
        n = 4;
        break;
    case OP_CANCEL_REQUEST:
        snprintf(a, sizeof a, "%lld", (long long)o->session_id);
        snprintf(b, sizeof b, "%lld", (long long)l->retention_h);
        v[0] = o->job_id, v[1] = a, v[2] = o->building, v[3] = o->group, v[4] = o->owner;
        v[5] = l->owner, v[6] = b;
        n = 7;
        break;
    case OP_CANCEL_POLL:
        v[0] = o->job_id;
        n = 1;
        break;
    case OP_CANCEL_ANSWER:
        snprintf(a, sizeof a, "%d", o->status);
        v[0] = o->job_id, v[1] = a, v[2] = o->message;
        n = 3;
        break;
    case OP_CANCEL_TAKE:
    case OP_ALIVE:
    case OP_GONE:
        v[0] = l->owner;
        n = 1;
        break;
    case OP_DONE:
        snprintf(a, sizeof a, "%d", o->failure);
        snprintf(b, sizeof b, "%d", o->kone_status);
        snprintf(c, sizeof c, "%lld", (long long)o->started_us);
        snprintf(d, sizeof d, "%lld", (long long)o->finished_us);
        snprintf(e, sizeof e, "%lld", (long long)o->kone_rtt_us);
        snprintf(f, sizeof f, "%lld", (long long)l->retention_h);
        snprintf(g, sizeof g, "%lld", (long long)o->session_id);
        v[0] = o->job_id, v[1] = l->owner, v[2] = o->outcome, v[3] = a, v[4] = b;
        v[5] = o->error_code, v[6] = o->error_message, v[7] = c, v[8] = d, v[9] = e;
        v[10] = o->result ? o->result : "", lens[10] = (int)o->result_len, fmts[10] = 1;
        v[11] = f;
        v[12] = o->session_id ? g : NULL;
        n = 13;
        break;
    case OP_RETRY:
    case OP_RELEASE_WRITTEN:
        v[0] = o->job_id, v[1] = l->owner;
        n = 2;
        break;
    case OP_RELEASE_NEW:
        snprintf(a, sizeof a, "%d", o->attempt);
        v[0] = o->job_id, v[1] = l->owner, v[2] = a;
        n = 3;
        break;
    case OP_RENEW:
        snprintf(h, sizeof h, "%lld", (long long)l->lease_ms);
        v[0] = l->owner, v[1] = h;
        n = 2;
        break;
    case OP_END_LEASES:
        v[0] = l->owner;
        n = 1;
        break;
    case OP_PURGE:
    case OP_COUNT:
    case OP_N:
        break;
    }
    return PQsendQueryPrepared(l->pg, op_stmt[o->kind], n, v, lens, fmts, 0) ? 0 : -1;
}

/* Sends every queued statement and a sync, as one batch. */
static void send_batch(kd_ledger *l)
{
    if (!l->pg || l->n_batches >= LEDGER_MAX_BATCHES || !l->queue.n)
        return;
    unsigned id = l->next_batch;
    op *o, *first = l->queue.head;
    while ((o = pop(&l->queue))) {
        o->batch_id = id;
        push(&l->batch, o);
        if (send_op(l, o)) {
            char why[256];
            lost(l, pg_msg(l->pg, why, sizeof why));
            return;
        }
    }
    if (!PQpipelineSync(l->pg)) {
        char why[256];
        lost(l, pg_msg(l->pg, why, sizeof why));
        return;
    }
    l->sent_at[id % LEDGER_MAX_BATCHES] = kd_mono_us();
    l->next_batch = id + 1;
    l->n_batches++;
    if (!l->reading)
        l->reading = first;
    if (PQflush(l->pg) < 0) {
        char why[256];
        lost(l, pg_msg(l->pg, why, sizeof why));
    }
}

/* ------------------------------------------------------------------ answers */

static const char *val(const PGresult *r, int col)
{
    return PQgetisnull(r, 0, col) ? NULL : PQgetvalue(r, 0, col);
}

static void read_claim(kd_ledger *l, op *o, const PGresult *r)
{
    kd_ledger_found *f = &o->found;
    const char *st = val(r, 0), *from = val(r, 1), *prev = val(r, 2);
    if (prev) {
        f->attempt = atoi(PQgetvalue(r, 0, 3));
        snprintf(f->worker, sizeof f->worker, "%s", val(r, 4) ? val(r, 4) : "");
        f->session_id = val(r, 5) ? strtoll(val(r, 5), NULL, 10) : 0;
    }
    if (st) { /* taken: inserted, or taken over from `from` */
        if (!from || !strcmp(from, "retry") || !strcmp(from, "done"))
            f->verdict = KD_LEDGER_CALL; /* new, retried, or failed and replayed */
        else if (!strcmp(from, "accepted"))
            f->verdict = KD_LEDGER_FOLLOW;
        else /* writing, its worker gone */
            f->verdict = l->retry_ambiguous ? KD_LEDGER_CALL : KD_LEDGER_AMBIGUOUS;
        if (f->verdict == KD_LEDGER_CALL && from && !strcmp(from, "writing"))
            f->verdict = KD_LEDGER_CALL; /* ledger.ambiguous=retry: called again, knowingly */
        if (!from)
            f->worker[0] = '\0';
        return;
    }
    if (prev && !strcmp(prev, "done")) {
        f->verdict = KD_LEDGER_DONE;
        f->outcome = outcome_from(val(r, 6) ? val(r, 6) : "");
        f->failure = val(r, 7) ? (kd_failure_class)atoi(val(r, 7)) : KD_FAIL_NONE;
        f->kone_status = val(r, 8) ? atoi(val(r, 8)) : 0;
        snprintf(f->error_code, sizeof f->error_code, "%s", val(r, 9) ? val(r, 9) : "");
        snprintf(f->error_message, sizeof f->error_message, "%s", val(r, 10) ? val(r, 10) : "");
        f->started_us = val(r, 11) ? strtoll(val(r, 11), NULL, 10) : 0;
        f->finished_us = val(r, 12) ? strtoll(val(r, 12), NULL, 10) : 0;
        f->kone_rtt_us = val(r, 13) ? strtoll(val(r, 13), NULL, 10) : 0;
        return;
    }
    /* writing or accepted under a live lease, or inserted by a concurrent claim */
    f->verdict = KD_LEDGER_BUSY;
}

static void read_count(kd_ledger *l, const PGresult *r)
{
    static const char *const states[] = {"writing", "accepted", "retry", "done"};
    int64_t n[4] = {0};
    for (int i = 0; i < PQntuples(r); i++)
        for (int s = 0; s < 4; s++)
            if (!strcmp(PQgetvalue(r, i, 0), states[s]))
                n[s] = strtoll(PQgetvalue(r, i, 1), NULL, 10);
    if (l->hooks.rows)
        for (int s = 0; s < 4; s++)
            l->hooks.rows(states[s], n[s], l->hooks.arg);
}

/* One result of the op being read. */
static void read_result(kd_ledger *l, op *o, PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        if (!o->failed && st != PGRES_PIPELINE_ABORTED)
            kd_warn("ledger: %s of %s failed: %s", op_name[o->kind],
                    o->job_id[0] ? o->job_id : "-", PQresultErrorMessage(r));
        o->failed = true;
        return;
    }
    const char *t = PQcmdTuples(r);
    o->affected = t && *t ? atoi(t) : 0;
    if (o->kind == OP_ROUTE && PQntuples(r) == 1) {
        kd_ledger_call_owner *w = &o->route;
        w->found = true;
        snprintf(w->owner, sizeof w->owner, "%s", val(r, 0) ? val(r, 0) : "");
        snprintf(w->kone_session, sizeof w->kone_session, "%s", val(r, 1) ? val(r, 1) : "");
        w->mine = val(r, 2) && *val(r, 2) == 't';
        w->alive = val(r, 3) && *val(r, 3) == 't';
    } else if (o->kind == OP_CANCEL_POLL && PQntuples(r) == 1) {
        o->affected = val(r, 0) && !strcmp(val(r, 0), "answered");
        o->status = val(r, 1) ? atoi(val(r, 1)) : 0;
        snprintf(o->message, sizeof o->message, "%s", val(r, 2) ? val(r, 2) : "");
    } else if (o->kind == OP_CANCEL_TAKE && l->cancel_fn) {
        /* taken (state sent) in this batch: handed to the worker once it commits */
        for (int i = 0; i < PQntuples(r); i++) {
            op *c = new_op(OP_CANCEL_TAKE, NULL);
            if (!c)
                break;
            snprintf(c->job_id, sizeof c->job_id, "%s", PQgetvalue(r, i, 0));
            c->session_id = strtoll(PQgetvalue(r, i, 1), NULL, 10);
            snprintf(c->building, sizeof c->building, "%s", PQgetvalue(r, i, 2));
            snprintf(c->group, sizeof c->group, "%s",
                     PQgetisnull(r, i, 3) ? "" : PQgetvalue(r, i, 3));
            c->next = o->next_taken;
            o->next_taken = c;
        }
    } else if (o->kind == OP_CLAIM && PQntuples(r) == 1)
        read_claim(l, o, r);
    else if (o->kind == OP_COUNT)
        read_count(l, r);
    else if (o->kind == OP_PURGE && o->affected > 0)
        kd_debug("ledger: purged %d expired rows", o->affected);
}

static void finish_op(kd_ledger *l, op *o, bool ok)
{
    hook_op(l, o->kind, ok);
    switch (o->kind) {
    case OP_CLAIM:
        if (!ok) {
            o->found.verdict = KD_LEDGER_FAILED;
            /* its commit is unknown: take back a claim that may exist */
            op *rel = calloc(1, sizeof *rel);
            if (rel) {
                *rel = (op){.kind = OP_RELEASE_NEW, .attempt = o->attempt};
                memcpy(rel->job_id, o->job_id, sizeof rel->job_id);
                push(&l->queue, rel);
            }
        }
        o->claim_fn(&o->found, o->ctx);
        break;
    case OP_ROUTE:
        o->route.ok = ok;
        o->route_fn(&o->route, o->ctx);
        break;
    case OP_CANCEL_POLL:
        o->poll_fn(ok, ok && o->affected, o->status, o->message, o->ctx);
        break;
    case OP_CANCEL_TAKE:
        for (op *c = o->next_taken, *n; c; c = n) {
            n = c->next;
            if (ok && l->cancel_fn)
                l->cancel_fn(c->job_id, c->session_id, c->building, c->group, l->cancel_ctx);
            free_op(c);
        }
        o->next_taken = NULL;
        break;
    case OP_DONE:
        if (!ok)
            kd_error("ledger: the outcome of job %s (%s) could not be recorded; its result is "
                     "produced anyway", o->job_id, o->outcome);
        if (ok && o->affected == 0)
            kd_warn("ledger: job %s was taken over by another worker before its outcome "
                    "(%s) was recorded; its result is produced anyway", o->job_id, o->outcome);
        if (o->done_fn)
            o->done_fn(ok, o->ctx);
        break;
    default:
        break;
    }
    free_op(o);
}

/* The sync of the oldest batch came back: commit (ok) or rollback. */
static void batch_done(kd_ledger *l, bool ok)
{
    unsigned id = l->head_batch;
    if (l->hooks.commit && ok)
        l->hooks.commit(kd_mono_us() - l->sent_at[id % LEDGER_MAX_BATCHES], l->hooks.arg);
    l->head_batch = id + 1;
    l->n_batches--;
    op *o;
    op_list again = {0};
    while (l->batch.head && l->batch.head->batch_id == id) {
        o = pop(&l->batch);
        if (ok || o->kind == OP_CLAIM || o->kind == OP_PURGE || o->kind == OP_COUNT ||
            o->kind == OP_RENEW || o->kind == OP_ROUTE || o->kind == OP_CANCEL_POLL ||
            o->kind == OP_CANCEL_TAKE || o->kind == OP_ALIVE || o->kind == OP_GONE) {
            finish_op(l, o, ok);
        } else if (++o->tries >= LEDGER_MAX_TRIES) {
            /* refused every time: a bug or a broken row, not an outage; the job's next
             * delivery meets the row as it is */
            kd_error("ledger: %s of job %s refused %d times; dropped", op_name[o->kind],
                     o->job_id, o->tries);
            finish_op(l, o, false);
        } else {
            o->failed = false;
            push(&again, o); /* kept: sent again with the next batch */
        }
    }
    /* failed statements go before anything queued since */
    while ((o = pop(&l->queue)))
        push(&again, o);
    l->queue = again;
    if (!ok)
        hook_up(l, true); /* the server answered: it is up; a statement was refused */
}

static void read_answers(kd_ledger *l)
{
    if (!l->pg || !l->n_batches)
        return;
    char why[256];
    if (!PQconsumeInput(l->pg)) {
        lost(l, pg_msg(l->pg, why, sizeof why));
        return;
    }
    bool any_failed = false; /* in the oldest batch */
    for (op *o = l->batch.head; o && o->batch_id == l->head_batch; o = o->next)
        any_failed |= o->failed;
    while (l->pg && l->n_batches && !PQisBusy(l->pg)) {
        PGresult *r = PQgetResult(l->pg);
        if (!r) {
            /* end of one statement's results */
            if (l->reading)
                l->reading = l->reading->next;
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            batch_done(l, !any_failed);
            hook_up(l, true);
            any_failed = false;
            continue;
        }
        if (l->reading) {
            read_result(l, l->reading, r);
            any_failed |= l->reading->failed;
        }
        PQclear(r);
    }
    if (PQstatus(l->pg) == CONNECTION_BAD)
        lost(l, pg_msg(l->pg, why, sizeof why));
}

/* ------------------------------------------------------------------ the turn */

static void periodic(kd_ledger *l, int64_t now)
{
    if (now >= l->next_renew) {
        l->next_renew = now + l->lease_ms * 1000 / 3;
        op *o = new_op(OP_RENEW, NULL), *a = new_op(OP_ALIVE, NULL);
        if (o)
            enqueue(l, o);
        if (a)
            enqueue(l, a);
    }
    if (l->cancel_fn && now >= l->next_take) {
        l->next_take = now + 250000;
        op *t = new_op(OP_CANCEL_TAKE, NULL);
        if (t)
            enqueue(l, t);
    }
    if (now >= l->next_purge) {
        l->next_purge = now + LEDGER_PURGE_EVERY_US;
        op *p = new_op(OP_PURGE, NULL), *c = new_op(OP_COUNT, NULL);
        if (p)
            enqueue(l, p);
        if (c)
            enqueue(l, c);
    }
}

void kd_ledger_turn(kd_ledger *l)
{
    if (!l)
        return;
    int64_t now = kd_mono_us();
    try_reconnect(l);
    if (!l->pg)
        return;
    if (l->n_batches && now - l->sent_at[l->head_batch % LEDGER_MAX_BATCHES] >
                            l->timeout_ms * 1000) {
        kd_warn("ledger: a batch of %d statements got no answer in %lld ms", l->batch.n,
                (long long)l->timeout_ms);
        lost(l, "timeout");
        return;
    }
    periodic(l, now);
    read_answers(l);
    send_batch(l);
    if (l->pg && l->batch.n && PQflush(l->pg) < 0) {
        char why[256];
        lost(l, pg_msg(l->pg, why, sizeof why));
    }
}

void kd_ledger_drain(kd_ledger *l, int64_t timeout_us)
{
    if (!l)
        return;
    op *o = new_op(OP_END_LEASES, NULL), *g = new_op(OP_GONE, NULL);
    l->cancel_fn = NULL; /* no new cancel is taken now */
    if (o)
        enqueue(l, o);
    if (g)
        enqueue(l, g);
    int64_t until = kd_mono_us() + timeout_us;
    while (kd_ledger_pending(l) > 0 && kd_mono_us() < until) {
        kd_ledger_turn(l);
        if (kd_ledger_pending(l) > 0)
            usleep(l->pg ? 1000 : 50000);
    }
    if (kd_ledger_pending(l) > 0)
        kd_warn("ledger: %d statements not recorded at shutdown (the ledger did not answer); "
                "their jobs' next deliveries meet the rows as they are",
                kd_ledger_pending(l));
}
