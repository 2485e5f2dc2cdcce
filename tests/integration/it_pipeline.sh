#!/usr/bin/env bash
# it_pipeline: 2 workers, 1,000 valid jobs → exactly 1,000 results in Kafka, each job_id once,
# all succeeded with a KONE session id; both workers took part; SIGTERM stops them cleanly.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/jobs.sh"

N=1000
jobs_good $N >"$IT_DIR/jobs.jsonl"
it_start_worker w1 KD_WORKER_INFLIGHT=64
it_start_worker w2 KD_WORKER_INFLIGHT=64
it_publish "$IT_DIR/jobs.jsonl" || it_fail "producer refused jobs: $(grep -v confirmed "$IT_DIR/jobs.jsonl.report" | head -3)"
[ "$(grep -c '"confirmed"' "$IT_DIR/jobs.jsonl.report")" -eq $N ] || it_fail "not all $N jobs confirmed"

it_wait_results $N 300
sleep 3 # any duplicate would arrive now
it_results >"$IT_DIR/results.jsonl"
r=$IT_DIR/results.jsonl
total=$(wc -l <"$r")
unique=$(jq -r .job_id "$r" | sort -u | wc -l)
ok=$(jq -c 'select(.outcome=="succeeded" and (.session_id|type)=="number" and .session_id>0 and .kone_status==201)' "$r" | wc -l)
workers=$(jq -r .worker "$r" | sort -u | wc -l)
it_log "total=$total unique=$unique succeeded_with_session=$ok workers=$workers"
[ "$total" -eq $N ] || it_fail "expected exactly $N results, got $total"
[ "$unique" -eq $N ] || it_fail "expected $N distinct job ids, got $unique"
[ "$ok" -eq $N ] || it_fail "expected $N succeeded with session_id, got $ok: $(jq -c 'select(.outcome!="succeeded")' "$r" | head -3)"
[ "$workers" -eq 2 ] || it_fail "expected both workers to take jobs, saw $workers"
# every published id has its result
comm -3 <(jq -r .job_id "$IT_DIR/jobs.jsonl.report" | sort) <(jq -r .job_id "$r" | sort) | head -5 | grep . && it_fail "ids differ between published and results"

it_stop_worker w1
it_stop_worker w2
# the queue is empty: every job was acked
left=$(rabbitmqctl -q list_queues name messages 2>/dev/null | awk -v q="$KD_AMQP_QUEUE" '$1==q {print $2}')
[ "${left:-0}" -eq 0 ] || it_fail "$left messages left in $KD_AMQP_QUEUE"
it_log "PASS"
