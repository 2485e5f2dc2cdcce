#!/usr/bin/env bash
# ops.alertmanager: alerts/alertmanager.yml is a valid Alertmanager configuration and routes
# every alert the rules can raise where its severity says:
#   - `amtool check-config` passes;
#   - for every alert of alerts/*.rules.yml, `amtool config routes test` with its labels
#     (alertname, severity, and a building for per-building alerts) resolves to exactly the
#     receiver of its severity (critical: oncall-pager, warning: team-ticket); an alert without
#     severity still reaches a receiver (unrouted), none is dropped;
#   - every inhibition rule names alerts that exist (a renamed alert would silently end it),
#     and the receivers keep their credentials in files (no key or URL in the file).
# amtool: scripts/bootstrap-tools builds it (KD_AMTOOL overrides). A missing tool is a failure.
set -euo pipefail
SRC=${KD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export KD_SRC_DIR=$SRC
AMTOOL=${KD_AMTOOL:-${KD_CACHE_DIR:-$HOME/.cache/kone-dispatch}/bin/amtool}
[[ -x $AMTOOL ]] || { echo "FAIL: no amtool at $AMTOOL (scripts/bootstrap-tools amtool builds it)"; exit 1; }
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import yaml' 2>/dev/null; then PY=$p; break; fi
done
[[ -n $PY ]] || { echo "FAIL: no python3 with PyYAML (scripts/bootstrap-tools installs it)"; exit 1; }
CFG=$SRC/alerts/alertmanager.yml

"$AMTOOL" check-config "$CFG"

export AMTOOL CFG
PYTHONPATH="$SRC/tests/ops/lib" "$PY" - <<'PYEOF'
import os, re, subprocess, sys
import yaml
import opscheck as oc

amtool, cfg = os.environ["AMTOOL"], os.environ["CFG"]
want = {"critical": "oncall-pager", "warning": "team-ticket", None: "unrouted"}
problems = []

def route(labels):
    out = subprocess.run([amtool, "config", "routes", "test", "--config.file=" + cfg] +
                         ["%s=%s" % kv for kv in sorted(labels.items())],
                         capture_output=True, text=True)
    if out.returncode != 0:
        problems.append("amtool routes test %s: %s" % (labels, out.stderr.strip()))
        return None
    return out.stdout.strip()

alerts = {r["alert"]: r for _, r in oc.rules() if "alert" in r}
for name, r in sorted(alerts.items()):
    sev = (r.get("labels") or {}).get("severity")
    labels = {"alertname": name, "severity": sev} if sev else {"alertname": name}
    if re.search(r"\bby\s*\(\s*building\s*\)", r["expr"]):
        labels["building"] = "building:9990000951"
    got = route(labels)
    if got is not None and got != want[sev]:
        problems.append("%s (severity %s) goes to %r, expected %r" % (name, sev, got, want[sev]))
got = route({"alertname": "SomethingNew"})
if got != want[None]:
    problems.append("an alert without severity goes to %r, expected %r" % (got, want[None]))

doc = yaml.safe_load(open(cfg, encoding="utf-8"))
for i, rule in enumerate(doc.get("inhibit_rules", [])):
    for side in ("source_matchers", "target_matchers"):
        for m in rule.get(side, []):
            mm = re.match(r'alertname(=~|=)"(.*)"$', m)
            if not mm:
                continue
            rx = mm.group(2) if mm.group(1) == "=~" else re.escape(mm.group(2))
            names = [a for a in alerts if re.fullmatch(rx, a)]
            if not names:
                problems.append("inhibit rule %d: %s %s matches no alert of the rules" % (i, side, m))
            elif mm.group(1) == "=~":
                for part in mm.group(2).split("|"):
                    if ".*" not in part and part not in alerts:
                        problems.append("inhibit rule %d: %s names %s, which is no alert" % (i, side, part))
text = open(cfg, encoding="utf-8").read()
for key in ("routing_key:", "service_key:", "api_url:", "auth_password:", "bot_token:"):
    if re.search(r"^\s*(-\s*)?%s" % key, text, re.M):
        problems.append("alertmanager.yml holds a credential value (%s): use the *_file form" % key)

print("%d alerts routed, %d inhibit rules" % (len(alerts), len(doc.get("inhibit_rules", []))))
sys.exit(oc.report(problems, "alertmanager"))
PYEOF
