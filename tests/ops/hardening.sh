#!/usr/bin/env bash
# ops.hardening: the programs of an optimised build carry the hardening CMakeLists.txt asks for,
# read from the binaries themselves (readelf), not from the build's flags:
#   - PIE: the ELF type is DYN and the dynamic section says PIE;
#   - full RELRO: a GNU_RELRO segment and BIND_NOW (the GOT is read-only once started);
#   - _FORTIFY_SOURCE: the program calls fortified libc entry points (__*_chk);
#   - -fstack-protector-strong: it calls __stack_chk_fail;
#   - -fstack-protector-strong and -fstack-clash-protection: every compilation unit of ours
#     records them in its DWARF producer string (GCC records its options there).
# Skipped (77) for builds that are not hardened on purpose (Debug, sanitizers, coverage,
# fuzzing, TSan): KD_HARDENED comes from CMake.
set -euo pipefail
BIN=${KD_BIN_DIR:-build}
if [[ ${KD_HARDENED:-ON} != ON ]]; then
    echo "SKIP: $BIN is not a hardened build (KD_HARDENED=${KD_HARDENED})"
    exit 77
fi
command -v readelf >/dev/null || { echo "FAIL: readelf missing (binutils, scripts/bootstrap)"; exit 1; }

fail=0
pfail=0 # this program's
bad() {
    echo "FAIL: $*"
    fail=1 pfail=1
}

checked=0
for prog in kone-worker kone-producer kone-sim kone-events; do
    exe=$BIN/$prog
    pfail=0
    [[ -x $exe ]] || { bad "$exe not built"; continue; }
    checked=$((checked + 1))
    readelf -h "$exe" | grep -Eq 'Type:[[:space:]]+DYN' || bad "$prog: not a position-independent executable"
    dyn=$(readelf -d "$exe")
    grep -Eq 'FLAGS_1.*PIE' <<<"$dyn" || bad "$prog: no PIE flag in the dynamic section"
    readelf -lW "$exe" | grep -q 'GNU_RELRO' || bad "$prog: no GNU_RELRO segment (RELRO)"
    grep -Eq 'BIND_NOW|FLAGS.*[[:space:]]NOW' <<<"$dyn" || bad "$prog: no BIND_NOW (partial RELRO only)"
    syms=$(readelf --dyn-syms -W "$exe")
    nchk=$(grep -Ec '__[a-z_]+_chk(@|$)' <<<"$syms" || true)
    ((nchk > 0)) || bad "$prog: no fortified libc call (__*_chk): _FORTIFY_SOURCE missing"
    grep -q '__stack_chk_fail' <<<"$syms" || bad "$prog: no __stack_chk_fail: no stack protector"
    # Our compilation units: producer strings of C units (crt objects carry none).
    mapfile -t producers < <(readelf --debug-dump=info "$exe" 2>/dev/null |
        grep -E 'DW_AT_producer.*GNU C' | sort -u)
    ((${#producers[@]} > 0)) || bad "$prog: no DWARF producer strings (built without -g?)"
    for p in "${producers[@]}"; do
        [[ $p == *-fstack-protector-strong* ]] || bad "$prog: a unit built without -fstack-protector-strong: $p"
        [[ $p == *-fstack-clash-protection* ]] || bad "$prog: a unit built without -fstack-clash-protection: $p"
    done
    ((pfail == 0)) &&
        echo "$prog: PIE, full RELRO, $nchk fortified calls, stack protector, ${#producers[@]} producer string(s) checked"
done
((checked == 4)) || bad "checked $checked of 4 programs"
((fail == 0)) && echo "ok: every program is hardened"
exit "$fail"
