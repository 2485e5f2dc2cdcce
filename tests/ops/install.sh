#!/usr/bin/env bash
# ops.install: `cmake --install` gives an application everything it needs to use the library
# (docs/api.md): into a fresh temporary prefix it installs libkonedispatch.a, every public
# header of shared/include (and nothing private) and konedispatch.pc; then
# docs/producer-example.c, the job producer of docs/producer.md, is compiled with
# -Wall -Wextra -Werror using only `pkg-config --cflags --libs konedispatch` from that prefix
# (the source tree is not on its include path), and run against a closed port, where it must
# exit 2 naming the address it could not reach. The prefix is then moved, and pkg-config must
# follow it (the .pc file is relocatable).
set -euo pipefail
SRC=${KD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BIN=${KD_BIN_DIR:-$SRC/build}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

[ -f "$BIN/libkonedispatch.a" ] || fail "$BIN/libkonedispatch.a is not built"
cmake --install "$BIN" --prefix "$T/prefix" >"$T/install.log" 2>&1 || { cat "$T/install.log"; fail "cmake --install"; }
pc=$(find "$T/prefix" -name konedispatch.pc)
[ -n "$pc" ] || fail "no konedispatch.pc installed"
lib=$(find "$T/prefix" -name libkonedispatch.a)
[ -n "$lib" ] || fail "no libkonedispatch.a installed"
want=$(find "$SRC/shared/include" -maxdepth 1 -name '*.h' -printf '%f\n' | sort)
got=$(find "$T/prefix/include/kone-dispatch" -mindepth 1 -printf '%f\n' | sort)
[ "$want" = "$got" ] || fail "installed headers differ from shared/include: $(diff <(echo "$want") <(echo "$got") | tr '\n' ' ')"

export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
version=$(pkg-config --modversion konedispatch)
grep -q "project(kone_dispatch VERSION $version " "$SRC/CMakeLists.txt" || fail "konedispatch.pc says version $version"
# A sanitizer build's archive (build-asan, scripts/test) needs its runtime at link time too.
san=()
if grep -q '^KD_SANITIZE:BOOL=ON' "$BIN/CMakeCache.txt" 2>/dev/null; then san=('-fsanitize=address,undefined'); fi
# ... and a coverage build's (scripts/test instruments its normal build) needs gcov's.
if grep -q '^KD_COVERAGE:BOOL=ON' "$BIN/CMakeCache.txt" 2>/dev/null; then san+=('--coverage'); fi
build_app() {
    # shellcheck disable=SC2046 # pkg-config prints several flags
    cc -std=c17 -Wall -Wextra -Werror "${san[@]}" "$SRC/docs/producer-example.c" \
        $(pkg-config --cflags --libs konedispatch) -o "$1"
}
build_app "$T/my-app" || fail "docs/producer-example.c does not build against the installed library"
rc=0
env -u KD_AMQP_HOST -u KD_AMQP_PORT "$T/my-app" --amqp-host=127.0.0.1 --amqp-port=1 >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" -eq 2 ] || fail "my-app exited $rc against a closed port (want 2): $(cat "$T/out" "$T/err")"
grep -q '127.0.0.1:1' "$T/err" || fail "my-app's error does not name the address: $(cat "$T/err")"

mv "$T/prefix" "$T/moved"
PKG_CONFIG_PATH=${PKG_CONFIG_PATH/$T\/prefix/$T/moved}
pkg-config --cflags konedispatch | grep -q -- "-I$T/moved/" || fail "konedispatch.pc does not follow a moved prefix: $(pkg-config --cflags konedispatch)"
build_app "$T/my-app2" || fail "no build from the moved prefix"
echo "ops.install: installed $(find "$T/moved" -type f | wc -l) files; $(basename "$lib") $version; producer-example built and ran (exit 2 on a closed port)"
