# shellcheck shell=bash
# scripts/bench-faults.sh: the fault scenarios of scripts/bench (issue 11), sourced by it; uses
# its helpers (preload, start_sim, start_worker, wait_ready, fig, target, log) and settings.
#
# One world for every scenario: 10 buildings (copies of the test tower, building:9990001000 ..
# 9990001009) and the kd-dev client allowed in each; jobs are dealt to the buildings in turn.
# Each scenario gets a fresh kone-sim and one worker at default settings (worker.inflight 64)
# on a backlog of its own, and is measured against the fault-free run of the same world in the
# same bench run:
#   fault-free  the baseline: goodput (jobs succeeded per second) from readiness + F_WARM for
#               F_WIN seconds, all buildings and the 9 that stay healthy in the outage; the
#               median of F_BASE runs, one before, between and after the 500 and 429 runs
#               (same backlog, same window), so that a load that drifts on the shared machine
#               shifts the baseline as it shifts the runs compared with it
#   500, 429    kone-sim answers 20 % of the calls with that status (its call_error fault):
#               goodput over the same window, as a ratio to the fault-free one
#   outage      building:9990001009's site link down for F_OUTAGE seconds from readiness +
#               F_WARM (kone-sim's link_down): the 9 healthy buildings' goodput during the
#               outage against theirs fault-free; then the queue is drained, and every job
#               of the broken building must have succeeded after the recovery or expired,
#               but for the calls KONE accepted while the link was down: their result is
#               unknown (never called twice), counted apart
# In each: re-queues per finished job (deliveries handed to a retry tier or parked / jobs
# done, from the worker's timings file) and the breaker's opens and closes (its log lines).
# The targets are printed met / not met: figures, never a failure of the bench.

F_BLD=10
F_BROKEN=building:9990001009
if $QUICK; then
    F_WARM=1 F_WIN=3 F_OUTAGE=15 F_DRAIN=60 F_BASE=1
else
    F_WARM=2 F_WIN=15 F_OUTAGE=30 F_DRAIN=180 F_BASE=3
fi

# fault_world: the buildings and clients files of the scenarios' kone-sim.
fault_world() {
    jq --argjson n "$F_BLD" '{buildings: [range(0; $n) as $i | .buildings[0] |
        .id = "building:\(9990001000 + $i)" | .name = "bench tower \($i)"]}' \
        "$KD_ROOT/sim/buildings.json" >"$TMP/f-buildings.json"
    jq --argjson n "$F_BLD" '[.[] | select(.client_id == "kd-dev") | .scopes =
        ["application/inventory"] + [range(0; $n) | "callgiving/building:\(9990001000 + .)"]]' \
        "$KD_ROOT/sim/clients.json" >"$TMP/f-clients.json"
}

# fjobs FILE N: like jobs, dealt to the 10 buildings in turn.
fjobs() {
    jq -cn --arg p "$PREFIX-$RANDOM-" --argjson n "$2" --argjson b "$F_BLD" \
        --argjson now "$(date +%s%3N)" \
        'range(1; $n + 1) as $i | {v: 1, job_id: ($p + ($i | tostring)),
          building_id: "building:\(9990001000 + $i % $b)", group_id: "1", op: "call",
          created_at: $now, deadline: ($now + 3600000), area: 1000, action: 2,
          destination: ([2, 3, 4, 5, 6, 7, 8, 10, 11][$i % 9] * 1000)}' >"$1"
}

# fault_preload QUEUE N: N jobs of fjobs on QUEUE (kone-producer, confirmed).
fault_preload() {
    fjobs "$TMP/$1.jobs" "$2"
    # shellcheck disable=SC2046 # queue_env prints NAME=VALUE words (no spaces) to split
    env $(queue_env "$1") "$BIN/kone-producer" "$TMP/$1.jobs" >/dev/null 2>>"$TMP/producer.log" ||
        kd_die "kone-producer failed to publish to $1 (see $TMP/producer.log)"
}

# sim_faults JSON: POSTs a fault spec to the running kone-sim.
sim_faults() {
    curl -fsS --cacert "$CA" -o /dev/null -X POST "https://127.0.0.1:$SIM_PORT/sim/faults" -d "$1" ||
        kd_die "kone-sim refused the fault spec $1"
}

# fault_start NAME N [FAULTS_JSON]: queue, kone-sim, worker; returns once it is ready (READY_US).
fault_start() {
    fault_preload "$PREFIX.f-$1" "$2"
    SIM_BUILDINGS=$TMP/f-buildings.json SIM_CLIENTS=$TMP/f-clients.json start_sim "f-$1" "${3:-}"
    start_worker "f-$1" "$PREFIX.f-$1"
    F_PORT=$(metrics_port "f-$1")
    wait_ready "$F_PORT"
}

# fault_stop NAME: the worker (its timings file is flushed) and kone-sim.
fault_stop() {
    stop_worker "$WPID"
    stop_sim
    summary "f-$1"
}

# goodput NAME FROM_US TO_US [all|healthy|broken]: jobs succeeded per second, acked in the window.
goodput() {
    awk -v a="$2" -v b="$3" -v sel="${4:-all}" -v br="$F_BROKEN" '
        $8 == "final" && $7 == "succeeded" && $5 >= a && $5 < b &&
        (sel == "all" || (sel == "broken") == ($6 == br)) { n++ }
        END { if (b <= a) print "n/a"; else printf "%.1f\n", n / ((b - a) / 1e6) }' "$TMP/f-$1.timings"
}

# ran_out NAME N BEFORE_US: true when all N jobs were done before BEFORE_US (the backlog ran
# out: the worker idled for part of the window, and its figures are low).
ran_out() {
    awk -v n="$2" -v t="$3" '$8 == "final" { f++; if ($5 > m) m = $5 }
        END { exit !(f >= n && m < t) }' "$TMP/f-$1.timings"
}

# requeues NAME: deliveries handed back to be retried (retry tier, parking) per job done.
requeues() {
    awk '$8 == "requeue" { r++ } $8 == "final" { f++ }
        END { if (!f) print "n/a"; else printf "%.2f\n", r / f }' "$TMP/f-$1.timings"
}

# breaker NAME TO: the worker's circuit transitions to TO (open, closed), any building.
breaker() { grep -c "kone: circuit of [^ ]* [a-z-]* -> $2[:;]" "$TMP/f-$1.log" || true; }

# open_after NAME SINCE_US: seconds from SINCE_US to the worker's first circuit opening (n/a: none).
open_after() {
    local ts
    ts=$(grep -m1 "kone: circuit of [^ ]* [a-z-]* -> open[:;]" "$TMP/f-$1.log" |
        sed -n 's/.*"@timestamp":"\([^"]*\)".*/\1/p')
    if [[ -z $ts ]]; then
        echo n/a
    else
        awk -v a="$2" -v b="$(date -d "$ts" +%s%6N)" 'BEGIN { printf "%.1f\n", (b - a) / 1e6 }'
    fi
}

# fault_window NAME N [FAULTS_JSON]: a scenario measured over the window; the backlog that
# is left is deleted with the bench's queues.
fault_window() {
    fault_start "$1" "$2" "${3:-}"
    F_W0=$((READY_US + F_WARM * 1000000))
    F_W1=$((F_W0 + F_WIN * 1000000))
    sleep "$((F_WARM + F_WIN))"
    fault_stop "$1"
    if ran_out "$1" "$2" "$F_W1"; then
        log "fault $1: the backlog of $2 jobs ran out before the window's end (figures low)"
    fi
}

# wait_final N TIMEOUT_S PORT: until N jobs are done (kone_jobs_total), or false at timeout.
wait_final() {
    local t0=$SECONDS
    while (($(done_jobs "$3") < $1)); do
        ((SECONDS - t0 < $2)) || return 1
        sleep 0.5
    done
}

# median V...: the middle value (the lower middle of an even count; n/a among them: n/a).
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } /n\/a/ { na = 1 }
        END { if (na || !NR) print "n/a"; else print v[int((NR + 1) / 2)] }'
}

fault_scenarios() {
    fault_world
    local n base base_h rate
    # the backlog must outlast the window: sized from the 1-worker rate when it is known
    rate=$(awk -v r="${PIPE[1]:-n/a}" 'BEGIN { print (r == "n/a" || r + 0 < 200) ? 800 : r }')
    n=$(awk -v r="$rate" -v s="$((F_WARM + F_WIN))" 'BEGIN { printf "%d\n", r * s * 1.5 }')
    log "fault scenarios: $F_BLD buildings, $n jobs per run, window ${F_WIN}s after ${F_WARM}s"

    # fault-free runs interleaved with the fault runs: free-1, e500, free-2, e429, free-3
    local s status runs=() runs_h=()
    declare -A GP
    for s in free-1 e500 free-2 e429 free-3; do
        if [[ $s == free-* ]]; then
            ((${s#free-} <= F_BASE)) || continue
            fault_window "$s" "$n"
            runs+=("$(goodput "$s" "$F_W0" "$F_W1")")
            runs_h+=("$(goodput "$s" "$F_W0" "$F_W1" healthy)")
        else
            fault_window "$s" "$n" "{\"call_error\":{\"share\":0.2,\"status\":${s#e}}}"
            GP[$s]=$(goodput "$s" "$F_W0" "$F_W1")
        fi
    done
    base=$(median "${runs[@]}")
    base_h=$(median "${runs_h[@]}")
    fig fault.free.goodput "$base" "jobs/s (fault-free, $F_BLD buildings, ${F_WIN}s window; median of ${#runs[@]} runs)"
    fig fault.free.goodput_runs "${runs[*]}" "jobs/s, each fault-free run (before, between, after the fault runs)"
    fig fault.free.requeues_per_job "$(requeues free-1)" "re-queues per job"

    for status in 500 429; do
        s=e$status
        fig "fault.$s.goodput" "${GP[$s]}" "jobs/s (20% of calls answered $status)"
        fig "fault.$s.goodput_ratio" "$(div "${GP[$s]}" "$base")" "of fault-free"
        fig "fault.$s.requeues_per_job" "$(requeues "$s")" "re-queues per job"
        fig "fault.$s.breaker_opens" "$(breaker "$s" open)" "circuit opens (no building was down)"
        fig "fault.$s.breaker_closes" "$(breaker "$s" closed)" "circuit closes"
    done

    # the outage: enough backlog for the warm-up and the outage at the fault-free rate
    local nd t_down t_up b_n b_ok b_exp b_unk b_other drained=true
    nd=$(awk -v r="$base" -v s="$((F_WARM + F_OUTAGE))" 'BEGIN { if (r == "n/a") r = 800
        printf "%d\n", r * s * 1.2 }')
    fault_start outage "$nd"
    sleep "$F_WARM"
    sim_faults "{\"buildings\":{\"$F_BROKEN\":{\"link_down\":true}}}"
    t_down=$(date +%s%6N)
    log "fault outage: $F_BROKEN link down for ${F_OUTAGE}s ($nd jobs)"
    sleep "$F_OUTAGE"
    sim_faults "{\"buildings\":{\"$F_BROKEN\":{\"link_down\":false}}}"
    t_up=$(date +%s%6N)
    wait_final "$nd" "$F_DRAIN" "$F_PORT" || drained=false
    $drained || log "fault outage: not every job done ${F_DRAIN}s after the recovery"
    fault_stop outage
    if ran_out outage "$nd" "$t_up"; then
        log "fault outage: the backlog of $nd jobs ran out before the recovery (figures low)"
    fi
    fig fault.outage.healthy_goodput "$(goodput outage "$t_down" "$t_up" healthy)" \
        "jobs/s (the 9 healthy buildings, during the ${F_OUTAGE}s outage)"
    fig fault.outage.healthy_ratio "$(div "$(goodput outage "$t_down" "$t_up" healthy)" "$base_h")" \
        "of their fault-free goodput"
    read -r b_ok b_exp b_unk b_other < <(awk -v br="$F_BROKEN" '$8 == "final" && $6 == br {
        if ($7 == "succeeded") s++; else if ($7 == "expired") e++; else if ($7 == "unknown") u++
        else o++ } END { printf "%d %d %d %d\n", s, e, u, o }' "$TMP/f-outage.timings")
    b_n=$(grep -c "\"$F_BROKEN\"" "$TMP/$PREFIX.f-outage.jobs")
    fig fault.outage.broken_jobs "$b_n" "jobs of the broken building"
    fig fault.outage.broken_succeeded "$b_ok" "of them succeeded"
    fig fault.outage.broken_expired "$b_exp" "expired"
    fig fault.outage.broken_unknown "$b_unk" \
        "unknown (accepted by KONE while the link was down: no result, never called twice)"
    fig fault.outage.broken_other "$b_other" "ended otherwise (failed, rejected)"
    F_BROKEN_LEFT=$((b_n - b_ok - b_exp - b_unk - b_other))
    fig fault.outage.broken_unfinished "$F_BROKEN_LEFT" "not done ${F_DRAIN}s after the recovery"
    fig fault.outage.requeues_per_job "$(requeues outage)" "re-queues per job"
    fig fault.outage.breaker_opens "$(breaker outage open)" "circuit opens"
    fig fault.outage.breaker_closes "$(breaker outage closed)" "circuit closes"
    fig fault.outage.open_after_s "$(open_after outage "$t_down")" \
        "s from the link going down to the circuit opening (the outage lasted ${F_OUTAGE}s)"
}

# fault_targets: issue 11's targets, met / not met.
fault_targets() {
    F_T0=${#TARGETS[@]}
    target "KONE 500 to 20% of calls: goodput >= 70% of fault-free" 'a >= 0.7' "${FIG[fault.e500.goodput_ratio]}"
    target "KONE 429 to 20% of calls: goodput >= 70% of fault-free" 'a >= 0.7' "${FIG[fault.e429.goodput_ratio]}"
    target "one of 10 buildings down: the 9 others keep >= 90% of their goodput" 'a >= 0.9' \
        "${FIG[fault.outage.healthy_ratio]}"
    target "one of 10 buildings down: its jobs succeed after recovery or expire (unknown counted apart)" \
        'a == 0 && b == 0' \
        "${FIG[fault.outage.broken_other]}" "$F_BROKEN_LEFT"
    target "re-queues per job <= 1.5 in every fault scenario" 'a <= 1.5 && b <= 1.5 && c <= 1.5' \
        "${FIG[fault.e500.requeues_per_job]}" "${FIG[fault.e429.requeues_per_job]}" \
        "${FIG[fault.outage.requeues_per_job]}"
    target "breaker: no open for 500s or 429s, one open and one close for the outage" \
        'a == 0 && b == 1 && c == 1' \
        "$((${FIG[fault.e500.breaker_opens]} + ${FIG[fault.e429.breaker_opens]}))" \
        "${FIG[fault.outage.breaker_opens]}" "${FIG[fault.outage.breaker_closes]}"
}

# fault_report: the markdown section of docs/performance.md with the scenarios' figures and
# targets (TARGETS from index F_T0 on), between markers so that --only-faults can rewrite it.
fault_report() {
    local k t
    cat <<MD
<!-- faults:begin -->
## Fault scenarios (issue 11)

Measured by \`scripts/bench$($ONLY_FAULTS && echo " --only-faults")\` on $(date -u '+%Y-%m-%d %H:%M UTC')
($($QUICK && echo "quick counts" || echo "full counts"); $(nproc) cores shared with the brokers and kone-sim).
Each scenario is one worker at default settings (worker.inflight $INFLIGHT, retry tiers,
breaker) on a backlog of jobs dealt to 10 buildings (copies of the test tower), a fresh
kone-sim, and is compared with the fault-free runs of the same world in the same bench run
(the median of ${F_BASE}, one before, between and after the 500 and 429 runs, same backlog and
window: \`fault.free.goodput_runs\`).
*Goodput* is jobs succeeded per second acked within the window: ${F_WIN} s from readiness +
${F_WARM} s (fault-free, 500, 429), or the ${F_OUTAGE} s outage itself for the 9 healthy
buildings. *Re-queues per job*: deliveries handed to a retry tier (or parked) per job done,
from the worker's timings file. *Breaker opens/closes*: the worker's circuit transition log
lines. The 500 and 429 figures are measured over the window only (retried jobs go to the back
of the backlog); the outage run is drained to the end ($F_DRAIN s at most after the
recovery), so its broken building's outcomes are final. Its calls that KONE accepted while
the link was down never get a call result (no session id to delete), so they end \`unknown\`
and are never called twice (docs/failure-handling.md): counted apart, not a miss.

| figure | value | unit |
| --- | --- | --- |
MD
    for k in "${FIG_ORDER[@]}"; do
        [[ $k == fault.* ]] && printf '| `%s` | %s | %s |\n' "$k" "${FIG[$k]}" "${FIG_UNIT[$k]}"
    done
    printf '\n| target | result |\n| --- | --- |\n'
    for t in "${TARGETS[@]:$F_T0}"; do printf '| %s | **%s** |\n' "${t%|*}" "${t##*|}"; done
    printf '<!-- faults:end -->\n'
}

# fault_report_into FILE: FILE's fault section replaced by this run's (when absent: put where
# the full run puts it, before the hand-written notes, or at the end).
fault_report_into() {
    local new=$TMP/faults.md
    fault_report >"$new"
    if grep -q '^<!-- faults:begin -->$' "$1"; then
        awk -v f="$new" '/^<!-- faults:begin -->$/ { while ((getline l < f) > 0) print l; skip = 1; next }
            /^<!-- faults:end -->$/ { skip = 0; next } !skip' "$1" >"$1.tmp" && mv "$1.tmp" "$1"
    elif grep -q '^## Reading the profile' "$1"; then # where the full run puts it
        awk -v f="$new" '/^## Reading the profile/ && !done { while ((getline l < f) > 0) print l
            print ""; done = 1 } 1' "$1" >"$1.tmp" && mv "$1.tmp" "$1"
    else
        { echo; cat "$new"; } >>"$1"
    fi
    log "wrote the fault scenarios' section of $1"
}
