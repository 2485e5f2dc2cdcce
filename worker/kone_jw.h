/* kone_jw: a tiny JSON writer for the request frames of kone_msg.c.
 *
 * Why not jansson here: the worker's profile showed building a jansson tree (one malloc
 * per node) and json_dumps-ing it for every request, two requests per job. The frames
 * are small and fixed in shape, so they are written straight into one growable buffer.
 * jansson still parses every incoming frame (kone_msg.c); this writes, nothing more.
 *
 * Output is byte-identical to json_dumps(..., JSON_COMPACT) for the same values in the
 * same order (tests/unit/test_worker_kone_msg.c proves it): '"' and '\\' escaped,
 * \b \f \n \r \t by name, every other byte below 0x20 as \u00XX (upper-case hex, as
 * jansson writes it), '/' and bytes >= 0x80 unchanged (the caller's strings are UTF-8).
 *
 * Invariants: commas are the writer's business (a key, or an array element, after a
 * sibling gets one); the caller only pairs begin/end and puts a key before each value of
 * an object. An allocation failure (or a NULL string) sets `err` and makes every later
 * call a no-op, so a builder writes the whole frame and checks once, at kd_jw_finish.
 */
#ifndef KD_WORKER_KONE_JW_H
#define KD_WORKER_KONE_JW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct kd_jw {
    char *buf;  /* malloc'd, NUL-terminated once anything is written */
    size_t len; /* bytes written, without the NUL */
    size_t cap; /* bytes allocated */
    bool comma; /* the next key or array element needs a ',' before it */
    bool err;   /* an allocation failed or a NULL string was given */
} kd_jw;

/* Starts an empty writer; `hint` is the first allocation (grown by doubling after). */
void kd_jw_init(kd_jw *w, size_t hint);
/* The text (malloc'd, NUL-terminated, the caller frees it), or NULL if err was set. The
 * writer is empty afterwards either way, and may be used again. */
char *kd_jw_finish(kd_jw *w);

void kd_jw_obj_begin(kd_jw *w);
void kd_jw_obj_end(kd_jw *w);
void kd_jw_arr_begin(kd_jw *w);
void kd_jw_arr_end(kd_jw *w);
/* A member name; the value written next is its value. */
void kd_jw_key(kd_jw *w, const char *key);
/* A string value, escaped; NULL sets err (as json_string(NULL) failing would). */
void kd_jw_str(kd_jw *w, const char *s);
void kd_jw_int(kd_jw *w, int64_t v);
/* v in decimal into out (at least KD_JW_INT_TEXT bytes), no NUL; returns the length. What
 * snprintf("%" PRId64) writes, at a tenth of its cost (it is on every frame's path). */
#define KD_JW_INT_TEXT 20
size_t kd_jw_int_text(char *out, int64_t v);
/* The same for an unsigned value. */
size_t kd_jw_uint_text(char *out, uint64_t u);

/* ---- preformatted text, for a builder whose frame has a fixed shape (kd_kone_msg_job, one
 * per job): its keys, quotes, colons and commas written as literals, not one call each. The
 * commas are then the builder's own: these do not read or set `comma`, so they are not mixed
 * with the calls above inside one object. */

/* Room for n more bytes and the NUL (the slow side of kd_jw_raw); false with err set when it
 * cannot be had. */
bool kd_jw_grow(kd_jw *w, size_t n);
/* n bytes as they are. Inline so that a literal's constant length makes the copy a few moves. */
static inline void kd_jw_raw(kd_jw *w, const char *p, size_t n)
{
    if (!w->err && (n < w->cap - w->len || kd_jw_grow(w, n))) {
        memcpy(w->buf + w->len, p, n);
        w->len += n;
    }
}
/* A string literal, without its NUL. */
#define KD_JW_LIT(w, lit) kd_jw_raw((w), "" lit, sizeof(lit) - 1)
/* The escaped text of s without quotes; NULL sets err. */
void kd_jw_esc(kd_jw *w, const char *s);
/* v's digits alone. */
void kd_jw_num(kd_jw *w, int64_t v);

/* key + value in one call: the builders' common case. */
void kd_jw_kstr(kd_jw *w, const char *key, const char *s);
void kd_jw_kint(kd_jw *w, const char *key, int64_t v);

#endif
