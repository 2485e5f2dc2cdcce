/* report.c: see report.h. */
#include "report.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* jansson refuses invalid UTF-8; a report line must never be lost, so degrade instead. */
json_t *kd_report_json_string(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

char *kd_report_line(long line, const char *job_id, const char *error)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = json_object_set_new(o, "line", json_integer(line));
    bad |= json_object_set_new(o, "job_id",
                               job_id && *job_id ? kd_report_json_string(job_id) : json_null());
    bad |= json_object_set_new(o, "status", json_string(error ? "refused" : "confirmed"));
    if (error)
        bad |= json_object_set_new(o, "error", kd_report_json_string(error));
    char *s = bad ? NULL : json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

void kd_report_summary(char *buf, size_t len, long confirmed, long refused, double seconds)
{
    long jobs = confirmed + refused;
    double rate = seconds > 0 ? (double)jobs / seconds : 0;
    snprintf(buf, len,
             "kone-producer: %ld confirmed, %ld refused (%ld jobs in %.2f s, %.0f jobs/s)",
             confirmed, refused, jobs, seconds, rate);
}
