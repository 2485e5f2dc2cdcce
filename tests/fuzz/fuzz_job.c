/* fuzz_job: the msgpack job decoder (kd_job_decode), the bytes of an AMQP delivery body.
 *
 * Any input must decode to a job or to an error, never crash or read past len. A job that
 * decodes must also validate, encode, and decode again to the same job: the worker
 * re-encodes jobs it parks or retries, so the round trip is part of the contract. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kd_job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kd_job job;
    kd_err err = {0};
    if (kd_job_decode(data, size, 60000, &job, &err) != 0)
        return 0;
    if (kd_job_validate(&job, &err) != 0)
        abort(); /* decode promises a valid job */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (kd_job_encode(&job, &sb, &err) == 0) {
        kd_job again;
        if (kd_job_decode(sb.data, sb.size, 60000, &again, &err) != 0)
            abort(); /* what we encode, we decode */
        if (strcmp(again.job_id, job.job_id) != 0 || again.op != job.op)
            abort();
    }
    msgpack_sbuffer_destroy(&sb);
    return 0;
}
