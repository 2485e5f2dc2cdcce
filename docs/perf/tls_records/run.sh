#!/usr/bin/env bash
# docs/perf/tls_records/run.sh TLS_DIR: instructions per received 250-byte TLS record, OpenSSL 3.0
# (the worker's KONE client: a buffering read BIO) against GnuTLS (a buffered pull function),
# TLS 1.3 and 1.2, from two callgrind runs of each client (2,000 and 12,000 records). TLS_DIR
# holds server.pem, server-key.pem and ca.pem (the dev stack's .dev/tls). Issue 17's record of
# 2026-12-05 in docs/performance.md; a measurement, not a test.
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
tls=${1:?usage: run.sh TLS_DIR}
out=$(mktemp -d)
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$out"' EXIT
cc -O2 -o "$out/server" "$dir/server.c" -lssl -lcrypto
cc -O2 -o "$out/openssl" "$dir/client_openssl.c" -lssl -lcrypto
cc -O2 -o "$out/gnutls" "$dir/client_gnutls.c" -lgnutls
pids=()
"$out/server" 19443 "$tls/server.pem" "$tls/server-key.pem" & pids+=($!)
"$out/server" 19444 "$tls/server.pem" "$tls/server-key.pem" tls12 & pids+=($!)
sleep 0.5
ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 | grep -o 'refs: *[0-9,]*' | tr -d ', ' | cut -d: -f2; }
for c in openssl gnutls; do
    for p in 19443 19444; do
        a=$(ir "$out/$c" "$p" "$tls/ca.pem" 2000)
        b=$(ir "$out/$c" "$p" "$tls/ca.pem" 12000)
        echo "$c $([[ $p == 19443 ]] && echo 'TLS 1.3' || echo 'TLS 1.2'): $(((b - a) / 10000)) instructions per record"
    done
done
