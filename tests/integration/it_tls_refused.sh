#!/usr/bin/env bash
# it_tls_refused: the programs refuse a broker they must not trust (issue 13), against the dev
# stack's real RabbitMQ (AMQPS) and Kafka (SASL_SSL), each with one clear line naming why:
#   unknown CA    the client trusts another CA than the one that signed the broker's certificate
#   host name     the broker is named 127.1: the resolver's 127.0.0.1, but a name its
#                 certificate (DNS:localhost, IP:127.0.0.1) does not carry
#   expired       the client's trust anchor is the dev CA re-issued with the same key and
#                 subject but expired: the chain the broker presents fails on time, as an
#                 expired broker certificate does (OpenSSL checks every certificate's dates)
#   credentials   a wrong SCRAM password (Kafka) or AMQP password (RabbitMQ)
# kone-producer shows each RabbitMQ refusal and exits non-zero. Workers show that a refusal
# is no crash loop: refused by RabbitMQ, a worker keeps retrying with backoff; refused by
# Kafka, it stays up and /readyz says not ready. No secret reaches any log.
source "$(dirname "$0")/lib.sh"

for k in --amqp-tls --kafka-security-protocol; do
    it_worker_has "$k" || it_pending "transport security keys ($k)"
done
[ -r "$KD_TLS_DIR/ca-key.pem" ] || it_fail "no dev CA key in $KD_TLS_DIR (scripts/dev-up makes it)"

# --- certificates the broker's chain must fail against ---------------------------------------
OTHER_CA=$IT_DIR/other-ca.pem
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$IT_DIR/other-ca-key.pem" -out "$OTHER_CA" \
    -days 1 -subj "/CN=some other CA" 2>/dev/null
EXPIRED_CA=$IT_DIR/expired-ca.pem
openssl x509 -in "$KD_TLS_DIR/ca.pem" -signkey "$KD_TLS_DIR/ca-key.pem" -days -1 \
    -out "$EXPIRED_CA" 2>/dev/null
openssl x509 -checkend 0 -noout -in "$EXPIRED_CA" >/dev/null 2>&1 &&
    it_fail "the re-issued CA is not expired"
BAD_PW="wrong-pw-$RANDOM$RANDOM"
printf '%s\n' "$BAD_PW" >"$IT_DIR/bad-password"

# --- RabbitMQ: kone-producer, one refusal each -------------------------------------------------
it_jobs_good 1 >"$IT_DIR/jobs.jsonl"
amqp_case() { # NAME EXPECTED_TEXT ENV=VALUE...
    local name=$1 want=$2 rc=0
    shift 2
    env "$@" "$KD_BIN_DIR/kone-producer" "$IT_DIR/jobs.jsonl" >"$IT_DIR/p-$name.out" 2>"$IT_DIR/p-$name.log" || rc=$?
    [ "$rc" -ne 0 ] || it_fail "RabbitMQ $name: kone-producer exited 0"
    grep -F "$want" "$IT_DIR/p-$name.log" | grep -q '"log.level":"error"' ||
        it_fail "RabbitMQ $name: no error line with '$want': $(tail -n 2 "$IT_DIR/p-$name.log")"
    it_log "RabbitMQ $name: $(grep -o '"message":"[^"]*' "$IT_DIR/p-$name.log" | tail -n1 | cut -c12-)"
}
amqp_case unknown-ca "certificate was refused: self-signed certificate in certificate chain" KD_AMQP_CA_FILE="$OTHER_CA"
amqp_case host-name "certificate was refused: hostname mismatch" KD_AMQP_HOST=127.1
amqp_case expired "certificate was refused: certificate has expired" KD_AMQP_CA_FILE="$EXPIRED_CA"
amqp_case password "ACCESS_REFUSED" KD_AMQP_PASSWORD_FILE="$IT_DIR/bad-password"

# --- workers: refused, still running -----------------------------------------------------------
it_fault_worker r-ca KD_AMQP_CA_FILE="$OTHER_CA"
it_fault_worker k-ca KD_KAFKA_CA_FILE="$OTHER_CA"
it_fault_worker k-host KD_KAFKA_BROKERS="127.1:${KD_KAFKA_BROKERS##*:}"
it_fault_worker k-expired KD_KAFKA_CA_FILE="$EXPIRED_CA"
it_fault_worker k-password KD_KAFKA_SASL_PASSWORD_FILE="$IT_DIR/bad-password"

# wait_line NAME TEXT [COUNT]: the worker's log holds COUNT (1) lines with TEXT (waits 60 s).
wait_line() {
    local n i
    for i in $(seq 300); do
        n=$(grep -cF "$2" "$IT_DIR/$1.log" || true)
        [ "$n" -ge "${3:-1}" ] && return 0
        kill -0 "$(it_worker_pid "$1")" 2>/dev/null || it_fail "$1 exited: $(tail -n 3 "$IT_DIR/$1.log")"
        sleep 0.2
    done
    it_fail "$1: no '$2' in its log after 60 s: $(tail -n 3 "$IT_DIR/$1.log")"
}
# RabbitMQ refuses, the worker backs off and tries again (two refusals logged), alive.
wait_line r-ca "RabbitMQ unavailable, retrying in" 2
grep -F "RabbitMQ unavailable" "$IT_DIR/r-ca.log" | grep -qF "certificate was refused" ||
    it_fail "r-ca: the retry line does not say the certificate was refused"
wait_line k-ca "the broker's certificate (chain depth 0) was refused: unable to get local issuer certificate"
wait_line k-host "was refused: hostname mismatch"
wait_line k-expired "was refused: certificate has expired"
wait_line k-password "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
for w in r-ca k-ca k-host k-expired k-password; do
    code=$(it_readyz "$w" "$IT_DIR/$w.ready")
    [ "$code" = 503 ] || it_fail "$w: /readyz answered $code, not 503, while its broker refuses it"
    kill -0 "$(it_worker_pid "$w")" 2>/dev/null || it_fail "$w exited"
done
it_log "5 refused workers alive, /readyz 503 each"
for w in r-ca k-ca k-host k-expired k-password; do it_stop_worker "$w"; done

# --- no secret in any log ----------------------------------------------------------------------
for s in "$BAD_PW" "$(<"$KD_KAFKA_SASL_PASSWORD_FILE")"; do
    if grep -rlF -- "$s" "$IT_DIR"/*.log; then it_fail "a password appears in the logs above"; fi
done
it_log "ok"
