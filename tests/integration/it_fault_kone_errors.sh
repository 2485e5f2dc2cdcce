#!/usr/bin/env bash
# it_fault_kone_errors: KONE answering 500 or 429 to 20% of calls: every job still succeeds.
# A private kone-sim answers 20% of group 1's calls with 500 and 20% of group 2's with 429
# (an answer that means "not executed": no call is made). 1,200 jobs, half per group, two
# workers with 16 in flight, retry tiers of 100 ms .. 1 s and up to 10 attempts.
# Proves: transient KONE errors are retried through RabbitMQ until they succeed: every job
# has exactly one result, succeeded, and some finished on attempt > 1 (attempt recorded);
# both statuses were met and retried; kone-sim made exactly one call per job (session ids
# 1..N), so a retry never called a lift twice; nothing is parked in the dead-letter queue.
source "$(dirname "$0")/lib.sh"

it_worker_has --retry-max-attempts ||
    it_pending "retries (retry.* keys in kone-worker) have not landed"

N=${IT_FAULT_JOBS:-1200}
INFLIGHT=16
export KD_RETRY_TIERS_MS=100,200,500,1000 KD_RETRY_BASE_MS=100 KD_RETRY_CAP_MS=1000 KD_RETRY_MAX_ATTEMPTS=10

it_start_sim --sim-faults='{"call_error":{"share":0.2,"status":500},
    "buildings":{"building:9990000951":{"groups":{"2":{"call_error":{"share":0.2,"status":429}}}}}}'
{
    it_jobs_good $((N / 2)) g1
    it_jobs g2 $((N - N / 2)) '{v: 1, group_id: "2", area: 1000, action: 2, destination: ((12 + $i % 9) * 1000)}'
} >"$IT_DIR/jobs.jsonl"
it_publish "$IT_DIR/jobs.jsonl" || it_fail "producer refused jobs"
[ "$(grep -c '"confirmed"' "$IT_DIR/jobs.jsonl.report")" -eq "$N" ] || it_fail "not all $N jobs confirmed"
t0=$SECONDS
it_fault_worker w1
it_fault_worker w2

it_wait_ids "$N" 600
sleep 3 # late duplicates arrive now
it_check_reconciled 0
s=$IT_DIR/reconcile.json
[ "$(jq '.final_outcomes.succeeded // 0' "$s")" -eq "$N" ] ||
    it_fail "not every job succeeded: $(jq -c '{final_outcomes, final_errors}' "$s")"
retried=$(jq .attempts_gt1 "$s")
[ "$retried" -ge $((N / 20)) ] || it_fail "only $retried jobs finished on attempt > 1; with 20% errors expect about $((N / 4))"
[ "$(jq .parked "$s")" -eq 0 ] || it_fail "jobs were parked: $(jq -c '.parked_list[:3]' "$s")"
for st in 500 429; do
    n=$(cat "$IT_DIR"/w[12].log | grep -c "\"message\":\"attempt [0-9]* failed ($st); attempt" || true)
    [ "$n" -ge 1 ] || it_fail "no worker retried after a $st"
    it_log "$n attempts answered $st were retried"
done
jq -se --argjson n "$N" '[.[].session_id] | (unique | length) == $n and min == 1 and max == $n' \
    "$IT_DIR/results.jsonl" >/dev/null ||
    it_fail "kone-sim accepted more calls than jobs: session ids $(jq -sc '[.[].session_id] | {distinct: (unique | length), min: min, max: max}' "$IT_DIR/results.jsonl")"
it_log "$N succeeded, $retried of them on attempt > 1 (max $(jq .max_attempt "$s")); kone-sim accepted exactly $N calls"
it_stop_worker w1
it_stop_worker w2
it_expect_queue_empty
it_stop_sim
it_drop_queues
it_log "PASS in $((SECONDS - t0))s"
