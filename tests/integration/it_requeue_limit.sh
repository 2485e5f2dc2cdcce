#!/usr/bin/env bash
# it_requeue_limit: a job whose building's circuit stays open is parked in RabbitMQ until the
# building's next ping, at most retry.max_requeues times; then it ends `failed`
# `requeue_limit` in the dead-letter queue, and `kone-producer replay-dead --filter-reason
# requeue_limit` brings it back once the building is reachable (docs/failure-handling.md,
# "Circuit open: parked, not bounced").
# A private kone-sim with building:9990000952 group 1 usable (NOR) and its site link down from
# the start; one worker with retry.max_requeues 2, a 1 s call timeout and a breaker that
# decides on 4 calls.
#   1. 4 jobs open the circuit: accepted, never heard of again, each ends `unknown` (1005);
#      the worker's /metrics then shows the circuit open;
#   2. 3 jobs (5 min deadlines) meet the open circuit: each is parked twice (result `requeues`
#      2, attempt 1: no attempt used) and then ends failed `requeue_limit`; none reached
#      kone-sim (its call log holds the 4 openers' calls only); the dead-letter queue holds
#      the 3 with x-kd-reason requeue_limit (replay-dead --filter-reason moves exactly them);
#   3. the link comes back; once a ping has answered (circuit no longer open), the 3 are
#      replayed and succeed with one call each.
source "$(dirname "$0")/lib.sh"

it_worker_has -- '--retry-max-requeues' || it_pending "retry.max_requeues has not landed"

B=building:9990000952
DEAD=$KD_AMQP_QUEUE.dead
export KD_RETRY_TIERS_MS=200,500,1000,2000 KD_RETRY_BASE_MS=200 KD_RETRY_CAP_MS=2000
it_start_sim --sim-faults='{"buildings":{"building:9990000952":{"groups":{"1":{"mode":"NOR","link_down":true}}}}}'
t0=$SECONDS
it_fault_worker w1 KD_RETRY_MAX_REQUEUES=2 KD_KONE_CALL_TIMEOUT_MS=1000 \
    KD_KONE_BREAKER_MIN_CALLS=4 KD_KONE_BREAKER_WINDOW_CALLS=4 \
    KD_KONE_BREAKER_PROBE_BASE_MS=500 KD_KONE_BREAKER_PROBE_CAP_MS=1000 "KD_METRICS_BUILDINGS=$B"
port=$(it_metrics_port w1) || exit 1
circuit() { curl -s "http://127.0.0.1:$port/metrics" | sed -n "s/^kone_circuit_state{building=\"$B\"} \([0-9]*\).*/\1/p"; }
jobs() { it_jobs "$1" "$2" "{v: 1, building_id: \"$B\", area: 1000, action: 2, destination: 3000, media_id: (\$p + (\$i | tostring))}"; }

# 1. the circuit opens
jobs open 4 >"$IT_DIR/open.jsonl"
it_publish "$IT_DIR/open.jsonl" || it_fail "producer refused jobs"
it_wait_results 4 60
jq -se 'length == 4 and all(.[]; .outcome == "unknown" and .error.code == "1005")' "$IT_DIR/results.jsonl" >/dev/null ||
    it_fail "the openers did not end unknown 1005: $(jq -c '{job_id, outcome, error}' "$IT_DIR/results.jsonl")"
for i in $(seq 50); do [ "$(circuit)" = 2 ] && break; sleep 0.2; done
[ "$(circuit)" = 2 ] || it_fail "the circuit of $B did not open (state $(circuit))"

# 2. parked twice, then failed requeue_limit
jobs parked 3 >"$IT_DIR/parked.jsonl"
it_publish "$IT_DIR/parked.jsonl" || it_fail "producer refused jobs"
it_wait_results 7 60
r=$IT_DIR/results.jsonl
jq -se --arg p "$IT_PREFIX-parked-" 'map(select(.job_id | startswith($p))) | length == 3 and all(.[];
    .outcome == "failed" and .error.code == "requeue_limit" and .requeues == 2 and .attempt == 1)' "$r" >/dev/null ||
    it_fail "the parked jobs did not end failed requeue_limit after 2 re-queues: $(jq -c 'select(.job_id | test("parked")) | {job_id, outcome, error, requeues, attempt}' "$r")"
it_log "3 jobs parked twice each, then failed: $(jq -r 'select(.job_id | test("parked")) | .error.message' "$r" | head -n1)"
it_wait_depth "$DEAD" 3 15
it_sim_calls_per_job "$IT_PREFIX-" >"$IT_DIR/calls.txt"
! grep -q parked "$IT_DIR/calls.txt" || it_fail "a parked job reached kone-sim: $(grep parked "$IT_DIR/calls.txt")"

# 3. the link back: replayed once a ping has answered, they succeed
it_sim_faults '{"buildings":{"building:9990000952":{"groups":{"1":{"link_down":false}}}}}'
for i in $(seq 100); do [ "$(circuit)" != 2 ] && break; sleep 0.2; done
[ "$(circuit)" != 2 ] || it_fail "the circuit of $B stayed open after the link came back"
"$KD_BIN_DIR/kone-producer" replay-dead --filter-reason requeue_limit --filter-job-prefix="$IT_PREFIX-" \
    >"$IT_DIR/replay.jsonl" 2>"$IT_DIR/replay.log" || it_fail "replay-dead failed: $(tail -n 3 "$IT_DIR/replay.log")"
jq -se --arg p "$IT_PREFIX-parked-" 'length == 3 and all(.[]; .action == "moved" and (.job_id | startswith($p)))' \
    "$IT_DIR/replay.jsonl" >/dev/null || it_fail "replay-dead --filter-reason requeue_limit did not move the 3: $(cat "$IT_DIR/replay.jsonl")"
it_wait_results 10 60
jq -se --arg p "$IT_PREFIX-parked-" 'map(select((.job_id | startswith($p)) and .outcome == "succeeded")) | length == 3' "$r" >/dev/null ||
    it_fail "the replayed jobs did not succeed: $(jq -c 'select(.job_id | test("parked")) | {job_id, outcome, error, requeues}' "$r")"
it_sim_calls_per_job "$IT_PREFIX-" >"$IT_DIR/calls.txt"
[ "$(grep -c parked "$IT_DIR/calls.txt")" -eq 3 ] || it_fail "kone-sim's calls of the replayed jobs: $(grep parked "$IT_DIR/calls.txt")"
it_stop_worker w1
it_expect_queue_empty
it_expect_queue_empty "$DEAD"
it_stop_sim
it_drop_queues
it_log "PASS in $((SECONDS - t0))s"
