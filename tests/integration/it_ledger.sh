#!/usr/bin/env bash
# it_ledger: the call ledger (worker/ledger.c) against the stack's PostgreSQL, over TLS with
# verify-full: claims, hand-over of accepted calls, ambiguous writes, leases that run out,
# retries, outcomes recorded and read back, bad URLs (password masked) and a newer schema.
# The cases are in ledger_check.c; this runs them with the stack's environment.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -n ${KD_LEDGER_URL_FILE:-} ]] || it_fail "the stack exports no KD_LEDGER_URL_FILE"
"$KD_BIN_DIR/ledger_check"
