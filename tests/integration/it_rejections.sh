#!/usr/bin/env bash
# it_rejections: every row of KONE's rejection table (../shared/kone/PROTOCOL.md) ends in the
# outcome a user expects, with KONE's own reason in `error`: refusals are `rejected` (final),
# the site link being down is `failed` (transient, error 1005) once the call made no progress.
# Also: a token without the building's scope gets 403, and a payload KONE would answer with
# "Invalid json payload" (delay 31) never leaves the worker: it is rejected as an invalid job.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/jobs.sh"

it_start_worker w1 KD_KONE_CALL_TIMEOUT_MS=4000
jobs_refused >"$IT_DIR/jobs.jsonl"
n=$(wc -l <"$IT_DIR/jobs.jsonl")
it_publish "$IT_DIR/jobs.jsonl" || it_fail "producer refused: $(grep -v confirmed "$IT_DIR/jobs.jsonl.report")"
it_wait_results "$n" 120
r=$IT_DIR/results.jsonl
bad=0
for row in "${JOBS_REFUSED_TABLE[@]}"; do
    IFS='|' read -r name _ outcome code msg <<<"$row"
    got=$(jq -c --arg id "$IT_PREFIX-refused-$name" 'select(.job_id==$id)' "$r")
    if ! jq -e --arg o "$outcome" --arg c "$code" --arg m "$msg" \
        '.outcome==$o and (.error.code|test($c)) and (.error.message|test($m))' <<<"$got" >/dev/null; then
        it_log "row $name: expected $outcome /$code/ /$msg/, got $got"
        bad=$((bad + 1))
    fi
done
[ "$bad" -eq 0 ] || it_fail "$bad rows of the rejection table not handled as KONE means"
# KONE's answer decided each refusal, on the first attempt (kone-sim sends no snapshot: the
# stack runs it without --sim-snapshot): no row was retried, and none ended by the worker's
# own timeout instead of KONE's verdict.
for row in "${JOBS_REFUSED_TABLE[@]}"; do
    IFS='|' read -r name _ outcome _ <<<"$row"
    [ "$outcome" = rejected ] || continue
    it_expect "refused-$name" '.attempt==1 and .error.code!="timeout" and .failure=="final"'
done
# Rows the building group's cached configuration answers (docs/kone-client.md, "Building
# configuration"): refused by the worker itself, no request (kone_status 0); the others are
# KONE's (or kone-sim's) own verdicts.
for name in unknown-action undefined-action disabled-action same-floor same-floor-other-side \
    no-destination unknown-source; do
    it_expect "refused-$name" '.validated_locally==true and .kone_status==0 and .started_at==null'
done
for name in invalid-direction unknown-destination unknown-building group-out-of-service \
    locked-floor no-lift-available site-link-down; do
    it_expect "refused-$name" '.validated_locally==false'
done

# 403: a worker whose KONE application has no scope for building 951
secret=$IT_DIR/annex-secret
jq -r '.[] | select(.client_id=="kd-annex") | .client_secret' "$KD_SRC_DIR/sim/clients.json" >"$secret"
it_start_worker w2 KD_KONE_CLIENT_ID=kd-annex KD_KONE_CLIENT_SECRET_FILE="$secret" KD_KONE_SCOPE=
it_stop_worker w1
it_job "forbidden" '{"v":1,"area":1000,"action":2,"destination":5000}' >"$IT_DIR/jobs2.jsonl"
it_publish "$IT_DIR/jobs2.jsonl"
it_wait_results $((n + 1)) 60
it_expect forbidden '.outcome=="rejected" and .kone_status==403 and .error.code=="403"'
it_log "PASS"
