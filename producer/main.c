/* kone-producer: publish JSON-lines jobs to RabbitMQ with publisher confirms.
 *
 *   kone-producer [options] [FILE|-]
 *   kone-producer replay-dead [filters] [--dry-run] [options]   (replay.c)
 *
 * Each non-blank input line is one job (the JSON form of docs/job-format.md). Each is
 * parsed, validated, encoded as msgpack and published; stdout gets one report line per
 * job, in input order, once the broker confirmed or refused it (report.h); stderr gets a
 * summary. Exit 0: all confirmed; 1: some refused; 2: could not start (bad option, input
 * or broker unreachable).
 *
 * Why the loop looks like this: publishing one job and waiting for its confirm costs a
 * round trip and a quorum commit per job. So up to KD_PRODUCER_WINDOW jobs are in flight;
 * the broker acks them (often many at once) and window.c maps each ack back to its line.
 * A single poll() waits on the input and on the broker's socket, because rabbitmq-c only
 * serves heartbeats and confirms when called: blocking on input would starve it.
 * If the connection drops, it reconnects and sends every unconfirmed job again (at least
 * once; duplicates keep their job_id). It gives up when a reconnect fails, or when a
 * second drop comes before any confirm: the remaining jobs are then refused.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "input.h"
#include "kd_amqp.h"
#include "kd_config.h"
#include "kd_job.h"
#include "kd_log.h"
#include "kd_time.h"
#include "replay.h"
#include "report.h"
#include "start.h"
#include "window.h"
#include "kd_str.h"

#define KD_PRODUCER_WINDOW 256   /* jobs in flight (sent, not yet confirmed) */
#define KD_PRODUCER_RING 4096    /* reported lines held back for input order */
#define KD_PRODUCER_TICK_MS 1000 /* longest sleep: keeps heartbeats served */

typedef struct app {
    kd_config cfg;
    kd_amqp *amqp; /* NULL once given up */
    kd_input in;
    kd_pw win;
    msgpack_sbuffer sbuf;
    int64_t ttl_ms;
    int timeout_ms;
    long confirmed, refused;
    int reconnects;
    bool progress;     /* a confirm arrived since the last reconnect */
    char gave_up[600]; /* why the broker is no longer used ("" while it is) */
    bool output_failed;
} app;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the broker side ---------------------------------------------------------------- */

static void give_up(app *a, const char *why)
{
    snprintf(a->gave_up, sizeof a->gave_up, "not published: %s", why);
    kd_error("%s; refusing the remaining jobs", why);
    kd_amqp_close(a->amqp);
    a->amqp = NULL;
    for (size_t i = 0; i < a->win.count; i++) {
        kd_pw_entry *e = kd_pw_at(&a->win, i);
        if (e->state == KD_PW_PENDING)
            kd_pw_refuse(&a->win, e,
                         "connection lost before the broker confirmed (the job "
                         "may or may not be queued): %s",
                         why);
    }
}

/* Sends one pending entry. On failure the entry stays pending and unsent. */
static int send_entry(app *a, kd_pw_entry *e, kd_err *err)
{
    uint64_t tag;
    int rc = kd_amqp_publish(a->amqp, e->job_id, e->body, e->len, &tag, err);
    if (!rc)
        kd_pw_sent(e, tag, mono_ms());
    return rc;
}

/* The connection failed (cause): reconnect and resend everything unconfirmed. */
static void recover(app *a, const kd_err *cause)
{
    kd_err err = *cause;
    for (;;) {
        if (a->reconnects > 0 && !a->progress) {
            give_up(a, err.msg);
            return;
        }
        kd_warn("%s; reconnecting", err.msg);
        kd_amqp_close(a->amqp);
        a->amqp = NULL;
        a->reconnects++;
        a->progress = false;
        if (kd_amqp_connect(&a->amqp, &a->cfg, &err) != 0) {
            give_up(a, err.msg);
            return;
        }
        kd_pw_unsend_all(&a->win);
        int rc = 0;
        size_t resent = 0;
        for (size_t i = 0; i < a->win.count && !rc; i++) {
            kd_pw_entry *e = kd_pw_at(&a->win, i);
            if (e->state == KD_PW_PENDING) {
                rc = send_entry(a, e, &err);
                resent += !rc;
            }
        }
        if (!rc) {
            if (resent)
                kd_info("published %zu unconfirmed jobs again", resent);
            return;
        }
    }
}

static void apply_event(app *a, const kd_amqp_event *ev)
{
    switch (ev->kind) {
    case KD_AMQP_EV_ACK:
        if (kd_pw_ack(&a->win, ev->tag, ev->multiple))
            a->progress = true;
        break;
    case KD_AMQP_EV_NACK: kd_pw_nack(&a->win, ev->tag, ev->multiple); break;
    case KD_AMQP_EV_RETURN:
        kd_pw_returned(&a->win, ev->message_id, ev->reply_code, ev->reply_text);
        break;
    }
}

/* Takes every broker answer there is, waiting up to timeout_ms for the first. */
static void pump(app *a, int timeout_ms)
{
    kd_amqp_event ev;
    kd_err err = {0};
    int n;
    while (a->amqp && (n = kd_amqp_next_event(a->amqp, timeout_ms, &ev, &err)) != 0) {
        if (n < 0) {
            recover(a, &err);
            return;
        }
        apply_event(a, &ev);
        timeout_ms = 0;
    }
}

/* ---- the input side ------------------------------------------------------------------ */

static bool blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v')
            return false;
    return true;
}

static void handle_line(app *a, const char *line, size_t len, long lineno)
{
    kd_pw_entry *e = kd_pw_push(&a->win, lineno); /* the caller checked there is room */
    json_error_t jerr;
    json_t *obj = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!obj) {
        kd_pw_refuse(&a->win, e, "invalid JSON: %s (column %d)", jerr.text, jerr.column);
        return;
    }
    kd_job job;
    kd_err err = {0};
    int rc = kd_job_from_json(obj, kd_now_us() / 1000, a->ttl_ms, &job, &err);
    json_decref(obj);
    kd_str_copy(e->job_id, sizeof e->job_id, job.job_id);
    if (rc) {
        kd_pw_refuse(&a->win, e, "%s", err.msg);
        return;
    }
    if (a->gave_up[0]) {
        kd_pw_refuse(&a->win, e, "%s", a->gave_up);
        return;
    }
    msgpack_sbuffer_clear(&a->sbuf);
    if ((rc = kd_job_encode(&job, &a->sbuf, &err)) != 0 ||
        (rc = kd_pw_set_body(e, a->sbuf.data, a->sbuf.size)) != 0) {
        /* GCOVR_EXCL_START: encoding a validated job fails only when allocation fails */
        kd_pw_refuse(&a->win, e, "%s", rc == KD_ERR_NOMEM ? "out of memory" : err.msg);
        return;
        /* GCOVR_EXCL_STOP */
    }
    if (send_entry(a, e, &err) != 0)
        recover(a, &err); /* resends e too, or refuses it */
}

static bool room(const app *a)
{
    return a->win.count < a->win.cap && a->win.pending < KD_PRODUCER_WINDOW;
}

/* Hands every complete buffered line to handle_line while the window has room. */
static void take_lines(app *a)
{
    char *line;
    size_t len;
    long lineno;
    int r;
    while (room(a) && (r = kd_input_line(&a->in, &line, &len, &lineno)) != 0) {
        if (r == 2) {
            kd_pw_refuse(&a->win, kd_pw_push(&a->win, lineno), "line longer than %d bytes",
                         KD_INPUT_MAX_LINE);
        } else if (!blank(line, len)) {
            handle_line(a, line, len, lineno);
        }
    }
}

/* Prints every settled line at the head of the window. */
static void report(app *a)
{
    const kd_pw_entry *e;
    while ((e = kd_pw_done(&a->win)) != NULL) {
        bool ok = e->state == KD_PW_CONFIRMED;
        char *s = kd_report_line(e->line, e->job_id, ok ? NULL : e->error);
        if (!s || printf("%s\n", s) < 0)
            a->output_failed = true;
        free(s);
        if (ok)
            a->confirmed++;
        else
            a->refused++;
        kd_pw_pop(&a->win);
    }
}

/* Sleeps until input is readable (when there is room for it), the broker sent
 * something, or the next confirm deadline / heartbeat tick. */
static int wait_io(app *a, kd_err *err)
{
    int timeout = KD_PRODUCER_TICK_MS;
    int64_t exp = kd_pw_next_expiry(&a->win, mono_ms(), a->timeout_ms);
    if (exp >= 0 && exp < timeout)
        timeout = (int)exp;
    if (a->amqp && kd_amqp_buffered(a->amqp))
        return 0; /* rabbitmq-c already holds input: the socket may stay silent */
    struct pollfd fds[2];
    int nfds = 0, in_idx = -1;
    if (!a->in.eof && room(a)) {
        in_idx = nfds;
        fds[nfds++] = (struct pollfd){.fd = a->in.fd, .events = POLLIN};
    }
    if (a->amqp)
        fds[nfds++] = (struct pollfd){.fd = kd_amqp_fd(a->amqp), .events = POLLIN};
    if (timeout > 0 && fflush(stdout) != 0)
        a->output_failed = true;
    int n = poll(fds, (nfds_t)nfds, timeout);
    /* GCOVR_EXCL_START: poll fails only with EFAULT, EINVAL or ENOMEM */
    if (n < 0 && errno != EINTR)
        return kd_err_set(err, KD_ERR_IO, "poll: %s", kd_strerror(errno));
    /* GCOVR_EXCL_STOP */
    if (n > 0 && in_idx >= 0 && fds[in_idx].revents)
        return kd_input_fill(&a->in, err);
    return 0;
}

static int run(app *a, kd_err *err)
{
    for (;;) {
        take_lines(a);
        pump(a, 0);
        kd_pw_expire(&a->win, mono_ms(), a->timeout_ms);
        report(a);
        if (kd_input_done(&a->in) && a->win.count == 0)
            return 0;
        int rc = wait_io(a, err);
        if (rc)
            return rc;
    }
}

/* ---- setup ---------------------------------------------------------------------------- */

static void usage(void)
{
    printf("Usage: kone-producer [options] [FILE|-]\n"
           "       kone-producer replay-dead [--filter-job-prefix P] [--filter-building B]\n"
           "                                 [--filter-reason R] [--dry-run] [options]\n"
           "Publishes one job per JSON line of FILE (default: stdin) to RabbitMQ and prints\n"
           "one JSON report line per job. Exit 0: all confirmed, 1: some refused, 2: setup\n"
           "failed. replay-dead moves parked jobs back to the work queue (replay-dead --help).\n"
           "See docs/producer.md.\n\n");
}

static int setup(app *a, int argc, char **argv, int *exit_code)
{
    if (kd_prod_load(&a->cfg, PROD_NAME, argc, argv, stderr))
        return 2;
    kd_err err = {0};
    int started = kd_prod_start(&a->cfg, usage, exit_code);
    if (started)
        return started;
    a->ttl_ms = kd_cfg_int(&a->cfg, KD_CFG_JOB_DEFAULT_TTL_MS);
    a->timeout_ms = (int)kd_cfg_int(&a->cfg, KD_CFG_PRODUCER_CONFIRM_TIMEOUT_MS);
    if (a->cfg.nargs > 1) {
        kd_error("expected at most one input file, got %d arguments (see --help)", a->cfg.nargs);
        return 2;
    }
    if (kd_input_open(&a->in, a->cfg.nargs ? a->cfg.args[0] : NULL, &err) != 0) {
        kd_error("%s", err.msg);
        return 2;
    }
    char route[320];
    snprintf(route, sizeof route, "exchange '%s' with routing key '%s'",
             kd_cfg_str(&a->cfg, KD_CFG_AMQP_EXCHANGE),
             kd_cfg_str(&a->cfg, KD_CFG_AMQP_ROUTING_KEY));
    if (kd_pw_init(&a->win, KD_PRODUCER_RING, route) != 0) {
        /* GCOVR_EXCL_START: allocation failure */
        kd_error("out of memory");
        return 2;
        /* GCOVR_EXCL_STOP */
    }
    if (kd_amqp_connect(&a->amqp, &a->cfg, &err) != 0) {
        kd_error("%s", err.msg);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "replay-dead") == 0)
        return kd_replay_main(argc, argv);
    static app a;
    a.in.fd = -1;
    msgpack_sbuffer_init(&a.sbuf);
    int code = 0;
    int rc = setup(&a, argc, argv, &code);
    if (rc == 0) {
        int64_t t0 = mono_ms();
        kd_err err = {0};
        if (run(&a, &err) != 0) {
            kd_error("%s", err.msg);
            code = 2;
        }
        if (fflush(stdout) != 0 || a.output_failed) {
            kd_error("cannot write the report to stdout: %s", kd_strerror(errno));
            code = 2;
        }
        char summary[256];
        kd_report_summary(summary, sizeof summary, a.confirmed, a.refused,
                          (double)(mono_ms() - t0) / 1000.0);
        fprintf(stderr, "%s\n", summary);
        if (!code)
            code = a.refused ? 1 : 0;
    } else if (rc > 0) {
        code = rc;
    }
    kd_amqp_close(a.amqp);
    kd_pw_free(&a.win);
    if (a.in.fd >= 0)
        kd_input_close(&a.in);
    msgpack_sbuffer_destroy(&a.sbuf);
    kd_config_free(&a.cfg);
    return code;
}
