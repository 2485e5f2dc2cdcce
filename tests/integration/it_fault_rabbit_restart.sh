#!/usr/bin/env bash
# it_fault_rabbit_restart: RabbitMQ restarted mid-run loses no job.
# 1,200 jobs on the quorum queue (media_id = job id, so kone-sim's call log counts the calls per
# job), two workers with 16 in flight, the stack's call ledger, a private kone-sim with some
# latency. Once 200 results are in, the stack's RabbitMQ node is restarted (IT_RABBIT_RESTART:
# `node`, the default, stops the whole node with rabbitmqctl stop and starts it with
# scripts/dev-up; `app` is rabbitmqctl stop_app / start_app). Both workers lose their
# connection; jobs in flight keep going, their results reach Kafka, but their acks cannot
# (a delivery of a dead channel is never acked on the new one), so the queue, recovered from
# disk, delivers them again. A redelivery meets the job's ledger row: its recorded outcome is
# produced again, or (the first run still going) it waits for it; it is not called again. Then
# 200 more jobs are published to the restarted broker.
# Proves: the workers reconnect by themselves; every confirmed job (both batches) has exactly
# one final outcome; duplicates (jobs in flight at the restart) at most 2 x the in-flight
# limit, reported; kone-sim logged exactly one elevator call per job (calls placed = jobs);
# the queue ends empty; the broker is healthy for the tests after this one.
source "$(dirname "$0")/lib.sh"

N=${IT_FAULT_JOBS:-1200}
N2=200
INFLIGHT=16
HOW=${IT_RABBIT_RESTART:-node}
it_at_exit it_stack_restore # the broker back for later tests, whatever happens

it_start_sim --sim-faults='{"latency_ms":50,"jitter_ms":50}'
it_jobs_good "$N" good '{media_id: ($p + ($i | tostring))}' >"$IT_DIR/jobs.jsonl"
it_publish "$IT_DIR/jobs.jsonl" || it_fail "producer refused jobs"
[ "$(grep -c '"confirmed"' "$IT_DIR/jobs.jsonl.report")" -eq "$N" ] || it_fail "not all $N jobs confirmed"
it_follow_results
t0=$SECONDS
it_fault_worker w1
it_fault_worker w2
it_wait_followed 200 300

it_log "restarting RabbitMQ ($HOW)"
t1=$SECONDS
it_rabbit_restart "$HOW" 3
it_log "RabbitMQ back after $((SECONDS - t1))s"
it_fault_ended
it_jobs_good "$N2" after '{media_id: ($p + ($i | tostring))}' >"$IT_DIR/jobs2.jsonl"
it_publish "$IT_DIR/jobs2.jsonl" || it_fail "producer refused jobs after the restart"
[ "$(grep -c '"confirmed"' "$IT_DIR/jobs2.jsonl.report")" -eq "$N2" ] || it_fail "not all $N2 jobs confirmed after the restart"

it_recovery $((N + N2)) 600
it_wait_ids $((N + N2)) 600
sleep 3 # late duplicates arrive now
it_check_reconciled $((2 * INFLIGHT)) --kone-sim "$(it_sim_url)"
s=$IT_DIR/reconcile.json
[ "$(jq '.final_outcomes.succeeded // 0' "$s")" -eq $((N + N2)) ] || it_fail "not every job succeeded: $(jq -c .final_outcomes "$s")"
for w in w1 w2; do
    grep -q 'RabbitMQ connection lost\|RabbitMQ unavailable' "$IT_DIR/$w.log" || it_fail "$w did not notice the restart"
    [ "$(grep -c '"message":"amqp .*: connected' "$IT_DIR/$w.log")" -ge 2 ] || it_fail "$w did not reconnect"
done
it_log "$(jq -r '"both workers reconnected; \(.redelivered) jobs redelivered, \(.duplicate_count) with two results (limit '$((2 * INFLIGHT))')"' "$s")"
it_expect_one_call_per_job
it_stop_worker w1
it_stop_worker w2
it_expect_queue_empty
it_stop_sim
it_drop_queues
it_log "PASS in $((SECONDS - t0))s"
