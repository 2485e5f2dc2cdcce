/* kone_wsrx: one WebSocket message put back together from the fragments libwebsockets hands
 * over (LWS_CALLBACK_CLIENT_RECEIVE), shared by the worker's connections (kone_conn.c) and the
 * KONE benchmark (bench/kone.c).
 *
 * Contract: feed every fragment of a connection in order with `final` true for the last one
 * of a message (lws_is_final_fragment and no payload remaining). A message longer than `max`
 * bytes, or one that cannot be stored (out of memory), is read to its end and dropped; the
 * caller is told once, at its end. The buffer is the caller's: no thread, no lws call here.
 */
#ifndef KD_WORKER_KONE_WSRX_H
#define KD_WORKER_KONE_WSRX_H

#include <stdbool.h>
#include <stddef.h>

typedef struct kd_wsrx {
    char *buf; /* the message so far, NUL-terminated once whole */
    size_t len, cap;
    size_t max;       /* a longer message is dropped (set before the first fragment) */
    bool skip;        /* the current message is being dropped */
    bool too_big;     /* ... because it is longer than max (else: out of memory) */
    bool keep_at_end; /* the last result was KD_WSRX_MESSAGE: start afresh on the next one */
} kd_wsrx;

typedef enum {
    KD_WSRX_MORE = 0, /* the message goes on in the next fragment */
    KD_WSRX_MESSAGE,  /* a whole message: buf, len (valid until the next call or kd_wsrx_free) */
    KD_WSRX_DROPPED,  /* a message ended that was dropped: too_big says why */
} kd_wsrx_result;

kd_wsrx_result kd_wsrx_feed(kd_wsrx *rx, const void *in, size_t len, bool final);
/* Frees the buffer; rx may be fed again (a new connection). max is kept. */
void kd_wsrx_free(kd_wsrx *rx);

#endif
