/* fuzz_job_json: a JSON job line as kone-producer reads it (producer/main.c handle_line):
 * jansson parses the line with the producer's flags, kd_job_from_json validates it, and a
 * job that passes is encoded to msgpack as the producer publishes it and must decode back. */
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "kd_job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *obj =
        json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!obj)
        return 0;
    kd_job job;
    kd_err err = {0};
    int rc = kd_job_from_json(obj, 1764000000000, 60000, &job, &err);
    json_decref(obj);
    if (rc != 0)
        return 0;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (kd_job_encode(&job, &sb, &err) == 0) {
        kd_job again;
        if (kd_job_decode(sb.data, sb.size, 60000, &again, &err) != 0)
            abort(); /* the producer's bytes are what the worker accepts */
    }
    msgpack_sbuffer_destroy(&sb);
    return 0;
}
