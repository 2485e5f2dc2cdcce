#!/usr/bin/env bash
# it_ledger_cancel: a cancel job handled by another worker than the call reaches the KONE
# session that made the call (docs/failure-handling.md, "Cancels across workers").
# KONE's sessions own their calls (kone-sim answers 404 to a delete from another session), so
# w2, which takes the cancel job, looks the call up in the ledger and asks w1, whose session
# made it, to send the delete; w1 records KONE's answer in the ledger, w2 reports it.
# w1 and w2 consume different queues (so each job reaches the intended worker) and share the
# ledger. Observed in kone-sim's call log: one delete for the call's session id, sent on the
# KONE session of the call, answered 202, which cancelled it; then the call's result is
# `rejected` CALL_DELETED and the cancel's is `succeeded` with kone_status 202. A cancel of a
# session no worker recorded: w2 sends the delete itself, rejected 404. A second cancel
# of that call while KONE fails deletes (503): transient on w2, retried, then rejected with
# KONE's 4xx once it is healed (the call is gone). Then with w1 frozen (SIGSTOP), w2 waits 5 s
# for it and sends a second call's delete itself.
source "$(dirname "$0")/lib.sh"

# accepted_session MEDIA_ID: the session id kone-sim gave the call of that media id (waits 10 s),
# once w1 has had time to record the acceptance in the ledger.
accepted_session() {
    local sid=""
    for _ in $(seq 100); do
        sid=$(it_sim_calls | jq -r --arg m "$1" 'select(.call_type == "action" and .media_id == $m and .status == 201) | .session_id // empty' | head -n1)
        [ -n "$sid" ] && break
        sleep 0.1
    done
    [ -n "$sid" ] || it_fail "kone-sim never accepted the call $1"
    sleep 0.5
    echo "$sid"
}

KD_SIM_SPEED=1 it_start_sim
B=("KD_AMQP_EXCHANGE=$KD_AMQP_EXCHANGE.b" "KD_AMQP_QUEUE=$KD_AMQP_QUEUE.b" "KD_AMQP_ROUTING_KEY=$KD_AMQP_ROUTING_KEY.b")
it_fault_worker w1
it_fault_worker w2 "${B[@]}"

# the call: held by KONE in being_allocated for 15 s (its delay), so it can still be cancelled
it_jobs_good 1 call '{delay: 15, media_id: ($p + ($i | tostring))}' >"$IT_DIR/call.jsonl"
it_publish "$IT_DIR/call.jsonl" || it_fail "producer refused the call"
call_id=$IT_PREFIX-call-1
sid=$(accepted_session "$call_id") || exit 1
it_log "call $call_id accepted by kone-sim as session $sid (w1)"

# the cancel, to w2's queue
it_jobs cancel 1 "{v: 1, op: \"cancel\", session_id: $sid}" >"$IT_DIR/cancel.jsonl"
(export "${B[@]}" && it_publish "$IT_DIR/cancel.jsonl") || it_fail "producer refused the cancel"
it_wait_ids 2 60

calls=$IT_DIR/sim-calls.jsonl
it_sim_calls >"$calls"
action=$(jq -c --arg m "$call_id" 'select(.call_type == "action" and .media_id == $m)' "$calls")
deletes=$(jq -c --argjson s "$sid" 'select(.call_type == "delete" and .session_id == $s)' "$calls")
[ "$(echo "$deletes" | grep -c .)" -eq 1 ] || it_fail "expected one delete for session $sid, kone-sim logged: $deletes"
[ "$(echo "$deletes" | jq -r .kone_session_id)" = "$(echo "$action" | jq -r .kone_session_id)" ] ||
    it_fail "the delete came on KONE session $(echo "$deletes" | jq -r .kone_session_id), the call was made on $(echo "$action" | jq -r .kone_session_id)"
echo "$deletes" | jq -e '.status == 202 and .cancelled == true' >/dev/null ||
    it_fail "the delete was not answered 202 or cancelled nothing: $deletes"
it_expect cancel-1 '.outcome == "succeeded" and .kone_status == 202 and .worker == "w2"'
it_expect call-1 '.outcome == "rejected" and .error.code == "CALL_DELETED" and .session_id == '"$sid"
grep -q 'asking it to send the delete' "$IT_DIR/w2.log" || it_fail "w2 did not route the cancel through the ledger"
grep -q 'another worker asks to cancel call' "$IT_DIR/w1.log" || it_fail "w1 did not take the cancel"
it_log "the delete for session $sid reached its KONE session through w1: $(echo "$deletes" | jq -c '{status, cancelled, kone_session_id}')"

# a cancel of a call no worker recorded (unknown to the ledger): w2 sends the delete itself, on
# its own session, and reports KONE's refusal (404) at once
it_jobs unknown 1 '{v: 1, op: "cancel", session_id: 987654321}' >"$IT_DIR/unknown.jsonl"
(export "${B[@]}" && it_publish "$IT_DIR/unknown.jsonl") || it_fail "producer refused the unknown cancel"
it_wait_ids 1 60 '.job_id == "'"$IT_PREFIX"'-unknown-1"'
it_expect unknown-1 '.outcome == "rejected" and .kone_status == 404 and .attempt == 1 and .worker == "w2"'
it_sim_calls | jq -e -s 'map(select(.call_type == "delete" and .session_id == 987654321 and .status == 404)) | length == 1' >/dev/null ||
    it_fail "kone-sim did not log exactly one delete of session 987654321 answered 404"

# the same call cancelled again, KONE failing deletes (503) at first: w1's delete answered 503
# makes the cancel transient on w2 (retried, not final); its retry, routed to w1 again once
# KONE is healed, is refused (the call is gone) and reported rejected with KONE's status
it_sim_faults '{"call_error":{"share":1,"status":503}}'
it_jobs again 1 "{v: 1, op: \"cancel\", session_id: $sid}" >"$IT_DIR/again.jsonl"
(export "${B[@]}" && it_publish "$IT_DIR/again.jsonl") || it_fail "producer refused the repeated cancel"
retried() { grep 'attempt 1 failed (503)' "$IT_DIR/w2.log" | grep -q "$IT_PREFIX-again-1"; }
for _ in $(seq 100); do
    retried && break
    sleep 0.1
done
retried || it_fail "w2 did not retry the cancel KONE answered 503 through w1"
it_sim_faults '{"call_error":null}'
it_wait_ids 1 60 '.job_id == "'"$IT_PREFIX"'-again-1"'
it_expect again-1 '.outcome == "rejected" and .kone_status >= 400 and .kone_status < 500 and .attempt >= 2 and .worker == "w2"'
# KONE's refusal as w1 got it, said once (not "KONE answered 409: 409: KONE answered 409: ...")
it_expect again-1 '(.error.message | test("^KONE answered 4[0-9][0-9]: [A-Z]")) and ([.error.message | scan("KONE answered")] | length == 1)'
# the retry asked w1 again (not the 503 it had recorded): w1 sent the delete once per attempt
asked=$(grep 'another worker asks to cancel call' "$IT_DIR/w1.log" | grep -c "$IT_PREFIX-again-1" || true)
[ "$asked" -eq "$(jq -r --arg id "$IT_PREFIX-again-1" 'select(.job_id == $id) | .attempt' "$IT_DIR/results.jsonl")" ] ||
    it_fail "w1 was asked $asked times to delete for the repeated cancel, once per attempt expected"
it_log "a repeated cancel: $(jq -c --arg id "$IT_PREFIX-again-1" 'select(.job_id == $id) | {outcome, kone_status, attempt}' "$IT_DIR/results.jsonl")"

# the call's worker frozen (SIGSTOP; still alive in the ledger): w2 waits for it 5 s, then
# sends the delete on its own session; KONE refuses it (the session does not own the call)
# and the cancel is reported rejected with KONE's status, not left waiting
it_jobs_good 1 call2 '{delay: 12, media_id: ($p + "frozen")}' >"$IT_DIR/call2.jsonl"
it_publish "$IT_DIR/call2.jsonl" || it_fail "producer refused the second call"
sid2=$(accepted_session "$IT_PREFIX-call2-frozen") || exit 1
# shellcheck disable=SC2154 # set by it_start_worker through eval (IT_PID_<name>)
kill -STOP "$IT_PID_w1"
it_at_exit "kill -CONT $IT_PID_w1 2>/dev/null"
it_jobs cancel2 1 "{v: 1, op: \"cancel\", session_id: $sid2}" >"$IT_DIR/cancel2.jsonl"
(export "${B[@]}" && it_publish "$IT_DIR/cancel2.jsonl") || it_fail "producer refused the second cancel"
it_wait_ids 1 60 '.job_id == "'"$IT_PREFIX"'-cancel2-1"'
kill -CONT "$IT_PID_w1"
it_expect cancel2-1 '.outcome == "rejected" and .kone_status >= 400 and .kone_status < 500 and .worker == "w2"'
grep -q 'did not send its delete in time' "$IT_DIR/w2.log" || it_fail "w2 did not give up waiting for the frozen w1"
it_log "w1 frozen: w2 sent the delete itself after 5 s: $(jq -c --arg id "$IT_PREFIX-cancel2-1" 'select(.job_id == $id) | {outcome, kone_status}' "$IT_DIR/results.jsonl")"
it_stop_worker w1
it_stop_worker w2
it_stop_sim
it_drop_queues
it_log "PASS"
