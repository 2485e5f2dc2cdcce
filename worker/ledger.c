/* ledger.c: the call ledger in PostgreSQL (see ledger.h for the contract; ledger_int.h for how
 * its files share the work): open and close, the connection and the schema, queueing, the turn.
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
 * Connections are made on a thread of their own (ledger_conn.c): the first one is waited for
 * while the ledger opens (the worker starts on what it finds, within a deadline), the later
 * ones are not, so that a database that does not answer never holds the main loop. Once
 * made, the connection is non-blocking; a batch that takes longer than ledger.timeout_ms
 * counts as a lost connection.
 */
#include "ledger_int.h"

#include <errno.h>

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "kd_log.h"
#include "kd_list.h"
#include "kd_str.h"

/* ------------------------------------------------------------------ helpers */

void lg_hook_up(kd_ledger *l, bool up)
{
    if (l->up != up && l->hooks.up)
        l->hooks.up(up);
    l->up = up;
}

void lg_hook_op(kd_ledger *l, op_kind k, bool ok)
{
    if (l->hooks.op && k != OP_COUNT)
        l->hooks.op(lg_op_name[k], ok);
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
        kd_str_copy(tmp, sizeof tmp, url);
    char *pw = strstr(tmp, "password=");
    if (pw) {
        char *end = strchr(pw, '&');
        char rest[1024];
        kd_str_copy(rest, sizeof rest, end ? end : "");
        snprintf(pw, sizeof tmp - (size_t)(pw - tmp), "password=***%s", rest);
    }
    kd_str_copy(out, len, tmp);
}

/* libpq's own message without its trailing newline. */
const char *lg_pg_msg(PGconn *pg, char *buf, size_t len)
{
    kd_str_copy(buf, len, pg ? PQerrorMessage(pg) : "no connection");
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return buf;
}

void lg_push(op_list *q, op *o)
{
    KD_SLIST_APPEND(q->head, q->tail, o, next);
    q->n++;
}

op *lg_pop(op_list *q)
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

op *lg_new_op(kd_ledger *l, op_kind kind, const kd_run *run)
{
    op *o;
    if (l)
        KD_SPARE_TAKE(l->spare, l->n_spare, next, o);
    else /* a NULL ledger: the op is only answered and freed */
        o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->kind = kind;
    if (run) {
        kd_str_copy(o->job_id, sizeof o->job_id, run->job.job_id);
        kd_str_copy(o->building, sizeof o->building, run->job.building_id);
        o->attempt = run->attempt;
        o->replayed = run->replayed;
        o->session_id = run->session_id;
    }
    return o;
}

void lg_free_op(kd_ledger *l, op *o)
{
    if (!o)
        return;
    for (op *c = o->next_taken, *n; c; c = n) {
        n = c->next;
        lg_free_op(l, c);
    }
    free(o->result);
    if (l)
        KD_SPARE_GIVE(l->spare, l->n_spare, LG_SPARE, next, o);
    else
        free(o);
}

kd_outcome lg_outcome_from(const char *s)
{
    for (int o = KD_OUTCOME_SUCCEEDED; o <= KD_OUTCOME_UNKNOWN; o++)
        if (!strcmp(s, kd_outcome_name((kd_outcome)o)))
            return (kd_outcome)o;
    return KD_OUTCOME_NONE;
}

/* ------------------------------------------------------------------ connection */

/* The connection is gone (or hung): the batch in flight failed, the statements queued stay
 * (claims excepted: answered FAILED now, with a release queued behind them). */
void lg_lost(kd_ledger *l, const char *why)
{
    if (l->up || l->pg)
        kd_warn("ledger %s lost (%s); no new job is taken until it answers again; %d "
                "statements wait",
                l->masked, why, l->queue.n + l->batch.n);
    if (l->pg)
        PQfinish(l->pg);
    l->pg = NULL;
    l->reading = NULL;
    l->head_failed = false;
    l->n_batches = 0;
    l->head_batch = l->next_batch;
    lg_hook_up(l, false);
    /* put the batch back in front of the queue, in order; claims fail now */
    op_list keep = {0};
    op *o;
    while ((o = lg_pop(&l->batch)))
        lg_push(&keep, o);
    while ((o = lg_pop(&l->queue)))
        lg_push(&keep, o);
    while ((o = lg_pop(&keep))) {
        if (o->kind == OP_CLAIM || o->kind == OP_ROUTE || o->kind == OP_CANCEL_POLL ||
            o->kind == OP_CANCEL_TAKE)
            lg_finish_op(l, o, false);
        else
            lg_push(&l->queue, o);
    }
    l->backoff_us = l->backoff_us ? l->backoff_us * 2 : LEDGER_BACKOFF_MIN_US;
    if (l->backoff_us > LEDGER_BACKOFF_MAX_US)
        l->backoff_us = LEDGER_BACKOFF_MAX_US;
    l->reconnect_at = kd_mono_us() + l->backoff_us;
}

/* How long an attempt may take: connect_timeout, then the set-up's statements, each bounded by
 * statement_timeout unless the backend itself hangs (stopped, swapped out), which no timeout
 * of libpq's or PostgreSQL's ends. */
static int64_t attempt_deadline_us(const kd_ledger *l)
{
    return (l->timeout_ms < 2000 ? 2000 : l->timeout_ms) * 1000 + 2 * l->timeout_ms * 1000;
}

/* The first connection, waited for (on the attempt's thread, so that the wait is bounded by
 * attempt_deadline_us even when a backend hangs in the set-up). */
static int connect_at_open(kd_ledger *l, kd_err *why)
{
    lg_attempt *a = lg_attempt_start(l, why);
    if (!a)
        return why->code ? why->code : KD_ERR_IO; /* GCOVR_EXCL_LINE: no thread to be had */
    int64_t t0 = kd_mono_us(), until = t0 + attempt_deadline_us(l);
    struct pollfd p = {lg_attempt_fd(a), POLLIN, 0};
    while (!lg_attempt_done(a)) {
        int64_t left_ms = (until - kd_mono_us()) / 1000;
        if (left_ms <= 0) {
            lg_attempt_abandon(a); /* its thread frees it when PostgreSQL lets it go */
            return kd_err_set(why, KD_ERR_IO,
                              "ledger %s: connecting got no answer in %lld ms; given up on",
                              l->masked, (long long)((kd_mono_us() - t0) / 1000));
        }
        (void)poll(&p, 1, left_ms > 1000 ? 1000 : (int)left_ms);
    }
    l->pg = lg_attempt_take(a, why);
    return l->pg ? 0 : why->code ? why->code : KD_ERR_IO;
}

/* Reconnecting: an attempt (ledger_conn.c) runs on a thread of its own once the backoff
 * is over; the turns meanwhile go on without the ledger, and the attempt's eventfd
 * (kd_ledger_wait_fd) wakes the loop when it ends. */
static void try_reconnect(kd_ledger *l)
{
    if (l->pg || l->fatal[0])
        return; /* fatal: the worker is stopping on it; no more attempts, no more errors */
    kd_err err = {0};
    bool first = !l->migrated; /* PostgreSQL did not answer when the ledger opened */
    int64_t now = kd_mono_us();
    if (!l->attempt) {
        if (now < l->reconnect_at)
            return;
        if (!(l->attempt = lg_attempt_start(l, &err)))
            goto failed; /* attempts given up on still wait: no more threads */
        l->attempt_at = now;
        return;
    }
    if (!lg_attempt_done(l->attempt)) {
        if (now - l->attempt_at < attempt_deadline_us(l))
            return;
        lg_attempt_abandon(l->attempt); /* its thread frees it when PostgreSQL lets it go */
        l->attempt = NULL;
        kd_err_set(&err, KD_ERR_IO,
                   "ledger %s: a connection attempt got no answer in %lld ms; given up on",
                   l->masked, (long long)((now - l->attempt_at) / 1000));
        goto failed;
    }
    l->pg = lg_attempt_take(l->attempt, &err);
    l->attempt = NULL;
    if (!l->pg) {
        if (first && err.code == KD_ERR_INVALID) {
            /* what the open would have refused (a newer or broken schema), found late: the
             * worker stops as it would have at start (kd_ledger_fatal) */
            kd_str_copy(l->fatal, sizeof l->fatal, err.msg);
            kd_error("%s", err.msg);
            return;
        }
        goto failed;
    }
    l->migrated = true;
    if (first)
        kd_info("ledger %s: connected; schema version %d, owner %s; %d statements to send",
                l->masked, KD_LEDGER_SCHEMA_VERSION, l->owner, l->queue.n);
    else
        kd_info("ledger %s: connected again; %d statements to send", l->masked, l->queue.n);
    l->backoff_us = 0;
    lg_hook_up(l, true);
    return;
failed:
    l->backoff_us =
        l->backoff_us * 2 > LEDGER_BACKOFF_MAX_US ? LEDGER_BACKOFF_MAX_US : l->backoff_us * 2;
    l->reconnect_at = kd_mono_us() + l->backoff_us;
    kd_warn("%s; retrying in %lld ms", err.msg, (long long)(l->backoff_us / 1000));
}

/* ------------------------------------------------------------------ open / close */

/* What no retry mends, found before connecting: a URL libpq cannot parse, and TLS files it
 * names that cannot be read (as a CA file of RabbitMQ's or Kafka's: a start-up error). */
static int check_url(const kd_ledger *l, kd_err *err)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(l->url, &msg);
    if (!opts) {
        /* libpq quotes the part it could not parse, which may be the password (a bad
         * percent-encoding in it): its words only when they hold no part of it */
        const char *scheme = strstr(l->url, "://");
        const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
        const char *colon =
            scheme ? memchr(scheme + 3, ':', at ? (size_t)(at - scheme - 3) : 0) : NULL;
        size_t pw = colon ? (size_t)(at - colon - 1) : 0;
        bool leaks = false;
        for (const char *m = msg; m && pw && *m && !leaks; m++)
            leaks = !strncmp(m, colon + 1, pw < 4 ? pw : 4);
        kd_err_set(err, KD_ERR_INVALID, "ledger.url %s: %s", l->masked,
                   !msg    ? "out of memory"
                   : leaks ? "libpq cannot parse it"
                           : msg);
        PQfreemem(msg);
        return err ? err->code : KD_ERR_INVALID;
    }
    int rc = 0;
    for (PQconninfoOption *o = opts; o->keyword && !rc; o++)
        if (o->val && o->val[0] &&
            (!strcmp(o->keyword, "sslrootcert") || !strcmp(o->keyword, "sslcert") ||
             !strcmp(o->keyword, "sslkey") || !strcmp(o->keyword, "sslcrl")) &&
            strcmp(o->val, "system") != 0 && access(o->val, R_OK) != 0)
            rc = kd_err_set(err, KD_ERR_INVALID, "ledger.url: %s: cannot read %s: %s", o->keyword,
                            o->val, kd_strerror(errno));
    PQconninfoFree(opts);
    return rc;
}

int kd_ledger_open(kd_ledger **out, const kd_config *cfg, const char *worker_id,
                   const kd_ledger_hooks *hooks, kd_err *err)
{
    *out = NULL;
    const char *url = kd_cfg_str(cfg, KD_CFG_LEDGER_URL);
    if (!strcmp(url, "none"))
        return 0;
    if (strncmp(url, "postgresql://", 13) != 0 && strncmp(url, "postgres://", 11) != 0)
        return kd_err_set(err, KD_ERR_INVALID,
                          "ledger.url: expected postgresql://user@host:port/db?... or none, "
                          "got a value starting '%.12s'",
                          url);
    const char *amb = kd_cfg_str(cfg, KD_CFG_LEDGER_AMBIGUOUS); /* unknown|retry */
    kd_ledger *l = calloc(1, sizeof *l);
    /* TLS with the server's certificate and host name verified unless the URL says
     * otherwise (libpq's own default, prefer, verifies nothing). */
    const char *mode = strstr(url, "sslmode=");
    size_t n = strlen(url) + 32;
    if (l && (l->url = malloc(n)))
        snprintf(l->url, n, "%s%s", url,
                 mode               ? ""
                 : strchr(url, '?') ? "&sslmode=verify-full"
                                    : "?sslmode=verify-full");
    if (!l || !l->url) {
        /* GCOVR_EXCL_START: allocation failure */
        free(l);
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        /* GCOVR_EXCL_STOP */
    }
    if (mode && strncmp(mode + 8, "verify-full", 11) != 0)
        kd_warn("ledger.url sets sslmode=%.*s: the ledger's certificate or host name is NOT "
                "verified (verify-full is the default; docs/configuration.md)",
                (int)strcspn(mode + 8, "&"), mode + 8);
    if (hooks)
        l->hooks = *hooks;
    l->retry_ambiguous = !strcmp(amb, "retry");
    kd_ledger_mask_url(l->url, l->masked, sizeof l->masked);
    l->lease_ms = kd_cfg_int(cfg, KD_CFG_LEDGER_LEASE_MS);
    l->retention_h = kd_cfg_int(cfg, KD_CFG_LEDGER_RETENTION_H);
    l->timeout_ms = kd_cfg_int(cfg, KD_CFG_LEDGER_TIMEOUT_MS);
    /* The owner is this process's, not only worker.id's: two workers given the same id
     * must not renew each other's leases. */
    unsigned nonce = (unsigned)(kd_now_us() ^ ((int64_t)getpid() << 16));
    snprintf(l->owner, sizeof l->owner, "%.150s/%08x", worker_id, nonce);
    if (check_url(l, err))
        goto fail;
    int64_t now = kd_mono_us();
    l->next_renew = now; /* say this worker is alive at once (kd_workers) */
    l->next_purge = now; /* count rows at once */
    /* At start the worker waits for its ledger: its first connection, and the schema it
     * checks or migrates, decide whether it may start. */
    kd_err why = {0};
    int rc = connect_at_open(l, &why);
    if (rc == KD_ERR_INVALID) {
        kd_err_set(err, why.code, "%s", why.msg);
        goto fail;
    }
    if (rc) {
        /* PostgreSQL unreachable, refusing the role, or failing the set-up in a way waiting
         * mends (a read-only standby, a lock another worker's migration holds): the worker
         * starts without its ledger, as it goes on without it later (no job taken, /readyz
         * 503, kone_ledger_up 0), and connects (and migrates) when it answers, rather than
         * exit and crash-loop through a database's failover or restart. What it refuses once
         * connected (a newer or broken schema) still stops the start: no retry mends that. */
        if (why.code == KD_ERR_NOMEM) {
            /* GCOVR_EXCL_START: allocation failure */
            kd_err_set(err, why.code, "%s", why.msg);
            goto fail;
            /* GCOVR_EXCL_STOP */
        }
        l->backoff_us = LEDGER_BACKOFF_MIN_US;
        l->reconnect_at = kd_mono_us() + l->backoff_us; /* not `now`: the open waited */
        lg_hook_up(l, false);
        kd_warn("%s; starting without it: no job is taken until it answers (retrying in %lld ms)",
                why.msg, (long long)(l->backoff_us / 1000));
        *out = l;
        return 0;
    }
    l->migrated = true;
    lg_hook_up(l, true);
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
    for (op_list *q = &l->batch; q; q = q == &l->batch ? &l->queue : NULL)
        for (op *o = lg_pop(q); o; o = lg_pop(q)) {
            if (o->claim_fn) {
                kd_ledger_found f = {.verdict = KD_LEDGER_FAILED};
                o->claim_fn(&f, o->ctx);
            } else if (o->route_fn) {
                kd_ledger_call_owner none = {0};
                o->route_fn(&none, o->ctx);
            } else if (o->poll_fn) {
                o->poll_fn(false, false, 0, "", o->ctx);
            } else if (o->done_fn) {
                o->done_fn(false, o->result, o->result_len, o->ctx);
            }
            lg_free_op(l, o);
        }
    if (l->pg)
        PQfinish(l->pg);
    lg_attempt_abandon(l->attempt); /* its thread ends on its own, and frees it */
    KD_SLIST_FREE(l->spare, next);
    lg_group_free(l);
    free(l->url);
    free(l);
}

bool kd_ledger_up(const kd_ledger *l)
{
    return l && l->up;
}

const char *kd_ledger_fatal(const kd_ledger *l)
{
    return l && l->fatal[0] ? l->fatal : NULL;
}

const char *kd_ledger_owner(const kd_ledger *l)
{
    return l ? l->owner : "";
}

int kd_ledger_wait_fd(const kd_ledger *l)
{
    if (l && l->attempt)
        return lg_attempt_fd(l->attempt);
    return l && l->pg && l->n_batches ? PQsocket(l->pg) : -1;
}

bool kd_ledger_buffered(const kd_ledger *l)
{
    if (!l || !l->pg || !l->n_batches)
        return false;
    /* libpq reads one TLS record at a time into its buffer; what OpenSSL holds beyond what
     * fitted is not on the socket any more (libpq's own waits ask OpenSSL the same). And a
     * flush that found the send buffer full reads answers into libpq's buffer on the way
     * (pqSendSome): a result ready there is not on the socket either. PQisBusy only parses
     * what is buffered: no system call. */
    SSL *ssl = PQsslStruct(l->pg, "OpenSSL");
    return (ssl && SSL_pending(ssl) > 0) || !PQisBusy(l->pg);
}

int kd_ledger_pending(const kd_ledger *l)
{
    return l ? l->queue.n + l->batch.n : 0;
}

/* ------------------------------------------------------------------ queueing */

/* Every entry point is a no-op on a NULL ledger (ledger.url=none, or after close): the
 * worker's lists may still hold hand-overs while it shuts down. */
void lg_enqueue(kd_ledger *l, op *o)
{
    if (!l) {
        lg_free_op(l, o);
        return;
    }
    o->enq_us = kd_mono_us();
    lg_push(&l->queue, o);
}

void kd_ledger_claim(kd_ledger *l, kd_run *run, kd_ledger_claim_fn fn, void *ctx)
{
    op *o = lg_new_op(l, OP_CLAIM, run);
    if (!o || !l || !l->pg) {
        kd_ledger_found f = {.verdict = KD_LEDGER_FAILED};
        lg_free_op(l, o);
        fn(&f, ctx);
        return;
    }
    o->claim_fn = fn;
    o->ctx = ctx;
    o->pg_us = &run->ledger_claim_us;
    lg_enqueue(l, o);
}

static void enqueue_simple(kd_ledger *l, op_kind kind, const kd_run *run)
{
    op *o = lg_new_op(l, kind, run);
    if (!o) {
        /* GCOVR_EXCL_START: allocation failure */
        kd_error("ledger: out of memory; %s of job %s not recorded", lg_op_name[kind],
                 run ? run->job.job_id : "-");
        return;
        /* GCOVR_EXCL_STOP */
    }
    lg_enqueue(l, o);
}

void kd_ledger_accept(kd_ledger *l, const char *job_id, int64_t session_id,
                      const char *kone_session)
{
    op *o = lg_new_op(l, OP_ACCEPT, NULL);
    if (!o) {
        /* GCOVR_EXCL_START: allocation failure */
        kd_error("ledger: out of memory; acceptance of job %s not recorded", job_id);
        return;
        /* GCOVR_EXCL_STOP */
    }
    kd_str_copy(o->job_id, sizeof o->job_id, job_id);
    kd_str_copy(o->message, sizeof o->message, kone_session ? kone_session : "");
    o->session_id = session_id;
    lg_enqueue(l, o);
}

void kd_ledger_retry(kd_ledger *l, const kd_run *run)
{
    enqueue_simple(l, OP_RETRY, run);
}

void kd_ledger_release(kd_ledger *l, const kd_run *run, bool written)
{
    enqueue_simple(l, written ? OP_RELEASE_WRITTEN : OP_RELEASE_NEW, run);
}

void kd_ledger_done(kd_ledger *l, kd_run *run, const void *result, size_t len, kd_ledger_done_fn fn,
                    void *ctx)
{
    op *o = l ? lg_new_op(l, OP_DONE, run) : NULL;
    if (!l) {
        fn(false, result, len, ctx);
        return;
    }
    if (o && len && !(o->result = malloc(len))) {
        /* GCOVR_EXCL_START: allocation failure */
        lg_free_op(l, o);
        o = NULL;
        /* GCOVR_EXCL_STOP */
    }
    if (!o) {
        /* GCOVR_EXCL_START: allocation failure */
        kd_error("ledger: out of memory; outcome of job %s not recorded", run->job.job_id);
        fn(true, result, len, ctx); /* it still goes out; a redelivery would meet `writing` */
        return;
        /* GCOVR_EXCL_STOP */
    }
    if (len)
        memcpy(o->result, result, len);
    o->result_len = len;
    kd_str_copy(o->outcome, sizeof o->outcome, kd_outcome_name(run->outcome));
    o->failure = (int)run->failure;
    o->kone_status = run->kone_status;
    kd_str_copy(o->error_code, sizeof o->error_code, run->error_code);
    kd_str_copy(o->error_message, sizeof o->error_message, run->error_message);
    o->started_us = run->started_us;
    o->finished_us = run->finished_us;
    o->kone_rtt_us = run->kone_rtt_us;
    o->done_fn = fn;
    o->ctx = ctx;
    o->pg_us = &run->ledger_done_us;
    lg_enqueue(l, o);
}

/* ------------------------------------------------------------------ the turn */

static void periodic(kd_ledger *l, int64_t now)
{
    if (now >= l->next_renew) {
        l->next_renew = now + l->lease_ms * 1000 / 3;
        op *o = lg_new_op(l, OP_RENEW, NULL), *a = lg_new_op(l, OP_ALIVE, NULL);
        if (o)
            lg_enqueue(l, o);
        if (a)
            lg_enqueue(l, a);
    }
    if (l->cancel_fn && now >= l->next_take) {
        l->next_take = now + 250000;
        op *t = lg_new_op(l, OP_CANCEL_TAKE, NULL);
        if (t)
            lg_enqueue(l, t);
    }
    if (now >= l->next_purge) {
        l->next_purge = now + LEDGER_PURGE_EVERY_US;
        op *p = lg_new_op(l, OP_PURGE, NULL), *c = lg_new_op(l, OP_COUNT, NULL);
        if (p)
            lg_enqueue(l, p);
        if (c)
            lg_enqueue(l, c);
    }
}

void kd_ledger_quiet(kd_ledger *l)
{
    if (l)
        l->quiet = true;
}

void kd_ledger_turn(kd_ledger *l)
{
    if (!l)
        return;
    bool quiet = l->quiet; /* this turn's only: taken whatever path the turn takes */
    l->quiet = false;
    int64_t now = kd_mono_us();
    try_reconnect(l);
    if (!l->pg)
        return;
    if (l->n_batches &&
        now - l->sent_at[l->head_batch % LEDGER_MAX_BATCHES] > l->timeout_ms * 1000) {
        kd_warn("ledger: a batch of %d statements got no answer in %lld ms", l->batch.n,
                (long long)l->timeout_ms);
        lg_lost(l, "timeout");
        return;
    }
    periodic(l, now);
    if (!quiet || kd_ledger_buffered(l))
        lg_read_answers(l);
    lg_send_batch(l);
    if (l->pg && l->batch.n && PQflush(l->pg) < 0) {
        char why[256];
        lg_lost(l, lg_pg_msg(l->pg, why, sizeof why));
    }
}

void kd_ledger_drain(kd_ledger *l, int64_t timeout_us)
{
    if (!l)
        return;
    l->cancel_fn = NULL; /* no new cancel is taken now */
    /* never connected (PostgreSQL away since the start): no row of this worker's to hand over
     * and no kd_workers line to take back; a shutdown must not wait for it */
    op *o = l->migrated ? lg_new_op(l, OP_END_LEASES, NULL) : NULL;
    op *g = l->migrated ? lg_new_op(l, OP_GONE, NULL) : NULL;
    if (o)
        lg_enqueue(l, o);
    if (g)
        lg_enqueue(l, g);
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
