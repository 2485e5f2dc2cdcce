/* ledger_check: the call ledger (worker/ledger.c) against the dev stack's real PostgreSQL,
 * over TLS with verify-full (run by it_ledger.sh, which sources the stack's env).
 *
 * Each run works in a schema of its own (search_path in the connection's options), so the
 * workers of other tests never see its rows, and a "newer schema" can be faked safely.
 * Two ledgers with different owners play two workers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "kd_config.h"
#include "ledger.h"
#include "ledger_int.h" /* the DDL of the older schema versions */
#include "../unit/test_stderr.h"

static char base_url[1024]; /* the stack's URL, with its password */
static char test_url[1400]; /* ... confined to this run's schema */
static char schema[64];

static void sql(const char *q)
{
    PGconn *pg = PQconnectdb(base_url);
    assert_int_equal(PQstatus(pg), CONNECTION_OK);
    PGresult *r = PQexec(pg, q);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", q, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(pg);
}

static void load_cfg(kd_config *cfg, const char *url, const char *ambiguous, const char *lease)
{
    setenv("KD_LEDGER_URL", url, 1);
    setenv("KD_LEDGER_AMBIGUOUS", ambiguous, 1);
    setenv("KD_LEDGER_LEASE_MS", lease, 1);
    unsetenv("KD_LEDGER_URL_FILE");
    char *argv[] = {"ledger_check"};
    kd_err err = {0};
    if (kd_config_load(cfg, KD_PROG_WORKER, "ledger_check", 1, argv, &err))
        fail_msg("config: %s", err.msg);
}

/* A ledger of owner; timeout_ms: ledger.timeout_ms (NULL: its default), in the environment
 * only while the configuration loads, so that no later test inherits it. */
static kd_ledger *open_ledger_timeout(const char *owner, const char *ambiguous, const char *lease,
                                      const char *timeout_ms)
{
    kd_config cfg;
    if (timeout_ms)
        setenv("KD_LEDGER_TIMEOUT_MS", timeout_ms, 1);
    load_cfg(&cfg, test_url, ambiguous, lease);
    unsetenv("KD_LEDGER_TIMEOUT_MS");
    kd_ledger *l = NULL;
    kd_err err = {0};
    int rc = kd_ledger_open(&l, &cfg, owner, NULL, &err);
    kd_config_free(&cfg);
    if (rc)
        fail_msg("open: %s", err.msg);
    assert_non_null(l);
    return l;
}

static kd_ledger *open_ledger(const char *owner, const char *ambiguous, const char *lease)
{
    return open_ledger_timeout(owner, ambiguous, lease, NULL);
}

typedef struct answer {
    bool got;
    kd_ledger_found f;
    bool ok;
} answer;

static void on_claim(const kd_ledger_found *f, void *ctx)
{
    answer *a = ctx;
    a->got = true;
    a->f = *f;
}

static void on_done(bool ok, const void *result, size_t len, void *ctx)
{
    (void)result;
    (void)len;
    answer *a = ctx;
    a->got = true;
    a->ok = ok;
}

/* Turns the ledger until everything queued is committed (or 5 s). */
static void settle(kd_ledger *l)
{
    for (int i = 0; i < 5000 && kd_ledger_pending(l) > 0; i++) {
        kd_ledger_turn(l);
        usleep(1000);
    }
    assert_int_equal(kd_ledger_pending(l), 0);
}

/* Turns the ledger (for 5 s at most) until *flag is set, or until `up` is up again. */
static void turn_until(kd_ledger *l, const bool *flag, const kd_ledger *up)
{
    for (int i = 0; i < 5000 && !(flag ? *flag : kd_ledger_up(up)); i++) {
        kd_ledger_turn(l);
        usleep(1000);
    }
}

static kd_run mkrun(const char *job, int attempt)
{
    kd_run r;
    memset(&r, 0, sizeof r);
    snprintf(r.job.job_id, sizeof r.job.job_id, "%s-%s", schema, job);
    snprintf(r.job.building_id, sizeof r.job.building_id, "building:9990000951");
    r.attempt = attempt;
    return r;
}

static kd_ledger_verdict claim(kd_ledger *l, kd_run *run, kd_ledger_found *out)
{
    answer a = {0};
    int64_t pg_before = run->ledger_claim_us;
    kd_ledger_claim(l, run, on_claim, &a);
    settle(l);
    assert_true(a.got);
    /* the wait for PostgreSQL is counted on the run (worker.timings_file, the bench) */
    if (a.f.verdict != KD_LEDGER_FAILED)
        assert_true(run->ledger_claim_us > pg_before);
    if (out)
        *out = a.f;
    return a.f.verdict;
}

static void test_claim_then_busy_then_done(void **state)
{
    (void)state;
    kd_ledger *a = open_ledger("worker-a", "unknown", "15000");
    kd_ledger *b = open_ledger("worker-b", "unknown", "15000");
    kd_run run = mkrun("j1", 1);
    assert_int_equal(claim(a, &run, NULL), KD_LEDGER_CALL);
    /* the same job again, while a holds it: a producer's re-send, or a redelivery */
    assert_int_equal(claim(a, &run, NULL), KD_LEDGER_BUSY);
    assert_int_equal(claim(b, &run, NULL), KD_LEDGER_BUSY);

    kd_run_finish(&run, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "", "call served");
    run.session_id = 777;
    run.kone_status = 201;
    run.started_us = 1000, run.finished_us = 2000, run.kone_rtt_us = 345;
    answer d = {0};
    kd_ledger_done(a, &run, "\x81\xa1v\x01", 4, on_done, &d);
    settle(a);
    assert_true(d.got && d.ok);
    assert_true(run.ledger_done_us > 0);

    kd_ledger_found f;
    assert_int_equal(claim(b, &run, &f), KD_LEDGER_DONE);
    assert_int_equal(f.outcome, KD_OUTCOME_SUCCEEDED);
    assert_int_equal(f.session_id, 777);
    assert_int_equal(f.kone_status, 201);
    assert_string_equal(f.error_message, "call served");
    assert_int_equal(f.started_us, 1000);
    assert_int_equal(f.kone_rtt_us, 345);
    assert_int_equal(f.attempt, 1);
    kd_ledger_close(a);
    kd_ledger_close(b);
}

/* kd_ledger_quiet: the caller's poll found the socket silent, so the next turn does not read
 * it (a recv that would fail EAGAIN, issue 17); the turn after reads what came meanwhile.
 * A statement queued while every batch slot waits for PostgreSQL counts that wait as
 * PostgreSQL's (kd_run.ledger_claim_us, which scripts/bench takes out of the worker's own
 * latency), not only its own batch's commit. */
static void test_quiet_turns_and_a_full_pipeline(void **state)
{
    (void)state;
    kd_ledger *l = open_ledger("worker-q", "unknown", "15000");
    enum { SLOTS = LEDGER_MAX_BATCHES }; /* batches in flight at once */
    kd_run r[SLOTS + 1];
    answer a[SLOTS + 1];
    memset(a, 0, sizeof a);
    for (int i = 0; i < SLOTS; i++) {
        char id[16];
        snprintf(id, sizeof id, "q%d", i);
        r[i] = mkrun(id, 1);
        kd_ledger_claim(l, &r[i], on_claim, &a[i]);
        kd_ledger_quiet(l);
        kd_ledger_turn(l); /* sends batch i, reads nothing */
    }
    usleep(300000); /* every commit is back on the socket */
    r[SLOTS] = mkrun("q4", 1);
    kd_ledger_claim(l, &r[SLOTS], on_claim, &a[SLOTS]);
    usleep(100000); /* it waits behind the full pipeline */
    kd_ledger_quiet(l);
    kd_ledger_turn(l);
    for (int i = 0; i <= SLOTS; i++)
        assert_false(a[i].got);                     /* the socket was not read */
    assert_true(kd_ledger_pending(l) >= SLOTS + 1); /* and what the ledger queues itself */
    turn_until(l, &a[SLOTS - 1].got, NULL);         /* reads the answers, then sends the 5th */
    settle(l);
    for (int i = 0; i < SLOTS; i++)
        assert_true(a[i].got && a[i].f.verdict == KD_LEDGER_CALL);
    assert_true(a[SLOTS].got && a[SLOTS].f.verdict == KD_LEDGER_CALL);
    /* its claim waited >= 100 ms for a slot: PostgreSQL's time, counted as such */
    assert_true(r[SLOTS].ledger_claim_us >= 100000);
    kd_ledger_close(l);
}

static void test_accepted_is_followed_after_handover(void **state)
{
    (void)state;
    kd_ledger *a = open_ledger("worker-a", "unknown", "15000");
    kd_ledger *b = open_ledger("worker-b", "unknown", "15000");
    kd_run run = mkrun("j2", 1);
    assert_int_equal(claim(a, &run, NULL), KD_LEDGER_CALL);
    kd_ledger_accept(a, run.job.job_id, 4242, "sess-a");
    settle(a);
    /* a still holds it */
    assert_int_equal(claim(b, &run, NULL), KD_LEDGER_BUSY);
    /* a stops (SIGTERM) and hands it over */
    kd_ledger_release(a, &run, true);
    settle(a);
    kd_ledger_found f;
    assert_int_equal(claim(b, &run, &f), KD_LEDGER_FOLLOW);
    assert_int_equal(f.session_id, 4242);
    assert_non_null(strstr(f.worker, "worker-a/"));
    /* b owns it now: a third worker waits */
    kd_ledger *c = open_ledger("worker-c", "unknown", "15000");
    assert_int_equal(claim(c, &run, NULL), KD_LEDGER_BUSY);
    kd_ledger_close(a);
    kd_ledger_close(b);
    kd_ledger_close(c);
}

static void test_unanswered_write_is_ambiguous(void **state)
{
    (void)state;
    kd_ledger *a = open_ledger("worker-a", "unknown", "15000");
    kd_ledger *b = open_ledger("worker-b", "unknown", "15000");
    kd_ledger *r = open_ledger("worker-r", "retry", "15000");
    kd_run run = mkrun("j3", 1);
    assert_int_equal(claim(a, &run, NULL), KD_LEDGER_CALL);
    kd_ledger_release(a, &run, true); /* written, never answered */
    settle(a);
    kd_ledger_found f;
    assert_int_equal(claim(b, &run, &f), KD_LEDGER_AMBIGUOUS);
    assert_int_equal(f.attempt, 1);

    /* ledger.ambiguous=retry calls again, knowingly */
    kd_run run2 = mkrun("j3b", 1);
    assert_int_equal(claim(a, &run2, NULL), KD_LEDGER_CALL);
    kd_ledger_release(a, &run2, true);
    settle(a);
    assert_int_equal(claim(r, &run2, NULL), KD_LEDGER_CALL);
    kd_ledger_close(a);
    kd_ledger_close(b);
    kd_ledger_close(r);
}

static void test_lease_runs_out_when_a_worker_dies(void **state)
{
    (void)state;
    kd_ledger *a = open_ledger("worker-a", "unknown", "1000");
    kd_ledger *b = open_ledger("worker-b", "unknown", "1000");
    kd_run run = mkrun("j4", 1);
    assert_int_equal(claim(a, &run, NULL), KD_LEDGER_CALL);
    assert_int_equal(claim(b, &run, NULL), KD_LEDGER_BUSY);
    kd_ledger_close(a); /* SIGKILL: no release, no renewal */
    usleep(1200 * 1000);
    assert_int_equal(claim(b, &run, NULL), KD_LEDGER_AMBIGUOUS);
    kd_ledger_close(b);
}

static void test_retry_and_release_let_the_next_attempt_call(void **state)
{
    (void)state;
    kd_ledger *a = open_ledger("worker-a", "unknown", "15000");
    kd_ledger *b = open_ledger("worker-b", "unknown", "15000");
    kd_run run = mkrun("j5", 1);
    assert_int_equal(claim(a, &run, NULL), KD_LEDGER_CALL);
    kd_ledger_retry(a, &run); /* 5xx: KONE took no call */
    settle(a);
    kd_run next = mkrun("j5", 2);
    assert_int_equal(claim(b, &next, NULL), KD_LEDGER_CALL);

    kd_run run6 = mkrun("j6", 1);
    assert_int_equal(claim(a, &run6, NULL), KD_LEDGER_CALL);
    kd_ledger_release(a, &run6, false); /* shutdown before the call was written */
    settle(a);
    assert_int_equal(claim(b, &run6, NULL), KD_LEDGER_CALL);
    kd_ledger_close(a);
    kd_ledger_close(b);
}

/* kd_claim's plain INSERT (a new job) against the same new job claimed by two workers at
 * once (a producer's re-send delivered to both): one calls, the other waits (BUSY), however
 * PostgreSQL interleaves them; and a `failed` job is called again only when replayed. */
static void test_new_job_claimed_twice_at_once_and_replayed(void **state)
{
    (void)state;
    kd_ledger *a = open_ledger("worker-a", "unknown", "15000");
    kd_ledger *b = open_ledger("worker-b", "unknown", "15000");
    for (int i = 0; i < 20; i++) {
        char job[16];
        snprintf(job, sizeof job, "twice%d", i);
        kd_run ra = mkrun(job, 1), rb = mkrun(job, 1);
        answer x = {0}, y = {0};
        kd_ledger_claim(a, &ra, on_claim, &x);
        kd_ledger_claim(b, &rb, on_claim, &y);
        kd_ledger_turn(a); /* both sent before either is read */
        kd_ledger_turn(b);
        for (int t = 0; t < 5000 && !(x.got && y.got); t++) {
            kd_ledger_turn(a);
            kd_ledger_turn(b);
            usleep(1000);
        }
        assert_true(x.got && y.got);
        assert_true((x.f.verdict == KD_LEDGER_CALL && y.f.verdict == KD_LEDGER_BUSY) ||
                    (x.f.verdict == KD_LEDGER_BUSY && y.f.verdict == KD_LEDGER_CALL));
    }

    kd_run run = mkrun("failed", 1);
    assert_int_equal(claim(a, &run, NULL), KD_LEDGER_CALL);
    kd_run_finish(&run, KD_OUTCOME_FAILED, KD_FAIL_TRANSIENT, "http_500", "KONE answered 500");
    answer d = {0};
    kd_ledger_done(a, &run, "{}", 2, on_done, &d);
    settle(a);
    assert_true(d.ok);
    kd_run again = mkrun("failed", 1);
    assert_int_equal(claim(b, &again, NULL), KD_LEDGER_DONE); /* a redelivery: its result */
    again.replayed = true;                                    /* replay-dead */
    assert_int_equal(claim(b, &again, NULL), KD_LEDGER_CALL);
    kd_ledger_close(a);
    kd_ledger_close(b);
}

static void test_accept_then_done_in_any_order(void **state)
{
    (void)state;
    kd_ledger *a = open_ledger("worker-a", "unknown", "15000");
    kd_run run = mkrun("j7", 1);
    assert_int_equal(claim(a, &run, NULL), KD_LEDGER_CALL);
    kd_run_finish(&run, KD_OUTCOME_REJECTED, KD_FAIL_FINAL, "NO_LIFT_AVAILABLE", "cancelled");
    answer d = {0};
    kd_ledger_done(a, &run, NULL, 0, on_done, &d);
    kd_ledger_accept(a, run.job.job_id, 99, "sess-a"); /* late: must not reopen a done row */
    settle(a);
    kd_ledger *b = open_ledger("worker-b", "unknown", "15000");
    kd_ledger_found f;
    assert_int_equal(claim(b, &run, &f), KD_LEDGER_DONE);
    assert_int_equal(f.outcome, KD_OUTCOME_REJECTED);
    assert_string_equal(f.error_code, "NO_LIFT_AVAILABLE");
    assert_int_equal(f.session_id, 0); /* nor stamp its session on it */
    kd_ledger_close(a);
    kd_ledger_close(b);
}

/* What stmt writes to stderr (the log), into buf (an array; NUL-terminated). */
#define STDERR_INTO(buf, stmt)                                                                     \
    do {                                                                                           \
        int saved_;                                                                                \
        FILE *tmp_ = test_stderr_begin(&saved_);                                                   \
        assert_non_null(tmp_);                                                                     \
        stmt;                                                                                      \
        test_stderr_end(saved_, tmp_, buf, sizeof buf);                                            \
    } while (0)

static void test_bad_urls_and_newer_schema(void **state)
{
    (void)state;
    kd_config cfg;
    kd_ledger *l = NULL;
    kd_err err = {0};

    load_cfg(&cfg, "mysql://x", "unknown", "15000");
    assert_int_equal(kd_ledger_open(&l, &cfg, "w", NULL, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "ledger.url"));
    kd_config_free(&cfg);

    /* nobody listens there: it opens without PostgreSQL (test_unreachable_at_open_connects_
     * later), and the password never reaches what it logs */
    load_cfg(&cfg, "postgresql://kd:s3cret-pw@127.0.0.1:1/kone_dispatch?sslmode=disable", "unknown",
             "15000");
    memset(&err, 0, sizeof err);
    char said[4096];
    int rc;
    STDERR_INTO(said, rc = kd_ledger_open(&l, &cfg, "w", NULL, &err));
    assert_int_equal(rc, 0);
    assert_non_null(l);
    assert_false(kd_ledger_up(l));
    assert_non_null(strstr(said, "postgresql://kd:***@127.0.0.1:1/kone_dispatch"));
    assert_non_null(strstr(said, "cannot connect"));
    assert_non_null(strstr(said, "starting without it"));
    assert_null(strstr(said, "s3cret-pw"));
    kd_ledger_close(l);
    l = NULL;
    kd_config_free(&cfg);

    /* what no retry mends is still a start-up error: a URL libpq cannot parse, a CA file
     * that cannot be read */
    load_cfg(&cfg, "postgresql://kd@127.0.0.1:1/kd?no_such_option=1", "unknown", "15000");
    memset(&err, 0, sizeof err);
    assert_int_equal(kd_ledger_open(&l, &cfg, "w", NULL, &err), KD_ERR_INVALID);
    assert_null(l);
    assert_non_null(strstr(err.msg, "no_such_option"));
    kd_config_free(&cfg);
    /* libpq quotes a bad percent-encoding it met; in the password, that quote stays out */
    load_cfg(&cfg, "postgresql://kd:pw%zzsecret@127.0.0.1:1/kd", "unknown", "15000");
    memset(&err, 0, sizeof err);
    assert_int_equal(kd_ledger_open(&l, &cfg, "w", NULL, &err), KD_ERR_INVALID);
    assert_null(l);
    assert_null(strstr(err.msg, "zzsecret"));
    assert_non_null(strstr(err.msg, "kd:***@"));
    kd_config_free(&cfg);
    load_cfg(&cfg, "postgresql://kd@127.0.0.1:1/kd?sslrootcert=/nonexistent/ca.pem", "unknown",
             "15000");
    memset(&err, 0, sizeof err);
    assert_int_equal(kd_ledger_open(&l, &cfg, "w", NULL, &err), KD_ERR_INVALID);
    assert_null(l);
    assert_non_null(strstr(err.msg, "sslrootcert: cannot read /nonexistent/ca.pem"));
    kd_config_free(&cfg);

    load_cfg(&cfg, "none", "unknown", "15000");
    assert_int_equal(kd_ledger_open(&l, &cfg, "w", NULL, &err), 0);
    assert_null(l);
    kd_config_free(&cfg);

    char q[200];
    snprintf(q, sizeof q, "UPDATE %s.kd_schema SET version = 99", schema);
    sql(q);
    load_cfg(&cfg, test_url, "unknown", "15000");
    memset(&err, 0, sizeof err);
    assert_int_equal(kd_ledger_open(&l, &cfg, "w", NULL, &err), KD_ERR_INVALID);
    assert_non_null(strstr(err.msg, "schema version 99"));
    assert_null(strstr(err.msg, "password"));
    kd_config_free(&cfg);
    snprintf(q, sizeof q, "UPDATE %s.kd_schema SET version = 1", schema);
    sql(q);
}

static void on_route(const kd_ledger_call_owner *o, void *ctx)
{
    answer *a = ctx;
    a->got = true;
    a->ok = o->ok;
}

static void on_poll(bool ok, bool answered, int status, const char *message, void *ctx)
{
    (void)answered;
    (void)status;
    (void)message;
    answer *a = ctx;
    a->got = true;
    a->ok = ok;
}

/* Statements still queued when the ledger closes get their answer (a claim failed, an
 * outcome not recorded, no owner found, a poll that failed), and so do those asked of no
 * ledger (ledger.url=none): no job waits forever. */
static void test_answers_at_close(void **state)
{
    (void)state;
    kd_ledger *l = open_ledger("worker-c", "unknown", "15000");
    assert_true(kd_ledger_up(l));
    assert_int_equal(strncmp(kd_ledger_owner(l), "worker-c/", 9), 0);
    kd_run run = mkrun("c1", 1), run2 = mkrun("c2", 1);
    kd_run_finish(&run2, KD_OUTCOME_SUCCEEDED, KD_FAIL_NONE, "", "%s", "");
    answer c = {0}, d = {0}, r = {0}, q = {0};
    kd_ledger_claim(l, &run, on_claim, &c);
    kd_ledger_done(l, &run2, "x", 1, on_done, &d);
    kd_ledger_route(l, 42, "building:9990000951", on_route, &r);
    kd_ledger_cancel_poll(l, "c3", on_poll, &q);
    kd_ledger_close(l); /* no turn: none of them was sent */
    assert_true(c.got && c.f.verdict == KD_LEDGER_FAILED);
    assert_true(d.got && !d.ok);
    assert_true(r.got && !r.ok);
    assert_true(q.got && !q.ok);

    answer r0 = {0}, q0 = {0}, d0 = {0};
    kd_ledger_route(NULL, 42, "building:9990000951", on_route, &r0);
    kd_ledger_cancel_poll(NULL, "c3", on_poll, &q0);
    kd_ledger_done(NULL, &run2, "x", 1, on_done, &d0);
    assert_true(r0.got && !r0.ok);
    assert_true(q0.got && !q0.ok);
    assert_true(d0.got && !d0.ok);
    answer c0 = {0};
    kd_ledger_claim(NULL, &run, on_claim, &c0); /* no ledger: the claim fails at once */
    assert_true(c0.got && c0.f.verdict == KD_LEDGER_FAILED);
    /* and what needs no answer is dropped (under ASan: freed, not leaked) */
    kd_ledger_accept(NULL, run.job.job_id, 7, "s");
    kd_ledger_retry(NULL, &run);
    kd_ledger_release(NULL, &run, false);
    kd_ledger_cancel_request(NULL, "c4", 7, "building:9990000951", "1", "w");
    kd_ledger_cancel_answer(NULL, "c4", 202, "ok");
    assert_int_equal(kd_ledger_pending(NULL), 0);
    assert_string_equal(kd_ledger_owner(NULL), "");
}

static long count_of(const char *q)
{
    PGconn *pg = PQconnectdb(base_url);
    assert_int_equal(PQstatus(pg), CONNECTION_OK);
    PGresult *r = PQexec(pg, q);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", q, PQresultErrorMessage(r));
    long n = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(pg);
    return n;
}

/* Rows past ledger.retention_h (expires_at) are deleted by the workers' periodic purge, calls
 * and cancels alike (the first purge runs as a ledger opens); a row not expired stays. */
static void test_expired_rows_are_purged(void **state)
{
    (void)state;
    kd_ledger *l = open_ledger("worker-p", "unknown", "15000");
    kd_run old = mkrun("p1", 1), fresh = mkrun("p2", 1);
    assert_int_equal(claim(l, &old, NULL), KD_LEDGER_CALL);
    assert_int_equal(claim(l, &fresh, NULL), KD_LEDGER_CALL);
    kd_ledger_cancel_request(l, "p-cancel", 7, "building:9990000951", "1", "nobody");
    settle(l);
    kd_ledger_close(l);
    char q[512];
    snprintf(q, sizeof q,
             "UPDATE %s.kd_calls SET expires_at = now() - interval '1 second' WHERE job_id = '%s'",
             schema, old.job.job_id);
    sql(q);
    snprintf(q, sizeof q,
             "UPDATE %s.kd_cancels SET expires_at = now() - interval '1 second'"
             " WHERE cancel_job_id = 'p-cancel'",
             schema);
    sql(q);
    l = open_ledger("worker-p2", "unknown", "15000");
    char calls[256], cancels[256];
    snprintf(calls, sizeof calls, "SELECT count(*) FROM %s.kd_calls WHERE job_id = '%s'", schema,
             old.job.job_id);
    snprintf(cancels, sizeof cancels, "SELECT count(*) FROM %s.kd_cancels", schema);
    for (int i = 0; i < 50 && (count_of(calls) || count_of(cancels)); i++) {
        kd_ledger_turn(l);
        usleep(20000);
    }
    assert_int_equal(count_of(calls), 0);
    assert_int_equal(count_of(cancels), 0);
    snprintf(q, sizeof q, "SELECT count(*) FROM %s.kd_calls WHERE job_id = '%s'", schema,
             fresh.job.job_id);
    assert_int_equal(count_of(q), 1);
    kd_ledger_close(l);
}

/* PostgreSQL ends the ledger's session (an administrator, a failover): the claim in flight
 * fails at once (the job is handed back, not called blind), the ledger is down, then it
 * connects again by itself and the next claim calls. */
static void test_session_killed_then_reconnect(void **state)
{
    (void)state;
    kd_ledger *l = open_ledger("worker-k", "unknown", "15000");
    settle(l);
    char q[512];
    snprintf(q, sizeof q,
             "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> "
             "pg_backend_pid() AND application_name = 'kone-worker' AND backend_start > "
             "now() - interval '10 seconds'");
    sql(q);
    kd_run run = mkrun("k1", 1);
    answer a = {0};
    kd_ledger_claim(l, &run, on_claim, &a);
    turn_until(l, &a.got, NULL);
    assert_true(a.got);
    assert_int_equal(a.f.verdict, KD_LEDGER_FAILED);
    assert_false(kd_ledger_up(l));
    turn_until(l, NULL, l);
    assert_true(kd_ledger_up(l));
    assert_int_equal(claim(l, &run, NULL), KD_LEDGER_CALL);
    kd_ledger_close(l);
}

/* A statement PostgreSQL refuses every time (here: an outcome whose text is not UTF-8) is
 * tried a bounded number of times and dropped; its caller learns it was not recorded, and
 * the ledger goes on serving the next statements. */
static void test_statement_refused_every_time_is_dropped(void **state)
{
    (void)state;
    kd_ledger *l = open_ledger("worker-u", "unknown", "15000");
    kd_run run = mkrun("u1", 1);
    assert_int_equal(claim(l, &run, NULL), KD_LEDGER_CALL);
    kd_run_finish(&run, KD_OUTCOME_FAILED, KD_FAIL_FINAL, "X", "bad \xff\xfe text");
    answer d = {0};
    kd_ledger_done(l, &run, NULL, 0, on_done, &d);
    settle(l);
    assert_true(d.got);
    assert_false(d.ok);
    kd_run next = mkrun("u2", 1);
    assert_int_equal(claim(l, &next, NULL), KD_LEDGER_CALL);
    kd_ledger_close(l);
}

static void sql_value(const char *q, char *out, size_t len);

/* One row of this run's kd_calls as "state:kone_session:session_id:outcome:worker". */
static void row_of(const char *job_id, char *out, size_t len)
{
    PGconn *pg = PQconnectdb(base_url);
    assert_int_equal(PQstatus(pg), CONNECTION_OK);
    char q[300];
    snprintf(q, sizeof q,
             "SELECT state || ':' || coalesce(kone_session, '-') || ':' ||"
             " coalesce(session_id::text, '-') || ':' || coalesce(outcome, '-') || ':' ||"
             " split_part(worker, '/', 1) FROM %s.kd_calls WHERE job_id = $1",
             schema);
    const char *v[] = {job_id};
    PGresult *r = PQexecParams(pg, q, 1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", q, PQresultErrorMessage(r));
    snprintf(out, len, "%s", PQntuples(r) ? PQgetvalue(r, 0, 0) : "none");
    PQclear(r);
    PQfinish(pg);
}

static void finish(kd_run *run, kd_outcome o, const char *code, const char *message)
{
    kd_run_finish(run, o, o == KD_OUTCOME_SUCCEEDED ? KD_FAIL_NONE : KD_FAIL_FINAL, code, "%s",
                  message);
}

/* ledger.timeout_ms is also the session's statement_timeout: at its largest (600000, six
 * digits) the worker still starts and claims (the SET once cut "warning" short for five
 * digits or more: PostgreSQL refused "warnin" and the worker could not start). */
static void test_longest_timeout_opens(void **state)
{
    (void)state;
    kd_ledger *l = open_ledger_timeout("worker-l", "unknown", "15000", "600000");
    kd_run run = mkrun("l1", 1);
    assert_int_equal(claim(l, &run, NULL), KD_LEDGER_CALL);
    kd_ledger_close(l);
}

/* A statement whose failure was read just before the connection died (its backend
 * terminated while it waited for a row lock) goes again after the reconnect; the batch it
 * goes in is judged by that batch's own answers: a claim sent with it is answered CALL, as
 * PostgreSQL committed it, not FAILED (the failure read before the loss once made the whole
 * next batch count as rolled back: the job was handed back with its claim committed). */
static void test_failure_before_a_lost_link_is_not_the_next_batchs(void **state)
{
    (void)state;
    /* statement_timeout and the batch timeout well past the steps below on a loaded machine:
     * the loss must be the terminated backend's, not a timeout's */
    kd_ledger *l = open_ledger_timeout("worker-f", "unknown", "15000", "30000");
    kd_run first = mkrun("f1", 1), second = mkrun("f2", 1);
    assert_int_equal(claim(l, &first, NULL), KD_LEDGER_CALL);
    int pid = PQbackendPID(l->pg);
    /* another session holds f1's row: the done waits in PostgreSQL */
    PGconn *h = PQconnectdb(base_url);
    assert_int_equal(PQstatus(h), CONNECTION_OK);
    char q[400];
    snprintf(q, sizeof q, "BEGIN; SELECT 1 FROM %s.kd_calls WHERE job_id = '%s' FOR UPDATE", schema,
             first.job.job_id);
    PGresult *r = PQexec(h, q);
    ExecStatusType locked = PQresultStatus(r);
    PQclear(r);
    finish(&first, KD_OUTCOME_SUCCEEDED, "", "ok");
    answer d = {0};
    kd_ledger_done(l, &first, "r", 1, on_done, &d);
    char n[32] = "0";
    snprintf(q, sizeof q,
             "SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND wait_event_type = 'Lock'",
             pid);
    for (int i = 0; locked == PGRES_TUPLES_OK && i < 5000 && strcmp(n, "1"); i++) {
        kd_ledger_turn(l); /* until the done waits for the lock */
        usleep(1000);
        sql_value(q, n, sizeof n);
    }
    if (!strcmp(n, "1")) {
        snprintf(q, sizeof q, "SELECT pg_terminate_backend(%d)", pid);
        sql(q);
        for (int i = 0; i < 5000 && kd_ledger_up(l); i++) {
            kd_ledger_turn(l);
            usleep(1000);
        }
    }
    /* the lock let go before any assertion: a failed one must not leave the schema's drop
     * waiting for it */
    r = PQexec(h, "ROLLBACK");
    PQclear(r);
    PQfinish(h);
    assert_int_equal(locked, PGRES_TUPLES_OK);
    assert_string_equal(n, "1");
    assert_false(kd_ledger_up(l));
    /* the done is queued again, its failure (the terminated backend's error) read */
    assert_non_null(l->queue.head);
    assert_int_equal(l->queue.head->kind, OP_DONE);
    assert_true(l->queue.head->failed);
    assert_false(d.got);
    /* a claim queued before the reconnect goes in the same batch as the done */
    answer c = {0};
    op *o = lg_new_op(l, OP_CLAIM, &second);
    assert_non_null(o);
    o->claim_fn = on_claim;
    o->ctx = &c;
    lg_enqueue(l, o);
    turn_until(l, &c.got, NULL);
    assert_true(c.got);
    assert_int_equal(c.f.verdict, KD_LEDGER_CALL);
    settle(l);
    assert_true(d.got);
    assert_true(d.ok);
    char row[200];
    row_of(first.job.job_id, row, sizeof row);
    assert_true(strncmp(row, "done:", 5) == 0);
    row_of(second.job.job_id, row, sizeof row);
    assert_true(strncmp(row, "writing:", 8) == 0);
    kd_ledger_close(l);
}

/* A batch's claims, accepts and dones go as one statement per kind (ledger_batch.c): each
 * job gets its own answer back, a job another worker took over meanwhile gets "not yours"
 * (its row untouched) while the others of the same statement are recorded, and an accept
 * and a done of one job in one batch are applied in that order (the done keeps the session
 * the accept recorded). */
static void test_batched_statements_answer_each_job(void **state)
{
    (void)state;
    kd_ledger *a = open_ledger("worker-a", "unknown", "15000");
    kd_ledger *b = open_ledger("worker-b", "unknown", "15000");
    kd_run r[3] = {mkrun("g1", 1), mkrun("g2", 1), mkrun("g3", 1)};
    answer c[3] = {0}, d[3] = {0};
    for (int i = 0; i < 3; i++)
        kd_ledger_claim(a, &r[i], on_claim, &c[i]);
    settle(a);
    for (int i = 0; i < 3; i++)
        assert_int_equal(c[i].f.verdict, KD_LEDGER_CALL);
    /* g2 passes to b (a's call of it unanswered): a's later statements about it are stale */
    kd_ledger_release(a, &r[1], true);
    settle(a);
    assert_int_equal(claim(b, &r[1], NULL), KD_LEDGER_AMBIGUOUS);

    finish(&r[0], KD_OUTCOME_SUCCEEDED, "", "served");
    finish(&r[1], KD_OUTCOME_SUCCEEDED, "", "served");
    finish(&r[2], KD_OUTCOME_REJECTED, "NO_LIFT_AVAILABLE", "none free");
    for (int i = 0; i < 3; i++) {
        char sess[16];
        snprintf(sess, sizeof sess, "sess-%d", i + 1);
        kd_ledger_accept(a, r[i].job.job_id, 101 + i, sess);
    }
    for (int i = 0; i < 3; i++)
        kd_ledger_done(a, &r[i], "r", 1, on_done, &d[i]);
    /* g1 delivered again meanwhile: its claim comes after its done, and meets it */
    answer again = {0};
    kd_ledger_claim(a, &r[0], on_claim, &again);
    settle(a);
    for (int i = 0; i < 3; i++)
        assert_true(d[i].got && d[i].ok); /* the result goes out either way */
    assert_int_equal(again.f.verdict, KD_LEDGER_DONE);
    char row[200];
    row_of(r[0].job.job_id, row, sizeof row);
    assert_string_equal(row, "done:sess-1:101:succeeded:worker-a");
    row_of(r[1].job.job_id, row, sizeof row);
    assert_string_equal(row, "writing:-:-:-:worker-b");
    row_of(r[2].job.job_id, row, sizeof row);
    assert_string_equal(row, "done:sess-3:103:rejected:worker-a");

    /* three claims in one statement, three different answers, each to its own job */
    kd_ledger *e = open_ledger("worker-e", "unknown", "15000");
    answer ce[3] = {0};
    for (int i = 0; i < 3; i++)
        kd_ledger_claim(e, &r[i], on_claim, &ce[i]);
    settle(e);
    assert_int_equal(ce[0].f.verdict, KD_LEDGER_DONE);
    assert_int_equal(ce[0].f.outcome, KD_OUTCOME_SUCCEEDED);
    assert_int_equal(ce[1].f.verdict, KD_LEDGER_BUSY);
    assert_int_equal(ce[2].f.verdict, KD_LEDGER_DONE);
    assert_int_equal(ce[2].f.outcome, KD_OUTCOME_REJECTED);
    assert_string_equal(ce[2].f.error_code, "NO_LIFT_AVAILABLE");
    assert_int_equal(ce[2].f.session_id, 103);

    /* a batch larger than the first size of the set that keeps a group's jobs apart */
    enum { MANY = 80 };
    kd_run many[MANY];
    answer cm[MANY] = {{0}};
    for (int i = 0; i < MANY; i++) {
        char job[16];
        snprintf(job, sizeof job, "m%d", i);
        many[i] = mkrun(job, 1);
        kd_ledger_claim(e, &many[i], on_claim, &cm[i]);
    }
    answer again7 = {0};
    kd_ledger_claim(e, &many[7], on_claim, &again7); /* m7 again: its own group, after */
    settle(e);
    for (int i = 0; i < MANY; i++)
        assert_int_equal(cm[i].f.verdict, KD_LEDGER_CALL);
    assert_int_equal(again7.f.verdict, KD_LEDGER_BUSY); /* e holds it */
    kd_ledger_close(a);
    kd_ledger_close(b);
    kd_ledger_close(e);
}

/* Job ids come from users and travel as elements of text arrays: quotes, backslashes,
 * commas, braces, blanks, the word NULL and non-ASCII reach PostgreSQL as they were, in
 * the job ids, KONE's session names and messages alike, and the result's bytes too. */
static void test_job_ids_needing_escapes(void **state)
{
    (void)state;
    static const char *const ids[] = {
        "q\"uote", "back\\slash", "com,ma",      "{br}ace",
        "NULL",    " sp ace ",    "\"\\,{}\\\"", "\xc3\xbcn\xc3\xaf\xe2\x82\xac\xf0\x9f\x9b\x97",
        "",
    };
    enum { N = sizeof ids / sizeof ids[0] };
    static const char msg[] = "a \"quoted\", {braced} \\ \xc3\xa9 message";
    kd_ledger *a = open_ledger("worker-a", "unknown", "15000");
    kd_run r[N];
    answer c[N] = {{0}}, d[N] = {{0}};
    for (int i = 0; i < N; i++) {
        r[i] = mkrun("esc", 1);
        size_t n = strlen(r[i].job.job_id);
        snprintf(r[i].job.job_id + n, sizeof r[i].job.job_id - n, "%s", ids[i]);
        kd_ledger_claim(a, &r[i], on_claim, &c[i]);
    }
    settle(a);
    for (int i = 0; i < N; i++) {
        assert_int_equal(c[i].f.verdict, KD_LEDGER_CALL);
        finish(&r[i], KD_OUTCOME_FAILED, "E\"1\\", msg);
        kd_ledger_accept(a, r[i].job.job_id, 55, "k\"s\\,{} NULL");
        kd_ledger_done(a, &r[i], "\0\"\\,{}", 6, on_done, &d[i]);
    }
    settle(a);
    kd_ledger *b = open_ledger("worker-b", "unknown", "15000");
    answer cb[N] = {{0}};
    for (int i = 0; i < N; i++)
        kd_ledger_claim(b, &r[i], on_claim, &cb[i]);
    settle(b);
    for (int i = 0; i < N; i++) {
        assert_true(d[i].got && d[i].ok);
        assert_int_equal(cb[i].f.verdict, KD_LEDGER_DONE);
        assert_string_equal(cb[i].f.error_code, "E\"1\\");
        assert_string_equal(cb[i].f.error_message, msg);
        assert_int_equal(cb[i].f.session_id, 55);
    }
    char q[400], v[32];
    snprintf(q, sizeof q,
             "SELECT count(*) FROM %s.kd_calls WHERE job_id LIKE '%s-esc%%' AND state = 'done'"
             " AND kone_session = 'k\"s\\,{} NULL' AND result = '\\x00225c2c7b7d'::bytea",
             schema, schema);
    sql_value(q, v, sizeof v);
    assert_int_equal(atoi(v), N);
    kd_ledger_close(a);
    kd_ledger_close(b);
}

/* Opens a ledger confined to schema `name` (made here, with `setup` run in it first) and
 * returns kd_ledger_open's error message; the schema is dropped after. */
static int open_in_schema(const char *name, const char *setup, char *msg, size_t len)
{
    char q[600];
    snprintf(q, sizeof q, "CREATE SCHEMA %s_%s; SET search_path = %s_%s; %s", schema, name, schema,
             name, setup);
    sql(q);
    char url[1500];
    snprintf(url, sizeof url, "%s%coptions=-csearch_path%%3D%s_%s", base_url,
             strchr(base_url, '?') ? '&' : '?', schema, name);
    kd_config cfg;
    load_cfg(&cfg, url, "unknown", "15000");
    kd_ledger *l = NULL;
    kd_err err = {0};
    int rc = kd_ledger_open(&l, &cfg, "w", NULL, &err);
    kd_config_free(&cfg);
    kd_ledger_close(l);
    snprintf(msg, len, "%s", err.msg);
    snprintf(q, sizeof q, "DROP SCHEMA %s_%s CASCADE", schema, name);
    sql(q);
    return rc;
}

/* A ledger whose tables are not what this worker made (a hand-made table, a half-applied
 * migration) is a clear start-up error naming what PostgreSQL said, never a worker that
 * runs without its ledger. */
static void test_broken_schema_is_a_startup_error(void **state)
{
    (void)state;
    char msg[600];
    /* kd_schema without its version column */
    assert_int_equal(open_in_schema("nover", "CREATE TABLE kd_schema (v integer)", msg, sizeof msg),
                     KD_ERR_INVALID);
    assert_non_null(strstr(msg, ": schema: "));
    assert_non_null(strstr(msg, "version"));
    assert_null(strstr(msg, "password="));
    /* a kd_calls of another shape: creating version 1's indexes fails */
    assert_int_equal(open_in_schema("calls", "CREATE TABLE kd_calls (x integer)", msg, sizeof msg),
                     KD_ERR_INVALID);
    assert_non_null(strstr(msg, ": schema: "));
    /* the current version recorded, its tables missing: the statements cannot be prepared */
    char setup[160];
    snprintf(setup, sizeof setup,
             "CREATE TABLE kd_schema (version integer NOT NULL); INSERT INTO kd_schema VALUES (%d)",
             KD_LEDGER_SCHEMA_VERSION);
    assert_int_equal(open_in_schema("empty", setup, msg, sizeof msg), KD_ERR_INVALID);
    assert_non_null(strstr(msg, ": prepare: "));
    assert_non_null(strstr(msg, "does not exist"));
    /* an older version recorded, its tables missing: its migration fails, named */
    assert_int_equal(open_in_schema("old",
                                    "CREATE TABLE kd_schema (version integer NOT NULL); "
                                    "INSERT INTO kd_schema VALUES (2)",
                                    msg, sizeof msg),
                     KD_ERR_INVALID);
    assert_non_null(strstr(msg, ": schema: "));
    assert_non_null(strstr(msg, "kd_calls"));
}

/* The answer of a one-value query (as text), or "" when it returned no row. */
static void sql_value(const char *q, char *out, size_t len)
{
    PGconn *pg = PQconnectdb(base_url);
    assert_int_equal(PQstatus(pg), CONNECTION_OK);
    PGresult *r = PQexec(pg, q);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", q, PQresultErrorMessage(r));
    snprintf(out, len, "%s", PQntuples(r) ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    PQfinish(pg);
}

/* A ledger made by the previous release (schema version 2, rows in every state a running
 * fleet leaves) is migrated in place by the first new worker: version 3, the worker index
 * keyed by (worker, job_id) instead of (worker) alone, and every row still decides its
 * job's next delivery as before: a `done` one is produced again, an `accepted` one whose
 * worker is gone is followed, a `writing` one is ambiguous, a live one waits. */
static void test_version_2_ledger_migrates_in_place(void **state)
{
    (void)state;
    char up[96], q[2400], v[160];
    snprintf(up, sizeof up, "%s_v2", schema);
    snprintf(q, sizeof q, "CREATE SCHEMA %s", up);
    sql(q);
    /* the tables exactly as the previous release made them */
    const char *const *const old[] = {lg_schema_v1, lg_schema_v2};
    for (int i = 0; i < 2; i++)
        for (int k = 0; old[i][k]; k++) {
            snprintf(q, sizeof q, "SET search_path = %s; %s", up, old[i][k]);
            sql(q);
        }
    snprintf(q, sizeof q,
             "SET search_path = %s;"
             "CREATE TABLE kd_schema (version integer NOT NULL); INSERT INTO kd_schema VALUES (2);"
             "INSERT INTO kd_calls (job_id, state, attempt, worker, building_id, session_id,"
             " kone_session, outcome, kone_status, result, lease_until, expires_at) VALUES"
             " ('%s-m-done', 'done', 1, 'old/1', 'building:9990000951', 11, 's1', 'succeeded',"
             "  201, '\\x7b7d', now(), now() + interval '1 day'),"
             " ('%s-m-acc', 'accepted', 1, 'old/1', 'building:9990000951', 4343, 's1', NULL, NULL,"
             "  NULL, now() - interval '1 second', now() + interval '1 day'),"
             " ('%s-m-wri', 'writing', 2, 'old/1', 'building:9990000951', NULL, NULL, NULL, NULL,"
             "  NULL, now() - interval '1 second', now() + interval '1 day'),"
             " ('%s-m-live', 'writing', 1, 'old/2', 'building:9990000951', NULL, NULL, NULL, NULL,"
             "  NULL, now() + interval '1 hour', now() + interval '1 day')",
             up, schema, schema, schema, schema);
    sql(q);

    char url[1500];
    snprintf(url, sizeof url, "%s%coptions=-csearch_path%%3D%s", base_url,
             strchr(base_url, '?') ? '&' : '?', up);
    kd_config cfg;
    load_cfg(&cfg, url, "unknown", "15000");
    kd_ledger *l = NULL;
    kd_err err = {0};
    if (kd_ledger_open(&l, &cfg, "worker-new", NULL, &err))
        fail_msg("open: %s", err.msg);
    kd_config_free(&cfg);

    snprintf(q, sizeof q, "SELECT max(version) FROM %s.kd_schema", up);
    sql_value(q, v, sizeof v);
    assert_string_equal(v, "3");
    snprintf(q, sizeof q,
             "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes"
             " WHERE schemaname = '%s' AND tablename = 'kd_calls'",
             up);
    sql_value(q, v, sizeof v);
    assert_string_equal(v,
                        "kd_calls_expires_at,kd_calls_pkey,kd_calls_session,kd_calls_worker_job");

    kd_ledger_found f;
    kd_run done = mkrun("m-done", 1), acc = mkrun("m-acc", 2), wri = mkrun("m-wri", 3),
           live = mkrun("m-live", 2), fresh = mkrun("m-new", 1);
    assert_int_equal(claim(l, &done, &f), KD_LEDGER_DONE);
    assert_int_equal(f.kone_status, 201);
    assert_int_equal(claim(l, &acc, &f), KD_LEDGER_FOLLOW);
    assert_int_equal(f.session_id, 4343);
    assert_int_equal(claim(l, &wri, &f), KD_LEDGER_AMBIGUOUS);
    assert_int_equal(f.attempt, 2);
    assert_int_equal(claim(l, &live, NULL), KD_LEDGER_BUSY);
    /* the rows it took, and a new job, go on through the new index */
    assert_int_equal(claim(l, &fresh, NULL), KD_LEDGER_CALL);
    kd_ledger_accept(l, fresh.job.job_id, 5151, "s2");
    answer a1 = {0}, a2 = {0};
    acc.outcome = KD_OUTCOME_SUCCEEDED;
    fresh.outcome = KD_OUTCOME_SUCCEEDED;
    kd_ledger_done(l, &acc, "{}", 2, on_done, &a1);
    kd_ledger_done(l, &fresh, "{}", 2, on_done, &a2);
    settle(l);
    assert_true(a1.ok && a2.ok);
    snprintf(q, sizeof q,
             "SELECT string_agg(right(job_id, 5) || ':' || state || ':' || coalesce(session_id, 0),"
             " ',' ORDER BY job_id) FROM %s.kd_calls WHERE job_id LIKE '%%-m-acc' OR job_id LIKE"
             " '%%-m-new'",
             up);
    sql_value(q, v, sizeof v);
    assert_string_equal(v, "m-acc:done:4343,m-new:done:5151");
    kd_ledger_close(l);
    snprintf(q, sizeof q, "DROP SCHEMA %s CASCADE", up);
    sql(q);
}

/* The pid of the newest backend a ledger of this test opened (0 when none is found). */
static int newest_backend(void)
{
    PGconn *pg = PQconnectdb(base_url);
    assert_int_equal(PQstatus(pg), CONNECTION_OK);
    PGresult *r =
        PQexec(pg, "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND "
                   "application_name = 'kone-worker' ORDER BY backend_start DESC LIMIT 1");
    int pid = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                  ? (int)strtol(PQgetvalue(r, 0, 0), NULL, 10)
                  : 0;
    PQclear(r);
    PQfinish(pg);
    return pid;
}

/* A PostgreSQL backend that stops answering (a hung server; here its process is stopped):
 * the batch in flight is given up after ledger.timeout_ms and its claim fails (the job is
 * handed back), the ledger connects again by itself; at shutdown, statements it cannot get
 * answered within the drain's time are left, not waited for forever. */
static void test_unanswering_backend_times_out(void **state)
{
    (void)state;
    kd_ledger *l = open_ledger_timeout("worker-t", "unknown", "15000", "300");
    settle(l);
    int pid = newest_backend();
    assert_true(pid > 0);
    if (kill(pid, SIGSTOP) != 0) { /* the backend is another user's: nothing to stop */
        kd_ledger_close(l);
        skip();
    }
    kd_run run = mkrun("t1", 1);
    answer a = {0};
    kd_ledger_claim(l, &run, on_claim, &a);
    turn_until(l, &a.got, NULL);
    kill(pid, SIGCONT);
    assert_true(a.got);
    assert_int_equal(a.f.verdict, KD_LEDGER_FAILED);
    turn_until(l, NULL, l);
    assert_true(kd_ledger_up(l));
    assert_int_equal(claim(l, &run, NULL), KD_LEDGER_CALL);

    pid = newest_backend();
    assert_true(pid > 0);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    kd_ledger_release(l, &run, false);
    kd_ledger_drain(l, 200000);
    int left = kd_ledger_pending(l);
    kill(pid, SIGCONT);
    assert_true(left > 0); /* left: the next delivery meets the row as it is */
    kd_ledger_close(l);
}

/* A TCP relay to the stack's PostgreSQL, listening only once started: a database that comes
 * up after the worker. One connection at a time, bytes both ways (TLS passes through).
 * Muted, it takes a connection and answers nothing (a database whose packets are dropped)
 * until unmuted, when it closes that connection. */
typedef struct relay {
    int lfd, port, pg_port;
    atomic_int stop;       /* set by relay_stop, read by the relay thread */
    atomic_int mute;       /* set and cleared by the test */
    atomic_int muted_in;   /* connections taken while muted */
    atomic_int muted_gone; /* ... that their client closed */
    bool running;
    pthread_t th;
} relay;

static int tcp_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void *relay_run(void *arg)
{
    relay *r = arg;
    while (!atomic_load(&r->stop)) {
        struct pollfd lp = {r->lfd, POLLIN, 0};
        if (poll(&lp, 1, 100) <= 0)
            continue;
        int c = accept(r->lfd, NULL, NULL), u = -1;
        char buf[16384];
        if (c >= 0 && atomic_load(&r->mute)) {
            atomic_fetch_add(&r->muted_in, 1);
            while (atomic_load(&r->mute) && !atomic_load(&r->stop)) {
                struct pollfd p = {c, POLLIN, 0};
                if (poll(&p, 1, 50) > 0 && read(c, buf, sizeof buf) <= 0) {
                    atomic_fetch_add(&r->muted_gone, 1);
                    break;
                }
            }
            close(c);
            continue;
        }
        u = c >= 0 ? tcp_to(r->pg_port) : -1;
        while (c >= 0 && u >= 0 && !atomic_load(&r->stop)) {
            struct pollfd p[2] = {{c, POLLIN, 0}, {u, POLLIN, 0}};
            if (poll(p, 2, 100) <= 0)
                continue;
            int from = p[0].revents ? c : u, to = from == c ? u : c;
            ssize_t n = read(from, buf, sizeof buf);
            if (n <= 0 || write(to, buf, (size_t)n) != n)
                break;
        }
        if (c >= 0)
            close(c);
        if (u >= 0)
            close(u);
    }
    return NULL;
}

/* Binds r's socket to a free loopback port (r->port), not listening yet: a connection there is
 * refused until relay_start (the port held meanwhile, so nobody else takes it). */
static void relay_bind(relay *r)
{
    r->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t n = sizeof a;
    assert_int_equal(bind(r->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(r->lfd, (struct sockaddr *)&a, &n), 0);
    r->port = ntohs(a.sin_port);
}

static void relay_start(relay *r)
{
    assert_int_equal(listen(r->lfd, 4), 0);
    assert_int_equal(pthread_create(&r->th, NULL, relay_run, r), 0);
    r->running = true;
}

/* Stops the relay if it runs and closes its socket; a no-op the second time. The test's relay
 * is static and stopped again by the test's teardown: a failed assertion leaves the test
 * at once, and the thread must not outlive what it reads. */
static void relay_stop(relay *r)
{
    atomic_store(&r->stop, 1);
    if (r->running)
        pthread_join(r->th, NULL);
    r->running = false;
    if (r->lfd >= 0)
        close(r->lfd);
    r->lfd = -1;
}

static relay late_relay = {.lfd = -1};

static int stop_late_relay(void **state)
{
    (void)state;
    relay_stop(&late_relay);
    return 0;
}

/* A schema of the test's own, <schema>_<suffix>, in out: a ledger's fresh search path. */
static void new_schema(char *out, size_t len, const char *suffix)
{
    char q[300];
    snprintf(out, len, "%s_%s", schema, suffix);
    snprintf(q, sizeof q, "CREATE SCHEMA %s", out);
    sql(q);
}

/* A ledger of owner worker-late on search path `late`, through a fresh relay bound (not yet
 * listening) to a free port: its open finds nobody there. The URL is the stack's
 * (postgresql://user:pw@host:PORT/db?...) with the relay's port. */
static kd_ledger *open_through_relay(relay *rl, const char *late)
{
    const char *at = strrchr(base_url, '@'), *colon = at ? strchr(at, ':') : NULL;
    assert_non_null(colon);
    *rl = (relay){.lfd = -1, .pg_port = atoi(colon + 1)};
    relay_bind(rl);
    char url[1600];
    snprintf(url, sizeof url, "%.*s:%d%s%coptions=-csearch_path%%3D%s", (int)(colon - base_url),
             base_url, rl->port, colon + strcspn(colon, "/?"), strchr(base_url, '?') ? '&' : '?',
             late);
    kd_config cfg;
    load_cfg(&cfg, url, "unknown", "15000");
    kd_ledger *l = NULL;
    kd_err err = {0};
    int rc = kd_ledger_open(&l, &cfg, "worker-late", NULL, &err);
    kd_config_free(&cfg);
    if (rc)
        fail_msg("open: %s", err.msg);
    assert_non_null(l);
    return l;
}

/* PostgreSQL not answering when the worker starts (a failover, a restart, a database started
 * after the workers): the ledger opens without it, is not up, answers a claim FAILED (the job
 * goes back, never called unclaimed), and once PostgreSQL answers it connects by itself,
 * creates its schema there (the migration the open could not do) and claims. Once, the
 * worker exited at start (exit 2) and crash-looped until the database was back. */
static void test_unreachable_at_open_connects_later(void **state)
{
    (void)state;
    relay *rl = &late_relay;
    char late[80], q[300];
    new_schema(late, sizeof late, "late");
    kd_ledger *l = open_through_relay(rl, late);
    assert_false(kd_ledger_up(l));
    kd_run run = mkrun("late1", 1);
    answer a = {0};
    kd_ledger_claim(l, &run, on_claim, &a);
    assert_true(a.got);
    assert_int_equal(a.f.verdict, KD_LEDGER_FAILED); /* at once: nothing to claim with */
    kd_ledger_turn(l);
    assert_false(kd_ledger_up(l));

    relay_start(rl); /* PostgreSQL answers from now on */
    turn_until(l, NULL, l);
    assert_true(kd_ledger_up(l));
    char v[32];
    snprintf(q, sizeof q, "SELECT max(version) FROM %s.kd_schema", late);
    sql_value(q, v, sizeof v);
    assert_string_equal(v, "3"); /* migrated on that first connection */
    assert_int_equal(claim(l, &run, NULL), KD_LEDGER_CALL);
    snprintf(q, sizeof q, "SELECT count(*) FROM %s.kd_calls WHERE state = 'writing'", late);
    assert_int_equal(count_of(q), 1);
    kd_ledger_close(l);
    relay_stop(rl);

    /* the same late first connection meeting a schema newer than this worker's: refused as
     * the open would have refused it, and told (kd_ledger_fatal: the worker stops, exit 2) */
    snprintf(q, sizeof q, "UPDATE %s.kd_schema SET version = 99", late);
    sql(q);
    l = open_through_relay(rl, late);
    assert_null(kd_ledger_fatal(l));
    relay_start(rl);
    for (int i = 0; i < 5000 && !kd_ledger_fatal(l); i++) {
        kd_ledger_turn(l);
        usleep(1000);
    }
    assert_non_null(kd_ledger_fatal(l));
    assert_non_null(strstr(kd_ledger_fatal(l), "schema version 99"));
    assert_false(kd_ledger_up(l));
    kd_ledger_close(l);
    relay_stop(rl);
    snprintf(q, sizeof q, "DROP SCHEMA %s CASCADE", late);
    sql(q);
}

/* A database that takes the connection and then says nothing (its packets dropped: the
 * address of a failed-over primary, a partition). Reconnecting must not hold the worker's
 * loop: its acks, Kafka's reports and /healthz's heartbeat are all served by that loop. Once,
 * each attempt blocked kd_ledger_turn until libpq gave up (connect_timeout, 5 s here); now an
 * attempt runs on a thread of its own and the turns go on, the ledger down, until it ends. */
static void test_silent_database_does_not_hold_the_turn(void **state)
{
    (void)state;
    relay *rl = &late_relay;
    char late[80], q[300];
    new_schema(late, sizeof late, "silent");
    kd_ledger *l = open_through_relay(rl, late); /* refused at open: starts without it */
    atomic_store(&rl->mute, 1);
    relay_start(rl);
    for (int i = 0; i < 5000 && !atomic_load(&rl->muted_in); i++) {
        kd_ledger_turn(l);
        usleep(1000);
    }
    assert_int_equal(atomic_load(&rl->muted_in), 1); /* an attempt is waiting on the silence */
    usleep(300000);
    kd_ledger_turn(l);
    /* the turns came back while that attempt still waits: its connection is open */
    assert_int_equal(atomic_load(&rl->muted_gone), 0);
    assert_false(kd_ledger_up(l));
    kd_run run = mkrun("silent1", 1);
    answer a = {0};
    kd_ledger_claim(l, &run, on_claim, &a);
    assert_true(a.got);
    assert_int_equal(a.f.verdict, KD_LEDGER_FAILED); /* at once: no job is taken meanwhile */

    /* the loop sleeps on the attempt's eventfd (kd_ledger_wait_fd) and is woken when it ends */
    int fd = kd_ledger_wait_fd(l);
    assert_true(fd >= 0);
    struct pollfd pw = {fd, POLLIN, 0};
    assert_int_equal(poll(&pw, 1, 0), 0);
    atomic_store(&rl->mute, 0); /* the database answers again: the silent connection closes */
    assert_int_equal(poll(&pw, 1, 10000), 1);
    turn_until(l, NULL, l);
    assert_true(kd_ledger_up(l));
    assert_int_equal(claim(l, &run, NULL), KD_LEDGER_CALL);

    /* lost again, and closed (the worker stops) while the next attempt waits on the silence:
     * the close does not wait for it, and the attempt, left to end on its own, frees what it
     * holds (ASan's run of this test) */
    atomic_store(&rl->mute, 1);
    int pid = newest_backend();
    assert_true(pid > 0);
    snprintf(q, sizeof q, "SELECT pg_terminate_backend(%d)", pid);
    sql(q);
    kd_ledger_release(l, &run, false); /* a statement meets the loss */
    for (int i = 0; i < 5000 && atomic_load(&rl->muted_in) < 2; i++) {
        kd_ledger_turn(l);
        usleep(1000);
    }
    assert_int_equal(atomic_load(&rl->muted_in), 2);
    assert_false(kd_ledger_up(l));
    kd_ledger_close(l);
    assert_int_equal(atomic_load(&rl->muted_gone), 0); /* closed while the attempt waits */
    assert_int_equal(lg_attempts_live(), 1);
    relay_stop(rl); /* the silence ends: the attempt fails, and its thread ends and frees */
    for (int i = 0; i < 500 && lg_attempts_live(); i++)
        usleep(10000);
    assert_int_equal(lg_attempts_live(), 0);
    snprintf(q, sizeof q, "DROP SCHEMA %s CASCADE", late);
    sql(q);
}

/* The pid of a ledger backend waiting for a lock, 0 while there is none. */
static int lock_waiter(void)
{
    char v[32];
    sql_value("SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE application_name = "
              "'kone-worker' AND wait_event_type = 'Lock'",
              v, sizeof v);
    return atoi(v);
}

/* SIGSTOPs the ledger backend waiting for a lock: its pid, 0 while there is none, -1 when it
 * cannot be stopped (PostgreSQL runs as another user). */
static int stop_lock_waiter(void)
{
    int pid = lock_waiter();
    return pid > 0 && kill(pid, SIGSTOP) != 0 ? -1 : pid;
}

/* Waits (5 s at most) for every connection attempt's thread to end; asserts they did. */
static void wait_attempts_end(void)
{
    for (int i = 0; i < 500 && lg_attempts_live(); i++)
        usleep(10000);
    assert_int_equal(lg_attempts_live(), 0);
}

/* A session of the test's holding kd_calls locked (ROLLBACK lets it go): a ledger's prepares
 * wait for it. */
static PGconn *lock_kd_calls(void)
{
    PGconn *hold = PQconnectdb(base_url);
    assert_int_equal(PQstatus(hold), CONNECTION_OK);
    char q[300];
    snprintf(q, sizeof q, "BEGIN; LOCK TABLE %s.kd_calls IN ACCESS EXCLUSIVE MODE", schema);
    PGresult *r = PQexec(hold, q);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    return hold;
}

/* A backend that hangs in the set-up of a reconnect (stopped here while it waits for a lock:
 * statement_timeout cannot fire in it, and TCP is fine). Nothing of libpq's or PostgreSQL's
 * ends that attempt: the ledger gives up on it after connect_timeout + 2 x ledger.timeout_ms,
 * tries again and connects, while the first attempt's thread waits; once the backend goes on,
 * that thread ends and frees its connection. Once, the ledger waited for it for ever: down,
 * silent, the worker never ready again. */
static void test_hung_setup_is_given_up_on(void **state)
{
    (void)state;
    kd_ledger *l = open_ledger_timeout("worker-hung", "unknown", "15000", "2000");
    assert_true(kd_ledger_up(l));
    wait_attempts_end(); /* the open's thread ends just after it woke the open */
    PGconn *hold = lock_kd_calls();
    int pid = newest_backend();
    char q[80];
    snprintf(q, sizeof q, "SELECT pg_terminate_backend(%d)", pid);
    sql(q);
    kd_run run = mkrun("hung1", 1);
    kd_ledger_release(l, &run, false); /* a statement meets the loss */
    int stopped = 0;
    for (int i = 0; i < 5000 && !stopped; i++) {
        kd_ledger_turn(l);
        stopped = stop_lock_waiter(); /* its prepare waits for kd_calls: now it hangs there */
        usleep(1000);
    }
    if (stopped < 0) { /* the backend is another user's: nothing to stop */
        PQfinish(hold);
        kd_ledger_close(l);
        skip();
    }
    assert_true(stopped > 0);
    PQclear(PQexec(hold, "ROLLBACK")); /* the lock goes to the stopped backend's wait */
    for (int i = 0; i < 15000 && !kd_ledger_up(l); i++) {
        kd_ledger_turn(l);
        usleep(1000);
    }
    bool up = kd_ledger_up(l), waiting = lg_attempts_live() == 1;
    kill(stopped, SIGCONT);
    PQfinish(hold);
    assert_true(up);      /* a second attempt connected ... */
    assert_true(waiting); /* ... while the first one's backend was still stopped */
    assert_int_equal(claim(l, &run, NULL), KD_LEDGER_CALL);
    wait_attempts_end(); /* the given-up thread ended (and freed) */
    kd_ledger_close(l);
}

/* kd_ledger_open on a thread of the test's (it blocks while it connects): the configuration
 * is loaded before (the environment is not touched while the test's thread connects), and the
 * thread asserts nothing (cmocka's failures jump on the test's own thread only). */
typedef struct opener {
    kd_config cfg;
    kd_ledger *l;
    int rc;
} opener;

static void *open_thread(void *arg)
{
    opener *o = arg;
    kd_err err = {0};
    o->rc = kd_ledger_open(&o->l, &o->cfg, "worker-hung-open", NULL, &err);
    return NULL;
}

/* The same hang in the first connection's set-up, while the worker starts: the open gives up
 * on it after the same deadline and the worker starts without its ledger (not up), which then
 * connects by itself. Once, the start waited for that backend for ever. Whatever happens, the
 * stopped backend is continued before any assertion (a stopped backend holds its lock, a
 * connection slot and the schema's drop). */
static void test_hung_setup_at_open_starts_without(void **state)
{
    (void)state;
    assert_int_equal(lg_attempts_live(), 0);
    PGconn *hold = lock_kd_calls();
    opener o = {0};
    setenv("KD_LEDGER_TIMEOUT_MS", "2000", 1);
    load_cfg(&o.cfg, test_url, "unknown", "15000");
    unsetenv("KD_LEDGER_TIMEOUT_MS");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, open_thread, &o), 0);
    int stopped = 0;
    for (int i = 0; i < 5000 && !stopped; i++) {
        stopped = stop_lock_waiter(); /* the open's prepare waits for kd_calls: it hangs there */
        usleep(1000);
    }
    PQclear(PQexec(hold, "ROLLBACK"));
    PQfinish(hold);
    /* the open returns after 6 s (connect_timeout 2 s + 2 x 2 s); 30 s: it never will */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    bool opened = pthread_timedjoin_np(th, NULL, &until) == 0;
    kd_ledger *l = opened ? o.l : NULL;
    bool up_at_open = l && kd_ledger_up(l);
    for (int i = 0; l && i < 10000 && !kd_ledger_up(l); i++) {
        kd_ledger_turn(l);
        usleep(1000);
    }
    bool up = l && kd_ledger_up(l), waiting = lg_attempts_live() == 1;
    if (stopped > 0)
        kill(stopped, SIGCONT);
    if (!opened)
        pthread_join(th, NULL); /* the backend goes on: so does the open */
    kd_config_free(&o.cfg);
    if (stopped < 0) {
        kd_ledger_close(o.l);
        skip();
    }
    assert_true(stopped > 0);
    assert_true(opened);
    assert_int_equal(o.rc, 0);
    assert_false(up_at_open); /* started without it ... */
    assert_true(up);          /* ... and connected later ... */
    assert_true(waiting);     /* ... while the first backend was still stopped */
    kd_run run = mkrun("hungopen1", 1);
    assert_int_equal(claim(l, &run, NULL), KD_LEDGER_CALL);
    wait_attempts_end();
    kd_ledger_close(l);
}

static void test_mask_url(void **state)
{
    (void)state;
    char out[256];
    kd_ledger_mask_url("postgresql://u:pw@h:1/db?sslmode=verify-full", out, sizeof out);
    assert_string_equal(out, "postgresql://u:***@h:1/db?sslmode=verify-full");
    kd_ledger_mask_url("postgresql://u@h/db?password=pw&sslmode=require", out, sizeof out);
    assert_string_equal(out, "postgresql://u@h/db?password=***&sslmode=require");
    kd_ledger_mask_url("postgresql://h/db", out, sizeof out);
    assert_string_equal(out, "postgresql://h/db");
}

int main(void)
{
    const char *file = getenv("KD_LEDGER_URL_FILE");
    FILE *f = file ? fopen(file, "r") : NULL;
    if (!f || !fgets(base_url, sizeof base_url, f)) {
        fprintf(stderr, "ledger_check: KD_LEDGER_URL_FILE (the dev stack's) is not readable\n");
        return 1;
    }
    fclose(f);
    base_url[strcspn(base_url, "\r\n")] = '\0';
    snprintf(schema, sizeof schema, "kdtest_%d", (int)getpid());
    char q[128];
    snprintf(q, sizeof q, "CREATE SCHEMA %s", schema);
    sql(q);
    snprintf(test_url, sizeof test_url, "%s%coptions=-csearch_path%%3D%s", base_url,
             strchr(base_url, '?') ? '&' : '?', schema);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mask_url),
        cmocka_unit_test(test_claim_then_busy_then_done),
        cmocka_unit_test(test_accepted_is_followed_after_handover),
        cmocka_unit_test(test_quiet_turns_and_a_full_pipeline),
        cmocka_unit_test(test_unanswered_write_is_ambiguous),
        cmocka_unit_test(test_lease_runs_out_when_a_worker_dies),
        cmocka_unit_test(test_retry_and_release_let_the_next_attempt_call),
        cmocka_unit_test(test_new_job_claimed_twice_at_once_and_replayed),
        cmocka_unit_test(test_accept_then_done_in_any_order),
        cmocka_unit_test(test_batched_statements_answer_each_job),
        cmocka_unit_test(test_job_ids_needing_escapes),
        cmocka_unit_test(test_bad_urls_and_newer_schema),
        cmocka_unit_test(test_answers_at_close),
        cmocka_unit_test(test_expired_rows_are_purged),
        cmocka_unit_test(test_session_killed_then_reconnect),
        cmocka_unit_test(test_statement_refused_every_time_is_dropped),
        cmocka_unit_test(test_failure_before_a_lost_link_is_not_the_next_batchs),
        cmocka_unit_test(test_longest_timeout_opens),
        cmocka_unit_test(test_broken_schema_is_a_startup_error),
        cmocka_unit_test(test_version_2_ledger_migrates_in_place),
        cmocka_unit_test(test_unanswering_backend_times_out),
        cmocka_unit_test_teardown(test_unreachable_at_open_connects_later, stop_late_relay),
        cmocka_unit_test_teardown(test_silent_database_does_not_hold_the_turn, stop_late_relay),
        cmocka_unit_test(test_hung_setup_is_given_up_on),
        cmocka_unit_test(test_hung_setup_at_open_starts_without),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    snprintf(q, sizeof q, "DROP SCHEMA %s CASCADE", schema);
    sql(q);
    return rc;
}
