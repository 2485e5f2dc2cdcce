#!/usr/bin/env bash
# it_fault_kafka_down: Kafka stopped for 30 s mid-run, and a worker stopped with SIGTERM while
# it is down: no result lost, no job executed twice.
# 1,200 jobs (media_id = job id, so kone-sim's call log counts the calls per job), two workers
# with 16 in flight, the stack's call ledger, a private kone-sim (its session ids count the
# calls it accepted: 1, 2, 3, ...). Once 200 results are in, the stack's Kafka broker is
# stopped (SIGTERM, as dev-down does) for 30 s, then started again by scripts/dev-up.
# While it is down the workers keep their results queued in librdkafka and take no new jobs
# beyond their in-flight limit (nothing is acked without its result in Kafka). 5 s into the
# outage w1 gets SIGTERM (worker.drain_ms 2 s): it exits 0 with results it could not produce,
# its jobs unacked; w3 replaces it. Their outcomes are in the ledger, so when they are
# redelivered after Kafka is back their recorded results are produced (redelivered=true), not
# called again. A trap starts Kafka again however the test ends, so later tests find the stack
# whole.
# Proves: every confirmed job has exactly one result; no duplicate; kone-sim logged exactly one
# elevator call per job (calls placed = jobs; and its session ids 1..N are each in exactly one
# result), so nothing was called twice because of the outage or the stop; w1's stopped jobs
# were redelivered; while Kafka was away at most the jobs already in flight finished (no new
# job was taken); the workers exit 0.
source "$(dirname "$0")/lib.sh"

N=${IT_FAULT_JOBS:-1200}
INFLIGHT=16
DOWN_S=${IT_KAFKA_DOWN_S:-30}
TERM_AT_S=5 # into the outage: SIGTERM to w1
W=(KD_WORKER_DRAIN_MS=2000)
it_at_exit it_stack_restore # Kafka back for later tests, whatever happens

it_start_sim --sim-faults='{"latency_ms":50,"jitter_ms":50}'
it_jobs_good "$N" good '{media_id: ($p + ($i | tostring))}' >"$IT_DIR/jobs.jsonl"
it_publish "$IT_DIR/jobs.jsonl" || it_fail "producer refused jobs"
[ "$(grep -c '"confirmed"' "$IT_DIR/jobs.jsonl.report")" -eq "$N" ] || it_fail "not all $N jobs confirmed"
it_follow_results
t0=$SECONDS
it_fault_worker w1 "${W[@]}"
it_fault_worker w2 "${W[@]}"
it_wait_followed 200 300

it_log "stopping Kafka for ${DOWN_S}s"
it_kafka_stop
stop_ms=$(date +%s%3N)
sleep "$TERM_AT_S"
t1=$SECONDS
it_stop_worker w1
line=$(grep -o '"message":"worker [^"]* stopped[^"]*"' "$IT_DIR/w1.log" | tail -n1)
it_log "w1 exited 0 $((SECONDS - t1))s after SIGTERM, Kafka down: ${line#\"message\":}"
[[ $line =~ \ ([0-9]+)\ handed\ back,\ ([0-9]+)\ unsettled ]] || it_fail "w1 logged no final line"
stopped=$((BASH_REMATCH[1] + BASH_REMATCH[2]))
[ "$stopped" -ge 1 ] || it_fail "w1 stopped with no job unfinished: the stop proved nothing"
it_fault_worker w3 "${W[@]}"
left=$((DOWN_S - ($(date +%s%3N) - stop_ms) / 1000))
[ "$left" -le 0 ] || sleep "$left"
start_ms=$(date +%s%3N)
t1=$SECONDS
it_kafka_start
it_log "Kafka back after $((SECONDS - t1))s"
it_fault_ended

it_recovery "$N" 600
it_wait_ids "$N" 600
sleep 3 # late duplicates arrive now
it_check_reconciled 0 --kone-sim "$(it_sim_url)"
s=$IT_DIR/reconcile.json
[ "$(jq '.final_outcomes.succeeded // 0' "$s")" -eq "$N" ] || it_fail "not every job succeeded: $(jq -c .final_outcomes "$s")"
# Calls placed = jobs: kone-sim's call log, and its session ids (one per accepted call) in the results.
it_expect_one_call_per_job
jq -se --argjson n "$N" '[.[].session_id] | (unique | length) == $n and min == 1 and max == $n' \
    "$IT_DIR/results.jsonl" >/dev/null ||
    it_fail "kone-sim accepted more calls than jobs: session ids $(jq -sc '[.[].session_id] | {distinct: (unique | length), min: min, max: max}' "$IT_DIR/results.jsonl")"
it_log "kone-sim accepted exactly $N calls (session ids 1..$N, one per job)"
[ "$(jq .redelivered "$s")" -ge "$stopped" ] || it_fail "w1 left $stopped jobs unfinished at its stop, only $(jq .redelivered "$s") were redelivered"
# While Kafka was away, only the jobs already in flight may have finished: no new job was taken.
during=$(jq -s --argjson a "$stop_ms" --argjson b "$start_ms" 'map(select(.finished_at > $a and .finished_at < $b)) | length' "$IT_DIR/results.jsonl")
it_log "$during jobs finished while Kafka was down (in-flight limit 2 x $INFLIGHT)"
[ "$during" -le $((2 * INFLIGHT)) ] || it_fail "$during jobs finished while Kafka was down: the workers kept taking jobs"
it_stop_worker w2
it_stop_worker w3
it_expect_queue_empty
it_stop_sim
it_drop_queues
it_log "PASS in $((SECONDS - t0))s"
