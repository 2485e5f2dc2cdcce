#!/usr/bin/env bash
# it_fault_delivery_limit: a job whose worker dies every time it holds it is parked, not
# handed out for ever (worker.max_deliveries).
# A private kone-sim answers every request 6 s late, so a worker holds its jobs that long.
# 20 jobs; a worker with worker.max_deliveries = 3 takes them and is killed with SIGKILL while
# it holds them, three times over (each kill returns them to the queue: x-delivery-count
# grows). The fourth worker must not call KONE for them: each gets outcome `failed`, error
# `delivery_limit`, and is parked in the dead-letter queue with that reason; then the worker
# goes on with 20 new jobs, which succeed (latency removed).
# What a user would notice without it: one job that crashes workers takes every worker down
# in turn, for ever.
# The workers run without the call ledger (ledger.url=none): with it, a job whose call was
# written before its worker died ends `unknown` at its next delivery (it_fault_sigkill), so
# only a job that kills its worker before its claim ever meets the delivery limit; this test
# is about the counting itself.
source "$(dirname "$0")/lib.sh"

it_worker_has -- '--worker-max-deliveries' || it_pending "worker.max_deliveries has not landed"

N=20
INFLIGHT=32
NO_LEDGER=(KD_LEDGER_URL=none KD_LEDGER_URL_FILE=)
LIMIT=3
it_start_sim
it_sim_faults '{"latency_ms":6000}'
it_jobs_good "$N" a >"$IT_DIR/jobs-a.jsonl"
it_publish "$IT_DIR/jobs-a.jsonl" || it_fail "producer refused jobs"

for round in $(seq "$LIMIT"); do
    it_fault_worker "k$round" KD_WORKER_MAX_DELIVERIES=$LIMIT "${NO_LEDGER[@]}"
    port=$(it_metrics_port "k$round")
    for i in $(seq 300); do
        held=$(curl -sf --max-time 2 "http://127.0.0.1:$port/metrics" | awk '/^kone_inflight_jobs / {print $2}' || true)
        [ "${held:-0}" -ge "$N" ] && break
        [ "$i" -lt 300 ] || it_fail "worker k$round did not take the $N jobs within 30 s (holds ${held:-0})"
        sleep 0.1
    done
    sleep 0.5 # its calls are out, waiting for kone-sim's late answers
    it_kill_worker "k$round" KILL
    it_log "round $round: worker killed while holding $N jobs"
done

it_fault_worker w1 KD_WORKER_MAX_DELIVERIES=$LIMIT "${NO_LEDGER[@]}"
it_wait_ids "$N" 60
it_sim_faults '{"latency_ms":0}'
it_jobs_good "$N" b >"$IT_DIR/jobs-b.jsonl"
it_publish "$IT_DIR/jobs-b.jsonl" || it_fail "producer refused jobs"
cat "$IT_DIR"/jobs-a.jsonl "$IT_DIR"/jobs-b.jsonl >"$IT_DIR/jobs.all"
it_wait_ids $((2 * N)) 120
it_wait_depth "$KD_AMQP_QUEUE.dead" "$N" 30
it_check_reconciled 0
s=$IT_DIR/reconcile.json

for i in $(seq "$N"); do
    it_expect "a-$i" '.outcome == "failed" and .error.code == "delivery_limit" and .redelivered'
    it_expect "b-$i" '.outcome == "succeeded"'
done
jq -e --argjson n "$N" '[.parked_list[] | select(.reason == "delivery_limit")] | length == $n' "$s" >/dev/null ||
    it_fail "the dead-letter queue does not hold the $N jobs with reason delivery_limit: $(jq -c '.parked_list[:2]' "$s")"
# No call was made for a parked job after the limit: the last worker's KONE requests are the
# 20 new jobs' only (2 requests each: the call and its monitoring subscription), plus its
# session handshake.
calls=$(curl -sf "http://127.0.0.1:$(it_metrics_port w1)/metrics" |
    awk '/^kone_api_request_duration_seconds_count\{call_type="action"/ {n += $2} END {print n + 0}')
[ "$calls" -eq "$N" ] || it_fail "the last worker made $calls call requests; expected $N (the new jobs only)"
# Counted when a parked job's delivery is acked, which follows its result in Kafka (and the
# dead-letter copy's confirm): on a loaded machine the last acks may still be on their way.
dead=""
for _ in $(seq 40); do
    dead=$(curl -sf "http://127.0.0.1:$(it_metrics_port w1)/metrics" |
        awk '/^kone_dead_letters_total\{reason="delivery_limit"\} / {print $2}')
    [ "$dead" = "$N" ] && break
    sleep 0.5
done
[ "$dead" = "$N" ] || it_fail "kone_dead_letters_total{reason=\"delivery_limit\"} is ${dead:-absent}, not $N"
it_expect_queue_empty
it_stop_worker w1
it_stop_sim
it_drop_queues
it_log "PASS"
