#!/usr/bin/env bash
# it_fault_sigkill: workers killed with SIGKILL at random moments lose no job and call none twice.
# 2,000 jobs (media_id = job id, so kone-sim's call log counts the calls per job), two workers
# with 16 jobs in flight each, the stack's call ledger (lease 3 s instead of 15 s, so that the
# jobs of a killed worker wait 3 s for its lease, not 15: the run stays short), a private kone-sim
# with some latency so calls are in flight at every kill. KILLS (default 6) times, at a random
# point of the run (a random result count in each of KILLS equal stretches of it, then a random
# 0-0.5 s), one of the two live workers, chosen at random, gets SIGKILL and a new worker replaces
# it at once. Its unacked jobs go back to the queue; the next worker meets their ledger rows:
# a call written and never answered ends `unknown` (ambiguous), a call KONE accepted is
# followed, an outcome recorded is produced again (redelivered: true), a claim never written
# is called. IT_SIGKILL_SEED repeats a run's choices (it is logged).
# Proves:
#   - every confirmed job has exactly one result (reconcile: nothing missing, nothing
#     unexpected); a job with several results in Kafka has them only because a killed worker's
#     result reached Kafka before its ack: the same result produced again from the ledger
#     (same outcome, session id, attempt and times; the later ones redelivered=true);
#   - no job succeeded twice (two results from two different calls);
#   - every job succeeded or is unknown;
#   - kone-sim's call log: no job placed more than one elevator call unless it was reported
#     `unknown` (every job with 2+ calls has only unknown results).
source "$(dirname "$0")/lib.sh"

N=${IT_FAULT_JOBS:-2000}
INFLIGHT=16
KILLS=${IT_SIGKILL_KILLS:-6}
SEED=${IT_SIGKILL_SEED:-$((RANDOM * 32768 + RANDOM))}
RANDOM=$SEED
W=(KD_LEDGER_LEASE_MS=3000)

it_start_sim --sim-faults='{"latency_ms":100,"jitter_ms":100}'
it_jobs_good "$N" good '{media_id: ($p + ($i | tostring))}' >"$IT_DIR/jobs.jsonl"
it_publish "$IT_DIR/jobs.jsonl" || it_fail "producer refused jobs"
[ "$(grep -c '"confirmed"' "$IT_DIR/jobs.jsonl.report")" -eq "$N" ] || it_fail "not all $N jobs confirmed"

# The kill points: a random result count in each of KILLS equal stretches of 5%..90% of N.
lo=$((N / 20)) span=$((N * 85 / 100 / KILLS))
at=()
for k in $(seq 0 $((KILLS - 1))); do at+=($((lo + k * span + RANDOM % span))); done
it_log "seed $SEED: SIGKILL once $(IFS=,; echo "${at[*]}") jobs have a result"

it_follow_results
t0=$SECONDS
it_fault_worker w1 "${W[@]}"
it_fault_worker w2 "${W[@]}"
live=(w1 w2)
next=3
killed=()
for a in "${at[@]}"; do
    it_wait_followed "$a" 300
    sleep "$(printf '0.%02d' $((RANDOM % 50)))"
    i=$((RANDOM % 2))
    victim=${live[$i]}
    it_kill_worker "$victim" KILL
    [ "$IT_RC" -eq 137 ] || it_fail "$victim exited with $IT_RC, not by SIGKILL"
    killed+=("$victim")
    live[i]=w$next
    it_fault_worker "w$next" "${W[@]}"
    it_log "$victim killed with SIGKILL after $((SECONDS - t0))s ($(it_followed) jobs have a result); w$next replaces it"
    next=$((next + 1))
done
it_fault_ended # the last kill's replacement started

it_recovery "$N" 600
it_wait_ids "$N" 600
sleep 3 # late duplicates arrive now
it_check_reconciled $((KILLS * INFLIGHT)) --kone-sim "$(it_sim_url)"
s=$IT_DIR/reconcile.json
r=$IT_DIR/results.jsonl
[ "$(jq .redelivered "$s")" -ge 1 ] || it_fail "no job was redelivered: the kills found nothing in flight"
# No job succeeded twice: two succeeded results from two calls.
twice=$(jq -sc 'group_by(.job_id) | map(select(map(select(.outcome == "succeeded") | .session_id) | unique | length > 1)
    | {job_id: .[0].job_id, results: map({outcome, session_id, worker, redelivered})})' "$r")
[ "$(jq length <<<"$twice")" -eq 0 ] || it_fail "$(jq length <<<"$twice") jobs succeeded twice (two calls): $(jq -c '.[:3]' <<<"$twice")"
# Exactly one result per job: several results of a job are one recorded result produced again.
differ=$(jq -sc 'group_by(.job_id) | map(select(length > 1)) | map(select(
        (map({outcome, session_id, attempt, started_at, finished_at, code: .error.code?}) | unique | length > 1)
        or (map(select(.redelivered)) | length) < length - 1)
    | {job_id: .[0].job_id, results: map({outcome, session_id, attempt, worker, redelivered, code: .error.code?})})' "$r")
[ "$(jq length <<<"$differ")" -eq 0 ] || it_fail "$(jq length <<<"$differ") jobs have more than one result (not the same one produced again): $(jq -c '.[:3]' <<<"$differ")"
# Every job succeeded or is unknown.
read -r ok unk other < <(jq -r '.final_outcomes | "\(.succeeded // 0) \(.unknown // 0) \(del(.succeeded, .unknown) | add // 0)"' "$s")
[ "$other" -eq 0 ] && [ $((ok + unk)) -eq "$N" ] || it_fail "jobs neither succeeded nor unknown: $(jq -c .final_outcomes "$s")"
# kone-sim's call log: a job called more than once must have been reported unknown.
it_sim_calls_per_job "$IT_PREFIX-" >"$IT_DIR/calls-per-job.txt"
calls=$(awk '{s += $2} END {print s + 0}' "$IT_DIR/calls-per-job.txt")
awk '$2 > 1 {print $1}' "$IT_DIR/calls-per-job.txt" >"$IT_DIR/multi-call.txt"
multi=$(wc -l <"$IT_DIR/multi-call.txt")
bad=$(jq -rs --rawfile m "$IT_DIR/multi-call.txt" '($m | split("\n") | map(select(. != "")) | map({key: ., value: 1}) | from_entries) as $multi
    | map(select($multi[.job_id] != null and .outcome != "unknown") | "\(.job_id) \(.outcome) session \(.session_id) by \(.worker)") | .[]' "$r")
[ -z "$bad" ] || it_fail "jobs placed more than one elevator call and were not reported unknown: $(head -n 5 <<<"$bad" | tr '\n' ';') (calls: $(grep -F -f <(cut -d' ' -f1 <<<"$bad" | head -n 5) "$IT_DIR/calls-per-job.txt" | tr '\n' ';'))"
it_log "$KILLS workers killed (${killed[*]}): $ok succeeded, $unk unknown ($(jq -c .final_errors "$s")); $(jq .redelivered "$s") redelivered, $(jq .duplicate_count "$s") results produced again; kone-sim logged $calls calls for $N jobs ($(wc -l <"$IT_DIR/calls-per-job.txt") jobs called, $multi more than once)"

for w in "${live[@]}"; do it_stop_worker "$w"; done
it_expect_queue_empty
it_stop_sim
it_drop_queues
it_log "PASS in $((SECONDS - t0))s"
