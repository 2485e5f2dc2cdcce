#!/usr/bin/env bash
# it_token_expiry: tokens that expire during a run are refreshed without failing jobs.
# A private kone-sim issues 3-second tokens and closes every WebSocket after 4 s (as KONE does
# after 2 h), so the worker must reconnect with a fresh token again and again while jobs
# keep arriving for ~15 s. Every job must succeed, and the worker must have refreshed its
# token several times.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/jobs.sh"

PORT=18443
tls=$KD_STATE_DIR/tls
"$KD_BIN_DIR/kone-sim" --sim-port=$PORT --sim-cert="$tls/server.pem" --sim-key="$tls/server-key.pem" \
    --sim-buildings="$KD_SRC_DIR/sim/buildings.json" --sim-clients="$KD_SRC_DIR/sim/clients.json" \
    --sim-speed=50 --sim-token-ttl-s=3 --sim-max-conn-s=4 >"$IT_DIR/sim.log" 2>&1 &
IT_PIDS+=($!)
for _ in $(seq 100); do
    curl -sf --cacert "$tls/ca.pem" -o /dev/null "https://127.0.0.1:$PORT/" 2>/dev/null && break
    curl -s --cacert "$tls/ca.pem" -o /dev/null "https://127.0.0.1:$PORT/" && break
    sleep 0.1
done

it_start_worker w1 KD_KONE_TOKEN_URL="https://127.0.0.1:$PORT/api/v2/oauth2/token" \
    KD_KONE_WS_URL="wss://127.0.0.1:$PORT/stream-v2" KD_KONE_TOKEN_MARGIN_S=1 KD_LOG_LEVEL=debug
N=0
for batch in $(seq 15); do
    for i in $(seq 10); do
        it_job "b$batch-$i" "{\"v\":1,\"area\":1000,\"action\":2,\"destination\":$((JOBS_FLOORS[i % 9] * 1000))}"
    done >"$IT_DIR/jobs-$batch.jsonl"
    it_publish "$IT_DIR/jobs-$batch.jsonl" || it_fail "publish failed"
    N=$((N + 10))
    sleep 1
done
it_wait_results $N 120
r=$IT_DIR/results.jsonl
ok=$(jq -c 'select(.outcome=="succeeded")' "$r" | wc -l)
[ "$ok" -eq $N ] || it_fail "$((N - ok)) of $N jobs did not succeed across token expiry: $(jq -c 'select(.outcome!="succeeded") | {job_id,outcome,error}' "$r" | head -3)"
refreshes=$(grep -c 'token refreshed' "$IT_DIR/w1.log" || true)
it_log "$N jobs succeeded; the worker fetched a token $refreshes times"
[ "$refreshes" -ge 4 ] || it_fail "expected the token to be refreshed at least 4 times in ~15 s of 3 s tokens, saw $refreshes"
it_log "PASS"
