#!/usr/bin/env bash
# ops.dockerfile_build: the Dockerfile's build stage works, without a Docker engine. Its build
# context is reproduced in a temporary directory (the paths its COPY lines name, less what
# .dockerignore excludes), then its RUN commands are executed there as written, except the
# package installation (this machine has the same Debian packages, scripts/bootstrap) and
# with /out moved into the temporary directory. The programs that land in /out/bin must be
# the ones the runtime stage copies.
#
# Why: the image is an optimized build (-O2) where the tests build without optimization, and
# GCC finds more with optimization on (-Wmaybe-uninitialized, -Wuse-after-free), which
# -Werror turns into a failed image build. This finds it in scripts/test, before CI's image
# job, along with a source directory the Dockerfile forgot to COPY.
set -euo pipefail
SRC=${KD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
DOCKERFILE=$SRC/Dockerfile
[[ -f $DOCKERFILE ]] || { echo "FAIL: no Dockerfile at the repository root"; exit 1; }
for t in cmake ninja python3; do
    command -v "$t" >/dev/null || { echo "FAIL: $t missing (scripts/bootstrap installs it)"; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
started=$SECONDS

# The build stage as shell: copies into $CTX, then its RUN commands (one per line, && split).
python3 - "$SRC" "$DOCKERFILE" >"$tmp/plan" <<'PYEOF'
import fnmatch, os, re, shlex, sys

src, dockerfile = sys.argv[1:3]
lines, cur = [], ""
for raw in open(dockerfile, encoding="utf-8"):
    s = raw.rstrip("\n")
    if s.lstrip().startswith("#") or (not cur and not s.strip()):
        continue
    if s.endswith("\\"):
        cur += s[:-1] + " "
        continue
    lines.append((cur + s).strip())
    cur = ""
stage, instr = 0, []
for l in lines:
    op, _, rest = l.partition(" ")
    if op.upper() == "FROM":
        stage += 1
        if stage > 1:
            break
    elif stage == 1:
        instr.append((op.upper(), rest.strip()))

pats = []
di = os.path.join(src, ".dockerignore")
if os.path.exists(di):
    pats = [l.strip() for l in open(di) if l.strip() and not l.startswith("#")]

def ignored(rel):
    out = False
    for pat in pats:
        neg = pat.startswith("!")
        pt = (pat[1:] if neg else pat).rstrip("/")
        parts = rel.split("/")
        if (fnmatch.fnmatch(rel, pt) or any(fnmatch.fnmatch("/".join(parts[:i]), pt) for i in range(1, len(parts)))
                or (pt.startswith("**/") and fnmatch.fnmatch(parts[-1], pt[3:]))):
            out = not neg
    return out

workdir = "/"
for op, rest in instr:
    if op == "WORKDIR":
        workdir = rest
    elif op == "COPY":
        toks = [t for t in shlex.split(rest) if not t.startswith("--")]
        srcs, dest = toks[:-1], toks[-1]
        for s in srcs:
            base = os.path.join(src, s.rstrip("/"))
            if not os.path.exists(base):
                print("echo 'FAIL: COPY %s: no such path in the repository'; exit 1" % s)
                continue
            files = [base] if os.path.isfile(base) else [os.path.join(r, f) for r, _, fs in os.walk(base) for f in fs]
            for f in files:
                rel = os.path.relpath(f, src)
                if ignored(rel):
                    continue
                if os.path.isfile(base):
                    target = os.path.join(dest, os.path.basename(rel)) if dest.endswith("/") else dest
                else:
                    target = os.path.join(dest, os.path.relpath(f, base))
                target = os.path.normpath(os.path.join(workdir, target))
                print('install -D -m 0644 %s "$CTX%s"' % (shlex.quote(f), target))
    elif op == "RUN":
        for part in re.split(r"\s*&&\s*", rest):
            if re.search(r"\b(apt-get|rm -rf /var/lib/apt)\b", part) or part.startswith("DEBIAN_FRONTEND="):
                continue
            print('(cd "$CTX%s" && %s)' % (workdir, part.replace(" /out", ' "$CTX/out"')))
PYEOF

CTX=$tmp/ctx
mkdir -p "$CTX"
export CTX
if ! bash -e "$tmp/plan" >"$tmp/build.log" 2>&1; then
    grep -E 'error|warning|FAIL|CMake Error' "$tmp/build.log" | head -n 30 | sed 's/^/  | /'
    echo "  (full log: the Dockerfile's build stage, $(wc -l <"$tmp/build.log") lines; commands run:)"
    grep -v '^install -D' "$tmp/plan" | sed 's/^/  $ /'
    echo "FAIL: the Dockerfile's build stage fails on this source tree (the image would not build)"
    exit 1
fi

built=$(find "$CTX/out/bin" -maxdepth 1 -type f -printf '%f\n' 2>/dev/null | sort | tr '\n' ' ')
copied=$(sed -n 's|^COPY --from=build \(.*\) /usr/local/bin/$|\1|p' "$DOCKERFILE" | tr ' ' '\n' | sed 's|.*/||' | sort | tr '\n' ' ')
if [[ -z $built || $built != "$copied" ]]; then
    echo "FAIL: the build stage installs '${built% }' into /out/bin, the runtime stage copies '${copied% }'"
    exit 1
fi
echo "ok: the Dockerfile's build stage builds and installs ${built% } ($((SECONDS - started))s)"
