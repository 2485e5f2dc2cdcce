/* event_result_ref.h: the pre-issue-17 result event encoder (msgpack-c's packer), the
 * reference test_event holds kd_event_encode_result's bytes to (see event_result_ref.c). */
#ifndef KD_EVENT_RESULT_REF_H
#define KD_EVENT_RESULT_REF_H

#include "kd_event.h"

/** kd_event_encode_result as it was: same arguments, same contract. */
int kd_event_encode_result_ref(const kd_run *run, const char *worker, msgpack_sbuffer *sb,
                               kd_err *err);

#endif
