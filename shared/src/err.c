/* err.c: see kd_err.h. Formatting helpers only; no allocation, so usable on any path. */
#include "kd_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int kd_err_set(kd_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int kd_err_wrap(kd_err *err, const char *fmt, ...)
{
    if (!err)
        return KD_ERR_INTERNAL;
    char prefix[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
    return err->code;
}

const char *kd_err_code_name(int code)
{
    switch (code) {
    case KD_OK: return "ok";
    case KD_ERR_INVALID: return "invalid";
    case KD_ERR_DECODE: return "decode";
    case KD_ERR_NOMEM: return "nomem";
    case KD_ERR_IO: return "io";
    case KD_ERR_TIMEOUT: return "timeout";
    case KD_ERR_AUTH: return "auth";
    case KD_ERR_REFUSED: return "refused";
    case KD_ERR_INTERNAL: return "internal";
    }
    return "unknown";
}

const char *kd_strerror(int errnum)
{
    static _Thread_local char buf[128];
    /* GNU strerror_r (_GNU_SOURCE): returns its text, in buf or in static storage. */
    return strerror_r(errnum, buf, sizeof buf);
}
