/* common: what the three baseline programs of scripts/bench share (bench/consume.c,
 * bench/produce.c, bench/kone.c; docs/benchmark-baselines.md says what each measures).
 *
 * The contract with scripts/bench, kept here in one place so the three cannot drift:
 *   - the stack is found through the same KD_* variables (and --key flags) as kone-worker:
 *     the configuration is loaded as the worker's (KD_PROG_WORKER), so "the same settings"
 *     means the same table and the same defaults, not a copy of them;
 *   - stdout carries exactly one line, "<name> rate_per_s=<float> count=<N> seconds=<float>",
 *     printed only on success; progress and errors go to stderr;
 *   - every wait is bounded by one deadline (--timeout-s, default 300), so a lost message
 *     makes the program fail with a message saying what was missing, never hang;
 *   - exit status: 0 measured, 1 the run failed (broker error, deadline, refused message),
 *     2 bad usage or configuration.
 * Nothing here prints a configuration value that could be a secret.
 */
#ifndef KD_BENCH_COMMON_H
#define KD_BENCH_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kd_config.h"

#define KD_BENCH_DEFAULT_TIMEOUT_S 300

/* One option of a bench program: "--name VALUE" or "--name=VALUE", a positive integer. */
typedef struct kd_bench_opt {
    const char *name; /* without "--", e.g. "count" */
    bool required;
    int64_t min, max;
    int64_t value; /* in: the default (when not required); out: the value given */
    bool set;      /* out: the option was given */
    const char *help;
} kd_bench_opt;

/* A string option ("--queue Q"). */
typedef struct kd_bench_str {
    const char *name;
    bool required;
    const char *value; /* in: default (may be NULL); out: points into argv */
    const char *help;
} kd_bench_str;

typedef struct kd_bench {
    const char *name; /* "consume": the stdout line's first word */
    const char *prog; /* "kd-bench-consume": stderr prefix, AMQP connection name */
    kd_config cfg;    /* the worker's configuration */
    int64_t timeout_s;
    int64_t deadline_us; /* kd_mono_us() by which the run must be over */
} kd_bench;

/* Parses the program's own options (plus --timeout-s and --help), loads the rest of argv
 * and the environment as kone-worker's configuration, sets up logging and starts the
 * deadline. Exits 0 after --help and 2 on bad usage, with the reason on stderr. */
void kd_bench_init(kd_bench *b, const char *name, const char *usage, int argc, char **argv,
                   kd_bench_opt *opts, size_t n_opts, kd_bench_str *strs, size_t n_strs);
void kd_bench_free(kd_bench *b);

/* Progress on stderr: "kd-bench-consume: <message>". */
void kd_bench_note(const kd_bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The failure line on stderr; returns 1, the exit status of a failed run. */
int kd_bench_fail(const kd_bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* kd_bench_fail with a va_list, for a benchmark's own printf-like failure paths. */
int kd_bench_vfail(const kd_bench *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* 0 while there is time left; once the deadline has passed, the failure line "timed out
 * after S s <doing>: <done> of <n> <what>" and 1 (the exit status of a failed run). */
int kd_bench_timed_out(const kd_bench *b, const char *doing, uint64_t done, uint64_t n,
                       const char *what);
/* µs left before the deadline (0 when it has passed). */
int64_t kd_bench_left_us(const kd_bench *b);
/* At most cap_ms, and never past the deadline. */
int kd_bench_wait_ms(const kd_bench *b, int cap_ms);

/* The one stdout line. */
void kd_bench_report(const kd_bench *b, uint64_t count, int64_t t0_us, int64_t t1_us);

/* BYTES bytes of printable filler (a body or a value of the given size); NULL when out of
 * memory. The content does not matter to the brokers, only the size does. */
unsigned char *kd_bench_payload(size_t size);

/* One call's frames as kone-sim writes them (sim/frames.c), building:9990000951 group 1: the
 * answer, the call result, being_allocated and the decisive being_served (the frame
 * benchmarks' input). */
#define KD_BENCH_CALL_FRAMES 4
extern const char *const kd_bench_call_frames[KD_BENCH_CALL_FRAMES];

#endif
