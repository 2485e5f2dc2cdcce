#!/usr/bin/env bash
# ops.dockerfile_image: the Dockerfile (checked without a Docker engine) ships what the build
# produces, and only what it needs:
#   - the programs its build stage builds (--target) are exactly the build's install set
#     (`cmake --install` of the build under test into a temporary prefix), and each is
#     COPYed into /usr/local/bin of one image: kone-sim into the `sim` stage, the others
#     into `runtime`;
#   - the production image (`runtime`, the last stage, so a plain `docker build .` makes it)
#     carries no test material: no kone-sim, nothing from sim/ (its clients.json holds public
#     dev secrets), and none of those secrets inside the programs it copies (searched in the
#     build's binaries); both images are built FROM the same `base` stage;
#   - its build stage installs the -dev package of every pkg-config module CMakeLists.txt
#     asks for (dpkg -S of the .pc file), and cmake, ninja, pkg-config;
#   - its runtime stage installs exactly the Debian packages that own the shared libraries
#     those programs link (objdump NEEDED -> dpkg -S on this Debian), plus ca-certificates
#     (KONE's TLS), nothing else; its base images are Debian bookworm (builder) and
#     bookworm-slim (runtime), the release this machine's packages are from;
#   - it runs as a numeric non-root USER, the uid/gid the chart's securityContext uses;
#   - every program path the chart runs is one the image has;
#   - .dockerignore keeps the build trees, the dev stack's state (.dev: TLS keys) and .git
#     out of the build context, and nothing the Dockerfile COPYs is ignored.
# The build under test is KD_BIN_DIR (ctest sets it), else build/.
set -euo pipefail
SRC=${KD_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BIN=${KD_BIN_DIR:-$SRC/build}
DOCKERFILE=$SRC/Dockerfile
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import yaml' 2>/dev/null; then PY=$p; break; fi
done
[[ -n $PY ]] || { echo "FAIL: no python3 with PyYAML (scripts/bootstrap-tools installs it)"; exit 1; }
[[ -f $DOCKERFILE ]] || { echo "FAIL: no Dockerfile at the repository root"; exit 1; }
[[ -f $BIN/CMakeCache.txt ]] || { echo "FAIL: $BIN is not a configured build (build first, or set KD_BIN_DIR)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The install set: what `cmake --install` puts in bin/ (the programs must be built).
if ! cmake --install "$BIN" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1; then
    sed 's/^/  | /' "$tmp/install.log"
    echo "FAIL: cmake --install $BIN failed (are the programs built?)"
    exit 1
fi
install_set=$(find "$tmp/prefix/bin" -maxdepth 1 -type f -printf '%f\n' 2>/dev/null | sort)
[[ -n $install_set ]] || { echo "FAIL: cmake --install put no program in bin/"; exit 1; }

# The libraries the installed programs link, and the packages that own them.
needed_pkgs=""
if command -v objdump >/dev/null && command -v dpkg >/dev/null; then
    while read -r so; do
        pkg=$(dpkg -S "*/$so" 2>/dev/null | cut -d: -f1 | sort -u | head -n1)
        [[ -n $pkg ]] || { echo "FAIL: no Debian package owns $so (linked by the programs)"; exit 1; }
        needed_pkgs+="$pkg"$'\n'
    done < <(for f in "$tmp/prefix/bin"/*; do objdump -p "$f" | awk '$1 == "NEEDED" { print $2 }'; done | sort -u)
else
    echo "FAIL: objdump and dpkg are needed to read the programs' libraries (binutils, Debian)"
    exit 1
fi
codename=$(sed -n "s/^VERSION_CODENAME=//p" /etc/os-release 2>/dev/null || true)

# The -dev packages the build needs: the owners of the pkg-config modules CMakeLists.txt asks for.
dev_pkgs=""
while read -r mod; do
    pkg=$(dpkg -S "*/pkgconfig/$mod.pc" 2>/dev/null | cut -d: -f1 | sort -u | head -n1)
    [[ -n $pkg ]] || { echo "FAIL: no Debian package provides pkg-config module $mod (CMakeLists.txt)"; exit 1; }
    dev_pkgs+="$mod=$pkg"$'\n'
done < <(tr '\n' ' ' <"$SRC/CMakeLists.txt" | grep -oE 'pkg_check_modules\([^)]*\)' |
    sed -E 's/pkg_check_modules\(\s*\S+//; s/\)$//' | tr ' ' '\n' | grep -vE '^(REQUIRED|QUIET|IMPORTED_TARGET|GLOBAL|NO_CMAKE_PATH|NO_CMAKE_ENVIRONMENT_PATH|)$' | sort -u)
# A sanitizer build links more (the sanitizer runtimes, and libraries its interceptors keep
# alive, e.g. libcap through libwebsockets): its NEEDED list is not the image's, whose build
# stage is a plain Release build. The package check then runs in the plain build's ctest.
sanitized=$(sed -n 's/^KD_SANITIZE:BOOL=//p' "$BIN/CMakeCache.txt")

"$PY" - "$SRC" "$DOCKERFILE" "$install_set" "$needed_pkgs" "$codename" "$sanitized" "$dev_pkgs" "$tmp/prefix/bin" <<'PYEOF'
import fnmatch, json, os, re, shlex, sys
import yaml

src, dockerfile, install_set, needed, codename, sanitized, dev_pkgs, bindir = sys.argv[1:9]
dev_pkgs = dict(l.split("=", 1) for l in dev_pkgs.split())
install_set = set(install_set.split())
needed = set(needed.split())
problems = []
p = problems.append

# --- parse the Dockerfile: logical lines (continuations joined), stages ---
lines, cur = [], ""
for raw in open(dockerfile, encoding="utf-8"):
    s = raw.rstrip("\n")
    if not cur and (not s.strip() or s.lstrip().startswith("#")):
        continue
    if s.lstrip().startswith("#"):
        continue
    if s.endswith("\\"):
        cur += s[:-1] + " "
        continue
    lines.append((cur + s).strip())
    cur = ""
args = {}
stages = []  # [{"name", "from", "instr": [(op, rest)]}]
for l in lines:
    op, _, rest = l.partition(" ")
    op = op.upper()
    if op == "ARG" and not stages:
        k, _, v = rest.partition("=")
        args[k.strip()] = v.strip()
    elif op == "FROM":
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest.split()[0])
        m = re.search(r"\s+AS\s+(\S+)", rest, re.I)
        stages.append({"name": m.group(1) if m else str(len(stages)), "from": image, "instr": []})
    elif stages:
        stages[-1]["instr"].append((op, rest))
by_name = {st["name"]: st for st in stages}
def chain(st):
    """The stage and the stages it is built FROM, nearest first."""
    out = [st]
    while out[-1]["from"] in by_name and len(out) < 10:
        out.append(by_name[out[-1]["from"]])
    return out
def instrs(st):
    return [i for s in reversed(chain(st)) for i in s["instr"]]
for want in ("base", "sim", "runtime"):
    if want not in by_name:
        p("no stage named %s (build, base, sim, runtime expected)" % want)
        by_name[want] = {"name": want, "from": "?", "instr": []}
build = stages[0] if stages else {"name": "?", "from": "?", "instr": []}
runtime, sim, base = by_name["runtime"], by_name["sim"], by_name["base"]
if not stages or stages[-1]["name"] != "runtime":
    p("the last stage is not `runtime`: a plain `docker build .` would not make the production image")
for st in (runtime, sim):
    if st["from"] != "base":
        p("stage %s is FROM %s, expected base (one set of runtime libraries and one user)" % (st["name"], st["from"]))

if build["from"] != "debian:bookworm":
    p("build stage FROM %s, expected debian:bookworm" % build["from"])
if base["from"] != "debian:bookworm-slim":
    p("base stage FROM %s, expected debian:bookworm-slim" % base["from"])

# --- the build stage builds exactly the install set ---
targets = set()
for op, rest in build["instr"]:
    if op == "RUN":
        for m in re.finditer(r"cmake\s+--build\s+\S+\s+--target\s+((?:[\w.-]+\s*)+)", rest):
            targets |= set(m.group(1).split()) - {"&&"}
        if "cmake --install" in rest and "--prefix /out" not in rest:
            p("the build stage's cmake --install does not use --prefix /out (the COPY lines read /out/bin)")
if targets != install_set:
    p("build stage --target %s, but the build installs %s" % (sorted(targets), sorted(install_set)))

# --- COPY into each image: programs from the build into /usr/local/bin, files from the context ---
def copies(st):
    progs, files = set(), []
    for op, rest in instrs(st):
        if op != "COPY":
            continue
        toks = shlex.split(rest)
        flags = [t for t in toks if t.startswith("--")]
        paths = [t for t in toks if not t.startswith("--")]
        dest, srcs = paths[-1], paths[:-1]
        if not any(f.startswith("--from=") for f in flags):
            files += srcs
        elif any(f == "--from=" + build["name"] for f in flags) and dest.rstrip("/") == "/usr/local/bin":
            for s in srcs:
                if not s.startswith("/out/bin/"):
                    p("COPY of %s into /usr/local/bin is not from the install prefix /out/bin" % s)
                progs.add(os.path.basename(s))
    return progs, files
copied, runtime_files = copies(runtime)
sim_copied, sim_files = copies(sim)
want_runtime = install_set - {"kone-sim"}
if copied != want_runtime:
    p("the runtime image gets %s in /usr/local/bin; it must get exactly %s (missing: %s, extra: %s)"
      % (sorted(copied), sorted(want_runtime), sorted(want_runtime - copied) or "none", sorted(copied - want_runtime) or "none"))
if sim_copied != {"kone-sim"}:
    p("the sim image gets %s in /usr/local/bin; it must get exactly kone-sim" % sorted(sim_copied))
if not install_set <= copied | sim_copied:
    p("programs the build installs that no image gets: %s" % sorted(install_set - copied - sim_copied))

# --- no test material in the production image ---
for f in runtime_files:
    if f.rstrip("/").split("/")[0] in ("sim", "tests", "bench", "scripts"):
        p("the runtime image COPYs %s: test material belongs in the sim image" % f)
if not any(f.startswith("sim/") and f.endswith("clients.json") for f in sim_files):
    p("the sim image does not get sim/clients.json (kone-sim's default clients)")
secrets = []
for path in ("sim/clients.json",):
    for c in json.load(open(os.path.join(src, path))):
        secrets.append(c["client_secret"])
if not secrets:
    p("found no client_secret in sim/clients.json to search for")
for prog in sorted(copied):
    f = os.path.join(bindir, prog)
    if os.path.exists(f):
        data = open(f, "rb").read()
        for sec in secrets:
            if sec.encode() in data:
                p("%s (runtime image) contains the dev secret of sim/clients.json" % prog)

# --- runtime packages: exactly the libraries' owners + ca-certificates ---
pkgs = set()
for op, rest in instrs(runtime):
    if op == "RUN":
        for m in re.finditer(r"apt-get\s+install\s+((?:-\S+\s+)*)((?:[a-z0-9][a-z0-9.+-]+\s*)+)", rest):
            pkgs |= set(m.group(2).split())
base = {"libc6", "libgcc-s1"}  # in every Debian image (Essential / libc6's own dependency)
extras = {"ca-certificates"}  # not a library: the CA bundle that verifies KONE's TLS
want = (needed - base) | extras
if codename != "bookworm":
    print("SKIP: runtime packages: this machine is %r, not bookworm; its package names prove nothing for the image" % codename)
elif sanitized == "ON":
    print("SKIP: runtime packages: %s is a sanitizer build (its libraries are not the image's); "
          "the plain build's run checks them" % os.environ.get("KD_BIN_DIR", "the build"))
elif pkgs != want:
    p("runtime packages %s; the programs need exactly %s (missing: %s, not needed: %s)"
      % (sorted(pkgs), sorted(want), sorted(want - pkgs) or "none", sorted(pkgs - want) or "none"))
build_pkgs = set()
for op, rest in build["instr"]:
    if op == "RUN":
        for m in re.finditer(r"apt-get\s+install\s+((?:-\S+\s+)*)((?:[a-z0-9][a-z0-9.+-]+\s*)+)", rest):
            build_pkgs |= set(m.group(2).split())
for tool in ("cmake", "ninja-build", "pkg-config"):
    if tool not in build_pkgs:
        p("build stage does not install %s" % tool)
if not dev_pkgs:
    p("found no pkg_check_modules(...) modules in CMakeLists.txt")
for mod, pkg in sorted(dev_pkgs.items()):
    if pkg not in build_pkgs:
        p("CMakeLists.txt needs pkg-config module %s (Debian %s), which the build stage does not install" % (mod, pkg))

# --- the user ---
users = [rest.strip() for op, rest in instrs(runtime) if op == "USER"]
sim_users = [rest.strip() for op, rest in instrs(sim) if op == "USER"]
if users[-1:] != sim_users[-1:]:
    p("the sim image runs as %s, the runtime image as %s: the chart runs both as one user" % (sim_users[-1:], users[-1:]))
values = yaml.safe_load(open(os.path.join(src, "charts", "kone-dispatch", "values.yaml")))
sc = values.get("securityContext", {})
want_user = "%s:%s" % (sc.get("runAsUser"), sc.get("runAsGroup"))
if not users:
    p("the runtime stage sets no USER (it would run as root)")
elif not re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", users[-1]):
    p("USER %s: must be numeric uid:gid, not root, so Kubernetes can verify runAsNonRoot" % users[-1])
elif users[-1] != want_user:
    p("USER %s, but the chart runs as %s (values.yaml securityContext)" % (users[-1], want_user))

# --- the chart runs programs the image has ---
tpl_dir = os.path.join(src, "charts", "kone-dispatch", "templates")
for root, _, files in os.walk(tpl_dir):
    for f in files:
        has, image = (sim_copied, "sim") if f == "sim.yaml" else (copied, "runtime")
        for prog in re.findall(r"/usr/local/bin/([\w.-]+)", open(os.path.join(root, f)).read()):
            if prog not in has:
                p("charts/kone-dispatch/templates/%s runs /usr/local/bin/%s, which the %s image does not have" % (f, prog, image))

# --- .dockerignore ---
di = os.path.join(src, ".dockerignore")
if not os.path.exists(di):
    p("no .dockerignore: the build context would carry .git, the build trees and .dev (TLS keys)")
else:
    pats = [l.strip() for l in open(di) if l.strip() and not l.startswith("#")]
    def ignored(path):
        out = False
        for pat in pats:
            neg = pat.startswith("!")
            pt = pat[1:] if neg else pat
            if fnmatch.fnmatch(path, pt) or fnmatch.fnmatch(path.split("/")[0], pt) or path.startswith(pt.rstrip("/") + "/"):
                out = not neg
        return out
    for must in (".git", ".dev", "build", "build-asan", ".cache"):
        if not ignored(must):
            p(".dockerignore does not exclude %s" % must)
    for st in stages:
        for op, rest in st["instr"]:
            if op == "COPY" and "--from=" not in rest:
                for s in shlex.split(rest)[:-1]:
                    if s.startswith("--"):
                        continue
                    if not os.path.exists(os.path.join(src, s.rstrip("/"))):
                        p("COPY %s: no such path in the repository" % s)
                    elif ignored(s.rstrip("/")):
                        p("COPY %s: excluded by .dockerignore" % s)

for x in problems:
    print("FAIL: " + x)
if problems:
    sys.exit(1)
print("ok: runtime image %s, sim image %s (= install set); no test material or dev secret in the runtime image; build packages cover pkg-config modules %s; runtime packages %s; USER %s" % (
    " ".join(sorted(copied)), " ".join(sorted(sim_copied)), " ".join(sorted(dev_pkgs)), " ".join(sorted(pkgs)), users[-1]))
PYEOF
