# shellcheck shell=bash disable=SC2034 # its variables are read by the scripts that source it
# tests/ops/lib/chart.sh: what the chart_*.sh ops tests share. Sourced, never run.
# Sets SRC (the checkout), CHART, HELM (scripts/bootstrap-tools builds it; KD_HELM overrides)
# and PY (a python3 with PyYAML); makes $tmp, removed at exit; `fail MSG` prints and counts a
# failure in $fails. A missing tool is a failure, not a skip: CI must never pass a chart test
# it could not run.
set -euo pipefail
SRC=${KD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
CHART=$SRC/charts/kone-dispatch
HELM=${KD_HELM:-${KD_CACHE_DIR:-$HOME/.cache/kone-dispatch}/bin/helm}
[[ -x $HELM ]] || { echo "FAIL: no helm at $HELM (scripts/bootstrap-tools builds it)"; exit 1; }
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import yaml' 2>/dev/null; then PY=$p; break; fi
done
[[ -n $PY ]] || { echo "FAIL: no python3 with PyYAML (scripts/bootstrap-tools installs it)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}
