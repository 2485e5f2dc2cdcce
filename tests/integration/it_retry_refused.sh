#!/usr/bin/env bash
# it_retry_refused: a retry copy the broker refuses. Every KONE call is answered 500 (kone-sim's
# call_error, 300 ms late so a loop is slow); the retry tier queues run under a policy of
# max-length 0 with reject-publish (a quorum queue then takes one message and nacks the next).
# A first job fails transient: its retry copy is confirmed (the job is acked, waiting in its 60 s
# tier). A second one fails too: its copy is nacked by the broker, and the worker hands that job
# back instead of acking it (log: "the broker nacked a retry/dead-letter copy").
# KONE healed, its redelivery succeeds. Proves: a job whose retry copy the broker refuses is
# neither acked nor lost: it comes back and gets exactly one result; the other job's copy waits
# in its tier with no result yet; the worker exits 0.
source "$(dirname "$0")/lib.sh"

INFLIGHT=4
POLICY=$IT_PREFIX-tiers-full
export KD_RETRY_TIERS_MS=60000 KD_RETRY_BASE_MS=60000 KD_RETRY_CAP_MS=60000
TIER=$KD_AMQP_QUEUE.retry.60000

it_start_sim --sim-faults='{"latency_ms":300,"call_error":{"share":1,"status":500}}'
it_jobs_good 1 first >"$IT_DIR/first.jsonl"
it_jobs_good 1 second >"$IT_DIR/second.jsonl"
it_fault_worker w1
it_wait_ready w1 # the work queue and its retry tiers are declared
curl -sf -o /dev/null -u guest:guest -H 'content-type: application/json' -X PUT \
    "$KD_RABBIT_MGMT_URL/api/policies/%2F/$POLICY" \
    --data-binary "$(jq -cn --arg q "^$KD_AMQP_QUEUE\\.retry\\." \
        '{pattern: $q, "apply-to": "queues", definition: {"max-length": 0, overflow: "reject-publish"}}')" ||
    it_fail "setting the max-length policy failed"
it_at_exit "curl -sf -o /dev/null -u guest:guest -X DELETE '$KD_RABBIT_MGMT_URL/api/policies/%2F/$POLICY'"
for _ in $(seq 100); do # the tier runs under the policy (the management API names it)
    curl -sf -u guest:guest "$KD_RABBIT_MGMT_URL/api/queues/%2F/$(jq -rn --arg n "$TIER" '$n|@uri')" |
        jq -e --arg p "$POLICY" '.policy == $p' >/dev/null && break
    sleep 0.2
done

it_publish "$IT_DIR/first.jsonl" || it_fail "producer refused the first job"
it_wait_depth "$TIER" 1 30 # its copy confirmed: the tier is full
it_publish "$IT_DIR/second.jsonl" || it_fail "producer refused the second job"
nacked=$(it_log_count w1 'the broker nacked a retry/dead-letter copy' 30)
[ "$nacked" -ge 1 ] || it_fail "the broker nacked no retry copy: $(grep -o '"message":"[^"]*' "$IT_DIR/w1.log" | tail -n 5)"
it_sim_faults '{"call_error":null}'

it_wait_ids 1 60
back=$(jq -r 'select(.outcome == "succeeded") | .job_id' "$IT_DIR/results.jsonl")
[ "$(wc -l <"$IT_DIR/results.jsonl")" -eq 1 ] && [ "$back" = "$IT_PREFIX-second-1" ] ||
    it_fail "expected one result, the second job's, succeeded: $(cat "$IT_DIR/results.jsonl")"
it_wait_depth "$TIER" 1 20 # the first job's copy still waits in its tier, nothing more
it_stop_worker w1
it_drop_queues
it_log "ok: $nacked retry copies nacked; $back handed back and then succeeded; the other waits in $TIER"
