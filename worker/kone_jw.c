/* kone_jw.c: the request frames' JSON writer (see kone_jw.h).
 *
 * One buffer, grown by doubling, always keeping a byte spare for the NUL that
 * kd_jw_finish writes. Escaping copies each run of plain bytes with one memcpy, so a
 * string with nothing to escape (nearly all of them) costs a scan and a copy.
 */
#include "kone_jw.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KD_JW_MIN_CAP 16
#define KD_JW_INT_MAX 21 /* "-9223372036854775808" and its NUL */

void kd_jw_init(kd_jw *w, size_t hint)
{
    memset(w, 0, sizeof *w);
    w->cap = hint < KD_JW_MIN_CAP ? KD_JW_MIN_CAP : hint;
    w->buf = malloc(w->cap);
    if (!w->buf) {
        /* GCOVR_EXCL_START: allocation failure */
        w->cap = 0;
        w->err = true;
        /* GCOVR_EXCL_STOP */
    }
}

char *kd_jw_finish(kd_jw *w)
{
    char *s = w->buf;
    if (w->err) {
        free(s);
        s = NULL;
    } else {
        s[w->len] = '\0';
    }
    memset(w, 0, sizeof *w);
    return s;
}

/* Room for n more bytes and the NUL; false (err set) when it cannot be had. */
static bool reserve(kd_jw *w, size_t n)
{
    if (w->err)
        return false;
    if (n < w->cap - w->len)
        return true;
    return kd_jw_grow(w, n);
}

bool kd_jw_grow(kd_jw *w, size_t n)
{
    if (w->err)
        return false;
    if (n < w->cap - w->len)
        return true;
    if (n > SIZE_MAX / 2 - w->len - 1) {
        w->err = true;
        return false;
    }
    size_t cap = w->cap ? w->cap : KD_JW_MIN_CAP; /* 0: used again after finish */
    while (cap <= w->len + n)
        cap *= 2;
    char *b = realloc(w->buf, cap);
    if (!b) {
        /* GCOVR_EXCL_START: allocation failure */
        w->err = true; /* the old buffer stays, for kd_jw_finish to free */
        return false;
        /* GCOVR_EXCL_STOP */
    }
    w->buf = b;
    w->cap = cap;
    return true;
}

static void put(kd_jw *w, const char *p, size_t n)
{
    kd_jw_raw(w, p, n);
}

static void put_c(kd_jw *w, char c)
{
    if (reserve(w, 1))
        w->buf[w->len++] = c;
}

static void sep(kd_jw *w)
{
    if (w->comma)
        put_c(w, ',');
}

/* The escaped text of s, unquoted, as json_dumps writes it (see kone_jw.h). */
static void put_escaped(kd_jw *w, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s;
    for (;;) {
        const unsigned char *run = p;
        while (*p >= 0x20 && *p != '"' && *p != '\\')
            p++;
        put(w, (const char *)run, (size_t)(p - run));
        if (!*p)
            break;
        char esc[6] = {'\\', (char)*p, 0, 0, 0, 0};
        size_t n = 2;
        switch (*p) {
        case '"':
        case '\\': break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            n = 6;
        }
        put(w, esc, n);
        p++;
    }
}

/* The quoted, escaped text of s. */
static void put_string(kd_jw *w, const char *s)
{
    put_c(w, '"');
    put_escaped(w, s);
    put_c(w, '"');
}

void kd_jw_esc(kd_jw *w, const char *s)
{
    if (!s) {
        w->err = true;
        return;
    }
    put_escaped(w, s);
}

/* An object or array opens like a value (after a comma if one precedes it) and takes no
 * comma before its first member; once closed, it is a value the next one follows. */
static void open_c(kd_jw *w, char c)
{
    sep(w);
    put_c(w, c);
    w->comma = false;
}

static void close_c(kd_jw *w, char c)
{
    put_c(w, c);
    w->comma = true;
}

void kd_jw_obj_begin(kd_jw *w)
{
    open_c(w, '{');
}
void kd_jw_obj_end(kd_jw *w)
{
    close_c(w, '}');
}
void kd_jw_arr_begin(kd_jw *w)
{
    open_c(w, '[');
}
void kd_jw_arr_end(kd_jw *w)
{
    close_c(w, ']');
}

/* A key and a string value are both a quoted string after the separator; a NULL one marks
 * the writer failed. Returns false then. */
static bool put_string_item(kd_jw *w, const char *s)
{
    sep(w);
    if (!s) {
        w->err = true;
        return false;
    }
    put_string(w, s);
    return true;
}

void kd_jw_key(kd_jw *w, const char *key)
{
    if (!put_string_item(w, key))
        return;
    put_c(w, ':');
    w->comma = false;
}

void kd_jw_str(kd_jw *w, const char *s)
{
    if (put_string_item(w, s))
        w->comma = true;
}

/* "00" to "99": two digits per step, from the end (the compiler turns / 100 into a multiply). */
static const char digit_pairs[201] = "00010203040506070809"
                                     "10111213141516171819"
                                     "20212223242526272829"
                                     "30313233343536373839"
                                     "40414243444546474849"
                                     "50515253545556575859"
                                     "60616263646566676869"
                                     "70717273747576777879"
                                     "80818283848586878889"
                                     "90919293949596979899";

/* 10^0 .. 10^19 */
static const uint64_t pow10[20] = {1ULL,
                                   10ULL,
                                   100ULL,
                                   1000ULL,
                                   10000ULL,
                                   100000ULL,
                                   1000000ULL,
                                   10000000ULL,
                                   100000000ULL,
                                   1000000000ULL,
                                   10000000000ULL,
                                   100000000000ULL,
                                   1000000000000ULL,
                                   10000000000000ULL,
                                   100000000000000ULL,
                                   1000000000000000ULL,
                                   10000000000000000ULL,
                                   100000000000000000ULL,
                                   1000000000000000000ULL,
                                   10000000000000000000ULL};

size_t kd_jw_uint_text(char *out, uint64_t u)
{
    /* the length first, so the digits go straight to their places (no reversed copy): from
     * the bit length (log10(2) ~ 1233 / 4096), one compare to settle it, where a division a
     * digit cost ~70 instructions for a microsecond time (the ledger writes three a job) */
    unsigned bits = 64 - (unsigned)__builtin_clzll(u | 1);
    size_t n = ((bits * 1233) >> 12) + 1; /* the digits of 2^bits - 1, or one more */
    if (n > 1 && u < pow10[n - 1])
        n--;
    char *p = out + n;
    while (u >= 100) {
        const char *d = digit_pairs + (u % 100) * 2;
        u /= 100;
        *--p = d[1];
        *--p = d[0];
    }
    if (u >= 10) {
        *--p = digit_pairs[u * 2 + 1];
        *--p = digit_pairs[u * 2];
    } else {
        *--p = (char)('0' + u);
    }
    return n;
}

size_t kd_jw_int_text(char *out, int64_t v)
{
    if (v >= 0)
        return kd_jw_uint_text(out, (uint64_t)v);
    /* the magnitude as unsigned, so INT64_MIN needs no special case */
    out[0] = '-';
    return 1 + kd_jw_uint_text(out + 1, 0 - (uint64_t)v);
}

void kd_jw_num(kd_jw *w, int64_t v)
{
    if (reserve(w, KD_JW_INT_MAX))
        w->len += kd_jw_int_text(w->buf + w->len, v);
}

void kd_jw_int(kd_jw *w, int64_t v)
{
    sep(w);
    if (!reserve(w, KD_JW_INT_MAX))
        return;
    w->len += kd_jw_int_text(w->buf + w->len, v);
    w->buf[w->len] = '\0';
    w->comma = true;
}

void kd_jw_kstr(kd_jw *w, const char *key, const char *s)
{
    kd_jw_key(w, key);
    kd_jw_str(w, s);
}

void kd_jw_kint(kd_jw *w, const char *key, int64_t v)
{
    kd_jw_key(w, key);
    kd_jw_int(w, v);
}
