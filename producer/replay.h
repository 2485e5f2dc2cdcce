/* replay.h: `kone-producer replay-dead`, moving parked jobs back to the work queue.
 *
 *   kone-producer replay-dead [--filter-job-prefix P] [--filter-building B]
 *                             [--filter-reason R] [--dry-run] [options]
 *
 * It takes the messages of the dead-letter queue (amqp.dead_queue) one by one with
 * basic.get, at most as many as the queue held when it started, so a message it leaves in
 * place is never looked at twice. A message matching every filter given is published to
 * the work exchange (on the side channel, confirmed) with a fresh attempt count, and only
 * then acked off the dead-letter queue; the others are held unacked until the end and then
 * handed back (requeued) in place. stdout: one JSON line per message; stderr: a summary.
 * docs/producer.md documents it.
 */
#ifndef KD_PRODUCER_REPLAY_H
#define KD_PRODUCER_REPLAY_H

#include <stdbool.h>

#include "kd_config.h"
#include "kd_err.h"

typedef struct kd_replay_filter {
    const char *job_prefix; /* NULL: any */
    const char *building;   /* NULL: any; "9990000951" also matches "building:9990000951" */
    const char *reason;     /* NULL: any; x-kd-reason, e.g. "failed", "undecodable" */
    bool dry_run;
} kd_replay_filter;

/* Takes the replay flags out of argv (argv[0] is kept, "replay-dead" is dropped) and leaves
 * the rest, for kd_config_load, in out_argv (room for argc entries). */
int kd_replay_parse_args(int argc, char **argv, kd_replay_filter *f, char **out_argv, int *out_argc,
                         kd_err *err);
/* Does a parked message with these properties match? job_id / building "" when unknown
 * (an undecodable message has neither: it matches only filters that do not ask for them). */
bool kd_replay_match(const kd_replay_filter *f, const char *job_id, const char *building,
                     const char *reason);
/* One output line (malloc'd, no newline). */
char *kd_replay_line(const char *action, const char *job_id, const char *building,
                     const char *reason, const char *error, int attempt, const char *detail);
/* The command: returns the exit status (0 done, 1 some could not be moved, 2 setup). */
int kd_replay_main(int argc, char **argv);

#endif
