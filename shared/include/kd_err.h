/**
 * @file kd_err.h
 * @brief kd_err: errors are values.
 *
 * Every fallible function in the project returns an int (0 = ok, otherwise a kd_err_code)
 * and, when given a non-NULL kd_err, fills it with a message a person can act on.
 * Messages never contain secrets: callers pass field names and public values only.
 */
#ifndef KD_ERR_H
#define KD_ERR_H

#include <stddef.h>

/** Error codes: what every fallible function returns (0 is success). */
typedef enum {
    KD_OK = 0,       /**< success */
    KD_ERR_INVALID,  /**< bad input: a job field, a config value, a malformed frame */
    KD_ERR_DECODE,   /**< bytes that cannot be decoded at all (not msgpack, not JSON) */
    KD_ERR_NOMEM,    /**< allocation failed */
    KD_ERR_IO,       /**< socket, file or broker I/O failed */
    KD_ERR_TIMEOUT,  /**< a deadline passed */
    KD_ERR_AUTH,     /**< credentials refused (401) */
    KD_ERR_REFUSED,  /**< the peer refused the request (publish nacked, 4xx) */
    KD_ERR_INTERNAL, /**< a bug or an impossible state */
} kd_err_code;

/** An error: its code and a message a person can act on (never a secret). */
typedef struct kd_err {
    int code;      /**< a kd_err_code */
    char msg[512]; /**< what went wrong, naming the field, key or address */
} kd_err;

/** Makes err empty (code 0, message ""): what `kd_err e = {0}` says, without clearing all of
 * its 516 bytes, which a path run for every frame or job paid each time (issue 17). */
static inline void kd_err_clear(kd_err *err)
{
    err->code = 0;
    err->msg[0] = '\0';
}

/** Sets err (if non-NULL) and returns code, so callers can `return kd_err_set(...)`. */
int kd_err_set(kd_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/** Prefixes the existing message with context: "job_id: <old message>". */
int kd_err_wrap(kd_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** The code's short name, e.g. "timeout" ("unknown" for a code not in kd_err_code; static storage).
 */
const char *kd_err_code_name(int code);
/** strerror(errnum)'s text, safe to call from several threads at once: strerror may reuse one
 * buffer for every thread (clang-tidy's concurrency-mt-unsafe); this one is the caller thread's. */
const char *kd_strerror(int errnum);

#endif
