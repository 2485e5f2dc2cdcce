#!/usr/bin/env bash
# ops.clang_format: every C source and header of the tree is laid out as .clang-format says
# (clang-format --dry-run --Werror). docs/ is left out: docs/producer-example.c is the verbatim
# copy of the example in docs/producer.md (test_producer compares them).
# Fix a finding with `clang-format -i FILE`. A missing clang-format is a failure, not a skip.
set -euo pipefail
SRC=${KD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
cd "$SRC"
CF=${KD_CLANG_FORMAT:-clang-format}
command -v "$CF" >/dev/null || { echo "FAIL: $CF missing (scripts/bootstrap installs clang-format)"; exit 1; }

mapfile -t files < <(find shared producer worker events sim tests bench -name '*.[ch]' | sort)
((${#files[@]} >= 100)) || { echo "FAIL: found only ${#files[@]} C files"; exit 1; }
bad=()
for f in "${files[@]}"; do
    "$CF" --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
    echo "FAIL: ${#bad[@]} file(s) not formatted (clang-format -i FILE):"
    printf '  %s\n' "${bad[@]}"
    "$CF" --dry-run "${bad[0]}" 2>&1 | head -n 20
    exit 1
fi
echo "ok: ${#files[@]} C files formatted ($("$CF" --version))"
