#!/usr/bin/env bash
# it_fault_poison: poison messages are dead-lettered with a reason; the workers stay up.
# Two workers (16 in flight) and a private kone-sim take 1,000 good jobs in two batches, with
# poison published raw between them (through the management API, with a message_id, so each
# is traced):
#   undecodable, must be parked in <queue>.dead with x-kd-reason "undecodable" and the error:
#     random bytes, the msgpack types that are not a map (array, string, int, nil, bool, bin),
#     an empty body, a truncated map, trailing bytes, nesting 20 deep, a job sent as JSON text,
#     a 100 KB job (over the 64 KiB limit), and a 10 MiB body (published with amqp-publish,
#     which cannot set a message_id: found in the dead-letter queue by its size);
#   maps with fields of the wrong type (area a string, action a float, building_id an int,
#     deadline a string, op unknown): invalid jobs, so one `rejected` result each, error
#     invalid_job naming the field (they are jobs with an id: their outcome is a result).
# Proves: every published message ends in exactly one place (result or parking lot, never
# both, never twice), each poison with its reason; the good jobs all succeed, those after
# the poison too; both workers are still running at the end and exit 0.
source "$(dirname "$0")/lib.sh"

it_worker_has --amqp-dead-queue ||
    it_pending "the dead-letter queue (amqp.dead_queue) has not landed"

N=${IT_FAULT_JOBS:-1000}
INFLIGHT=16
it_start_sim
it_follow_results
t0=$SECONDS
it_fault_worker w1
it_fault_worker w2

it_jobs_good $((N / 2)) a >"$IT_DIR/jobs-a.jsonl"
it_publish "$IT_DIR/jobs-a.jsonl" || it_fail "producer refused jobs"

# ---- the poison ---------------------------------------------------------------------------
mkdir -p "$IT_DIR/poison"
python3 - "$IT_DIR/poison" "$IT_PREFIX" <<'PY'
import os, random, sys, time, json, msgpack
out, prefix = sys.argv[1], sys.argv[2]
now = int(time.time() * 1000)
def job(kind, **f):
    j = {"v": 1, "job_id": f"{prefix}-poison-{kind}", "building_id": "building:9990000951",
         "group_id": "1", "op": "call", "area": 1000, "action": 2, "destination": 5000,
         "created_at": now, "deadline": now + 300000}
    j.update(f)
    return j
def put(kind, body, expect):
    with open(f"{out}/{expect}.{kind}.bin", "wb") as f:
        f.write(body)
rnd = random.Random(7)
for i in range(1, 9):  # 0xc1 is never valid msgpack: undecodable whatever follows
    put(f"random-{i}", b"\xc1" + bytes(rnd.getrandbits(8) for _ in range(rnd.randint(10, 2000))), "dead")
put("array", msgpack.packb([1, 2, 3]), "dead")
put("string", msgpack.packb("call the lift"), "dead")
put("int", msgpack.packb(42), "dead")
put("nil", msgpack.packb(None), "dead")
put("bool", msgpack.packb(True), "dead")
put("bin", msgpack.packb(b"\x00\x01\x02"), "dead")
put("empty", b"", "dead")
put("truncated", msgpack.packb(job("truncated"))[:-7], "dead")
put("trailing", msgpack.packb(job("trailing")) + b"\x00", "dead")
deep = 0
for _ in range(20):
    deep = {"x": deep}
put("deep", msgpack.packb(job("deep", extra=deep)), "dead")
put("json", json.dumps(job("json")).encode(), "dead")
put("100kb", msgpack.packb(job("100kb", trace_id="t" * 100_000)), "dead")
put("area-string", msgpack.packb(job("area-string", area="lobby")), "result")
put("action-float", msgpack.packb(job("action-float", action=2.5)), "result")
put("building-int", msgpack.packb(job("building-int", building_id=42)), "result")
put("deadline-string", msgpack.packb(job("deadline-string", deadline="tomorrow")), "result")
put("op-unknown", msgpack.packb(job("op-unknown", op="fly")), "result")
PY
for f in "$IT_DIR"/poison/*.bin; do
    kind=$(basename "$f" .bin)
    it_publish_raw "$IT_PREFIX-poison-${kind#*.}" "$f"
done
poison_files=("$IT_DIR"/poison/*.bin)
[ "$(grep -c '"confirmed"' "$IT_DIR/raw.report")" -eq "${#poison_files[@]}" ] ||
    it_fail "a poison message was not routed: $(grep -v confirmed "$IT_DIR/raw.report" | head -2)"
BIG=$((10 * 1024 * 1024))
{ printf '\xc1'; head -c $((BIG - 1)) /dev/urandom; } | it_amqp_publish \
    -e "$KD_AMQP_EXCHANGE" -r "$KD_AMQP_ROUTING_KEY" -p -C application/msgpack ||
    it_fail "amqp-publish of the 10 MiB body failed"
dead_files=("$IT_DIR"/poison/dead.*.bin)
invalid_files=("$IT_DIR"/poison/result.*.bin)
n_dead=${#dead_files[@]} n_invalid=${#invalid_files[@]}
it_log "published $n_dead undecodable messages (+ one of 10 MiB) and $n_invalid invalid jobs"

it_jobs_good $((N - N / 2)) b >"$IT_DIR/jobs-b.jsonl"
it_publish "$IT_DIR/jobs-b.jsonl" || it_fail "producer refused jobs"

it_wait_ids $((N + n_invalid)) 600
sleep 3 # late duplicates arrive now
for w in w1 w2; do
    kill -0 "$(it_worker_pid $w)" 2>/dev/null || it_fail "$w died: $(tail -n 3 "$IT_DIR/$w.log")"
done
it_check_reconciled 0
it_wait_depth "$KD_AMQP_QUEUE.dead" $((n_dead + 1)) 60 # ours and the 10 MiB one
it_reconcile >/dev/null 2>&1 || true # read the dead letters again, the 10 MiB one included
s=$IT_DIR/reconcile.json
[ "$(jq '.final_outcomes.succeeded // 0' "$s")" -eq "$N" ] || it_fail "not every good job succeeded: $(jq -c .final_outcomes "$s")"
# every undecodable one parked once with its reason and an error, none with a result
for f in "$IT_DIR"/poison/dead.*.bin; do
    id=$IT_PREFIX-poison-$(basename "$f" .bin | cut -d. -f2-)
    jq -e --arg id "$id" '[.parked_list[] | select(.job_id == $id)] | length == 1 and
        (.[0].reason == "undecodable") and ((.[0].error // "") | length > 0)' "$s" >/dev/null ||
        it_fail "$id is not parked once with reason undecodable: $(jq -c --arg id "$id" '.parked_list[] | select(.job_id == $id)' "$s")"
    ! jq -e --arg id "$id" 'select(.job_id == $id)' "$IT_DIR/results.jsonl" >/dev/null ||
        it_fail "$id has a result although it was undecodable"
done
# every invalid job rejected once, naming the field
for f in "$IT_DIR"/poison/result.*.bin; do
    kind=$(basename "$f" .bin | cut -d. -f2-)
    it_expect "poison-$kind" '.outcome == "rejected" and .error.code == "invalid_job" and .failure == "final"'
done
# the 10 MiB body, parked whole
jq -se --argjson big "$BIG" 'map(select(.bytes == $big and .reason == "undecodable")) | length == 1' \
    "$IT_DIR/dead.jsonl" >/dev/null || it_fail "the 10 MiB message is not parked once: $(jq -c '{job_id, bytes, reason}' "$IT_DIR/dead.jsonl" | grep -v "$IT_PREFIX" | head -3)"
[ "$(jq -s length "$IT_DIR/dead.jsonl")" -eq $((n_dead + 1)) ] ||
    it_fail "the dead-letter queue holds $(jq -s length "$IT_DIR/dead.jsonl") messages, expected $((n_dead + 1))"
it_log "$(jq -r '"parked: \(.parked_by_reason); errors: \(.final_errors)"' "$s") + the 10 MiB one; e.g. $(jq -r '.parked_list[0].error' "$s")"
it_stop_worker w1
it_stop_worker w2
it_expect_queue_empty
it_stop_sim
it_drop_queues
it_log "PASS in $((SECONDS - t0))s"
