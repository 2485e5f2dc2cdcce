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
# shellcheck disable=SC1091
source "$KD_STATE_DIR/env"

IT_NAME=${IT_NAME:-$(basename "${BASH_SOURCE[1]:-it}" .sh)}
IT_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kd-$IT_NAME.XXXXXX")
IT_PREFIX="${IT_NAME//_/-}-$(date +%s)-$RANDOM"
export KD_AMQP_EXCHANGE="it.$IT_PREFIX"
export KD_AMQP_QUEUE="it.$IT_PREFIX"
export KD_AMQP_ROUTING_KEY="it.$IT_PREFIX"
IT_PIDS=()

it_log() { printf '[%s %s] %s\n' "$(date +%T)" "$IT_NAME" "$*" >&2; }
it_fail() {
    it_log "FAIL: $*"
    exit 1
}

it_cleanup() {
    local rc=$?
    for pid in "${IT_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${IT_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
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
