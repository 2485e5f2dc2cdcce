#!/usr/bin/env bash
# it_fault_sigkill: a worker killed with SIGKILL mid-run loses no job.
# 1,200 jobs, two workers with 16 jobs in flight each, a private kone-sim with some latency so
# calls are in flight when w1 dies (once 100 results are in). Its unacked jobs go
# back to the queue and are redelivered to the others (w2, and w3 started to keep two workers).
# Proves: every confirmed job has exactly one final outcome; the jobs the killed worker had
# called but not acked show up as duplicates, at most its in-flight limit (16), each reported
# with its attempts and workers; the second result of each is marked redelivered=true.
source "$(dirname "$0")/lib.sh"

N=${IT_FAULT_JOBS:-1200}
INFLIGHT=16
it_start_sim --sim-faults='{"latency_ms":100,"jitter_ms":100}'
it_jobs_good "$N" >"$IT_DIR/jobs.jsonl"
it_publish "$IT_DIR/jobs.jsonl" || it_fail "producer refused jobs"
[ "$(grep -c '"confirmed"' "$IT_DIR/jobs.jsonl.report")" -eq "$N" ] || it_fail "not all $N jobs confirmed"

it_follow_results
t0=$SECONDS
it_fault_worker w1
it_fault_worker w2
it_wait_followed 100 300
it_kill_worker w1 KILL
[ "$IT_RC" -eq 137 ] || it_fail "w1 exited with $IT_RC, not by SIGKILL"
it_log "w1 killed with SIGKILL after $((SECONDS - t0))s"
it_fault_worker w3

it_wait_ids "$N" 600
sleep 3 # late duplicates arrive now
it_check_reconciled $INFLIGHT
s=$IT_DIR/reconcile.json
[ "$(jq '.final_outcomes.succeeded // 0' "$s")" -eq "$N" ] || it_fail "not every job succeeded: $(jq -c .final_outcomes "$s")"
[ "$(jq .redelivered "$s")" -ge 1 ] || it_fail "no job was redelivered: the kill found nothing in flight"
jq -e '[.duplicates[] | any(.results[]; .redelivered)] | all' "$s" >/dev/null ||
    it_fail "a duplicate has no result marked redelivered: $(jq -c '.duplicates[:3]' "$s")"
it_log "$(jq -r '"\(.redelivered) jobs redelivered after the kill, \(.duplicate_count) called twice (limit '$INFLIGHT')"' "$s")"

it_stop_worker w2
it_stop_worker w3
it_expect_queue_empty
it_stop_sim
it_drop_queues
it_log "PASS in $((SECONDS - t0))s"
