/* run.c: see kd_run.h. Small helpers shared by the worker's AMQP and KONE sides. */
#include "kd_run.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "kd_str.h"

const char *kd_outcome_name(kd_outcome o)
{
    switch (o) {
    case KD_OUTCOME_SUCCEEDED: return "succeeded";
    case KD_OUTCOME_REJECTED: return "rejected";
    case KD_OUTCOME_FAILED: return "failed";
    case KD_OUTCOME_EXPIRED: return "expired";
    case KD_OUTCOME_UNKNOWN: return "unknown";
    case KD_OUTCOME_NONE: break;
    }
    return "none";
}

void kd_run_finish(kd_run *run, kd_outcome o, kd_failure_class f, const char *code, const char *fmt,
                   ...)
{
    run->outcome = o;
    run->failure = f;
    kd_str_copy(run->error_code, sizeof run->error_code, code ? code : "");
    run->error_message[0] = '\0';
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        kd_str_vformat(run->error_message, sizeof run->error_message, fmt, ap);
        va_end(ap);
    }
    run->finished_us = kd_now_us();
}
