/* idmap.c: see idmap.h. */
#include "idmap.h"

#include <stdlib.h>

static char tomb_mark;
#define TOMB ((void *)&tomb_mark)
#define MIN_CAP 64

/* splitmix64's finaliser: request ids count up by one, so their low bits alone would make
 * long runs of neighbouring entries */
static size_t slot_of(int64_t key, size_t cap)
{
    uint64_t x = (uint64_t)key;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (size_t)x & (cap - 1);
}

static int resize(kd_idmap *m, size_t cap)
{
    kd_idmap_entry *e = calloc(cap, sizeof *e);
    if (!e)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        kd_idmap_entry *o = &m->e[i];
        if (!o->val || o->val == TOMB)
            continue;
        size_t j = slot_of(o->key, cap);
        while (e[j].val)
            j = (j + 1) & (cap - 1);
        e[j] = *o;
    }
    free(m->e);
    m->e = e;
    m->cap = cap;
    m->used = m->n;
    return 0;
}

int kd_idmap_put(kd_idmap *m, int64_t key, void *val)
{
    if (!val)
        return -1;
    if ((m->used + 1) * 2 > m->cap) {
        /* mostly tombstones: the same size, cleaned; else twice the size */
        size_t cap = m->cap < MIN_CAP ? MIN_CAP : (m->n + 1) * 4 <= m->cap ? m->cap : m->cap * 2;
        if (resize(m, cap))
            return -1;
    }
    size_t mask = m->cap - 1, i = slot_of(key, m->cap), tomb = m->cap;
    for (; m->e[i].val; i = (i + 1) & mask) {
        if (m->e[i].val == TOMB) {
            if (tomb == m->cap)
                tomb = i;
        } else if (m->e[i].key == key && m->e[i].val == val) {
            return 0;
        }
    }
    if (tomb != m->cap) {
        i = tomb; /* reuse a tombstone: used unchanged */
    } else {
        m->used++;
    }
    m->e[i].key = key;
    m->e[i].val = val;
    m->n++;
    return 0;
}

bool kd_idmap_del(kd_idmap *m, int64_t key, const void *val)
{
    if (!m->cap || !val)
        return false;
    size_t mask = m->cap - 1;
    for (size_t i = slot_of(key, m->cap); m->e[i].val; i = (i + 1) & mask)
        if (m->e[i].val == val && m->e[i].key == key) {
            m->e[i].val = TOMB;
            m->n--;
            return true;
        }
    return false;
}

void *kd_idmap_next(const kd_idmap *m, int64_t key, size_t *it)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1, start = slot_of(key, m->cap);
    /* *it counts the entries already looked at from start; the table is never full (at
     * most half used), so the probe always meets an empty entry */
    for (size_t i = (start + *it) & mask; m->e[i].val; i = (i + 1) & mask) {
        ++*it;
        if (m->e[i].val != TOMB && m->e[i].key == key)
            return m->e[i].val;
    }
    return NULL;
}

void kd_idmap_free(kd_idmap *m)
{
    free(m->e);
    m->e = NULL;
    m->cap = m->n = m->used = 0;
}
