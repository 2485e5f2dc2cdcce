#!/usr/bin/env bash
# it_rotation_certs: the brokers' certificates and CA rotated under load, without downtime
# (issue 13, item 6; docs/security.md "Rotating credentials without downtime"). Jobs are
# published at a steady rate for the whole test while, on the dev stack's real brokers:
#   ADD     a new CA of the test's own; Kafka's SSL listener trusts client certificates of the
#           old and the new CA (dynamic listener.name.ssl.ssl.truststore.location, a bundle);
#           the workers are rolled one by one onto an old+new CA bundle for RabbitMQ, Kafka and
#           the ledger, the one on Kafka's SSL listener with a new client certificate from the
#           new CA;
#   SWITCH  every broker presents a server certificate from the new CA, loaded without a
#           restart: RabbitMQ (the files it reads rewritten, then ssl:clear_pem_cache()),
#           Kafka's SSL and SASL_SSL listeners (dynamic listener.name.<l>.ssl.keystore.location),
#           PostgreSQL (its files rewritten, then pg_reload_conf()); Kafka's SSL listener drops
#           the old client CA. New connections get the new certificates (openssl s_client,
#           verified against the new CA alone: its issuer and serial are logged), and a client
#           certificate of the old CA is refused while the new one gets in (kcat);
#   DROP    the workers are rolled onto the new CA alone, and get jobs done.
# After each step results keep arriving. At the end every confirmed job has exactly one
# outcome in Kafka and the test's kone-sim logged exactly one elevator call per job.
# The stack's own certificates are put back when the test ends, pass or fail (and checked on
# a pass), so later tests find the stack whole.
source "$(dirname "$0")/lib.sh"

T0=$SECONDS
SEC=$IT_DIR/secrets # keys and ledger URLs: never scanned, never tailed
mkdir -p "$SEC/orig"
chmod 700 "$SEC"
S=${IT_PREFIX##*-}
RATE=10 # jobs per second
OLD_CA=$KD_TLS_DIR/ca.pem

# ---- the new CA, its server and client certificates ------------------------------------------
it_tls_ca "$SEC/ca-1" "kone-dispatch broker rotation test CA $S"
it_tls_cert "$SEC/server-1" "$SEC/ca-1" server localhost
it_tls_cert "$SEC/client-1" "$SEC/ca-1" client kone-dispatch-rotation
cat "$OLD_CA" "$SEC/ca-1.pem" >"$SEC/ca-bundle.pem"
# Kafka reads key and certificate from one PEM file, as dev-up writes it.
(umask 077 && cat "$SEC/server-1-key.pem" "$SEC/server-1.pem" >"$SEC/kafka-keystore-1.pem")
# This script's own clients (kone-producer, kone-events, reconcile) trust both CAs throughout.
export KD_AMQP_CA_FILE=$SEC/ca-bundle.pem KD_KAFKA_CA_FILE=$SEC/ca-bundle.pem

# ---- the stack's certificate files, and putting them back -------------------------------------
declare -A ORIG=() # a file a broker reads -> the copy of what it held
KAFKA_SET=()    # the dynamic broker configs this test set
KAFKA_PID=""    # a kafka-configs running in the background
RABBIT_FILES=() PG_FILES=()
KAFKA_NODE=$(sed -n 's/^node\.id=//p' "$KD_STATE_DIR/kafka/server.properties")
[ -n "$KAFKA_NODE" ] || it_fail "no node.id in $KD_STATE_DIR/kafka/server.properties"
kafka_broker_config() { # --add-config K=V,... | --delete-config K,...
    "$KD_STATE_DIR/bin/kafka-configs" --bootstrap-server "$KD_KAFKA_ADMIN_BROKERS" --entity-type brokers \
        --entity-name "$KAFKA_NODE" --alter "$@" >>"$IT_DIR/kafka-configs.out" 2>&1
}
# kafka_alter KEY=VALUE,...: kafka_broker_config --add-config in the background (a JVM takes
# seconds to start: the test goes on meanwhile); kafka_altered waits for it.
kafka_alter() {
    local kv
    IFS=, read -r -a kv <<<"$1"
    KAFKA_SET+=("${kv[@]%%=*}")
    kafka_broker_config --add-config "$1" &
    KAFKA_PID=$!
}
kafka_altered() {
    wait "$KAFKA_PID" || it_fail "kafka-configs failed: $(tail -n 2 "$IT_DIR/kafka-configs.out")"
}
# replace FILE NEW: FILE (a broker's) gets NEW's content, keeping its owner and mode; its old
# content is kept for restore_certs.
replace() {
    [ -n "${ORIG[$1]:-}" ] || {
        ORIG[$1]=$SEC/orig/${#ORIG[@]}
        cp -p "$1" "${ORIG[$1]}"
    }
    cat "$2" >"$1"
}
rabbit_reload() { rabbitmqctl eval 'ssl:clear_pem_cache().' >>"$IT_DIR/rabbitmqctl.out" 2>&1; }
pg_reload() { echo 'SELECT pg_reload_conf();' | "$KD_STATE_DIR/bin/kd-pg" psql -q -v ON_ERROR_STOP=1 >>"$IT_DIR/pg.log" 2>&1; }
# restore_certs: every broker presents the stack's own certificate again (for it_at_exit too:
# it never exits, it logs what it could not do).
restore_certs() {
    local f
    ((${#ORIG[@]})) || [ ${#KAFKA_SET[@]} -gt 0 ] || return 0
    if [ ${#KAFKA_SET[@]} -gt 0 ]; then
        wait "$KAFKA_PID" 2>/dev/null || true
        kafka_broker_config --delete-config "$(printf '%s\n' "${KAFKA_SET[@]}" | sort -u | paste -sd,)" &
        KAFKA_PID=$!
    fi
    for f in "${!ORIG[@]}"; do cat "${ORIG[$f]}" >"$f" || it_log "could not restore $f"; done
    ((${#ORIG[@]} == 0)) || {
        rabbit_reload || it_log "could not clear RabbitMQ's PEM cache"
        pg_reload || it_log "could not reload PostgreSQL"
    }
    if [ ${#KAFKA_SET[@]} -gt 0 ]; then
        wait "$KAFKA_PID" || it_log "could not delete Kafka's dynamic TLS configs ${KAFKA_SET[*]}"
    fi
    ORIG=() KAFKA_SET=()
}
it_at_exit restore_certs

# The files each broker reads, asked of the running servers (not assumed from dev-up).
mapfile -t RABBIT_FILES < <(rabbitmqctl eval '{ok, O} = application:get_env(rabbit, ssl_options),
    io:format("~s~n~s~n", [proplists:get_value(certfile, O), proplists:get_value(keyfile, O)]).' 2>"$IT_DIR/rabbitmqctl.out" |
    grep '^/')
[ ${#RABBIT_FILES[@]} = 2 ] || it_fail "RabbitMQ's certfile and keyfile not found: $(tail -n 2 "$IT_DIR/rabbitmqctl.out")"
mapfile -t PG_FILES < <(echo 'SHOW ssl_cert_file; SHOW ssl_key_file;' | "$KD_STATE_DIR/bin/kd-pg" psql -A -t 2>>"$IT_DIR/pg.log")
[ ${#PG_FILES[@]} = 2 ] || it_fail "PostgreSQL's ssl_cert_file and ssl_key_file not found: $(tail -n 2 "$IT_DIR/pg.log")"

# presented WHAT CA HOST:PORT [S_CLIENT ARGS...]: a new connection to the listener gets a
# certificate that verifies against CA (one file) for 127.0.0.1; waits up to 15 s for it (a
# dynamic Kafka config is applied a moment after kafka-configs returns), logs its issuer and
# serial.
presented() {
    local out i
    for i in $(seq 30); do
        out=$(timeout 10 openssl s_client -connect "$3" -CAfile "$2" -verify_ip 127.0.0.1 "${@:4}" </dev/null 2>&1 || true)
        if grep -q 'Verify return code: 0 (ok)' <<<"$out"; then
            it_log "$1 presents: $(openssl x509 -noout -issuer -serial <<<"$out" | tr '\n' ' ')"
            return 0
        fi
        sleep 0.5
    done
    it_fail "$1 ($3) does not present a certificate of $(basename "$2"): $(grep -m1 'Verify return code' <<<"$out")"
}
# every_listener CA CLIENT_PREFIX: presented, for the four TLS listeners of the stack's brokers.
every_listener() {
    presented "RabbitMQ AMQPS" "$1" "127.0.0.1:$KD_AMQP_PORT"
    presented "Kafka SASL_SSL" "$1" "$KD_KAFKA_BROKERS"
    presented "Kafka SSL" "$1" "$KD_KAFKA_SSL_BROKERS" -cert "$2.pem" -key "$2-key.pem"
    presented "PostgreSQL" "$1" "127.0.0.1:$KD_PG_PORT" -starttls postgres
}

# ---- the workers ----------------------------------------------------------------------------
it_start_sim
# worker NAME CA [CLIENT_PREFIX]: a worker trusting CA (a file) on its RabbitMQ, Kafka and ledger
# links, on Kafka's SSL listener with that client certificate when one is given (SASL_SSL
# otherwise); waited for until /readyz says 200.
worker() {
    local kafka=()
    sed "s#sslrootcert=[^&]*#sslrootcert=$2#" "$KD_LEDGER_URL_FILE" >"$SEC/ledger-url-$1"
    [ -z "${3:-}" ] || kafka=(KD_KAFKA_BROKERS="$KD_KAFKA_SSL_BROKERS" KD_KAFKA_SECURITY_PROTOCOL=ssl
        KD_KAFKA_CERT_FILE="$3.pem" KD_KAFKA_KEY_FILE="$3-key.pem")
    it_fault_worker "$1" KD_WORKER_DRAIN_MS=5000 KD_AMQP_CA_FILE="$2" KD_KAFKA_CA_FILE="$2" \
        KD_LEDGER_URL_FILE="$SEC/ledger-url-$1" "${kafka[@]}"
    it_wait_ready "$1"
}
# roll OLD NEW CA [CLIENT_PREFIX]: the new worker ready first, then the old one drains and exits 0.
roll() {
    worker "$2" "$3" "${4:-}"
    it_stop_worker "$1"
    it_log "rolled $1 -> $2 (CA $(basename "$3")${4:+, Kafka client certificate $(basename "$4").pem})"
}

worker w1 "$OLD_CA"
worker w2 "$OLD_CA" "$KD_TLS_DIR/client"
it_follow_results
it_job_stream $RATE
it_flowing "start (w1 on Kafka SASL_SSL, w2 on SSL with the stack's client certificate; old CA)"

# ---- ADD: the new CA trusted beside the old, on both sides -------------------------------------
kafka_alter "listener.name.ssl.ssl.truststore.location=$SEC/ca-bundle.pem"
roll w1 w3 "$SEC/ca-bundle.pem"
kafka_altered # before w4 presents its new client certificate
roll w2 w4 "$SEC/ca-bundle.pem" "$SEC/client-1"
it_wait_worker_results w4 10
it_flowing "ADD: workers on the old+new bundle; w4's client certificate from the new CA accepted"

# ---- SWITCH: every broker presents a certificate of the new CA ----------------------------------
kafka_alter "listener.name.ssl.ssl.keystore.location=$SEC/kafka-keystore-1.pem,listener.name.sasl_ssl.ssl.keystore.location=$SEC/kafka-keystore-1.pem,listener.name.ssl.ssl.truststore.location=$SEC/ca-1.pem"
replace "${RABBIT_FILES[1]}" "$SEC/server-1-key.pem"
replace "${RABBIT_FILES[0]}" "$SEC/server-1.pem"
rabbit_reload || it_fail "rabbitmqctl eval 'ssl:clear_pem_cache().' failed: $(tail -n 2 "$IT_DIR/rabbitmqctl.out")"
replace "${PG_FILES[1]}" "$SEC/server-1-key.pem"
replace "${PG_FILES[0]}" "$SEC/server-1.pem"
pg_reload || it_fail "pg_reload_conf() failed: $(tail -n 2 "$IT_DIR/pg.log")"
kafka_altered
every_listener "$SEC/ca-1.pem" "$SEC/client-1"
# The SSL listener now trusts client certificates of the new CA only.
kcat_ssl() { # CLIENT_PREFIX: kcat lists the topics over the SSL listener with that client certificate
    env -u KCAT_CONFIG kcat -b "$KD_KAFKA_SSL_BROKERS" -X security.protocol=ssl -X ssl.ca.location="$SEC/ca-1.pem" \
        -X ssl.certificate.location="$1.pem" -X ssl.key.location="$1-key.pem" -L -m 3 >"$IT_DIR/kcat.out" 2>&1
}
kcat_ssl "$SEC/client-1" || it_fail "the new client certificate is refused: $(tail -n 2 "$IT_DIR/kcat.out")"
! kcat_ssl "$KD_TLS_DIR/client" || it_fail "the SSL listener still accepts a client certificate of the old CA"
grep -q 'alert certificate unknown' "$IT_DIR/kcat.out" ||
    it_fail "kcat with the old client certificate failed, but not for its certificate: $(tail -n 1 "$IT_DIR/kcat.out")"
it_log "Kafka SSL: the old CA's client certificate refused (the broker's alert: certificate unknown); the new one accepted"
it_flowing "SWITCH: RabbitMQ, Kafka (SSL, SASL_SSL) and PostgreSQL present the new CA's certificates"

# ---- DROP the old CA: the workers trust the new one alone --------------------------------------
# Their every connection (AMQPS, Kafka, the ledger) is new and verified against the new CA only.
roll w3 w5 "$SEC/ca-1.pem"
roll w4 w6 "$SEC/ca-1.pem" "$SEC/client-1"
it_wait_worker_results w5 10
it_wait_worker_results w6 10
it_log "w5 (SASL_SSL) and w6 (SSL, new client certificate), trusting the new CA alone, get jobs done ($(it_worker_results w5), $(it_worker_results w6) results)"

# ---- the end: every job one outcome, one call; the stack's certificates back -------------------
it_job_stream_settle 100 w5 w6
N=$IT_STREAM_JOBS
restore_certs
every_listener "$OLD_CA" "$KD_TLS_DIR/client"
it_stop_sim
it_drop_queues
it_log "PASS: $N jobs at $RATE/s through the brokers' certificate and CA rotation, in $((SECONDS - T0)) s"
