/* common.c: options, deadline and output of the baseline programs (see common.h).
 *
 * Why the worker's configuration table: the baselines must run "on the same settings" as
 * the worker they are compared with. Loading kone-worker's keys (KD_* environment, then
 * --key flags) gives them the same broker addresses, the same producer settings and the
 * same worker.inflight default without repeating a single value here.
 */
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_log.h"
#include "kd_time.h"

static kd_bench_opt timeout_opt = {"timeout-s",
                                   false,
                                   1,
                                   86400,
                                   KD_BENCH_DEFAULT_TIMEOUT_S,
                                   false,
                                   "give up (exit 1) when the run is not over after this long"};

static void usage_exit(const char *prog, const char *usage, const kd_bench_opt *opts, size_t n_opts,
                       const kd_bench_str *strs, size_t n_strs, int code)
{
    FILE *out = code ? stderr : stdout;
    fprintf(out,
            "usage: %s %s\n\n"
            "%s: one baseline of scripts/bench (docs/benchmark-baselines.md).\n"
            "Prints one line on stdout: <name> rate_per_s=<float> count=<N> seconds=<float>.\n\n",
            prog, usage, prog);
    for (size_t i = 0; i < n_strs; i++)
        fprintf(out, "  --%-14s %s%s\n", strs[i].name, strs[i].help,
                strs[i].required ? " (required)" : "");
    for (size_t i = 0; i < n_opts; i++) {
        if (opts[i].required)
            fprintf(out, "  --%-14s %s (required)\n", opts[i].name, opts[i].help);
        else if (opts[i].value == 0) /* the help text names the default */
            fprintf(out, "  --%-14s %s\n", opts[i].name, opts[i].help);
        else
            fprintf(out, "  --%-14s %s (default %lld)\n", opts[i].name, opts[i].help,
                    (long long)opts[i].value);
    }
    fprintf(out, "  --%-14s %s (default %d)\n", timeout_opt.name, timeout_opt.help,
            KD_BENCH_DEFAULT_TIMEOUT_S);
    fprintf(out, "\nThe stack is read from the KD_* variables of kone-worker ($KD_STATE_DIR/env);\n"
                 "every kone-worker option (e.g. --amqp-host, --kafka-linger-ms) applies too.\n");
    exit(code);
}

/* "--name VALUE" / "--name=VALUE" at argv[*i]: the value, advancing *i past it; NULL when
 * argv[*i] is another option. *missing is set when the option has no value. */
static const char *match(const char *name, int argc, char **argv, int *i, bool *missing)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, "--", 2) != 0 || strncmp(a + 2, name, n) != 0)
        return NULL;
    if (a[2 + n] == '=')
        return a + 3 + n;
    if (a[2 + n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

static bool parse_int(const char *text, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

void kd_bench_init(kd_bench *b, const char *name, const char *usage, int argc, char **argv,
                   kd_bench_opt *opts, size_t n_opts, kd_bench_str *strs, size_t n_strs)
{
    static char prog[64];
    snprintf(prog, sizeof prog, "kd-bench-%s", name);
    memset(b, 0, sizeof *b);
    b->name = name;
    b->prog = prog;
    timeout_opt.value = KD_BENCH_DEFAULT_TIMEOUT_S;

    /* what is not ours goes to the worker's configuration loader */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest) {
        fprintf(stderr, "%s: out of memory\n", prog);
        exit(2);
    }
    int nrest = 0;
    rest[nrest++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            usage_exit(prog, usage, opts, n_opts, strs, n_strs, 0);
        bool missing = false, taken = false;
        const char *v;
        for (size_t k = 0; k < n_strs && !taken && !missing; k++) {
            if ((v = match(strs[k].name, argc, argv, &i, &missing))) {
                if (!*v) {
                    fprintf(stderr, "%s: --%s: must not be empty\n", prog, strs[k].name);
                    exit(2);
                }
                strs[k].value = v;
                taken = true;
            }
        }
        for (size_t k = 0; k <= n_opts && !taken && !missing; k++) {
            kd_bench_opt *o = k < n_opts ? &opts[k] : &timeout_opt;
            if ((v = match(o->name, argc, argv, &i, &missing))) {
                if (!parse_int(v, o->min, o->max, &o->value)) {
                    fprintf(stderr, "%s: --%s: must be an integer in %lld..%lld, got '%s'\n", prog,
                            o->name, (long long)o->min, (long long)o->max, v);
                    exit(2);
                }
                o->set = true;
                taken = true;
            }
        }
        if (missing) {
            fprintf(stderr, "%s: option %s needs a value\n", prog, argv[i]);
            exit(2);
        }
        if (!taken)
            rest[nrest++] = argv[i];
    }
    for (size_t k = 0; k < n_strs; k++)
        if (strs[k].required && !strs[k].value) {
            fprintf(stderr, "%s: --%s is required (see --help)\n", prog, strs[k].name);
            exit(2);
        }
    for (size_t k = 0; k < n_opts; k++)
        if (opts[k].required && !opts[k].set) {
            fprintf(stderr, "%s: --%s is required (see --help)\n", prog, opts[k].name);
            exit(2);
        }

    kd_err err = {0};
    if (kd_config_load(&b->cfg, KD_PROG_WORKER, prog, nrest, rest, &err)) {
        free(rest);
        fprintf(stderr, "%s\n", err.msg); /* it names the program already */
        exit(2);
    }
    free(rest);
    if (b->cfg.nargs > 0) {
        fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", prog, b->cfg.args[0]);
        exit(2);
    }
    if (kd_log_init(prog, kd_cfg_str(&b->cfg, KD_CFG_LOG_LEVEL)) < 0) {
        fprintf(stderr, "%s: log.level: must be debug, info, warn or error\n", prog);
        exit(2);
    }
    b->timeout_s = timeout_opt.value;
    b->deadline_us = kd_mono_us() + b->timeout_s * 1000000;
}

void kd_bench_free(kd_bench *b)
{
    kd_config_free(&b->cfg);
}

/* One stderr line: "<prog>: <what><message>". */
static void say(const kd_bench *b, const char *what, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fprintf(stderr, "%s: %s%s\n", b->prog, what, msg);
}

void kd_bench_note(const kd_bench *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(b, "", fmt, ap);
    va_end(ap);
}

int kd_bench_vfail(const kd_bench *b, const char *fmt, va_list ap)
{
    say(b, "error: ", fmt, ap);
    return 1;
}

int kd_bench_fail(const kd_bench *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = kd_bench_vfail(b, fmt, ap);
    va_end(ap);
    return rc;
}

int kd_bench_timed_out(const kd_bench *b, const char *doing, uint64_t done, uint64_t n,
                       const char *what)
{
    if (kd_bench_left_us(b) > 0)
        return 0;
    return kd_bench_fail(b, "timed out after %lld s %s: %llu of %llu %s", (long long)b->timeout_s,
                         doing, (unsigned long long)done, (unsigned long long)n, what);
}

int64_t kd_bench_left_us(const kd_bench *b)
{
    int64_t left = b->deadline_us - kd_mono_us();
    return left > 0 ? left : 0;
}

int kd_bench_wait_ms(const kd_bench *b, int cap_ms)
{
    int64_t left_ms = kd_bench_left_us(b) / 1000;
    return left_ms < cap_ms ? (int)left_ms : cap_ms;
}

void kd_bench_report(const kd_bench *b, uint64_t count, int64_t t0_us, int64_t t1_us)
{
    double s = (double)(t1_us - t0_us) / 1e6;
    if (s <= 0)
        s = 1e-6; /* a clock that did not move: keep the rate finite */
    printf("%s rate_per_s=%.1f count=%llu seconds=%.6f\n", b->name, (double)count / s,
           (unsigned long long)count, s);
    fflush(stdout);
}

unsigned char *kd_bench_payload(size_t size)
{
    unsigned char *p = malloc(size ? size : 1);
    if (!p)
        return NULL;
    for (size_t i = 0; i < size; i++)
        p[i] = (unsigned char)('a' + i % 26);
    return p;
}

const char *const kd_bench_call_frames[KD_BENCH_CALL_FRAMES] = {
    "{\"connectionId\":\"0f9904be-22be-436c-a224-79adf8c7d383\",\"requestId\":123456,"
    "\"statusCode\":201,\"data\":{\"time\":\"2026-12-04T23:42:40.186Z\"}}",
    "{\"callType\":\"action\",\"buildingId\":\"building:9990000951\",\"groupId\":\"1\","
    "\"data\":{\"request_id\":123456,\"success\":true,\"session_id\":4242}}",
    "{\"callType\":\"monitor-call-state\",\"buildingId\":\"building:9990000951\",\"groupId\":"
    "\"1\",\"subtopic\":\"call_state/4242/being_allocated\",\"data\":{\"time\":\"2026-12-04T23:"
    "42:40.190Z\",\"session_id\":4242,\"state\":\"being_allocated\",\"subgroup_id\":1}}",
    "{\"callType\":\"monitor-call-state\",\"buildingId\":\"building:9990000951\",\"groupId\":"
    "\"1\",\"subtopic\":\"call_state/4242/being_served\",\"data\":{\"time\":\"2026-12-04T23:42:"
    "40.490Z\",\"session_id\":4242,\"state\":\"being_served\",\"allocated_lift_deck\":[1001010],"
    "\"eta\":\"2026-12-04T23:42:41.100Z\",\"subgroup_id\":1}}",
};
