/**
 * @file kd_log.h
 * @brief Structured logs: one JSON object per line on stderr, in ECS field names.
 *
 * @code{.json}
 * {"@timestamp":"2026-11-28T20:15:00.123Z","log.level":"info","message":"...",
 *  "ecs.version":"8.11.0","service.name":"kone-worker","service.version":"0.1.0",
 *  "event.dataset":"kone-worker.log","trace.id":"4bf92f3577b34da6a3ce929d0e0e4736",
 *  "span.id":"00f067aa0ba902b7","kd.job_id":"...","kd.building_id":"...","kd.worker":"..."}
 * @endcode
 *
 * The names are the Elastic Common Schema's (docs/logging.md lists every field and
 * docs/schemas/log-line.schema.json checks them), so the lines go to Elasticsearch as they
 * are. The job fields appear only where they apply (ctx non-NULL, field non-empty);
 * kd.worker once kd_log_set_instance() named the process. Lines are written with one
 * fputs under the stdio lock, so threads never interleave. Callers must never pass
 * secrets (tokens, passwords, client secrets) in messages.
 */
#ifndef KD_LOG_H
#define KD_LOG_H

/** The ECS version whose field names the lines use (the line's ecs.version). */
#define KD_LOG_ECS_VERSION "8.11.0"

/** Severity of a line, lowest first; its name is the line's log.level. */
typedef enum {
    KD_LOG_DEBUG = 0, /**< "debug": detail for a developer, off in production */
    KD_LOG_INFO,      /**< "info": what the program did (connects, starts, stops) */
    KD_LOG_WARN,      /**< "warn": something failed and was handled (retry, reconnect) */
    KD_LOG_ERROR      /**< "error": something failed that a person must look at */
} kd_log_level;

/** The job a line is about; any field may be NULL or empty and is then left out. */
typedef struct kd_log_ctx {
    const char *job_id;      /**< the job's job_id, logged as kd.job_id */
    const char *trace_id;    /**< the job's trace_id: trace.id (and span.id for a traceparent) */
    const char *building_id; /**< the job's building, logged as kd.building_id */
} kd_log_ctx;

/**
 * Names the program (service.name, event.dataset) and sets the lowest level written.
 * @param prog  program name, kept by pointer: a string literal
 * @param level "debug", "info", "warn" or "error"
 * @return 0, or -1 for an unknown level (the level is then unchanged)
 */
int kd_log_init(const char *prog, const char *level);

/**
 * Names this process among its replicas (kd.worker on every later line), e.g. worker.id.
 * @param id the name, copied; NULL or "" leaves the field out
 */
void kd_log_set_instance(const char *id);

/**
 * Tells whether a line at @p level would be written, to skip costly formatting.
 * @return non-zero when kd_log() at this level writes
 */
int kd_log_enabled(kd_log_level level);

/**
 * Writes one line, printf-style, when @p level is at or above the level set.
 * @param level severity
 * @param ctx   the job the line is about, or NULL
 * @param fmt   printf format of the message (at most 1023 bytes are kept)
 */
void kd_log(kd_log_level level, const kd_log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * Logs a line another library hands to its log callback (libwebsockets' do), with no job
 * context, as "<lib>: <line>": its trailing CR and LF dropped and, when mask is not NULL, the
 * text first passed through mask (in place), so that a secret the library quotes (a token in
 * a URL) never reaches the log. Longer lines are cut at 767 bytes.
 */
void kd_log_foreign(kd_log_level level, const char *lib, const char *line,
                    void (*mask)(char *text));

/** Logs at debug level with no job context (printf arguments). */
#define kd_debug(...) kd_log(KD_LOG_DEBUG, NULL, __VA_ARGS__)
/** Logs at info level with no job context (printf arguments). */
#define kd_info(...) kd_log(KD_LOG_INFO, NULL, __VA_ARGS__)
/** Logs at warn level with no job context (printf arguments). */
#define kd_warn(...) kd_log(KD_LOG_WARN, NULL, __VA_ARGS__)
/** Logs at error level with no job context (printf arguments). */
#define kd_error(...) kd_log(KD_LOG_ERROR, NULL, __VA_ARGS__)

#endif
