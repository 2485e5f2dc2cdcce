/* ledger_sql.c: the call ledger's schema and statements (see ledger_int.h). One statement
 * per op kind (the per-job kinds take a batch's jobs at once), prepared once per connection;
 * the comment above each names its parameters.
 * A new schema version is a new lg_schema_vN, applied by migrate() in ledger.c. */
#include "ledger_int.h"

/* Prepared statement name and metric label of each kind. */
const char *const lg_op_name[OP_N] = {"claim",  "accept", "done",   "retry", "release", "release",
                                      "renew",  "purge",  "count",  "renew", "cancel",  "cancel",
                                      "cancel", "cancel", "cancel", "renew", "renew"};

/* The schema, version 1. Created idempotently under an advisory lock (several workers start
 * at once). `taken_from` records the state a row was taken over from (audit, and how a
 * claim tells what it met in one round trip). */
const char *const lg_schema_v1[] = {
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
const char *const lg_schema_v2[] = {
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

/* Version 3: the worker index keyed by (worker, job_id). Every statement about one job of
 * this worker (accept, done, retry, release) says `job_id = $1 AND worker = $2 AND state ...`,
 * which the old partial index on (worker) alone also matched; with a fresh owner (every
 * process has its own) the planner deemed that index the cheaper one and walked all of the
 * worker's rows in flight to find one: about 90 µs of PostgreSQL's time per statement with
 * 200 jobs in flight (docs/performance.md, issue 17). Keyed by both, either index the
 * planner picks finds the row at once; renewing (worker = $1) still uses its first column. */
const char *const lg_schema_v3[] = {
    "CREATE INDEX IF NOT EXISTS kd_calls_worker_job ON kd_calls (worker, job_id) WHERE state IN "
    "('writing', 'accepted')",
    "DROP INDEX IF EXISTS kd_calls_worker",
    /* kd_claim(job_id, attempt, owner, building, lease ms, retention h, retry_ambiguous: take
     * over an unanswered `writing` row as a new call (ledger.ambiguous=retry), replayed: a
     * replayed delivery (replay-dead: an operator asks for a `failed` job to be tried again;
     * failed means no call of it is outstanding)). One row comes back: whether the row was
     * taken (and from what state), and the row as it was before.
     * A new job (nearly every claim) is one plain INSERT: about a sixth less of
     * PostgreSQL's time than the full statement (docs/performance.md, issue 17). Only when the
     * job's row exists does the full statement run: `prev` reads the row as it was, `ins`
     * takes over a row that belongs to nobody any more (state retry, or its lease ran out),
     * keeping an accepted row accepted and a writing row writing unless retry_ambiguous.
     * A concurrent insert of the same job: the INSERT waits for it (as DO UPDATE did); once
     * committed, the full statement (a new snapshot) meets it under its live lease and takes
     * nothing: BUSY, as before; rolled back, the INSERT goes ahead. */
    "CREATE OR REPLACE FUNCTION kd_claim(p_job text, p_attempt integer, p_owner text,"
    " p_building text, p_lease_ms bigint, p_retention_h bigint, p_retry_ambiguous boolean,"
    " p_replayed boolean)"
    " RETURNS TABLE (state text, taken_from text, prev_state text, prev_attempt integer,"
    "  prev_worker text, prev_session_id bigint, prev_outcome text, prev_failure smallint,"
    "  prev_kone_status integer, prev_error_code text, prev_error_message text,"
    "  prev_started_us bigint, prev_finished_us bigint, prev_kone_rtt_us bigint)"
    " LANGUAGE plpgsql AS $kd$\n"
    "#variable_conflict use_column\n"
    "BEGIN"
    " INSERT INTO kd_calls (job_id, state, attempt, worker, building_id, lease_until, expires_at)"
    "  VALUES (p_job, 'writing', p_attempt, p_owner, p_building,"
    "   now() + p_lease_ms * interval '1 millisecond', now() + p_retention_h * interval '1 hour')"
    "  ON CONFLICT (job_id) DO NOTHING;"
    " IF FOUND THEN"
    "  state := 'writing';"
    "  RETURN NEXT;"
    "  RETURN;"
    " END IF;"
    " RETURN QUERY"
    " WITH prev AS (SELECT state, attempt, worker, session_id, outcome, failure, kone_status,"
    "  error_code, error_message, started_us, finished_us, kone_rtt_us"
    "  FROM kd_calls WHERE job_id = p_job),"
    " ins AS (INSERT INTO kd_calls AS c (job_id, state, attempt, worker, building_id,"
    "   lease_until, expires_at)"
    "  VALUES (p_job, 'writing', p_attempt, p_owner, p_building, now() + p_lease_ms * interval '1 "
    "millisecond',"
    "   now() + p_retention_h * interval '1 hour')"
    "  ON CONFLICT (job_id) DO UPDATE SET"
    "   taken_from = c.state,"
    "   state = CASE WHEN c.state = 'accepted' OR (c.state = 'writing' AND NOT p_retry_ambiguous)"
    "     THEN c.state ELSE 'writing' END,"
    "   attempt = CASE WHEN c.state IN ('retry', 'done') OR (c.state = 'writing' AND "
    "p_retry_ambiguous)"
    "     THEN excluded.attempt ELSE c.attempt END,"
    "   outcome = CASE WHEN c.state = 'done' THEN NULL ELSE c.outcome END,"
    "   session_id = CASE WHEN c.state = 'accepted' THEN c.session_id ELSE NULL END,"
    "   worker = excluded.worker, lease_until = excluded.lease_until,"
    "   expires_at = excluded.expires_at, updated_at = now()"
    "  WHERE c.state = 'retry' OR (c.state IN ('writing', 'accepted') AND c.lease_until < now())"
    "   OR (c.state = 'done' AND c.outcome = 'failed' AND p_replayed)"
    "  RETURNING c.state, c.taken_from)"
    " SELECT ins.state, ins.taken_from, prev.state, prev.attempt, prev.worker, prev.session_id,"
    "  prev.outcome, prev.failure, prev.kone_status, prev.error_code, prev.error_message,"
    "  prev.started_us, prev.finished_us, prev.kone_rtt_us"
    " FROM (SELECT 1) one LEFT JOIN ins ON true LEFT JOIN prev ON true;"
    " END $kd$",
    NULL,
};

/* The per-job kinds, one statement per batch and kind (ledger_batch.c): each per-job
 * parameter is an array (text format), one element per job in the order of the batch's ops;
 * the answer maps back to the ops by ordinality (`n`, from 1). No job comes twice in one
 * statement (ledger_batch.c starts a new group instead), so rows never meet twice.
 *
 * Claim: $1 job_ids, $2 attempts, $3 owner, $4 buildings, $5 lease ms, $6 retention h, $7 take
 * over an unanswered `writing` row (ledger.ambiguous=retry), $8 replayed deliveries: kd_claim
 * above once per job (LATERAL, in ordinality order), exactly one row per job, in order. */
static const char sql_claim[] =
    "SELECT c.* FROM unnest($1::text[], $2::integer[], $4::text[], $8::boolean[])"
    " WITH ORDINALITY AS j (job, attempt, building, replayed, n)"
    " CROSS JOIN LATERAL kd_claim(j.job, j.attempt, $3, j.building, $5, $6, $7, j.replayed) c"
    " ORDER BY j.n";

/* $1 job_ids, $2 owner, $3 session ids, $4 KONE sessions. A row per job updated (its `n`,
 * ascending): a job without one lost its ownership (another worker took it over). */
static const char sql_accept[] =
    "WITH u AS (UPDATE kd_calls c SET state = 'accepted', session_id = j.session,"
    " kone_session = j.kone_session, updated_at = now()"
    " FROM unnest($1::text[], $3::bigint[], $4::text[])"
    "  WITH ORDINALITY AS j (job, session, kone_session, n)"
    " WHERE c.job_id = j.job AND c.worker = $2 AND c.state = 'writing' RETURNING j.n)"
    " SELECT n FROM u ORDER BY n";

/* $1 job_ids, $2 owner, $3 outcomes, $4 failures, $5 kone_statuses, $6 codes, $7 messages,
 * $8 started, $9 finished, $10 rtts, $11 results (binary), $12 retention h, $13 session ids
 * (NULL: none). A row per job updated, as accept. */
static const char sql_done[] =
    "WITH u AS (UPDATE kd_calls c SET state = 'done', outcome = j.outcome, failure = j.failure,"
    " kone_status = j.kone_status, error_code = j.code, error_message = j.message,"
    " started_us = j.started, finished_us = j.finished, kone_rtt_us = j.rtt,"
    " result = j.result, session_id = COALESCE(j.session, c.session_id),"
    " lease_until = now(), expires_at = now() + $12 * interval '1 hour', updated_at = now()"
    " FROM unnest($1::text[], $3::text[], $4::smallint[], $5::integer[], $6::text[], $7::text[],"
    "  $8::bigint[], $9::bigint[], $10::bigint[], $11::bytea[], $13::bigint[])"
    "  WITH ORDINALITY AS j (job, outcome, failure, kone_status, code, message, started,"
    "  finished, rtt, result, session, n)"
    " WHERE c.job_id = j.job AND c.worker = $2 AND c.state IN ('writing', 'accepted')"
    " RETURNING j.n)"
    " SELECT n FROM u ORDER BY n";

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
static const char sql_end_leases[] = "UPDATE kd_calls SET lease_until = now() WHERE worker = $1"
                                     " AND state IN ('writing', 'accepted')";

/* $1 call session id, $2 building, $3 this worker's owner name, $4 lease ms: who made the
 * call, with which KONE session, and whether that worker is alive. */
static const char sql_route[] = "SELECT c.worker, c.kone_session, c.worker = $3,"
                                "  EXISTS (SELECT 1 FROM kd_workers w WHERE w.owner = c.worker"
                                "    AND w.seen > now() - $4 * interval '1 millisecond')"
                                " FROM kd_calls c WHERE c.session_id = $1 AND c.building_id = $2"
                                " ORDER BY c.updated_at DESC LIMIT 1";

/* $1 cancel job, $2 call session, $3 building, $4 group, $5 owner, $6 by, $7 retention h.
 * A request made again (a redelivery, a retry) keeps a request under way and a final answer
 * (2xx; 4xx but 401, 408, 429: what the asking worker reports as is); an answer it would retry
 * (5xx, 401, 408, 429, none) is asked anew, else every retry would read that stale answer. */
static const char sql_cancel_request[] =
    "INSERT INTO kd_cancels (cancel_job_id, call_session_id, building_id, group_id, owner,"
    " requested_by, state, expires_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, 'requested', now() + $7 * interval '1 hour')"
    " ON CONFLICT (cancel_job_id) DO UPDATE SET call_session_id = EXCLUDED.call_session_id,"
    " building_id = EXCLUDED.building_id, group_id = EXCLUDED.group_id,"
    " owner = EXCLUDED.owner, requested_by = EXCLUDED.requested_by, state = 'requested',"
    " status = NULL, message = NULL, expires_at = EXCLUDED.expires_at"
    " WHERE kd_cancels.state = 'answered' AND NOT (coalesce(kd_cancels.status, 0) BETWEEN 200 AND "
    "299"
    " OR (kd_cancels.status BETWEEN 400 AND 499 AND kd_cancels.status NOT IN (401, 408, 429)))";

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
static const char sql_alive[] = "INSERT INTO kd_workers (owner, seen) VALUES ($1, now())"
                                " ON CONFLICT (owner) DO UPDATE SET seen = now()";
static const char sql_gone[] = "DELETE FROM kd_workers WHERE owner = $1";

const char *const lg_op_sql[OP_N] = {sql_claim,       sql_accept,      sql_done,
                                     sql_retry,       sql_release_new, sql_release_written,
                                     sql_renew,       sql_purge,       sql_count,
                                     sql_end_leases,  sql_route,       sql_cancel_request,
                                     sql_cancel_poll, sql_cancel_take, sql_cancel_answer,
                                     sql_alive,       sql_gone};
const char *const lg_op_stmt[OP_N] = {"kd_claim",       "kd_accept",      "kd_done",
                                      "kd_retry",       "kd_release_new", "kd_release_written",
                                      "kd_renew",       "kd_purge",       "kd_count",
                                      "kd_end_leases",  "kd_route",       "kd_cancel_request",
                                      "kd_cancel_poll", "kd_cancel_take", "kd_cancel_answer",
                                      "kd_alive",       "kd_gone"};
