#!/usr/bin/env bash
# it_replay_dead: `kone-producer replay-dead` on parked messages put in the dead-letter queue by
# another client (it_retry parks them through the worker): the building and reason filters, a
# parked message that is not a job, and a move the broker refuses (the work queue is full under
# a reject-publish policy): each such message is reported failed and stays parked, exit 1.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/jobs.sh"

PR=$KD_BIN_DIR/kone-producer
DEAD="$KD_AMQP_QUEUE.dead"
# the test's topology (work queue, retry tiers, dead-letter queue), declared by a producer run
"$PR" /dev/null >/dev/null 2>"$IT_DIR/topology.err" || it_fail "declaring the topology: $(cat "$IT_DIR/topology.err")"

# park ID REASON: a msgpack job parked with x-kd-reason REASON
park() {
    python3 -c '
import sys, msgpack, time
now = int(time.time() * 1000)
sys.stdout.buffer.write(msgpack.packb({"v": 1, "job_id": sys.argv[1], "op": "call",
  "building_id": "building:9990000951", "group_id": "1", "created_at": now,
  "deadline": now + 300000, "area": 1000, "action": 2, "destination": 5000}))' "$IT_PREFIX-$1" |
        it_amqp_publish -e "" -r "$DEAD" -p -C application/msgpack -H "x-kd-reason: $2" \
            -H "x-kd-error: parked by it_replay_dead"
}
park a expired
park b delivery_limit
park c delivery_limit
printf 'not msgpack' | it_amqp_publish -e "" -r "$DEAD" -p -C text/plain -H "x-kd-reason: undecodable"
# parked DEPTH: the dead-letter queue holds DEPTH messages, as a dry run counts them (the broker's
# own count, at once: rabbitmqctl takes seconds per call and the management API lags)
parked() {
    local i
    for i in $(seq 100); do
        "$PR" replay-dead --dry-run --log-level=error >/dev/null 2>"$IT_DIR/count.err" || true
        grep -q "seen of $1 in" "$IT_DIR/count.err" && return 0
        sleep 0.2
    done
    it_fail "the dead-letter queue does not hold $1 messages: $(tail -n 1 "$IT_DIR/count.err")"
}
parked 4

replay() { # NAME ARGS...: replay-dead, report in NAME.jsonl, summary in NAME.err; prints the exit code
    local name=$1 rc=0
    shift
    "$PR" replay-dead "$@" >"$IT_DIR/$name.jsonl" 2>"$IT_DIR/$name.err" || rc=$?
    echo "$rc"
}
action() { # NAME ID: the action replay-dead NAME reported for job ID ("null" ID: the non-job)
    if [ "$2" = null ]; then
        jq -r 'select(.job_id == null) | .action' "$IT_DIR/$1.jsonl"
    else
        jq -r --arg id "$IT_PREFIX-$2" 'select(.job_id == $id) | .action' "$IT_DIR/$1.jsonl"
    fi
}

# 1. a building that parks nothing: everything kept, nothing moved
[ "$(replay other --filter-building=9990000952)" -eq 0 ] || it_fail "other building: $(cat "$IT_DIR/other.err")"
for id in a b c null; do
    [ "$(action other "$id")" = kept ] || it_fail "other building: $id not kept: $(cat "$IT_DIR/other.jsonl")"
done
# the non-job is reported with its reason, so an operator can find it
jq -se 'any(.[]; .job_id == null and .reason == "undecodable")' "$IT_DIR/other.jsonl" >/dev/null ||
    it_fail "the non-job is not reported with its reason: $(cat "$IT_DIR/other.jsonl")"

# 2. the work queue refuses messages (max-length 0, reject-publish; a quorum queue refuses once
# it is over its limit, so it takes one): of the two delivery_limit jobs of the building (named
# by its bare id), the first moves and the second is refused by the broker and stays parked
curl -sf -o /dev/null -u guest:guest -H 'content-type: application/json' -X PUT \
    "$KD_RABBIT_MGMT_URL/api/policies/%2F/$IT_PREFIX-full" \
    --data-binary "$(jq -cn --arg q "^$KD_AMQP_QUEUE\$" \
        '{pattern: $q, "apply-to": "queues", definition: {"max-length": 0, overflow: "reject-publish"}}')" ||
    it_fail "setting the max-length policy failed"
it_at_exit "curl -sf -o /dev/null -u guest:guest -X DELETE '$KD_RABBIT_MGMT_URL/api/policies/%2F/$IT_PREFIX-full'"
# wait until the queue runs under the policy (the management API names it)
for _ in $(seq 100); do
    curl -sf -u guest:guest "$KD_RABBIT_MGMT_URL/api/queues/%2F/$(jq -rn --arg n "$KD_AMQP_QUEUE" '$n|@uri')" |
        jq -e --arg p "$IT_PREFIX-full" '.policy == $p' >/dev/null && break
    sleep 0.2
done
rc=$(replay move --filter-building=9990000951 --filter-reason=delivery_limit)
[ "$rc" -eq 1 ] || it_fail "a refused move: exit $rc, expected 1: $(cat "$IT_DIR/move.err")"
[ "$(action move a)" = kept ] || it_fail "job a (reason expired) not kept: $(cat "$IT_DIR/move.jsonl")"
[ "$(action move b)" = moved ] || it_fail "job b not moved: $(cat "$IT_DIR/move.jsonl")"
jq -se --arg id "$IT_PREFIX-c" 'any(.[]; .job_id == $id and .action == "failed" and
    .reason == "delivery_limit" and (.detail | test("nacked")))' "$IT_DIR/move.jsonl" >/dev/null ||
    it_fail "job c not failed with the reason: $(cat "$IT_DIR/move.jsonl")"
grep -q '1 moved, 2 kept, 1 failed (4 seen of 4' "$IT_DIR/move.err" || it_fail "summary: $(tail -n 1 "$IT_DIR/move.err")"
# nothing was lost: three stay parked, the moved job is in the work queue
parked 3
# the work queue's count from the management API (refreshed every few seconds)
for _ in $(seq 150); do
    curl -sf -u guest:guest "$KD_RABBIT_MGMT_URL/api/queues/%2F/$(jq -rn --arg n "$KD_AMQP_QUEUE" '$n|@uri')" |
        jq -e '.messages == 1' >/dev/null && break
    sleep 0.2
done
curl -sf -u guest:guest "$KD_RABBIT_MGMT_URL/api/queues/%2F/$(jq -rn --arg n "$KD_AMQP_QUEUE" '$n|@uri')" |
    jq -e '.messages == 1' >/dev/null || it_fail "the moved job is not in the work queue"

# 3. kone-producer, publishing to that full queue: the broker nacks the job, reported refused
jobs_good 1 | jq -c '.job_id = "'"$IT_PREFIX"'-full"' >"$IT_DIR/full.jsonl"
rc=0
"$PR" "$IT_DIR/full.jsonl" >"$IT_DIR/full.out" 2>"$IT_DIR/full.err" || rc=$?
[ "$rc" -eq 1 ] || it_fail "a nacked job: exit $rc, expected 1"
jq -e '.status == "refused" and (.error | test("^nacked: "))' "$IT_DIR/full.out" >/dev/null ||
    it_fail "a nacked job: $(cat "$IT_DIR/full.out")"

# 4. a report that cannot be written (stdout on a full disk): exit 2 and the reason
rc=0
"$PR" replay-dead --dry-run >/dev/full 2>"$IT_DIR/devfull.err" || rc=$?
[ "$rc" -eq 2 ] || it_fail "replay-dead >/dev/full: exit $rc, expected 2"
grep -q 'cannot write the report to stdout' "$IT_DIR/devfull.err" || it_fail "replay-dead >/dev/full: $(cat "$IT_DIR/devfull.err")"
it_drop_queues
it_log "ok"
