/* kone_jview: a read-only view of one incoming JSON frame, without a tree of allocations.
 *
 * Why: every frame KONE sends (answers, call results, call states: most of a job's frames)
 * used to be parsed into a jansson tree, one malloc per value, only for kone_msg.c to read a
 * dozen fields and free it again. The view is a flat array of nodes that point into the frame
 * itself, filled by a strict scanner (kj_scan) in one pass with no allocation.
 *
 * The scanner takes only the plain case: ASCII strings without escapes, integers of at most
 * 18 digits, at most KJ_SCAN_NODES values, nesting at most KJ_SCAN_DEPTH. Anything else, and
 * anything that is not valid JSON, makes it answer "not mine" (false): the caller then parses
 * with jansson and builds the same view from its tree (kj_from_jansson), so error messages and
 * the rare frames (escapes, non-ASCII text, reals) keep jansson's exact behaviour. Whatever
 * the scanner accepts, jansson accepts with the same values (duplicate keys: the last wins, as
 * in jansson): tests/unit/test_worker_kone_jview.c and the kone_msg fuzz target check that
 * both paths give the same parsed frame.
 */
#ifndef KD_WORKER_KONE_JVIEW_H
#define KD_WORKER_KONE_JVIEW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KJ_SCAN_NODES 128 /* values in a frame the scanner takes (KONE's have < 40) */
#define KJ_SCAN_DEPTH 16  /* nesting the scanner takes (KONE's is <= 4) */

typedef enum {
    KJ_NONE = 0,
    KJ_OBJECT,
    KJ_ARRAY,
    KJ_STRING,
    KJ_INT,
    KJ_REAL,
    KJ_TRUE,
    KJ_FALSE,
    KJ_NULL,
} kj_type;

/* One value. Strings and keys point into the frame (scanner) or into jansson's tree (which
 * must outlive the view); they hold no NUL and are not NUL-terminated. */
typedef struct kj_node {
    kj_type type;
    int32_t child; /* object/array: index of the first member, -1 if empty */
    int32_t next;  /* the next member of the parent, -1 if last */
    const char *key;
    size_t key_len; /* object members only */
    const char *s;
    size_t len; /* KJ_STRING */
    int64_t i;  /* KJ_INT */
    double d;   /* KJ_REAL */
} kj_node;

typedef struct kj_view {
    kj_node *n; /* n[0] is the root */
    int count, cap;
} kj_view;

/* Scans buf into v (v->n with v->cap nodes, set by the caller). True when the frame is a
 * JSON object in the plain case above; false hands it to jansson. Never reads past len. */
bool kj_scan(kj_view *v, const char *buf, size_t len);

/* kj_scan, with each member of the root handed to each (the view so far, the member with its
 * key and its whole value) as soon as it is scanned: KJ_EACH_STOP stops the scan there
 * (KJ_SCAN_STOPPED; what follows is not read, so not checked either). Lets a reader drop a
 * frame by its first members (a call state nobody follows, by its subtopic) for the cost of
 * scanning those alone. KJ_EACH_DONE: no more calls, the scan goes on to the end. */
typedef enum { KJ_EACH_GO = 0, KJ_EACH_STOP, KJ_EACH_DONE } kj_each;
typedef kj_each (*kj_member_fn)(const kj_view *v, const kj_node *member, void *user);
typedef enum {
    KJ_SCAN_NOT_PLAIN = 0, /* kj_scan's false: jansson's to read */
    KJ_SCAN_WHOLE,         /* kj_scan's true */
    KJ_SCAN_STOPPED,       /* each said stop */
} kj_scan_result;
kj_scan_result kj_scan_each(kj_view *v, const char *buf, size_t len, kj_member_fn each, void *user);

/* The same view of a jansson tree; malloc's v->n (free it with kj_free). False when out of
 * memory. */
bool kj_from_jansson(kj_view *v, const json_t *root);
void kj_free(kj_view *v);

/* The member `key` of obj (the last one of that name), or NULL when obj is NULL, not an
 * object, or has none. */
const kj_node *kj_get(const kj_view *v, const kj_node *obj, const char *key);
/* The first element of an array, or NULL. */
const kj_node *kj_first(const kj_view *v, const kj_node *arr);
/* The member after m in its parent, or NULL. */
const kj_node *kj_next(const kj_view *v, const kj_node *m);
/* A string node equal to text / starting with prefix. */
bool kj_str_is(const kj_node *s, const char *text);
bool kj_str_starts(const kj_node *s, const char *prefix);

#endif
