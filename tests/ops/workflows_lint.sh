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
#   - prod runs the digest that passed staging: no job builds an image on a tag; the image job
#     (main) scans it (Trivy or Grype), makes its SBOM (Syft) and signs it with cosign keyless
#     (id-token: write); the staging job attests the digest after its deploy; a promote job on
#     tags verifies that attestation, tags the same digest (imagetools create, no build) and
#     records the digest in the tag's release; deploy prod needs promote, not the image job,
#     and passes promote's digest to scripts/deploy;
#   - the deploy jobs install Helm with a release action (azure/setup-helm) at HELM_VERSION =
#     tools/go.mod's Helm, not scripts/bootstrap-tools (which compiles it);
#   - a manual rollback workflow (workflow_dispatch) takes an environment and a Helm revision
#     and runs `helm rollback` in that environment;
#   - no `${{ secrets.* }}` expanded inside a run script (passed through env instead); every
#     `uses:` pinned to a 40-hex commit SHA with its version in a comment (`@<sha> # vX.Y.Z`);
#     .github/dependabot.yml updates github-actions, docker and the tools' gomod (/tools).
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
    if "refs/heads/main" not in c or "refs/tags" in c:
        problems.append("image job %s is not limited to main (if: %r): a tag promotes, it never builds" % (n, c))
    uses = [str(s.get("uses", "")) for s in j.get("steps", [])]
    if not any(re.match(r"(aquasecurity/trivy-action|anchore/scan-action)@", u) for u in uses):
        problems.append("image job %s has no image scan (aquasecurity/trivy-action or anchore/scan-action)" % n)
    if not any(u.startswith("anchore/sbom-action@") for u in uses):
        problems.append("image job %s makes no SBOM (anchore/sbom-action, Syft)" % n)
    if not re.search(r"cosign sign --yes [^\n]*@\$", runs(j)) or "sigstore/cosign-installer@" not in " ".join(uses):
        problems.append("image job %s does not sign the pushed digest with cosign (cosign sign --yes REPO@DIGEST)" % n)
    if (j.get("permissions") or {}).get("id-token") != "write":
        problems.append("image job %s lacks permissions id-token: write (cosign keyless signs with the OIDC token)" % n)
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
    if label == "staging" and image_name and image_name not in needs(j):
        problems.append("deploy %s job %s does not need the image job %s" % (label, n, image_name))
    if re.search(r"scripts/bootstrap-tools\b", runs(j)) or not any(
            str(s.get("uses", "")).startswith("azure/setup-helm@") for s in j.get("steps", [])):
        problems.append("deploy %s job %s does not install Helm with azure/setup-helm (or still compiles it)" % (label, n))

# --- digest promotion: prod runs what staging ran ---
STAGED = None
if len(staging) == 1:
    n, j = staging[0]
    m = re.search(r"cosign attest --yes --type \"?\$(\w+)", runs(j))
    if not m:
        problems.append("deploy staging job %s does not attest the digest after deploying (cosign attest --yes --type $TYPE)" % n)
    else:
        STAGED = m.group(1)
    after = [i for i, s in enumerate(j.get("steps", [])) if "cosign attest" in str(s.get("run", ""))]
    deploy = [i for i, s in enumerate(j.get("steps", [])) if re.search(r"scripts/deploy\s+staging", str(s.get("run", "")))]
    if after and deploy and after[0] < deploy[0]:
        problems.append("deploy staging job %s attests before it deploys" % n)
if len(prod) == 1:
    n, j = prod[0]
    promote = [p for p in needs(j) if p in jobs]
    if image_name in needs(j):
        problems.append("deploy prod job %s needs the image job: prod must promote staging's digest, not build" % n)
    if len(promote) != 1:
        problems.append("deploy prod job %s must need exactly one promote job (needs: %s)" % (n, needs(j)))
    else:
        pn = promote[0]
        pj = jobs[pn][1]
        env = {}
        for s in j.get("steps", []):
            if re.search(r"scripts/deploy\s+prod", str(s.get("run", ""))):
                env = s.get("env") or {}
                m = re.search(r'--digest\s+"?\$(\w+)', str(s.get("run", "")))
                if not m or ("needs.%s.outputs.digest" % pn) not in str(env.get(m.group(1), "")):
                    problems.append("deploy prod job %s does not pass %s's digest to scripts/deploy --digest" % (n, pn))
        if any("docker/build-push-action" in str(s.get("uses", "")) for s in pj.get("steps", [])) or \
                re.search(r"docker (buildx )?build\b", runs(pj)):
            problems.append("promote job %s builds an image" % pn)
        if "refs/tags/v" not in cond(pj):
            problems.append("promote job %s is not limited to version tags (if: %r)" % (pn, cond(pj)))
        if not re.search(r"cosign verify-attestation --type \"?\$%s\b" % (STAGED or "NONE"), runs(pj)):
            problems.append("promote job %s does not verify the staging attestation (cosign verify-attestation --type $%s)" % (pn, STAGED))
        if "refs/heads/main" not in runs(pj) or "--certificate-identity" not in runs(pj):
            problems.append("promote job %s does not pin the signer to this workflow on refs/heads/main" % pn)
        if not re.search(r"imagetools create --tag [^\n]*@\$", runs(pj)):
            problems.append("promote job %s does not tag the staged digest (docker buildx imagetools create --tag ... REPO@DIGEST)" % pn)
        if not re.search(r"gh release (create|edit)[^\n]*", runs(pj)) or "$DIGEST" not in runs(pj):
            problems.append("promote job %s does not record the digest in the tag's release" % pn)

# --- hygiene ---
for n, (f, j, on) in jobs.items():
    for s in j.get("steps", []):
        if re.search(r"\$\{\{\s*secrets\.", str(s.get("run", ""))):
            problems.append("%s: job %s expands a secret inside a run script (pass it through env:)" % (f, n))
        u = str(s.get("uses", ""))
        if u and not u.startswith("./") and not re.search(r"@[0-9a-f]{40}$", u):
            problems.append("%s: job %s uses %s: not pinned to a 40-hex commit SHA" % (f, n, u))

# The raw lines: the version each SHA stands for, in a comment (YAML drops comments), so a
# reader and Dependabot know it.
for f in files:
    for no, line in enumerate(open(f, encoding="utf-8"), 1):
        m = re.match(r"\s*(?:-\s*)?uses:\s*(\S+)(.*)$", line)
        if m and not m.group(1).startswith("./") and not re.match(r"\s*#\s*v\d+(\.\d+)*\b", m.group(2)):
            problems.append("%s:%d: %s has no `# vX.Y.Z` comment naming the version its SHA is" % (os.path.basename(f), no, m.group(1)))

# Helm: the deploy jobs' release binary is the one the tests build (tools/go.mod).
gomod = os.path.join(src, "tools", "go.mod")
helm = re.search(r"^\s*helm\.sh/helm/v3 (v\S+)", open(gomod).read(), re.M) if os.path.isfile(gomod) else None
if not helm:
    problems.append("tools/go.mod does not require helm.sh/helm/v3 (scripts/bootstrap-tools reads its version there)")
for f in files:
    for v in re.findall(r"^\s*HELM_VERSION:\s*(\S+)", open(f, encoding="utf-8").read(), re.M):
        if helm and v != helm.group(1):
            problems.append("%s: HELM_VERSION %s, tools/go.mod has %s" % (os.path.basename(f), v, helm.group(1)))

# --- the manual rollback ---
rb = []
for n, (f, j, on) in jobs.items():
    if "workflow_dispatch" in on and re.search(r"helm\b[^\n]*\brollback kone-dispatch \"?\$", runs(j)):
        rb.append((f, n, j, on))
if len(rb) != 1:
    problems.append("expected one workflow_dispatch job running `helm rollback kone-dispatch $REVISION`, found %d" % len(rb))
else:
    f, n, j, on = rb[0]
    inputs = ((on.get("workflow_dispatch") or {}).get("inputs") or {})
    if "revision" not in inputs or "environment" not in inputs:
        problems.append("%s: the rollback takes no `revision` and `environment` inputs (has %s)" % (f, sorted(inputs)))
    e = j.get("environment")
    e = e.get("name") if isinstance(e, dict) else e
    if "inputs.environment" not in str(e):
        problems.append("%s: job %s does not run in the chosen environment (its approval and KUBECONFIG)" % (f, n))

# --- Dependabot ---
dep = os.path.join(src, ".github", "dependabot.yml")
if not os.path.isfile(dep):
    problems.append("no .github/dependabot.yml")
else:
    eco = {(u.get("package-ecosystem"), u.get("directory")) for u in (yaml.safe_load(open(dep)) or {}).get("updates", [])}
    for want in (("github-actions", "/"), ("docker", "/"), ("gomod", "/tools")):
        if want not in eco:
            problems.append(".github/dependabot.yml does not update %s in %s" % want)

for p in problems:
    print("FAIL: " + p)
if problems:
    sys.exit(1)
print("ok: tests (%s) and chart (%s) on every push/PR; image (%s: scan, SBOM, signed) then staging (%s, attests) on main; "
      "on v* tags %s promotes the staged digest to prod (%s, environment prod); rollback: %s; every action SHA-pinned; Dependabot"
      % (tests[0][0], chart[0][0], image_name, staging[0][0], needs(prod[0][1])[0], prod[0][0], rb[0][0]))
PYEOF
    fails=1
fi

if ((fails)); then
    echo "workflows_lint: failed"
    exit 1
fi
echo "workflows_lint: ok"
