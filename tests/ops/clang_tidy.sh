#!/usr/bin/env bash
# ops.clang_tidy: clang-tidy, with the checked-in .clang-tidy, finds nothing in the sources of the
# library and the programs (shared, worker, producer, events, sim), compiled as the build compiles
# them (KD_BIN_DIR/compile_commands.json). Tests, benchmarks and generated files are left out.
#
# Why a filtered copy of compile_commands.json: the unit tests compile the worker's sources into
# each test program, so the build's database holds worker/kone.c some twenty times, and clang-tidy
# analyses a file once per entry (that made a trial cost 16 CPU minutes). One entry per file, the
# program's own (the first), brings it to about 200 CPU seconds, nearly all clang-analyzer.
#
# A suppression is `// NOLINT(check): reason` (or NOLINTNEXTLINE); the test fails on one without a
# named check and a reason, and on a check turned off in .clang-tidy without its `# -check: reason`.
# Run alone: `ctest -R ops.clang_tidy` from the build directory, or KD_BIN_DIR=build bash THIS;
# KD_TIDY_ONLY=REGEX limits the run to the sources whose path matches (while fixing a finding).
# A missing clang-tidy is a failure, not a skip.
set -euo pipefail
SRC=${KD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BIN=${KD_BIN_DIR:-$SRC/build}
cd "$SRC"
command -v run-clang-tidy >/dev/null && command -v clang-tidy >/dev/null ||
    { echo "FAIL: clang-tidy or run-clang-tidy missing (scripts/bootstrap installs clang-tidy)"; exit 1; }
[[ -f $BIN/compile_commands.json ]] || { echo "FAIL: no $BIN/compile_commands.json (configure first)"; exit 1; }

dirs=(shared worker producer events sim)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=$(python3 - "$SRC" "$BIN" "$tmp/compile_commands.json" "${dirs[@]}" <<'PY'
import json, os, sys
src, bindir, out, dirs = os.path.realpath(sys.argv[1]), os.path.realpath(sys.argv[2]), sys.argv[3], sys.argv[4:]
seen, keep = set(), []
for e in json.load(open(os.path.join(bindir, 'compile_commands.json'))):
    f = os.path.realpath(os.path.join(e['directory'], e['file']))
    rel = os.path.relpath(f, src)
    # Generated sources live in the build directory; ours are under one of dirs.
    if f.startswith(bindir + os.sep) or rel.split(os.sep)[0] not in dirs or f in seen:
        continue
    seen.add(f)
    keep.append(e)
json.dump(keep, open(out, 'w'), indent=1)
print(len(keep))
PY
)
((n >= 50)) || { echo "FAIL: only $n product sources in $BIN/compile_commands.json"; exit 1; }

# gcc's own flags (-Wno-format-truncation) are unknown to clang: not a finding.
t=$SECONDS
rc=0
run-clang-tidy -p "$tmp" -j "$(nproc)" -quiet -extra-arg=-Wno-unknown-warning-option \
    -header-filter="^$SRC/(shared/include|shared/src|worker|producer|events|sim)/[^/]+\.h$" \
    ${KD_TIDY_ONLY:+"$KD_TIDY_ONLY"} >"$tmp/out" 2>&1 || rc=$?
sed -E 's/\x1b\[[0-9;]*m//g' "$tmp/out" >"$tmp/plain"
# A header's finding is reported once per file that includes it: count each place once.
grep -E '^/[^ ]+:[0-9]+:[0-9]+: (warning|error): ' "$tmp/plain" | sed "s|^$SRC/||" | sort -u >"$tmp/found" || true
fail=0
if [[ -s $tmp/found ]]; then
    echo "FAIL: clang-tidy findings ($(wc -l <"$tmp/found")):"
    cat "$tmp/found"
    fail=1
elif ((rc != 0)); then
    echo "FAIL: run-clang-tidy exited $rc without a finding it could name:"
    tail -n 30 "$tmp/plain"
    fail=1
fi
unjustified=$(grep -rnE 'NOLINT' "${dirs[@]}" --include='*.[ch]' |
    grep -vE 'NOLINT(NEXTLINE)?\([A-Za-z0-9.,-]+\): [^[:space:]]' || true)
if [[ -n $unjustified ]]; then
    echo "FAIL: NOLINT without '(check): reason':"
    echo "$unjustified"
    fail=1
fi
while read -r off; do
    grep -qE "^# ${off//./\\.}: [^[:space:]]" .clang-tidy || { echo "FAIL: .clang-tidy turns off ${off#-} without '# $off: reason'"; fail=1; }
done < <(sed -n '/^Checks:/,/^[A-Za-z]/p' .clang-tidy | grep -oE '^ +-[a-z][a-zA-Z0-9.-]+' | tr -d ' ')
((fail == 0)) && echo "ok: clang-tidy $(clang-tidy --version | awk '/version/ {print $NF}') finds nothing in $n sources of ${dirs[*]} ($((SECONDS - t)) s)"
exit "$fail"
