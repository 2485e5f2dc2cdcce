# shellcheck shell=bash
# scripts/bench-scale.sh: the cost figures of issue 17 that scripts/bench sources: CPU per job
# of the worker process, and the scale scenario. Uses scripts/bench's helpers (preload,
# start_sim, start_worker, wait_ready, wait_done, rate, fig, log) and settings.
#
# CPU per job is user + system time of the worker process (every thread, exited ones too:
# /proc/PID/stat's utime and stime) from readiness to the last job acked, over the jobs done,
# on a pre-loaded backlog (full load). It is what one worker costs the machine per job
# whatever else runs on it, unlike a rate in jobs/s on cores shared with the brokers.
#
# Scale: one kone-sim world of S_BLD buildings (copies of the test tower, each with its 2
# groups: building:9990100000 ..) and the kd-dev client allowed in each. The same number of
# jobs is run twice on it, one worker each time: dealt evenly over every building and group
# (each of the 2 S_BLD building/group pairs in turn), then over one building's 2 groups.
# Reported: jobs/s, CPU per job and peak RSS of each, and the memory one building in use
# costs the worker: (peak RSS spread - peak RSS one building) / (S_BLD - 1).

S_BLD=1000
S_BASE=9990100000
if $QUICK; then
    S_N=2000 # one job per building and group: CI's size, enough to use every building
else
    S_N=20000
fi

CLK_TCK=$(getconf CLK_TCK)
# cpu_us PID: user + system CPU of a process's threads so far, in µs: the scheduler's run time
# of each thread alive now (the first field of /proc/PID/task/*/schedstat, in ns), not
# /proc/PID/stat's ticks of 10 ms: 3000 jobs were only ~50 ticks, too coarse to compare two
# builds. The worker's threads live as long as it does.
cpu_us() { schedstat_us "$1" 1; }

# rq_wait_us PID: how long a process's threads alive now were runnable but waiting for a CPU,
# in µs (schedstat's second field): time that other processes on the same cores took.
rq_wait_us() { schedstat_us "$1" 2; }

# schedstat_us PID FIELD: FIELD of /proc/PID/task/*/schedstat (ns) summed over the threads, in µs.
schedstat_us() {
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk -v f="$2" '{ ns += $f } END { printf "%.0f\n", ns / 1000 }'
}

# sys_ctx PID: "system-µs context-switches" of a process so far: its system CPU (field 15 of
# /proc/PID/stat) and the voluntary + involuntary switches of its threads alive now (each is
# a wake-up: a hand-over between threads, a wait on a socket).
sys_ctx() {
    local sys ctx
    sys=$(awk -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%.0f\n", $13 * 1e6 / hz }' "/proc/$1/stat")
    ctx=$(cat /proc/"$1"/task/*/status 2>/dev/null |
        awk '/^(non)?voluntary_ctxt_switches:/ { n += $2 } END { print n + 0 }')
    echo "$sys $ctx"
}

# cpu_per_job CPU0 CPU1 N: µs of CPU per job.
cpu_per_job() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.1f\n", (b - a) / n }'; }

# scale_world: the buildings and clients files of the scale scenario's kone-sim.
scale_world() {
    jq --argjson n "$S_BLD" --argjson base "$S_BASE" '{buildings: [range(0; $n) as $i |
        .buildings[0] | .id = "building:\($base + $i)" | .name = "scale tower \($i)"]}' \
        "$KD_ROOT/sim/buildings.json" >"$TMP/s-buildings.json"
    jq --argjson n "$S_BLD" --argjson base "$S_BASE" '[.[] | select(.client_id == "kd-dev") |
        .scopes = ["application/inventory"] + [range(0; $n) | "callgiving/building:\($base + .)"]]' \
        "$KD_ROOT/sim/clients.json" >"$TMP/s-clients.json"
}

# sjobs FILE N NB: N destination calls dealt evenly over NB buildings x 2 groups (job i to
# the pair i mod 2 NB); group 1 from the lobby to floors 2..11 but the locked 9, group 2 from
# the lobby to floors 12..20 (the tower's sky-lobby group also serves floor 1).
sjobs() {
    jq -cn --arg p "$PREFIX-$RANDOM-" --argjson n "$2" --argjson nb "$3" --argjson base "$S_BASE" \
        --argjson now "$(date +%s%3N)" \
        'range(1; $n + 1) as $i | ($i % (2 * $nb)) as $pair | ($pair % $nb) as $b |
         (($pair - $b) / $nb + 1) as $g | {v: 1, job_id: ($p + ($i | tostring)),
          building_id: "building:\($base + $b)", group_id: ($g | tostring), op: "call",
          created_at: $now, deadline: ($now + 3600000), area: 1000, action: 2,
          destination: ((if $g == 1 then [2, 3, 4, 5, 6, 7, 8, 10, 11] else
            [12, 13, 14, 15, 16, 17, 18, 19, 20] end)[$i % 9] * 1000)}' >"$1"
}

# scale_run NAME NB: S_N jobs over NB buildings of the scale world, one worker on a fresh
# kone-sim; sets S_RATE (jobs/s), S_CPU (µs per job), S_RSS (peak KiB) and S_OK (jobs
# succeeded).
scale_run() {
    local q="$PREFIX.s-$1" port c0 c1
    sjobs "$TMP/$q.jobs" "$S_N" "$2"
    # shellcheck disable=SC2046 # queue_env prints NAME=VALUE words (no spaces) to split
    env $(queue_env "$q") "$BIN/kone-producer" "$TMP/$q.jobs" >/dev/null 2>>"$TMP/producer.log" ||
        kd_die "kone-producer failed to publish to $q (see $TMP/producer.log)"
    SIM_BUILDINGS=$TMP/s-buildings.json SIM_CLIENTS=$TMP/s-clients.json start_sim "s-$1"
    start_worker "s-$1" "$q"
    port=$(metrics_port "s-$1")
    wait_ready "$port"
    c0=$(cpu_us "$WPID")
    wait_done "$S_N" 1200 "$port"
    c1=$(cpu_us "$WPID")
    S_RSS=$(rss "$WPID" VmHWM)
    stop_worker "$WPID"
    stop_sim
    summary "s-$1"
    S_CPU=$(cpu_per_job "$c0" "$c1" "$S_N")
    S_RATE=$(rate "$TMP/s-$1.timings")
    S_OK=$(awk '$8 == "final" && $7 == "succeeded" { n++ } END { print n + 0 }' "$TMP/s-$1.timings")
}

# scale_scenario: both runs and their figures.
scale_scenario() {
    log "scale: $S_N jobs over $S_BLD buildings x 2 groups, then over one building's 2 groups"
    scale_world
    scale_run spread "$S_BLD"
    local r_spread=$S_RATE c_spread=$S_CPU m_spread=$S_RSS ok_spread=$S_OK
    scale_run one 1
    fig scale.spread_jobs_per_s "$r_spread" "jobs/s (one worker, $S_N jobs over $S_BLD buildings x 2 groups)"
    fig scale.spread_succeeded "$ok_spread" "of $S_N jobs succeeded"
    fig scale.spread_cpu_us_per_job "$c_spread" "µs of worker CPU per job (user + system)"
    fig scale.spread_rss_peak "$m_spread" "KiB (peak)"
    fig scale.one_jobs_per_s "$S_RATE" "jobs/s (one worker, the same $S_N jobs over 1 building x 2 groups)"
    fig scale.one_succeeded "$S_OK" "of $S_N jobs succeeded"
    fig scale.one_cpu_us_per_job "$S_CPU" "µs of worker CPU per job (user + system)"
    fig scale.one_rss_peak "$S_RSS" "KiB (peak)"
    fig scale.cpu_ratio "$(div "$c_spread" "$S_CPU")" "CPU per job, $S_BLD buildings against 1"
    fig scale.rate_ratio "$(div "$r_spread" "$S_RATE")" "jobs/s, $S_BLD buildings against 1"
    S_PER_BLD=$(awk -v a="$m_spread" -v b="$S_RSS" -v n="$S_BLD" 'BEGIN { printf "%.1f\n", (a - b) / (n - 1) }')
    fig scale.rss_per_building "$S_PER_BLD" "KiB per building in use ((spread - one) / $((S_BLD - 1)))"
}
