/* event_result_ref.c: the result event's encoder as it was before issue 17 (msgpack-c's
 * packer, a write callback per item), kept only as the reference test_event compares
 * kd_event_encode_result's bytes with. A frozen copy of shared/src/event.c at commit 54606d1
 * (the result event and its helpers only), renamed; do not "fix" it. */
#include "event_result_ref.h"

#include <string.h>

#define PACK_KEY(pk, lit) pack_strn((pk), (lit), sizeof(lit) - 1)

static int pack_strn(msgpack_packer *pk, const char *s, size_t n)
{
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

/* A fixed-size char array from a struct: "" is nil. strnlen bounds the read even if a
 * buggy writer left the array unterminated. */
static int pack_str_or_nil(msgpack_packer *pk, const char *s, size_t cap)
{
    size_t n = s ? strnlen(s, cap) : 0;
    if (n == 0)
        return msgpack_pack_nil(pk);
    return pack_strn(pk, s, n);
}

static int pack_int_or_nil(msgpack_packer *pk, bool known, int64_t v)
{
    return known ? msgpack_pack_int64(pk, v) : msgpack_pack_nil(pk);
}

/* µs timestamps from kd_run: 0 means "did not happen / unknown". */
static int pack_ms_from_us(msgpack_packer *pk, int64_t us)
{
    return pack_int_or_nil(pk, us > 0, us / 1000);
}

static int pack_cstr_or_nil(msgpack_packer *pk, const char *s)
{
    return pack_str_or_nil(pk, s, s ? strlen(s) : 0);
}

static const char *failure_name(kd_failure_class f)
{
    switch (f) {
    case KD_FAIL_FINAL: return "final";
    case KD_FAIL_TRANSIENT: return "transient";
    case KD_FAIL_UNDECODABLE: return "undecodable";
    case KD_FAIL_NONE: break;
    }
    return NULL;
}

static bool op_known(kd_op op)
{
    return op == KD_OP_CALL || op == KD_OP_CANCEL || op == KD_OP_HOLD_OPEN;
}

/* Undoes a partial append: the sbuffer only grows at its end, so resetting size is enough. */
/* GCOVR_EXCL_START: msgpack's sbuffer fails a write only on allocation failure */
static int pack_failed(msgpack_sbuffer *sb, size_t start, kd_err *err, const char *what)
{
    sb->size = start;
    return kd_err_set(err, KD_ERR_NOMEM, "%s: out of memory while encoding", what);
}
/* GCOVR_EXCL_STOP */

/* ---- result event ---- */

#define RESULT_KEYS 22 /* pairs packed below; the tests decode and count them */

/* The error is there when the run has an error code: every failure path sets one. A
 * message without a code is only a note on a success ("call accepted") and is left out. */
static int pack_error(msgpack_packer *pk, const kd_run *run)
{
    size_t nc = strnlen(run->error_code, sizeof run->error_code);
    size_t nm = strnlen(run->error_message, sizeof run->error_message);
    if (nc == 0)
        return msgpack_pack_nil(pk);
    return msgpack_pack_map(pk, 2) || PACK_KEY(pk, "code") ||
           pack_str_or_nil(pk, run->error_code, nc) || PACK_KEY(pk, "message") ||
           pack_str_or_nil(pk, run->error_message, nm);
}

static int pack_op(msgpack_packer *pk, kd_op op)
{
    return op_known(op) ? pack_cstr_or_nil(pk, kd_op_name(op)) : msgpack_pack_nil(pk);
}

/* The job-derived fields. An invalid job may be partly filled: only what decode could
 * read is non-empty/non-zero, and that is exactly what gets a value. */
static int pack_result_job(msgpack_packer *pk, const kd_job *job)
{
    return PACK_KEY(pk, "job_id") || pack_str_or_nil(pk, job->job_id, sizeof job->job_id) ||
           PACK_KEY(pk, "op") || pack_op(pk, job->op) || PACK_KEY(pk, "building_id") ||
           pack_str_or_nil(pk, job->building_id, sizeof job->building_id) ||
           PACK_KEY(pk, "group_id") || pack_str_or_nil(pk, job->group_id, sizeof job->group_id);
}

int kd_event_encode_result_ref(const kd_run *run, const char *worker, msgpack_sbuffer *sb,
                               kd_err *err)
{
    if (!run || !sb)
        return kd_err_set(err, KD_ERR_INTERNAL, "result event: NULL run or buffer");
    if (run->outcome == KD_OUTCOME_NONE)
        return kd_err_set(err, KD_ERR_INTERNAL,
                          "result event: job %.64s has no outcome yet (programming error)",
                          run->job.job_id);
    const char *failure = failure_name(run->failure);
    size_t start = sb->size;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);

    int rc = msgpack_pack_map(&pk, RESULT_KEYS);
    rc = rc || PACK_KEY(&pk, "v") || msgpack_pack_int(&pk, KD_EVENT_VERSION);
    rc = rc || pack_result_job(&pk, &run->job);
    rc = rc || PACK_KEY(&pk, "outcome") || pack_cstr_or_nil(&pk, kd_outcome_name(run->outcome));
    rc = rc || PACK_KEY(&pk, "kone_status") || msgpack_pack_int(&pk, run->kone_status);
    rc = rc || PACK_KEY(&pk, "session_id") ||
         pack_int_or_nil(&pk, run->session_id != 0, run->session_id);
    rc = rc || PACK_KEY(&pk, "error") || pack_error(&pk, run);
    rc = rc || PACK_KEY(&pk, "attempt") || msgpack_pack_int(&pk, run->attempt);
    rc = rc || PACK_KEY(&pk, "requeues") || msgpack_pack_int(&pk, run->requeues);
    rc = rc || PACK_KEY(&pk, "worker") || pack_cstr_or_nil(&pk, worker);
    rc = rc || PACK_KEY(&pk, "created_at") ||
         pack_int_or_nil(&pk, run->job.created_at > 0, run->job.created_at);
    rc = rc || PACK_KEY(&pk, "started_at") || pack_ms_from_us(&pk, run->started_us);
    rc = rc || PACK_KEY(&pk, "finished_at") || pack_ms_from_us(&pk, run->finished_us);
    rc = rc || PACK_KEY(&pk, "kone_rtt_us") ||
         pack_int_or_nil(&pk, run->kone_rtt_us > 0, run->kone_rtt_us);
    rc = rc || PACK_KEY(&pk, "trace_id") ||
         pack_str_or_nil(&pk, run->job.trace_id, sizeof run->job.trace_id);
    rc = rc || PACK_KEY(&pk, "redelivered") ||
         (run->redelivered ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk));
    rc = rc || PACK_KEY(&pk, "failure") || pack_cstr_or_nil(&pk, failure);
    rc = rc || PACK_KEY(&pk, "modified_destination") ||
         pack_int_or_nil(&pk, run->has_modified_destination, run->modified_destination);
    rc = rc || PACK_KEY(&pk, "modified_reason") ||
         pack_str_or_nil(&pk, run->modified_reason, sizeof run->modified_reason);
    rc = rc || PACK_KEY(&pk, "validated_locally") ||
         (run->validated_locally ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk));
    if (rc)
        /* GCOVR_EXCL_START: msgpack's sbuffer fails a write only on allocation failure */
        return pack_failed(sb, start, err, "result event");
    /* GCOVR_EXCL_STOP */
    return 0;
}
