#!/usr/bin/env bash
# it_fault_kafka_down: Kafka stopped for 30 s mid-run: no result lost, no job executed twice.
# 1,200 jobs, two workers with 16 in flight, a private kone-sim (its session ids count the
# calls it accepted: 1, 2, 3, ...). Once 200 results are in, the stack's Kafka broker is
# stopped (SIGTERM, as dev-down does) for 30 s, then started again by scripts/dev-up.
# While it is down the workers keep their results queued in librdkafka and take no new jobs
# beyond their in-flight limit (nothing is acked without its result in Kafka). A trap starts
# Kafka again however the test ends, so later tests find the stack whole.
# Proves: every confirmed job has exactly one result; no duplicate; kone-sim accepted exactly
# one call per job (session ids 1..N, each in exactly one result), so nothing was called twice
# because of the outage; while Kafka was away at most the jobs already in flight finished
# (no new job was taken); both workers exit 0.
source "$(dirname "$0")/lib.sh"

N=${IT_FAULT_JOBS:-1200}
INFLIGHT=16
DOWN_S=${IT_KAFKA_DOWN_S:-30}
it_at_exit it_stack_restore # Kafka back for later tests, whatever happens

it_start_sim --sim-faults='{"latency_ms":50,"jitter_ms":50}'
it_jobs_good "$N" >"$IT_DIR/jobs.jsonl"
it_publish "$IT_DIR/jobs.jsonl" || it_fail "producer refused jobs"
[ "$(grep -c '"confirmed"' "$IT_DIR/jobs.jsonl.report")" -eq "$N" ] || it_fail "not all $N jobs confirmed"
it_follow_results
t0=$SECONDS
it_fault_worker w1
it_fault_worker w2
it_wait_followed 200 300

it_log "stopping Kafka for ${DOWN_S}s"
it_kafka_stop
stop_ms=$(date +%s%3N)
sleep "$DOWN_S"
start_ms=$(date +%s%3N)
t1=$SECONDS
it_kafka_start
it_log "Kafka back after $((SECONDS - t1))s"

it_wait_ids "$N" 600
sleep 3 # late duplicates arrive now
it_check_reconciled 0
s=$IT_DIR/reconcile.json
[ "$(jq '.final_outcomes.succeeded // 0' "$s")" -eq "$N" ] || it_fail "not every job succeeded: $(jq -c .final_outcomes "$s")"
# Calls kone-sim accepted: exactly one per job.
jq -se --argjson n "$N" '[.[].session_id] | (unique | length) == $n and min == 1 and max == $n' \
    "$IT_DIR/results.jsonl" >/dev/null ||
    it_fail "kone-sim accepted more calls than jobs: session ids $(jq -sc '[.[].session_id] | {distinct: (unique | length), min: min, max: max}' "$IT_DIR/results.jsonl")"
it_log "kone-sim accepted exactly $N calls (session ids 1..$N, one per job)"
# While Kafka was away, only the jobs already in flight may have finished: no new job was taken.
during=$(jq -s --argjson a "$stop_ms" --argjson b "$start_ms" 'map(select(.finished_at > $a and .finished_at < $b)) | length' "$IT_DIR/results.jsonl")
it_log "$during jobs finished while Kafka was down (in-flight limit 2 x $INFLIGHT)"
[ "$during" -le $((2 * INFLIGHT)) ] || it_fail "$during jobs finished while Kafka was down: the workers kept taking jobs"
it_stop_worker w1
it_stop_worker w2
it_expect_queue_empty
it_stop_sim
it_drop_queues
it_log "PASS in $((SECONDS - t0))s"
