/* kone_jview.c: see kone_jview.h. Pure functions; no allocation on the scanner's path. */
#include "kone_jview.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ the scanner */

typedef struct {
    const char *p, *end;
    kj_view *v;
    kj_member_fn each; /* NULL, or called with each member of the root once it is scanned */
    void *user;
    bool stopped; /* each said stop */
} kj_sc;

static void skip_ws_run(kj_sc *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* Inline, one compare where there is no whitespace (KONE's frames have none between tokens). */
__attribute__((always_inline)) static inline void skip_ws(kj_sc *s)
{
    if (s->p < s->end && (unsigned char)*s->p <= ' ')
        skip_ws_run(s);
}

/* A new node with its key (NULL, 0: none), linked after *last in its parent (or as the
 * parent's first member). -1 when the view is full. */
static int new_node(kj_sc *s, int parent, int *last, const char *key, size_t key_len)
{
    kj_view *v = s->v;
    if (v->count >= v->cap)
        return -1;
    int i = v->count++;
    /* every field a reader looks at for the node's type is set by the scanner: no memset
     * (a node is written once per value of every frame) */
    v->n[i].child = v->n[i].next = -1;
    v->n[i].key = key;
    v->n[i].key_len = key_len;
    if (parent >= 0) {
        if (*last >= 0)
            v->n[*last].next = i;
        else
            v->n[parent].child = i;
        *last = i;
    }
    return i;
}

/* A string's bytes, between its quotes: printable ASCII without escapes only (jansson decides
 * the rest: escapes, UTF-8 and control characters, which it refuses). The string bytes are
 * most of a frame, so they are looked at 16 at a time where SSE2 is (every x86-64), 8 at a
 * time elsewhere. */
#if defined(__SSE2__)
#include <emmintrin.h>

/* The offset of the first byte of the 16 at p that ends the plain case ('"', '\\', below
 * 0x20 or at or above 0x80: the last two are one signed compare, < 0x20), or 16 if none. */
static unsigned stop16(const char *p)
{
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i stop = _mm_or_si128(_mm_cmplt_epi8(x, _mm_set1_epi8(0x20)),
                                _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')),
                                             _mm_cmpeq_epi8(x, _mm_set1_epi8('\\'))));
    unsigned m = (unsigned)_mm_movemask_epi8(stop);
    return m ? (unsigned)__builtin_ctz(m) : 16;
}
#define STOP_STRIDE 16
#define stop_at stop16
#else
/* The same for 8 bytes: the has-zero-byte test, (x - 0x01..) & ~x & 0x80.., is exact for "some
 * byte is zero" and, once every byte is below 0x80, (x - n * 0x01..) & ~x & 0x80.. is exact for
 * "some byte is below n". Says only whether one of them stops (8) or not: the caller's byte
 * loop finds which. */
static unsigned stop8(const char *p)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t x;
    memcpy(&x, p, 8);
    if (x & high)
        return 0;
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
    return ((((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b)) & high) ? 0 : 8;
}
#define STOP_STRIDE 8
#define stop_at stop8
#endif

/* Inline: ~45 strings a job, keys most of them, a call each cost more than a short key's
 * scan (issue 17). */
__attribute__((always_inline)) static inline bool scan_string(kj_sc *s, const char **out,
                                                              size_t *len)
{
    if (s->p >= s->end || *s->p != '"')
        return false;
    const char *a = ++s->p;
    /* a block at a time while the frame has one left: straight to the byte that stops */
    while (s->end - s->p >= STOP_STRIDE) {
        unsigned k = stop_at(s->p);
        s->p += k;
        if (k < STOP_STRIDE)
            break;
    }
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            *out = a;
            *len = (size_t)(s->p - a);
            s->p++;
            return true;
        }
        if (c < 0x20 || c >= 0x80 || c == '\\')
            return false;
        s->p++;
    }
    return false;
}

/* An integer of at most 18 digits (so it fits int64_t exactly); a fraction, an exponent or a
 * leading zero before a digit are left to jansson. */
static bool scan_int(kj_sc *s, int64_t *out)
{
    bool neg = s->p < s->end && *s->p == '-';
    if (neg)
        s->p++;
    const char *a = s->p;
    /* digits and value in one pass; a 19th digit stops it (the test after the loop refuses),
     * and 19 digits fit in 64 bits unsigned */
    uint64_t x = 0;
    const char *stop = s->end - a > 19 ? a + 19 : s->end;
    for (unsigned d; s->p < stop && (d = (unsigned)(unsigned char)*s->p - '0') <= 9; s->p++)
        x = x * 10 + d;
    size_t n = (size_t)(s->p - a);
    if (n == 0 || n > 18 || (n > 1 && *a == '0'))
        return false;
    if (s->p < s->end &&
        (*s->p == '.' || *s->p == 'e' || *s->p == 'E' || (*s->p >= '0' && *s->p <= '9')))
        return false;
    *out = neg ? -(int64_t)x : (int64_t)x; /* n <= 18: x < 10^18 */
    return true;
}

static bool scan_literal(kj_sc *s, const char *word, kj_type t, kj_node *n)
{
    size_t k = strlen(word);
    if ((size_t)(s->end - s->p) < k || memcmp(s->p, word, k) != 0)
        return false;
    s->p += k;
    n->type = t;
    return true;
}

static bool scan_value(kj_sc *s, int node, int depth);

/* The members of an object or the elements of an array (after its opening bracket). */
/* root: the root object's members (each is called for them); a constant at every call, so the
 * nested levels' copy of this loop has no test for it */
static inline bool scan_members(kj_sc *s, int node, int depth, bool object, bool root)
{
    char close = object ? '}' : ']';
    int last = -1;
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return true;
    }
    for (;;) {
        const char *key = NULL;
        size_t key_len = 0;
        if (object) {
            if (!scan_string(s, &key, &key_len))
                return false;
            if (s->p >= s->end || *s->p != ':') { /* the colon right after the key, mostly */
                skip_ws(s);
                if (s->p >= s->end || *s->p != ':')
                    return false;
            }
            s->p++;
            skip_ws(s);
        }
        int m = new_node(s, node, &last, key, key_len);
        if (m < 0)
            return false;
        if (!scan_value(s, m, depth + 1))
            return false;
        if (root && s->each) {
            kj_each e = s->each(s->v, &s->v->n[m], s->user);
            if (e == KJ_EACH_STOP) {
                s->stopped = true;
                return false;
            }
            if (e == KJ_EACH_DONE)
                s->each = NULL;
        }
        if (s->p < s->end && *s->p == ',') { /* the comma right after the value, mostly */
            s->p++;
            skip_ws(s);
            continue;
        }
        skip_ws(s);
        if (s->p >= s->end)
            return false;
        if (*s->p == close) {
            s->p++;
            return true;
        }
        if (*s->p != ',')
            return false;
        s->p++;
        skip_ws(s);
    }
}

static bool scan_value(kj_sc *s, int node, int depth)
{
    if (depth > KJ_SCAN_DEPTH || s->p >= s->end)
        return false;
    kj_node *n = &s->v->n[node];
    switch (*s->p) {
    case '{':
        s->p++;
        n->type = KJ_OBJECT;
        return scan_members(s, node, depth, true, false);
    case '[':
        s->p++;
        n->type = KJ_ARRAY;
        return scan_members(s, node, depth, false, false);
    case '"': n->type = KJ_STRING; return scan_string(s, &n->s, &n->len);
    case 't': return scan_literal(s, "true", KJ_TRUE, n);
    case 'f': return scan_literal(s, "false", KJ_FALSE, n);
    case 'n': return scan_literal(s, "null", KJ_NULL, n);
    default: n->type = KJ_INT; return scan_int(s, &n->i);
    }
}

kj_scan_result kj_scan_each(kj_view *v, const char *buf, size_t len, kj_member_fn each, void *user)
{
    if (!buf || !v->n || v->cap < 1)
        return KJ_SCAN_NOT_PLAIN;
    kj_sc s = {.p = buf, .end = buf + len, .v = v, .each = each, .user = user};
    v->count = 0;
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{') /* jansson says what else it is */
        return KJ_SCAN_NOT_PLAIN;
    int last = -1;
    int root = new_node(&s, -1, &last, NULL, 0);
    v->n[root].type = KJ_OBJECT;
    s.p++; /* the '{' */
    if (!scan_members(&s, root, 1, true, true))
        return s.stopped ? KJ_SCAN_STOPPED : KJ_SCAN_NOT_PLAIN;
    skip_ws(&s);
    return s.p == s.end ? KJ_SCAN_WHOLE : KJ_SCAN_NOT_PLAIN;
}

bool kj_scan(kj_view *v, const char *buf, size_t len)
{
    return kj_scan_each(v, buf, len, NULL, NULL) == KJ_SCAN_WHOLE;
}

/* ------------------------------------------------------------------ from a jansson tree */

static size_t count_nodes(const json_t *j)
{
    size_t n = 1;
    if (json_is_object(j)) {
        const char *k;
        const json_t *m;
        json_object_foreach((json_t *)j, k, m) n += count_nodes(m);
    } else if (json_is_array(j)) {
        size_t i;
        const json_t *m;
        json_array_foreach(j, i, m) n += count_nodes(m);
    }
    return n;
}

static int add_tree(kj_view *v, const json_t *j, const char *key, int parent, int *last)
{
    int i = v->count++;
    kj_node *n = &v->n[i];
    memset(n, 0, sizeof *n);
    n->child = n->next = -1;
    n->key = key;
    n->key_len = key ? strlen(key) : 0;
    if (parent >= 0) {
        if (*last >= 0)
            v->n[*last].next = i;
        else
            v->n[parent].child = i;
        *last = i;
    }
    int mine = -1;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        v->n[i].type = KJ_OBJECT;
        const char *k;
        const json_t *m;
        json_object_foreach((json_t *)j, k, m) add_tree(v, m, k, i, &mine);
        break;
    }
    case JSON_ARRAY: {
        v->n[i].type = KJ_ARRAY;
        size_t x;
        const json_t *m;
        json_array_foreach(j, x, m) add_tree(v, m, NULL, i, &mine);
        break;
    }
    case JSON_STRING:
        v->n[i].type = KJ_STRING;
        v->n[i].s = json_string_value(j);
        v->n[i].len = strlen(v->n[i].s); /* jansson refuses NUL in strings (no JSON_ALLOW_NUL) */
        break;
    case JSON_INTEGER:
        v->n[i].type = KJ_INT;
        v->n[i].i = (int64_t)json_integer_value(j);
        break;
    case JSON_REAL:
        v->n[i].type = KJ_REAL;
        v->n[i].d = json_real_value(j);
        break;
    case JSON_TRUE: v->n[i].type = KJ_TRUE; break;
    case JSON_FALSE: v->n[i].type = KJ_FALSE; break;
    case JSON_NULL: v->n[i].type = KJ_NULL; break;
    }
    return i;
}

bool kj_from_jansson(kj_view *v, const json_t *root)
{
    size_t n = count_nodes(root);
    v->n = calloc(n, sizeof *v->n);
    if (!v->n)
        return false;
    v->cap = (int)n;
    v->count = 0;
    int last = -1;
    add_tree(v, root, NULL, -1, &last);
    return true;
}

void kj_free(kj_view *v)
{
    free(v->n);
    v->n = NULL;
    v->cap = v->count = 0;
}

/* ------------------------------------------------------------------ reading */

const kj_node *kj_get(const kj_view *v, const kj_node *obj, const char *key)
{
    if (!obj || obj->type != KJ_OBJECT)
        return NULL;
    size_t k = strlen(key);
    const kj_node *found = NULL;
    for (int i = obj->child; i >= 0; i = v->n[i].next)
        if (v->n[i].key_len == k && memcmp(v->n[i].key, key, k) == 0)
            found = &v->n[i]; /* the last of duplicates wins, as in jansson */
    return found;
}

const kj_node *kj_first(const kj_view *v, const kj_node *arr)
{
    return arr && arr->type == KJ_ARRAY && arr->child >= 0 ? &v->n[arr->child] : NULL;
}

const kj_node *kj_next(const kj_view *v, const kj_node *m)
{
    return m && m->next >= 0 ? &v->n[m->next] : NULL;
}

bool kj_str_is(const kj_node *s, const char *text)
{
    return s && s->type == KJ_STRING && s->len == strlen(text) && memcmp(s->s, text, s->len) == 0;
}

bool kj_str_starts(const kj_node *s, const char *prefix)
{
    size_t k = strlen(prefix);
    return s && s->type == KJ_STRING && s->len >= k && memcmp(s->s, prefix, k) == 0;
}
