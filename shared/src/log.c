/* log.c: see kd_log.h. jansson does the JSON escaping so any message text is safe. */
#include "kd_log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *log_prog = "kone";
static kd_log_level log_min = KD_LOG_INFO;
static const char *level_names[] = {"debug", "info", "warn", "error"};

int kd_log_init(const char *prog, const char *level)
{
    log_prog = prog;
    for (int i = 0; i < 4; i++) {
        if (level && strcmp(level, level_names[i]) == 0) {
            log_min = (kd_log_level)i;
            return 0;
        }
    }
    return -1;
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
    json_object_set_new(o, "time", json_string(when));
    json_object_set_new(o, "level", json_string(level_names[level]));
    json_object_set_new(o, "prog", json_string(log_prog));
    /* json_string refuses invalid UTF-8; fall back to a lossy copy rather than lose the line */
    json_t *m = json_string(msg);
    if (!m) {
        for (char *p = msg; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
        m = json_string(msg);
    }
    json_object_set_new(o, "msg", m);
    if (ctx) {
        put_str(o, "job_id", ctx->job_id);
        put_str(o, "trace_id", ctx->trace_id);
        put_str(o, "building_id", ctx->building_id);
    }
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
