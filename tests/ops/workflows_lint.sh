#!/usr/bin/env bash
# ops.workflows_lint: the GitHub Actions workflows in .github/workflows/ pass actionlint
# (syntax, expressions, action inputs, and shellcheck on every `run:` script when shellcheck
# is installed), and do what the project needs from them:
#   - on every push and pull request, a job runs the project's test command (scripts/test or
#     .ci/run, which includes the sanitizer build) and a job lints and renders the chart for
#     dev, staging and prod (scripts/deploy <env> --dry-run) and runs the chart checks;
#   - on main only, after both pass: the image is built from the Dockerfile the repository
#     has and pushed, then `scripts/deploy staging` runs with that image;
#   - on a version tag only: `scripts/deploy prod`, in the `prod` environment (whose required
#     reviewers are the approval);
#   - no `${{ secrets.* }}` expanded inside a run script (passed through env instead), and
#     every action pinned to a version.
# actionlint comes from scripts/bootstrap-tools (KD_ACTIONLINT overrides).
set -euo pipefail
SRC=${KD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
ACTIONLINT=${KD_ACTIONLINT:-${KD_CACHE_DIR:-$HOME/.cache/kone-dispatch}/bin/actionlint}
[[ -x $ACTIONLINT ]] || { echo "FAIL: no actionlint at $ACTIONLINT (scripts/bootstrap-tools builds it)"; exit 1; }
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import yaml' 2>/dev/null; then PY=$p; break; fi
done
[[ -n $PY ]] || { echo "FAIL: no python3 with PyYAML (scripts/bootstrap-tools installs it)"; exit 1; }

shopt -s nullglob
workflows=("$SRC"/.github/workflows/*.yml "$SRC"/.github/workflows/*.yaml)
((${#workflows[@]})) || { echo "FAIL: no workflows in .github/workflows/"; exit 1; }

fails=0
command -v shellcheck >/dev/null || echo "note: shellcheck not installed; actionlint checks the run scripts' syntax only"
if (cd "$SRC" && "$ACTIONLINT" -no-color "${workflows[@]#"$SRC"/}"); then
    echo "ok: actionlint: ${#workflows[@]} workflow(s) clean"
else
    echo "FAIL: actionlint found problems (above)"
    fails=1
fi

if ! "$PY" - "$SRC" "${workflows[@]}" <<'PYEOF'; then
import os, re, sys
import yaml

src, files = sys.argv[1], sys.argv[2:]
problems = []
jobs = {}  # name -> (file, job, triggers)
for f in files:
    doc = yaml.safe_load(open(f, encoding="utf-8"))
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` as true
    if isinstance(on, str):
        on = {on: None}
    elif isinstance(on, list):
        on = {k: None for k in on}
    for name, job in (doc.get("jobs") or {}).items():
        jobs[name] = (os.path.basename(f), job, on or {})

def runs(job):
    return "\n".join(str(s.get("run", "")) for s in job.get("steps", []))

def cond(job):
    return str(job.get("if", ""))

def needs(job):
    n = job.get("needs", [])
    return [n] if isinstance(n, str) else n

def find(pred):
    return [(n, j) for n, (f, j, on) in jobs.items() if pred(n, j, on)]

# --- every push and pull request: the tests, the chart ---
def on_all(on):
    push = on.get("push", {}) or {}
    branches = push.get("branches")
    return "pull_request" in on and "push" in on and (branches is None or "**" in branches or "*" in branches)

tests = find(lambda n, j, on: on_all(on) and not cond(j) and re.search(r"(^|\s|/)(scripts/test|\.ci/run)\b", runs(j)))
if not tests:
    problems.append("no unconditional job on push and pull_request runs scripts/test (or .ci/run, its CI entry)")
chart = find(lambda n, j, on: on_all(on) and not cond(j) and "tests/ops/chart_" in runs(j)
             and all(re.search(r"scripts/deploy\b[^\n]*--dry-run", runs(j)) and
                     (e in runs(j) or "for env in dev staging prod" in runs(j)) for e in ("dev", "staging", "prod")))
if not chart:
    problems.append("no unconditional job on push and pull_request renders dev, staging and prod "
                    "(scripts/deploy <env> --dry-run) and runs tests/ops/chart_*.sh")

# --- main: image, then staging ---
image = find(lambda n, j, on: any("docker/build-push-action" in str(s.get("uses", "")) for s in j.get("steps", [])))
if len(image) != 1:
    problems.append("expected one job building the image with docker/build-push-action, found %d" % len(image))
for n, j in image:
    c = cond(j)
    if "refs/heads/main" not in c:
        problems.append("image job %s is not limited to main (if: %r)" % (n, c))
    if not ({t[0] for t in tests[:1]} | {t[0] for t in chart[:1]}) <= set(needs(j)):
        problems.append("image job %s does not need the test and chart jobs (needs: %s)" % (n, needs(j)))
    for s in j.get("steps", []):
        if "docker/build-push-action" in str(s.get("uses", "")):
            w = s.get("with", {})
            df = w.get("file", "Dockerfile")
            if not os.path.isfile(os.path.join(src, w.get("context", "."), df)):
                problems.append("image job builds %s, which the repository does not have" % df)
            if str(w.get("push")).lower() != "true":
                problems.append("image job does not push")
image_name = image[0][0] if image else None

staging = find(lambda n, j, on: re.search(r"scripts/deploy\s+staging\b(?![^\n]*--dry-run)", runs(j)))
prod = find(lambda n, j, on: re.search(r"scripts/deploy\s+prod\b(?![^\n]*--dry-run)", runs(j)))
for label, found, ref, env in (("staging", staging, "refs/heads/main", "staging"), ("prod", prod, "refs/tags/v", "prod")):
    if len(found) != 1:
        problems.append("expected one job running scripts/deploy %s, found %d" % (label, len(found)))
        continue
    n, j = found[0]
    if ref not in cond(j):
        problems.append("deploy %s job %s is not limited to %s (if: %r)" % (label, n, ref, cond(j)))
    if label == "staging" and "refs/tags" in cond(j):
        problems.append("deploy staging job %s also runs on tags" % n)
    if label == "prod" and "refs/heads" in cond(j):
        problems.append("deploy prod job %s also runs on branches" % n)
    e = j.get("environment")
    e = e.get("name") if isinstance(e, dict) else e
    if e != env:
        problems.append("deploy %s job %s runs in environment %r, expected %r (its approval and secrets)" % (label, n, e, env))
    if image_name and image_name not in needs(j):
        problems.append("deploy %s job %s does not need the image job %s" % (label, n, image_name))

# --- hygiene ---
for n, (f, j, on) in jobs.items():
    for s in j.get("steps", []):
        if re.search(r"\$\{\{\s*secrets\.", str(s.get("run", ""))):
            problems.append("%s: job %s expands a secret inside a run script (pass it through env:)" % (f, n))
        u = str(s.get("uses", ""))
        if u and not u.startswith("./") and not re.search(r"@(v\d+(\.\d+)*|[0-9a-f]{40})$", u):
            problems.append("%s: job %s uses %s without a version" % (f, n, u))

for p in problems:
    print("FAIL: " + p)
if problems:
    sys.exit(1)
print("ok: tests (%s) and chart (%s) on every push/PR; image (%s) then staging (%s) on main; prod (%s) on v* tags, environment prod"
      % (tests[0][0], chart[0][0], image_name, staging[0][0], prod[0][0]))
PYEOF
    fails=1
fi

if ((fails)); then
    echo "workflows_lint: failed"
    exit 1
fi
echo "workflows_lint: ok"
