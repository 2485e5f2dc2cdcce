/* log.c: see kd_log.h. jansson does the JSON escaping so any message text is safe.
 *
 * Field names follow the Elastic Common Schema (ECS) so Filebeat or Fluent Bit can ship the
 * lines to Elasticsearch unchanged: keys are written dotted at the top level ("log.level"),
 * as the ecs-logging libraries do, and Elasticsearch expands them into objects. The first
 * three keys are @timestamp, log.level and message, in that order (ecs-logging's spec), and
 * jansson keeps insertion order when it prints. Fields of this project live under "kd.",
 * the one custom namespace docs/logging.md documents (ECS reserves none of it).
 */
#include "kd_log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kd_str.h"

#ifndef KD_VERSION
#define KD_VERSION "0"
#endif

static const char *log_prog = "kone";
static char log_dataset[80] = "kone.log";
static char log_instance[128];
static kd_log_level log_min = KD_LOG_INFO;
static const char *level_names[] = {"debug", "info", "warn", "error"};

int kd_log_init(const char *prog, const char *level)
{
    log_prog = prog;
    snprintf(log_dataset, sizeof log_dataset, "%s.log", prog);
    for (int i = 0; i < 4; i++) {
        if (level && strcmp(level, level_names[i]) == 0) {
            log_min = (kd_log_level)i;
            return 0;
        }
    }
    return -1;
}

void kd_log_set_instance(const char *id)
{
    kd_str_copy(log_instance, sizeof log_instance, id ? id : "");
}

int kd_log_enabled(kd_log_level level)
{
    return level >= log_min;
}

static void put_str(json_t *o, const char *k, const char *v)
{
    if (v && *v)
        json_object_set_new(o, k, json_string(v));
}

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* ECS's trace.id is the 32-hex trace id that APM agents use; a job's trace_id is most often a
 * W3C traceparent ("00-<trace id>-<parent id>-<flags>"), whose trace id is put there so logs
 * join the caller's traces. Any other value is kept whole: it is still the job's correlation id. */
static void put_trace(json_t *o, const char *t)
{
    if (!t || !*t)
        return;
    if (strlen(t) == 55 && t[2] == '-' && t[35] == '-' && t[52] == '-' && is_hex(t, 2) &&
        is_hex(t + 3, 32) && is_hex(t + 36, 16) && is_hex(t + 53, 2)) {
        json_object_set_new(o, "trace.id", json_stringn(t + 3, 32));
        json_object_set_new(o, "span.id", json_stringn(t + 36, 16));
        return;
    }
    json_object_set_new(o, "trace.id", json_string(t));
}

void kd_log(kd_log_level level, const kd_log_ctx *ctx, const char *fmt, ...)
{
    if (level < log_min)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000);

    json_t *o = json_object();
    if (!o)
        return;
    json_object_set_new(o, "@timestamp", json_string(when));
    json_object_set_new(o, "log.level", json_string(level_names[level]));
    /* json_string refuses invalid UTF-8; fall back to a lossy copy rather than lose the line */
    json_t *m = json_string(msg);
    if (!m) {
        for (char *p = msg; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
        m = json_string(msg);
    }
    json_object_set_new(o, "message", m);
    json_object_set_new(o, "ecs.version", json_string(KD_LOG_ECS_VERSION));
    json_object_set_new(o, "service.name", json_string(log_prog));
    json_object_set_new(o, "service.version", json_string(KD_VERSION));
    json_object_set_new(o, "event.dataset", json_string(log_dataset));
    if (ctx) {
        put_trace(o, ctx->trace_id);
        put_str(o, "kd.job_id", ctx->job_id);
        put_str(o, "kd.building_id", ctx->building_id);
    }
    put_str(o, "kd.worker", log_instance);
    char *line = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!line)
        return;
    flockfile(stderr);
    fputs(line, stderr);
    fputc('\n', stderr);
    fflush(stderr);
    funlockfile(stderr);
    free(line);
}

void kd_log_foreign(kd_log_level level, const char *lib, const char *line, void (*mask)(char *text))
{
    if (level < log_min)
        return; /* before the copy: lws at debug level is chatty */
    char buf[768];
    size_t n = strlen(kd_str_copy(buf, sizeof buf, line));
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    if (mask)
        mask(buf);
    kd_log(level, NULL, "%s: %s", lib, buf);
}
