/* amqp_headers.c: the x-kd-* message headers as AMQP field tables (see kd_amqp.h).
 *
 * Integers go out as signed 64-bit ('l'), strings as long strings ('S'); only set fields
 * are written, so a first publish carries no headers at all. Reading is lenient about
 * integer widths (other clients, e.g. a replay script in Python, may write an 'I' or a
 * 'b'), and ignores keys it does not know (x-death, application headers).
 */
#include "amqp_int.h"

#include <string.h>

int kd_amqp_headers_encode(const kd_amqp_headers *h, amqp_table_entry_t *e)
{
    int n = 0;
    if (h->attempt > 0)
        e[n++] = kd_amqp_i64_entry("x-kd-attempt", h->attempt);
    if (h->requeues > 0)
        e[n++] = kd_amqp_i64_entry("x-kd-requeues", h->requeues);
    if (h->first_seen_ms > 0)
        e[n++] = kd_amqp_i64_entry("x-kd-first-seen", h->first_seen_ms);
    if (h->last_error[0])
        e[n++] = kd_amqp_str_entry("x-kd-last-error", h->last_error);
    if (h->reason[0])
        e[n++] = kd_amqp_str_entry("x-kd-reason", h->reason);
    if (h->error[0])
        e[n++] = kd_amqp_str_entry("x-kd-error", h->error);
    if (h->replayed_ms > 0)
        e[n++] = kd_amqp_i64_entry("x-kd-replayed", h->replayed_ms);
    return n;
}

static bool int_value(const amqp_field_value_t *v, int64_t *out)
{
    switch (v->kind) {
    case AMQP_FIELD_KIND_I8: *out = v->value.i8; return true;
    case AMQP_FIELD_KIND_U8: *out = v->value.u8; return true;
    case AMQP_FIELD_KIND_I16: *out = v->value.i16; return true;
    case AMQP_FIELD_KIND_U16: *out = v->value.u16; return true;
    case AMQP_FIELD_KIND_I32: *out = v->value.i32; return true;
    case AMQP_FIELD_KIND_U32: *out = v->value.u32; return true;
    case AMQP_FIELD_KIND_I64: *out = v->value.i64; return true;
    case AMQP_FIELD_KIND_U64:
        *out = v->value.u64 > INT64_MAX ? INT64_MAX : (int64_t)v->value.u64;
        return true;
    default: return false;
    }
}

static void str_value(const amqp_field_value_t *v, char *out, size_t cap)
{
    if (v->kind == AMQP_FIELD_KIND_UTF8 || v->kind == AMQP_FIELD_KIND_BYTES)
        kd_amqp_str(v->value.bytes, out, cap);
}

static bool key_is(const amqp_table_entry_t *e, const char *key)
{
    size_t n = strlen(key);
    return e->key.len == n && memcmp(e->key.bytes, key, n) == 0;
}

void kd_amqp_headers_decode(const amqp_table_t *t, kd_amqp_headers *h, int64_t *delivery_count)
{
    memset(h, 0, sizeof *h);
    if (delivery_count)
        *delivery_count = 0;
    for (int i = 0; i < t->num_entries; i++) {
        const amqp_table_entry_t *e = &t->entries[i];
        int64_t n;
        if (key_is(e, "x-delivery-count")) {
            if (delivery_count && int_value(&e->value, &n))
                *delivery_count = n;
        } else if (key_is(e, "x-kd-attempt")) {
            if (int_value(&e->value, &n))
                h->attempt = n < 0 ? 0 : n > 1000000 ? 1000000 : (int)n;
        } else if (key_is(e, "x-kd-requeues")) {
            if (int_value(&e->value, &n))
                h->requeues = n < 0 ? 0 : n > 1000000 ? 1000000 : (int)n;
        } else if (key_is(e, "x-kd-first-seen")) {
            if (int_value(&e->value, &n) && n > 0)
                h->first_seen_ms = n;
        } else if (key_is(e, "x-kd-last-error")) {
            str_value(&e->value, h->last_error, sizeof h->last_error);
        } else if (key_is(e, "x-kd-reason")) {
            str_value(&e->value, h->reason, sizeof h->reason);
        } else if (key_is(e, "x-kd-error")) {
            str_value(&e->value, h->error, sizeof h->error);
        } else if (key_is(e, "x-kd-replayed")) {
            if (int_value(&e->value, &n) && n > 0)
                h->replayed_ms = n;
        }
    }
}
