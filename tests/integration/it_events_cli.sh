#!/usr/bin/env bash
# it_events_cli: kone-events as a user runs it (docs/events.md): each of its options, each
# of its exit codes (0 stopped as asked, 2 configuration error, 1 stdout broken) and each of
# the ways a run ends (events.max, idle timeout on a missing topic, a closed pipe, SIGTERM).
# Its messages come from kcat, another Kafka client, into a topic of the test's own.
source "$(dirname "$0")/lib.sh"

EV=$KD_BIN_DIR/kone-events
TOPIC="it.$IT_PREFIX"
# kcat reads the SASL_SSL listener's settings from $KCAT_CONFIG (the env file of dev-up); the
# listener's port is scripts/lib.sh's KAFKA_SASL_PORT
KCAT_PORT=$((9095 + ${KD_PORT_OFFSET:-0}))

# ev_fails NAME CODE REGEX ARGS...: kone-events exits CODE at once and says REGEX on stderr.
ev_fails() {
    local name=$1 want=$2 re=$3 rc=0
    shift 3
    timeout 30 "$EV" "$@" >"$IT_DIR/$name.out" 2>"$IT_DIR/$name.err" || rc=$?
    [ "$rc" -eq "$want" ] || it_fail "$name: exit $rc, expected $want: $(tail -n 2 "$IT_DIR/$name.err")"
    grep -Eq "$re" "$IT_DIR/$name.err" || it_fail "$name: stderr does not say /$re/: $(cat "$IT_DIR/$name.err")"
}

# 1. configuration errors: exit 2 with the reason, before any broker is contacted
ev_fails two_topics 2 'at most one topic argument, got 2' a b
ev_fails no_brokers 2 'kafka.brokers: must not be empty' --kafka-brokers=
ev_fails no_topic 2 'events.topic: must not be empty' --events-topic=
ev_fails bad_level 2 'log.level: must be debug, info, warn or error' --log-level=loud
ev_fails bad_max 2 'events.max' --events-max=-1
ev_fails bad_idle 2 'events.idle_exit_ms' --events-idle-exit-ms=soon
ev_fails bad_bool 2 'events.from_beginning' --events-from-beginning=maybe
ev_fails unknown 2 'unknown option --no-such-option' --no-such-option=1
ev_fails bad_protocol 2 'kafka.security_protocol' --kafka-security-protocol=carrier-pigeon
# a client certificate with another certificate's key: refused before Kafka is contacted
ev_fails key_mismatch 2 'does not match the certificate' --kafka-security-protocol=ssl \
    --kafka-cert-file="$KD_STATE_DIR/tls/client.pem" --kafka-key-file="$KD_STATE_DIR/tls/server-key.pem"
"$EV" --help >"$IT_DIR/help.out" || it_fail "--help exited $?"
grep -q -- '--events-idle-exit-ms' "$IT_DIR/help.out" || it_fail "--help does not list --events-idle-exit-ms"

# 2. messages of another producer, read back from the beginning: three named ones, then
# more than a pipe holds (64 KiB), so that a closed pipe below is always seen by a write
{ printf 'one\ntwo\nthree\n'; seq -f 'filler %060g' 1500; } | kcat -b "127.0.0.1:$KCAT_PORT" -P -t "$TOPIC" 2>"$IT_DIR/kcat.err" || it_fail "kcat: $(cat "$IT_DIR/kcat.err")"
b64() { printf '%s' "$1" | base64; }
# events.max stops the run after exactly that many lines; a named group is accepted
timeout 60 "$EV" "$TOPIC" --events-max=2 --events-group="$IT_PREFIX-g" \
    >"$IT_DIR/max.out" 2>"$IT_DIR/max.err" || it_fail "--events-max=2 exited $?"
[ "$(wc -l <"$IT_DIR/max.out")" -eq 2 ] || it_fail "--events-max=2 printed $(wc -l <"$IT_DIR/max.out") lines"
# not msgpack: printed as base64 with where it is, in the order it was produced
jq -e --arg v "$(b64 one)" '._undecodable == $v and ._partition == 0 and ._offset == 0' \
    <(head -n 1 "$IT_DIR/max.out") >/dev/null || it_fail "first line: $(head -n 1 "$IT_DIR/max.out")"
# the named group committed its offsets: the next run of that group starts at the third
timeout 60 "$EV" "$TOPIC" --events-max=1 --events-group="$IT_PREFIX-g" \
    >"$IT_DIR/resume.out" 2>"$IT_DIR/resume.err" || it_fail "resuming the group exited $?"
jq -e --arg v "$(b64 three)" '._undecodable == $v and ._offset == 2' "$IT_DIR/resume.out" \
    >/dev/null || it_fail "the named group did not resume at offset 2: $(cat "$IT_DIR/resume.out")"

# 3. a closed pipe (kone-events | head -n 1) ends the run with exit 0
rc=0
set +o pipefail
timeout 60 "$EV" "$TOPIC" 2>"$IT_DIR/pipe.err" | head -n 1 >"$IT_DIR/pipe.out"
rc=${PIPESTATUS[0]}
set -o pipefail
[ "$rc" -eq 0 ] || it_fail "kone-events | head: exit $rc, expected 0"
[ "$(wc -l <"$IT_DIR/pipe.out")" -eq 1 ] || it_fail "kone-events | head printed nothing"

# 4. stdout that cannot be written (a full disk): exit 1, and the reason
rc=0
timeout 60 "$EV" "$TOPIC" >/dev/full 2>"$IT_DIR/full.err" || rc=$?
[ "$rc" -eq 1 ] || it_fail "stdout on /dev/full: exit $rc, expected 1"
grep -q 'cannot write to stdout' "$IT_DIR/full.err" || it_fail "no 'cannot write to stdout': $(cat "$IT_DIR/full.err")"

# 5. a topic that does not exist: the broker says so, and the idle timeout ends the run (0)
rc=0
timeout 60 "$EV" "$TOPIC-missing" --events-idle-exit-ms=300 >"$IT_DIR/missing.out" \
    2>"$IT_DIR/missing.err" || rc=$?
[ "$rc" -eq 0 ] || it_fail "missing topic: exit $rc, expected 0: $(tail -n 2 "$IT_DIR/missing.err")"
grep -q 'UNKNOWN_TOPIC\|nknown topic' "$IT_DIR/missing.err" ||
    it_fail "missing topic not reported: $(cat "$IT_DIR/missing.err")"
[ ! -s "$IT_DIR/missing.out" ] || it_fail "missing topic printed: $(cat "$IT_DIR/missing.out")"

# 6. "results" names kafka.topic_results; SIGTERM ends a run that waits for events with 0
"$EV" results --kafka-topic-results="$TOPIC" --events-from-beginning=false \
    --log-level=debug >"$IT_DIR/term.out" 2>"$IT_DIR/term.err" &
pid=$!
for _ in $(seq 300); do
    grep -qs 'assigned' "$IT_DIR/term.err" && break
    sleep 0.1
done
grep -q "reading $TOPIC" "$IT_DIR/term.err" || it_fail "'results' did not read $TOPIC: $(head -n 3 "$IT_DIR/term.err")"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 0 ] || it_fail "SIGTERM: exit $rc, expected 0"
[ ! -s "$IT_DIR/term.out" ] || it_fail "from the end, yet it printed: $(cat "$IT_DIR/term.out")"

# 7. brokers that cannot be reached: each failure is a warning, the run goes on until stopped
"$EV" events --kafka-brokers="127.0.0.1:$(it_free_port)" >"$IT_DIR/down.out" 2>"$IT_DIR/down.err" &
pid=$!
for _ in $(seq 300); do
    grep -qs 'ALL_BROKERS_DOWN' "$IT_DIR/down.err" && break
    sleep 0.1
done
grep -q '"warn".*ALL_BROKERS_DOWN: 1/1 brokers are down' "$IT_DIR/down.err" ||
    it_fail "no warning of brokers down: $(head -n 3 "$IT_DIR/down.err")"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 0 ] || it_fail "SIGTERM with brokers down: exit $rc, expected 0"

# 8. a topic pattern that is not a regular expression: Kafka refuses the subscription (exit 1)
ev_fails bad_pattern 1 'cannot subscribe to \^\(' '^('
it_log "ok"
