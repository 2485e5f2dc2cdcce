#!/usr/bin/env bash
# ops.schemas: the JSON Schemas of docs/schemas/ are valid 2020-12 schemas and say what the
# code does, both ways (each schema accepts real messages and refuses broken ones):
#   - job.schema.json accepts every job the integration tests publish (tests/integration/
#     jobs.sh) and the examples of docs/job-format.md, and refuses the format's own counter-
#     examples (a float, a bad job_id, a missing area, a lower-case priority...);
#   - log-line.schema.json accepts the lines real programs write (kone-producer and
#     kone-events, each failing to reach a closed port; kone-events is stopped after 3 s) and refuses the old format and an
#     undocumented field;
#   - result/call-event schemas accept the examples of docs/events.md and refuse a result
#     missing a key, with a fraction or an unknown outcome.
# The results and call events of real runs, and every log line of every integration test,
# are checked by tests/integration/lib.sh as each integration test ends.
set -euo pipefail
SRC=${KD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BIN=${KD_BIN_DIR:-$SRC/build}
CHECK="python3 $SRC/tests/schemas/check_jsonl.py"
S=$SRC/docs/schemas
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# refuse SCHEMA LINE WHY: the (closed) schema must refuse this line.
refuse() {
    printf '%s\n' "$2" >"$T/bad.jsonl"
    if $CHECK --closed "$1" "$T/bad.jsonl" >/dev/null 2>&1; then fail "$(basename "$1") accepted $3: $2"; fi
}

# --- jobs ---------------------------------------------------------------------------------
IT_PREFIX=ops-schemas
it_job() {  # as tests/integration/lib.sh's
    local now
    now=$(date +%s%3N)
    jq -cn --arg id "$IT_PREFIX-$1" --argjson f "$2" --argjson now "$now" \
        '{job_id: $id, building_id: "building:9990000951", group_id: "1", op: "call",
          created_at: $now, deadline: ($now + 300000)} + $f'
}
# shellcheck source=tests/integration/jobs.sh disable=SC1091 # sourced at run time from $SRC
source "$SRC/tests/integration/jobs.sh"
{ jobs_good 20; jobs_tracked 5; jobs_refused; } >"$T/jobs.jsonl"
# the JSON-form examples of docs/job-format.md
awk '/^```json$/ { on = 1; next } /^```/ { on = 0 } on && /"job_id"/' "$SRC/docs/job-format.md" >>"$T/jobs.jsonl"
[ "$(wc -l <"$T/jobs.jsonl")" -ge 40 ] || fail "too few jobs generated ($(wc -l <"$T/jobs.jsonl"))"
$CHECK --closed "$S/job.schema.json" "$T/jobs.jsonl" || fail "job.schema.json refused real jobs"

J='"v":1,"job_id":"j-1","building_id":"building:9990000951"'
refuse "$S/job.schema.json" "{$J,\"op\":\"call\",\"area\":3000.5,\"action\":2}" "a float area"
refuse "$S/job.schema.json" "{$J,\"op\":\"call\",\"action\":2}" "a call without area"
refuse "$S/job.schema.json" "{$J,\"op\":\"fly\"}" "an unknown op"
refuse "$S/job.schema.json" "{$J,\"op\":\"cancel\",\"session_id\":0}" "session_id 0"
refuse "$S/job.schema.json" "{$J,\"op\":\"hold_open\",\"lift_deck\":1}" "hold_open without served_area"
refuse "$S/job.schema.json" "{$J,\"op\":\"call\",\"area\":1,\"action\":2,\"priority\":\"low\"}" "priority low"
refuse "$S/job.schema.json" "{$J,\"op\":\"call\",\"area\":1,\"action\":2,\"delay\":31}" "delay 31"
refuse "$S/job.schema.json" '{"v":1,"job_id":"a b","op":"cancel","building_id":"building:1","session_id":1}' "a space in job_id"
refuse "$S/job.schema.json" '{"v":1,"job_id":"j","op":"cancel","building_id":"9990000951","session_id":1}' "a building without building:"
refuse "$S/job.schema.json" '{"v":2,"job_id":"j","op":"cancel","building_id":"building:1","session_id":1}' "v 2"

# --- log lines ----------------------------------------------------------------------------
printf '%s\n' "$(head -n1 "$T/jobs.jsonl")" >"$T/one.jsonl"
env -u KD_AMQP_HOST -u KD_AMQP_PORT "$BIN/kone-producer" --amqp-host=127.0.0.1 --amqp-port=1 \
    --log-level=debug "$T/one.jsonl" >/dev/null 2>"$T/producer.log" || true
timeout 3 env -u KD_KAFKA_BROKERS "$BIN/kone-events" --kafka-brokers=127.0.0.1:1 --log-level=debug \
    --events-max=1 >/dev/null 2>"$T/events.log" || true
for f in producer events; do
    grep -q '"log.level"' "$T/$f.log" || fail "kone-$f wrote no log line: $(head -c 300 "$T/$f.log")"
done
$CHECK --logs "$S/log-line.schema.json" "$T/producer.log" "$T/events.log" || fail "real log lines refused"
L='"@timestamp":"2026-01-01T00:00:00.000Z","log.level":"info","message":"m","ecs.version":"8.11.0","service.name":"kone-worker","service.version":"0.1.0","event.dataset":"kone-worker.log"'
printf '{%s}\n{%s,"trace.id":"4bf92f3577b34da6a3ce929d0e0e4736","span.id":"00f067aa0ba902b7","kd.job_id":"j","kd.building_id":"building:1","kd.worker":"w1"}\n' "$L" "$L" >"$T/good.log"
$CHECK --logs "$S/log-line.schema.json" "$T/good.log" >/dev/null || fail "log-line.schema.json refused the documented fields"
refuse "$S/log-line.schema.json" '{"time":"2026-01-01T00:00:00.000Z","level":"info","prog":"kone-worker","msg":"m"}' "the old format"
refuse "$S/log-line.schema.json" "{$L,\"job_id\":\"j\"}" "a field outside ECS and kd."
refuse "$S/log-line.schema.json" "{${L/info/notice}}" "an unknown level"
refuse "$S/log-line.schema.json" "{${L/.000Z/Z}}" "a timestamp without milliseconds"

# --- events -------------------------------------------------------------------------------
R='"v":1,"job_id":"j","op":"call","building_id":"building:1","group_id":"1","outcome":"succeeded","kone_status":201,"session_id":7,"error":null,"attempt":1,"requeues":0,"worker":"w1","created_at":1,"started_at":2,"finished_at":3,"kone_rtt_us":4,"trace_id":null,"redelivered":false,"failure":null,"modified_destination":null,"modified_reason":null'
printf '{%s,"validated_locally":false}\n' "$R" >"$T/result.jsonl"
$CHECK --events "$T/result.jsonl" >/dev/null || fail "result.schema.json refused a documented result"
refuse "$S/result.schema.json" "{$R}" "a result without validated_locally"
refuse "$S/result.schema.json" "{${R/201/201.5},\"validated_locally\":false}" "a fractional kone_status"
refuse "$S/result.schema.json" "{${R/succeeded/done},\"validated_locally\":false}" "an unknown outcome"
refuse "$S/call-event.schema.json" '{"v":1,"job_id":"j","state":"served"}' "a call event without its other keys"
# the examples of docs/events.md are results and call events as kone-events prints them
grep -E '^\{"v":1,' "$SRC/docs/events.md" >"$T/doc-events.jsonl" || true
[ "$(wc -l <"$T/doc-events.jsonl")" -ge 2 ] || fail "docs/events.md shows fewer than 2 example events"
$CHECK --events "$T/doc-events.jsonl" || fail "an example of docs/events.md breaks its schema"

# --- AsyncAPI (docs/asyncapi.yaml) -----------------------------------------------------------------------------
# validated against the AsyncAPI 3.0.0 JSON Schema of npm's @asyncapi/specs (bootstrap-tools)
SPEC="${KD_CACHE_DIR:-$HOME/.cache/kone-dispatch}/npm/node_modules/@asyncapi/specs/schemas/3.0.0-without-\$id.json"
[ -f "$SPEC" ] || fail "no AsyncAPI 3.0.0 schema at $SPEC (scripts/bootstrap-tools asyncapi installs it)"
python3 "$SRC/tests/schemas/check_asyncapi.py" "$SRC/docs/asyncapi.yaml" "$SPEC" || fail "docs/asyncapi.yaml"
# the control: a copy with a field the spec does not define must fail for that field alone
mkdir -p "$T/docs"
cp -r "$SRC/docs/schemas" "$SRC/docs/configuration.md" "$T/docs/"
sed 's/^    protocol: amqps$/    protocol: amqps\n    bogus: 1/' "$SRC/docs/asyncapi.yaml" >"$T/docs/asyncapi.yaml"
python3 "$SRC/tests/schemas/check_asyncapi.py" "$T/docs/asyncapi.yaml" "$SPEC" >"$T/control.out" 2>&1 || true
if ! grep -q '1 problems' "$T/control.out" || ! grep -q '/servers/rabbitmq' "$T/control.out"; then
    fail "the AsyncAPI schema did not refuse (only) a server with an unknown field: $(cat "$T/control.out")"
fi

[ "$fails" -eq 0 ] || { echo "ops.schemas: $fails problem(s)"; exit 1; }
echo "ops.schemas: ok"
