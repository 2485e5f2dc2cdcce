#!/usr/bin/env bash
# it_bad_input: an undecodable message and a job with bad fields do not stop the worker:
# each yields a clear outcome and log line, and the worker goes on executing good jobs.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/jobs.sh"

it_start_worker w1
for _ in $(seq 100); do
    rabbitmqctl -q list_queues name 2>/dev/null | grep -qx "$KD_AMQP_QUEUE" && break
    sleep 0.2
done
pub() { it_amqp_publish -e "$KD_AMQP_EXCHANGE" -r "$KD_AMQP_ROUTING_KEY" "$@"; }
# 1. not msgpack at all
printf 'this is not msgpack {"job_id": 1}' | pub -C text/plain
# 2. a msgpack map with a bad field (delay 99), encoded outside our producer
python3 -c '
import sys, msgpack, time
now = int(time.time() * 1000)
sys.stdout.buffer.write(msgpack.packb({"v": 1, "job_id": sys.argv[1], "op": "call",
  "building_id": "building:9990000951", "created_at": now, "deadline": now + 60000,
  "area": 1000, "action": 2, "destination": 5000, "delay": 99}))' "$IT_PREFIX-baddelay" | pub -C application/msgpack
# 3. a good job after them
jobs_good 1 | jq -c '.job_id = "'"$IT_PREFIX"'-good"' >"$IT_DIR/jobs.jsonl"
it_publish "$IT_DIR/jobs.jsonl"
it_wait_results 2 60
it_expect baddelay '.outcome=="rejected" and .error.code=="invalid_job" and (.error.message|test("^delay: .*99"))'
it_expect good '.outcome=="succeeded"'
grep -q '"undecodable message' "$IT_DIR/w1.log" || it_fail "no log line for the undecodable message"
# shellcheck disable=SC2154 # set by it_start_worker through eval (IT_PID_<name>)
kill -0 "$IT_PID_w1" || it_fail "worker died"
it_stop_worker w1
left=$(rabbitmqctl -q list_queues name messages 2>/dev/null | awk -v q="$KD_AMQP_QUEUE" '$1==q {print $2}')
[ "${left:-0}" -eq 0 ] || it_fail "$left messages left in the queue: bad input was not settled"

# 4. a bad call ledger URL is a clear start-up error, never a worker that calls without it (one
# that cannot be reached is not an error: the worker starts without it and takes no job until
# it answers: it_worker_cli, it_fault_ledger_down)
bad_ledger() { # NAME URL EXPECTED_REGEX: the worker exits 2 at once, says EXPECTED_REGEX
    local rc=0
    timeout 30 env KD_LEDGER_URL_FILE= KD_LEDGER_URL="$2" KD_METRICS_PORT=0 \
        "$KD_BIN_DIR/kone-worker" --worker-id="$1" >"$IT_DIR/$1.log" 2>&1 || rc=$?
    [ "$rc" -eq 2 ] || it_fail "$1: exit status $rc, expected 2: $(tail -n 2 "$IT_DIR/$1.log")"
    grep -Eq "$3" "$IT_DIR/$1.log" || it_fail "$1: no clear error: $(tail -n 2 "$IT_DIR/$1.log")"
    ! grep -q 's3cret' "$IT_DIR/$1.log" || it_fail "$1: the ledger password reached the log"
}
bad_ledger bad-option 'postgresql://kd:s3cret@127.0.0.1:1/kone_dispatch?sslmode=verify-full&no_such_option=1' \
    'cannot start: ledger\.url postgresql://kd:\*\*\*@.*: .*no_such_option'
bad_ledger wrong-form 'mysql://kd:s3cret@db/x' 'cannot start: ledger\.url: expected postgresql://'
it_log "a ledger URL libpq cannot parse, or in the wrong form: exit 2, the password not shown"
it_log "PASS"
