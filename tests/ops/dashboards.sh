#!/usr/bin/env bash
# ops.dashboards: every Grafana dashboard in dashboards/ is valid JSON with the template
# variables `datasource` (a Prometheus data source) and `building`; every panel queries
# through ${datasource}; every query parses (each is wrapped as a recording rule in a
# temporary rule file, Grafana's $variables replaced, and `promtool check rules` parses it
# offline); and every metric a query names is exported by the worker (docs/metrics.md),
# by RabbitMQ (tests/ops/rabbitmq-metrics.txt), recorded by alerts/*.rules.yml, or
# Prometheus' own `up`.
set -euo pipefail
SRC=${KD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export KD_SRC_DIR=$SRC
command -v promtool >/dev/null || { echo "FAIL: promtool missing (scripts/bootstrap installs Debian's prometheus)"; exit 1; }
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import yaml' 2>/dev/null; then PY=$p; break; fi
done
[[ -n $PY ]] || { echo "FAIL: no python3 with PyYAML (scripts/bootstrap installs python3-yaml)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

PYTHONPATH="$SRC/tests/ops/lib" "$PY" - "$tmp/queries.rules.yml" <<'PYEOF'
import os, sys
import opscheck as oc

problems, exprs = [], []
known = oc.known_names()
files = oc.dashboard_files()
if len(files) < 3:
    problems.append("expected the overview, KONE API and brokers dashboards, found %d" % len(files))
for f in files:
    base = os.path.basename(f)
    try:
        d = oc.load_json(f)
    except ValueError as e:
        problems.append("%s: not JSON: %s" % (base, e))
        continue
    for k in ("uid", "title", "panels"):
        if not d.get(k):
            problems.append("%s: %s missing" % (base, k))
    tv = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = tv.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("%s: template variable datasource (type datasource, query prometheus) missing" % base)
    if "building" not in tv:
        problems.append("%s: template variable building missing" % base)
    ids = set()
    for p in oc.panels(d):
        title = p.get("title", "?")
        if p.get("type") == "row":
            continue
        if p.get("id") in ids:
            problems.append("%s: panel id %s twice" % (base, p.get("id")))
        ids.add(p.get("id"))
        targets = p.get("targets") or []
        if not targets:
            problems.append("%s: panel %r has no query" % (base, title))
        for t in targets:
            dsu = (t.get("datasource") or p.get("datasource") or {}).get("uid")
            if dsu != "${datasource}":
                problems.append("%s: panel %r does not use ${datasource}" % (base, title))
            expr = t.get("expr", "")
            if not expr.strip():
                problems.append("%s: panel %r has an empty query" % (base, title))
                continue
            exprs.append(("%s: %s" % (base, title), oc.grafana_to_promql(expr)))
            for n in sorted(oc.metric_names(expr) - known):
                problems.append("%s: panel %r names %s, which neither the worker nor RabbitMQ exports" % (base, title, n))
    if "building" in tv:
        q = tv["building"].get("query")
        q = q.get("query") if isinstance(q, dict) else q
        for n in sorted(oc.metric_names(q.replace("label_values(", "(").split(",")[0] + ")") - known):
            problems.append("%s: variable building reads %s, not exported" % (base, n))
open(sys.argv[1], "w").write(oc.wrap_as_rules(exprs))
open(sys.argv[1] + ".index", "w").write("\n".join(n for n, _ in exprs) + "\n")
print("%d dashboards, %d queries" % (len(files), len(exprs)))
sys.exit(oc.report(problems, "dashboards"))
PYEOF

# Parse every query: promtool names the failing rule (parse_check:expr_N = line N+1 of the index).
if ! out=$(promtool check rules "$tmp/queries.rules.yml" 2>&1); then
    echo "$out"
    grep -o 'parse_check:expr_[0-9]*' <<<"$out" | sort -u | while read -r r; do
        echo "FAIL: query does not parse: $(sed -n "$((${r##*_} + 1))p" "$tmp/queries.rules.yml.index")"
    done
    exit 1
fi
echo "every query parses (promtool)"
