#!/usr/bin/env bash
# ops.runbook: RUNBOOK.md serves every alert of alerts/*.rules.yml:
#   - each alert's runbook_url fragment resolves to a heading of RUNBOOK.md under GitHub's
#     anchor rules, and that heading is the alert's own section (its name);
#   - each alert section says what it means, who is affected, how to confirm, how to
#     mitigate and when to escalate (the bold labels **Meaning.**, **Impact.**, **Confirm.**,
#     **Mitigate.**, **Escalate.**);
#   - the procedures exist (scale and drain, replay dead letters, rotate KONE credentials,
#     KONE outage, broker failover), and every in-page link (#anchor) resolves.
set -euo pipefail
SRC=${KD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export KD_SRC_DIR=$SRC
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import yaml' 2>/dev/null; then PY=$p; break; fi
done
[[ -n $PY ]] || { echo "FAIL: no python3 with PyYAML (scripts/bootstrap installs python3-yaml)"; exit 1; }

PYTHONPATH="$SRC/tests/ops/lib" "$PY" - <<'PYEOF'
import re, sys
import opscheck as oc

problems = []
rb = oc.path("RUNBOOK.md")
anchors = oc.headings(rb)
lines = open(rb, encoding="utf-8").read().splitlines()

def section(heading_text):
    """Lines of the section that starts at this heading, up to the next heading of the
    same or a higher level."""
    out, level, fence = None, None, False
    for line in lines:
        if line.lstrip().startswith("```"):
            fence = not fence
        m = None if fence else re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m and out is not None and len(m.group(1)) <= level:
            break
        if m and out is None and m.group(2) == heading_text:
            out, level = [], len(m.group(1))
            continue
        if out is not None:
            out.append(line)
    return "\n".join(out or [])

alerts = [r for _, r in oc.rules() if "alert" in r]
for r in alerts:
    name = r["alert"]
    url = r.get("annotations", {}).get("runbook_url", "")
    frag = url.split("#", 1)[1] if "#" in url else ""
    if not frag:
        problems.append("%s: runbook_url %r has no #anchor" % (name, url))
        continue
    if frag not in anchors:
        problems.append("%s: runbook_url anchor #%s is not a heading of RUNBOOK.md" % (name, frag))
        continue
    if anchors[frag].strip() != name:
        problems.append("%s: #%s leads to heading %r, not the alert's own section" % (name, frag, anchors[frag]))
        continue
    body = section(anchors[frag])
    for part in ("Meaning", "Impact", "Confirm", "Mitigate", "Escalate"):
        if not re.search(r"\*\*%s\.?\*\*" % part, body):
            problems.append("%s: its RUNBOOK section lacks **%s**" % (name, part))
    if "```" not in body:
        problems.append("%s: its RUNBOOK section shows no command to run" % name)

for want in ("scale-and-drain-workers", "replay-dead-letters", "rotate-kone-credentials",
             "kone-outage", "broker-failover"):
    if want not in anchors:
        problems.append("RUNBOOK.md: procedure #%s missing" % want)

text = open(rb, encoding="utf-8").read()
for frag in sorted(set(re.findall(r"\]\(#([^)]+)\)", text))):
    if frag not in anchors:
        problems.append("RUNBOOK.md: link #%s resolves to no heading" % frag)

print("%d alerts, %d headings in RUNBOOK.md" % (len(alerts), len(anchors)))
sys.exit(oc.report(problems, "runbook"))
PYEOF
