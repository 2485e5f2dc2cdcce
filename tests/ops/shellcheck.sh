#!/usr/bin/env bash
# ops.shellcheck: every shell script of the tree (scripts/, tests/, .ci/, and any file whose
# shebang names bash or sh) passes shellcheck with the settings of .shellcheckrc, and every
# `shellcheck disable=` directive in them says why on its own line (`disable=SCnnnn # reason`).
# A missing shellcheck is a failure, not a skip: CI must never pass a check it could not run.
set -euo pipefail
SRC=${KD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
cd "$SRC"
command -v shellcheck >/dev/null || { echo "FAIL: shellcheck missing (scripts/bootstrap)"; exit 1; }

# The tree's files: git's list where there is one (no build or state folders), else find.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git ls-files --cached --others --exclude-standard)
else
    mapfile -t files < <(find . -path ./.git -prune -o -path './build*' -prune -o -path ./.dev -prune \
        -o -type f -print | sed 's|^\./||')
fi
scripts=()
for f in "${files[@]}"; do
    [[ -f $f ]] || continue
    if [[ $f == *.sh ]] || head -n1 "$f" | grep -qE '^#!.*\b(ba)?sh\b'; then
        scripts+=("$f")
    fi
done
# Fewer would mean the search above broke, not that the tree shrank.
((${#scripts[@]} >= 40)) || { echo "FAIL: found only ${#scripts[@]} scripts"; exit 1; }

fail=0
# Each test re-reads the libraries it sources, so the files are split over the cores.
printf '%s\0' "${scripts[@]}" | xargs -0 -n 6 -P "$(nproc)" shellcheck -f gcc || fail=1
unjustified=$(grep -nE '#[[:space:]]*shellcheck[[:space:]].*disable=' "${scripts[@]}" |
    grep -vE 'disable=[A-Z0-9,]+[[:space:]]+#[[:space:]]*[^[:space:]]' || true)
if [[ -n $unjustified ]]; then
    echo "FAIL: shellcheck disable without a reason (add '# why' after it):"
    echo "$unjustified"
    fail=1
fi
((fail == 0)) && echo "ok: ${#scripts[@]} scripts clean under shellcheck $(shellcheck --version | awk '/^version/ {print $2}')"
exit "$fail"
