/* replay.c: see replay.h.
 *
 * Why basic.get and holding the kept messages unacked: a quorum queue puts a requeued
 * message back at its head, so nacking a kept message at once would make the next
 * basic.get return it again. Held unacked, it is out of the way until the end, when
 * closing over every held tag puts each back where it was. The count taken at the start
 * bounds the loop even if new dead letters arrive meanwhile.
 * Moving is publish-confirm-then-ack: a crash in between leaves the job in both queues
 * (it runs, and stays parked too), never in neither.
 */
#include "replay.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_amqp.h"
#include "kd_job.h"
#include "kd_log.h"
#include "kd_time.h"
#include "report.h"
#include "start.h"

/* ---- arguments and matching (pure) ----------------------------------------------------- */

static const char *flag_value(int argc, char **argv, int *i, const char *name, bool *hit)
{
    size_t n = strlen(name);
    *hit = false;
    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=') {
        *hit = true;
        return argv[*i] + n + 1;
    }
    if (argv[*i][n] == '\0') {
        *hit = true;
        return *i + 1 < argc ? argv[++*i] : NULL;
    }
    return NULL;
}

int kd_replay_parse_args(int argc, char **argv, kd_replay_filter *f, char **out_argv, int *out_argc,
                         kd_err *err)
{
    static const char *names[] = {"--filter-job-prefix", "--filter-building", "--filter-reason"};
    memset(f, 0, sizeof *f);
    int n = 0;
    out_argv[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (i == 1 && strcmp(argv[i], "replay-dead") == 0)
            continue;
        if (strcmp(argv[i], "--dry-run") == 0) {
            f->dry_run = true;
            continue;
        }
        bool taken = false;
        for (size_t k = 0; k < sizeof names / sizeof *names && !taken; k++) {
            bool hit;
            const char *v = flag_value(argc, argv, &i, names[k], &hit);
            if (!hit)
                continue;
            if (!v || !*v)
                return kd_err_set(err, KD_ERR_INVALID, "replay-dead: %s needs a value", names[k]);
            const char **slot = k == 0 ? &f->job_prefix : k == 1 ? &f->building : &f->reason;
            *slot = v;
            taken = true;
        }
        if (!taken)
            out_argv[n++] = argv[i];
    }
    *out_argc = n;
    return 0;
}

static bool building_is(const char *have, const char *want)
{
    if (strcmp(have, want) == 0)
        return true;
    /* "9990000951" names "building:9990000951" too */
    return strncmp(have, "building:", 9) == 0 && strcmp(have + 9, want) == 0;
}

bool kd_replay_match(const kd_replay_filter *f, const char *job_id, const char *building,
                     const char *reason)
{
    if (f->job_prefix && (!*job_id || strncmp(job_id, f->job_prefix, strlen(f->job_prefix)) != 0))
        return false;
    if (f->building && (!*building || !building_is(building, f->building)))
        return false;
    if (f->reason && strcmp(reason, f->reason) != 0)
        return false;
    return true;
}

static json_t *str_or_null(const char *s)
{
    return s && *s ? kd_report_json_string(s) : json_null();
}

char *kd_replay_line(const char *action, const char *job_id, const char *building,
                     const char *reason, const char *error, int attempt, const char *detail)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = json_object_set_new(o, "action", json_string(action));
    bad |= json_object_set_new(o, "job_id", str_or_null(job_id));
    bad |= json_object_set_new(o, "building_id", str_or_null(building));
    bad |= json_object_set_new(o, "reason", str_or_null(reason));
    bad |= json_object_set_new(o, "error", str_or_null(error));
    bad |= json_object_set_new(o, "attempt", attempt > 0 ? json_integer(attempt) : json_null());
    if (detail)
        bad |= json_object_set_new(o, "detail", str_or_null(detail));
    char *s = bad ? NULL : json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

/* ---- the command ---------------------------------------------------------------------- */

typedef struct replay {
    kd_config cfg;
    kd_replay_filter f;
    kd_amqp *amqp;
    int timeout_ms;
    uint64_t *held; /* delivery tags kept unacked until the end */
    size_t n_held;
    long moved, kept, failed;
    bool output_failed;
} replay;

static void emit(replay *r, char *line)
{
    if (!line || printf("%s\n", line) < 0)
        r->output_failed = true;
    free(line);
}

/* Publishes d to the work exchange and waits for the broker's confirm. */
static int move_one(replay *r, const kd_delivery *d, const char *message_id, kd_err *err)
{
    const kd_amqp_topology *t = kd_amqp_names(r->amqp);
    /* attempt: absent = 1; x-kd-replayed lets the call ledger call a `failed` job again */
    kd_amqp_headers h = {.first_seen_ms = d->kd.first_seen_ms, .replayed_ms = kd_now_us() / 1000};
    kd_amqp_out m = {.exchange = t->exchange,
                     .routing_key = t->routing_key,
                     .message_id = message_id,
                     .content_type = d->content_type,
                     .body = d->body,
                     .len = d->len,
                     .headers = &h};
    uint64_t tag;
    int rc = kd_amqp_side_publish(r->amqp, &m, &tag, err);
    if (rc)
        return rc;
    bool returned = false;
    int64_t deadline = kd_mono_us() / 1000 + r->timeout_ms;
    for (;;) {
        int64_t left = deadline - kd_mono_us() / 1000;
        if (left <= 0)
            return kd_err_set(err, KD_ERR_TIMEOUT, "no publisher confirm within %d ms",
                              r->timeout_ms);
        kd_amqp_event ev;
        int n = kd_amqp_side_wait(r->amqp, (int)left, &ev, err);
        if (n < 0)
            return -n;
        if (n == 0 || ev.channel != 2)
            continue;
        if (ev.kind == KD_AMQP_EV_RETURN) {
            returned = true;
            continue;
        }
        if (!(ev.tag == tag || (ev.multiple && ev.tag > tag)))
            continue;
        if (ev.kind == KD_AMQP_EV_NACK)
            return kd_err_set(err, KD_ERR_REFUSED, "the broker nacked the message");
        if (returned)
            return kd_err_set(err, KD_ERR_REFUSED,
                              "unroutable: no queue bound to exchange '%s' with key '%s'",
                              t->exchange, t->routing_key);
        return 0;
    }
}

static int hold(replay *r, uint64_t tag)
{
    uint64_t *p = realloc(r->held, (r->n_held + 1) * sizeof *p);
    if (!p)
        return KD_ERR_NOMEM;
    r->held = p;
    r->held[r->n_held++] = tag;
    return 0;
}

/* One parked message: identify it, then move it or keep it. <0: the connection is gone. */
static int one(replay *r, const kd_delivery *d)
{
    kd_job job;
    kd_err jerr = {0};
    int jrc = kd_job_decode(d->body, d->len, 1, &job, &jerr);
    const char *job_id = jrc != KD_ERR_DECODE && job.job_id[0] ? job.job_id : d->message_id;
    const char *building = jrc != KD_ERR_DECODE ? job.building_id : "";
    const char *reason = d->kd.reason;
    const char *error = d->kd.error[0] ? d->kd.error : d->kd.last_error;
    int attempt = d->kd.attempt;
    if (!kd_replay_match(&r->f, job_id, building, reason)) {
        r->kept++;
        emit(r, kd_replay_line("kept", job_id, building, reason, error, attempt, NULL));
        return hold(r, d->delivery_tag) ? -KD_ERR_NOMEM : 0;
    }
    if (r->f.dry_run) {
        r->kept++;
        emit(r, kd_replay_line("would_move", job_id, building, reason, error, attempt, NULL));
        return hold(r, d->delivery_tag) ? -KD_ERR_NOMEM : 0;
    }
    kd_err err = {0};
    int rc = move_one(r, d, job_id, &err);
    if (!rc)
        rc = kd_amqp_ack(r->amqp, d->delivery_tag, d->epoch, &err);
    if (rc) {
        r->failed++;
        emit(r, kd_replay_line("failed", job_id, building, reason, error, attempt, err.msg));
        kd_error("replay-dead: %s not moved: %s", job_id, err.msg);
        return (rc == KD_ERR_REFUSED || rc == KD_ERR_TIMEOUT) && !hold(r, d->delivery_tag) ? 0
                                                                                           : -rc;
    }
    r->moved++;
    emit(r, kd_replay_line("moved", job_id, building, reason, error, attempt, NULL));
    return 0;
}

static void usage(void)
{
    printf("Usage: kone-producer replay-dead [--filter-job-prefix P] [--filter-building B]\n"
           "                                 [--filter-reason R] [--dry-run] [options]\n"
           "Moves parked jobs matching every filter from the dead-letter queue back to the\n"
           "work queue (attempt count reset); the others stay parked. One JSON line per\n"
           "message on stdout, a summary on stderr. Exit 0: done, 1: some could not be\n"
           "moved, 2: setup failed. See docs/producer.md.\n\n");
}

static int setup(replay *r, int argc, char **argv, int *exit_code)
{
    kd_err err = {0};
    char **args = calloc((size_t)argc + 1, sizeof *args);
    int nargs = 0;
    if (!args)
        return 2;
    /* its own options' errors say "replay-dead: ..." already */
    int rc = kd_replay_parse_args(argc, argv, &r->f, args, &nargs, &err);
    if (rc)
        kd_prod_error(stderr, PROD_NAME, err.msg);
    else
        rc = kd_prod_load(&r->cfg, PROD_NAME " replay-dead", nargs, args, stderr);
    free(args);
    if (rc)
        return 2;
    int started = kd_prod_start(&r->cfg, usage, exit_code);
    if (started)
        return started;
    if (r->cfg.nargs > 0) {
        kd_error("replay-dead: unexpected argument '%s' (see --help)", r->cfg.args[0]);
        return 2;
    }
    r->timeout_ms = (int)kd_cfg_int(&r->cfg, KD_CFG_PRODUCER_CONFIRM_TIMEOUT_MS);
    if (kd_amqp_connect(&r->amqp, &r->cfg, &err) != 0) {
        kd_error("%s", err.msg);
        return 2;
    }
    return 0;
}

int kd_replay_main(int argc, char **argv)
{
    static replay r;
    int code = 0;
    int rc = setup(&r, argc, argv, &code);
    if (rc != 0) {
        kd_amqp_close(r.amqp);
        kd_config_free(&r.cfg);
        return rc < 0 ? code : rc;
    }
    const char *queue = kd_amqp_names(r.amqp)->dead_queue;
    uint32_t count = 0;
    kd_err err = {0};
    long seen = 0;
    if (kd_amqp_queue_count(r.amqp, queue, &count, &err) != 0) {
        kd_error("%s", err.msg);
        code = 2;
    }
    for (uint32_t i = 0; i < count && code == 0; i++) {
        kd_delivery d;
        int n = kd_amqp_get(r.amqp, queue, &d, &err);
        if (n == 0)
            break;
        if (n > 0) {
            seen++;
            n = one(&r, &d);
        }
        if (n < 0) {
            kd_error("replay-dead: stopped: %s (messages not moved stay in '%s')",
                     err.msg[0] ? err.msg : kd_err_code_name(-n), queue);
            code = 1;
        }
    }
    /* hand back what stays parked (a no-op if the connection died: the broker does it) */
    for (size_t i = 0; i < r.n_held; i++)
        kd_amqp_nack(r.amqp, r.held[i], kd_amqp_epoch(r.amqp), true, &err);
    if (fflush(stdout) != 0 || r.output_failed) {
        kd_error("cannot write the report to stdout");
        code = 2;
    }
    fprintf(stderr,
            "kone-producer replay-dead: %ld moved, %ld kept%s, %ld failed (%ld seen of %u "
            "in '%s')\n",
            r.moved, r.kept, r.f.dry_run ? " (dry run)" : "", r.failed, seen, count, queue);
    if (!code && r.failed)
        code = 1;
    kd_amqp_close(r.amqp);
    free(r.held);
    kd_config_free(&r.cfg);
    return code;
}
