#!/usr/bin/env bash
# it_rotation: every credential of docs/security.md rotated under load, without downtime
# (issue 13, item 6). Jobs are published at a steady rate for the whole test while, on the dev
# stack's real brokers and a private kone-sim:
#   ADD     the new credential is made valid beside the old one: a second KONE client secret
#           (kone-sim's client_secrets, re-read on SIGHUP), a second RabbitMQ user, a second
#           Kafka SCRAM-SHA-512 user (kafka-configs), a second PostgreSQL login role in the
#           ledger's role, and a CA bundle holding the old CA and a new one;
#   ROLL    the two workers are replaced one by one (the new one ready before the old one gets
#           SIGTERM and drains), each new one reading only the new files;
#   REVOKE  the old secret is dropped from kone-sim, the old RabbitMQ user deleted, the old
#           SCRAM credentials deleted, the old role locked (NOLOGIN), and kone-sim presents a
#           server certificate issued by the new CA (SIGHUP; connections age out after 8 s, and
#           tokens live 10 s, so the workers reconnect and refresh through the new ones);
#   ROLL    one worker is replaced by one that trusts the new CA only (the old one dropped
#           from the bundle).
# After each step results keep arriving. At the end every confirmed job has exactly one
# outcome in Kafka and kone-sim logged exactly one elevator call per job.
# Revoking first would be noticed: a worker started with the old credentials after the
# revocation is refused by each service (one line each) and its /readyz answers 503.
# The stack's own credentials (guest, kd, role kd, the dev CA) are left untouched: the
# rotated principals are this test's own, and are removed when it ends.
source "$(dirname "$0")/lib.sh"

T0=$SECONDS
SEC=$IT_DIR/secrets # never scanned, never tailed
mkdir -p "$SEC"
chmod 700 "$SEC"
S=${IT_PREFIX##*-}
RATE=10 # jobs per second

# ---- the old credentials (generation 1) and the new ones (generation 2) -----------------------
KONE_ID=kd-rot-$S
AMQP_USER=("kd-rot-old-$S" "kd-rot-new-$S")
KAFKA_USER=("kd-rot-old-$S" "kd-rot-new-$S")
PG_ROLE=("kd_rot_old_$S" "kd_rot_new_$S")
for g in 0 1; do
    (umask 077
        openssl rand -hex 16 >"$SEC/kone-secret-$g"
        openssl rand -hex 16 >"$SEC/amqp-password-$g"
        openssl rand -hex 16 >"$SEC/kafka-password-$g"
        openssl rand -hex 16 >"$SEC/pg-password-$g")
done

# clients FILE SECRET_GEN...: kone-sim's clients file with this test's client holding the
# secrets of the given generations (client_secrets: kone-sim's rotation extension).
clients() {
    local f=$1 s=()
    shift
    for g in "$@"; do s+=("$(<"$SEC/kone-secret-$g")"); done
    jq -n --arg id "$KONE_ID" '[{client_id: $id, client_secrets: $ARGS.positional,
        scopes: ["application/inventory", "callgiving/building:9990000951"]}]' --args "${s[@]}" >"$f.tmp"
    mv "$f.tmp" "$f"
}

# ---- RabbitMQ ----------------------------------------------------------------------------------
it_rabbit_wait_healthy
amqp_user_add() { it_rabbit_user_add "${AMQP_USER[$1]}" "$(<"$SEC/amqp-password-$1")"; } # GEN

# ---- Kafka: SCRAM credentials with the broker's own tool, the password in an @file only -------
kafka_configs() { # USER add GEN | USER delete
    local f rc=0
    f=$(umask 077 && mktemp "$SEC/scram.XXXXXX")
    {
        printf '%s\n' kafka.admin.ConfigCommand --bootstrap-server "$KD_KAFKA_ADMIN_BROKERS" --alter \
            --entity-type users --entity-name "$1"
        if [ "$2" = add ]; then
            printf '%s\n' --add-config "SCRAM-SHA-512=[iterations=4096,password=$(<"$SEC/kafka-password-$3")]"
        else
            printf '%s\n' --delete-config SCRAM-SHA-512
        fi
    } >"$f"
    (source "$KD_SRC_DIR/scripts/lib.sh" && kd_kafka_tool "@$f") >"$IT_DIR/kafka-configs.out" 2>&1 || rc=$?
    rm -f "$f"
    [ "$rc" -eq 0 ] || it_fail "kafka-configs $2 $1 failed: $(grep -v -i password "$IT_DIR/kafka-configs.out" | tail -n 2)"
    KAFKA_LIVE[$1]=$([ "$2" = add ] && echo 1 || echo 0)
}
declare -A KAFKA_LIVE
# kafka_cleanup USER: for it_at_exit (which must never exit): the credentials still there go.
kafka_cleanup() {
    [ "${KAFKA_LIVE[$1]:-0}" = 1 ] || return 0
    (kafka_configs "$1" delete) >/dev/null 2>&1 || it_log "could not delete the SCRAM credentials of $1"
}
kafka_user_add() { # GEN
    it_at_exit "kafka_cleanup ${KAFKA_USER[$1]}"
    kafka_configs "${KAFKA_USER[$1]}" add "$1"
}

# ---- PostgreSQL: login roles in the ledger's role kd (the stack's superuser, over its socket) --
# Each acts as kd once logged in (SET role), so what it creates belongs to kd, whoever logs in.
pg() { "$KD_STATE_DIR/bin/kd-pg" psql -q -v ON_ERROR_STOP=1 >>"$IT_DIR/pg.log" 2>&1; }
pg_role_add() { # GEN
    local r=${PG_ROLE[$1]}
    it_at_exit "echo 'DROP ROLE IF EXISTS $r;' | pg"
    pg <<EOF || it_fail "creating role $r failed: $(tail -n 2 "$IT_DIR/pg.log")"
CREATE ROLE $r LOGIN PASSWORD '$(<"$SEC/pg-password-$1")' IN ROLE kd;
ALTER ROLE $r SET role = kd;
EOF
    sed "s#^postgresql://[^@]*@#postgresql://$r:$(<"$SEC/pg-password-$1")@#" "$KD_LEDGER_URL_FILE" >"$SEC/ledger-url-$1"
}

# ---- TLS: kone-sim's certificate from the dev CA first; a new CA later -----------------------
cp "$KD_TLS_DIR/server.pem" "$SEC/sim.pem"
cp "$KD_TLS_DIR/server-key.pem" "$SEC/sim-key.pem"
cp "$KD_TLS_DIR/ca.pem" "$SEC/ca-0.pem"

# ---- start: generation 1 everywhere ----------------------------------------------------------
amqp_user_add 0
kafka_user_add 0
pg_role_add 0
clients "$SEC/clients.json" 0
it_start_sim --sim-clients="$SEC/clients.json" --sim-cert="$SEC/sim.pem" --sim-key="$SEC/sim-key.pem" \
    --sim-token-ttl-s=10 --sim-max-conn-s=8

# gen_env GEN CA_FILE: a worker's credentials of one generation, each from its file.
gen_env() {
    GEN_ENV=(KD_KONE_CLIENT_ID="$KONE_ID" KD_KONE_CLIENT_SECRET_FILE="$SEC/kone-secret-$1"
        KD_AMQP_USER="${AMQP_USER[$1]}" KD_AMQP_PASSWORD_FILE="$SEC/amqp-password-$1"
        KD_KAFKA_SASL_USER="${KAFKA_USER[$1]}" KD_KAFKA_SASL_PASSWORD_FILE="$SEC/kafka-password-$1"
        KD_LEDGER_URL_FILE="$SEC/ledger-url-$1" KD_KONE_CA_FILE="$2")
}
# start GEN CA_FILE NAME: a worker of that generation, waited for until /readyz says 200.
start() {
    gen_env "$1" "$2"
    it_fault_worker "$3" KD_WORKER_DRAIN_MS=5000 KD_KONE_TOKEN_MARGIN_S=2 "${GEN_ENV[@]}"
    it_wait_ready "$3"
}
# roll OLD NEW GEN CA_FILE: the new worker ready first, then the old one drains and exits 0.
roll() {
    start "$3" "$4" "$2"
    it_stop_worker "$1"
    it_log "rolled $1 -> $2 (generation $(($3 + 1)), CA $(basename "$4"))"
}

start 0 "$SEC/ca-0.pem" w1
start 0 "$SEC/ca-0.pem" w2
it_follow_results

# ---- the steady job stream ---------------------------------------------------------------------
it_job_stream $RATE
it_flowing "start (2 workers, generation 1)"

# ---- ADD: the new credentials valid beside the old -------------------------------------------
clients "$SEC/clients.json" 0 1
kill -HUP "$IT_SIM_PID"
amqp_user_add 1
kafka_user_add 1
pg_role_add 1
it_tls_ca "$SEC/ca-1" "kone-dispatch rotation test CA $S"
cat "$SEC/ca-0.pem" "$SEC/ca-1.pem" >"$SEC/ca-bundle.pem"
export KD_KONE_CA_FILE=$SEC/ca-bundle.pem # this script's own requests to kone-sim (/sim/calls)
grep -q '"message":"reload: 1 clients' "$IT_DIR/sim.log" || it_fail "kone-sim did not reload its clients: $(tail -n 2 "$IT_DIR/sim.log")"
it_flowing "ADD: second KONE secret, RabbitMQ user, Kafka user, ledger role; CA bundle old+new"

# ---- ROLL: every worker onto generation 2 ----------------------------------------------------
roll w1 w3 1 "$SEC/ca-bundle.pem"
roll w2 w4 1 "$SEC/ca-bundle.pem"
it_flowing "ROLL to generation 2"

# ---- REVOKE the old ones; kone-sim switches to a certificate from the new CA --------------------
clients "$SEC/clients.json" 1
it_tls_cert "$SEC/sim-new" "$SEC/ca-1" server localhost
mv "$SEC/sim-new-key.pem" "$SEC/sim-key.pem"
mv "$SEC/sim-new.pem" "$SEC/sim.pem"
kill -HUP "$IT_SIM_PID"
it_rabbit_user_delete "${AMQP_USER[0]}" || it_fail "deleting RabbitMQ user ${AMQP_USER[0]} failed"
kafka_configs "${KAFKA_USER[0]}" delete
echo "ALTER ROLE ${PG_ROLE[0]} NOLOGIN;" | pg || it_fail "locking role ${PG_ROLE[0]} failed"
for i in $(seq 50); do
    [ "$(grep -c '"message":"reload: certificate' "$IT_DIR/sim.log")" -ge 2 ] && break
    sleep 0.1
done
timeout 5 openssl s_client -connect "127.0.0.1:$IT_SIM_PORT" -CAfile "$SEC/ca-1.pem" -verify_return_error \
    -brief </dev/null 2>&1 | grep -q '^Verification: OK' ||
    it_fail "kone-sim does not present the certificate of the new CA after its reload"
it_log "kone-sim presents the new CA's certificate"
it_flowing "REVOKE: old secret, user, SCRAM credentials, role; kone-sim's certificate from the new CA"
# The workers went through the new certificate: kone-sim closes connections older than 8 s and
# tokens live 10 s, so w3 and w4 reconnect and refresh, and every handshake since the reload
# presented the new certificate (verified against their bundle).
after_reload() { awk 'n >= 2; /"message":"reload: certificate/ {n++}' "$IT_DIR/sim.log"; }
for i in $(seq 300); do
    opened=$(after_reload | grep -c "connection .* opened client=$KONE_ID" || true)
    tokens=$(after_reload | grep -c 'POST /api/v2/oauth2/token 200' || true)
    [ "$opened" -ge 2 ] && [ "$tokens" -ge 2 ] && break
    [ "$i" -lt 300 ] || it_fail "after the certificate switch: $opened connections, $tokens tokens (2 each expected in 60 s)"
    sleep 0.2
done
it_log "through the new certificate: $opened WebSocket connections opened, $tokens tokens issued"
it_flowing "the workers' reconnections through the new CA's certificate"

# ---- ROLL the old CA out of the trust: one worker trusts the new CA only ------------------------
roll w3 w5 1 "$SEC/ca-1.pem"
it_wait_worker_results w5 20
it_log "w5, trusting the new CA only, gets jobs done ($(it_worker_results w5) results)"

# ---- revoking first would be noticed -----------------------------------------------------------
# A worker that still reads one old credential (a pod not yet rolled, restarting after the
# revocation) is refused, says why in one line and never turns ready: a rolling update stops at
# it (maxUnavailable 0) while the rolled workers carry on. One worker per credential, each with
# the new ones otherwise, on a queue of their own.
# stale NAME KEY=OLD_VALUE...: a generation-2 worker with the old value of some keys.
stale() {
    local name=$1
    shift
    gen_env 1 "$SEC/ca-bundle.pem"
    it_fault_worker "$name" KD_AMQP_QUEUE="$KD_AMQP_QUEUE.stale" KD_AMQP_EXCHANGE="$KD_AMQP_EXCHANGE.stale" \
        KD_AMQP_ROUTING_KEY="$KD_AMQP_ROUTING_KEY.stale" "${GEN_ENV[@]}" "$@"
    STALE+=("$name")
}
STALE=()
stale s-amqp KD_AMQP_USER="${AMQP_USER[0]}" KD_AMQP_PASSWORD_FILE="$SEC/amqp-password-0"
stale s-kafka KD_KAFKA_SASL_USER="${KAFKA_USER[0]}" KD_KAFKA_SASL_PASSWORD_FILE="$SEC/kafka-password-0"
stale s-ledger KD_LEDGER_URL_FILE="$SEC/ledger-url-0"
stale s-kone KD_KONE_CLIENT_SECRET_FILE="$SEC/kone-secret-0"
stale s-ca KD_KONE_CA_FILE="$SEC/ca-0.pem"
# stale_line NAME TEXT WHAT: the worker logged TEXT (waits 60 s).
stale_line() {
    local i
    for i in $(seq 300); do
        grep -qF -- "$2" "$IT_DIR/$1.log" && {
            it_log "$1: $3 refused: $(grep -F -m1 -- "$2" "$IT_DIR/$1.log" | jq -r .message | sed 's/:[^:]*@/:***@/' | cut -c1-160)"
            return 0
        }
        sleep 0.2
    done
    it_fail "$1 logged no '$2' ($3) in 60 s: $(tail -n 3 "$IT_DIR/$1.log")"
}
stale_line s-amqp "ACCESS_REFUSED" "RabbitMQ user deleted"
stale_line s-kafka "invalid credentials with SASL mechanism SCRAM-SHA-512" "Kafka SCRAM credentials deleted"
stale_line s-ledger "is not permitted to log in" "ledger role locked"
stale_line s-kone "token fetch failed" "KONE secret revoked"
grep -F "token fetch failed" "$IT_DIR/s-kone.log" | grep -q 401 || it_fail "s-kone: the token refusal does not say 401"
stale_line s-ca "certificate" "kone-sim's new certificate (old CA only)"
# Every one stays up, not ready (the ledger's too: it starts without its ledger and keeps
# asking, as it would through a database restart, rather than exit and crash-loop).
for w in s-amqp s-kafka s-ledger s-kone s-ca; do
    code=$(it_readyz "$w")
    [ "$code" = 503 ] || it_fail "$w: /readyz answered $code, not 503, on a revoked credential"
    it_stop_worker "$w"
done
it_log "s-amqp, s-kafka, s-ledger, s-kone, s-ca: /readyz 503"

# ---- the end: every job one outcome, one call ------------------------------------------------
it_job_stream_settle 100 w4 w5
N=$IT_STREAM_JOBS
it_stop_sim
it_drop_queues
it_log "PASS: $N jobs at $RATE/s through 5 rotations, in $((SECONDS - T0)) s"
