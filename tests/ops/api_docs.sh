#!/usr/bin/env bash
# ops.api_docs: the C API reference is complete (docs/api.md). Doxygen runs over
# shared/include with docs/Doxyfile and must print no warning: every public function, type,
# struct member, enum value and macro is documented. Doxygen says nothing about a header that
# lacks a @file block (it skips the file whole), so each header must have one. And the check
# itself is checked: a copy of the headers with one comment removed must make Doxygen warn.
set -euo pipefail
SRC=${KD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
command -v doxygen >/dev/null || { echo "FAIL: doxygen missing (scripts/bootstrap installs it)"; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$SRC"

for h in shared/include/*.h; do
    grep -q "@file $(basename "$h")" "$h" || fail "$h has no '@file $(basename "$h")' block: Doxygen would skip it"
done

# doxy OUT [EXTRA CONFIG LINE]: runs Doxygen with docs/Doxyfile; warnings in OUT/warnings.log.
doxy() {
    mkdir -p "$1"
    { cat docs/Doxyfile; [ -z "${2:-}" ] || echo "$2"; } | KD_DOXY_OUT=$1 doxygen - >"$1/stdout.log" 2>&1 ||
        fail "doxygen failed: $(tail -n 5 "$1/stdout.log")"
}
doxy "$T/real"
if [ -s "$T/real/warnings.log" ]; then
    echo "FAIL: Doxygen warns on shared/include ($(wc -l <"$T/real/warnings.log") warnings):"
    head -n 30 "$T/real/warnings.log"
    exit 1
fi
[ -f "$T/real/html/kd__producer_8h.html" ] || fail "no HTML page for kd_producer.h"

# the negative control: kd_producer_close loses its comment
mkdir "$T/inc"
cp shared/include/*.h "$T/inc/"
grep -q '^/\*\* Closes the connection and frees the producer' "$T/inc/kd_producer.h" ||
    fail "the control's comment is gone from kd_producer.h: update this test"
sed -i '/^\/\*\* Closes the connection and frees the producer/d' "$T/inc/kd_producer.h"
doxy "$T/control" "INPUT = $T/inc"
grep -q 'kd_producer_close.*is not documented' "$T/control/warnings.log" ||
    fail "Doxygen did not notice an undocumented function: the check proves nothing"
echo "ops.api_docs: $(find shared/include -maxdepth 1 -name "*.h" | wc -l) headers, no Doxygen warning (and an undocumented function is caught)"
