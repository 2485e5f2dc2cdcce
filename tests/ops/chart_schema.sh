#!/usr/bin/env bash
# ops.chart_schema: charts/kone-dispatch/values.schema.json (and the chart's own guards)
# reject bad values files: each bad file below is rendered with `helm template` and must
# fail with an error naming what is wrong, while a good override renders (so the failures
# come from the bad values, not from something else). Also: the schema's worker.config is
# kone-worker's configuration table (docs/configuration.md, itself checked against the code
# by unit.test_config): every worker key is accepted, except the secret ones, which are
# refused; sim.config and smoke.config accept only keys of their programs. Those sections are
# generated from the table: after adding a key, `bash tests/ops/chart_schema.sh --fix`.
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
    worker: {drain_ms: 25000}
    retry: {tiers_ms: [1000, 5000]}
    metrics: {port: 9100}
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
expect_fail "ledger egress without a port" "/networkPolicy/ledger/ports" 'networkPolicy: {ledger: {to: [], ports: []}}'

# --- the schema's config sections are the configuration table ---
# They are generated from docs/configuration.md: `bash tests/ops/chart_schema.sh --fix`
# rewrites them after a key is added (as `kone-worker --config-table` does for the docs).
if ! "$PY" - "$CHART/values.schema.json" "$SRC/docs/configuration.md" "$fix" <<'PYEOF'; then
import json, re, sys

schema_path, table_path, fix = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
schema = json.load(open(schema_path))
table = open(table_path, encoding="utf-8").read()
m = re.search(r"<!-- config-table:begin -->(.*?)<!-- config-table:end -->", table, re.S)
if not m:
    sys.exit("FAIL: docs/configuration.md has no config-table markers")
keys = []  # (key, default, programs, meaning)
# | key | environment | flag | type | default | accepts | programs | meaning |
for line in m.group(1).splitlines():
    r = re.match(r"\|\s*`([a-z0-9_.]+)`\s*\|[^|]*\|[^|]*\|[^|]*\|\s*`([^`]*)`\s*\|[^|]*\|\s*([a-z, ]+)\|(.*)\|\s*$", line)
    if r:
        keys.append((r.group(1), r.group(2), {p.strip() for p in r.group(3).split(",")}, r.group(4).strip()))

INT = {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^-?[0-9]+$"}]}
BOOL = {"anyOf": [{"type": "boolean"}, {"type": "string", "enum": ["true", "false"]}]}
SPECIAL = {  # tighter than the default's type: what the chart relies on
    "log.level": {"type": "string", "enum": ["debug", "info", "warn", "error"]},
    "metrics.port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "worker.drain_ms": {"type": "integer", "minimum": 0},
    "amqp.queue": {"type": "string", "minLength": 1},
    "retry.tiers_ms": {"anyOf": [{"type": "string", "pattern": "^[0-9]+(,[0-9]+)*$"},
                                 {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}}]},
}
SECRET_FROM = {"amqp.password": "secrets.amqp.existingSecret", "kone.client_secret": "secrets.kone.existingSecret",
               "ledger.url": "secrets.ledger.existingSecret", "kafka.sasl_password": "secrets.kafkaSASL.existingSecret", "sim.control_token": "sim.controlToken.existingSecret"}
CHART_SET = {"sim.listen", "sim.port", "sim.cert", "sim.key", "sim.clients"}  # templates/sim.yaml sets them

def key_schema(k, default, meaning):
    if "(secret;" in meaning or k in SECRET_FROM:  # the ledger URL holds a password, whatever its wording
        return {"not": {}, "description": "secret: never a value; the chart mounts it from " + SECRET_FROM.get(k, "an existing Secret")}
    if k in CHART_SET:
        return {"not": {}, "description": "set by the chart"}
    s = dict(SPECIAL.get(k) or (INT if re.fullmatch(r"-?[0-9]+", default) else
                                BOOL if default in ("true", "false") else {"type": "string"}))
    s["description"] = meaning
    return s

def config_schema(prog, only_sections=None, required=None):
    secs = {}
    for k, default, progs, meaning in keys:
        sec, name = k.split(".", 1)
        if prog not in progs or (only_sections and sec not in only_sections):
            continue
        node = secs.setdefault(sec, {"type": "object", "additionalProperties": False, "properties": {}})
        node["properties"][name] = key_schema(k, default, meaning)
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
props = schema["properties"]
problems = []
for part, w in want.items():
    got = props[part]["properties"].get("config")
    if got == w:
        continue
    if fix:
        props[part]["properties"]["config"] = w
        continue
    g = {"%s.%s" % (s, k) for s, n in (got or {}).get("properties", {}).items() for k in n.get("properties", {})}
    e = {"%s.%s" % (s, k) for s, n in w["properties"].items() for k in n.get("properties", {})}
    what = ["missing %s" % ", ".join(sorted(e - g))] if e - g else []
    what += ["not in the table: %s" % ", ".join(sorted(g - e))] if g - e else []
    problems.append("values.schema.json %s.config is not docs/configuration.md's %s keys (%s); "
                    "run: bash tests/ops/chart_schema.sh --fix"
                    % (part, "producer" if part == "smoke" else part, "; ".join(what) or "types or descriptions differ"))
if fix:
    with open(schema_path, "w") as f:
        json.dump(schema, f, indent=2)
        f.write("\n")
    print("rewrote the config sections of %s from %s" % (schema_path, table_path))
for p in problems:
    print("FAIL: " + p)
if not problems and not fix:
    print("ok: values.schema.json worker.config = the %d worker keys of docs/configuration.md (secrets refused)"
          % sum(1 for k in keys if "worker" in k[2]))
sys.exit(1 if problems else 0)
PYEOF
    fails=$((fails + 1))
fi

if ((fails)); then
    echo "chart_schema: $fails failure(s)"
    exit 1
fi
echo "chart_schema: ok"
