#!/usr/bin/env bash
# it_producer_cli: kone-producer as a user runs it (docs/producer.md): its setup errors (exit 2
# and the reason), the report of lines that are not jobs, and what happens when RabbitMQ closes
# its connection in the middle of a run: it reconnects and publishes the unconfirmed jobs again;
# when the reconnect is refused, every job still to come is refused with the reason (exit 1).
# The run reads a FIFO the test holds open, so each step happens at a known point of the run.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/jobs.sh"

PR=$KD_BIN_DIR/kone-producer

# pr_fails NAME CODE REGEX ARGS...: kone-producer exits CODE and says REGEX on stderr (its
# stdout goes to $PR_OUT when set).
pr_fails() {
    local name=$1 want=$2 re=$3 rc=0
    shift 3
    timeout 30 "$PR" "$@" </dev/null >"${PR_OUT:-$IT_DIR/$name.out}" 2>"$IT_DIR/$name.err" || rc=$?
    [ "$rc" -eq "$want" ] || it_fail "$name: exit $rc, expected $want: $(tail -n 2 "$IT_DIR/$name.err")"
    grep -Eq "$re" "$IT_DIR/$name.err" || it_fail "$name: stderr does not say /$re/: $(cat "$IT_DIR/$name.err")"
}

# 1. setup errors
pr_fails two_files 2 'at most one input file, got 2' a b
pr_fails no_file 2 "$IT_DIR/none.jsonl" "$IT_DIR/none.jsonl"
pr_fails bad_ttl 2 'job.default_ttl_ms' --job-default-ttl-ms=0
pr_fails bad_timeout 2 'producer.confirm_timeout_ms' --producer-confirm-timeout-ms=never
pr_fails bad_level 2 'log.level: must be debug, info, warn or error' --log-level=loud
pr_fails unknown 2 'unknown option --no-such-option' --no-such-option
pr_fails no_broker 2 'amqp' --amqp-port="$(it_free_port)" /dev/null
pr_fails directory 2 "cannot read $IT_DIR: Is a directory" "$IT_DIR"
pr_fails replay_value 2 'replay-dead: --filter-reason needs a value' replay-dead --filter-reason
pr_fails replay_arg 2 "replay-dead: unexpected argument 'extra'" replay-dead extra
pr_fails replay_level 2 'log.level: must be' replay-dead --log-level=loud
pr_fails replay_timeout 2 'producer.confirm_timeout_ms' replay-dead --producer-confirm-timeout-ms=0
pr_fails replay_unknown 2 'unknown option' replay-dead --nope
pr_fails replay_broker 2 'cannot connect' replay-dead --amqp-port="$(it_free_port)"
"$PR" --help >"$IT_DIR/help.out" || it_fail "--help exited $?"
grep -q 'Usage: kone-producer \[options\]' "$IT_DIR/help.out" || it_fail "--help: no usage"
"$PR" replay-dead --help >"$IT_DIR/rhelp.out" || it_fail "replay-dead --help exited $?"
grep -q 'Usage: kone-producer replay-dead' "$IT_DIR/rhelp.out" || it_fail "replay-dead --help: no usage"

# 2. lines that are not jobs are refused one by one, blank lines are skipped, a good job
# is published: exit 1 (some refused), one report line per non-blank input line
{
    printf '{"job_id": \n'
    printf '   \t\n'
    printf '{"job_id": "%s-nofields"}\n' "$IT_PREFIX"
    head -c 3000000 /dev/zero | tr '\0' 'x' # longer than the limit before its end is read
    printf '\n'
    jobs_good 1 | jq -c '.job_id = "'"$IT_PREFIX"'-good"' | sed 's/$/\r/' # a CRLF line
} >"$IT_DIR/mixed.jsonl"
rc=0
"$PR" "$IT_DIR/mixed.jsonl" >"$IT_DIR/mixed.out" 2>"$IT_DIR/mixed.err" || rc=$?
[ "$rc" -eq 1 ] || it_fail "mixed input: exit $rc, expected 1: $(tail -n 2 "$IT_DIR/mixed.err")"
[ "$(wc -l <"$IT_DIR/mixed.out")" -eq 4 ] || it_fail "mixed input: $(wc -l <"$IT_DIR/mixed.out") report lines, expected 4"
line() { sed -n "${1}p" "$IT_DIR/mixed.out"; }
line 1 | jq -e '.line == 1 and (.error | test("invalid JSON"))' >/dev/null || it_fail "line 1: $(line 1)"
line 2 | jq -e --arg id "$IT_PREFIX-nofields" '.line == 3 and .job_id == $id and (.error | length > 0)' \
    >/dev/null || it_fail "line 3: $(line 2)"
line 3 | jq -e '.line == 4 and (.error | test("longer than"))' >/dev/null || it_fail "line 4: $(line 3)"
line 4 | jq -e '.line == 5 and .status == "confirmed"' >/dev/null || it_fail "line 5: $(line 4)"

# 2b. a report that cannot be written (stdout on a full disk): exit 2 and the reason
PR_OUT=/dev/full pr_fails full_stdout 2 'cannot write the report to stdout' "$IT_DIR/mixed.jsonl"

# 2c. a job the exchange cannot route (its binding deleted after the producer connected): the
# broker returns it, and it is reported refused as unroutable
mkfifo "$IT_DIR/in-unrouted"
"$PR" "$IT_DIR/in-unrouted" >"$IT_DIR/unrouted.out" 2>"$IT_DIR/unrouted.err" &
pid=$!
IT_PIDS+=("$pid")
exec 3>"$IT_DIR/in-unrouted" # the producer opens its input before it connects
for _ in $(seq 300); do
    grep -qs ': connected (' "$IT_DIR/unrouted.err" && break
    sleep 0.1
done
grep -qs ': connected (' "$IT_DIR/unrouted.err" || it_fail "the producer did not connect: $(cat "$IT_DIR/unrouted.err")"
uri() { jq -rn --arg n "$1" '$n|@uri'; }
curl -sf -o /dev/null -u guest:guest -X DELETE "$KD_RABBIT_MGMT_URL/api/bindings/%2F/e/$(uri "$KD_AMQP_EXCHANGE")/q/$(uri "$KD_AMQP_QUEUE")/$(uri "$KD_AMQP_ROUTING_KEY")" ||
    it_fail "deleting the binding failed"
jobs_good 1 | jq -c '.job_id = "'"$IT_PREFIX"'-unrouted"' >&3
exec 3>&-
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 1 ] || it_fail "an unroutable job: exit $rc, expected 1: $(tail -n 2 "$IT_DIR/unrouted.err")"
jq -e '.status == "refused" and (.error | test("^unroutable: "))' "$IT_DIR/unrouted.out" >/dev/null ||
    it_fail "an unroutable job: $(cat "$IT_DIR/unrouted.out")"

# 3. the broker closes the connection mid-run, twice: once the producer reconnects, the
# second time its user is gone and the reconnect is refused
USER_NAME="$IT_PREFIX-producer"
printf '%s\n' "pw-$RANDOM$RANDOM" >"$IT_DIR/amqp-password"
it_rabbit_user_add "$USER_NAME" "$(<"$IT_DIR/amqp-password")"
mkfifo "$IT_DIR/in"
KD_AMQP_USER=$USER_NAME KD_AMQP_PASSWORD_FILE=$IT_DIR/amqp-password \
    "$PR" "$IT_DIR/in" >"$IT_DIR/run.out" 2>"$IT_DIR/run.err" &
pid=$!
IT_PIDS+=("$pid")
exec 3>"$IT_DIR/in"
job() { jobs_good 1 | jq -c '.job_id = "'"$IT_PREFIX"'-'"$1"'"' >&3; }
# wait_for WHAT CMD...: up to 30 s until CMD succeeds.
wait_for() {
    local what=$1 i
    shift
    for i in $(seq 300); do
        "$@" && return 0
        sleep 0.1
    done
    it_fail "no $what after 30 s: $(tail -n 3 "$IT_DIR/run.err")"
}
reported() { [ "$(wc -l <"$IT_DIR/run.out")" -ge "$1" ]; }
# close_connection: the management API closes every connection of the test's user
close_connection() {
    local names
    names=$(curl -sf -u guest:guest "$KD_RABBIT_MGMT_URL/api/connections" |
        jq -r --arg u "$USER_NAME" '.[] | select(.user == $u) | .name | @uri')
    [ -n "$names" ] || return 1
    for n in $names; do
        curl -sf -o /dev/null -u guest:guest -X DELETE "$KD_RABBIT_MGMT_URL/api/connections/$n"
    done
}
job a
job b
wait_for "report of jobs a and b" reported 2
wait_for "connection of $USER_NAME" close_connection
wait_for "reconnect" grep -q 'reconnecting' "$IT_DIR/run.err"
job c
wait_for "report of job c" reported 3
# A drop while a job is unconfirmed: RabbitMQ is frozen (SIGSTOP) once job e reached its socket,
# so no confirm can come; the producer's end of the connection is cut (ss -K); the broker is
# thawed once the producer reconnects, and the producer publishes e again.
BEAM=$(<"$KD_STATE_DIR/pids/rabbitmq-beam.pid")
kill -STOP "$BEAM"
it_at_exit "kill -CONT $BEAM"
producer_port() { # the local port of the producer's connection to RabbitMQ
    ss -tnpH state established "( dport = :$KD_AMQP_PORT )" | grep "pid=$pid," | awk '{print $3}' | sed 's/.*://'
}
PORT=$(producer_port)
[ -n "$PORT" ] || it_fail "no connection of the producer (pid $pid) to port $KD_AMQP_PORT"
job e
# the broker's end of that connection holds job e's frames, unread
broker_holds_e() { ss -tnH state established "( sport = :$KD_AMQP_PORT and dport = :$PORT )" | awk '$1 > 0 {f=1} END {exit !f}'; }
wait_for "job e in the frozen broker's socket" broker_holds_e
ss -K "( sport = :$PORT )" >/dev/null 2>&1 || true
wait_for "a second reconnect" eval '[ "$(grep -c reconnecting "$IT_DIR/run.err")" -ge 2 ]'
kill -CONT "$BEAM"
wait_for "job e published again" grep -q 'published 1 unconfirmed jobs again' "$IT_DIR/run.err"
wait_for "report of job e" reported 4
# RabbitMQ closes a deleted user's connections itself (3.13); older brokers leave them open
it_rabbit_user_delete "$USER_NAME"
close_connection || true
wait_for "give-up" grep -q 'refusing the remaining jobs' "$IT_DIR/run.err"
job d
exec 3>&-
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 1 ] || it_fail "exit $rc after the refused reconnect, expected 1"
for id in a b c e; do
    jq -se --arg id "$IT_PREFIX-$id" 'any(.[]; .job_id == $id and .status == "confirmed")' \
        "$IT_DIR/run.out" >/dev/null || it_fail "job $id not confirmed: $(cat "$IT_DIR/run.out")"
done
jq -se --arg id "$IT_PREFIX-d" 'any(.[]; .job_id == $id and (.error | test("^not published: ")))' \
    "$IT_DIR/run.out" >/dev/null || it_fail "job d not refused with the reason: $(cat "$IT_DIR/run.out")"
it_log "ok"
