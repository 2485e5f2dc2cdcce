#!/usr/bin/env bash
# it_secrets: no secret is ever logged, exported as a metric or published as an event
# (issue 4, item 3).
#
# The test makes up its own credentials, distinctive and random: a RabbitMQ user with its own
# password, and a KONE client (a private clients.json) with its own secret, for a private
# kone-sim that issues 3-second tokens, closes every WebSocket after 4 s and writes each token
# it issues to a file (sim.token_log, test only). Then it runs the pipeline through as many
# paths as it can in a minute, every program at debug level:
#   - worker w1 takes both secrets from files (KD_AMQP_PASSWORD_FILE, KD_KONE_CLIENT_SECRET_FILE),
#     worker w2 from a flag (--amqp-password) and an environment variable (KD_KONE_CLIENT_SECRET);
#   - worker w3 has a wrong KONE secret (the real one plus a suffix: 401 at the token endpoint),
#     and a producer run has a wrong AMQP password (the real one plus a suffix: access refused),
#     so a leak on those error paths is caught too;
#   - the producer publishes with the password from a file, the environment and a flag;
#   - good calls, tracked calls (call-state events), every refusal of jobs.sh, KONE 500s on 30%
#     of calls (retries), the token endpoint down for 3 s, and a kone-sim restart (every token
#     unknown: 401 at the next upgrade) on top of the tokens expiring every 3 s;
#   - --help and --config-dump of every program, with the secrets set;
#   - the stack's Kafka SCRAM password (kafka.sasl_password): w1 and kone-events read it from
#     its file (KD_KAFKA_SASL_PASSWORD_FILE), w2 from a flag; a kone-events run with a wrong
#     one (the real one plus a suffix: authentication failed) covers that error path.
# Then it collects everything a person could see: every program's stderr and stdout, a scrape of
# each worker's /metrics, and the results, events and metrics topics (all of them, read with
# kone-events), and searches it all for the client secret, the AMQP password, the Kafka password and every token
# kone-sim issued (at least 3 distinct ones, or the tokens did not rotate and the test fails).
# A hit fails the test, naming the file and line with the secret masked.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/jobs.sh"

T0=$SECONDS
T0_MS=$(date +%s%3N)
SEC_DIR=$IT_DIR/secrets # the secrets themselves: never scanned, never tailed
SCAN=$IT_DIR/scan       # what is scanned besides $IT_DIR/*.log
mkdir -p "$SEC_DIR" "$SCAN"
chmod 700 "$SEC_DIR"

KONE_ID="kd-secrets-${IT_PREFIX##*-}"
KONE_SECRET="kdsecret$(openssl rand -hex 16)"
AMQP_USER="kd-secrets-${IT_PREFIX##*-}"
AMQP_PW="kdamqppw$(openssl rand -hex 16)"
printf '%s\n' "$KONE_SECRET" >"$SEC_DIR/kone-secret"
printf '%s\n' "$AMQP_PW" >"$SEC_DIR/amqp-password"
printf '%s\n' "$KONE_SECRET-wrong" >"$SEC_DIR/kone-secret-wrong"
KAFKA_PW=$(<"$KD_KAFKA_SASL_PASSWORD_FILE") # the stack's: Kafka users are the broker's
cp "$KD_KAFKA_SASL_PASSWORD_FILE" "$SEC_DIR/kafka-password"
printf '%s\n' "$KAFKA_PW-wrong" >"$SEC_DIR/kafka-password-wrong"
TOKEN_LOG=$SEC_DIR/tokens
jq -n --arg id "$KONE_ID" --arg s "$KONE_SECRET" \
    '[{client_id: $id, client_secret: $s, scopes: ["application/inventory",
       "callgiving/building:9990000951", "callgiving/building:9990000952"]}]' >"$SEC_DIR/clients.json"

# Every program of this test reaches RabbitMQ as AMQP_USER and KONE as KONE_ID; the stack's
# own credentials (.dev/env) are out of the way so each worker gets exactly one form.
unset KD_KONE_CLIENT_SECRET_FILE KD_KONE_CLIENT_SECRET KD_AMQP_PASSWORD KD_AMQP_PASSWORD_FILE
export KD_AMQP_USER=$AMQP_USER KD_KONE_CLIENT_ID=$KONE_ID KD_LOG_LEVEL=debug
export KD_RETRY_TIERS_MS=500,1000,2000

it_rabbit_wait_healthy # another test may be restarting the shared broker
it_rabbit_user_add "$AMQP_USER" "$AMQP_PW"

# ---- the private kone-sim ----------------------------------------------------------------
tls=$KD_STATE_DIR/tls
IT_SIM_PORT=$(it_free_port)
sim_start() {
    "$KD_BIN_DIR/kone-sim" --sim-port="$IT_SIM_PORT" --sim-cert="$tls/server.pem" \
        --sim-key="$tls/server-key.pem" --sim-buildings="$KD_SRC_DIR/sim/buildings.json" \
        --sim-clients="$SEC_DIR/clients.json" --sim-speed=50 --sim-token-ttl-s=3 \
        --sim-max-conn-s=4 --sim-token-log="$TOKEN_LOG" >>"$IT_DIR/sim.log" 2>&1 &
    IT_SIM_PID=$!
    IT_PIDS+=("$IT_SIM_PID")
    local i
    for i in $(seq 300); do
        curl -sf --cacert "$tls/ca.pem" -o /dev/null "https://127.0.0.1:$IT_SIM_PORT/sim/faults" && return 0
        kill -0 "$IT_SIM_PID" 2>/dev/null || it_fail "kone-sim exited at start"
        sleep 0.1
    done
    it_fail "kone-sim did not answer on port $IT_SIM_PORT within 30 s"
}
sim_start
IT_SIM_ENV=(KD_KONE_TOKEN_URL="https://127.0.0.1:$IT_SIM_PORT/api/v2/oauth2/token"
    KD_KONE_WS_URL="wss://127.0.0.1:$IT_SIM_PORT/stream-v2")
WORKER_ENV=(KD_KONE_TOKEN_MARGIN_S=1 KD_KONE_CALL_TIMEOUT_MS=3000 KD_RETRY_BASE_MS=300
    KD_RETRY_CAP_MS=2000 KD_METRICS_KAFKA_INTERVAL_MS=2000)

# ---- --help and --config-dump, with the secrets set in every form ------------------------
for p in kone-worker kone-producer kone-events kone-sim; do
    "$KD_BIN_DIR/$p" --help >"$SCAN/$p.help.out" 2>&1 || true
done
KD_KONE_CLIENT_SECRET_FILE=$SEC_DIR/kone-secret KD_AMQP_PASSWORD_FILE=$SEC_DIR/amqp-password \
    "$KD_BIN_DIR/kone-worker" --config-dump >"$SCAN/worker-file.dump.out" 2>&1 || true
KD_KONE_CLIENT_SECRET=$KONE_SECRET "$KD_BIN_DIR/kone-worker" --amqp-password="$AMQP_PW" \
    --config-dump >"$SCAN/worker-flag.dump.out" 2>&1 || true
env -u KD_KAFKA_SASL_PASSWORD_FILE "$KD_BIN_DIR/kone-worker" --kafka-sasl-password="$KAFKA_PW" \
    --config-dump >"$SCAN/worker-kafka-flag.dump.out" 2>&1 || true
"$KD_BIN_DIR/kone-events" --config-dump >"$SCAN/events.dump.out" 2>&1 || true
grep -q '^kafka.sasl_password=<set>$' "$SCAN/events.dump.out" ||
    it_fail "kone-events --config-dump does not show kafka.sasl_password as <set>"
KD_AMQP_PASSWORD=$AMQP_PW "$KD_BIN_DIR/kone-producer" --config-dump >"$SCAN/producer.dump.out" 2>&1 || true
"$KD_BIN_DIR/kone-sim" --sim-clients="$SEC_DIR/clients.json" --sim-token-log="$TOKEN_LOG" \
    --config-dump >"$SCAN/sim.dump.out" 2>&1 || true
grep -q '<set>' "$SCAN/worker-file.dump.out" || it_fail "kone-worker --config-dump shows no <set> secret"

# ---- workers -------------------------------------------------------------------------------
# w3: a wrong KONE secret, on a queue of its own (it must not take the others' jobs).
it_fault_worker w3 "${WORKER_ENV[@]}" KD_KONE_CLIENT_SECRET_FILE="$SEC_DIR/kone-secret-wrong" \
    KD_AMQP_PASSWORD_FILE="$SEC_DIR/amqp-password" KD_AMQP_QUEUE="$KD_AMQP_QUEUE.w3" \
    KD_AMQP_EXCHANGE="$KD_AMQP_EXCHANGE.w3" KD_AMQP_ROUTING_KEY="$KD_AMQP_ROUTING_KEY.w3"
it_fault_worker w1 "${WORKER_ENV[@]}" KD_KONE_CLIENT_SECRET_FILE="$SEC_DIR/kone-secret" \
    KD_AMQP_PASSWORD_FILE="$SEC_DIR/amqp-password"
env -u KD_KAFKA_SASL_PASSWORD_FILE KD_WORKER_INFLIGHT=16 "${IT_SIM_ENV[@]}" KD_METRICS_PORT=0 \
    KD_METRICS_LISTEN=127.0.0.1 "${WORKER_ENV[@]}" KD_KONE_CLIENT_SECRET="$KONE_SECRET" \
    "$KD_BIN_DIR/kone-worker" --worker-id=w2 --amqp-password="$AMQP_PW" \
    --kafka-sasl-password="$KAFKA_PW" >"$IT_DIR/w2.log" 2>&1 &
IT_PIDS+=($!)
# shellcheck disable=SC2034 # read by it_stop_worker through ${!var}
IT_PID_w2=$!
W1_PORT=$(it_metrics_port w1)
W2_PORT=$(it_metrics_port w2)

# publish FILE FORM: kone-producer with the AMQP password from a file, env or flag.
publish() {
    local rc=0 pw=()
    case $2 in
    file) pw=(env KD_AMQP_PASSWORD_FILE="$SEC_DIR/amqp-password") ;;
    env) pw=(env KD_AMQP_PASSWORD="$AMQP_PW") ;;
    flag) pw=(env) ;;
    esac
    echo "---- $1 ($2)" >>"$IT_DIR/producer.log"
    if [ "$2" = flag ]; then
        "${pw[@]}" "$KD_BIN_DIR/kone-producer" --amqp-password="$AMQP_PW" "$1" >"$1.report" 2>>"$IT_DIR/producer.log" || rc=$?
    else
        "${pw[@]}" "$KD_BIN_DIR/kone-producer" "$1" >"$1.report" 2>>"$IT_DIR/producer.log" || rc=$?
    fi
    cp "$1.report" "$SCAN/$(basename "$1").report.out"
    [ "$rc" -eq 0 ] || it_fail "kone-producer ($2) failed with $rc: $(tail -n 2 "$IT_DIR/producer.log")"
}

# The site-link-down job gets an 8 s deadline: 1005 timeouts, retries, then expired.
{
    it_jobs_good 30 good1
    jobs_tracked 5
    jobs_refused | jq -c 'if (.job_id | endswith("site-link-down")) then .deadline = .created_at + 8000 else . end'
} >"$IT_DIR/batch1.jsonl"
publish "$IT_DIR/batch1.jsonl" file
sleep 2

# KONE errors on 30% of calls, then the token endpoint down for 3 s.
it_sim_faults '{"call_error":{"share":0.3,"status":500}}'
it_jobs_good 30 good2 >"$IT_DIR/batch2.jsonl"
publish "$IT_DIR/batch2.jsonl" env
sleep 2
it_sim_faults '{"token_down":true}'
sleep 3
it_sim_faults '{"token_down":false,"call_error":null}'

# A kone-sim restart once the workers hold fresh tokens again: the tokens are unknown to the new
# kone-sim, so the reconnections are refused with 401 until the workers fetch new ones.
sleep 2.5
kill -TERM "$IT_SIM_PID"
wait "$IT_SIM_PID" || it_fail "kone-sim exited with $? on SIGTERM"
sim_start
it_log "kone-sim restarted"
it_jobs_good 20 good3 >"$IT_DIR/batch3.jsonl"
publish "$IT_DIR/batch3.jsonl" flag

# A producer with a wrong AMQP password (the real one with a suffix) must fail, leaking nothing.
it_jobs_good 1 refusedpw >"$IT_DIR/wrongpw.jsonl"
rc=0
KD_AMQP_PASSWORD="$AMQP_PW-wrong" "$KD_BIN_DIR/kone-producer" "$IT_DIR/wrongpw.jsonl" \
    >"$SCAN/wrongpw.report.out" 2>"$IT_DIR/producer-wrongpw.log" || rc=$?
[ "$rc" -ne 0 ] || it_fail "kone-producer with a wrong AMQP password succeeded"

N=$((30 + 5 + ${#JOBS_REFUSED_TABLE[@]} + 30 + 20))
it_wait_ids "$N" 150

# The 401 path really ran: w3's token requests were refused, and tokens rotated.
grep -q -i -E '401|invalid_client|auth' "$IT_DIR/w3.log" || it_fail "w3 (wrong KONE secret) logged no refusal"

# ---- collect ---------------------------------------------------------------------------------
sleep 2.5 # one more metrics snapshot to Kafka
for w in w1:$W1_PORT w2:$W2_PORT; do
    curl -sf "http://127.0.0.1:${w#*:}/metrics" >"$SCAN/${w%%:*}.metrics.out" ||
        it_fail "scraping ${w%%:*}'s /metrics failed"
done
curl -s "http://127.0.0.1:$W1_PORT/readyz" >"$SCAN/w1.readyz.out" || true
curl -s "http://127.0.0.1:$W1_PORT/healthz" >"$SCAN/w1.healthz.out" || true
it_stop_worker w1
it_stop_worker w2
kill -TERM "$(it_worker_pid w3)" 2>/dev/null || true # may have given up already
wait "$(it_worker_pid w3)" 2>/dev/null || true
it_stop_sim
for t in kone.call.results kone.call.events kone.worker.metrics; do
    "$KD_BIN_DIR/kone-events" --events-topic="$t" --events-idle-exit-ms=1500 \
        >"$SCAN/topic-$t.out" 2>>"$IT_DIR/events.log" || it_fail "kone-events on $t failed"
done
grep -q -F "\"$IT_PREFIX" "$SCAN/topic-kone.call.results.out" || it_fail "no result of this test in the results topic"
grep -q -F "\"$IT_PREFIX" "$SCAN/topic-kone.call.events.out" || it_fail "no call event of this test in the events topic"
jq -se --argjson t "$T0_MS" 'any(.[]; .worker == "w1" and .at >= $t)' "$SCAN/topic-kone.worker.metrics.out" >/dev/null ||
    it_fail "no metrics snapshot of w1 in the metrics topic"
python3 "$KD_SRC_DIR/tests/schemas/check_jsonl.py" --closed "$KD_SRC_DIR/docs/schemas/worker-metrics.schema.json" \
    "$SCAN/topic-kone.worker.metrics.out" >&2 || it_fail "metrics snapshots outside docs/schemas/worker-metrics.schema.json"

TOKENS=$(sort -u "$TOKEN_LOG" | grep -c . || true)
[ "$TOKENS" -ge 3 ] || it_fail "kone-sim issued only $TOKENS distinct tokens: they did not rotate"
REFRESH=$(cat "$IT_DIR/w1.log" "$IT_DIR/w2.log" | grep -c 'token refreshed' || true)
UPGRADE_401=$(grep -c 'upgrade /stream-v2 refused: 401' "$IT_DIR/sim.log" || true)

# ---- a wrong Kafka password: refused, and the refusal names no password ------------------------
# (it never gets a partition, so its idle timer never starts: SIGINT after 5 s ends it)
KD_KAFKA_SASL_PASSWORD_FILE=$SEC_DIR/kafka-password-wrong timeout -s INT 5 "$KD_BIN_DIR/kone-events" \
    >"$SCAN/events-wrong-pw.out" 2>"$IT_DIR/events-wrong-pw.log" || true
grep -q 'invalid credentials' "$IT_DIR/events-wrong-pw.log" ||
    it_fail "kone-events with a wrong Kafka password logged no refusal"

# ---- search ------------------------------------------------------------------------------------
# Every file a person could see; a hit prints file:line with the secret replaced by its name.
FILES=("$IT_DIR"/*.log "$SCAN"/*)
it_log "searching ${#FILES[@]} files ($(cat "${FILES[@]}" | wc -c) bytes) for the client secret, the AMQP and Kafka passwords and $TOKENS tokens"
SCANNER=$(cat <<'EOF'
import re, sys
def first_line(p):
    with open(p) as f:
        return f.readline().rstrip("\n")
secrets = [("<KONE client secret>", first_line(sys.argv[1])), ("<AMQP password>", first_line(sys.argv[2])),
           ("<Kafka password>", first_line(sys.argv[3]))]
with open(sys.argv[4]) as f:
    toks = sorted({l.strip() for l in f if l.strip()})
secrets += [("<token %d>" % (i + 1), t) for i, t in enumerate(toks)]
# Longest first, so a token containing another string is named as itself.
secrets.sort(key=lambda s: -len(s[1]))
names = {v: n for n, v in secrets}
rx = re.compile("|".join(re.escape(v) for _, v in secrets))
found = 0
for path in sys.argv[5:]:
    with open(path, "rb") as f:
        for no, raw in enumerate(f, 1):
            line = raw.decode("utf-8", "replace")
            if not rx.search(line):
                continue
            found += 1
            masked = rx.sub(lambda m: names[m.group(0)], line.rstrip("\n"))
            if len(masked) > 300:
                m = re.search(r"<(KONE client secret|AMQP password|Kafka password|token \d+)>", masked)
                s = max(0, m.start() - 120)
                masked = ("..." if s else "") + masked[s:s + 300] + "..."
            print("%s:%d: %s" % (path, no, masked))
sys.exit(3 if found else 0)
EOF
)
hits=0
python3 -c "$SCANNER" "$SEC_DIR/kone-secret" "$SEC_DIR/amqp-password" "$SEC_DIR/kafka-password" "$TOKEN_LOG" "${FILES[@]}" >"$IT_DIR/hits.txt" || hits=$?
if [ "$hits" -ne 0 ]; then
    [ "$hits" -eq 3 ] || it_fail "the search itself failed (status $hits)"
    cat "$IT_DIR/hits.txt" >&2
    # keep the evidence, but out of reach of lib.sh's tail of *.log on failure
    for f in "$IT_DIR"/*.log; do mv "$f" "$f.leaked"; done
    it_fail "a secret was logged, exported or published ($(wc -l <"$IT_DIR/hits.txt") lines; see above)"
fi

it_drop_queues
it_log "$N jobs, $TOKENS tokens issued ($REFRESH refreshes logged by w1+w2, $UPGRADE_401 upgrades refused with 401); no secret found in ${#FILES[@]} files; $((SECONDS - T0)) s"
it_log "PASS"
