#!/usr/bin/env bash
# it_perf_bench: `scripts/bench --quick` runs to completion on the stack and prints every figure
# of issue 5 with a value: the baselines, the pipeline with 1, 2 and 4 workers and its ratios,
# the concurrency figures, the added latency at half and full load, instructions per job and
# resident memory, the call ledger's cost (throughput with and without it, added p99), the
# fault scenarios of issue 11 (goodput ratios, re-queues per job, breaker opens and closes),
# issue 17's CPU per job, idle-deducted instructions per job and scale scenario (1,000
# buildings against 1: jobs/s, CPU per job, memory per building); then one line per target.
# Figures only: no thresholds (a noisy machine).
source "$(dirname "$0")/lib.sh"

FIGURES=(
    baseline.consume baseline.produce baseline.kone baseline.slowest
    pipeline.workers_1 pipeline.workers_1_ratio pipeline.workers_2 pipeline.workers_2_ratio
    pipeline.workers_4 pipeline.workers_4_ratio
    concurrency.inflight_64 concurrency.ideal concurrency.ceiling concurrency.ratio_to_ceiling
    concurrency.inflight_1 concurrency.ratio_to_sequential
)
for load in half full; do
    # in/out, and the same less the job's waits for PostgreSQL's commits (the worker's own)
    for d in in out in_own out_own; do
        for p in p50 p99 p99.9; do FIGURES+=("latency.$load.${d}_$p"); done
    done
done
FIGURES+=(latency.half.publish_rate latency.half.delivery_peak)
FIGURES+=(cost.instructions_per_job cost.rss_idle cost.rss_load cost.rss_backlog
    cost.rss_backlog_10x cost.rss_backlog_growth)
# issue 17: CPU per job, instructions less the idle rate, the scale scenario (bench-scale.sh)
FIGURES+=(cost.cpu_us_per_job cost.instructions_idle_per_s cost.instructions_per_job_net)
for w in 1 2 4; do FIGURES+=("pipeline.workers_${w}_cpu_us_per_job"); done
for r in spread one; do
    FIGURES+=("scale.${r}_jobs_per_s" "scale.${r}_succeeded" "scale.${r}_cpu_us_per_job" "scale.${r}_rss_peak")
done
FIGURES+=(scale.cpu_ratio scale.rate_ratio scale.rss_per_building)
FIGURES+=(ledger.workers_1_on ledger.workers_1_off ledger.throughput_ratio
    ledger.added_in_p99 ledger.added_out_p99)
# issue 11: the fault scenarios (scripts/bench-faults.sh)
FIGURES+=(fault.free.goodput fault.free.requeues_per_job)
for s in e500 e429; do
    FIGURES+=("fault.$s.goodput" "fault.$s.goodput_ratio" "fault.$s.requeues_per_job"
        "fault.$s.breaker_opens" "fault.$s.breaker_closes")
done
FIGURES+=(fault.outage.healthy_goodput fault.outage.healthy_ratio fault.outage.broken_jobs
    fault.outage.broken_succeeded fault.outage.broken_expired fault.outage.broken_other
    fault.outage.broken_unfinished fault.outage.requeues_per_job fault.outage.breaker_opens
    fault.outage.breaker_closes)

out=$IT_DIR/bench.out
it_log "scripts/bench --quick --bin $KD_BIN_DIR"
"$KD_SRC_DIR/scripts/bench" --quick --bin "$KD_BIN_DIR" >"$out" 2>"$IT_DIR/bench.log" ||
    it_fail "scripts/bench --quick exited with $?"
cat "$out" >&2

missing=()
for f in "${FIGURES[@]}"; do
    # "<name> <number> <unit ...>": the figure was measured, not left as n/a
    awk -v f="$f" '$1 == f && $2 ~ /^-?[0-9]+(\.[0-9]+)?$/ { ok = 1 } END { exit !ok }' "$out" ||
        missing+=("$f")
done
# a diagnostic beside the issue's figures: n/a when no job of the short run came unclumped
grep -Eq '^latency\.half\.in_p99_unclumped +([0-9]+|n/a) ' "$out" || missing+=(latency.half.in_p99_unclumped)
((${#missing[@]} == 0)) || it_fail "figures missing or without a value: ${missing[*]}"
n=$(grep -c '^target .* \(met\|not met\)$' "$out" || true)
[ "$n" -eq 16 ] || it_fail "expected 16 target lines (met / not met), got $n"
# --quick writes nothing into docs/
written=$(find "$KD_SRC_DIR/docs/performance.md" "$KD_SRC_DIR/docs/perf" -newer "$IT_DIR" -type f 2>/dev/null | head -n3 || true)
[ -z "$written" ] || it_fail "--quick wrote the full run's report: $written"
it_log "PASS: ${#FIGURES[@]} figures and 16 targets printed"
