#!/usr/bin/env bash
# it_metrics_lint: the /metrics exposition of a worker under load is valid and consistent.
# One worker (16 in flight) on a private kone-sim with latency and 3% of calls answered 500
# (so the worker retries), fed in the background with ~2,000 jobs of every kind: good
# destination calls, calls KONE rejects (jobs.sh's whole rejection table, some rows many
# times, the site-link-down row that ends `unknown`: KONE accepted it and never said more),
# calls to a group whose every call KONE answers 500 (they fail and are dead-lettered), jobs
# past their deadline, and two undecodable messages. The exposition is scraped about once a second
# while the jobs run and once after; every scrape must pass:
#   - `promtool check metrics`: exit 0 and no lint problem printed;
#   - checks promtool does not make (check_exposition below): every family has exactly one
#     # HELP and one # TYPE, every sample belongs to a typed family, no series twice, no NaN
#     anywhere, counters and histogram parts finite and >= 0, histogram buckets cumulative
#     with le="+Inf" equal to _count; and against the previous scrape: no counter went down.
# Proves, beyond the format: at least 3 scrapes were taken mid-load (jobs counted but not all),
# and the last one agrees with what reached Kafka: kone_jobs_total per outcome equals the
# results per outcome, and the retries, dead letters, API statuses and histograms the load
# caused are there with non-zero counts.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/jobs.sh"

N_GOOD=${IT_LINT_GOOD:-1700}
N_REJ=100 # per repeated rejection row (3 rows)
N_EXPIRED=30
export INFLIGHT=16
CHECK=$IT_DIR/check_exposition.py

cat >"$CHECK" <<'EOF'
# check_exposition.py SCRAPE [PREVIOUS]: the checks of the header of it_metrics_lint.sh;
# prints one line per problem (exit 1) or a one-line summary (exit 0).
import math, re, sys
line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(\s+-?\d+)?$')
def parse(path):
    helps, types, samples, problems = {}, {}, {}, []
    for n, line in enumerate(open(path), 1):
        line = line.rstrip('\n')
        if not line:
            continue
        if line.startswith('# HELP ') or line.startswith('# TYPE '):
            parts = line.split(' ', 3)
            d = helps if parts[1] == 'HELP' else types
            if parts[2] in d:
                problems.append(f'line {n}: second # {parts[1]} for {parts[2]}')
            d[parts[2]] = parts[3] if len(parts) > 3 else ''
            continue
        if line.startswith('#'):
            continue
        m = line_re.match(line)
        if not m:
            problems.append(f'line {n}: not a sample: {line}')
            continue
        name, labels, value = m.group(1), m.group(2) or '', m.group(3)
        if (name, labels) in samples:
            problems.append(f'line {n}: series {name}{labels} twice')
        try:
            samples[(name, labels)] = float(value)
        except ValueError:
            problems.append(f'line {n}: value {value!r} is not a number')
    return helps, types, samples, problems
def family(name, types):
    if name in types:
        return name, types[name]
    for suffix in ('_bucket', '_sum', '_count'):
        base = name[:-len(suffix)]
        if name.endswith(suffix) and types.get(base) == 'histogram':
            return base, 'histogram'
    return None, None
def without_le(labels):
    pairs = re.findall(r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"', labels)
    rest = [p for p in pairs if not p.startswith('le=')]
    return '{' + ','.join(rest) + '}' if rest else ''
helps, types, samples, problems = parse(sys.argv[1])
for f in set(helps) ^ set(types):
    problems.append(f'{f}: # HELP without # TYPE or the other way round')
hist = {}
for (name, labels), v in samples.items():
    fam, typ = family(name, types)
    if fam is None:
        problems.append(f'{name}{labels}: sample of no family with # HELP and # TYPE')
        continue
    if math.isnan(v):
        problems.append(f'{name}{labels}: NaN')
    elif typ in ('counter', 'histogram') and (math.isinf(v) or v < 0):
        problems.append(f'{name}{labels}: {v} in a {typ}')
    if typ == 'histogram':
        h = hist.setdefault((fam, without_le(labels)), {'buckets': []})
        if name.endswith('_bucket'):
            le = re.search(r'le="([^"]*)"', labels).group(1)
            h['buckets'].append((float(le), v))
        else:
            h[name[len(fam) + 1:]] = v
for (fam, labels), h in hist.items():
    b = sorted(h['buckets'])
    if not b or b[-1][0] != math.inf:
        problems.append(f'{fam}{labels}: no le="+Inf" bucket')
    elif 'count' not in h or 'sum' not in h or b[-1][1] != h['count']:
        problems.append(f'{fam}{labels}: +Inf bucket {b[-1][1]} != _count {h.get("count")} (or no _sum)')
    if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
        problems.append(f'{fam}{labels}: buckets not cumulative: {b}')
if len(sys.argv) > 2:
    _, ptypes, prev, _ = parse(sys.argv[2])
    for (name, labels), v in samples.items():
        fam, typ = family(name, types)
        if typ in ('counter', 'histogram') and (name, labels) in prev and v < prev[(name, labels)]:
            problems.append(f'{name}{labels}: counter went down from {prev[(name, labels)]} to {v}')
for p in problems:
    print(p)
if not problems:
    print(f'{len(types)} families, {len(samples)} samples, {len(hist)} histogram series')
sys.exit(1 if problems else 0)
EOF

# scrape FILE: /metrics into FILE (an answer within 5 s, status 200).
scrape() {
    local code
    code=$(curl -sS --max-time 5 -o "$1" -w '%{http_code}' "http://127.0.0.1:$PORT/metrics") ||
        it_fail "GET /metrics got no answer within 5 s"
    [ "$code" = 200 ] || it_fail "GET /metrics answered $code"
}

# lint FILE [PREVIOUS]: promtool and check_exposition.py on one scrape; fails on any problem.
lint() {
    local out rc=0
    out=$(promtool check metrics <"$1" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
        it_fail "promtool check metrics on $(basename "$1") (exit $rc): $out"
    fi
    out=$(python3 "$CHECK" "$@") || it_fail "$(basename "$1"): $(head -n 20 <<<"$out")"
    it_log "$(basename "$1"): promtool clean; $out"
}

# value FILE SERIES: the value of one series (exact name and labels) in a scrape; 0 if absent.
value() { awk -v s="$2" '$1 == s {v = $2} END {print v + 0}' "$1"; }
# sum FILE REGEX: the sum of the series whose name{labels} matches REGEX.
sum() { awk -v r="$2" '$1 ~ r {v += $2} END {print v + 0}' "$1"; }

# The jobs, all in one file, shuffled so every kind runs during the whole load.
{
    it_jobs_good "$N_GOOD"
    it_jobs rej-dest "$N_REJ" '{v: 1, area: 1000, action: 2, destination: 99000}'
    it_jobs rej-same "$N_REJ" '{v: 1, area: 3000, action: 2, destination: 3000}'
    it_jobs rej-locked "$N_REJ" '{v: 1, area: 1000, action: 2, destination: 9000}'
    it_jobs doomed 10 '{v: 1, group_id: "2", area: 11000, action: 2, destination: 15000}'
    # shellcheck disable=SC2016 # $now is jq's, not the shell's
    it_jobs expired "$N_EXPIRED" '{v: 1, area: 1000, action: 2, destination: 5000,
        created_at: ($now - 120000), deadline: ($now - 60000)}'
    jobs_refused
} | shuf >"$IT_DIR/jobs.jsonl"
N=$(wc -l <"$IT_DIR/jobs.jsonl")
printf '\x93\x01\x02' >"$IT_DIR/junk.bin"

t0=$SECONDS
it_start_sim --sim-faults='{"latency_ms":20,"jitter_ms":40,"call_error":{"share":0.03,"status":500},
    "buildings":{"building:9990000951":{"groups":{"2":{"call_error":{"share":1,"status":500}}}}}}'
# retry.max_requeues 4: the site-link-down row opens building 952's circuit, and when the
# shuffle puts the group-out-of-service row (952 too) after it, that job bounces circuit_open
# through the 10 s tier until its requeue limit: 20 trips made the test 170 s instead of 30
# (it ends requeue_limit either way; a job failed for 500s makes at most 2 trips).
it_fault_worker w1 KD_KONE_CALL_TIMEOUT_MS=4000 KD_RETRY_MAX_ATTEMPTS=3 KD_RETRY_MAX_REQUEUES=4
PORT=$(it_metrics_port w1)
scrape "$IT_DIR/scrape-0-idle.prom"
lint "$IT_DIR/scrape-0-idle.prom"

it_log "publishing $N jobs and 2 undecodable messages in the background"
(
    it_publish_raw "$IT_PREFIX-junk-1" "$IT_DIR/junk.bin"
    it_publish "$IT_DIR/jobs.jsonl"
    it_publish_raw "$IT_PREFIX-junk-2" "$IT_DIR/junk.bin"
) >"$IT_DIR/publisher.log" 2>&1 &
PUBLISHER=$!

# Scrape about once a second until every job is counted (or 300 s passed).
prev=$IT_DIR/scrape-0-idle.prom
mid=0
i=0
while :; do
    i=$((i + 1))
    f=$IT_DIR/scrape-$i.prom
    scrape "$f"
    lint "$f" "$prev"
    prev=$f
    done_jobs=$(sum "$f" '^kone_jobs_total[{]')
    if [ "${done_jobs%.*}" -ge "$N" ]; then
        break
    elif [ "${done_jobs%.*}" -gt 0 ]; then
        mid=$((mid + 1))
    fi
    [ $((SECONDS - t0)) -lt 300 ] || it_fail "only $done_jobs of $N jobs counted in kone_jobs_total after 300 s"
    sleep 1
done
wait "$PUBLISHER" || it_fail "publishing failed: $(tail -n 3 "$IT_DIR/publisher.log" "$IT_DIR/producer.log")"
[ "$(grep -c '"confirmed"' "$IT_DIR/jobs.jsonl.report")" -eq "$N" ] || it_fail "not all $N jobs confirmed"
it_log "$mid scrapes taken mid-load ($i in all)"
[ "$mid" -ge 3 ] || it_fail "only $mid scrapes were taken while the jobs ran: the load proved nothing"

# After the load: all results in Kafka, then the final scrape.
it_wait_ids "$N" 120
sleep 2 # the undecodable messages' dead letters and the last gauges settle
final=$IT_DIR/scrape-final.prom
scrape "$final"
lint "$final" "$prev"
it_check_reconciled 0

# The last scrape tells what happened: per outcome, the same counts as the results in Kafka.
for o in succeeded rejected failed expired unknown; do
    want=$(jq -s --arg o "$o" 'map(select(.outcome == $o)) | length' "$IT_DIR/results.jsonl")
    got=$(sum "$final" "^kone_jobs_total[{].*outcome=\"$o\"")
    [ "${got%.*}" -eq "$want" ] || it_fail "kone_jobs_total outcome=$o is $got, Kafka holds $want such results"
    [ "$want" -gt 0 ] || it_fail "no job ended $o: the load did not cover it"
done
it_log "kone_jobs_total agrees with Kafka: $(jq -sc 'group_by(.outcome) | map({(.[0].outcome): length}) | add' "$IT_DIR/results.jsonl")"
for s in 'kone_retries_total{reason="server_error"}' \
    'kone_dead_letters_total{reason="undecodable"}' 'kone_dead_letters_total{reason="failed"}' \
    'kone_api_request_duration_seconds_count{call_type="action",status="5xx"}' \
    'kone_api_request_duration_seconds_count{call_type="action",status="2xx"}' \
    'kone_job_duration_seconds_count{op="call"}' 'kone_job_queued_seconds_count' \
    'kone_token_refreshes_total{result="ok"}'; do
    v=$(value "$final" "$s")
    [ "$(awk -v v="$v" 'BEGIN {print (v > 0)}')" = 1 ] || it_fail "$s is $v after the load"
done
[ "$(value "$final" 'kone_deliveries_total')" -ge "$((N + 2))" ] ||
    it_fail "kone_deliveries_total $(value "$final" kone_deliveries_total) < $((N + 2)) messages published"
[ "$(value "$final" 'kone_inflight_jobs')" = 0 ] || it_fail "kone_inflight_jobs $(value "$final" kone_inflight_jobs) after the load"

it_stop_worker w1
it_stop_sim
it_drop_queues
it_log "PASS in $((SECONDS - t0))s"
