/* idmap: a hash multimap from 64-bit ids to pointers, for the KONE client's O(1) matching of
 * frames to jobs (by request id, by call session id; kone_call.c).
 *
 * Open addressing with linear probing: one allocation for the whole table, none per entry,
 * doubled when more than half full (tombstones counted), so a lookup looks at a handful of
 * entries however many ids are held. A key may hold several values (kd_idmap_next walks
 * them); a (key, value) pair is held once at most. Values are never NULL. Not thread-safe:
 * one owner (the KONE loop thread). A zeroed kd_idmap is an empty map.
 */
#ifndef KD_WORKER_IDMAP_H
#define KD_WORKER_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kd_idmap_entry {
    int64_t key;
    void *val; /* NULL: empty; kd_idmap's tombstone: deleted */
} kd_idmap_entry;

typedef struct kd_idmap {
    kd_idmap_entry *e;
    size_t cap;  /* entries (a power of two, or 0) */
    size_t n;    /* pairs held */
    size_t used; /* pairs held + tombstones */
} kd_idmap;

/* Holds (key, val); already held is fine. 0, or -1 when out of memory (the map unchanged). */
int kd_idmap_put(kd_idmap *m, int64_t key, void *val);
/* Lets go of (key, val); false when it was not held. */
bool kd_idmap_del(kd_idmap *m, int64_t key, const void *val);
/* The values of key, one per call: *it = 0 to start; NULL after the last. The map must not
 * change during the walk. */
void *kd_idmap_next(const kd_idmap *m, int64_t key, size_t *it);
void kd_idmap_free(kd_idmap *m);

#endif
