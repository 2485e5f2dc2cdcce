#!/usr/bin/env bash
# ops.training: the training labs (docs/training/labs.md) stay true to scripts/drill and to
# the alert rules, without a stack:
#   - every alert of alerts/*.rules.yml has a lab, a `### <AlertName>` section, and the lab
#     either runs `scripts/drill <scenario>` with a scenario whose expected alert (in
#     `scripts/drill --list`) is that alert, or says why no drill can cause it (a line
#     starting `**No drill.**`);
#   - every `scripts/drill <scenario>` named anywhere in docs/training/ and docs/drills.md
#     is a scenario of `scripts/drill --list`;
#   - every scenario of `scripts/drill --list` expects an alert the rules define;
#   - every lab links the alert's RUNBOOK.md section (#anchor of its runbook_url).
set -euo pipefail
SRC=${KD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export KD_SRC_DIR=$SRC
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import yaml' 2>/dev/null; then PY=$p; break; fi
done
[[ -n $PY ]] || { echo "FAIL: no python3 with PyYAML (scripts/bootstrap installs python3-yaml)"; exit 1; }

# --list needs no stack, no build and no broker: it prints and exits before anything starts.
list=$(bash "$SRC/scripts/drill" --list) || { echo "FAIL: scripts/drill --list failed"; exit 1; }

PYTHONPATH="$SRC/tests/ops/lib" "$PY" - "$list" <<'PYEOF'
import glob, re, sys
import opscheck as oc

problems = []
scenarios = {}
for line in sys.argv[1].splitlines():
    parts = line.split()
    if len(parts) >= 2:
        scenarios[parts[0]] = parts[1]
if len(scenarios) < 4:
    problems.append("scripts/drill --list printed %d scenarios: the parse above broke" % len(scenarios))

alerts = {r["alert"]: r for _, r in oc.rules() if "alert" in r}
for name, alert in sorted(scenarios.items()):
    if alert not in alerts:
        problems.append("scenario %s expects %s, which no rule file defines" % (name, alert))

DRILL_REF = re.compile(r"scripts/drill(?:[ \t]+--[a-z-]+(?:[ =][^\s`-][^\s`]*)?)*[ \t]+([a-z][a-z0-9-]*)")
docs = sorted(glob.glob(oc.path("docs/training/*.md"))) + [oc.path("docs/drills.md")]
for f in docs:
    text = open(f, encoding="utf-8").read()
    for m in DRILL_REF.finditer(text):
        if m.group(1) not in scenarios:
            problems.append("%s names scripts/drill %s, not a scenario of scripts/drill --list"
                            % (f[len(oc.path("")):], m.group(1)))

labs_path = oc.path("docs/training/labs.md")
labs = open(labs_path, encoding="utf-8").read()
sections = {}
for m in re.finditer(r"^### (\S+)\n(.*?)(?=^#{1,3} |\Z)", labs, re.M | re.S):
    sections[m.group(1)] = m.group(2)
for alert, rule in sorted(alerts.items()):
    body = sections.get(alert)
    if body is None:
        problems.append("%s has no lab (### %s in docs/training/labs.md)" % (alert, alert))
        continue
    named = [m.group(1) for m in DRILL_REF.finditer(body)]
    own = [n for n in named if scenarios.get(n) == alert]
    if not own and not re.search(r"^\*\*No drill\.\*\* \S", body, re.M):
        problems.append("lab %s runs no drill that expects %s (named: %s) and gives no **No drill.** reason"
                        % (alert, alert, ", ".join(named) or "none"))
    frag = rule.get("annotations", {}).get("runbook_url", "#").split("#", 1)[1]
    if "RUNBOOK.md#" + frag not in body:
        problems.append("lab %s does not link its RUNBOOK section (RUNBOOK.md#%s)" % (alert, frag))
for name in sorted(set(sections) - set(alerts)):
    problems.append("lab %s is for no alert of the rules" % name)

sys.exit(oc.report(problems, "training labs: %d alerts, %d drill scenarios" % (len(alerts), len(scenarios))))
PYEOF
