/* job_decode_ref.h: the pre-issue-17 msgpack job decoder (msgpack-c based), the reference
 * that tests and the fuzzer hold kd_job_decode to (see job_decode_ref.c). */
#ifndef KD_JOB_DECODE_REF_H
#define KD_JOB_DECODE_REF_H

#include "kd_job.h"

/** kd_job_decode as it was: same arguments, same contract. */
int kd_job_decode_ref(const void *buf, size_t len, int64_t default_ttl_ms, kd_job *job,
                      kd_err *err);

#endif
