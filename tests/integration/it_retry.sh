#!/usr/bin/env bash
# it_retry: retries through RabbitMQ's tier queues, the dead-letter queue, replay-dead,
# backpressure and a RabbitMQ reconnect, against a private kone-sim (its faults are switched
# through its /sim/faults endpoint, so other tests' sim is untouched). Small tiers keep it
# under a minute.
#   1. 30% of calls answered 500 (up to 10 attempts): every job succeeds, exactly one
#      result each, some with attempt > 1.
#   2. every call answered 500 (3 attempts): the job ends `failed` with one result at
#      attempt 3, and is parked in the dead-letter queue with its error; an undecodable
#      message is parked at once with its reason, and gets no result.
#   3. faults off; replay-dead --dry-run moves nothing; replay-dead with a job-id filter
#      moves the failed job back (attempt reset), leaves the undecodable one, and the job
#      then succeeds at attempt 1.
#   4. backpressure: kafka.max_undelivered=2 with a 100 ms linger makes the worker pause and
#      resume consumption again and again; 150 jobs, exactly 150 results, no repeats.
#   5. the worker's AMQP connection is closed by the broker mid-run: it reconnects and
#      every job still gets a result; repeats at most worker.inflight; the queue ends empty.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/jobs.sh"

PORT=${IT_RETRY_SIM_PORT:-18471}
tls=$KD_STATE_DIR/tls
"$KD_BIN_DIR/kone-sim" --sim-port="$PORT" --sim-cert="$tls/server.pem" --sim-key="$tls/server-key.pem" \
    --sim-buildings="$KD_SRC_DIR/sim/buildings.json" --sim-clients="$KD_SRC_DIR/sim/clients.json" \
    --sim-speed=50 >"$IT_DIR/sim.log" 2>&1 &
IT_PIDS+=($!)
faults() {
    curl -sf --cacert "$tls/ca.pem" -X POST "https://127.0.0.1:$PORT/sim/faults${2:-}" -d "$1" >/dev/null ||
        it_fail "kone-sim refused the fault spec $1"
}
for _ in $(seq 100); do
    curl -s --cacert "$tls/ca.pem" -o /dev/null "https://127.0.0.1:$PORT/" && break
    sleep 0.1
done
SIM_ENV=(KD_KONE_TOKEN_URL="https://127.0.0.1:$PORT/api/v2/oauth2/token"
    KD_KONE_WS_URL="wss://127.0.0.1:$PORT/stream-v2")
export KD_RETRY_TIERS_MS=200,500,1000 KD_RETRY_BASE_MS=200 KD_RETRY_CAP_MS=1000
DEAD=$KD_AMQP_QUEUE.dead
pub() { it_amqp_publish -e "$KD_AMQP_EXCHANGE" -r "$KD_AMQP_ROUTING_KEY" "$@"; }
count() { # count QUEUE: messages in it (stats lag a little: poll until it matches or 10 s)
    rabbitmqctl -q list_queues name messages 2>/dev/null | awk -v q="$1" '$1==q {print $2}'
}
wait_count() { # wait_count QUEUE N
    local n=""
    for _ in $(seq 50); do
        n=$(count "$1")
        [ "${n:-0}" -eq "$2" ] && return 0
        sleep 0.2
    done
    it_fail "queue $1 holds ${n:-0} messages, expected $2"
}
# only this test's queues are deleted at the end; the work queue is left as other tests leave theirs
cleanup_queues() {
    for q in "$DEAD" "$KD_AMQP_QUEUE.retry.200" "$KD_AMQP_QUEUE.retry.500" "$KD_AMQP_QUEUE.retry.1000"; do
        rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
    done
}

# ---- 1. 30% of calls fail with 500: all succeed, attempts recorded --------------------------
faults '{"call_error":{"share":0.3,"status":500}}'
# (a short call timeout: a call that stays without its result is retried quickly too)
it_start_worker w1 "${SIM_ENV[@]}" KD_RETRY_MAX_ATTEMPTS=10 KD_KONE_CALL_TIMEOUT_MS=3000
N=30
jobs_good $N >"$IT_DIR/jobs1.jsonl"
it_publish "$IT_DIR/jobs1.jsonl" || it_fail "producer refused jobs"
it_wait_results $N 60
r=$IT_DIR/results.jsonl
[ "$(jq -r .job_id "$r" | sort -u | wc -l)" -eq $N ] || it_fail "duplicate or missing results: $(jq -r .job_id "$r" | sort | uniq -d | head -3)"
ok=$(jq -c 'select(.outcome=="succeeded")' "$r" | wc -l)
[ "$ok" -eq $N ] || it_fail "$((N - ok)) jobs did not succeed: $(jq -c 'select(.outcome!="succeeded") | {job_id,outcome,error,attempt}' "$r" | head -3)"
retried=$(jq -c 'select(.attempt > 1)' "$r" | wc -l)
[ "$retried" -ge 1 ] || it_fail "no result has attempt > 1 although 30% of calls failed"
it_log "phase 1: $N succeeded, $retried after a retry (max attempt $(jq -s 'map(.attempt)|max' "$r"))"
grep -q '"attempt 1 failed (500); attempt 2 in' "$IT_DIR/w1.log" || it_fail "no retry log line"
it_stop_worker w1

# ---- 2. every call fails: failed after 3 attempts, parked; undecodable parked at once ---------
faults '{"call_error":{"share":1,"status":500}}'
it_start_worker w2 "${SIM_ENV[@]}" KD_RETRY_MAX_ATTEMPTS=3
it_job "doomed" '{"v":1,"area":1000,"action":2,"destination":5000}' >"$IT_DIR/jobs2.jsonl"
it_publish "$IT_DIR/jobs2.jsonl" || it_fail "producer refused the job"
printf 'garbage, not msgpack' | pub -C text/plain
it_wait_results $((N + 1)) 30
it_expect doomed '.outcome=="failed" and .attempt==3 and .error.code=="500" and .failure=="transient"'
wait_count "$DEAD" 2
grep -q '"undecodable message' "$IT_DIR/w2.log" || it_fail "no log line for the undecodable message"
it_stop_worker w2

# ---- 3. replay-dead: dry run, then move the failed job back; it succeeds -------------------
faults 'null' /reset
"$KD_BIN_DIR/kone-producer" replay-dead --dry-run >"$IT_DIR/dry.jsonl" 2>"$IT_DIR/replay.log" ||
    it_fail "replay-dead --dry-run failed: $(tail -3 "$IT_DIR/replay.log")"
jq -se --arg id "$IT_PREFIX-doomed" 'length == 2 and all(.[]; .action=="would_move") and
    any(.[]; .job_id==$id and .reason=="failed" and .attempt==3 and (.error|test("^500: ")))
    and any(.[]; .reason=="undecodable" and (.error|length) > 0)' "$IT_DIR/dry.jsonl" >/dev/null ||
    it_fail "dry run did not list both parked messages with their reasons: $(cat "$IT_DIR/dry.jsonl")"
wait_count "$DEAD" 2
"$KD_BIN_DIR/kone-producer" replay-dead --filter-job-prefix="$IT_PREFIX-doomed" \
    >"$IT_DIR/replay.jsonl" 2>>"$IT_DIR/replay.log" || it_fail "replay-dead failed: $(tail -3 "$IT_DIR/replay.log")"
jq -se --arg id "$IT_PREFIX-doomed" 'length == 2 and
    any(.[]; .job_id==$id and .action=="moved") and any(.[]; .reason=="undecodable" and .action=="kept")' \
    "$IT_DIR/replay.jsonl" >/dev/null || it_fail "replay-dead did not move exactly the filtered job: $(cat "$IT_DIR/replay.jsonl")"
grep -q 'replay-dead: 1 moved, 1 kept, 0 failed' "$IT_DIR/replay.log" || it_fail "no summary: $(tail -2 "$IT_DIR/replay.log")"
wait_count "$DEAD" 1
it_start_worker w3 "${SIM_ENV[@]}"
it_wait_results $((N + 2)) 30
jq -se --arg id "$IT_PREFIX-doomed" 'map(select(.job_id==$id)) | length == 2 and
    any(.[]; .outcome=="succeeded" and .attempt==1)' "$IT_DIR/results.jsonl" >/dev/null ||
    it_fail "the replayed job did not succeed: $(jq -c --arg id "$IT_PREFIX-doomed" 'select(.job_id==$id)' "$IT_DIR/results.jsonl")"
it_log "phase 2-3: failed after 3 attempts, parked, replayed, succeeded; undecodable stays parked"
it_stop_worker w3

# ---- 4. backpressure: pauses and resumes, nothing repeated ----------------------------------
M=150
for i in $(seq $M); do
    it_job "bp-$i" "{\"v\":1,\"area\":1000,\"action\":2,\"destination\":$((JOBS_FLOORS[i % 9] * 1000))}"
done >"$IT_DIR/jobs4.jsonl"
it_publish "$IT_DIR/jobs4.jsonl" || it_fail "producer refused jobs"
it_start_worker w4 "${SIM_ENV[@]}" KD_KAFKA_MAX_UNDELIVERED=2 KD_KAFKA_LINGER_MS=100
it_wait_results $((N + 2 + M)) 60
bp=$(jq -r 'select(.job_id|contains("-bp-")) | .job_id' "$IT_DIR/results.jsonl")
[ "$(wc -l <<<"$bp")" -eq $M ] || it_fail "expected $M backpressure results, got $(wc -l <<<"$bp")"
[ "$(sort -u <<<"$bp" | wc -l)" -eq $M ] || it_fail "a job ran twice under backpressure"
pauses=$(grep -c 'pausing consumption' "$IT_DIR/w4.log" || true)
resumes=$(grep -c 'resuming consumption' "$IT_DIR/w4.log" || true)
[ "$pauses" -ge 1 ] && [ "$resumes" -ge 1 ] || it_fail "backpressure never paused ($pauses) and resumed ($resumes)"
it_log "phase 4: $M results, none repeated; consumption paused $pauses and resumed $resumes times"
it_stop_worker w4

# ---- 5. the broker closes the worker's connection mid-run ----------------------------------
K=200
for i in $(seq $K); do
    it_job "rc-$i" "{\"v\":1,\"area\":1000,\"action\":2,\"destination\":$((JOBS_FLOORS[i % 9] * 1000))}"
done >"$IT_DIR/jobs5.jsonl"
it_start_worker w5 "${SIM_ENV[@]}" KD_WORKER_INFLIGHT=16 KD_AMQP_HEARTBEAT_S=2
sleep 1
it_publish "$IT_DIR/jobs5.jsonl" || it_fail "producer refused jobs"
# the worker's own connection: the one from its local port (other tests' workers are left alone)
# shellcheck disable=SC2154 # set by it_start_worker through eval (IT_PID_<name>)
lport=$(ss -tnp | grep "pid=$IT_PID_w5," | awk -v p=":$KD_AMQP_PORT\$" '$5 ~ p {print $4}' | sed 's/.*://' | head -1)
conn=$(rabbitmqctl -q list_connections pid peer_port 2>/dev/null | awk -v p="$lport" '$2==p {print $1}')
[ -n "$lport" ] && [ -n "$conn" ] || it_fail "cannot find the worker's AMQP connection (port '$lport')"
sleep 0.3
rabbitmqctl -q close_connection "$conn" "it_retry: closing on purpose" >/dev/null ||
    it_fail "rabbitmqctl close_connection failed"
it_wait_results $((N + 2 + M + K)) 60
sleep 2 # late duplicates would arrive now
it_results >"$IT_DIR/results.jsonl"
rc=$(jq -r 'select(.job_id|contains("-rc-")) | .job_id' "$IT_DIR/results.jsonl")
uniq=$(sort -u <<<"$rc" | wc -l)
[ "$uniq" -eq $K ] || it_fail "only $uniq of $K jobs have a result after the reconnect"
dups=$(($(wc -l <<<"$rc") - uniq))
[ "$dups" -le 16 ] || it_fail "$dups repeated results, more than the in-flight limit"
grep -q 'RabbitMQ connection lost' "$IT_DIR/w5.log" || it_fail "the worker did not notice the closed connection"
[ "$(grep -c 'amqp .*: connected' "$IT_DIR/w5.log")" -ge 2 ] || it_fail "the worker did not reconnect"
it_stop_worker w5
wait_count "$KD_AMQP_QUEUE" 0
it_log "phase 5: $K jobs done across a reconnect, $dups repeated (in-flight limit 16)"
cleanup_queues
if [ -n "${IT_KEEP:-}" ]; then cp -r "$IT_DIR" "$IT_KEEP"; fi # IT_KEEP=DIR: keep the logs of a passing run
it_log "PASS"
