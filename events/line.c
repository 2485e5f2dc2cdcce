/* line.c: what kone-events prints for one message.
 *
 * A value is printed as its decoded map and nothing else, so a line is exactly the event
 * an analyst would decode themselves. Anything that is not exactly one msgpack map (not
 * msgpack, trailing bytes, a bare scalar, an empty tombstone) is still printed, as a
 * base64 dump with its partition and offset, so a bad producer is visible and locatable
 * and never stops the reader. The base64 comes from kd_msgpack_to_json of a bin object,
 * so there is one base64 encoder in the project.
 *
 * The value is scanned (kd_job_scan_map) before msgpack-c unpacks it: msgpack-c allocates
 * a container's elements from the count its header claims, and nine hostile bytes would
 * ask for 64 GiB (scripts/fuzz events_line found it).
 */
#include "line.h"

#include <jansson.h>
#include <msgpack.h>
#include <stdlib.h>

#include "kd_event.h"
#include "kd_job.h"

static char *dump(json_t *j)
{
    if (!j)
        return NULL;
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

static char *undecodable(const void *value, size_t len, int32_t partition, int64_t offset)
{
    msgpack_object bin = {.type = MSGPACK_OBJECT_BIN};
    bin.via.bin.ptr = value;
    bin.via.bin.size = (uint32_t)len;
    json_t *o = json_object();
    /* GCOVR_EXCL_START: allocation failure */
    if (!o)
        return NULL;
    if (json_object_set_new(o, "_undecodable", kd_msgpack_to_json(&bin)) ||
        json_object_set_new(o, "_partition", json_integer(partition)) ||
        json_object_set_new(o, "_offset", json_integer(offset))) {
        json_decref(o);
        return NULL;
    }
    /* GCOVR_EXCL_STOP */
    return dump(o);
}

char *kev_line(const void *value, size_t len, int32_t partition, int64_t offset)
{
    /* Kafka caps a message far below 4 GiB, the limit of a msgpack bin */
    kd_err err = {0};
    if (!value || len == 0 || len > UINT32_MAX || kd_job_scan_map(value, len, &err) != 0)
        return undecodable(value, value ? len : 0, partition, offset);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(&u, value, len, &off);
    char *line = NULL;
    if (r == MSGPACK_UNPACK_SUCCESS && off == len && u.data.type == MSGPACK_OBJECT_MAP)
        line = dump(kd_msgpack_to_json(&u.data));
    /* GCOVR_EXCL_START: a second line of defence: a map kd_job_scan_map accepted unpacks whole */
    else
        line = undecodable(value, len, partition, offset);
    /* GCOVR_EXCL_STOP */
    msgpack_unpacked_destroy(&u);
    return line;
}
