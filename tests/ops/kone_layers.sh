#!/usr/bin/env bash
# ops.kone_layers: the KONE client's layers (docs/architecture.md, "The KONE client in layers")
# point one way. Fails when
#   - a file of the client calls (or reads a variable of) a layer above its own by name: read
#     from the compiled objects (nm: what each object leaves undefined, and which object
#     defines it), so macros, static functions and comments cannot fool it;
#   - a file includes, even through other headers, a header of a layer above its own: read
#     from the preprocessor's dependency list (cc -MM -MG), so kone_conn.c including
#     kone_int.h again fails here;
#   - a worker/kone*.c file or header is in no layer below (whoever adds one places it).
# Calling down, or sideways within a layer, is allowed; a layer above is reached only through
# the callback tables (kk_conn_ops, kk_wake_ops, kd_kone_hooks), which nm cannot see as calls.
# Needs the build (KD_BIN_DIR, the kone-worker target's objects); a missing build fails.
set -euo pipefail
SRC=${KD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BIN=${KD_BIN_DIR:-$SRC/build}
cd "$SRC"
CC=${CC:-cc}
for t in nm "$CC"; do
    command -v "$t" >/dev/null || { echo "FAIL: $t missing"; exit 1; }
done

# The layers, bottom to top: a file may use its own layer's and the lower layers' symbols
# and headers. 0: pieces with no knowledge of connections or jobs; 1: the connection layer;
# 2: the policies the call layer asks; 3: the call layer; 4: the client's API and loop;
# 5: the worker around the client (any other worker/*.c).
declare -A layer=(
    [kone_msg]=0 [kone_jw]=0 [kone_jview]=0 [kone_wsrx]=0 [kone_token]=0 [kone_dns]=0
    [kone_inventory]=0 [kone_breaker]=0 [kone_ratelimit]=0 [kone_conc]=0 [kone_validate]=0
    [kone_scope]=0 [idmap]=0 [kone_ws]=0 [kone_wsmsg]=0 [kone_wshs]=0 [kone_tls]=0 [kone_lws]=0
    [kone_timer]=0
    [kone_conn]=1
    [kone_bld]=2 [kone_sub]=2 [kone_site]=2
    [kone_call]=3 [kone_route]=3
    [kone]=4
)
# Headers without a .c of the same name. kone.h is the client's public contract: its types
# (hooks, building stats) are the policies' too (kone.c implements it, its getters through
# kone_bld.h's kk_blds_building and kk_blds_each).
declare -A hlayer=([kone_int]=3 [kone]=2 [kone_dll]=0)
names=(base connection policy call api worker)
# Known breaks being removed (issue 16): "file header". Each must still be true (stale
# entries fail), so the list only shrinks. Empty since kone_bld.c and kone_sub.c read alone
# like kone_site.c (none of the policies includes kone_int.h).
allowed=(
)

fail=0
bad() {
    echo "FAIL: $*"
    fail=1
}
layer_of() { # worker/NAME.c or NAME.h -> its layer (5 for other worker files)
    local b=${1##*/}
    b=${b%.[ch]}
    if [[ $1 == *.h && -n ${hlayer[$b]:-} ]]; then
        echo "${hlayer[$b]}"
    elif [[ -n ${layer[$b]:-} ]]; then
        echo "${layer[$b]}"
    else
        echo 5
    fi
}

# Every kone file is placed.
for f in worker/kone*.[ch] worker/idmap.[ch]; do
    b=${f##*/}
    b=${b%.[ch]}
    [[ -n ${layer[$b]:-} || ( $f == *.h && -n ${hlayer[$b]:-} ) ]] ||
        bad "$f is in no layer: place it in tests/ops/kone_layers.sh (and docs/architecture.md)"
done

# ---- symbols: who defines what, then who uses what
# (the worker's modules are compiled once, in the object library kd_worker_mods; main.c in
# kone-worker's own directory)
objdir=$BIN/CMakeFiles/kd_worker_mods.dir/worker
mapfile -t objs < <(find "$objdir" "$BIN/CMakeFiles/kone-worker.dir/worker" -maxdepth 1 \
    -name '*.c.o' 2>/dev/null | sort)
((${#objs[@]} >= 20)) || { echo "FAIL: no kone-worker objects in $objdir (build first)"; exit 1; }
declare -A def_by=()
for o in "${objs[@]}"; do
    src=${o##*/}
    src=${src%.o}
    while read -r sym; do
        def_by[$sym]=$src
    done < <(nm -g --defined-only --format=posix "$o" | awk '$2 != "U" {print $1}')
done
checked=0
for o in "${objs[@]}"; do
    src=${o##*/}
    src=${src%.o}
    l=$(layer_of "$src")
    ((l < 5)) || continue
    while read -r sym; do
        d=${def_by[$sym]:-}
        [[ -n $d ]] || continue
        checked=$((checked + 1))
        m=$(layer_of "$d")
        ((m <= l)) || bad "worker/$src (${names[l]} layer) uses $sym of worker/$d (${names[m]} layer, above it)"
    done < <(nm -u --format=posix "$o" | awk '{print $1}')
done
((checked >= 100)) || bad "only $checked references between worker objects found: is $objdir the worker's?"

# ---- includes, through other headers too
declare -A seen_allowed=()
for f in worker/kone*.c worker/idmap.c; do
    l=$(layer_of "$f")
    b=${f##*/}
    while read -r h; do
        [[ $h == worker/* && $h == *.h ]] || continue
        m=$(layer_of "$h")
        ((m <= l)) && continue
        if printf '%s\n' "${allowed[@]}" | grep -qxF "$b ${h##*/}"; then
            seen_allowed["$b ${h##*/}"]=1
            continue
        fi
        bad "$f (${names[l]} layer) includes $h (${names[m]} layer, above it)"
    done < <("$CC" -MM -MG -Iworker -Ishared/include "$f" | tr -d '\134' | tr ' ' '\n' | sed '/^$/d;/:$/d')
done
for a in "${allowed[@]}"; do
    [[ -n ${seen_allowed[$a]:-} ]] || bad "'$a' is allowed in tests/ops/kone_layers.sh but no longer happens: remove it"
done

((fail == 0)) && echo "ok: ${#objs[@]} worker objects, $checked references between them, none upward; no kone file includes a header above its layer (${#allowed[@]} known exceptions)"
exit "$fail"
