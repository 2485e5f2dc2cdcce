#!/usr/bin/env bash
# ops.chart_lint: charts/kone-dispatch passes `helm lint --strict` and renders with
# `helm template`, with its defaults and with each environment's values file
# (values-dev.yaml, values-staging.yaml, values-prod.yaml); every rendered document has a
# kind, an apiVersion and a name. Also: files/alerts and files/dashboards are the symlinks
# to the repository's alerts/ and dashboards/ that keep one source of truth (copies would
# drift), a packaged chart (helm package copies the symlinks' content) renders the same as the
# checkout, and the chart's appVersion is the project's version (CMakeLists.txt), so the
# default image tag is the release's.
#
# Helm comes from scripts/bootstrap-tools (KD_HELM overrides).
# shellcheck source=lib/chart.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/chart.sh"
# Helm notes every symlink it follows on stderr ("walk.go: found symbolic link"): expected.
helm_noise() { grep -v 'found symbolic link in path' || true; }

# --- one source of truth for rules and dashboards ---
for d in alerts dashboards; do
    link=$CHART/files/$d
    if [[ ! -L $link ]]; then
        fail "charts/kone-dispatch/files/$d is not a symlink (it must point to ../../../$d, not be a copy)"
    elif [[ $(readlink -f "$link") != $(readlink -f "$SRC/$d") ]]; then
        fail "charts/kone-dispatch/files/$d points to $(readlink "$link"), not to the repository's $d/"
    fi
done

# --- appVersion follows the project version ---
project_version=$(sed -n 's/^project([^)]*VERSION \([0-9][0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt" | head -n1)
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$CHART/Chart.yaml")
[[ -n $project_version && $project_version == "$app_version" ]] ||
    fail "Chart.yaml appVersion '$app_version' is not the project version '$project_version' (CMakeLists.txt)"

# --- lint and render, defaults and each environment ---
envs=(default)
for f in "$CHART"/values-*.yaml; do
    e=${f##*/values-}
    envs+=("${e%.yaml}")
done
((${#envs[@]} == 4)) || fail "expected values-dev.yaml, values-staging.yaml and values-prod.yaml, found: ${envs[*]:1}"
for e in dev staging prod; do
    [[ -f $CHART/values-$e.yaml ]] || fail "charts/kone-dispatch/values-$e.yaml is missing"
done

for e in "${envs[@]}"; do
    args=()
    [[ $e == default ]] || args=(-f "$CHART/values-$e.yaml")
    if ! "$HELM" lint --strict "$CHART" "${args[@]}" >"$tmp/lint.log" 2>&1; then
        helm_noise <"$tmp/lint.log" | sed 's/^/  | /'
        fail "helm lint --strict ($e)"
        continue
    fi
    if ! "$HELM" template kone-dispatch "$CHART" --namespace kone-dispatch "${args[@]}" \
        >"$tmp/$e.yaml" 2>"$tmp/err.log"; then
        helm_noise <"$tmp/err.log" | sed 's/^/  | /'
        fail "helm template ($e)"
        continue
    fi
    if ! summary=$("$PY" - "$tmp/$e.yaml" <<'PYEOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
bad = [i for i, d in enumerate(docs)
       if not (d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name"))]
if not docs or bad:
    print("documents without apiVersion/kind/metadata.name: %s" % bad or "none rendered")
    sys.exit(1)
kinds = {}
for d in docs:
    kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
print(", ".join("%d %s" % (n, k) for k, n in sorted(kinds.items())))
PYEOF
    ); then
        fail "helm template ($e): $summary"
        continue
    fi
    echo "ok: $e: lint --strict, template: $summary"
done

# --- a packaged chart carries the rules and dashboards (Helm copies the symlinks' content) ---
if "$HELM" package "$CHART" -d "$tmp/pkg" >"$tmp/pkg.log" 2>&1 &&
    "$HELM" template kone-dispatch "$tmp"/pkg/kone-dispatch-*.tgz --namespace kone-dispatch >"$tmp/pkg.yaml" 2>"$tmp/err.log"; then
    if cmp -s "$tmp/pkg.yaml" "$tmp/default.yaml"; then
        echo "ok: helm package: the packaged chart renders the same as the checkout"
    else
        fail "the packaged chart renders differently from the checkout (did the symlinked files get in?)"
        diff "$tmp/default.yaml" "$tmp/pkg.yaml" | head -n 10 | sed 's/^/  | /'
    fi
else
    helm_noise <"$tmp/pkg.log" | sed 's/^/  | /'
    helm_noise <"$tmp/err.log" | sed 's/^/  | /'
    fail "helm package, or rendering the package"
fi

if ((fails)); then
    echo "chart_lint: $fails failure(s)"
    exit 1
fi
echo "chart_lint: ok"
