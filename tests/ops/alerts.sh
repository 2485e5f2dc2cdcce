#!/usr/bin/env bash
# ops.alerts: the Prometheus rules in alerts/ load (promtool check rules), their unit tests
# pass (promtool test rules), and they are complete:
#   - every alert has severity (critical|warning), summary, description and a runbook_url
#     into RUNBOOK.md (the anchors themselves are ops.runbook's job);
#   - every alert has, in alerts/tests/*.yml, a case where it must fire (exp_alerts not
#     empty) and a near miss where it must not (exp_alerts: []), and the near miss feeds at
#     least one series the alert depends on (so a typo cannot make it pass vacuously);
#   - every metric a rule names is exported by the worker (docs/metrics.md), by RabbitMQ
#     (tests/ops/rabbitmq-metrics.txt), recorded by a rule, or Prometheus' own `up`.
set -euo pipefail
SRC=${KD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export KD_SRC_DIR=$SRC
command -v promtool >/dev/null || { echo "FAIL: promtool missing (scripts/bootstrap installs Debian's prometheus)"; exit 1; }
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import yaml' 2>/dev/null; then PY=$p; break; fi
done
[[ -n $PY ]] || { echo "FAIL: no python3 with PyYAML (scripts/bootstrap installs python3-yaml)"; exit 1; }

shopt -s nullglob
rules=("$SRC"/alerts/*.rules.yml)
tests=("$SRC"/alerts/tests/*.yml)
((${#rules[@]})) || { echo "FAIL: no alerts/*.rules.yml"; exit 1; }
((${#tests[@]})) || { echo "FAIL: no alerts/tests/*.yml"; exit 1; }

promtool check rules "${rules[@]}"
(cd "$SRC/alerts/tests" && promtool test rules "${tests[@]##*/}")

PYTHONPATH="$SRC/tests/ops/lib" "$PY" - <<'PYEOF'
import glob, os, sys
import yaml
import opscheck as oc

problems = []
rules = oc.rules()
alerts = {r["alert"]: r for _, r in rules if "alert" in r}
records = {r["record"]: r for _, r in rules if "record" in r}
known = oc.known_names()
if not alerts:
    problems.append("no alerts found")

for f, r in rules:
    what = r.get("alert") or r.get("record")
    for n in sorted(oc.metric_names(r["expr"]) - known):
        problems.append("%s: %s names unknown metric %s" % (os.path.basename(f), what, n))

for name, r in alerts.items():
    sev = r.get("labels", {}).get("severity")
    if sev not in ("critical", "warning"):
        problems.append("%s: severity %r (want critical or warning)" % (name, sev))
    ann = r.get("annotations", {})
    for k in ("summary", "description", "runbook_url"):
        if not str(ann.get(k, "")).strip():
            problems.append("%s: annotation %s missing" % (name, k))
    url = ann.get("runbook_url", "")
    if url and not url.startswith(oc.RUNBOOK_BASE + "#"):
        problems.append("%s: runbook_url %s is not %s#<anchor>" % (name, url, oc.RUNBOOK_BASE))

def raw_metrics(expr, depth=0):
    """Metric names an expression depends on, through recording rules."""
    out = set()
    for n in oc.metric_names(expr):
        if n in records and depth < 10:
            out |= raw_metrics(records[n]["expr"], depth + 1)
        else:
            out.add(n)
    return out

def base(series):
    return series.split("{", 1)[0].strip()

# A near miss is a test group in which the alert is never expected to fire, fed with at
# least one series the alert reads: early evaluations of a firing case (before `for:` has
# passed) do not count as near misses.
fires, misses = {}, {}
for tf in sorted(glob.glob(os.path.join(oc.SRC, "alerts", "tests", "*.yml"))):
    doc = yaml.safe_load(open(tf, encoding="utf-8"))
    for t in doc.get("tests", []):
        fed = {base(s["series"]) for s in t.get("input_series", [])}
        expected = {}
        for c in t.get("alert_rule_test", []) or []:
            a = c["alertname"]
            if a not in alerts:
                problems.append("%s: test %r is about unknown alert %s" % (os.path.basename(tf), t.get("name"), a))
                continue
            expected[a] = expected.get(a, False) or bool(c.get("exp_alerts"))
        for a, fired in expected.items():
            if fired:
                fires.setdefault(a, []).append(t.get("name"))
            elif fed & raw_metrics(alerts[a]["expr"]):
                misses.setdefault(a, []).append(t.get("name"))
            else:
                problems.append("%s: near miss %r feeds no series %s reads" % (os.path.basename(tf), t.get("name"), a))

for a in sorted(alerts):
    if a not in fires:
        problems.append("%s: no test case where it must fire" % a)
    if a not in misses:
        problems.append("%s: no near-miss test case (exp_alerts: [] on series the alert reads)" % a)

print("%d alerts, %d recording rules; %d firing cases, %d near misses" % (
    len(alerts), len(records), sum(map(len, fires.values())), sum(map(len, misses.values()))))
sys.exit(oc.report(problems, "alerts"))
PYEOF
