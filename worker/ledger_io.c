/* ledger_io.c: the call ledger's traffic (see ledger_int.h): queued statements go out as
 * batches (pipeline mode, one sync each: one transaction), answers are read as they come and
 * each op is finished (its callback) once its batch's sync says committed or rolled back. */
#include "ledger_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_log.h"

/* ------------------------------------------------------------------ sending */

/* v in decimal, NUL-terminated, as a statement's text parameter: snprintf's format machinery
 * was the ledger's largest own cost (about 8,000 instructions a job over the ~10 numbers of a
 * claim, an accept and a done; docs/performance.md). Written from the end of buf. */
static const char *num(char buf[24], int64_t v)
{
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v; /* INT64_MIN needs no special case */
    char *p = buf + 23;
    *p = '\0';
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return p;
}

static int send_op(kd_ledger *l, op *o)
{
    char ba[24], bb[24], bc[24], bd[24], be[24], bf[24], bg[24], bh[24];
    const char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL, *f = NULL, *g = NULL,
               *h = NULL;
    const char *v[13] = {0};
    int lens[13] = {0}, fmts[13] = {0}, n = 0;
    switch (o->kind) {
    case OP_CLAIM:
        a = num(ba, o->attempt);
        b = num(bb, l->lease_ms);
        c = num(bc, l->retention_h);
        v[0] = o->job_id, v[1] = a, v[2] = l->owner, v[3] = o->building, v[4] = b, v[5] = c;
        v[6] = l->retry_ambiguous ? "true" : "false";
        v[7] = o->replayed ? "true" : "false";
        n = 8;
        break;
    case OP_ACCEPT:
        a = num(ba, o->session_id);
        v[0] = o->job_id, v[1] = l->owner, v[2] = a;
        v[3] = o->message[0] ? o->message : NULL;
        n = 4;
        break;
    case OP_ROUTE:
        a = num(ba, o->session_id);
        b = num(bb, l->lease_ms);
        v[0] = a, v[1] = o->building, v[2] = l->owner, v[3] = b;
        n = 4;
        break;
    case OP_CANCEL_REQUEST:
        a = num(ba, o->session_id);
        b = num(bb, l->retention_h);
        v[0] = o->job_id, v[1] = a, v[2] = o->building, v[3] = o->group, v[4] = o->owner;
        v[5] = l->owner, v[6] = b;
        n = 7;
        break;
    case OP_CANCEL_POLL:
        v[0] = o->job_id;
        n = 1;
        break;
    case OP_CANCEL_ANSWER:
        a = num(ba, o->status);
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
        a = num(ba, o->failure);
        b = num(bb, o->kone_status);
        c = num(bc, o->started_us);
        d = num(bd, o->finished_us);
        e = num(be, o->kone_rtt_us);
        f = num(bf, l->retention_h);
        g = num(bg, o->session_id);
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
        a = num(ba, o->attempt);
        v[0] = o->job_id, v[1] = l->owner, v[2] = a;
        n = 3;
        break;
    case OP_RENEW:
        h = num(bh, l->lease_ms);
        v[0] = l->owner, v[1] = h;
        n = 2;
        break;
    case OP_END_LEASES:
        v[0] = l->owner;
        n = 1;
        break;
    case OP_PURGE:
    case OP_COUNT:
    case OP_N: break;
    }
    return PQsendQueryPrepared(l->pg, lg_op_stmt[o->kind], n, v, lens, fmts, 0) ? 0 : -1;
}

/* Sends every queued statement and a sync, as one batch. */
void lg_send_batch(kd_ledger *l)
{
    if (!l->pg || l->n_batches >= LEDGER_MAX_BATCHES || !l->queue.n)
        return;
    unsigned id = l->next_batch;
    op *o, *first = l->queue.head;
    while ((o = lg_pop(&l->queue))) {
        o->batch_id = id;
        lg_push(&l->batch, o);
        if (send_op(l, o)) {
            char why[256];
            lg_lost(l, lg_pg_msg(l->pg, why, sizeof why));
            return;
        }
    }
    if (!PQpipelineSync(l->pg)) {
        char why[256];
        lg_lost(l, lg_pg_msg(l->pg, why, sizeof why));
        return;
    }
    l->sent_at[id % LEDGER_MAX_BATCHES] = kd_mono_us();
    l->next_batch = id + 1;
    l->n_batches++;
    if (!l->reading)
        l->reading = first;
    if (PQflush(l->pg) < 0) {
        char why[256];
        lg_lost(l, lg_pg_msg(l->pg, why, sizeof why));
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
        f->attempt = (int)strtol(PQgetvalue(r, 0, 3), NULL, 10);
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
        f->outcome = lg_outcome_from(val(r, 6) ? val(r, 6) : "");
        f->failure = val(r, 7) ? (kd_failure_class)strtol(val(r, 7), NULL, 10) : KD_FAIL_NONE;
        f->kone_status = val(r, 8) ? (int)strtol(val(r, 8), NULL, 10) : 0;
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
            kd_warn("ledger: %s of %s failed: %s", lg_op_name[o->kind],
                    o->job_id[0] ? o->job_id : "-", PQresultErrorMessage(r));
        o->failed = true;
        return;
    }
    const char *t = PQcmdTuples(r);
    o->affected = t && *t ? (int)strtol(t, NULL, 10) : 0;
    if (o->kind == OP_ROUTE && PQntuples(r) == 1) {
        kd_ledger_call_owner *w = &o->route;
        w->found = true;
        snprintf(w->owner, sizeof w->owner, "%s", val(r, 0) ? val(r, 0) : "");
        snprintf(w->kone_session, sizeof w->kone_session, "%s", val(r, 1) ? val(r, 1) : "");
        w->mine = val(r, 2) && *val(r, 2) == 't';
        w->alive = val(r, 3) && *val(r, 3) == 't';
    } else if (o->kind == OP_CANCEL_POLL && PQntuples(r) == 1) {
        o->affected = val(r, 0) && !strcmp(val(r, 0), "answered");
        o->status = val(r, 1) ? (int)strtol(val(r, 1), NULL, 10) : 0;
        snprintf(o->message, sizeof o->message, "%s", val(r, 2) ? val(r, 2) : "");
    } else if (o->kind == OP_CANCEL_TAKE && l->cancel_fn) {
        /* taken (state sent) in this batch: handed to the worker once it commits */
        for (int i = 0; i < PQntuples(r); i++) {
            op *c = lg_new_op(OP_CANCEL_TAKE, NULL);
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

void lg_finish_op(kd_ledger *l, op *o, bool ok)
{
    lg_hook_op(l, o->kind, ok);
    switch (o->kind) {
    case OP_CLAIM:
        if (!ok) {
            o->found.verdict = KD_LEDGER_FAILED;
            /* its commit is unknown: take back a claim that may exist */
            op *rel = calloc(1, sizeof *rel);
            if (rel) {
                *rel = (op){.kind = OP_RELEASE_NEW, .attempt = o->attempt};
                memcpy(rel->job_id, o->job_id, sizeof rel->job_id);
                lg_push(&l->queue, rel);
            }
        }
        o->claim_fn(&o->found, o->ctx);
        break;
    case OP_ROUTE:
        o->route.ok = ok;
        o->route_fn(&o->route, o->ctx);
        break;
    case OP_CANCEL_POLL: o->poll_fn(ok, ok && o->affected, o->status, o->message, o->ctx); break;
    case OP_CANCEL_TAKE:
        for (op *c = o->next_taken, *n; c; c = n) {
            n = c->next;
            if (ok && l->cancel_fn)
                l->cancel_fn(c->job_id, c->session_id, c->building, c->group, l->cancel_ctx);
            lg_free_op(c);
        }
        o->next_taken = NULL;
        break;
    case OP_DONE:
        if (!ok)
            kd_error("ledger: the outcome of job %s (%s) could not be recorded; its result is "
                     "produced anyway",
                     o->job_id, o->outcome);
        if (ok && o->affected == 0)
            kd_warn("ledger: job %s was taken over by another worker before its outcome "
                    "(%s) was recorded; its result is produced anyway",
                    o->job_id, o->outcome);
        if (o->done_fn)
            o->done_fn(ok, o->result, o->result_len, o->ctx);
        break;
    default: break;
    }
    lg_free_op(o);
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
        o = lg_pop(&l->batch);
        if (ok || o->kind == OP_CLAIM || o->kind == OP_PURGE || o->kind == OP_COUNT ||
            o->kind == OP_RENEW || o->kind == OP_ROUTE || o->kind == OP_CANCEL_POLL ||
            o->kind == OP_CANCEL_TAKE || o->kind == OP_ALIVE || o->kind == OP_GONE) {
            lg_finish_op(l, o, ok);
        } else if (++o->tries >= LEDGER_MAX_TRIES) {
            /* refused every time: a bug or a broken row, not an outage; the job's next
             * delivery meets the row as it is */
            kd_error("ledger: %s of job %s refused %d times; dropped", lg_op_name[o->kind],
                     o->job_id, o->tries);
            lg_finish_op(l, o, false);
        } else {
            o->failed = false;
            lg_push(&again, o); /* kept: sent again with the next batch */
        }
    }
    /* failed statements go before anything queued since */
    while ((o = lg_pop(&l->queue)))
        lg_push(&again, o);
    l->queue = again;
    if (!ok)
        lg_hook_up(l, true); /* the server answered: it is up; a statement was refused */
}

void lg_read_answers(kd_ledger *l)
{
    if (!l->pg || !l->n_batches)
        return;
    char why[256];
    if (!PQconsumeInput(l->pg)) {
        lg_lost(l, lg_pg_msg(l->pg, why, sizeof why));
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
            lg_hook_up(l, true);
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
        lg_lost(l, lg_pg_msg(l->pg, why, sizeof why));
}
