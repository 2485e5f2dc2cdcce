/* fuzz_amqp_headers: the headers of an AMQP delivery. rabbitmq-c decodes the field table
 * from the wire (amqp_decode_table, as it does for every delivery's properties); then
 * kd_amqp_headers_decode (shared/src/amqp_headers.c) reads the x-kd-* and x-delivery-count
 * entries, whatever their types. The strings it copies must stay NUL-terminated. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "amqp_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    amqp_pool_t pool;
    init_amqp_pool(&pool, 4096);
    amqp_table_t table;
    size_t offset = 0;
    amqp_bytes_t encoded = {.len = size, .bytes = (void *)data};
    if (amqp_decode_table(encoded, &pool, &table, &offset) == AMQP_STATUS_OK) {
        kd_amqp_headers h;
        int64_t count;
        kd_amqp_headers_decode(&table, &h, &count);
        if (!memchr(h.last_error, 0, sizeof h.last_error) ||
            !memchr(h.reason, 0, sizeof h.reason) || !memchr(h.error, 0, sizeof h.error) ||
            h.attempt < 0)
            abort();
    }
    empty_amqp_pool(&pool);
    return 0;
}
