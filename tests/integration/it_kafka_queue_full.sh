#!/usr/bin/env bash
# it_kafka_queue_full: librdkafka's local queue full (kafka.queue_max_messages=2) while the
# stack's Kafka broker is frozen (SIGSTOP: its connections stay open and nothing times out, so
# the worker still counts Kafka usable and keeps taking jobs, as with a broker that stalls).
# One job first, so the worker knows the topic; then Kafka frozen and 6 jobs published: two
# results fill librdkafka's queue, the others wait in the worker's produce queue
# (docs/failure-handling.md, "librdkafka's local queue full"); each is given up after 2 s
# without room, its job handed back (log: "local queue full for 2000 ms"), and the ledger makes
# its redelivery produce the recorded outcome instead of calling again. Then Kafka is thawed
# (SIGCONT). Proves: every job has exactly one result in Kafka, kone-sim logged exactly one elevator call
# per job (calls placed = jobs), and the worker exits 0.
source "$(dirname "$0")/lib.sh"

N=6
INFLIGHT=8
KAFKA_PID=$(
    # shellcheck source=../../scripts/lib.sh
    source "$KD_SRC_DIR/scripts/lib.sh"
    kd_running kafka "$KD_STATE_DIR/kafka/server.properties" || exit 1
    kd_pid kafka
) || it_fail "the stack's Kafka is not running"

it_start_sim
it_jobs_good 1 first '{media_id: ($p + ($i | tostring))}' >"$IT_DIR/first.jsonl"
it_jobs_good "$N" good '{media_id: ($p + ($i | tostring))}' >"$IT_DIR/jobs.jsonl"
it_fault_worker w1 KD_KAFKA_QUEUE_MAX_MESSAGES=2
it_wait_ready w1
it_publish "$IT_DIR/first.jsonl" || it_fail "producer refused the first job"
it_wait_ids 1 60

it_log "freezing Kafka (SIGSTOP $KAFKA_PID)"
kill -STOP "$KAFKA_PID"
it_at_exit "kill -CONT $KAFKA_PID 2>/dev/null"
it_publish "$IT_DIR/jobs.jsonl" || { kill -CONT "$KAFKA_PID"; it_fail "producer refused jobs"; }
gave_up=$(it_log_count w1 'result not produced, handing the job back: kafka: local queue full for 2000 ms' 30)
kill -CONT "$KAFKA_PID"
it_log "Kafka thawed; $gave_up results given up while its queue was full"
[ "$gave_up" -ge 1 ] || it_fail "no result waited for room in Kafka's queue (w1 never logged the give-up)"

it_wait_ids $((N + 1)) 120
dup=$(jq -r .job_id "$IT_DIR/results.jsonl" | sort | uniq -d)
[ -z "$dup" ] || it_fail "jobs with more than one result: $dup"
jq -e -s 'all(.outcome == "succeeded")' "$IT_DIR/results.jsonl" >/dev/null ||
    it_fail "not every job succeeded: $(jq -c '[.job_id, .outcome, .error_code]' "$IT_DIR/results.jsonl")"
it_expect_one_call_per_job
it_stop_worker w1
it_log "ok: $((N + 1)) jobs, one result and one call each, $gave_up given up and redelivered"
