#!/usr/bin/env bash
# it_worker_cli: kone-worker's start-up errors as an operator meets them: each bad setting
# makes it exit 2 at once, before it takes a job, with the setting named, whether the
# configuration's load refuses it or the start finds it cannot work (an unknown option,
# log.level, a metrics port out of range or taken, worker.inflight, an unreadable AMQP or
# Kafka CA file, a timings file that cannot be opened, an unknown Kafka compression, settings
# that contradict each other (worker.max_deliveries, retry.cap_ms), a ledger URL that is not
# PostgreSQL, the KONE client's settings); a ledger that cannot be reached is no error: the
# worker starts without it (its password masked);
# without worker.id its log lines carry <host>-<pid>. No job is taken; each run takes
# milliseconds.
source "$(dirname "$0")/lib.sh"

# wk_fails NAME REGEX ARGS...: kone-worker exits 2 and says REGEX (stderr and log lines).
wk_fails() {
    local name=$1 re=$2 rc=0
    shift 2
    timeout 30 env KD_METRICS_PORT=0 "$KD_BIN_DIR/kone-worker" "$@" </dev/null \
        >"$IT_DIR/$name.log" 2>&1 || rc=$?
    [ "$rc" -eq 2 ] || it_fail "$name: exit $rc, expected 2: $(tail -n 2 "$IT_DIR/$name.log")"
    grep -Eq "$re" "$IT_DIR/$name.log" || it_fail "$name: does not say /$re/: $(cat "$IT_DIR/$name.log")"
}

wk_fails unknown '^kone-worker: unknown option --no-such-option' --no-such-option
wk_fails bad_level 'log.level: must be debug, info, warn or error' --log-level=loud
wk_fails bad_port '^kone-worker: metrics.port' --metrics-port=70000
wk_fails bad_inflight '^kone-worker: worker.inflight' --worker-id=w-cli --worker-inflight=0
wk_fails bad_ca 'cannot start: .*amqp' --worker-id=w-cli --amqp-ca-file="$IT_DIR/none.pem"
wk_fails bad_timings "cannot start: worker.timings_file: cannot open $IT_DIR/no/dir/t.csv" \
    --worker-id=w-cli --worker-timings-file="$IT_DIR/no/dir/t.csv"
wk_fails bad_compression '^kone-worker: kafka.compression' --worker-id=w-cli --kafka-compression=zip
wk_fails kafka_ca "cannot start: kafka.ca_file: cannot read $IT_DIR/none.pem" \
    --worker-id=w-cli --kafka-ca-file="$IT_DIR/none.pem"
# settings each valid alone that cannot work together
wk_fails max_deliveries 'worker.max_deliveries \(5\) must be below amqp.delivery_limit \(5\)' \
    --worker-id=w-cli --worker-max-deliveries=5 --amqp-delivery-limit=5
wk_fails retry_cap 'retry.cap_ms: must be at least retry.base_ms \(1000\), got 10' \
    --worker-id=w-cli --retry-base-ms=1000 --retry-cap-ms=10
# a ledger that is not PostgreSQL: the worker does not run without it (ledger.url=none says so
# explicitly)
wk_fails ledger_scheme "ledger.url: expected postgresql://" --worker-id=w-cli \
    --ledger-url=mysql://kd@127.0.0.1/kd
# one that cannot be reached is not a setting's error: the worker starts without it, takes no
# job until it answers (it_fault_ledger_down: it connects once PostgreSQL is back), never shows
# the URL's password, and stops on SIGTERM with exit 0
timeout 60 env KD_METRICS_PORT=0 "$KD_BIN_DIR/kone-worker" --worker-id=w-cli \
    --ledger-url='postgresql://kd:s3cret-pw@127.0.0.1:1/kd?connect_timeout=2' </dev/null \
    >"$IT_DIR/ledger_down.log" 2>&1 &
down_pid=$!
for _ in $(seq 100); do
    grep -q 'starting without it' "$IT_DIR/ledger_down.log" && break
    kill -0 "$down_pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$down_pid" 2>/dev/null || it_fail "ledger_down: the worker exited: $(tail -n 2 "$IT_DIR/ledger_down.log")"
grep -q 'ledger postgresql://kd:\*\*\*@127.0.0.1:1/kd?connect_timeout=2&sslmode=verify-full: cannot connect: .*; starting without it: no job is taken until it answers' \
    "$IT_DIR/ledger_down.log" || it_fail "ledger_down: $(grep -m2 ledger "$IT_DIR/ledger_down.log")"
kill -TERM "$down_pid"
rc=0
wait "$down_pid" || rc=$?
[ "$rc" -eq 0 ] || it_fail "ledger_down: exit $rc after SIGTERM, expected 0: $(tail -n 2 "$IT_DIR/ledger_down.log")"
! grep -q s3cret-pw "$IT_DIR/ledger_down.log" || it_fail "ledger_down: the password is in the log"
# a ledger that never connected holds nothing of this worker's: the drain does not wait for it
! grep -q 'not recorded at shutdown' "$IT_DIR/ledger_down.log" ||
    it_fail "ledger_down: the drain waited for a ledger that never connected"
# the KONE client's settings (checked after the ledger opened: the stack's PostgreSQL)
wk_fails kone_building "cannot start: kone.buildings: 'x!y' is not a building id" \
    --worker-id=w-cli --kone-buildings='1,x!y'
wk_fails kone_breaker 'cannot start: kone.breaker_probe_cap_ms: must be at least kone.breaker_probe_base_ms \(5000\)' \
    --worker-id=w-cli --kone-breaker-probe-base-ms=5000 --kone-breaker-probe-cap-ms=1000
wk_fails kone_policy "^kone-worker: kone.group_mode_policy" \
    --worker-id=w-cli --kone-group-mode-policy=maybe
wk_fails kone_scope 'cannot start: kone.scope is set, but kone.buildings needs more than one token' \
    --worker-id=w-cli --kone-buildings=1,2,3 --kone-buildings-per-token=1 --kone-scope=foo
wk_fails kone_conns 'cannot start: kone.connections: 2, but kone.buildings needs 3 tokens' \
    --worker-id=w-cli --kone-buildings=1,2,3 --kone-buildings-per-token=1 --kone-connections=2
wk_fails kone_client 'cannot start: kone.client_id: required' --worker-id=w-cli --kone-client-id=
wk_fails kone_ca "cannot start: kone.ca_file: cannot read $IT_DIR/none.pem" \
    --worker-id=w-cli --kone-ca-file="$IT_DIR/none.pem"
wk_fails kone_modes "cannot start: kone.lift_modes_refused: expected code:NAME pairs" \
    --worker-id=w-cli --kone-lift-modes-refused=bogus

# a metrics port another process holds: a worker nobody can scrape looks missing
python3 -c 'import socket,sys,time
s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(1); print(s.getsockname()[1], flush=True)
time.sleep(30)' >"$IT_DIR/port" &
holder=$!
it_at_exit "kill $holder 2>/dev/null"
for _ in $(seq 50); do [ -s "$IT_DIR/port" ] && break; sleep 0.1; done
port=$(head -n1 "$IT_DIR/port")
[ -n "$port" ] || it_fail "no port held"
rc=0
timeout 30 "$KD_BIN_DIR/kone-worker" --metrics-listen=127.0.0.1 --metrics-port="$port" </dev/null \
    >"$IT_DIR/taken.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || it_fail "taken port: exit $rc, expected 2: $(tail -n 2 "$IT_DIR/taken.log")"
grep -q '"cannot start: ' "$IT_DIR/taken.log" || it_fail "taken port: $(cat "$IT_DIR/taken.log")"
kill "$holder" 2>/dev/null || true

# no worker.id: the log names the worker <host>-<pid>
rc=0
timeout 30 env KD_METRICS_PORT=0 KD_WORKER_ID= "$KD_BIN_DIR/kone-worker" --worker-id= \
    --worker-timings-file="$IT_DIR/no/dir/t.csv" </dev/null >"$IT_DIR/noid.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || it_fail "no worker.id: exit $rc, expected 2"
grep -Eq "\"kd.worker\":\"$(hostname | cut -c1-63)-[0-9]+\"" "$IT_DIR/noid.log" ||
    it_fail "no worker.id: the log does not name the worker <host>-<pid>: $(cat "$IT_DIR/noid.log")"
it_log "PASS"
