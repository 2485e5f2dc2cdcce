/* window.c: see window.h. A ring of entries; linear scans are fine at a few hundred
 * pending entries and keep the code obviously right. */
#include "window.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kd_str.h"

int kd_pw_init(kd_pw *w, size_t cap, const char *route)
{
    memset(w, 0, sizeof *w);
    w->ring = calloc(cap, sizeof *w->ring);
    if (!w->ring)
        return KD_ERR_NOMEM;
    w->cap = cap;
    kd_str_copy(w->route, sizeof w->route, route ? route : "");
    return 0;
}

static void settle(kd_pw *w, kd_pw_entry *e, kd_pw_state st)
{
    if (e->state == KD_PW_PENDING)
        w->pending--;
    e->state = st;
    free(e->body);
    e->body = NULL;
    e->len = 0;
}

void kd_pw_free(kd_pw *w)
{
    for (size_t i = 0; i < w->count; i++)
        free(kd_pw_at(w, i)->body);
    free(w->ring);
    memset(w, 0, sizeof *w);
}

kd_pw_entry *kd_pw_at(kd_pw *w, size_t i)
{
    return &w->ring[(w->head + i) % w->cap];
}

kd_pw_entry *kd_pw_push(kd_pw *w, long line)
{
    if (w->count == w->cap)
        return NULL;
    kd_pw_entry *e = kd_pw_at(w, w->count++);
    memset(e, 0, sizeof *e);
    e->line = line;
    e->state = KD_PW_PENDING;
    w->pending++;
    return e;
}

int kd_pw_set_body(kd_pw_entry *e, const void *body, size_t len)
{
    free(e->body);
    e->body = malloc(len ? len : 1);
    if (!e->body)
        return KD_ERR_NOMEM;
    memcpy(e->body, body, len);
    e->len = len;
    return 0;
}

void kd_pw_sent(kd_pw_entry *e, uint64_t tag, int64_t now_ms)
{
    e->tag = tag;
    e->sent_ms = now_ms;
    e->returned = false;
}

void kd_pw_refuse(kd_pw *w, kd_pw_entry *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->error, sizeof e->error, fmt, ap);
    va_end(ap);
    settle(w, e, KD_PW_REFUSED);
}

static bool covers(const kd_pw_entry *e, uint64_t tag, bool multiple)
{
    return e->state == KD_PW_PENDING && e->tag != 0 &&
           (e->tag == tag || (multiple && e->tag < tag));
}

/* An ack or a nack settles every pending entry it covers: a nack refuses them; an ack
 * confirms them, except those the broker returned first (unroutable), which it refuses. */
static size_t settle_covered(kd_pw *w, uint64_t tag, bool multiple, bool nacked)
{
    size_t n = 0;
    for (size_t i = 0; i < w->count; i++) {
        kd_pw_entry *e = kd_pw_at(w, i);
        if (!covers(e, tag, multiple))
            continue;
        if (nacked)
            kd_pw_refuse(w, e,
                         "nacked: the broker could not store the job (e.g. queue full or "
                         "no quorum); publish it again");
        else if (e->returned)
            kd_pw_refuse(w, e, "unroutable: no queue is bound to %s (%s)", w->route,
                         e->return_text);
        else
            settle(w, e, KD_PW_CONFIRMED);
        n++;
    }
    return n;
}

size_t kd_pw_ack(kd_pw *w, uint64_t tag, bool multiple)
{
    return settle_covered(w, tag, multiple, false);
}

size_t kd_pw_nack(kd_pw *w, uint64_t tag, bool multiple)
{
    return settle_covered(w, tag, multiple, true);
}

bool kd_pw_returned(kd_pw *w, const char *message_id, int code, const char *text)
{
    for (size_t i = 0; i < w->count; i++) {
        kd_pw_entry *e = kd_pw_at(w, i);
        if (e->state != KD_PW_PENDING || e->tag == 0 || e->returned ||
            strcmp(e->job_id, message_id) != 0)
            continue;
        e->returned = true;
        snprintf(e->return_text, sizeof e->return_text, "%d %s", code, text);
        return true;
    }
    return false;
}

size_t kd_pw_expire(kd_pw *w, int64_t now_ms, int timeout_ms)
{
    size_t n = 0;
    for (size_t i = 0; i < w->count; i++) {
        kd_pw_entry *e = kd_pw_at(w, i);
        if (e->state != KD_PW_PENDING || e->tag == 0 || now_ms - e->sent_ms < timeout_ms)
            continue;
        kd_pw_refuse(w, e,
                     "timeout: no confirm from the broker within %d ms (the job may or "
                     "may not be queued)",
                     timeout_ms);
        n++;
    }
    return n;
}

int64_t kd_pw_next_expiry(const kd_pw *w, int64_t now_ms, int timeout_ms)
{
    int64_t best = -1;
    for (size_t i = 0; i < w->count; i++) {
        const kd_pw_entry *e = &w->ring[(w->head + i) % w->cap];
        if (e->state != KD_PW_PENDING || e->tag == 0)
            continue;
        int64_t left = e->sent_ms + timeout_ms - now_ms;
        if (left < 0)
            left = 0;
        if (best < 0 || left < best)
            best = left;
    }
    return best;
}

void kd_pw_unsend_all(kd_pw *w)
{
    for (size_t i = 0; i < w->count; i++) {
        kd_pw_entry *e = kd_pw_at(w, i);
        if (e->state == KD_PW_PENDING)
            kd_pw_sent(e, 0, 0);
    }
}

const kd_pw_entry *kd_pw_done(const kd_pw *w)
{
    if (w->count == 0)
        return NULL;
    const kd_pw_entry *e = &w->ring[w->head];
    return e->state == KD_PW_PENDING ? NULL : e;
}

void kd_pw_pop(kd_pw *w)
{
    if (w->count == 0)
        return;
    kd_pw_entry *e = &w->ring[w->head];
    /* GCOVR_EXCL_START: the program pops only a settled head (kd_pw_done); kept for the count */
    if (e->state == KD_PW_PENDING)
        w->pending--;
    /* GCOVR_EXCL_STOP */
    free(e->body);
    e->body = NULL;
    w->head = (w->head + 1) % w->cap;
    w->count--;
}
