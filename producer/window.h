/* window.h: kone-producer's confirm window (pure bookkeeping: no I/O, no clock).
 *
 * One entry per reported input line, in input order. An entry is PENDING from the moment
 * its job is handed to the broker until the broker answers; CONFIRMED or REFUSED after.
 * The report is printed from the head only, so it keeps input order while the broker
 * confirms out of order or in batches (multiple = true).
 *
 * Invariants:
 * - PENDING entries that were sent carry delivery tags that rise in ring order (a
 *   republish after a reconnect resends every pending entry, in order, with new tags).
 *   tag 0 = not sent yet on the current connection.
 * - A basic.return carries no tag: it is matched by message_id (the job id) to the oldest
 *   pending entry not yet returned; the ack that follows then means "unroutable".
 * - The body is kept while PENDING (for a republish) and freed when the entry settles.
 */
#ifndef KD_PRODUCER_WINDOW_H
#define KD_PRODUCER_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kd_job.h"

typedef enum { KD_PW_PENDING = 0, KD_PW_CONFIRMED, KD_PW_REFUSED } kd_pw_state;

typedef struct kd_pw_entry {
    long line;
    kd_pw_state state;
    char job_id[KD_JOB_ID_MAX + 1]; /* "" = unknown (reported as null) */
    uint64_t tag;
    int64_t sent_ms;
    bool returned;
    char return_text[96];
    char error[512]; /* REFUSED: why, for the report */
    void *body;
    size_t len;
} kd_pw_entry;

typedef struct kd_pw {
    kd_pw_entry *ring;
    size_t cap, head, count;
    size_t pending;
    char route[320]; /* "exchange 'x' with routing key 'k'", for unroutable messages */
} kd_pw;

int kd_pw_init(kd_pw *w, size_t cap, const char *route);
void kd_pw_free(kd_pw *w);

/* A new PENDING entry at the tail (tag 0, no body); NULL when the ring is full. */
kd_pw_entry *kd_pw_push(kd_pw *w, long line);
kd_pw_entry *kd_pw_at(kd_pw *w, size_t i); /* i-th from the head */

/* Keeps a copy of the encoded job; KD_ERR_NOMEM if it cannot. */
int kd_pw_set_body(kd_pw_entry *e, const void *body, size_t len);
void kd_pw_sent(kd_pw_entry *e, uint64_t tag, int64_t now_ms);
void kd_pw_refuse(kd_pw *w, kd_pw_entry *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Broker answers. They return how many entries settled. */
size_t kd_pw_ack(kd_pw *w, uint64_t tag, bool multiple);
size_t kd_pw_nack(kd_pw *w, uint64_t tag, bool multiple);
bool kd_pw_returned(kd_pw *w, const char *message_id, int code, const char *text);
/* Refuses every PENDING entry sent at or before now_ms - timeout_ms. */
size_t kd_pw_expire(kd_pw *w, int64_t now_ms, int timeout_ms);
/* ms from now_ms until the oldest sent PENDING entry expires (0 if overdue), -1 if none. */
int64_t kd_pw_next_expiry(const kd_pw *w, int64_t now_ms, int timeout_ms);
/* After a reconnect: every PENDING entry becomes unsent (tag 0, not returned). */
void kd_pw_unsend_all(kd_pw *w);

/* The head once it has settled (NULL otherwise), and its removal. */
const kd_pw_entry *kd_pw_done(const kd_pw *w);
void kd_pw_pop(kd_pw *w);

#endif
