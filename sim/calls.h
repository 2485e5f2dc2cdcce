/* calls: kone-sim's log of the lift-call-api-v2 requests it received (GET /sim/calls).
 *
 * Why it exists: "one job places at most one elevator call" can only be proved where the
 * call happens, at KONE. The worker's own counters cannot show a call it made twice (a crash
 * between the call and the ledger, a redelivery, a retry after a lost answer); kone-sim sees
 * every one. Each lift-call-api-v2 request (action, hold_open, delete, or any other
 * callType) whose frame parsed as a JSON object is recorded once its answer is decided:
 * who sent it (connection, client, KONE session), what it asked (request id, building,
 * group, the full payload, its media_id), what it got (status, message, the call result's
 * success and error, the call session_id given, or for a delete the session_id it targeted
 * and whether it cancelled anything). Frames never read (an injected drop, a frame over
 * 64 KiB, one that is not JSON) place no call and are not recorded.
 *
 * Bounded memory: a ring of at most max_entries entries holding at most max_bytes of entry
 * text; the oldest entries go first and are counted in `dropped`, so a reader can tell it
 * lost some. An entry is stored as its finished JSON text, built once when it is recorded,
 * so a listing only concatenates texts and never parses on the service loop.
 *
 * Sequence numbers run 1, 2, ... for the simulator's lifetime. A reset empties the log and
 * zeroes `dropped` but does not restart them, so a reader's `since` keeps its meaning.
 *
 * Threads: the request layer (proto.c) records and the control endpoint (control.c) lists,
 * both on the one libwebsockets service thread (server.h), so the log has no lock; the unit
 * tests drive it from their one thread.
 */
#ifndef SIM_CALLS_H
#define SIM_CALLS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIM_CALLS_MAX 200000             /* entries kept */
#define SIM_CALLS_MAX_BYTES (128u << 20) /* entry text kept (128 MiB) */
#define SIM_CALLS_LIMIT_DEFAULT 10000    /* entries per listing, unless ?limit= */
#define SIM_CALLS_LIMIT_MAX 100000

typedef struct sim_call_entry {
    uint64_t seq;
    char *text;         /* the JSON object, NUL, the callType, NUL, the media_id, NUL */
    uint32_t len;       /* length of the JSON object */
    uint32_t type_off;  /* offset of the callType ("" when it was not a string) */
    uint32_t media_off; /* offset of the media_id */
    bool has_media;     /* payload.media_id was a string */
} sim_call_entry;

typedef struct sim_calls {
    sim_call_entry *ring; /* allocated at the first entry */
    size_t max_entries, max_bytes;
    size_t head, n;    /* oldest entry, entries held */
    size_t bytes;      /* entry text held */
    uint64_t next_seq; /* seq of the next entry (from 1) */
    uint64_t base_seq; /* first seq after the last reset (1 at start) */
    uint64_t dropped;  /* entries evicted (or not stored: out of memory) since reset */
} sim_calls;

/* What the request layer knows of one request once it is answered. Strings may be NULL
 * (JSON null in the entry). */
typedef struct sim_call_note {
    int64_t wall_ms;       /* when it was received (wall clock) */
    const char *call_type; /* callType as sent */
    const char *connection_id, *client_id;
    const char *kone_session_id; /* the connection's create-session id; NULL or "": none */
    const json_t *request_id;    /* the request id as sent */
    const char *building_id;     /* buildingId as sent */
    const json_t *group_id;      /* groupId as sent (string or number) */
    const json_t *payload;       /* the request's payload */
    int status;                  /* statusCode of its answer frame */
    const char *message;         /* the answer's message (errors) */
    int success;                 /* call result frame: 1, 0, or -1 when none was sent */
    const char *error;           /* the call result's error text */
    int64_t session_id;          /* action: the session_id given; delete: the one targeted;
                                    0: none */
    int cancelled;               /* delete: 1 it cancelled the call, 0 not; -1 other calls */
} sim_call_note;

/* An empty log keeping at most max_entries entries and max_bytes of text (0: defaults). */
void sim_calls_init(sim_calls *l, size_t max_entries, size_t max_bytes);
void sim_calls_free(sim_calls *l);
/* Empties the log and zeroes dropped; sequence numbers go on. Returns how many it cleared. */
size_t sim_calls_reset(sim_calls *l);
/* Records one request, evicting the oldest entries past the limits. 0, or -1 when out of
 * memory (then it counts as dropped). */
int sim_calls_add(sim_calls *l, const sim_call_note *n);

/* A listing: entries with seq > since, at most limit of them (0: the default), optionally
 * only one callType and only payload.media_id starting with a prefix. */
typedef struct sim_calls_query {
    uint64_t since;
    size_t limit;
    const char *call_type;
    const char *media_id_prefix;
} sim_calls_query;

/* The answer of GET /sim/calls (docs/kone-sim.md) as JSON text, malloc'd; *len its length.
 * NULL when out of memory. The counters come first and `calls` last, in a fixed order: the
 * shell helpers (tests/integration/lib.sh) read them from the first bytes. */
char *sim_calls_list(const sim_calls *l, const sim_calls_query *q, size_t *len);
/* Newest seq ever recorded (0: none). */
uint64_t sim_calls_last_seq(const sim_calls *l);

#endif
