/* ledger_cancel.c: cancels across workers (ledger.h, "cancels across workers"): the lookup of
 * who made a call, and the kd_cancels mailbox between the worker that has the cancel job and
 * the worker whose KONE session owns the call. */
#include "ledger_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_log.h"
#include "kd_str.h"

op *lg_cancel_op(kd_ledger *l, op_kind kind, const char *cancel_job_id)
{
    op *o = lg_new_op(l, kind, NULL);
    if (!o) {
        /* GCOVR_EXCL_START: allocation failure */
        kd_error("ledger: out of memory; cancel %s not handled", cancel_job_id);
        return NULL;
        /* GCOVR_EXCL_STOP */
    }
    kd_str_copy(o->job_id, sizeof o->job_id, cancel_job_id);
    (void)l;
    return o;
}

void kd_ledger_route(kd_ledger *l, int64_t call_session_id, const char *building,
                     kd_ledger_route_fn fn, void *ctx)
{
    op *o = l && l->pg ? lg_cancel_op(l, OP_ROUTE, "-") : NULL;
    if (!o) {
        kd_ledger_call_owner none = {0};
        fn(&none, ctx);
        return;
    }
    o->session_id = call_session_id;
    kd_str_copy(o->building, sizeof o->building, building);
    o->route_fn = fn;
    o->ctx = ctx;
    lg_enqueue(l, o);
}

void kd_ledger_cancel_request(kd_ledger *l, const char *cancel_job_id, int64_t call_session_id,
                              const char *building, const char *group, const char *owner)
{
    op *o = lg_cancel_op(l, OP_CANCEL_REQUEST, cancel_job_id);
    if (!o)
        return;
    o->session_id = call_session_id;
    kd_str_copy(o->building, sizeof o->building, building);
    kd_str_copy(o->group, sizeof o->group, group);
    kd_str_copy(o->owner, sizeof o->owner, owner);
    lg_enqueue(l, o);
}

void kd_ledger_cancel_poll(kd_ledger *l, const char *cancel_job_id, kd_ledger_poll_fn fn, void *ctx)
{
    op *o = l && l->pg ? lg_cancel_op(l, OP_CANCEL_POLL, cancel_job_id) : NULL;
    if (!o) {
        fn(false, false, 0, "", ctx);
        return;
    }
    o->poll_fn = fn;
    o->ctx = ctx;
    lg_enqueue(l, o);
}

void kd_ledger_cancel_answer(kd_ledger *l, const char *cancel_job_id, int status,
                             const char *message)
{
    op *o = lg_cancel_op(l, OP_CANCEL_ANSWER, cancel_job_id);
    if (!o)
        return;
    o->status = status;
    kd_str_copy(o->message, sizeof o->message, message ? message : "");
    lg_enqueue(l, o);
}

void kd_ledger_on_cancel(kd_ledger *l, kd_ledger_cancel_fn fn, void *ctx)
{
    if (!l)
        return;
    l->cancel_fn = fn;
    l->cancel_ctx = ctx;
}
