/* ledger_batch.c: the per-job kinds of a batch (claim, accept, done) as one statement per
 * kind, their per-job parameters as arrays (see ledger_int.h, issue 17): libpq costs the
 * worker ~7k instructions per statement and PostgreSQL an executor start-up, whatever the
 * statement does, and a job has three of them.
 *
 * Grouping keeps each job's order: the ops of one job never share a segment (a job met again
 * sends the segment so far first), and a lone op (renew, release, ...) sends it too, so every
 * statement about a job runs after the ones queued before it. Within a segment the kinds go
 * claim, accept, done; their jobs are all different rows.
 *
 * The arrays are text, every text element quoted and escaped (job ids and messages come from
 * users): `{"a\"b","c\\d",NULL}`; numbers and booleans bare; but the results (bytea): one
 * binary array, as the single statement sent each result binary.
 */
#include "ledger_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kd_log.h"

/* One array parameter being written, kept between batches (its buffer reused). */
typedef struct lg_text {
    char *p;
    size_t len, cap;
} lg_text;

/* The job ids of the segment being grouped: open addressing, cleared by a new generation. */
typedef struct lg_seen {
    unsigned gen, cap, n; /* cap: a power of two, at least twice n */
    struct {
        unsigned gen;
        const char *id;
    } * slot;
} lg_seen;

/* ------------------------------------------------------------------ the segment's jobs */

/* 8 bytes a step (FNV-1a's byte a step cost ~90 instructions a job id, three ids a job),
 * then mixed so that the table's low bits depend on every byte. */
static unsigned hash(const char *s)
{
    size_t n = strlen(s);
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ n, w;
    for (; n >= 8; n -= 8, s += 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xff51afd7ed558ccdULL;
    h ^= h >> 33; /* murmur3's finaliser: the low bits, which index the table, see every byte */
    h *= 0xc4ceb9fe1a85ec53ULL;
    return (unsigned)(h ^ h >> 33);
}

/* Adds id; 1 if it was there already. */
static int seen_add(lg_seen *s, const char *id)
{
    unsigned m = s->cap - 1;
    for (unsigned i = hash(id) & m;; i = (i + 1) & m) {
        if (s->slot[i].gen != s->gen) {
            s->slot[i].gen = s->gen;
            s->slot[i].id = id;
            s->n++;
            return 0;
        }
        if (!strcmp(s->slot[i].id, id))
            return 1;
    }
}

static void seen_clear(lg_seen *s)
{
    s->n = 0;
    if (++s->gen == 0) {
        /* GCOVR_EXCL_START: after 2^32 segments; no slot may look current */
        memset(s->slot, 0, s->cap * sizeof *s->slot);
        s->gen = 1;
        /* GCOVR_EXCL_STOP */
    }
}

/* Room for one more id; the segment's ids (in g) put again when the table grows. */
static lg_seen *seen_room(kd_ledger *l, const lg_groups *g)
{
    lg_seen *s = l->seen;
    if (s && 2 * (s->n + 1) <= s->cap)
        return s;
    if (!s && !(s = l->seen = calloc(1, sizeof *s)))
        return NULL; /* GCOVR_EXCL_LINE: allocation failure */
    unsigned cap = s->cap ? 2 * s->cap : 64;
    void *slot = calloc(cap, sizeof *s->slot);
    if (!slot)
        return NULL; /* GCOVR_EXCL_LINE: allocation failure */
    free(s->slot);
    s->slot = slot;
    s->cap = cap;
    s->gen = 1;
    s->n = 0;
    for (int k = 0; k < OP_GROUPED; k++)
        for (op *o = g->kind[k].head; o; o = o->next)
            seen_add(s, o->job_id);
    return s;
}

/* ------------------------------------------------------------------ array parameters */

static int reserve(lg_text *t, size_t more)
{
    if (t->len + more <= t->cap)
        return 0;
    size_t cap = t->cap * 2 > t->len + more ? t->cap * 2 : t->len + more + 256;
    char *p = realloc(t->p, cap);
    if (!p)
        return -1; /* GCOVR_EXCL_LINE: allocation failure */
    t->p = p;
    t->cap = cap;
    return 0;
}

/* n bytes at w (an array's text is built in pieces, NUL-terminated once whole). */
static char *put_bytes(char *w, const void *from, size_t n)
{
    memcpy(w, from, n);
    return w + n;
}

/* Numbers and booleans: bare in an array; everything else is text, quoted. */
static bool bare(lg_param p)
{
    switch (p) {
    case P_ATTEMPT:
    case P_SESSION:
    case P_SESSION_OR_0:
    case P_STATUS:
    case P_FAILURE:
    case P_KONE_STATUS:
    case P_STARTED:
    case P_FINISHED:
    case P_RTT:
    case P_REPLAYED: return true;
    default: return false;
    }
}

/* Appends one element (after a comma unless first): NULL bare, numbers and booleans bare,
 * text quoted with `"` and `\` escaped (copied a run at a time: they are rare). */
static int put_element(lg_text *t, const kd_ledger *l, const op *o, lg_param p)
{
    char num[24];
    const char *v = lg_param_text(l, o, p, num);
    size_t n = v ? strlen(v) : 4;
    if (reserve(t, 2 * n + 4))
        return -1; /* GCOVR_EXCL_LINE: allocation failure */
    char *w = t->p + t->len;
    if (t->len > 1)
        *w++ = ',';
    if (!v) {
        w = put_bytes(w, "NULL", 4);
    } else if (bare(p)) {
        w = put_bytes(w, v, n);
    } else {
        *w++ = '"';
        for (;;) {
            size_t run = strcspn(v, "\"\\");
            w = put_bytes(w, v, run);
            v += run;
            if (!*v)
                break;
            *w++ = '\\';
            *w++ = *v++;
        }
        *w++ = '"';
    }
    t->len = (size_t)(w - t->p);
    return 0;
}

static char *put32(char *w, uint32_t v)
{
    w[0] = (char)(v >> 24), w[1] = (char)(v >> 16), w[2] = (char)(v >> 8), w[3] = (char)v;
    return w + 4;
}

/* The results as one bytea[] in PostgreSQL's binary array format (array_recv: dimensions,
 * no NULLs, element type bytea, lower bound 1, then each element's length and bytes): copied
 * as they are, as the single statement sent them, where text would cost a hex digit pair a
 * byte here and its parsing in PostgreSQL (~500 bytes a result). */
static int put_results(lg_text *t, const op *first, int n)
{
    size_t need = 20;
    const op *o = first;
    for (int i = 0; i < n; i++, o = o->next)
        need += 4 + o->result_len;
    t->len = 0;
    if (reserve(t, need))
        return -1; /* GCOVR_EXCL_LINE: allocation failure */
    char *w = put32(put32(put32(put32(put32(t->p, 1), 0), 17 /* BYTEAOID */), (uint32_t)n), 1);
    for (o = first; n--; o = o->next) {
        w = put32(w, (uint32_t)o->result_len);
        if (o->result_len)
            w = put_bytes(w, o->result, o->result_len);
    }
    t->len = (size_t)(w - t->p);
    return 0;
}

/* The worker's own parameters are one value for the whole statement; the rest are per job. */
static bool scalar(lg_param p)
{
    return p == P_OWNER || p == P_LEASE || p == P_RETENTION || p == P_RETRY_AMBIG;
}

/* Sends the statement of the n ops from first (one kind). */
static int send_group(kd_ledger *l, const op *first, int n)
{
    if (!l->arrays && !(l->arrays = calloc(LG_MAX_PARAMS, sizeof *l->arrays)))
        return -1; /* GCOVR_EXCL_LINE: allocation failure */
    const unsigned char *params = lg_op_params[first->kind];
    char num[LG_MAX_PARAMS][24];
    const char *v[LG_MAX_PARAMS];
    int np = 0, lens[LG_MAX_PARAMS] = {0}, fmts[LG_MAX_PARAMS] = {0};
    for (; np < LG_MAX_PARAMS && params[np] != P_END; np++) {
        lg_param p = (lg_param)params[np];
        lg_text *t = &l->arrays[np];
        if (scalar(p)) {
            v[np] = lg_param_text(l, first, p, num[np]);
            continue;
        }
        if (p == P_RESULT) {
            if (put_results(t, first, n))
                return -1; /* GCOVR_EXCL_LINE: allocation failure */
            v[np] = t->p;
            lens[np] = (int)t->len;
            fmts[np] = 1;
            continue;
        }
        t->len = 0;
        if (reserve(t, 2))
            return -1; /* GCOVR_EXCL_LINE: allocation failure */
        t->p[t->len++] = '{';
        const op *o = first;
        for (int i = 0; i < n; i++, o = o->next)
            if (put_element(t, l, o, p))
                return -1; /* GCOVR_EXCL_LINE: allocation failure */
        if (reserve(t, 2))
            return -1; /* GCOVR_EXCL_LINE: allocation failure */
        t->p[t->len++] = '}';
        t->p[t->len] = '\0';
        v[np] = t->p;
    }
    return PQsendQueryPrepared(l->pg, lg_op_stmt[first->kind], np, v, lens, fmts, 0) ? 0 : -1;
}

/* ------------------------------------------------------------------ grouping */

static void splice(op_list *dst, op_list *src)
{
    if (!src->n)
        return;
    if (dst->tail)
        dst->tail->next = src->head;
    else
        dst->head = src->head;
    dst->tail = src->tail;
    dst->n += src->n;
    *src = (op_list){0};
}

int lg_group_send(kd_ledger *l, lg_groups *g)
{
    int rc = 0;
    for (int k = 0; k < OP_GROUPED && !rc; k++) {
        op *first = g->kind[k].head;
        int n = g->kind[k].n;
        if (!n)
            continue;
        first->group_n = n;
        splice(&l->batch, &g->kind[k]);
        rc = send_group(l, first, n);
    }
    if (l->seen)
        seen_clear(l->seen);
    return rc;
}

int lg_group_add(kd_ledger *l, lg_groups *g, op *o)
{
    int rc = 0;
    lg_seen *s = seen_room(l, g);
    if (!s || seen_add(s, o->job_id)) { /* the job is in this segment already */
        rc = lg_group_send(l, g);
        if (s)
            seen_add(s, o->job_id);
    }
    o->group_n = 0;
    lg_push(&g->kind[o->kind], o);
    return rc;
}

void lg_group_drop(kd_ledger *l, lg_groups *g)
{
    for (int k = 0; k < OP_GROUPED; k++)
        splice(&l->batch, &g->kind[k]);
    if (l->seen)
        seen_clear(l->seen);
}

void lg_group_free(kd_ledger *l)
{
    if (l->arrays)
        for (int i = 0; i < LG_MAX_PARAMS; i++)
            free(l->arrays[i].p);
    free(l->arrays);
    if (l->seen)
        free(l->seen->slot);
    free(l->seen);
    l->arrays = NULL;
    l->seen = NULL;
}

/* ------------------------------------------------------------------ answers */

/* The answer of a grouped statement: a claim's, one row per job in order; an accept's or a
 * done's, the ordinalities (from 1, ascending) of the jobs whose rows it updated: a job left
 * out lost its ownership (affected 0, as a single UPDATE's count said). */
void lg_group_read(kd_ledger *l, op *first, const PGresult *r)
{
    int n = first->group_n, rows = PQntuples(r), j = 0;
    op *o = first;
    if (first->kind == OP_CLAIM) {
        if (rows != n) {
            /* GCOVR_EXCL_START: kd_claim answers one row per call */
            kd_warn("ledger: %d claims answered %d rows", n, rows);
            for (; o && n--; o = o->next)
                o->failed = true;
            return;
            /* GCOVR_EXCL_STOP */
        }
        for (int i = 0; i < n; i++, o = o->next)
            lg_read_claim(l, o, r, i);
        return;
    }
    for (int i = 1; i <= n && o; i++, o = o->next) {
        o->affected = j < rows && strtol(PQgetvalue(r, j, 0), NULL, 10) == i;
        j += o->affected;
    }
}
