/* fuzz_events_line: a Kafka message value as kone-events prints it (events/line.c): any
 * bytes become one line of valid JSON, the decoded map or the _undecodable form. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "line.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = kev_line(data, size, 3, 42);
    if (!line)
        return 0; /* out of memory only */
    if (strchr(line, '\n'))
        abort(); /* one event, one line */
    /* JSON_ALLOW_NUL: a msgpack string may hold NUL, which the line escapes as \u0000 */
    json_error_t jerr;
    json_t *back = json_loads(line, JSON_ALLOW_NUL, &jerr);
    /* a map key holding NUL is valid JSON ("\u0000") that jansson alone refuses to parse */
    if (!back && strstr(jerr.text, "NUL byte in object key")) {
        free(line);
        return 0;
    }
    if (!back || !json_is_object(back))
        abort(); /* the line is a JSON object */
    json_decref(back);
    free(line);
    return 0;
}
