#!/usr/bin/env bash
# it_health: /healthz and /readyz of kone-worker as kone-sim, Kafka and RabbitMQ go down and
# come back, and /healthz of kone-sim itself.
# One worker on a private kone-sim (it_start_sim), so the test can stop the simulator and
# start it again on the same port. Every request is made with curl --max-time 3: "never
# blocks" means each one gets an answer while a broker is down (a request that times out
# fails the test). Each "reaches" is a poll with a 60 s deadline, not a timing assertion.
#   1. at start: /healthz 200, /readyz reaches 200 {"ready":true,"reasons":[]};
#      kone-sim's own /healthz 200 {"status":"ok"};
#   2. kone-sim stopped: /readyz reaches 503 with a reason naming KONE, /healthz stays 200;
#      kone-sim started again on the same port: /readyz back to 200;
#   3. Kafka stopped (SIGTERM, as dev-down does): /readyz reaches 503 naming Kafka, /healthz
#      200; Kafka started again (dev-up): /readyz back to 200;
#   4. RabbitMQ's application stopped (rabbitmqctl stop_app): /readyz reaches 503 naming
#      RabbitMQ, /healthz 200; started again: /readyz back to 200;
#   5. jobs published after every fault healed all succeed, reconciled: the worker recovered
#      for real, not only its flags.
# Besides the polls, a background prober asks /healthz and /readyz every 0.3 s for the whole
# test, outages and restarts included: no request may go unanswered within 3 s, and /healthz
# must never answer anything but 200.
# A trap starts whatever the test stopped again, so later tests find the stack whole.
source "$(dirname "$0")/lib.sh"

N=${IT_HEALTH_JOBS:-100}
DEADLINE_S=60
CA=$KD_STATE_DIR/tls/ca.pem
it_at_exit 'rabbitmqctl start_app >/dev/null 2>&1' # first: dev-up sees a node, not a stopped app
it_at_exit it_stack_restore

# get PORT PATH: one request to the worker's endpoint; prints "STATUS BODY" (the body on one
# line). A request without an answer within 3 s fails the test: the endpoint blocked.
get() {
    local out
    out=$(curl -sS --max-time 3 -w '\n%{http_code}' "http://127.0.0.1:$1$2" 2>&1) ||
        it_fail "GET $2 got no answer within 3 s: ${out//$'\n'/ }"
    printf '%s %s\n' "${out##*$'\n'}" "$(head -n 1 <<<"$out")"
}

# expect_health: /healthz answers 200 {"status":"ok"} right now.
expect_health() {
    local r
    r=$(get "$PORT" /healthz)
    if [ "${r%% *}" != 200 ] || ! jq -e '.status == "ok"' <<<"${r#* }" >/dev/null; then
        it_fail "/healthz is not 200 ok ($1): $r"
    fi
}

# wait_ready STATUS JQ_FILTER WHAT: polls /readyz (and /healthz each time, which must stay
# 200) until it answers STATUS with a body satisfying JQ_FILTER, for at most DEADLINE_S.
wait_ready() {
    local want=$1 filter=$2 what=$3 r="" t0=$SECONDS
    while :; do
        expect_health "$what"
        r=$(get "$PORT" /readyz)
        if [ "${r%% *}" = "$want" ] && jq -e "$filter" <<<"${r#* }" >/dev/null 2>&1; then
            it_log "$what: /readyz $r after $((SECONDS - t0))s; /healthz 200"
            return 0
        fi
        [ $((SECONDS - t0)) -lt "$DEADLINE_S" ] || it_fail "$what: /readyz not $want ($filter) within ${DEADLINE_S}s; last: $r"
        sleep 0.5
    done
}

READY='.ready == true and .reasons == []'
# not_ready REGEX: the 503 body lists a reason matching REGEX (any case).
not_ready() { echo ".ready == false and (.reasons | any(test(\"$1\"; \"i\")))"; }

# sim_restart: kone-sim again on the port the worker knows, with the same flags.
sim_restart() {
    local i
    "$KD_BIN_DIR/kone-sim" --sim-port="$IT_SIM_PORT" --sim-cert="$KD_STATE_DIR/tls/server.pem" \
        --sim-key="$KD_STATE_DIR/tls/server-key.pem" --sim-buildings="$KD_SRC_DIR/sim/buildings.json" \
        --sim-clients="$KD_SRC_DIR/sim/clients.json" --sim-speed="${KD_SIM_SPEED:-50}" \
        >>"$IT_DIR/sim.log" 2>&1 &
    IT_SIM_PID=$!
    IT_PIDS+=("$IT_SIM_PID")
    for i in $(seq 100); do
        sim_healthz >/dev/null 2>&1 && return 0
        kill -0 "$IT_SIM_PID" 2>/dev/null || it_fail "kone-sim did not start again: $(tail -n 3 "$IT_DIR/sim.log")"
        [ "$i" -lt 100 ] || it_fail "kone-sim did not answer within 30 s of its restart"
        sleep 0.3
    done
}

# sim_healthz: kone-sim's /healthz; prints the body, fails unless 200 {"status":"ok"}.
sim_healthz() {
    local out
    out=$(curl -sS --max-time 3 --cacert "$CA" -w '\n%{http_code}' "https://127.0.0.1:$IT_SIM_PORT/healthz") || return 1
    [ "${out##*$'\n'}" = 200 ] && jq -e '.status == "ok"' <<<"${out%$'\n'*}" >/dev/null || return 1
    echo "${out%$'\n'*}"
}

t0=$SECONDS
it_start_sim
body=$(sim_healthz) || it_fail "kone-sim /healthz is not 200 {\"status\":\"ok\"}"
it_log "kone-sim /healthz: $body"
INFLIGHT=8 it_fault_worker w1
PORT=$(it_metrics_port w1)

# The background prober: one line per request, "PATH STATUS" (000: no answer within 3 s).
(
    while :; do
        for p in /healthz /readyz; do
            echo "$p $(curl -s --max-time 3 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT$p")"
        done
        sleep 0.3
    done
) >"$IT_DIR/probe.txt" 2>/dev/null &
PROBER=$!
IT_PIDS+=("$PROBER")

# 1. start
wait_ready 200 "$READY" "at start"

# 2. kone-sim down and back
it_log "stopping kone-sim"
it_stop_sim
wait_ready 503 "$(not_ready kone)" "kone-sim down"
sim_restart
wait_ready 200 "$READY" "kone-sim back"

# 3. Kafka down and back
it_log "stopping Kafka"
it_kafka_stop
wait_ready 503 "$(not_ready kafka)" "Kafka down"
it_kafka_start
wait_ready 200 "$READY" "Kafka back"
it_log "worker log: $(grep -o '"message":"kafka: a broker[^"]*"' "$IT_DIR/w1.log" | tail -n 1)"

# 4. RabbitMQ down and back
it_log "stopping RabbitMQ's application"
rabbitmqctl stop_app >"$IT_DIR/rabbit-stop.log" 2>&1 || it_fail "rabbitmqctl stop_app failed"
wait_ready 503 "$(not_ready 'rabbitmq|amqp')" "RabbitMQ down"
rabbitmqctl start_app >>"$IT_DIR/rabbit-stop.log" 2>&1 || it_fail "rabbitmqctl start_app failed"
it_rabbit_wait_healthy
wait_ready 200 "$READY" "RabbitMQ back"

# The prober saw every outage: each request answered, /healthz always 200.
kill "$PROBER"
wait "$PROBER" 2>/dev/null || true
probes=$(wc -l <"$IT_DIR/probe.txt")
unanswered=$(grep -c ' 000$' "$IT_DIR/probe.txt" || true)
bad_health=$(grep -c '^/healthz [^2]' "$IT_DIR/probe.txt" || true)
it_log "prober: $probes requests, $unanswered unanswered, /healthz not 200 $bad_health times; /readyz answers: $(grep '^/readyz' "$IT_DIR/probe.txt" | sort | uniq -c | awk '{printf "%s x%s ", $3, $1}')"
[ "$unanswered" -eq 0 ] || it_fail "$unanswered requests got no answer within 3 s"
[ "$bad_health" -eq 0 ] || it_fail "/healthz answered other than 200 $bad_health times: $(grep -m3 '^/healthz [^2]' "$IT_DIR/probe.txt" | tr '\n' ' ')"
[ "$(grep -c '^/readyz 503$' "$IT_DIR/probe.txt")" -gt 0 ] || it_fail "the prober never saw /readyz 503"

# 5. the worker really recovered: every job published now succeeds
it_jobs_good "$N" after >"$IT_DIR/jobs.jsonl"
it_publish "$IT_DIR/jobs.jsonl" || it_fail "producer refused jobs"
[ "$(grep -c '"confirmed"' "$IT_DIR/jobs.jsonl.report")" -eq "$N" ] || it_fail "not all $N jobs confirmed"
it_wait_ids "$N" 120
it_check_reconciled 0
[ "$(jq '.final_outcomes.succeeded // 0' "$IT_DIR/reconcile.json")" -eq "$N" ] ||
    it_fail "not every job succeeded after the faults: $(jq -c .final_outcomes "$IT_DIR/reconcile.json")"
expect_health "after the jobs"
it_stop_worker w1
it_expect_queue_empty
it_stop_sim
it_drop_queues
it_log "PASS in $((SECONDS - t0))s"
