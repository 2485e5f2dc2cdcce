/* fuzz_job: the msgpack job decoder (kd_job_decode), the bytes of an AMQP delivery body.
 *
 * Any input must decode to a job or to an error, never crash or read past len. It must also
 * decode exactly as the decoder before issue 17 did (msgpack-c based, tests/ref/): the same
 * return code, error code and message, and the same job to the byte. A job that decodes
 * must also validate, encode, and decode again to the same job: the worker re-encodes jobs
 * it parks or retries, so the round trip is part of the contract. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "job_decode_ref.h"
#include "kd_job.h"

/* The one-pass reader against the reference; aborts (a finding) on any difference. */
static int decode_as_reference(const uint8_t *data, size_t size, kd_job *job, kd_err *err)
{
    static kd_job ref;
    kd_err rerr = {0};
    int rc = kd_job_decode(data, size, 60000, job, err);
    int rrc = kd_job_decode_ref(data, size, 60000, &ref, &rerr);
    if (rc != rrc || err->code != rerr.code || strcmp(err->msg, rerr.msg) != 0 ||
        memcmp(job, &ref, sizeof ref) != 0)
        abort();
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static kd_job job;
    kd_err err = {0};
    if (decode_as_reference(data, size, &job, &err) != 0)
        return 0;
    if (kd_job_validate(&job, &err) != 0)
        abort(); /* decode promises a valid job */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (kd_job_encode(&job, &sb, &err) == 0) {
        static kd_job again;
        if (decode_as_reference((const uint8_t *)sb.data, sb.size, &again, &err) != 0)
            abort(); /* what we encode, we decode */
        if (memcmp(&again, &job, sizeof job) != 0)
            abort(); /* to the same job */
    }
    msgpack_sbuffer_destroy(&sb);
    return 0;
}
