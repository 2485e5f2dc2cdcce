/* ledger_int: the private state of the call ledger, shared by its files (ledger.h is the
 * contract; nothing here is for the worker):
 *
 *   ledger.c         open/close, reconnecting, queueing, the turn
 *   ledger_conn.c    the connection made and set up (the schema), later on a thread of its own
 *   ledger_sql.c     the schema and every statement, one per op kind
 *   ledger_io.c      sending batches, reading answers, finishing ops
 *   ledger_batch.c   the per-job kinds (claim, accept, done) of a batch as one statement each
 *   ledger_cancel.c  cancels across workers (the kd_cancels mailbox)
 *
 * Everything here runs on the worker's main thread, but for ledger_conn.c's attempts, whose
 * thread touches only the attempt's own copy of what it needs.
 */
#ifndef KD_WORKER_LEDGER_INT_H
#define KD_WORKER_LEDGER_INT_H

#include <libpq-fe.h>

#include "kd_job.h"
#include "ledger.h"

#define LEDGER_BACKOFF_MIN_US 200000
#define LEDGER_BACKOFF_MAX_US 5000000
#define LEDGER_PURGE_EVERY_US 60000000
#define LEDGER_MAX_TRIES 5
/* Batches sent before the first is answered: a commit's round trip (a WAL flush) no longer
 * holds back the statements queued meanwhile, so a loaded worker waits less for its ledger. */
#define LEDGER_MAX_BATCHES 4

/* The first three kinds (OP_GROUPED of them) are the per-job ones, a few per job: each batch
 * sends them as one statement per kind with array parameters (ledger_batch.c); the statement
 * costs libpq ~7k instructions whatever it does, so one per kind instead of one per job
 * (issue 17). The rest, rare, go one statement each. */
typedef enum {
    OP_CLAIM = 0,
    OP_ACCEPT,
    OP_DONE,
    OP_RETRY,
    OP_RELEASE_NEW,
    OP_RELEASE_WRITTEN,
    OP_RENEW,
    OP_PURGE,
    OP_COUNT,
    OP_END_LEASES,
    OP_ROUTE,          /* who owns the call a cancel job names */
    OP_CANCEL_REQUEST, /* ask the owner to cancel */
    OP_CANCEL_POLL,    /* has the owner answered? */
    OP_CANCEL_TAKE,    /* (owner) cancels asked of this worker */
    OP_CANCEL_ANSWER,  /* (owner) what KONE answered */
    OP_ALIVE,          /* this worker is alive (kd_workers) */
    OP_GONE,           /* this worker stops */
    OP_N
} op_kind;
#define OP_GROUPED 3 /* OP_CLAIM, OP_ACCEPT, OP_DONE */

typedef struct op {
    op_kind kind;
    char job_id[KD_JOB_ID_MAX + 1];
    char building[KD_JOB_BUILDING_MAX + 1];
    int attempt;
    bool replayed;
    int64_t session_id;
    /* done */
    char outcome[16];
    int failure, kone_status;
    char error_code[48];
    char error_message[256];
    int64_t started_us, finished_us, kone_rtt_us;
    void *result;
    size_t result_len;
    /* cancels across workers */
    char group[KD_JOB_GROUP_MAX + 1];
    char owner[160];
    int status;
    char message[200];
    /* callbacks */
    kd_ledger_claim_fn claim_fn;
    kd_ledger_done_fn done_fn;
    kd_ledger_route_fn route_fn;
    kd_ledger_poll_fn poll_fn;
    void *ctx;
    int64_t *pg_us; /* the run's sum of PostgreSQL's time (claim, done), or NULL */
    int64_t enq_us; /* mono µs it was queued (lg_enqueue) */
    kd_ledger_call_owner route;
    /* answer */
    bool failed;
    int tries;         /* batches it failed in (a statement refused 5 times is dropped) */
    unsigned batch_id; /* the batch it was sent in */
    int group_n;       /* the first op of a grouped statement: the ops it covers (0: one) */
    int affected;
    kd_ledger_found found;
    struct op *next_taken; /* OP_CANCEL_TAKE: the cancels taken */
    struct op *next;
} op;

typedef struct op_list {
    op *head, *tail;
    int n;
} op_list;

struct kd_ledger {
    char *url;
    char masked[512];
    char owner[200];
    bool retry_ambiguous; /* ledger.ambiguous=retry */
    int64_t lease_ms, retention_h, timeout_ms;
    kd_ledger_hooks hooks;

    PGconn *pg;                 /* NULL while disconnected */
    struct lg_attempt *attempt; /* a reconnect under way (ledger_conn.c), or NULL */
    int64_t attempt_at;         /* mono µs it started (given up on after attempt_deadline_us) */
    bool up;
    char fatal[512];      /* kd_ledger_fatal: a refusal found at a late first connection */
    bool migrated;        /* the schema checked (and migrated): at open, or at the first
                           * connection when PostgreSQL did not answer at open */
    bool quiet;           /* kd_ledger_quiet: the next turn leaves the socket unread */
    int64_t reconnect_at; /* mono µs */
    int64_t backoff_us;
    op_list queue;                   /* waiting to be sent */
    op_list batch;                   /* sent, waiting for their batches' syncs, in order */
    op *reading;                     /* the op of batch whose results are being read */
    unsigned head_batch, next_batch; /* the oldest batch in flight, the next to send */
    int n_batches;                   /* batches in flight */
    /* a statement of the oldest batch in flight failed: its sync is a rollback. Kept here, as
     * the answers are read, not found by walking the batch's ops for their `failed`: an op sent
     * again after a lost connection carried the failure read before the loss into its new
     * batch (test_failure_before_a_lost_link_is_not_the_next_batchs) */
    bool head_failed;
    int64_t sent_at[LEDGER_MAX_BATCHES]; /* mono µs each batch was sent, by id % max */
    /* mono µs a commit last made room in a full pipeline: statements queued before it waited
     * for PostgreSQL (counted in their pg_us), not for the worker */
    int64_t room_at;
    int64_t next_renew, next_purge, next_take;
    kd_ledger_cancel_fn cancel_fn; /* cancels asked of this worker (NULL: none taken) */
    void *cancel_ctx;
    struct lg_text *arrays; /* ledger_batch.c: array parameters, kept between batches */
    struct lg_seen *seen;   /* ledger_batch.c: the job ids of the statements being grouped */
    op *spare;              /* ops given back, for lg_new_op to use again (at most LG_SPARE) */
    int n_spare;
};

/* Ops kept for reuse (kd_list.h, KD_SPARE_TAKE): an op is 1.8 KiB, a job makes three. */
#define LG_SPARE 128

/* What a statement's parameters are made of. Each op kind's row of lg_op_params lists its
 * parameters in order ($1, $2, ...), as its statement in ledger_sql.c numbers them. In a
 * grouped kind's statement every parameter but the worker's own (owner, lease, retention,
 * ambiguous) is an array with one element per job. */
typedef enum {
    P_END = 0,       /* the end of a row */
    P_JOB,           /* the job id */
    P_OWNER,         /* this worker's owner name */
    P_BUILDING,      /* the job's building */
    P_GROUP,         /* the job's group */
    P_CALL_OWNER,    /* the worker that owns the call a cancel names */
    P_ATTEMPT,       /* the job's attempt */
    P_LEASE,         /* ledger.lease_ms */
    P_RETENTION,     /* ledger.retention_h */
    P_SESSION,       /* KONE's session id */
    P_SESSION_OR_0,  /* the same, NULL while there is none */
    P_RETRY_AMBIG,   /* ledger.ambiguous=retry, "true" or "false" */
    P_REPLAYED,      /* the job was replayed, "true" or "false" */
    P_MESSAGE,       /* KONE's answer to a cancel */
    P_MESSAGE_OR_0,  /* the same, NULL when empty */
    P_STATUS,        /* KONE's status of a cancel */
    P_OUTCOME,       /* a finished call's outcome */
    P_FAILURE,       /* ... its failure class */
    P_KONE_STATUS,   /* ... KONE's status */
    P_ERROR_CODE,    /* ... its error code */
    P_ERROR_MESSAGE, /* ... and message */
    P_STARTED,       /* ... when it started (µs) */
    P_FINISHED,      /* ... when it ended (µs) */
    P_RTT,           /* ... KONE's round trip (µs) */
    P_RESULT,        /* ... the result (a binary bytea[]) */
} lg_param;

#define LG_MAX_PARAMS 13
extern const unsigned char lg_op_params[OP_N][LG_MAX_PARAMS + 1];

extern const char *const lg_op_name[OP_N]; /* metric label of each kind */
extern const char *const lg_op_sql[OP_N];  /* its statement */
extern const char *const lg_op_stmt[OP_N]; /* its prepared statement's name */
extern const char *const lg_schema_v1[];   /* NULL-terminated DDL of each version */
extern const char *const lg_schema_v2[];
extern const char *const lg_schema_v3[];

/* ---- ledger.c */
void lg_hook_up(kd_ledger *l, bool up);
void lg_hook_op(kd_ledger *l, op_kind k, bool ok);
const char *lg_pg_msg(PGconn *pg, char *buf, size_t len);
void lg_push(op_list *q, op *o);
op *lg_pop(op_list *q);
op *lg_new_op(kd_ledger *l, op_kind kind, const kd_run *run); /* zeroed but for these */
void lg_free_op(kd_ledger *l, op *o); /* and the ops it holds (next_taken), and its result */
kd_outcome lg_outcome_from(const char *s);
void lg_enqueue(kd_ledger *l, op *o); /* no-op (frees o) on a NULL ledger */
/* The connection is gone: the batches in flight failed; claims and lookups answer now. */
void lg_lost(kd_ledger *l, const char *why);

/* ---- ledger_conn.c */
/* A connection made on a thread of its own: the main loop never waits for PostgreSQL (a
 * reconnect), and the start waits at most connect_timeout + 2 x ledger.timeout_ms. */
typedef struct lg_attempt lg_attempt;
#define LG_ATTEMPTS_MAX 4   /* attempts alive at once, those given up on included */
int lg_attempts_live(void); /* attempts whose thread has not ended (every ledger's) */
lg_attempt *lg_attempt_start(const kd_ledger *l, kd_err *err); /* NULL: err */
int lg_attempt_fd(const lg_attempt *a);                        /* readable once it ended */
bool lg_attempt_done(lg_attempt *a);
/* The ended attempt's connection, or NULL and why (err); frees the attempt. */
PGconn *lg_attempt_take(lg_attempt *a, kd_err *err);
/* The ledger closes while the attempt runs: the thread frees it when it ends. */
void lg_attempt_abandon(lg_attempt *a);

/* ---- ledger_io.c */
void lg_send_batch(kd_ledger *l);                /* the queue as one batch, if one may go */
void lg_read_answers(kd_ledger *l);              /* answers and syncs that arrived */
void lg_finish_op(kd_ledger *l, op *o, bool ok); /* its callback, then frees it */
void lg_read_claim(kd_ledger *l, op *o, const PGresult *r, int row);
/* One parameter's text (NULL: SQL NULL); numbers are written into num. Not P_RESULT: only a
 * done has one, and dones are grouped (ledger_batch.c sends the results binary). */
const char *lg_param_text(const kd_ledger *l, const op *o, lg_param p, char num[24]);

/* ---- ledger_batch.c */
/* The grouping of one batch: op_list by kind, a new segment whenever a job comes again
 * (a job's statements keep their order: they go in different segments). */
typedef struct lg_groups {
    op_list kind[OP_GROUPED];
} lg_groups;
/* Adds o to its kind's group; a job the segment has already sends the segment first. */
int lg_group_add(kd_ledger *l, lg_groups *g, op *o); /* -1: the connection failed */
int lg_group_send(kd_ledger *l, lg_groups *g);       /* -1: the connection failed */
void lg_group_drop(kd_ledger *l, lg_groups *g);      /* unsent ops to l->batch (a lost link) */
void lg_group_read(kd_ledger *l, op *first, const PGresult *r);
void lg_group_free(kd_ledger *l);

/* ---- ledger_cancel.c */
op *lg_cancel_op(kd_ledger *l, op_kind kind, const char *cancel_job_id);

#endif
