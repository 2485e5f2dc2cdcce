/* line: one Kafka message value → the JSON line kone-events prints (see line.c). */
#ifndef KEV_LINE_H
#define KEV_LINE_H

#include <stddef.h>
#include <stdint.h>

/* Returns a malloc'd compact JSON object without a trailing newline: the decoded map if
 * the value is exactly one msgpack map, otherwise {"_undecodable": base64 of the value,
 * "_partition": p, "_offset": o}. NULL only when memory runs out. */
char *kev_line(const void *value, size_t len, int32_t partition, int64_t offset);

#endif
