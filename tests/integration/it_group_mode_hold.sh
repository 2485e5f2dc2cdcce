#!/usr/bin/env bash
# it_group_mode_hold: kone.group_mode_policy=hold. A group in a refused lift mode (OSS) holds its
# jobs: not called, re-queued through the retry tiers without using an attempt, called once
# when the mode clears, expired when the deadline comes first.
# A private kone-sim, one worker with one connection (so the connection that learned the
# mode is the one every job goes through). A first job subscribes the connection to group 2 of
# building 951; then the group goes OSS and two jobs come: `long` (deadline 60 s) and `short`
# (deadline 4 s). Every job carries media_id = its job id, so kone-sim's call log counts the
# calls per job.
# Proves: while the group is in OSS neither job is called (kone-sim's call log) and both are
# retried as group_mode_held on attempt 1; `short` expires with its last error naming the mode
# and is never called; the group back to NOR, `long` succeeds on attempt 1 with exactly one
# call.
source "$(dirname "$0")/lib.sh"

it_worker_has -- '--kone-group-mode-policy' || it_pending "kone.group_mode_policy has not landed"

export KD_RETRY_TIERS_MS=200,500 KD_RETRY_BASE_MS=200 KD_RETRY_CAP_MS=500 KD_RETRY_MAX_ATTEMPTS=3
G2='{v: 1, group_id: "2", area: 15000, action: 2, destination: 16000, media_id: ($p + ($i | tostring))}'
mode() { it_sim_faults "{\"buildings\":{\"building:9990000951\":{\"groups\":{\"2\":{\"mode\":\"$1\"}}}}}"; }

it_start_sim
t0=$SECONDS
it_fault_worker w1 KD_KONE_CONNECTIONS=1 KD_KONE_GROUP_MODE_POLICY=hold
it_jobs warm 1 "$G2" >"$IT_DIR/warm.jsonl"
it_publish "$IT_DIR/warm.jsonl" || it_fail "producer refused the warm-up job"
it_wait_ids 1 60 '.outcome == "succeeded"'

mode OSS
for _ in $(seq 100); do
    grep -q 'is in OSS mode' "$IT_DIR/w1.log" && break
    sleep 0.1
done
grep -q 'is in OSS mode' "$IT_DIR/w1.log" || it_fail "the worker never saw group 2 go OSS"
since=$(it_sim_calls_mark)
{
    it_jobs long 1 "$G2 + {deadline: (\$now + 60000)}"
    it_jobs short 1 "$G2 + {deadline: (\$now + 4000)}"
} >"$IT_DIR/held.jsonl"
it_publish "$IT_DIR/held.jsonl" || it_fail "producer refused the held jobs"

it_wait_ids 2 30 # warm + short (expired)
it_expect short-1 '.outcome == "expired" and .attempt == 1 and (.error.message | test("group_mode_held.*OSS mode"))'
[ "$(it_count_ids '.job_id | endswith("-long-1")')" -eq 0 ] || it_fail "the long job ended while its group was in OSS"
held=$(grep -c '"message":"attempt 1 failed (group_mode_held); attempt 1 in' "$IT_DIR/w1.log" || true)
[ "$held" -ge 2 ] || it_fail "held jobs were not re-queued as group_mode_held on attempt 1 ($held retries)"
[ -z "$(it_sim_calls_per_job "$IT_PREFIX-" "" "$since")" ] || it_fail "a held job was called while its group was in OSS"

mode NOR
it_wait_ids 3 30
it_expect long-1 '.outcome == "succeeded" and .attempt == 1'
calls=$(it_sim_calls_per_job "$IT_PREFIX-" "" "$since")
[ "$calls" = "$IT_PREFIX-long-1 1" ] || it_fail "expected one call for long-1 and none for short-1, kone-sim logged: ${calls:-none}"
it_log "held: $held re-queues while in OSS; short expired uncalled, long called once after NOR"
it_stop_worker w1
it_expect_queue_empty
it_stop_sim
it_drop_queues
it_log "PASS in $((SECONDS - t0))s"
