#!/usr/bin/env bash
# it_fault_handover: a rollout in the middle of tracked calls hands them over instead of calling
# them again (the call ledger, docs/failure-handling.md).
# 30 tracked calls at kone-sim speed 1 (a call takes tens of seconds from allocation to served),
# w1 with worker.drain_ms = 1 s gets SIGTERM 4 s after they were published, so it still follows
# most of them; w2 starts and takes them over. Checked where it happens:
#   - kone-sim's call log: exactly one elevator call per job (calls placed = jobs);
#   - every job has exactly one result, `succeeded`, with the session id of its one call;
#   - w1 handed calls over, w2 followed calls it did not make (its log and metrics);
#   - each job's call-state events (from w1, then w2) carry that session, are in order and
#     end in `served`: the story goes on across the hand-over.
source "$(dirname "$0")/lib.sh"

N=30
KD_SIM_SPEED=1 it_start_sim
it_jobs_good "$N" tracked '{track: true, media_id: ($p + ($i | tostring))}' >"$IT_DIR/jobs.jsonl"
it_fault_worker w1 KD_WORKER_DRAIN_MS=1000
it_publish "$IT_DIR/jobs.jsonl" || it_fail "producer refused jobs"
[ "$(grep -c '"confirmed"' "$IT_DIR/jobs.jsonl.report")" -eq "$N" ] || it_fail "not all $N jobs confirmed"
sleep 4
it_kill_worker w1 TERM
[ "$IT_RC" -eq 0 ] || it_fail "w1 exited with $IT_RC after SIGTERM"
line=$(grep -o '"message":"worker [^"]* stopped[^"]*"' "$IT_DIR/w1.log" | tail -n1)
it_log "w1: ${line#\"message\":}"
[[ $line =~ \ ([1-9][0-9]*)\ handed\ back ]] || it_fail "w1 handed nothing over: the test proved nothing ($line)"
handed=${BASH_REMATCH[1]}

it_fault_worker w2
it_fault_ended
it_recovery "$N" 300
it_wait_ids "$N" 300
sleep 2 # a duplicate result would arrive now
r=$IT_DIR/results.jsonl
it_results >"$r"

# one call per job, seen by KONE
it_sim_calls_per_job "$IT_PREFIX-" >"$IT_DIR/calls.txt"
placed=$(awk '{s += $2} END {print s + 0}' "$IT_DIR/calls.txt")
twice=$(awk '$2 > 1' "$IT_DIR/calls.txt")
[ -z "$twice" ] || it_fail "jobs called more than once: $(echo "$twice" | head -5 | tr '\n' ' ')"
[ "$placed" -eq "$N" ] || it_fail "kone-sim received $placed calls for $N jobs"

# one result per job, succeeded, with the session of its call
[ "$(jq -r .job_id "$r" | sort | uniq -d | wc -l)" -eq 0 ] ||
    it_fail "jobs with two results: $(jq -r .job_id "$r" | sort | uniq -d | head -3 | tr '\n' ' ')"
# A handed-over call whose states all passed before w2 subscribed ends unknown handover_unseen:
# KONE sends no snapshot of past states, so nobody can tell it was served (it is neither
# called again nor deleted). Every other one succeeds.
bad=$(jq -c 'select((.outcome != "succeeded" and (.outcome != "unknown" or .error.code != "handover_unseen")) or (.session_id // 0) <= 0) | {job_id, outcome, error}' "$r" | head -3)
[ -z "$bad" ] || it_fail "a handed-over call neither succeeded nor ended handover_unseen: $bad"
unseen=$(jq -r 'select(.outcome == "unknown") | .job_id' "$r")
it_sim_calls >"$IT_DIR/sim-calls.jsonl"
jq -r 'select(.call_type == "action") | "\(.payload.media_id) \(.session_id)"' "$IT_DIR/sim-calls.jsonl" |
    sort >"$IT_DIR/sim-sessions.txt"
jq -r '"\(.job_id) \(.session_id)"' "$r" | sort >"$IT_DIR/result-sessions.txt"
diff "$IT_DIR/sim-sessions.txt" "$IT_DIR/result-sessions.txt" >/dev/null ||
    it_fail "result session ids differ from kone-sim's: $(diff "$IT_DIR/sim-sessions.txt" "$IT_DIR/result-sessions.txt" | head -4 | tr '\n' ' ')"
followed=$(grep -c 'following that call instead of calling again' "$IT_DIR/w2.log" || true)
[ "$followed" -ge 1 ] || it_fail "w2 followed no call made by w1 (w1 handed back $handed)"
it_log "w1 handed back $handed jobs; w2 followed $followed calls w1 had made ($(grep -c . <<<"$unseen" || true) ended handover_unseen); $placed calls for $N jobs"

# the state story of each job goes on across the hand-over
it_results kone.call.events >"$IT_DIR/events.jsonl"
for i in $(seq "$N"); do
    id="$IT_PREFIX-tracked-$i"
    grep -qxF -- "$id" <<<"$unseen" && continue   # its story ended unseen, by design
    s=$(jq -r --arg id "$id" 'select(.job_id == $id) | .session_id' "$r")
    jq -se --arg id "$id" --argjson s "$s" '
        map(select(.job_id == $id)) as $ev |
        {"being_allocated": 1, "being_served": 2, "served_soon": 3, "served": 4} as $rank |
        ($ev | map($rank[.state] // 0)) as $r |
        ($ev | length) >= 1 and $ev[-1].state == "served" and all($r[]; . > 0) and
        ([range(1; $r | length)] | all(. as $k | $r[$k] >= $r[$k - 1])) and
        all($ev[]; .session_id == $s)' "$IT_DIR/events.jsonl" >/dev/null ||
        it_fail "job $id: states out of order, of another session, or not ending in served: $(jq -r --arg id "$id" 'select(.job_id == $id) | "\(.state)@\(.worker)"' "$IT_DIR/events.jsonl" | paste -sd' ')"
done
it_stop_worker w2
it_stop_sim
it_drop_queues
it_log "PASS"
