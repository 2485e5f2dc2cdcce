/* kd_log: structured logs, one JSON object per line on stderr.
 *
 * {"time":"2026-11-28T20:15:00.123Z","level":"info","prog":"kone-worker","msg":"...",
 *  "job_id":"...","trace_id":"...","building_id":"..."}
 * The job fields appear only where they apply (ctx non-NULL, field non-empty). Lines are
 * written with one fwrite under the stdio lock, so threads never interleave. Callers
 * must never pass secrets (tokens, passwords, client secrets) in messages.
 */
#ifndef KD_LOG_H
#define KD_LOG_H

typedef enum { KD_LOG_DEBUG = 0, KD_LOG_INFO, KD_LOG_WARN, KD_LOG_ERROR } kd_log_level;

typedef struct kd_log_ctx {
    const char *job_id;
    const char *trace_id;
    const char *building_id;
} kd_log_ctx;

/* level: "debug", "info", "warn", "error"; returns -1 for an unknown level. */
int kd_log_init(const char *prog, const char *level);
int kd_log_enabled(kd_log_level level);
void kd_log(kd_log_level level, const kd_log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define kd_debug(...) kd_log(KD_LOG_DEBUG, NULL, __VA_ARGS__)
#define kd_info(...) kd_log(KD_LOG_INFO, NULL, __VA_ARGS__)
#define kd_warn(...) kd_log(KD_LOG_WARN, NULL, __VA_ARGS__)
#define kd_error(...) kd_log(KD_LOG_ERROR, NULL, __VA_ARGS__)

#endif
