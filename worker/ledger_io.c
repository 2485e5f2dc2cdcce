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
#include "kone_jw.h"

/* ------------------------------------------------------------------ sending */

/* Each kind's parameters, in order (lg_param, ledger_int.h). */
const unsigned char lg_op_params[OP_N][LG_MAX_PARAMS + 1] = {
    [OP_CLAIM] = {P_JOB, P_ATTEMPT, P_OWNER, P_BUILDING, P_LEASE, P_RETENTION, P_RETRY_AMBIG,
                  P_REPLAYED},
    [OP_ACCEPT] = {P_JOB, P_OWNER, P_SESSION, P_MESSAGE_OR_0},
    [OP_DONE] = {P_JOB, P_OWNER, P_OUTCOME, P_FAILURE, P_KONE_STATUS, P_ERROR_CODE, P_ERROR_MESSAGE,
                 P_STARTED, P_FINISHED, P_RTT, P_RESULT, P_RETENTION, P_SESSION_OR_0},
    [OP_RETRY] = {P_JOB, P_OWNER},
    [OP_RELEASE_NEW] = {P_JOB, P_OWNER, P_ATTEMPT},
    [OP_RELEASE_WRITTEN] = {P_JOB, P_OWNER},
    [OP_RENEW] = {P_OWNER, P_LEASE},
    [OP_PURGE] = {P_END},
    [OP_COUNT] = {P_END},
    [OP_END_LEASES] = {P_OWNER},
    [OP_ROUTE] = {P_SESSION, P_BUILDING, P_OWNER, P_LEASE},
    [OP_CANCEL_REQUEST] = {P_JOB, P_SESSION, P_BUILDING, P_GROUP, P_CALL_OWNER, P_OWNER,
                           P_RETENTION},
    [OP_CANCEL_POLL] = {P_JOB},
    [OP_CANCEL_TAKE] = {P_OWNER},
    [OP_CANCEL_ANSWER] = {P_JOB, P_STATUS, P_MESSAGE},
    [OP_ALIVE] = {P_OWNER},
    [OP_GONE] = {P_OWNER},
};

/* v in decimal, NUL-terminated, as a statement's text parameter: snprintf's format machinery
 * was the ledger's largest own cost (about 8,000 instructions a job over the ~10 numbers of a
 * claim, an accept and a done; docs/performance.md); kone_jw's writer puts two digits a step
 * (a digit a step here cost ~550 instructions a job, the microsecond times most of it). */
static const char *decimal(char buf[24], int64_t v)
{
    buf[kd_jw_int_text(buf, v)] = '\0'; /* at most KD_JW_INT_TEXT (20) bytes */
    return buf;
}

const char *lg_param_text(const kd_ledger *l, const op *o, lg_param p, char num[24])
{
    int64_t v = 0;
    switch (p) {
    case P_END: return NULL;
    case P_JOB: return o->job_id;
    case P_OWNER: return l->owner;
    case P_BUILDING: return o->building;
    case P_GROUP: return o->group;
    case P_CALL_OWNER: return o->owner;
    case P_RETRY_AMBIG: return l->retry_ambiguous ? "true" : "false";
    case P_REPLAYED: return o->replayed ? "true" : "false";
    case P_MESSAGE: return o->message;
    case P_MESSAGE_OR_0: return o->message[0] ? o->message : NULL;
    case P_OUTCOME: return o->outcome;
    case P_ERROR_CODE: return o->error_code;
    case P_ERROR_MESSAGE: return o->error_message;
    case P_RESULT: return NULL; /* GCOVR_EXCL_LINE: a done's, grouped: put_results */
    case P_SESSION_OR_0:
        if (!o->session_id)
            return NULL;
        v = o->session_id;
        break;
    case P_SESSION: v = o->session_id; break;
    case P_ATTEMPT: v = o->attempt; break;
    case P_LEASE: v = l->lease_ms; break;
    case P_RETENTION: v = l->retention_h; break;
    case P_STATUS: v = o->status; break;
    case P_FAILURE: v = o->failure; break;
    case P_KONE_STATUS: v = o->kone_status; break;
    case P_STARTED: v = o->started_us; break;
    case P_FINISHED: v = o->finished_us; break;
    case P_RTT: v = o->kone_rtt_us; break;
    }
    return decimal(num, v);
}

static int send_op(kd_ledger *l, op *o)
{
    char num[LG_MAX_PARAMS][24];
    const char *v[LG_MAX_PARAMS] = {0};
    int n = 0;
    for (; n < LG_MAX_PARAMS && lg_op_params[o->kind][n] != P_END; n++)
        v[n] = lg_param_text(l, o, (lg_param)lg_op_params[o->kind][n], num[n]);
    return PQsendQueryPrepared(l->pg, lg_op_stmt[o->kind], n, v, NULL, NULL, 0) ? 0 : -1;
}

static void lost(kd_ledger *l)
{
    char why[256];
    lg_lost(l, lg_pg_msg(l->pg, why, sizeof why));
}

/* Sends every queued statement and a sync, as one batch: the per-job kinds grouped (one
 * statement per kind, ledger_batch.c), every other op alone, in queue order. A job met again
 * (an accept and a done of one job) or a lone op sends the groups so far first, so each job's
 * statements, and the lone ones among them, keep their order. */
void lg_send_batch(kd_ledger *l)
{
    if (!l->pg || l->n_batches >= LEDGER_MAX_BATCHES || !l->queue.n)
        return;
    unsigned id = l->next_batch;
    op *o, *before = l->batch.tail;
    lg_groups g = {0};
    while ((o = lg_pop(&l->queue))) {
        o->batch_id = id;
        if (o->pg_us && o->enq_us && o->enq_us < l->room_at)
            *o->pg_us += l->room_at - o->enq_us; /* queued behind a full pipeline */
        o->enq_us = 0;     /* sent: if it is sent again, that wait is not counted twice */
        o->failed = false; /* a failure read before a lost connection is not this batch's */
        if (o->kind < OP_GROUPED) {
            if (lg_group_add(l, &g, o))
                goto fail;
            continue;
        }
        int rc = lg_group_send(l, &g);
        if (rc)
            lg_group_drop(l, &g); /* the groups' unsent ops stay before o, in queue order */
        lg_push(&l->batch, o);    /* o is in no list now: lg_lost must find it */
        if (rc || send_op(l, o))
            goto fail;
    }
    if (lg_group_send(l, &g) || !PQpipelineSync(l->pg))
        goto fail;
    l->sent_at[id % LEDGER_MAX_BATCHES] = kd_mono_us();
    l->next_batch = id + 1;
    l->n_batches++;
    if (!l->reading)
        l->reading = before ? before->next : l->batch.head;
    if (PQflush(l->pg) < 0)
        lost(l);
    return;
fail:
    lg_group_drop(l, &g);
    lost(l);
}

/* ------------------------------------------------------------------ answers */

static const char *val_at(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static const char *val(const PGresult *r, int col)
{
    return val_at(r, 0, col);
}

/* Row `row` of a claim's answer (kd_claim's columns). */
void lg_read_claim(kd_ledger *l, op *o, const PGresult *r, int row)
{
    kd_ledger_found *f = &o->found;
    const char *st = val_at(r, row, 0), *from = val_at(r, row, 1), *prev = val_at(r, row, 2);
    if (prev) {
        f->attempt = (int)strtol(PQgetvalue(r, row, 3), NULL, 10);
        snprintf(f->worker, sizeof f->worker, "%s", val_at(r, row, 4) ? val_at(r, row, 4) : "");
        f->session_id = val_at(r, row, 5) ? strtoll(val_at(r, row, 5), NULL, 10) : 0;
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
        f->outcome = lg_outcome_from(val_at(r, row, 6) ? val_at(r, row, 6) : "");
        f->failure = val_at(r, row, 7) ? (kd_failure_class)strtol(val_at(r, row, 7), NULL, 10)
                                       : KD_FAIL_NONE;
        f->kone_status = val_at(r, row, 8) ? (int)strtol(val_at(r, row, 8), NULL, 10) : 0;
        snprintf(f->error_code, sizeof f->error_code, "%s",
                 val_at(r, row, 9) ? val_at(r, row, 9) : "");
        snprintf(f->error_message, sizeof f->error_message, "%s",
                 val_at(r, row, 10) ? val_at(r, row, 10) : "");
        f->started_us = val_at(r, row, 11) ? strtoll(val_at(r, row, 11), NULL, 10) : 0;
        f->finished_us = val_at(r, row, 12) ? strtoll(val_at(r, row, 12), NULL, 10) : 0;
        f->kone_rtt_us = val_at(r, row, 13) ? strtoll(val_at(r, row, 13), NULL, 10) : 0;
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
            l->hooks.rows(states[s], n[s]);
}

/* One result of the op being read (of the ops it heads: a grouped statement's). */
static void read_result(kd_ledger *l, op *o, PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        if (!o->failed && st != PGRES_PIPELINE_ABORTED)
            kd_warn("ledger: %s of %s%s failed: %s", lg_op_name[o->kind],
                    o->job_id[0] ? o->job_id : "-", o->group_n > 1 ? " and other jobs" : "",
                    PQresultErrorMessage(r));
        int n = o->group_n ? o->group_n : 1;
        for (op *g = o; g && n--; g = g->next)
            g->failed = true;
        return;
    }
    if (o->group_n) {
        lg_group_read(l, o, r);
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
            op *c = lg_new_op(l, OP_CANCEL_TAKE, NULL);
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
    } else if (o->kind == OP_COUNT)
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
            op *rel = lg_new_op(l, OP_RELEASE_NEW, NULL);
            if (rel) {
                rel->attempt = o->attempt;
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
            lg_free_op(l, c);
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
    lg_free_op(l, o);
}

/* The sync of the oldest batch came back: commit (ok) or rollback. */
static void batch_done(kd_ledger *l, bool ok)
{
    unsigned id = l->head_batch;
    int64_t now = kd_mono_us(), took = now - l->sent_at[id % LEDGER_MAX_BATCHES];
    if (l->n_batches == LEDGER_MAX_BATCHES && l->queue.n)
        l->room_at = now;
    if (l->hooks.commit && ok)
        l->hooks.commit(took);
    l->head_batch = id + 1;
    l->n_batches--;
    op *o;
    op_list again = {0};
    while (l->batch.head && l->batch.head->batch_id == id) {
        o = lg_pop(&l->batch);
        if (o->pg_us)
            *o->pg_us += took;
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
            lg_push(&again, o); /* kept: sent again with the next batch (its failed cleared) */
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
    while (l->pg && l->n_batches && !PQisBusy(l->pg)) {
        PGresult *r = PQgetResult(l->pg);
        if (!r) {
            /* end of one statement's results: the next op after those it covered */
            for (int n = l->reading ? l->reading->group_n : 0; l->reading && n-- > 1;)
                l->reading = l->reading->next;
            if (l->reading)
                l->reading = l->reading->next;
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            bool ok = !l->head_failed;
            l->head_failed = false;
            batch_done(l, ok);
            lg_hook_up(l, true);
            continue;
        }
        if (l->reading) {
            read_result(l, l->reading, r);
            l->head_failed |= l->reading->failed;
        }
        PQclear(r);
    }
    if (PQstatus(l->pg) == CONNECTION_BAD)
        lg_lost(l, lg_pg_msg(l->pg, why, sizeof why));
}
