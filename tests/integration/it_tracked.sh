#!/usr/bin/env bash
# it_tracked: tracked calls are followed until served. Their call-state events arrive in
# kone.call.events in order (being_allocated → being_served → served_soon → served, each
# state once, times non-decreasing), the last is `served`, and each tracked job has one
# `succeeded` result carrying the same session id. A call to the sky lobby transfer floor
# keeps working when KONE modifies its destination.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/jobs.sh"

N=6
it_start_worker w1
jobs_tracked $N >"$IT_DIR/jobs.jsonl"
it_publish "$IT_DIR/jobs.jsonl"
it_wait_results $N 180
r=$IT_DIR/results.jsonl
[ "$(jq -c 'select(.outcome=="succeeded" and .session_id>0)' "$r" | wc -l)" -eq $N ] ||
    it_fail "tracked calls did not all succeed: $(jq -c 'select(.outcome!="succeeded")' "$r" | head -3)"
it_results kone.call.events >"$IT_DIR/events.jsonl"
for i in $(seq $N); do
    id="$IT_PREFIX-tracked-$i"
    session=$(jq -r --arg id "$id" 'select(.job_id==$id) | .session_id' "$r")
    states=$(jq -r --arg id "$id" 'select(.job_id==$id) | .state' "$IT_DIR/events.jsonl" | paste -sd' ')
    # rank of each state; the sequence must rise strictly and end in served
    jq -se --arg id "$id" --argjson s "$session" '
        map(select(.job_id==$id)) as $ev |
        {"being_allocated":1,"being_served":2,"served_soon":3,"served":4} as $rank |
        ($ev | map($rank[.state] // 0)) as $r |
        ($ev | length) >= 2 and ($ev[-1].state == "served") and
        all($r[]; . > 0) and ([range(1; $r|length)] | all(. as $k | $r[$k] > $r[$k-1])) and
        all($ev[]; .session_id == $s)' "$IT_DIR/events.jsonl" >/dev/null ||
        it_fail "job $id: call states out of order or not ending in served: [$states]"
done
it_log "PASS"
