#!/usr/bin/env bash
# it_fault_ledger_down: the call ledger's PostgreSQL stopped for 30 s mid-run: the workers stop
# placing calls (a job is never called unclaimed), say so, and go on once it is back.
# 300 jobs (media_id = job id) on a private kone-sim answering after 300 +- 100 ms, two workers
# with 16 in flight. Once 60 results are in, the stack's PostgreSQL is stopped (kd-pg stop
# fast: every client disconnected) for 30 s, then started again. An EXIT hook starts it again
# however the test ends, so later tests find the ledger up.
# Proves, where it happens:
#   - kone-sim's call log: no call arrives from 1 s after the stop (calls claimed before it
#     may still be written) until the restart; calls arrive again after it;
#   - both workers' /readyz answer 503 and kone_ledger_up is 0 (kone_ledger_enabled 1) while it
#     is down (200 before and after), and each logs "pausing consumption: the call ledger does
#     not answer", then "resuming consumption";
#   - a third worker started while it is down starts all the same (no exit: a worker that
#     exited would crash-loop through a database restart), says it starts without its ledger,
#     is not ready (503, kone_ledger_up 0), does not even consume, and places no call; once
#     PostgreSQL is back it connects by itself, consumes and is ready (200);
#   - kone-sim's call log: exactly one call per job (calls = jobs), so no job handed back
#     while the ledger was away was called twice;
#   - every confirmed job has exactly one outcome, `succeeded` (scripts/reconcile), and the
#     work queue ends empty.
source "$(dirname "$0")/lib.sh"

N=${IT_FAULT_JOBS:-300}
INFLIGHT=16
DOWN_S=${IT_LEDGER_DOWN_S:-30}
((DOWN_S >= 10)) || it_fail "IT_LEDGER_DOWN_S must be 10 or more (the checks while it is down take ~5 s)"
GRACE_MS=1000 # calls claimed just before the stop may still be written this long after it
it_at_exit it_pg_restore # the ledger back for later tests, whatever happens

it_start_sim --sim-faults='{"latency_ms":300,"jitter_ms":100}'
it_jobs_good "$N" calls '{media_id: ($p + ($i | tostring))}' >"$IT_DIR/jobs.jsonl"
it_publish "$IT_DIR/jobs.jsonl" || it_fail "producer refused jobs"
[ "$(grep -c '"confirmed"' "$IT_DIR/jobs.jsonl.report")" -eq "$N" ] || it_fail "not all $N jobs confirmed"
it_follow_results
t0=$SECONDS
it_fault_worker w1
it_fault_worker w2
it_wait_followed 60 60
for w in w1 w2; do
    code=$(it_readyz "$w" "$IT_DIR/$w-ready.json")
    [ "$code" = 200 ] || it_fail "$w not ready before the stop ($code): $(cat "$IT_DIR/$w-ready.json")"
done

done_at_stop=$(it_followed)
it_log "stopping PostgreSQL for ${DOWN_S}s"
it_pg_stop fast
stop_ms=$(date +%s%3N)
sleep 3
for w in w1 w2; do
    code=$(it_readyz "$w" "$IT_DIR/$w-ready.json")
    [ "$code" = 503 ] || it_fail "$w /readyz answered $code while the ledger was down: $(cat "$IT_DIR/$w-ready.json")"
    curl -s --max-time 3 -o "$IT_DIR/$w-metrics.txt" "http://127.0.0.1:$(it_metrics_port "$w")/metrics" || true
    up=$(awk '$1 == "kone_ledger_enabled" || $1 == "kone_ledger_up" {printf "%s=%s ", $1, $2}' "$IT_DIR/$w-metrics.txt")
    [ "$up" = "kone_ledger_enabled=1 kone_ledger_up=0 " ] || [ "$up" = "kone_ledger_up=0 kone_ledger_enabled=1 " ] ||
        it_fail "$w: expected kone_ledger_enabled 1 and kone_ledger_up 0 while the ledger is down, got: ${up:-neither}"
    grep -q '"message":"pausing consumption: the call ledger does not answer' "$IT_DIR/$w.log" ||
        it_fail "$w did not log that it paused for the ledger"
done
it_log "both workers: /readyz 503 $(jq -c .reasons "$IT_DIR/w1-ready.json"), kone_ledger_up 0, consumption paused"

# a worker started now: it runs, without its ledger, and is not ready
it_fault_worker w3
w3_port=$(it_metrics_port w3)
sleep 2
kill -0 "$(it_worker_pid w3)" 2>/dev/null || it_fail "w3, started while the ledger was down, exited: $(tail -n 3 "$IT_DIR/w3.log")"
grep -q 'cannot connect: .*starting without it: no job is taken until it answers' "$IT_DIR/w3.log" ||
    it_fail "w3 did not say it started without its ledger: $(grep -m3 'ledger' "$IT_DIR/w3.log")"
code=$(it_readyz w3 "$IT_DIR/w3-ready.json")
[ "$code" = 503 ] || it_fail "w3 /readyz answered $code without its ledger: $(cat "$IT_DIR/w3-ready.json")"
# into a file first: `curl | grep -q` under pipefail fails when grep, matching, exits before
# curl's last write (EPIPE, exit 23); the CI of ea85d4c failed here so
curl -s --max-time 3 -o "$IT_DIR/w3-metrics.txt" "http://127.0.0.1:$w3_port/metrics" || true
grep -qx 'kone_ledger_up 0' "$IT_DIR/w3-metrics.txt" ||
    it_fail "w3: kone_ledger_up is not 0 without its ledger: $(grep -m1 '^kone_ledger_up' "$IT_DIR/w3-metrics.txt")"
it_log "w3, started with the ledger down: running, /readyz 503, kone_ledger_up 0"
sleep $((DOWN_S - 5))
start_ms=$(date +%s%3N)
it_pg_start
it_fault_ended
it_log "PostgreSQL back after $(($(date +%s%3N) - stop_ms)) ms ($done_at_stop of $N jobs had a result)"
[ "$done_at_stop" -lt $((N - 2 * INFLIGHT)) ] || it_fail "$done_at_stop of $N jobs were done at the stop: not mid-run"

it_recovery "$N" 120
it_wait_followed "$N" 120
sleep 2 # a duplicate result would arrive now
for w in w1 w2; do
    grep -q '"message":"resuming consumption (the call ledger does not answer is over' "$IT_DIR/$w.log" ||
        it_fail "$w did not log that it resumed consumption"
done
for w in w1 w2 w3; do
    # w3 asks again on its own back-off (up to 5 s apart): it may come a little after the others
    for _ in $(seq 75); do
        code=$(it_readyz "$w" "$IT_DIR/$w-ready.json")
        [ "$code" = 200 ] && break
        sleep 0.2
    done
    [ "$code" = 200 ] || it_fail "$w not ready after the ledger came back ($code): $(cat "$IT_DIR/$w-ready.json")"
done
grep -q '"message":"ledger .*: connected; schema version' "$IT_DIR/w3.log" ||
    it_fail "w3 did not connect to the ledger once it was back"
# it consumed nothing before: deliveries taken only to be handed back would churn the queue
read -r first_consume connected < <(awk '/"message":"consuming / && !c { c = NR }
    /"message":"ledger .*: connected; schema version/ && !l { l = NR } END { print c + 0, l + 0 }' "$IT_DIR/w3.log")
[ "$first_consume" -gt "$connected" ] ||
    it_fail "w3 consumed (log line $first_consume) before its ledger connected (line $connected)"
it_log "w3 connected to the ledger once it was back and is ready"

# kone-sim's call log: nothing placed while the ledger was away, one call per job
it_sim_calls "" 0 "call_type=action" >"$IT_DIR/sim-calls.jsonl" || it_fail "kone-sim's call log is incomplete"
jq -r '((.received[0:19] + "Z" | fromdateiso8601) * 1000 + (.received[20:23] | tonumber)) as $t |
    "\($t) \(.payload.media_id)"' "$IT_DIR/sim-calls.jsonl" >"$IT_DIR/call-times.txt"
read -r before grace down after < <(awk -v a="$stop_ms" -v g="$GRACE_MS" -v b="$start_ms" '
    {if ($1 <= a) n0++; else if ($1 <= a + g) n1++; else if ($1 < b) n2++; else n3++}
    END {print n0 + 0, n1 + 0, n2 + 0, n3 + 0}' "$IT_DIR/call-times.txt")
it_log "calls: $before before the stop, $grace within ${GRACE_MS} ms of it, $down while the ledger was down, $after after the restart"
[ "$down" -eq 0 ] || it_fail "$down calls placed while the ledger was down: $(awk -v a="$stop_ms" -v g="$GRACE_MS" -v b="$start_ms" '$1 > a + g && $1 < b' "$IT_DIR/call-times.txt" | head -3 | tr '\n' ' ')"
[ "$after" -ge 1 ] || it_fail "no call after the ledger came back: consumption did not resume"
it_sim_calls_per_job "$IT_PREFIX-" >"$IT_DIR/calls.txt"
placed=$(awk '{s += $2} END {print s + 0}' "$IT_DIR/calls.txt")
twice=$(awk '$2 > 1' "$IT_DIR/calls.txt")
[ -z "$twice" ] || it_fail "jobs called more than once: $(echo "$twice" | head -5 | tr '\n' ' ')"
[ "$placed" -eq "$N" ] || it_fail "kone-sim received $placed calls for $N jobs"
handed=$(cat "$IT_DIR"/w[123].log | grep -c 'the call ledger did not answer; job handed back, not called' || true)
it_log "one call per job ($placed for $N jobs); $handed deliveries handed back unclaimed during the outage"

# every job: exactly one outcome, succeeded
it_check_reconciled 0
[ "$(jq '.final_outcomes.succeeded // 0' "$IT_DIR/reconcile.json")" -eq "$N" ] ||
    it_fail "not every job succeeded: $(jq -c .final_outcomes "$IT_DIR/reconcile.json")"
it_stop_worker w1
it_stop_worker w2
it_stop_worker w3
it_expect_queue_empty
it_stop_sim
it_drop_queues
it_log "PASS in $((SECONDS - t0))s"
