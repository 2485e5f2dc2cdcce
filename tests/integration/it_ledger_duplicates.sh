#!/usr/bin/env bash
# it_ledger_duplicates: a job delivered twice places one elevator call; its result is produced
# twice, the second time marked redelivered; a job replayed from the dead-letter queue after a
# failure is called again (the call ledger, docs/failure-handling.md).
# Two workers, a private kone-sim: group 1 answers after 1.2 s (a call takes ~2.4 s), every call to group 2 is
# answered 500 (retry.max_attempts 2). Jobs carry media_id = job id, so kone-sim's call log
# counts each job's calls.
#   a. `twice` is published twice at once (the producer's re-send: same job_id, two messages):
#      the second delivery finds the first's claim live, waits for its outcome (asked again
#      every 1 s), then produces it again;
#   b. `old` is published again once its result is in Kafka: its recorded result is produced
#      again, no call;
#      for both: kone-sim logged exactly one call; Kafka has two results, the same outcome
#      (succeeded) and session id (the one kone-sim gave that call), one with redelivered:
#      true, one without; for `old` the redelivered one is second in Kafka; for `twice` it is
#      produced by the worker that logged the wait (two workers produce independently, so it
#      may reach Kafka first);
#   c. `doomed` (group 2) fails twice with 500, ends `failed` and is parked; the fault is
#      cleared and `kone-producer replay-dead` moves it back (header x-kd-replayed): it is
#      called again and succeeds (calls 500, 500, 201; results failed, then succeeded with the
#      accepted call's session id); the dead-letter queue ends empty.
source "$(dirname "$0")/lib.sh"

# retry tiers short enough for a failure within a second (the producer declares them too)
export KD_RETRY_TIERS_MS=200,500 KD_RETRY_BASE_MS=200 KD_RETRY_CAP_MS=500
DEAD=$KD_AMQP_QUEUE.dead
it_start_sim --sim-faults='{"buildings":{"building:9990000951":{"groups":{
    "1":{"latency_ms":1200},"2":{"call_error":{"share":1,"status":500}}}}}}'
job() { it_job "$1" "{\"v\":1,\"area\":1000,\"action\":2,\"destination\":$2,\"media_id\":\"$IT_PREFIX-$1\"${3:-}}"; }
job twice 5000 >"$IT_DIR/twice.jsonl"
job old 7000 >"$IT_DIR/old.jsonl"
job doomed 15000 ',"group_id":"2"' >"$IT_DIR/doomed.jsonl"
t0=$SECONDS
it_fault_worker w1 KD_RETRY_MAX_ATTEMPTS=2
it_fault_worker w2 KD_RETRY_MAX_ATTEMPTS=2
it_metrics_port w1 >/dev/null && it_metrics_port w2 >/dev/null # both up and consuming
sleep 1

# a. the same job twice at once; b. and c.: their first delivery
cat "$IT_DIR/twice.jsonl" "$IT_DIR/twice.jsonl" "$IT_DIR/old.jsonl" "$IT_DIR/doomed.jsonl" >"$IT_DIR/jobs1.jsonl"
it_publish "$IT_DIR/jobs1.jsonl" || it_fail "producer refused jobs"
[ "$(grep -c '"confirmed"' "$IT_DIR/jobs1.jsonl.report")" -eq 4 ] || it_fail "not all 4 messages confirmed"
it_wait_results 4 60
it_wait_depth "$DEAD" 1 15

# b. `old` again, now that its result is in Kafka; c. the fault cleared, `doomed` replayed
it_publish "$IT_DIR/old.jsonl" || it_fail "producer refused the old job"
it_sim_faults '{"buildings":{"building:9990000951":{"groups":{"2":{"call_error":null}}}}}'
"$KD_BIN_DIR/kone-producer" replay-dead --filter-job-prefix="$IT_PREFIX-doomed" \
    >"$IT_DIR/replay.jsonl" 2>"$IT_DIR/replay.log" || it_fail "replay-dead failed: $(tail -n 3 "$IT_DIR/replay.log")"
jq -se --arg id "$IT_PREFIX-doomed" 'length == 1 and .[0].job_id == $id and .[0].action == "moved"' \
    "$IT_DIR/replay.jsonl" >/dev/null || it_fail "replay-dead did not move the failed job: $(cat "$IT_DIR/replay.jsonl")"
it_wait_results 6 60
sleep 2 # a third result would arrive now
r=$IT_DIR/results.jsonl
it_results >"$r"
it_sim_calls "" 0 "call_type=action" >"$IT_DIR/sim-calls.jsonl" || it_fail "kone-sim's call log is incomplete"
it_sim_calls_per_job "$IT_PREFIX-" >"$IT_DIR/calls.txt"
calls() { jq -c --arg id "$IT_PREFIX-$1" 'select(.payload.media_id == $id) | {status, session_id}' "$IT_DIR/sim-calls.jsonl"; }
results() { jq -c --arg id "$IT_PREFIX-$1" 'select(.job_id == $id) | {outcome, session_id, redelivered, attempt, worker}' "$r"; }

# a. and b.: one call, two results (same outcome and session), one of them redelivered
for j in twice old; do
    n=$(awk -v id="$IT_PREFIX-$j" '$1 == id {print $2}' "$IT_DIR/calls.txt")
    [ "${n:-0}" -eq 1 ] || it_fail "$j: kone-sim received ${n:-0} calls, expected 1: $(calls "$j" | tr '\n' ' ')"
    s=$(calls "$j" | jq -r 'select(.status == 201) | .session_id' | head -n1)
    [[ $s =~ ^[0-9]+$ ]] || it_fail "$j: kone-sim did not accept its call: $(calls "$j")"
    results "$j" | jq -se --argjson s "$s" 'length == 2 and all(.[]; .outcome == "succeeded" and .session_id == $s)
        and (map(.redelivered) | sort) == [false, true]' >/dev/null ||
        it_fail "$j: expected two results, succeeded with session $s, one redelivered: $(results "$j" | tr '\n' ' ')"
    it_log "$j: 1 call (session $s); results in Kafka order: $(results "$j" | jq -r '"\(.outcome)/session \(.session_id)/redelivered=\(.redelivered)@\(.worker)"' | paste -sd' ')"
done
# a. the redelivered result comes from the worker whose delivery waited for the other one. The
# two workers produce to Kafka independently: it may land before the first delivery's result.
WAITED='another delivery of this job is being worked on; waiting for its outcome'
AGAIN='job ended before (succeeded); producing its recorded result again, not calling'
log_ms() { # log_ms WORKER JOB TEXT: when (epoch ms) the worker logged TEXT for $IT_PREFIX-JOB
    jq -Rr --arg id "$IT_PREFIX-$2" --arg t "$3" 'fromjson? | select(.["kd.job_id"] == $id and (.message | contains($t)))
        | (.["@timestamp"][0:19] + "Z" | fromdateiso8601) * 1000 + (.["@timestamp"][20:23] | tonumber)' "$IT_DIR/$1.log" | head -n1
}
logged() { [ -n "$(log_ms "$@")" ]; }
waited=""
for w in w1 w2; do if logged "$w" twice "$WAITED"; then waited=$w; fi; done
[ -n "$waited" ] || it_fail "twice: no worker logged that it waited for the other delivery"
logged "$waited" twice "$AGAIN" || it_fail "twice: $waited waited, then did not produce the recorded result again"
wait_ms=$(($(log_ms "$waited" twice "$AGAIN") - $(log_ms "$waited" twice "$WAITED")))
[ "$wait_ms" -ge 1000 ] || it_fail "twice: $waited waited only $wait_ms ms for the other delivery (it is asked again every 1 s)"
it_log "twice: $waited waited $wait_ms ms for the other delivery's outcome"
results twice | jq -se --arg w "$waited" 'map(select(.redelivered)) | length == 1 and .[0].worker == $w' >/dev/null ||
    it_fail "twice: the redelivered result is not $waited's: $(results twice | tr '\n' ' ')"
# b. published again after its result was in Kafka: its second result comes second
results old | jq -se '.[0].redelivered == false and .[1].redelivered == true' >/dev/null ||
    it_fail "old: the result produced again is not the second one: $(results old | tr '\n' ' ')"
logged w1 old "$AGAIN" || logged w2 old "$AGAIN" || it_fail "old: no worker logged that it produced the recorded result again"

# c. failed twice, parked, replayed: called again, succeeded
st=$(calls doomed | jq -r .status | paste -sd,)
[ "$st" = 500,500,201 ] || it_fail "doomed: kone-sim's answers to its calls were '$st', expected 500,500,201"
s=$(calls doomed | jq -r 'select(.status == 201) | .session_id' | head -n1)
results doomed | jq -se --argjson s "$s" 'length == 2 and .[0].outcome == "failed" and .[0].attempt == 2
    and .[1].outcome == "succeeded" and .[1].attempt == 1 and .[1].session_id == $s' >/dev/null ||
    it_fail "doomed: expected failed at attempt 2, then succeeded with session $s: $(results doomed | tr '\n' ' ')"
it_log "doomed: calls answered $st; results $(results doomed | jq -r '"\(.outcome)@attempt\(.attempt)"' | paste -sd' ')"
it_wait_depth "$DEAD" 0 15

it_stop_worker w1
it_stop_worker w2
it_expect_queue_empty
it_stop_sim
it_drop_queues
it_log "PASS in $((SECONDS - t0))s"
