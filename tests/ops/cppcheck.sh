#!/usr/bin/env bash
# ops.cppcheck: cppcheck finds nothing in the C sources of the tree (library, programs, tests,
# benchmarks) with its style, warning, performance and portability checks. The few findings it
# cannot see through are suppressed where they are (`// cppcheck-suppress ID ; reason`), and
# this test fails on a suppression without its reason. System headers are not read (slow, and
# not ours); tests/ops/lib/cppcheck.h shows it the library macros it must expand.
# A missing cppcheck is a failure, not a skip.
set -euo pipefail
SRC=${KD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
cd "$SRC"
command -v cppcheck >/dev/null || { echo "FAIL: cppcheck missing (scripts/bootstrap)"; exit 1; }

dirs=(shared/src worker producer events sim tests/unit tests/integration bench)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cppcheck --enable=style,warning,performance,portability --std=c11 --inline-suppr --quiet \
    --error-exitcode=1 -j "$(nproc)" -D_GNU_SOURCE -DKD_VERSION='"0"' -Ishared/include \
    --include=tests/ops/lib/cppcheck.h --template='{file}:{line}: {severity} {id}: {message}' \
    "${dirs[@]}" 2>"$out" || true
fail=0
if [[ -s $out ]]; then
    echo "FAIL: cppcheck findings:"
    cat "$out"
    fail=1
fi
unjustified=$(grep -rnE 'cppcheck-suppress' "${dirs[@]}" | grep -vE 'cppcheck-suppress [A-Za-z]+ ; [^[:space:]]' || true)
if [[ -n $unjustified ]]; then
    echo "FAIL: cppcheck-suppress without '; reason':"
    echo "$unjustified"
    fail=1
fi
((fail == 0)) && echo "ok: cppcheck $(cppcheck --version | awk '{print $2}') finds nothing in ${dirs[*]}"
exit "$fail"
