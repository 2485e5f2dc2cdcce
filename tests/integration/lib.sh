# shellcheck shell=bash
# lib.sh: helpers shared by the integration tests and scripts/demo.
#
# Each test isolates itself on the shared broker stack (started once by the ctest fixture,
# scripts/dev-up): its own exchange and quorum queue (it.<name>) and a unique job-id prefix,
# so tests never see each other's jobs even though the Kafka topics are shared.
# Sourcing this sets -euo pipefail and an EXIT trap that stops the workers it started.

set -euo pipefail

KD_SRC_DIR=${KD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
KD_BIN_DIR=${KD_BIN_DIR:-$KD_SRC_DIR/build}
KD_STATE_DIR=${KD_STATE_DIR:-$KD_SRC_DIR/.dev}
# shellcheck disable=SC1091 # a file the dev stack writes at run time: not there to follow
source "$KD_STATE_DIR/env"

IT_NAME=${IT_NAME:-$(basename "${BASH_SOURCE[1]:-it}" .sh)}
IT_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kd-$IT_NAME.XXXXXX")
IT_PREFIX="${IT_NAME//_/-}-$(date +%s)-$RANDOM"
export KD_AMQP_EXCHANGE="it.$IT_PREFIX"
export KD_AMQP_QUEUE="it.$IT_PREFIX"
export KD_AMQP_ROUTING_KEY="it.$IT_PREFIX"
IT_PIDS=()
IT_AT_EXIT=() # commands it_cleanup runs first (it_at_exit)

it_log() { printf '[%s %s] %s\n' "$(date +%T)" "$IT_NAME" "$*" >&2; }
it_fail() {
    it_log "FAIL: $*"
    exit 1
}

it_cleanup() {
    local rc=$? c
    for c in "${IT_AT_EXIT[@]}"; do eval "$c" || true; done
    for pid in "${IT_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${IT_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    # Every log line the programs wrote must match the documented schema (docs/logging.md):
    # ELK parses them, so a field renamed or added without its documentation fails here.
    # Likewise every result and call event the test read from Kafka (docs/schemas/).
    if [ "$rc" -eq 0 ] && compgen -G "$IT_DIR/*.log" >/dev/null; then
        python3 "$KD_SRC_DIR/tests/schemas/check_jsonl.py" --logs \
            "$KD_SRC_DIR/docs/schemas/log-line.schema.json" "$IT_DIR"/*.log >&2 || {
            it_log "FAIL: log lines outside docs/schemas/log-line.schema.json"
            rc=1
        }
    fi
    local kafka_lines=()
    for c in results events; do if [ -f "$IT_DIR/$c.jsonl" ]; then kafka_lines+=("$IT_DIR/$c.jsonl"); fi; done
    if [ "$rc" -eq 0 ] && [ ${#kafka_lines[@]} -gt 0 ]; then
        python3 "$KD_SRC_DIR/tests/schemas/check_jsonl.py" --events "${kafka_lines[@]}" >&2 || {
            it_log "FAIL: events outside docs/schemas/{result,call-event}.schema.json"
            rc=1
        }
    fi
    if [ "$rc" -ne 0 ]; then
        it_log "logs kept in $IT_DIR"
        for f in "$IT_DIR"/*.log; do
            [ -f "$f" ] || continue
            echo "---- tail of $f" >&2
            tail -n 30 "$f" >&2
        done
    else
        rm -rf "$IT_DIR"
    fi
    exit "$rc"
}
trap it_cleanup EXIT

# it_start_worker NAME [ENV=VALUE ...]: starts a kone-worker in the background.
it_start_worker() {
    local name=$1
    shift
    env "$@" "$KD_BIN_DIR/kone-worker" --worker-id="$name" >"$IT_DIR/$name.log" 2>&1 &
    IT_PIDS+=($!)
    eval "IT_PID_${name//-/_}=$!"
}

# it_stop_worker NAME: SIGTERM, then checks it exits 0 within 30 s.
it_stop_worker() {
    local var="IT_PID_${1//-/_}" pid rc=0
    pid=${!var}
    kill -TERM "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && it_fail "worker $1 did not stop within 30 s of SIGTERM"
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || it_fail "worker $1 exited with $rc"
}

# it_amqp_publish ARGS...: Debian's amqp-publish (amqp-tools, another AMQP client) against the
# stack's RabbitMQ, over TLS like everything else. It names the host localhost: amqp-tools
# leave the host name check to rabbitmq-c 0.11, which matches DNS names only, and the dev
# certificate carries DNS:localhost beside IP:127.0.0.1.
it_amqp_publish() {
    amqp-publish --ssl --cacert="$KD_AMQP_CA_FILE" --url="amqps://localhost:$KD_AMQP_PORT" "$@"
}

# it_publish FILE: publishes JSON-lines jobs with kone-producer; report in FILE.report.
it_publish() {
    local rc=0
    "$KD_BIN_DIR/kone-producer" "$1" >"$1.report" 2>"$IT_DIR/producer.log" || rc=$?
    return $rc
}

# it_results [TOPIC]: prints this test's events (JSON lines) currently in TOPIC.
it_results() {
    local topic=${1:-kone.call.results}
    "$KD_BIN_DIR/kone-events" --events-topic="$topic" --events-idle-exit-ms=1500 \
        2>>"$IT_DIR/events.log" | grep -F "\"$IT_PREFIX" || true
}

# it_wait_results N TIMEOUT_S [TOPIC]: waits until N of this test's results are in Kafka;
# leaves them in $IT_DIR/results.jsonl.
it_wait_results() {
    local want=$1 timeout=$2 topic=${3:-kone.call.results} n=0 t0=$SECONDS
    while :; do
        it_results "$topic" >"$IT_DIR/results.jsonl"
        n=$(wc -l <"$IT_DIR/results.jsonl")
        [ "$n" -ge "$want" ] && break
        [ $((SECONDS - t0)) -ge "$timeout" ] && it_fail "only $n of $want results after ${timeout}s"
        sleep 2
    done
    it_log "$n results after $((SECONDS - t0))s"
}

# it_job ID FIELDS_JSON: one job line with this test's prefix and a generous deadline.
it_job() {
    local now
    now=$(date +%s%3N)
    jq -cn --arg id "$IT_PREFIX-$1" --argjson f "$2" --argjson now "$now" \
        '{job_id: $id, building_id: "building:9990000951", group_id: "1", op: "call",
          created_at: $now, deadline: ($now + 300000)} + $f'
}

# it_expect ID JQ_FILTER: the result of job $IT_PREFIX-ID in $IT_DIR/results.jsonl exists
# once and satisfies JQ_FILTER (a boolean expression on the result object).
it_expect() {
    local id="$IT_PREFIX-$1"
    jq -se --arg id "$id" "map(select(.job_id==\$id)) | length == 1 and all(.[]; $2)" \
        "$IT_DIR/results.jsonl" >/dev/null ||
        it_fail "result of $id does not satisfy: $2; got: $(jq -c --arg id "$id" 'select(.job_id==$id)' "$IT_DIR/results.jsonl")"
}

# ---- Helpers of the fault tests (tests/integration/it_fault_*.sh) ---------------------------

# it_pending WHAT: the feature the test needs has not landed; prints why and exits 77 (ctest
# shows the test as skipped where SKIP_RETURN_CODE 77 is set, failed otherwise).
it_pending() {
    if [ -n "${IT_IGNORE_PENDING:-}" ]; then
        it_log "pending, going on anyway (IT_IGNORE_PENDING): $*"
        return 0
    fi
    it_log "PENDING: $*"
    exit 77
}

# it_worker_has REGEX: kone-worker's --help matches REGEX (extended, any case), e.g. an option
# such as --retry-max-attempts: a feature a test needs has landed.
it_worker_has() {
    local help
    help=$("$KD_BIN_DIR/kone-worker" --help 2>&1 || true)
    grep -q -i -E -e "$1" <<<"$help"
}

# it_jobs NAME N FIELDS_JQ: N job lines with ids $IT_PREFIX-NAME-1..N from a single jq run (one
# it_job per line is slow for thousands). FIELDS_JQ is a jq object expression that may use $i
# (1..N) and $now (ms); it is merged over it_job's defaults (building 951, group 1, call,
# created now, deadline in 5 minutes).
it_jobs() {
    jq -cn --arg p "$IT_PREFIX-$1-" --argjson n "$2" --argjson now "$(date +%s%3N)" \
        "range(1; \$n + 1) as \$i | {job_id: (\$p + (\$i | tostring)), building_id: \"building:9990000951\",
          group_id: \"1\", op: \"call\", created_at: \$now, deadline: (\$now + 300000)} + ($3)"
}

# it_jobs_good N [NAME [FIELDS_JQ]]: N destination calls like jobs.sh's jobs_good (group 1, from
# the lobby to floors 2..11 but not the locked 9), plus FIELDS_JQ.
it_jobs_good() {
    it_jobs "${2:-good}" "$1" "{v: 1, area: 1000, action: 2,
        destination: ([2, 3, 4, 5, 6, 7, 8, 10, 11][\$i % 9] * 1000)} + (${3:-{\}})"
}

# it_free_port: a TCP port on 127.0.0.1 nobody listens on right now.
it_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# it_start_sim [KONE-SIM FLAGS...]: a private kone-sim for this test on a free port, so the
# faults it injects reach no other test. Clock speed KD_SIM_SPEED (default 50). Sets IT_SIM_PORT,
# IT_SIM_PID and IT_SIM_ENV, the worker settings that point at it: it_start_worker w1 "${IT_SIM_ENV[@]}".
it_start_sim() {
    local tls=$KD_STATE_DIR/tls i try
    for try in 1 2 3 4 5; do
        IT_SIM_PORT=$(it_free_port)
        "$KD_BIN_DIR/kone-sim" --sim-port="$IT_SIM_PORT" --sim-cert="$tls/server.pem" \
            --sim-key="$tls/server-key.pem" --sim-buildings="$KD_SRC_DIR/sim/buildings.json" \
            --sim-clients="$KD_SRC_DIR/sim/clients.json" --sim-speed="${KD_SIM_SPEED:-50}" "$@" \
            >"$IT_DIR/sim.log" 2>&1 &
        IT_SIM_PID=$!
        IT_PIDS+=("$IT_SIM_PID")
        for i in $(seq 300); do
            curl -sf --cacert "$tls/ca.pem" -o /dev/null "https://127.0.0.1:$IT_SIM_PORT/sim/faults" && break 2
            if ! kill -0 "$IT_SIM_PID" 2>/dev/null; then
                # The port was free when asked and taken before kone-sim bound it (EADDRINUSE,
                # lws's "(-1 98)"): another process's connection got it as its local port (the
                # sanitizer stage, 2026-12-05). Another port, a new log.
                if [ "$try" -lt 5 ] && grep -q 'binding fd [0-9]* to port [0-9]* (-1 98)' "$IT_DIR/sim.log"; then
                    it_log "kone-sim: port $IT_SIM_PORT was taken meanwhile; another"
                    continue 2
                fi
                it_fail "kone-sim exited at start: $(tail -n 3 "$IT_DIR/sim.log")"
            fi
            [ "$i" -lt 300 ] || it_fail "kone-sim did not answer on port $IT_SIM_PORT within 30 s"
            sleep 0.1
        done
    done
    IT_SIM_ENV=(KD_KONE_TOKEN_URL="https://127.0.0.1:$IT_SIM_PORT/api/v2/oauth2/token"
        KD_KONE_WS_URL="wss://127.0.0.1:$IT_SIM_PORT/stream-v2")
}

# it_stop_sim: stops the private kone-sim; fails when it did not exit 0 or logged a sanitizer report.
it_stop_sim() {
    local rc=0
    kill -TERM "$IT_SIM_PID" 2>/dev/null || true
    wait "$IT_SIM_PID" || rc=$?
    if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$IT_DIR/sim.log"; then
        it_fail "kone-sim logged a sanitizer report: $(grep -m1 -E 'Sanitizer|runtime error' "$IT_DIR/sim.log")"
    fi
    [ "$rc" -eq 0 ] || it_fail "kone-sim exited with $rc"
}

# it_sim_faults SPEC_JSON: POST /sim/faults to the private kone-sim (docs/kone-sim.md).
it_sim_faults() {
    local out
    out=$(curl -sS --cacert "$KD_STATE_DIR/tls/ca.pem" -w '\n%{http_code}' -X POST \
        "https://127.0.0.1:$IT_SIM_PORT/sim/faults" -d "$1") || it_fail "kone-sim control endpoint unreachable"
    [ "${out##*$'\n'}" = 200 ] || it_fail "POST /sim/faults $1: ${out//$'\n'/ }"
    it_log "kone-sim faults: $1"
}

# it_fault_worker NAME [ENV=VALUE ...]: it_start_worker for the fault tests: INFLIGHT jobs in
# flight (default 16), the private kone-sim of it_start_sim, and a metrics endpoint on a free
# loopback port (several workers on one machine); then ENV.
it_fault_worker() {
    local name=$1
    shift
    it_start_worker "$name" KD_WORKER_INFLIGHT="${INFLIGHT:-16}" "${IT_SIM_ENV[@]}" \
        KD_METRICS_PORT=0 KD_METRICS_LISTEN=127.0.0.1 "$@"
}

# it_metrics_port NAME: the port of the worker's metrics endpoint, from its log (waits 10 s).
it_metrics_port() {
    local p i
    for i in $(seq 50); do
        p=$(grep -o '"message":"metrics endpoint on [^ ]* port [0-9]*' "$IT_DIR/$1.log" | grep -o '[0-9]*$' | tail -n1 || true)
        [ -n "$p" ] && { echo "$p"; return 0; }
        sleep 0.2
    done
    it_fail "$1 logged no metrics endpoint port"
}

# it_worker_pid NAME: the pid of a worker started by it_start_worker.
it_worker_pid() {
    local var="IT_PID_${1//-/_}"
    echo "${!var}"
}

# it_kill_worker NAME SIGNAL: sends SIGNAL and reaps the worker; its exit status in IT_RC.
# shellcheck disable=SC2034 # IT_RC is read by the tests after this returns
it_kill_worker() {
    local pid
    pid=$(it_worker_pid "$1")
    IT_RC=0
    kill "-$2" "$pid"
    wait "$pid" 2>/dev/null || IT_RC=$?
}

# it_count_ids [JQ_FILTER]: how many distinct job ids of this test have a result satisfying the
# filter (default: any result) in Kafka right now; leaves the results in $IT_DIR/results.jsonl.
it_count_ids() {
    it_results >"$IT_DIR/results.jsonl"
    jq -r "select(${1:-true}) | .job_id" "$IT_DIR/results.jsonl" | sort -u | wc -l
}

# it_follow_results: a kone-events in the background that streams the results topic into
# $IT_DIR/follow.jsonl for the whole test. "Mid-run" checks read that file: a fresh kone-events
# per check would wait for its idle exit, which never comes while the workers keep producing.
it_follow_results() {
    KD_LOG_LEVEL=debug "$KD_BIN_DIR/kone-events" --events-topic=kone.call.results \
        >"$IT_DIR/follow.jsonl" 2>>"$IT_DIR/events.log" &
    IT_PIDS+=($!)
    # Returns once its consumer has its partitions (kone-events logs it at debug) and has read
    # the topic's earlier results (the file stops growing: the test's workers are not started
    # yet), so it follows this test's results as they come. A group join takes seconds, and a
    # follower that joined after the workers were done saw every result at once: the moment a
    # test waits for with it_wait_followed (a worker stopped "mid-run") had passed and nothing
    # was left in flight (it_fault_sigterm under TSan, 2026-12-05). It reads from the beginning
    # and commits nothing, so after a Kafka outage it reads everything again, missing nothing.
    # "Has read": the line count unchanged over 4 samples 0.5 s apart (2 s), as the first
    # fetch after the assignment may take a moment on a loaded machine.
    local i n m=-1 same=0
    for i in $(seq 300); do
        grep -q '"message":"kafka: assigned' "$IT_DIR/events.log" 2>/dev/null && break
        [ "$i" -lt 300 ] || it_fail "the result follower had no partition after 60 s (see $IT_DIR/events.log)"
        sleep 0.2
    done
    for i in $(seq 120); do
        sleep 0.5
        n=$(wc -l <"$IT_DIR/follow.jsonl")
        if [ "$n" -eq "$m" ]; then
            same=$((same + 1))
            [ "$same" -lt 4 ] || return 0
        else
            same=0
        fi
        m=$n
    done
    it_fail "the result follower was still reading earlier results after 60 s"
}

# it_followed: how many distinct job ids of this test the follower has seen a result for.
it_followed() {
    { grep -o "\"job_id\":\"$IT_PREFIX-[^\"]*\"" "$IT_DIR/follow.jsonl" || true; } | sort -u | wc -l
}

# it_wait_followed N TIMEOUT_S: waits until the follower has seen N of this test's jobs.
it_wait_followed() {
    local want=$1 timeout=$2 n t0=$SECONDS
    while :; do
        n=$(it_followed)
        [ "$n" -ge "$want" ] && break
        [ $((SECONDS - t0)) -ge "$timeout" ] && it_fail "only $n of $want results seen after ${timeout}s"
        sleep 0.2
    done
    it_log "$n jobs have a result after $((SECONDS - t0))s"
}

# it_wait_ids N TIMEOUT_S [JQ_FILTER]: waits until N distinct job ids have such a result.
it_wait_ids() {
    local want=$1 timeout=$2 filter=${3:-true} n t0=$SECONDS
    while :; do
        n=$(it_count_ids "$filter")
        [ -z "${IT_DEBUG:-}" ] || it_log "poll: $n"
        [ "$n" -ge "$want" ] && break
        [ $((SECONDS - t0)) -ge "$timeout" ] && it_fail "only $n of $want jobs have a result ($filter) after ${timeout}s"
        sleep 1
    done
    it_log "$n jobs have a result ($filter) after $((SECONDS - t0))s"
}

# Recovery time (docs/slo.md "Recovery time after a fault"): from the end of a test's fault
# to its backlog drained. A figure for the report, never an assertion: the tests keep their own
# checks and waits; these helpers never fail a test, and add only the few seconds the broker's
# queue count lags behind the last ack.
#
# it_fault_ended: marks the moment the fault ended (the broker back, the last worker replaced,
# the simulator healed). Call it right after the step that heals.
it_fault_ended() {
    IT_FAULT_END_MS=$(date +%s%3N)
    it_log "fault ended"
}

# it_recovery N [TIMEOUT_S]: after it_fault_ended, polls (every 0.5 s, at most TIMEOUT_S,
# default 300) until the work queue holds no message and N distinct jobs of this test have a
# result in Kafka, then logs one parseable line:
#   recovery_s=<s> test=<name> backlog=<n> results_seen_s=<s> last_finished_s=<s>
# recovery_s: from the fault's end until the broker first reported the queue empty. A worker
# acks a job only once Kafka confirmed its result, so an empty queue is every result in Kafka;
# the quorum queue's count lags the last ack by a second or two, so this is an upper bound.
# results_seen_s: until this test's reader (kone-events) had seen N results; after a Kafka
# outage it includes that consumer's own reconnection. last_finished_s: until the last result's
# finished_at (when its outcome was known; a result held back by the fault gets there before
# Kafka has it). backlog: results finished after the fault's end. On a timeout it logs
# recovery_s=timeout and returns 0: the test's own wait decides.
it_recovery() {
    local want=$1 timeout=${2:-300} t0=$SECONDS n="" depth="" f in_ms="" empty_ms="" now last backlog
    [ -n "${IT_FAULT_END_MS:-}" ] || it_fail "it_recovery without it_fault_ended"
    f=$IT_DIR/follow.jsonl
    while [ -z "$in_ms" ] || [ -z "$empty_ms" ]; do
        now=$(date +%s%3N)
        if [ -z "$empty_ms" ]; then
            depth=$(it_queue_depth "$KD_AMQP_QUEUE" || true)
            [ "$depth" != 0 ] || empty_ms=$now
        fi
        if [ -z "$in_ms" ]; then
            if [ -f "$f" ]; then n=$(it_followed); else n=$(it_count_ids); fi
            [ "$n" -lt "$want" ] || in_ms=$now
        fi
        if [ $((SECONDS - t0)) -ge "$timeout" ]; then
            it_log "recovery_s=timeout test=$IT_NAME results=${n:-?}/$want queue=${depth:-?} after ${timeout}s"
            return 0
        fi
        [ -n "$in_ms" ] && [ -n "$empty_ms" ] || sleep 0.5
    done
    [ -f "$f" ] || f=$IT_DIR/results.jsonl
    read -r last backlog < <(grep -F "\"$IT_PREFIX" "$f" | jq -rs --argjson e "$IT_FAULT_END_MS" '
        map(.finished_at // empty) | [(((max // $e) - $e) / 1000 | if . < 0 then 0 else . end),
        (map(select(. > $e)) | length)] | "\(.[0] * 10 | round / 10) \(.[1])"')
    it_log "recovery_s=$(it_since_fault "$empty_ms") test=$IT_NAME backlog=$backlog results_seen_s=$(it_since_fault "$in_ms") last_finished_s=$last"
}
# it_since_fault EPOCH_MS: seconds from it_fault_ended to EPOCH_MS, one decimal.
it_since_fault() { awk -v a="$1" -v e="$IT_FAULT_END_MS" 'BEGIN { printf "%.1f", (a - e) / 1000 }'; }

# it_reconcile [scripts/reconcile OPTIONS...]: reconciles this test's confirmed jobs (every
# $IT_DIR/*.report) with Kafka and the dead-letter queue $KD_AMQP_QUEUE.dead; prints the
# summary, leaves it as JSON in $IT_DIR/reconcile.json (and every dead letter, ours or not,
# in $IT_DIR/dead.jsonl) and returns the tool's exit status.
it_reconcile() {
    local args=() f rc=0
    for f in "$IT_DIR"/*.report; do args+=(--report "$f"); done
    KD_BIN_DIR=$KD_BIN_DIR "$KD_SRC_DIR/scripts/reconcile" --prefix "$IT_PREFIX" --idle-ms 2000 \
        --json-out "$IT_DIR/reconcile.json" --dump-dead "$IT_DIR/dead.jsonl" "${args[@]}" "$@" >"$IT_DIR/reconcile.txt" 2>&1 || rc=$?
    sed 's/^/    /' "$IT_DIR/reconcile.txt" >&2
    return $rc
}

# it_check_reconciled MAX_DUPLICATES [OPTIONS...]: it_reconcile, and the test fails unless
# every confirmed job has exactly one final outcome and at most MAX_DUPLICATES ids had two.
it_check_reconciled() {
    local max=$1 rc=0
    shift
    it_reconcile --max-duplicates "$max" "$@" || rc=$?
    [ "$rc" -ne 2 ] || it_fail "reconcile could not read its inputs"
    [ "$(jq .missing_count "$IT_DIR/reconcile.json")" -eq 0 ] ||
        it_fail "jobs without an outcome: $(jq -c '.missing[:5]' "$IT_DIR/reconcile.json")"
    [ "$(jq .duplicate_count "$IT_DIR/reconcile.json")" -le "$max" ] ||
        it_fail "$(jq .duplicate_count "$IT_DIR/reconcile.json") jobs have duplicate outcomes, more than $max"
    [ "$(jq .unexpected_count "$IT_DIR/reconcile.json")" -eq 0 ] ||
        it_fail "outcomes for ids nobody published: $(jq -c '.unexpected[:5]' "$IT_DIR/reconcile.json")"
    [ "$rc" -eq 0 ] || it_fail "reconcile failed"
}

# it_publish_raw ID FILE [CONTENT_TYPE]: publishes FILE's bytes as they are (poison messages),
# persistent, with message_id ID, through the management API (amqp-publish cannot set a
# message_id); records {"job_id":ID,"status":...} in $IT_DIR/raw.report like kone-producer does.
it_publish_raw() {
    local id=$1 file=$2 ctype=${3:-application/msgpack} req=$IT_DIR/publish-raw.json out status=confirmed
    {
        jq -cnj --arg id "$id" --arg rk "$KD_AMQP_ROUTING_KEY" --arg ct "$ctype" \
            '{properties: {delivery_mode: 2, message_id: $id, content_type: $ct},
              routing_key: $rk, payload_encoding: "base64", payload: "PAYLOAD"}' |
            sed 's/"PAYLOAD"}$/"/'
        base64 -w0 "$file"
        printf '"}'
    } >"$req"
    out=$(curl -sS -u guest:guest -H 'content-type: application/json' --data-binary "@$req" \
        "$KD_RABBIT_MGMT_URL/api/exchanges/%2F/$(jq -rn --arg e "$KD_AMQP_EXCHANGE" '$e|@uri')/publish") ||
        it_fail "publishing $id through the management API failed"
    jq -e '.routed == true' <<<"$out" >/dev/null || status=refused
    jq -cn --arg id "$id" --arg st "$status" --arg out "$out" \
        '{job_id: $id, status: $st} + (if $st == "refused" then {error: $out} else {} end)' >>"$IT_DIR/raw.report"
    rm -f "$req"
}

# it_queue_depth QUEUE: messages ready + unacked in QUEUE; empty output (and status 1) when
# rabbitmqctl fails or does not list the queue.
# IT_RABBITMQCTL (an array, default (rabbitmqctl)) names the broker to ask: a test on another
# broker (it_fault_cluster's cluster) sets it, so it_recovery and the waits read that one.
it_queue_depth() {
    local ctl=("${IT_RABBITMQCTL[@]:-rabbitmqctl}")
    { "${ctl[@]}" -q list_queues name messages 2>/dev/null || true; } |
        awk -v q="$1" '$1==q && $2 ~ /^[0-9]+$/ {n=$2; f=1} END {if (f) print n; exit !f}'
}

# it_expect_queue_empty [QUEUE]: the work queue (default $KD_AMQP_QUEUE) ends with no message:
# every job was acked (allowing 15 s for the broker's counts to catch up).
it_expect_queue_empty() { it_wait_depth "${1:-$KD_AMQP_QUEUE}" 0 15; }

# it_drop_queues [MGMT_URL]: deletes this test's queues (work, retry tiers, dead letters) and
# exchanges once it passed, so the shared broker does not pile them up.
it_drop_queues() {
    local api=${1:-$KD_RABBIT_MGMT_URL}/api name
    curl -sf -u guest:guest "$api/queues/%2F?columns=name" |
        jq -r --arg p "$KD_AMQP_QUEUE" '.[].name | select(. == $p or startswith($p + "."))' |
        while read -r name; do
            curl -sf -u guest:guest -X DELETE "$api/queues/%2F/$(jq -rn --arg n "$name" '$n|@uri')" || true
        done
    curl -sf -u guest:guest "$api/exchanges/%2F?columns=name" |
        jq -r --arg p "$KD_AMQP_EXCHANGE" '.[].name | select(. == $p or startswith($p + "."))' |
        while read -r name; do
            curl -sf -u guest:guest -X DELETE "$api/exchanges/%2F/$(jq -rn --arg n "$name" '$n|@uri')" || true
        done
}

# it_wait_depth QUEUE N TIMEOUT_S: waits until QUEUE holds N messages (rabbitmqctl's counts of
# a quorum queue lag by a few seconds: poll).
it_wait_depth() {
    local depth="" t0=$SECONDS
    while :; do
        depth=$(it_queue_depth "$1" || true)
        [ "$depth" = "$2" ] && return 0
        [ $((SECONDS - t0)) -ge "$3" ] && it_fail "$1 holds ${depth:-an unknown number of} messages after ${3}s, expected $2"
        sleep 0.5
    done
}

# it_stack_bin: the build folder of the kone-sim the shared stack runs now, so a dev-up run by
# a test (to bring a broker back) leaves that simulator alone; KD_BIN_DIR when none runs.
it_stack_bin() {
    local stamp=$KD_STATE_DIR/pids/kone-sim.binary
    if [ -s "$stamp" ]; then dirname "$(cut -d' ' -f1 "$stamp")"; else echo "$KD_BIN_DIR"; fi
}

# it_at_exit COMMAND: runs COMMAND (a string for eval) when the test exits, pass or fail, before
# its processes are stopped: for putting back what a test took away from the shared stack.
it_at_exit() { IT_AT_EXIT+=("$1"); }

# it_dev_up: scripts/dev-up, to start what a test stopped (idempotent for the rest).
it_dev_up() {
    "$KD_SRC_DIR/scripts/dev-up" --bin "$(it_stack_bin)" >"$IT_DIR/dev-up.log" 2>&1 ||
        it_fail "scripts/dev-up failed: $(tail -n 5 "$IT_DIR/dev-up.log")"
}

# it_kafka_stop / it_kafka_start: the shared stack's Kafka broker, stopped as dev-down stops it
# (SIGTERM: a controlled shutdown) and started again by dev-up with its topics.
it_kafka_stop() {
    (
        # shellcheck source=../../scripts/lib.sh
        source "$KD_SRC_DIR/scripts/lib.sh"
        kd_running kafka "$KD_STATE_DIR/kafka/server.properties" || exit 0
        kd_stop kafka "$KD_STATE_DIR/kafka/server.properties" 60
    ) >&2
    ! (exec 3<>"/dev/tcp/${KD_KAFKA_BROKERS%%:*}/${KD_KAFKA_BROKERS##*:}") 2>/dev/null || it_fail "Kafka still listens on $KD_KAFKA_BROKERS after stopping it"
}
it_kafka_start() { it_dev_up; }

# it_stack_restore: starts whatever of the shared stack is down (for it_at_exit: never fails).
it_stack_restore() {
    "$KD_SRC_DIR/scripts/dev-up" --bin "$(it_stack_bin)" >>"$IT_DIR/dev-up.log" 2>&1 ||
        it_log "scripts/dev-up failed while restoring the stack: $(tail -n 3 "$IT_DIR/dev-up.log")"
}

# it_rabbit_restart [app|node] [DOWN_S]: restarts the shared stack's RabbitMQ: `app` stops and
# starts the rabbit application in its Erlang node (every connection dropped, queues recovered
# from disk); `node` stops the whole node and starts it again with dev-up. Waits until healthy.
it_rabbit_restart() {
    local how=${1:-app} down=${2:-3}
    if [ "$how" = node ]; then
        # shellcheck source=../../scripts/lib.sh
        (source "$KD_SRC_DIR/scripts/lib.sh" && kd_rabbitmqctl stop "$KD_STATE_DIR/pids/rabbitmq-beam.pid") \
            >"$IT_DIR/rabbit-stop.log" 2>&1 || it_fail "rabbitmqctl stop failed: $(tail -n 3 "$IT_DIR/rabbit-stop.log")"
        sleep "$down"
        it_dev_up
    else
        rabbitmqctl stop_app >"$IT_DIR/rabbit-stop.log" 2>&1 || it_fail "rabbitmqctl stop_app failed"
        sleep "$down"
        rabbitmqctl start_app >>"$IT_DIR/rabbit-stop.log" 2>&1 || it_fail "rabbitmqctl start_app failed"
    fi
    it_rabbit_wait_healthy
}

# it_rabbit_user_add USER PASSWORD: a RabbitMQ user of the test's own with every permission on
# vhost /, deleted when the test ends. Through the management API: it works whatever state
# rabbitmqctl's Erlang cookie is in, and the password travels in a request body only.
it_rabbit_user_add() {
    it_at_exit "it_rabbit_user_delete '$1' || true"
    it_rabbit_mgmt PUT "/users/$1" "$(jq -cn --arg p "$2" '{password: $p, tags: ""}')" ||
        it_fail "creating RabbitMQ user $1 failed"
    it_rabbit_mgmt PUT "/permissions/%2F/$1" '{"configure":".*","write":".*","read":".*"}' ||
        it_fail "setting the permissions of RabbitMQ user $1 failed"
}
# it_rabbit_user_delete USER: deletes the user (its open connections stay, as RabbitMQ does).
it_rabbit_user_delete() { it_rabbit_mgmt DELETE "/users/$1"; }
# it_rabbit_mgmt METHOD PATH [JSON]: a request to the stack's management API as guest.
it_rabbit_mgmt() {
    curl -sf -o /dev/null -u guest:guest -H 'content-type: application/json' -X "$1" \
        "$KD_RABBIT_MGMT_URL/api$2" ${3:+--data-binary "$3"}
}

# it_rabbit_wait_healthy: the shared RabbitMQ takes AMQP connections and its API answers.
it_rabbit_wait_healthy() {
    local i
    for i in $(seq 120); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$KD_AMQP_PORT") 2>/dev/null &&
            curl -fsS -o /dev/null --max-time 5 -u guest:guest "$KD_RABBIT_MGMT_URL/api/health/checks/alarms"; then
            return 0
        fi
        sleep 0.5
    done
    it_fail "RabbitMQ not healthy 60 s after its restart"
}

# ---- kone-sim's call log: how many elevator calls each job placed -------------------------
# kone-sim records every lift-call-api-v2 request it receives (GET /sim/calls, docs/kone-sim.md
# "The call log"). A job's media_id is copied to the call's payload.media_id, so a test that sets
# media_id to the job id can count the calls per job and prove "one job, at most one call":
#   it_job 7 "{\"media_id\": \"$IT_PREFIX-7\", ...}"           # media_id = job_id
#   it_jobs_good 100 calls '{media_id: ($p + ($i | tostring))}'    # likewise ($p, $i: it_jobs)
#   mark=$(it_sim_calls_mark)                       # before publishing (the stack's kone-sim)
#   ... publish, wait for the results ...
#   it_sim_calls_per_job "$IT_PREFIX-" "" "$mark" >"$IT_DIR/calls.txt"
#   awk '$2 > 1 {print; bad=1} END {exit bad}' "$IT_DIR/calls.txt" || it_fail "a job called twice"
# With a private kone-sim (it_start_sim) the log starts empty and PORT defaults to IT_SIM_PORT.
# The control token, when the simulator has one, comes from KD_SIM_CONTROL_TOKEN_FILE or
# KD_SIM_CONTROL_TOKEN.

# it_sim_url [PORT]: the base URL of kone-sim on PORT, else of the test's private one
# (IT_SIM_PORT), else of the stack's (from KD_KONE_TOKEN_URL).
it_sim_url() {
    local port=${1:-${IT_SIM_PORT:-}} u=${KD_KONE_TOKEN_URL:-https://127.0.0.1:8443/api/v2/oauth2/token}
    if [ -n "$port" ]; then echo "https://127.0.0.1:$port"; else echo "${u%%/api/*}"; fi
}

# it_sim_control METHOD PATH [PORT] [OUT]: a request to kone-sim's /sim/ endpoint; the answer
# goes to OUT (default stdout). Fails the test unless it answers 200.
it_sim_control() {
    local method=$1 path=$2 port=${3:-} out=${4:-/dev/stdout} tok=${KD_SIM_CONTROL_TOKEN:-} code
    if [ -n "${KD_SIM_CONTROL_TOKEN_FILE:-}" ]; then tok=$(<"$KD_SIM_CONTROL_TOKEN_FILE"); fi
    # the token reaches curl as a config line on its standard input, never on its command line
    code=$(if [ -n "$tok" ]; then printf 'header = "Authorization: Bearer %s"\n' "$tok"; fi |
        curl -sS -K - --cacert "${KD_KONE_CA_FILE:-$KD_STATE_DIR/tls/ca.pem}" \
            -X "$method" -o "$out" -w '%{http_code}' "$(it_sim_url "$port")$path") ||
        it_fail "kone-sim control endpoint $(it_sim_url "$port") unreachable"
    [ "$code" = 200 ] || it_fail "$method $path on kone-sim answered $code"
}

# it_sim_calls_mark [PORT]: the newest sequence number of kone-sim's call log; pass it as SINCE
# to read only the calls placed after this point.
it_sim_calls_mark() {
    local f
    f=$(mktemp "$IT_DIR/sim-calls.XXXXXX")
    it_sim_control GET "/sim/calls?limit=1&since=999999999999999999" "${1:-}" "$f"
    jq -r .last_seq "$f"
    rm -f "$f"
}

# it_sim_calls_reset [PORT]: empties kone-sim's call log (POST /sim/calls/reset). Only for a
# private kone-sim: on the stack's, other tests may be counting; use it_sim_calls_mark there.
it_sim_calls_reset() { it_sim_control POST /sim/calls/reset "${1:-}" /dev/null; }

# it_sim_calls [PORT] [SINCE] [QUERY]: kone-sim's call log as JSON lines, one entry per line in
# sequence order, every entry with seq > SINCE (default 0), paging through GET /sim/calls.
# QUERY adds filters of the endpoint (e.g. "call_type=action&media_id_prefix=$IT_PREFIX-").
# When entries after SINCE were evicted (the log keeps the newest 200 000), it says so on
# stderr and returns 3 after printing the rest.
it_sim_calls() {
    local port=${1:-} since=${2:-0} query=${3:-} f missed=0 m more=true
    f=$(mktemp "$IT_DIR/sim-calls.XXXXXX")
    while [ "$more" = true ]; do
        it_sim_control GET "/sim/calls?since=$since&limit=10000${query:+&$query}" "$port" "$f"
        jq -c '.calls[]' "$f"
        # the answer's counters come before its calls: read them from its head, not with jq
        read -r since more m < <({ head -c 1024 "$f"; echo; } |
            sed -n 's/.*"next_since":\([0-9]*\),"more":\([a-z]*\),.*"missed":\([0-9]*\),.*/\1 \2 \3/p')
        [ -n "$m" ] || it_fail "kone-sim's /sim/calls answer has no counters: $(head -c 200 "$f")"
        if [ "$m" -gt "$missed" ]; then missed=$m; fi
    done
    rm -f "$f"
    if [ "$missed" -gt 0 ]; then
        it_log "kone-sim's call log lost $missed entries after seq ${2:-0} (its ring is full): counts are incomplete"
        return 3
    fi
}

# it_sim_calls_per_job PREFIX [PORT] [SINCE]: "job_id count" lines (sorted by job id) for the
# call entries (callType action) whose payload.media_id starts with PREFIX: the elevator calls
# each job sent to kone-sim, whatever kone-sim answered (IT_SIM_CALLS_SELECT, a jq boolean on
# an entry, narrows that, e.g. '.status == 201'). Jobs that sent no call are not listed. Fails
# the test when the log lost entries after SINCE.
it_sim_calls_per_job() {
    local prefix=$1 port=${2:-} since=${3:-0} rc=0 f
    f=$(mktemp "$IT_DIR/sim-calls.XXXXXX")
    it_sim_calls "$port" "$since" "call_type=action&media_id_prefix=$(jq -rn --arg p "$prefix" '$p|@uri')" >"$f" || rc=$?
    [ "$rc" -eq 0 ] || it_fail "kone-sim's call log is incomplete: cannot count calls per job"
    jq -r --arg p "$prefix" "select(.call_type == \"action\" and (.payload.media_id | type == \"string\")
        and (.payload.media_id | startswith(\$p)) and (${IT_SIM_CALLS_SELECT:-true})) | .payload.media_id" "$f" |
        sort | uniq -c | awk '{print $2, $1}'
    rm -f "$f"
}

# ---- The stack's PostgreSQL (the call ledger) in fault tests --------------------------------
# Through the stack's own kd-pg ($KD_STATE_DIR/bin, docs/dev-stack.md): the rest of the stack
# is left as it is. A test that stops it registers `it_at_exit it_pg_restore` first, so later
# tests find the ledger up however this one ends.

# it_pg_stop [MODE]: stops the stack's PostgreSQL (kd-pg stop MODE, default fast: every client
# disconnected) and checks that its port no longer answers.
it_pg_stop() {
    "$KD_STATE_DIR/bin/kd-pg" stop "${1:-fast}" >>"$IT_DIR/pg.log" 2>&1 ||
        it_fail "kd-pg stop failed: $(tail -n 3 "$IT_DIR/pg.log")"
    ! (exec 3<>"/dev/tcp/127.0.0.1/$KD_PG_PORT") 2>/dev/null ||
        it_fail "PostgreSQL still listens on port $KD_PG_PORT after stopping it"
}

# it_pg_start: starts the stack's PostgreSQL again; returns once it accepts connections.
it_pg_start() {
    "$KD_STATE_DIR/bin/kd-pg" start >>"$IT_DIR/pg.log" 2>&1 ||
        it_fail "kd-pg start failed: $(tail -n 3 "$IT_DIR/pg.log")"
}

# it_pg_restore: for it_at_exit: PostgreSQL running again, whatever happened (never fails).
it_pg_restore() {
    "$KD_STATE_DIR/bin/kd-pg" start >>"$IT_DIR/pg.log" 2>&1 ||
        it_log "could not start PostgreSQL again: $(tail -n 3 "$IT_DIR/pg.log")"
}

# it_readyz NAME [OUT]: the HTTP status of the worker's /readyz (its body in OUT, default
# /dev/null); 000 when it does not answer.
it_readyz() {
    curl -s --max-time 3 -o "${2:-/dev/null}" -w '%{http_code}' \
        "http://127.0.0.1:$(it_metrics_port "$1")/readyz" || true
}

# ---- Calls placed against jobs: the fault tests' count (one job, at most one elevator call) --

# it_confirmed_ids [ID_REGEX]: the job ids kone-producer confirmed (every $IT_DIR/*.report),
# sorted and unique, those matching ID_REGEX (extended) only when given.
it_confirmed_ids() {
    cat "$IT_DIR"/*.report | jq -r 'select(.status == "confirmed") | .job_id' |
        { grep -E -e "${1:-.}" || true; } | sort -u
}

# it_expect_one_call_per_job [ID_REGEX] [SINCE]: kone-sim (the private one, else the stack's) logged
# exactly one elevator call (callType action, payload.media_id = job id) for every confirmed job
# whose id matches ID_REGEX (default: every confirmed job), and none for an id of this test
# matching it that nobody confirmed: calls placed = jobs. Counts only entries after SINCE (a
# mark of it_sim_calls_mark). Whatever kone-sim answered counts: a call refused is still a call.
# Leaves "job_id count" lines in $IT_DIR/calls-per-job.txt; fails naming the jobs off by one.
it_expect_one_call_per_job() {
    local re=${1:-.} since=${2:-0} jobs calls f=$IT_DIR/calls-per-job.txt bad none extra
    it_sim_calls_per_job "$IT_PREFIX-" "" "$since" | awk -v re="$re" '$1 ~ re' >"$f"
    it_confirmed_ids "$re" >"$IT_DIR/confirmed-ids.txt"
    jobs=$(wc -l <"$IT_DIR/confirmed-ids.txt")
    calls=$(awk '{s += $2} END {print s + 0}' "$f")
    bad=$(awk '$2 > 1' "$f")
    [ -z "$bad" ] || it_fail "calls placed > jobs: $(wc -l <<<"$bad") jobs placed more than one elevator call in kone-sim's log (job calls): $(head -n 5 <<<"$bad" | tr '\n' ';')"
    none=$(cut -d' ' -f1 "$f" | comm -13 - "$IT_DIR/confirmed-ids.txt")
    [ -z "$none" ] || it_fail "$(wc -l <<<"$none") confirmed jobs placed no call in kone-sim's log: $(head -n 5 <<<"$none" | tr '\n' ' ')"
    extra=$(cut -d' ' -f1 "$f" | comm -23 - "$IT_DIR/confirmed-ids.txt")
    [ -z "$extra" ] || it_fail "kone-sim logged calls for ids nobody confirmed: $(head -n 5 <<<"$extra" | tr '\n' ' ')"
    [ "$calls" -eq "$jobs" ] || it_fail "kone-sim logged $calls calls for $jobs jobs"
    it_log "kone-sim's call log: $calls elevator calls for $jobs jobs, exactly one each (calls placed = jobs)"
}

# ---- Rotations under load (it_rotation, it_rotation_certs) ----------------------------------

# it_job_stream RATE: one kone-producer publishes RATE destination calls a second (ids and
# media ids $IT_PREFIX-s-N, so calls can be counted per job) until it_job_stream_end; its
# report in $IT_DIR/stream.report. The stream also ends when the test exits.
it_job_stream() {
    IT_STREAM_STOP=$IT_DIR/stop-stream
    it_at_exit "touch $IT_STREAM_STOP"
    # shellcheck disable=SC2016 # expanded by the inner bash
    local loop='
i=0 floors=(2 3 4 5 6 7 8 10 11)
while [[ ! -e $1 ]]; do
    i=$((i + 1)) now=${EPOCHREALTIME/./} now=${now:0:13}
    printf "{\"job_id\":\"%s-%d\",\"media_id\":\"%s-%d\",\"building_id\":\"building:9990000951\",\"group_id\":\"1\",\"op\":\"call\",\"v\":1,\"area\":1000,\"action\":2,\"destination\":%d,\"created_at\":%d,\"deadline\":%d}\n" \
        "$2" "$i" "$2" "$i" "$((floors[i % 9] * 1000))" "$now" "$((now + 300000))"
    sleep "$3"
done | "$4" >"$5"'
    bash -c "$loop" stream "$IT_STREAM_STOP" "$IT_PREFIX-s" "$(awk -v r="$1" 'BEGIN { printf "%.3f", 1 / r }')" \
        "$KD_BIN_DIR/kone-producer" "$IT_DIR/stream.report" 2>"$IT_DIR/producer.log" &
    IT_STREAM_PID=$!
    IT_PIDS+=("$IT_STREAM_PID")
}

# it_job_stream_end MIN: ends the stream and waits for its producer; fails unless it confirmed
# at least MIN jobs. Sets IT_STREAM_JOBS to the number confirmed.
it_job_stream_end() {
    touch "$IT_STREAM_STOP"
    wait "$IT_STREAM_PID" || it_fail "the job stream (kone-producer) failed: $(tail -n 2 "$IT_DIR/producer.log")"
    IT_STREAM_JOBS=$(jq -r 'select(.status == "confirmed") | .job_id' "$IT_DIR/stream.report" | sort -u | wc -l)
    [ "$IT_STREAM_JOBS" -ge "$1" ] || it_fail "only $IT_STREAM_JOBS jobs confirmed: the stream did not run"
}

# it_job_stream_settle MIN WORKER...: it_job_stream_end MIN, then every confirmed job has exactly
# one outcome in Kafka (it_check_reconciled 0, against the test's kone-sim) and placed exactly
# one call (it_expect_one_call_per_job); the WORKERs stop (exit 0) and the queue is left empty.
it_job_stream_settle() {
    local w
    it_job_stream_end "$1"
    shift
    it_wait_ids "$IT_STREAM_JOBS" 120
    it_check_reconciled 0 --kone-sim "$(it_sim_url)"
    it_log "outcomes: $(jq -c .final_outcomes "$IT_DIR/reconcile.json")"
    it_expect_one_call_per_job . 0
    for w in "$@"; do it_stop_worker "$w"; done
    it_expect_queue_empty "$KD_AMQP_QUEUE"
}

# it_flowing WHAT: results keep arriving: 20 more of this test's jobs have one (it_follow_results)
# within 60 s after WHAT.
it_flowing() {
    local n
    n=$(it_followed)
    it_wait_followed $((n + 20)) 60
    it_log "jobs flow after: $1 ($((n + 20))+ results so far)"
}

# it_log_count NAME TEXT TIMEOUT_S: waits up to TIMEOUT_S until worker NAME's log holds TEXT
# (fixed string), then prints how many lines hold it (0 after the timeout; never fails).
it_log_count() {
    local n=0
    for _ in $(seq $(($3 * 10))); do
        n=$(grep -cF -- "$2" "$IT_DIR/$1.log" || true)
        [ "$n" -ge 1 ] && break
        sleep 0.1
    done
    echo "$n"
}

# it_wait_ready NAME: waits up to 60 s until the worker's /readyz answers 200; fails at once
# when it exits.
it_wait_ready() {
    local i
    for i in $(seq 300); do
        [ "$(it_readyz "$1")" = 200 ] && return 0
        kill -0 "$(it_worker_pid "$1")" 2>/dev/null || it_fail "$1 exited: $(tail -n 3 "$IT_DIR/$1.log")"
        sleep 0.2
    done
    it_fail "$1 not ready after 60 s: $(it_readyz "$1" /dev/stdout)"
}

# it_worker_results NAME: how many of this test's results in the follower's file name worker NAME.
it_worker_results() {
    { grep -F "\"$IT_PREFIX-" "$IT_DIR/follow.jsonl" || true; } | grep -c "\"worker\":\"$1\"" || true
}

# it_wait_worker_results NAME N: waits up to 60 s until worker NAME has N results (it_worker_results).
it_wait_worker_results() {
    local i
    for i in $(seq 300); do
        [ "$(it_worker_results "$1")" -ge "$2" ] && return 0
        sleep 0.2
    done
    it_fail "$1 produced $(it_worker_results "$1") results in 60 s, not $2"
}

# it_tls_ca PREFIX CN: a new CA of the test's own, PREFIX.pem and PREFIX-key.pem, valid 2 days.
it_tls_ca() {
    (umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1-key.pem" -out "$1.pem" -days 2 \
        -subj "/CN=$2" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign" 2>/dev/null) || it_fail "could not make the CA $1.pem"
}

# it_tls_cert PREFIX CA_PREFIX server|client CN: PREFIX.pem and PREFIX-key.pem signed by the CA
# of it_tls_ca: a server certificate for localhost and 127.0.0.1 (what the dev stack's brokers
# and kone-sim present) or a client certificate. A random serial tells each apart.
it_tls_cert() {
    local ext
    if [ "$3" = server ]; then
        ext="extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1"
    else
        ext="extendedKeyUsage=clientAuth"
    fi
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n%s\n' "$ext" >"$1.ext"
    (umask 077 && openssl req -new -newkey rsa:2048 -nodes -keyout "$1-key.pem" -out "$1.csr" -subj "/CN=$4" 2>/dev/null &&
        openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2-key.pem" -set_serial "0x$(openssl rand -hex 8)" \
            -days 2 -extfile "$1.ext" -out "$1.pem" 2>/dev/null) || it_fail "could not issue $1.pem"
    rm -f "$1.csr" "$1.ext"
}
