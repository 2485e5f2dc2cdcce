#!/usr/bin/env bash
# ops.chart_monitoring: the monitoring the chart ships is the repository's, unchanged:
#   - the PrometheusRule holds exactly the rule groups of alerts/*.rules.yml (same groups in
#     file order, same intervals, same rules: every alert and record, expr, for, labels and
#     annotations equal after parsing both as YAML);
#   - one dashboard ConfigMap per dashboards/*.json, whose data is the file byte for byte
#     (and so the same JSON), labelled for Grafana's sidecar; no ConfigMap for a file that
#     is not there.
# Checked for the defaults and for every environment whose values file keeps them on.
# alerts/ and dashboards/ reach the chart through the symlinks charts/kone-dispatch/files/*
# (ops.chart_lint checks them); an empty alerts/ or dashboards/ is a failure here, since
# the chart would then refuse to render.
# shellcheck source=lib/chart.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/chart.sh"

shopt -s nullglob
rules=("$SRC"/alerts/*.rules.yml)
boards=("$SRC"/dashboards/*.json)
((${#rules[@]})) || { echo "FAIL: alerts/ has no *.rules.yml: nothing for the PrometheusRule (the chart refuses to render with metrics.prometheusRule.enabled)"; exit 1; }
((${#boards[@]})) || { echo "FAIL: dashboards/ has no *.json: nothing for the dashboard ConfigMaps (the chart refuses to render with metrics.dashboards.enabled)"; exit 1; }

rendered=()
for e in default dev staging prod; do
    args=()
    [[ $e == default ]] || args=(-f "$CHART/values-$e.yaml")
    if ! "$HELM" template kone-dispatch "$CHART" "${args[@]}" >"$tmp/$e.yaml" 2>"$tmp/err"; then
        grep -v 'found symbolic link in path' "$tmp/err" | sed 's/^/  | /'
        echo "FAIL: helm template ($e)"
        exit 1
    fi
    rendered+=("$e=$tmp/$e.yaml")
done

"$PY" - "$SRC" "${rendered[@]}" <<'PYEOF'
import glob, json, os, sys
import yaml

src = sys.argv[1]
problems = []
want_groups = []
for f in sorted(glob.glob(os.path.join(src, "alerts", "*.rules.yml"))):
    doc = yaml.safe_load(open(f, encoding="utf-8")) or {}
    want_groups += doc.get("groups") or []
want_rules = [r for g in want_groups for r in g.get("rules", [])]
boards = {os.path.basename(f): open(f, "rb").read().decode("utf-8")
          for f in sorted(glob.glob(os.path.join(src, "dashboards", "*.json")))}

def rule_id(r):
    return ("alert", r["alert"]) if "alert" in r else ("record", r.get("record"))

def diff_groups(got, want):
    """Human-readable differences between two lists of rule groups."""
    out = []
    if [g.get("name") for g in got] != [g.get("name") for g in want]:
        out.append("groups %s, alerts/ has %s" % ([g.get("name") for g in got], [g.get("name") for g in want]))
        return out
    for gg, wg in zip(got, want):
        for k in sorted(set(gg) | set(wg)):
            if k != "rules" and gg.get(k) != wg.get(k):
                out.append("group %s: %s is %r, alerts/ has %r" % (wg["name"], k, gg.get(k), wg.get(k)))
        gr = {rule_id(r): r for r in gg.get("rules", [])}
        wr = {rule_id(r): r for r in wg.get("rules", [])}
        for i in sorted(set(wr) - set(gr)):
            out.append("group %s: %s %s missing" % (wg["name"], i[0], i[1]))
        for i in sorted(set(gr) - set(wr)):
            out.append("group %s: %s %s is not in alerts/" % (wg["name"], i[0], i[1]))
        for i in sorted(set(gr) & set(wr)):
            for k in sorted(set(gr[i]) | set(wr[i])):
                if gr[i].get(k) != wr[i].get(k):
                    out.append("group %s: %s %s: %s differs:\n      chart:   %r\n      alerts/: %r"
                               % (wg["name"], i[0], i[1], k, gr[i].get(k), wr[i].get(k)))
        if [rule_id(r) for r in gg.get("rules", [])] != [rule_id(r) for r in wg.get("rules", [])] and not out:
            out.append("group %s: rules in another order" % wg["name"])
    return out

for arg in sys.argv[2:]:
    case, path = arg.split("=", 1)
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    values = yaml.safe_load(open(os.path.join(src, "charts", "kone-dispatch", "values.yaml")))
    env_file = os.path.join(src, "charts", "kone-dispatch", "values-%s.yaml" % case)
    env_values = yaml.safe_load(open(env_file)) if os.path.exists(env_file) else {}
    def enabled(part):
        v = (env_values.get("metrics", {}) or {}).get(part, {}) or {}
        return v.get("enabled", values["metrics"][part]["enabled"])
    p = lambda m: problems.append("%s: %s" % (case, m))

    prs = [d for d in docs if d["kind"] == "PrometheusRule"]
    if enabled("prometheusRule"):
        if len(prs) != 1:
            p("expected one PrometheusRule, found %d" % len(prs))
        else:
            got = prs[0]["spec"].get("groups", [])
            d = diff_groups(got, want_groups)
            if d or got != want_groups:
                p("the PrometheusRule is not alerts/*.rules.yml:\n    " + "\n    ".join(d or ["(differs)"]))
    elif prs:
        p("metrics.prometheusRule.enabled is false but a PrometheusRule was rendered")

    cms = [d for d in docs if d["kind"] == "ConfigMap"
           and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "dashboards"]
    if enabled("dashboards"):
        seen = {}
        for cm in cms:
            for k, v in (cm.get("data") or {}).items():
                seen.setdefault(k, []).append((cm, v))
            if cm["metadata"].get("labels", {}).get("grafana_dashboard") != "1":
                p("dashboard ConfigMap %s lacks the grafana_dashboard label" % cm["metadata"]["name"])
        for name, text in boards.items():
            if name not in seen:
                p("dashboards/%s has no ConfigMap" % name)
            elif len(seen[name]) != 1:
                p("dashboards/%s is in %d ConfigMaps" % (name, len(seen[name])))
            elif seen[name][0][1] != text:
                same_json = json.loads(seen[name][0][1]) == json.loads(text)
                p("dashboard %s differs from dashboards/%s (%s)" % (seen[name][0][0]["metadata"]["name"], name,
                  "same JSON, other bytes" if same_json else "different JSON"))
        for name in sorted(set(seen) - set(boards)):
            p("ConfigMap key %s is not a file in dashboards/" % name)
    elif cms:
        p("metrics.dashboards.enabled is false but dashboard ConfigMaps were rendered")
    if not [x for x in problems if x.startswith(case + ":")]:
        print("ok: %s: PrometheusRule %s, dashboards %s" % (
            case, "%d groups, %d rules = alerts/" % (len(want_groups), len(want_rules)) if prs else "off",
            "%d = dashboards/" % len(boards) if cms else "off"))

if problems:
    for x in problems:
        print("FAIL: " + x)
    sys.exit(1)
print("chart_monitoring: ok (%d rule groups, %d rules, %d dashboards)" % (len(want_groups), len(want_rules), len(boards)))
PYEOF
