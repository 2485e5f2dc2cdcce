#!/usr/bin/env bash
# ops.chart_ready: what "ready" means in the chart (docs/operations-manual.md#what-ready-means):
# a KONE outage neither blocks node drains nor fails deploys.
#   - the PodDisruptionBudget has unhealthyPodEvictionPolicy AlwaysAllow (prod and defaults),
#     none when the value is empty or the cluster is older than 1.26 (the field is unknown);
#   - the readiness probe and `helm test` run the rendered check (templates/_probes.tpl) for
#     real, with bash, against an HTTP server answering what the worker's /readyz answers
#     (shared/src/http.c: JSON_COMPACT {"ready":...,"reasons":[...]}, 200 or 503):
#       200                                   -> ready
#       503, the KONE reason alone            -> ready (KONE has its own alerts)
#       503, KONE and RabbitMQ / Kafka / ledger, or any other reason alone -> not ready
#       nothing listening                     -> not ready
#   - worker.probes.readiness.requireKone: true renders GET /readyz as it is, and the test pod's
#     check then refuses the KONE-only 503.
# shellcheck source=lib/chart.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/chart.sh"

port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
render() { # NAME [helm args...]
    local name=$1
    shift
    "$HELM" template kone-dispatch "$CHART" -f "$CHART/values-prod.yaml" "$@" >"$tmp/$name.yaml" \
        2> >(grep -v 'found symbolic link' >&2) || fail "helm template ($name)"
}
render prod --set "worker.config.metrics.port=$port"
render strict --set "worker.config.metrics.port=$port" --set worker.probes.readiness.requireKone=true
render old --kube-version 1.25.0
render nopolicy --set pdb.unhealthyPodEvictionPolicy=
"$HELM" template kone-dispatch "$CHART" >"$tmp/default_values.yaml" 2>/dev/null || fail "helm template (defaults)"

# The fake /readyz: answers the reasons listed in $tmp/answer (one per line; empty: 200).
cat >"$tmp/server.py" <<'EOF'
import http.server, json, sys
ANSWER = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        reasons = [l for l in open(ANSWER).read().splitlines() if l]
        body = json.dumps({"ready": not reasons, "reasons": reasons}, separators=(",", ":")).encode()
        self.send_response(503 if reasons else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
: >"$tmp/answer"
"$PY" "$tmp/server.py" "$port" "$tmp/answer" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

# extract NAME: the probe's script and the test pod's check (host pointed at the fake server)
"$PY" - "$tmp" <<'EOF' || fail "cannot extract the checks"
import sys, yaml
tmp = sys.argv[1]
for name in ("prod", "strict"):
    docs = [d for d in yaml.safe_load_all(open("%s/%s.yaml" % (tmp, name))) if d]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    c = next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "worker")
    rp = c["readinessProbe"]
    if "exec" in rp:
        open("%s/%s.probe" % (tmp, name), "w").write(rp["exec"]["command"][2])
    else:
        open("%s/%s.probe" % (tmp, name), "w").write("HTTPGET %s %s" % (rp["httpGet"]["path"], rp["httpGet"]["port"]))
    pod = next(d for d in docs if d["kind"] == "Pod")
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    svc = next(d for d in docs if d["kind"] == "Service")["metadata"]["name"]
    open("%s/%s.test" % (tmp, name), "w").write(env["KD_READY_CHECK"].replace(svc, "127.0.0.1"))
EOF

KONE="no KONE token or no WebSocket connection"
AMQP="not consuming from RabbitMQ"
KAFKA="Kafka producer not usable (all brokers down, fatal error or backpressure)"
LEDGER="the call ledger (PostgreSQL) does not answer: no job is taken"
expect() { # CHECKFILE WANT(0|1) DESCRIPTION REASONS...
    local file=$1 want=$2 what=$3 got
    shift 3
    printf '%s\n' "$@" >"$tmp/answer"
    if bash -c "$(<"$file")" >"$tmp/out" 2>&1; then got=0; else got=1; fi
    if [[ $got != "$want" ]]; then
        fail "$(basename "$file"): $what: exit $got, expected $want ($(tr '\n' ' ' <"$tmp/out"))"
    else
        echo "ok: $(basename "$file"): $what -> $([[ $got == 0 ]] && echo ready || echo 'not ready')"
    fi
}
for f in "$tmp/prod.probe" "$tmp/prod.test"; do
    expect "$f" 0 "200"
    expect "$f" 0 "503 KONE alone" "$KONE"
    expect "$f" 1 "503 RabbitMQ and KONE" "$AMQP" "$KONE"
    expect "$f" 1 "503 Kafka alone" "$KAFKA"
    expect "$f" 1 "503 ledger and RabbitMQ" "$LEDGER" "$AMQP"
done
expect "$tmp/strict.test" 1 "requireKone, 503 KONE alone" "$KONE"
expect "$tmp/strict.test" 0 "requireKone, 200"
[[ $(<"$tmp/strict.probe") == "HTTPGET /readyz metrics" ]] || fail "requireKone: readiness probe is $(<"$tmp/strict.probe"), expected GET /readyz on metrics"
kill "$server"
wait "$server" 2>/dev/null || true
expect "$tmp/prod.probe" 1 "nothing listening"

# the PodDisruptionBudget
"$PY" - "$tmp" <<'EOF' || fail "PodDisruptionBudget"
import sys, yaml
tmp, bad = sys.argv[1], 0
for name, want in (("prod", "AlwaysAllow"), ("default_values", "AlwaysAllow"), ("old", None), ("nopolicy", None)):
    pdb = [d for d in yaml.safe_load_all(open("%s/%s.yaml" % (tmp, name))) if d and d["kind"] == "PodDisruptionBudget"]
    got = pdb[0]["spec"].get("unhealthyPodEvictionPolicy") if pdb else "no PDB"
    if got != want:
        print("FAIL: %s: PodDisruptionBudget unhealthyPodEvictionPolicy %r, expected %r" % (name, got, want))
        bad += 1
    else:
        print("ok: %s: PodDisruptionBudget unhealthyPodEvictionPolicy %r" % (name, got))
sys.exit(bad)
EOF

if ((fails)); then
    echo "chart_ready: $fails failure(s)"
    exit 1
fi
echo "chart_ready: ok"
