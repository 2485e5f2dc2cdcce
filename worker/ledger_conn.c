/* ledger_conn.c: the ledger's connection to PostgreSQL made and set up (the schema, the
 * prepared statements, pipeline mode) on a thread of its own.
 *
 * Why a thread: libpq's connect (PQconnectdbParams) and the set-up statements block. Each
 * reconnect attempt ran on the main loop, and a PostgreSQL whose packets are dropped (a
 * failed-over primary's address, a partitioned network) held the loop for up to
 * connect_timeout (ledger.timeout_ms) per attempt: no acks, no Kafka reports, no metrics turn,
 * /healthz stale when the timeout is long. Now the loop starts an attempt (lg_attempt_start)
 * and goes on; the attempt's eventfd wakes it when the connection is ready or has failed
 * (lg_attempt_take). At start the worker waits on that eventfd, up to a deadline: a backend
 * that hangs in the set-up cannot hold the start either.
 *
 * The attempt copies what it reads of the ledger (URL, timeout, whether to migrate) and holds
 * two references (the ledger's, the thread's): a ledger closed while an attempt runs
 * (shutdown), or one that gave up waiting for it (try_reconnect's deadline: a backend that
 * hangs in the set-up, where no timeout of libpq's or PostgreSQL's applies), drops its own
 * and the thread frees the attempt, and its connection, when it ends. At most
 * LG_ATTEMPTS_MAX attempts live at once, the abandoned ones included: a database that hangs
 * every connection cannot pile up threads.
 */
#include "ledger_int.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kd_log.h"
#include "kd_str.h"

/* One connection to make: what it needs in, the connection (or why not) out. */
typedef struct lg_conn {
    const char *url;    /* with sslmode */
    const char *masked; /* the URL with its password masked, for errors */
    int64_t timeout_ms; /* connect_timeout (at least 2 s) and statement_timeout */
    bool migrate;       /* create or migrate the schema (the ledger's first connection) */
    PGconn *pg;         /* out: set up, in pipeline mode, non-blocking */
    kd_err err;         /* out: KD_ERR_IO when waiting mends it, KD_ERR_INVALID when not */
    char state[6];      /* the SQLSTATE of the set-up statement that failed */
} lg_conn;

static void note_state(lg_conn *c, const PGresult *r)
{
    const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    kd_str_copy(c->state, sizeof c->state, code ? code : "");
}

static int exec_ok(lg_conn *c, const char *sql, char *why, size_t len)
{
    PGresult *r = PQexec(c->pg, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (rc) {
        kd_str_copy(why, len, PQresultErrorMessage(r));
        note_state(c, r);
    }
    PQclear(r);
    return rc;
}

/* A set-up failure that waiting mends: the connection lost (no SQLSTATE), or PostgreSQL's
 * classes 08 (connection), 53 (resources), 57 (shut down, statement or lock timeout), 40
 * (serialization, deadlock), 55P03 (lock not available) and 25006 (a read-only standby, as
 * during a failover). Anything else (a table not as this worker made it, permissions) needs
 * an operator. */
static bool transient_state(const lg_conn *c)
{
    const char *s = c->state;
    return PQstatus(c->pg) != CONNECTION_OK || !s[0] || !strncmp(s, "08", 2) ||
           !strncmp(s, "53", 2) || !strncmp(s, "57", 2) || !strncmp(s, "40", 2) ||
           !strcmp(s, "55P03") || !strcmp(s, "25006");
}

/* Creates or migrates the schema; refuses a newer one. */
static int migrate(lg_conn *c)
{
    char why[512] = "";
    if (exec_ok(c, "BEGIN", why, sizeof why) ||
        exec_ok(c, "SELECT pg_advisory_xact_lock(4242424242)", why, sizeof why) ||
        exec_ok(c, "CREATE TABLE IF NOT EXISTS kd_schema (version integer NOT NULL)", why,
                sizeof why))
        goto fail;
    PGresult *r = PQexec(c->pg, "SELECT max(version) FROM kd_schema");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        kd_str_copy(why, sizeof why, PQresultErrorMessage(r));
        note_state(c, r);
        PQclear(r);
        goto fail;
    }
    int have = PQgetisnull(r, 0, 0) ? 0 : (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (have > KD_LEDGER_SCHEMA_VERSION) {
        PQclear(PQexec(c->pg, "ROLLBACK"));
        return kd_err_set(&c->err, KD_ERR_INVALID,
                          "ledger %s has schema version %d, newer than this worker's %d: "
                          "refusing to start (run the newer worker, or roll the ledger back)",
                          c->masked, have, KD_LEDGER_SCHEMA_VERSION);
    }
    /* Each version's DDL in turn, from the one after `have`, each recorded as it is done. */
    static const char *const *const ddl[] = {lg_schema_v1, lg_schema_v2, lg_schema_v3};
    _Static_assert(sizeof ddl / sizeof ddl[0] == KD_LEDGER_SCHEMA_VERSION, "a DDL per version");
    for (int v = (have > 0 ? have : 0) + 1; v <= KD_LEDGER_SCHEMA_VERSION; v++) {
        char mark[64];
        snprintf(mark, sizeof mark, "INSERT INTO kd_schema (version) VALUES (%d)", v);
        for (int i = 0; ddl[v - 1][i]; i++)
            if (exec_ok(c, ddl[v - 1][i], why, sizeof why))
                goto fail;
        if (exec_ok(c, "DELETE FROM kd_schema", why, sizeof why) ||
            exec_ok(c, mark, why, sizeof why))
            goto fail;
        if (v == 1)
            kd_info("ledger: schema version 1 created");
        else
            kd_info("ledger: schema migrated from version %d to %d", v - 1, v);
    }
    if (exec_ok(c, "COMMIT", why, sizeof why))
        goto fail;
    return 0;
fail:
    PQclear(PQexec(c->pg, "ROLLBACK"));
    return kd_err_set(&c->err, transient_state(c) ? KD_ERR_IO : KD_ERR_INVALID,
                      "ledger %s: schema: %s", c->masked, why);
}

static int prepare_all(lg_conn *c, char *why, size_t len)
{
    for (int k = 0; k < OP_N; k++) {
        PGresult *r = PQprepare(c->pg, lg_op_stmt[k], lg_op_sql[k], 0, NULL);
        int bad = PQresultStatus(r) != PGRES_COMMAND_OK;
        if (bad) {
            kd_str_copy(why, len, PQresultErrorMessage(r));
            note_state(c, r);
        }
        PQclear(r);
        if (bad)
            return -1;
    }
    return 0;
}

/* Opens the connection (bounded by ledger.timeout_ms, at least 2 s): PostgreSQL unreachable,
 * or refusing this role or password, fails here. */
static int open_pg(lg_conn *c)
{
    char ct[16];
    int64_t s = (c->timeout_ms + 999) / 1000;
    snprintf(ct, sizeof ct, "%lld", (long long)(s < 2 ? 2 : s));
    /* tcp_user_timeout: a partition after the handshake (what is sent never acknowledged)
     * ends the connection after ledger.timeout_ms, in the set-up as in a batch */
    char tu[24];
    snprintf(tu, sizeof tu, "%lld", (long long)c->timeout_ms);
    const char *keys[] = {"dbname", "connect_timeout", "tcp_user_timeout", "application_name",
                          NULL};
    const char *vals[] = {c->url, ct, tu, "kone-worker", NULL};
    c->pg = PQconnectdbParams(keys, vals, 1);
    if (!c->pg)
        /* GCOVR_EXCL_START: PQconnectdbParams returns NULL only when allocation fails */
        return kd_err_set(&c->err, KD_ERR_NOMEM, "ledger: out of memory");
    /* GCOVR_EXCL_STOP */
    if (PQstatus(c->pg) != CONNECTION_OK) {
        char why[512];
        return kd_err_set(&c->err, KD_ERR_IO, "ledger %s: cannot connect: %s", c->masked,
                          lg_pg_msg(c->pg, why, sizeof why));
    }
    return 0;
}

/* On the connection open_pg made: sets the statement timeout, migrates the schema if asked,
 * prepares the statements and enters pipeline mode. */
static int setup_pg(lg_conn *c)
{
    char why[512];
    char set[128]; /* 64 cut "warning" short for a timeout of 5 digits or more */
    /* statement_timeout bounds a hung statement; NOTICEs (IF NOT EXISTS) stay out of logs */
    snprintf(set, sizeof set, "SET statement_timeout = %lld; SET client_min_messages = warning",
             (long long)c->timeout_ms);
    if (exec_ok(c, set, why, sizeof why))
        return kd_err_set(&c->err, transient_state(c) ? KD_ERR_IO : KD_ERR_INVALID, "ledger %s: %s",
                          c->masked, why);
    if (c->migrate && migrate(c))
        return c->err.code;
    if (prepare_all(c, why, sizeof why))
        return kd_err_set(&c->err, transient_state(c) ? KD_ERR_IO : KD_ERR_INVALID,
                          "ledger %s: prepare: %s", c->masked, why);
    if (!PQenterPipelineMode(c->pg) || PQsetnonblocking(c->pg, 1))
        return kd_err_set(&c->err, KD_ERR_IO, "ledger %s: pipeline mode: %s", c->masked,
                          lg_pg_msg(c->pg, why, sizeof why));
    return 0;
}

/* Blocking: 0, or c->err. */
static int lg_connect(lg_conn *c)
{
    kd_err_clear(&c->err);
    if (open_pg(c) || setup_pg(c)) {
        PQfinish(c->pg);
        c->pg = NULL;
        return c->err.code ? c->err.code : KD_ERR_IO;
    }
    return 0;
}

/* ------------------------------------------------------------------ the attempt's thread */

static atomic_int live; /* attempts whose thread has not ended */

int lg_attempts_live(void)
{
    return atomic_load(&live);
}

struct lg_attempt {
    lg_conn c;        /* its url and masked point into the attempt's own copies */
    char *url;        /* copied: the ledger may be closed while the attempt runs */
    char masked[512]; /* the same */
    int fd;           /* eventfd: written once the attempt ended */
    atomic_bool done; /* c holds the outcome */
    atomic_int refs;  /* the ledger's and the thread's */
};

static void unref(lg_attempt *a)
{
    if (atomic_fetch_sub(&a->refs, 1) != 1)
        return;
    PQfinish(a->c.pg); /* not taken: the ledger was closed meanwhile */
    if (a->fd >= 0)
        close(a->fd);
    free(a->url);
    free(a);
}

static void *attempt_thread(void *arg)
{
    pthread_setname_np(pthread_self(), "ledger-connect"); /* perf and top tell threads apart */
    lg_attempt *a = arg;
    lg_connect(&a->c);
    atomic_store(&a->done, true);
    uint64_t one = 1;
    ssize_t n = write(a->fd, &one, sizeof one); /* one write of 1 to an eventfd cannot fail */
    (void)n;
    unref(a);
    atomic_fetch_sub(&live, 1);
    return NULL;
}

lg_attempt *lg_attempt_start(const kd_ledger *l, kd_err *err)
{
    if (atomic_load(&live) >= LG_ATTEMPTS_MAX) {
        kd_err_set(err, KD_ERR_IO,
                   "ledger %s: %d connection attempts still wait for PostgreSQL; no new one",
                   l->masked, LG_ATTEMPTS_MAX);
        return NULL;
    }
    lg_attempt *a = calloc(1, sizeof *a);
    if (!a || !(a->url = strdup(l->url))) {
        /* GCOVR_EXCL_START: allocation failure */
        free(a);
        kd_err_set(err, KD_ERR_NOMEM, "ledger: out of memory");
        return NULL;
        /* GCOVR_EXCL_STOP */
    }
    kd_str_copy(a->masked, sizeof a->masked, l->masked);
    a->c = (lg_conn){
        .url = a->url, .masked = a->masked, .timeout_ms = l->timeout_ms, .migrate = !l->migrated};
    atomic_init(&a->done, false);
    atomic_init(&a->refs, 2);
    a->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int e = a->fd < 0 ? errno : 0;
    if (!e) {
        /* the thread takes no asynchronous signal: SIGTERM and SIGINT stay the main loop's
         * (a fault of its own, SIGSEGV and the like, still reaches it: ASan reports it) */
        sigset_t all, old;
        sigfillset(&all);
        const int own[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS};
        for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
            sigdelset(&all, own[i]);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pthread_t t;
        atomic_fetch_add(&live, 1);
        if (!(e = pthread_create(&t, NULL, attempt_thread, a)))
            pthread_detach(t); /* nobody waits for a database that does not answer */
        else
            atomic_fetch_sub(&live, 1); /* GCOVR_EXCL_LINE: resources exhausted */
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (e) {
        /* GCOVR_EXCL_START: eventfd and pthread_create fail only when resources run out */
        kd_err_set(err, KD_ERR_INTERNAL, "ledger %s: cannot start connecting: %s", a->masked,
                   kd_strerror(e));
        atomic_store(&a->refs, 1);
        unref(a);
        return NULL;
        /* GCOVR_EXCL_STOP */
    }
    return a;
}

int lg_attempt_fd(const lg_attempt *a)
{
    return a->fd;
}

bool lg_attempt_done(lg_attempt *a)
{
    return atomic_load(&a->done);
}

PGconn *lg_attempt_take(lg_attempt *a, kd_err *err)
{
    PGconn *pg = a->c.pg;
    a->c.pg = NULL;
    if (err)
        *err = a->c.err;
    unref(a);
    return pg;
}

void lg_attempt_abandon(lg_attempt *a)
{
    if (a)
        unref(a);
}
