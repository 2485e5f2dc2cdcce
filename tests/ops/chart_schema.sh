#!/usr/bin/env bash
# ops.chart_schema: charts/kone-dispatch/values.schema.json (and the chart's own guards)
# reject bad values files: each bad file below is rendered with `helm template` and must
# fail with an error naming what is wrong, while a good override renders (so the failures
# come from the bad values, not from something else). Also: the schema's worker.config is
# kone-worker's typed configuration table (`kone-worker --config-json`): every worker key is
# accepted with the type and bounds the program checks at start, except the secret ones, which
# are refused; sim.config and smoke.config accept only keys of their programs. Those sections
# are generated from the table: after adding or changing a key (build first),
# `bash tests/ops/chart_schema.sh --fix`. Needs the build (KD_BIN_DIR, else build/).
# shellcheck source=lib/chart.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/chart.sh"
fix=0
[[ ${1:-} == --fix ]] && fix=1

# expect_fail NAME PATTERN YAML: rendering with YAML fails, with PATTERN in the error.
expect_fail() {
    local name=$1 pattern=$2
    printf '%s\n' "$3" >"$tmp/bad.yaml"
    if "$HELM" template kone-dispatch "$CHART" -f "$tmp/bad.yaml" >/dev/null 2>"$tmp/err"; then
        fail "$name: a bad values file rendered (expected a failure matching '$pattern')"
    elif ! grep -v 'found symbolic link' "$tmp/err" | grep -qE -- "$pattern"; then
        fail "$name: failed, but not for the expected reason ('$pattern'):"
        grep -v 'found symbolic link' "$tmp/err" | sed 's/^/  | /'
    else
        echo "ok: $name rejected: $(grep -v 'found symbolic link' "$tmp/err" | grep -E -- "$pattern" | head -n1 | sed 's/^[- ]*//')"
    fi
}

# The control: a good override with every part on renders.
cat >"$tmp/good.yaml" <<'EOF'
worker:
  config:
    amqp: {queue: orders, port: 5671}
    worker: {drain_ms: 25000, inflight: 65535}
    retry: {tiers_ms: [1000, 5000]}
    metrics: {port: 9100}
    kafka: {compression: LZ4}
    kone: {validate_locally: "yes"}
  terminationGracePeriodSeconds: 60
autoscaling: {mode: hpa, hpa: {cpuUtilization: 70}}
sim: {enabled: true, tls: {existingSecret: sim-tls}}
smoke: {enabled: true}
EOF
if "$HELM" template kone-dispatch "$CHART" -f "$tmp/good.yaml" >/dev/null 2>"$tmp/err"; then
    echo "ok: a good override renders"
else
    grep -v 'found symbolic link' "$tmp/err" | sed 's/^/  | /'
    fail "the good override does not render, so the checks below prove nothing"
fi

expect_fail "unknown autoscaling mode" "/autoscaling/mode" 'autoscaling: {mode: kedaa}'
expect_fail "metrics port 0 (probes need a fixed port)" "/worker/config/metrics/port" 'worker: {config: {metrics: {port: 0}}}'
expect_fail "misspelt config key" "drainms" 'worker: {config: {worker: {drainms: 5000}}}'
expect_fail "unknown config section" "/worker/config.*kafak|kafak" 'worker: {config: {kafak: {brokers: "k:9092"}}}'
expect_fail "log level" "/worker/config/log/level" 'worker: {config: {log: {level: verbose}}}'
expect_fail "empty work queue" "/worker/config/amqp/queue" 'worker: {config: {amqp: {queue: ""}}}'
expect_fail "drain_ms not a number" "/worker/config/worker/drain_ms" 'worker: {config: {worker: {drain_ms: ten}}}'
expect_fail "resources without limits" "/worker/resources" 'worker: {resources: {requests: {cpu: 100m}, limits: null}}'
expect_fail "image pull policy" "/image/pullPolicy" 'image: {pullPolicy: Sometimes}'
expect_fail "image digest" "/image/digest" 'image: {digest: "latest"}'
expect_fail "top-level typo" "workers" 'workers: {replicas: 3}'
expect_fail "sim without its TLS Secret" "/sim/tls" 'sim: {enabled: true}'
expect_fail "KEDA without the management URL Secret" "/secrets/rabbitmqManagement" 'secrets: {rabbitmqManagement: {existingSecret: ""}}'
expect_fail "grace period not above the drain time" "must exceed worker.config.worker.drain_ms" \
    'worker: {config: {worker: {drain_ms: 30000}}, terminationGracePeriodSeconds: 30}'
expect_fail "HPA without a metric" "needs autoscaling.hpa.externalMetric" 'autoscaling: {mode: hpa, hpa: {externalMetric: "", cpuUtilization: null}}'
expect_fail "ledger without its URL Secret" "/secrets/ledger/existingSecret" 'secrets: {ledger: {existingSecret: ""}}'
# Each key's type and bounds come from the configuration table: what the worker would refuse
# at start, helm refuses at render, naming the key.
expect_fail "inflight 0 (table: 1..65535)" "/worker/config/worker/inflight" 'worker: {config: {worker: {inflight: 0}}}'
expect_fail "inflight not a number" "/worker/config/worker/inflight" 'worker: {config: {worker: {inflight: "abc"}}}'
expect_fail "inflight above its maximum" "/worker/config/worker/inflight" 'worker: {config: {worker: {inflight: 65536}}}'
expect_fail "inflight not whole" "/worker/config/worker/inflight" 'worker: {config: {worker: {inflight: 1.5}}}'
expect_fail "duration out of bounds" "/worker/config/worker/drain_ms" 'worker: {config: {worker: {drain_ms: 3600001}}}'
expect_fail "enum (any case) not a choice" "/worker/config/kafka/compression" 'worker: {config: {kafka: {compression: brotli}}}'
expect_fail "bool not a bool" "/worker/config/amqp/tls" 'worker: {config: {amqp: {tls: maybe}}}'
expect_fail "sim number below its minimum" "/sim/config/sim/speed" 'sim: {config: {sim: {speed: 0}}}'
expect_fail "smoke duration 0" "/smoke/config/producer/confirm_timeout_ms" 'smoke: {config: {producer: {confirm_timeout_ms: 0}}}'
expect_fail "ledger egress without a port" "/networkPolicy/ledger/ports" 'networkPolicy: {ledger: {to: [], ports: []}}'

# --- the schema's config sections are the configuration table ---
# They are generated from the typed table itself (shared/include/kd_config_keys.h), as
# `kone-worker --config-json` prints it: each key's type, bounds and choices become its JSON
# schema, so helm refuses a value the program would refuse at start, naming the key.
# `bash tests/ops/chart_schema.sh --fix` rewrites them after a key is added or changed.
BIN=${KD_BIN_DIR:-$SRC/build}
if ! "$BIN/kone-worker" --config-json >"$tmp/table.json" 2>"$tmp/err"; then
    fail "no configuration table: $BIN/kone-worker --config-json failed (build it first)"
    sed 's/^/  | /' "$tmp/err"
elif ! "$PY" - "$CHART/values.schema.json" "$tmp/table.json" "$fix" <<'PYEOF'; then
import copy, json, re, sys

schema_path, table_path, fix = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
schema = json.load(open(schema_path))
table = json.load(open(table_path))

# Where the chart knows better than the table (what it relies on), and what it sets itself.
TIGHTER = {
    "metrics.port": {"minimum": 1},   # the probes need a fixed port (the table allows -1 and 0)
    "amqp.queue": {"minLength": 1},   # the autoscaler watches it by name
}
REPLACE = {  # a list the chart also takes as a YAML array (kd.str joins it with commas)
    "retry.tiers_ms": {"anyOf": [{"type": "string", "pattern": "^[0-9]+(,[0-9]+)*$"},
                                 {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}}]},
}
SECRET_FROM = {"amqp.password": "secrets.amqp.existingSecret", "kone.client_secret": "secrets.kone.existingSecret",
               "ledger.url": "secrets.ledger.existingSecret", "kafka.sasl_password": "secrets.kafkaSASL.existingSecret", "sim.control_token": "sim.controlToken.existingSecret"}
CHART_SET = {"sim.listen", "sim.port", "sim.cert", "sim.key", "sim.clients"}  # templates/sim.yaml sets them
BOOL_WORDS = ["true", "false", "1", "0", "yes", "no"]  # what the loader takes (config.c)

def any_case(word):  # "lz4" -> "[lL][zZ]4": ENUMI takes its choices in any case
    return "".join("[%s%s]" % (c.lower(), c.upper()) if c.isalpha() else re.escape(c) for c in word)

def type_schema(k):
    t = k["type"]
    if t in ("integer", "duration_ms", "duration_s", "duration_h"):
        return {"type": "integer", "minimum": k["min"], "maximum": k["max"]}
    if t == "number":
        return {"type": "number", "minimum": k["min"], "maximum": k["max"]}
    if t == "bool":
        return {"anyOf": [{"type": "boolean"}, {"type": "string", "enum": BOOL_WORDS}]}
    if t == "enum":
        return {"type": "string", "enum": k["choices"]}
    if t == "enum_any_case":
        return {"type": "string", "pattern": "^(%s)$" % "|".join(any_case(c) for c in k["choices"])}
    if t == "string":
        return {"type": "string"}
    sys.exit("FAIL: --config-json: key %s has type %s, which this script does not know" % (k["name"], t))

def key_schema(k):
    name = k["name"]
    if k["secret"] or name in SECRET_FROM:  # the ledger URL holds a password, whatever its row says
        return {"not": {}, "description": "secret: never a value; the chart mounts it from " + SECRET_FROM.get(name, "an existing Secret")}
    if name in CHART_SET:
        return {"not": {}, "description": "set by the chart"}
    s = dict(REPLACE.get(name) or type_schema(k))
    s.update(TIGHTER.get(name, {}))
    s["description"] = k["help"]
    return s

def config_schema(prog, only_sections=None, required=None):
    secs = {}
    for k in table:
        sec, name = k["name"].split(".", 1)
        if prog not in k["programs"] or (only_sections and sec not in only_sections):
            continue
        node = secs.setdefault(sec, {"type": "object", "additionalProperties": False, "properties": {}})
        node["properties"][name] = key_schema(k)
    for sec, names in (required or {}).items():
        secs[sec]["required"] = names
    out = {"type": "object", "additionalProperties": False, "properties": secs}
    if required:
        out["required"] = list(required)
    return out

want = {
    "worker": config_schema("worker", required={"amqp": ["queue"], "metrics": ["port"], "worker": ["drain_ms"]}),
    "sim": config_schema("sim"),
    "smoke": config_schema("producer", only_sections={"producer"}),
}
want["worker"]["description"] = ("kone-worker's configuration keys (docs/configuration.md) as section -> key -> value; "
                                 "each becomes KD_<SECTION>_<KEY>. Secret keys are refused.")

def flat(node):  # "section.key" -> the key's schema
    return {"%s.%s" % (s, k): v for s, n in (node or {}).get("properties", {}).items()
            for k, v in n.get("properties", {}).items()}

def problems(schema):
    out = []
    for part, w in want.items():
        got = schema["properties"][part]["properties"].get("config")
        if got == w:
            continue
        g, e = flat(got), flat(w)
        what = ["missing %s" % ", ".join(sorted(e.keys() - g.keys()))] if e.keys() - g.keys() else []
        what += ["not in the table: %s" % ", ".join(sorted(g.keys() - e.keys()))] if g.keys() - e.keys() else []
        bare = lambda d: json.dumps({a: b for a, b in d.items() if a != "description"})
        what += ["%s is %s, the table says %s" % (k, bare(g[k]), bare(e[k]))
                 for k in sorted(g.keys() & e.keys()) if g[k] != e[k]][:3]
        out.append("values.schema.json %s.config is not the configuration table's %s keys (%s); "
                   "run: bash tests/ops/chart_schema.sh --fix"
                   % (part, "producer" if part == "smoke" else part, "; ".join(what) or "its sections differ"))
    return out

if fix:
    for part, w in want.items():
        schema["properties"][part]["properties"]["config"] = w
    with open(schema_path, "w") as f:
        json.dump(schema, f, indent=2)
        f.write("\n")
    print("rewrote the config sections of %s from the configuration table" % schema_path)
    sys.exit(0)

# The comparison must be able to fail: a schema one bound away from the table is refused.
doctored = copy.deepcopy(schema)
for part, w in want.items():
    doctored["properties"][part]["properties"]["config"] = copy.deepcopy(w)
doctored["properties"]["worker"]["properties"]["config"]["properties"]["worker"]["properties"]["inflight"]["maximum"] += 1
if not any("worker.inflight" in p for p in problems(doctored)):
    print("FAIL: a schema whose worker.inflight maximum differs from the table was not noticed")
    sys.exit(1)

found = problems(schema)
for p in found:
    print("FAIL: " + p)
if not found:
    print("ok: values.schema.json worker.config = the %d worker keys of the configuration table, with their "
          "types and bounds (secrets refused); a schema one bound off is noticed"
          % sum(1 for k in table if "worker" in k["programs"]))
sys.exit(1 if found else 0)
PYEOF
    fails=$((fails + 1))
fi

if ((fails)); then
    echo "chart_schema: $fails failure(s)"
    exit 1
fi
echo "chart_schema: ok"
