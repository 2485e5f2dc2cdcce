#!/usr/bin/env bash
# it_perf_drill: one alert drill end to end (docs/drills.md). `scripts/drill kone-errors` on the
# fixture's stack starts a real Prometheus with the time-compressed rules, two workers and a
# stream of jobs on kone.calls, makes kone-sim answer 500 to a share of the calls, and must see
# KoneApiErrorRatioHigh firing in Prometheus, print it with its RUNBOOK.md section, heal the
# fault and see the alert resolve. Afterwards kone.calls (shared with nobody during the run:
# the other tests use it.<prefix> queues) must be empty and without consumers, since the tests
# that follow share the broker.
source "$(dirname "$0")/lib.sh"

SCENARIO=kone-errors
ALERT=KoneApiErrorRatioHigh
out=$IT_DIR/drill.log # it_cleanup prints its end when the test fails

rc=0
"$KD_SRC_DIR/scripts/drill" --bin "$KD_BIN_DIR" "$SCENARIO" >"$out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || it_fail "scripts/drill $SCENARIO exited $rc: $(grep -E 'error:|did not|FAILED' "$out" | head -n 3)"

# line N of the first match of an extended regex in the drill's output; fails when none.
line_of() {
    local n
    n=$(grep -n -m1 -E -e "$1" "$out" | cut -d: -f1)
    [ -n "$n" ] || it_fail "the drill's output lacks: $1"
    echo "$n"
}
fired=$(line_of "^drill: \[ *[0-9]+s\] ALERT FIRING: $ALERT, ")
line_of "^  alert +$ALERT: firing " >/dev/null
line_of "^  labels +alertname=$ALERT .*severity=critical" >/dev/null
line_of "^  runbook_url +https://.*/RUNBOOK.md#koneapierrorratiohigh$" >/dev/null
# The RUNBOOK section itself, from its heading to its last part.
section=$(line_of "^  \| ### $ALERT$")
line_of '^  \| \*\*Meaning\.\*\* More than 5% of KONE API requests' >/dev/null
line_of '^  \| \*\*Escalate\.\*\*' >/dev/null
healed=$(line_of "^drill: \[ *[0-9]+s\] HEALED: ")
resolved=$(line_of "^drill: \[ *[0-9]+s\] ALERT RESOLVED: $ALERT, ")
if ! [ "$fired" -lt "$section" ] || ! [ "$section" -lt "$healed" ] || ! [ "$healed" -lt "$resolved" ]; then
    it_fail "expected firing, runbook, healed, resolved in that order; got lines $fired $section $healed $resolved"
fi
it_log "$(grep -m1 '^drill: .*PASS' "$out" | sed 's/^drill: \[ *[0-9]*s\] //')"

# The shared work queue is left as the next tests expect it: no message, no consumer.
state=$(rabbitmqctl -q list_queues name messages consumers 2>/dev/null | awk '$1 == "kone.calls" {print $2, $3}')
[ "${state:-0 0}" = "0 0" ] || it_fail "kone.calls after the drill: messages and consumers $state, expected 0 0"
it_log "PASS"
