#!/usr/bin/env bash
# ops.chart_secrets: no secret value can reach a rendered manifest (nor Helm's release record,
# which stores the values and the manifests).
#   1. Every place a secret value could be slipped in is refused, and the render's output
#      and error say nothing of the value: the secret config keys (amqp.password,
#      kone.client_secret, ledger.url, sim.control_token), extraEnv with a secret variable or a
#      secretKeyRef, made-up keys under `secrets` and at the top level. Each attempt uses a
#      distinctive fake value and must fail.
#   2. What does render (defaults, each environment, everything switched on) holds no Secret
#      object, no env var taken from a Secret (secrets are files), none of the secret keys of
#      docs/configuration.md as a plain variable (only their *_FILE form, a mounted path), and
#      none of the simulator's client secrets (sim/clients.json) or the dev stack's KONE secret.
# shellcheck source=lib/chart.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/chart.sh"

# --- 1. attempts to pass a secret value: each refused, the value never echoed ---
# name|values YAML (FAKE is replaced by a distinctive value per attempt)
attempts=(
    'amqp.password|worker: {config: {amqp: {password: FAKE}}}'
    'kone.client_secret|worker: {config: {kone: {client_secret: FAKE}}}'
    'ledger.url|worker: {config: {ledger: {url: "postgresql://kd:FAKE@ledger:5432/kone_dispatch"}}}'
    'sim.control_token|sim: {enabled: true, tls: {existingSecret: t}, config: {sim: {control_token: FAKE}}}'
    'extraEnv KD_AMQP_PASSWORD|worker: {extraEnv: [{name: KD_AMQP_PASSWORD, value: FAKE}]}'
    'extraEnv KD_KONE_CLIENT_SECRET|worker: {extraEnv: [{name: KD_KONE_CLIENT_SECRET, value: FAKE}]}'
    'extraEnv KD_LEDGER_URL|worker: {extraEnv: [{name: KD_LEDGER_URL, value: "postgresql://kd:FAKE@ledger/kone_dispatch"}]}'
    'extraEnv secretKeyRef|worker: {extraEnv: [{name: KD_X, valueFrom: {secretKeyRef: {name: FAKE, key: k}}}]}'
    'secrets.amqp.password|secrets: {amqp: {password: FAKE}}'
    'secrets.kone.clientSecret|secrets: {kone: {clientSecret: FAKE}}'
    'secrets.ledger.url|secrets: {ledger: {url: "postgresql://kd:FAKE@ledger/kone_dispatch"}}'
    'secrets.rabbitmqManagement.host|secrets: {rabbitmqManagement: {host: "http://kd:FAKE@rabbitmq:15672"}}'
    'top-level amqpPassword|amqpPassword: FAKE'
)
i=0
for a in "${attempts[@]}"; do
    i=$((i + 1))
    name=${a%%|*}
    fake="kdfake$i-$RANDOM$RANDOM-secret"
    printf '%s\n' "${a#*|}" | sed "s/FAKE/$fake/" >"$tmp/attempt.yaml"
    if "$HELM" template kone-dispatch "$CHART" -f "$tmp/attempt.yaml" >"$tmp/out" 2>"$tmp/err"; then
        fail "$name: a secret value was accepted (the chart must refuse it; secrets come from existing Secrets as files)"
        grep -n -- "$fake" "$tmp/out" | head -n3 | sed 's/^/  | /'
    elif grep -q -- "$fake" "$tmp/out" "$tmp/err"; then
        fail "$name: refused, but the error output shows the secret value"
    else
        reason=$(grep -v 'found symbolic link' "$tmp/err" | grep -E "at '|Error" | tail -n1 | sed 's/^[- ]*//')
        echo "ok: $name refused ($reason)"
    fi
done

# --- 2. what renders holds no secret ---
cat >"$tmp/all.yaml" <<'EOF'
sim:
  enabled: true
  tls: {existingSecret: kd-sim-tls}
  clients: {existingSecret: kd-sim-clients}
  controlToken: {existingSecret: kd-sim-control}
smoke: {enabled: true, count: 2}
secrets:
  koneCA: {existingSecret: kd-kone-ca}
EOF
rendered=()
for e in default dev staging prod all; do
    args=()
    case $e in
    default) ;;
    all) args=(-f "$CHART/values-staging.yaml" -f "$tmp/all.yaml") ;;
    *) args=(-f "$CHART/values-$e.yaml") ;;
    esac
    if ! "$HELM" template kone-dispatch "$CHART" "${args[@]}" >"$tmp/$e.out" 2>"$tmp/err"; then
        grep -v 'found symbolic link' "$tmp/err" | sed 's/^/  | /'
        fail "helm template ($e)"
        continue
    fi
    rendered+=("$e=$tmp/$e.out")
done

known_secrets=()
while IFS= read -r s; do known_secrets+=("$s"); done < <("$PY" -c '
import json, sys
for c in json.load(open(sys.argv[1])):
    if c.get("client_secret"):
        print(c["client_secret"])
' "$SRC/sim/clients.json")
state=${KD_STATE_DIR:-$SRC/.dev}
[[ -s $state/kone-client-secret ]] && known_secrets+=("$(<"$state/kone-client-secret")")

if ((${#rendered[@]})); then
    if ! KD_SRC_DIR=$SRC "$PY" - "${rendered[@]}" -- "${known_secrets[@]}" <<'PYEOF'; then
import os, re, sys
import yaml

args = sys.argv[1:]
sep = args.index("--")
cases, secrets = args[:sep], [s for s in args[sep + 1:] if s]
problems = []
# The secret keys of the configuration table (docs/configuration.md, checked against the
# code by unit.test_config): "(secret; also KD_..._FILE)" in their meaning.
table = open(os.path.join(os.environ["KD_SRC_DIR"], "docs", "configuration.md"), encoding="utf-8").read()
secret_env = set(re.findall(r"\|\s*`(KD_[A-Z0-9_]+)`\s*\|[^\n]*\(secret;", table))
if len(secret_env) < 2:
    problems.append("docs/configuration.md: found %d secret keys, expected amqp.password and kone.client_secret at least" % len(secret_env))
for arg in cases:
    case, path = arg.split("=", 1)
    text = open(path).read()
    for s in secrets:
        if s in text:
            problems.append("%s: a known secret value (%s...) appears in the rendered manifests" % (case, s[:4]))
    docs = [d for d in yaml.safe_load_all(text) if d]
    n_env = 0
    for d in docs:
        where = "%s/%s" % (d["kind"], d["metadata"]["name"])
        if d["kind"] == "Secret":
            problems.append("%s: the chart renders a Secret (%s); it must only reference existing ones" % (case, where))
        spec = d.get("spec", {})
        pod = spec.get("template", {}).get("spec") if d["kind"] in ("Deployment", "Job") else spec if d["kind"] == "Pod" else None
        if not pod:
            continue
        for c in pod.get("initContainers", []) + pod.get("containers", []):
            for e in c.get("env", []):
                n_env += 1
                if "secretKeyRef" in (e.get("valueFrom") or {}):
                    problems.append("%s: %s env %s comes from a Secret as a value; secrets are mounted files" % (case, where, e["name"]))
                if e["name"] in secret_env:
                    problems.append("%s: %s env %s is a secret key passed as a value (use %s_FILE)" % (case, where, e["name"], e["name"]))
                if e["name"].endswith("_FILE") and not str(e.get("value", "")).startswith("/var/run/secrets/"):
                    problems.append("%s: %s env %s=%r is not a mounted secret file" % (case, where, e["name"], e.get("value")))
            for ef in c.get("envFrom", []):
                if "secretRef" in ef:
                    problems.append("%s: %s takes envFrom a Secret" % (case, where))
    if not [p for p in problems if p.startswith(case + ":")]:
        print("ok: %s: %d documents, %d env vars, no Secret object, no secret value" % (case, len(docs), n_env))
for p in problems:
    print("FAIL: " + p)
sys.exit(1 if problems else 0)
PYEOF
        fails=$((fails + 1))
    fi
fi

# --- broker transport security: CA, client certificate and SCRAM password as mounted files ---
# (issue 13): each *_FILE variable points into a read-only mount of the named Secret, and
# the smoke producer (AMQP only) gets the RabbitMQ CA but nothing of Kafka.
"$HELM" template kone-dispatch "$CHART" --set secrets.amqpTLS.existingSecret=rmq-ca \
    --set secrets.kafkaTLS.existingSecret=kafka-tls --set secrets.kafkaTLS.certKey=tls.crt \
    --set secrets.kafkaTLS.keyKey=tls.key --set secrets.kafkaSASL.existingSecret=kafka-scram \
    --set smoke.enabled=true >"$tmp/tls.yaml" 2>"$tmp/tls.err" || fail "rendering with broker TLS Secrets failed: $(head -n 3 "$tmp/tls.err")"
python3 - "$tmp/tls.yaml" <<'PYEOF2' || fail "broker TLS files are not mounted as expected"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def pod(kind):
    d = next(d for d in docs if d["kind"] == kind)
    return d["spec"]["template"]["spec"]
want = {"KD_AMQP_CA_FILE": ("amqp-tls", "rmq-ca"), "KD_KAFKA_CA_FILE": ("kafka-tls", "kafka-tls"),
        "KD_KAFKA_CERT_FILE": ("kafka-tls", "kafka-tls"), "KD_KAFKA_KEY_FILE": ("kafka-tls", "kafka-tls"),
        "KD_KAFKA_SASL_PASSWORD_FILE": ("kafka-sasl", "kafka-scram")}
bad = []
for kind, keys in (("Deployment", set(want)), ("Job", {"KD_AMQP_CA_FILE"})):
    spec = pod(kind)
    c = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in spec["volumes"]}
    for k in want:
        if k not in keys:
            if k in env:
                bad.append("%s: %s set" % (kind, k))
            continue
        vol, secret = want[k]
        m = mounts.get(vol)
        if not env.get(k) or not m or not env[k].startswith(m["mountPath"] + "/") or not m.get("readOnly"):
            bad.append("%s: %s not a file in the read-only mount %s" % (kind, k, vol))
        elif vols[vol]["secret"]["secretName"] != secret:
            bad.append("%s: volume %s is not Secret %s" % (kind, vol, secret))
for b in bad:
    print("FAIL: " + b)
if not bad:
    print("ok: broker CA, client certificate and SCRAM password mounted as files (worker; smoke: AMQP CA only)")
sys.exit(1 if bad else 0)
PYEOF2

if ((fails)); then
    echo "chart_secrets: $fails failure(s)"
    exit 1
fi
echo "chart_secrets: ok"
