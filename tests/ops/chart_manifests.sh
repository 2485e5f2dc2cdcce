#!/usr/bin/env bash
# ops.chart_manifests: assertions on what charts/kone-dispatch renders, for the defaults,
# each environment's values file, and overrides that switch every optional part on (kone-sim,
# the smoke Job, the HPA alternative, another queue, a long drain, another ledger):
#   - autoscaling: the KEDA ScaledObject's rabbitmq trigger watches the queue the worker
#     consumes (its KD_AMQP_QUEUE) in the worker's vhost, over the management API
#     (protocol http, mode QueueLength: unacked jobs count), through a TriggerAuthentication
#     whose host comes from a Secret; the HPA alternative selects the same queue; exactly one
#     autoscaler, aimed at the worker Deployment;
#   - shutdown: terminationGracePeriodSeconds exceeds the worker's drain time (KD_WORKER_DRAIN_MS);
#   - every container (init containers too) of every pod has the restricted security context:
#     non-root, read-only root file system, no privilege escalation, ALL capabilities dropped,
#     seccomp RuntimeDefault; no host namespaces or hostPath; no service account token;
#   - probes: /healthz (liveness, startup) and /readyz (readiness, through the check of
#     templates/_probes.tpl that ops.chart_ready runs) on the metrics port, which
#     is KD_METRICS_PORT, the Service's and the ServiceMonitor's port; the scrape job is
#     named kone-worker (what alerts/ and dashboards/ expect);
#   - credentials are files: KD_AMQP_PASSWORD_FILE, KD_KONE_CLIENT_SECRET_FILE and
#     KD_LEDGER_URL_FILE point into read-only mounts of Secret volumes;
#   - the call ledger: KD_LEDGER_URL_FILE is the file the volume of secrets.ledger makes of
#     its key (secrets.ledger.urlKey of Secret secrets.ledger.existingSecret, defaults
#     kone-dispatch-ledger / url: /var/run/secrets/kone-dispatch/ledger/url), never a plain
#     KD_LEDGER_URL; the optional ledger CA is mounted as ledger-ca/ca.crt;
#   - NetworkPolicy: every pod is selected by one; the worker's allows DNS, RabbitMQ's and
#     Kafka's ports, the ledger (one rule: networkPolicy.ledger's ports, default 5432, to its
#     peers), KONE (or the simulator when it is on) and the metrics scrape.
# shellcheck source=lib/chart.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/chart.sh"

cat >"$tmp/full.yaml" <<'EOF'
sim:
  enabled: true
  tls: {existingSecret: test-sim-tls}
  clients: {existingSecret: test-sim-clients}
  controlToken: {existingSecret: test-sim-control}
smoke:
  enabled: true
  count: 3
secrets:
  koneCA: {existingSecret: test-kone-ca}
EOF
cat >"$tmp/hpa.yaml" <<'EOF'
autoscaling:
  mode: hpa
  hpa: {externalMetric: rabbitmq_queue_messages, cpuUtilization: 80}
worker:
  config:
    amqp: {queue: jobs.custom, vhost: /kd}
EOF
cat >"$tmp/queue.yaml" <<'EOF'
worker:
  config:
    amqp: {queue: orders.elevator.calls, vhost: elevators, port: 5671}
    kafka: {brokers: "k1:19092,k2:19093"}
    metrics: {port: 9500}
EOF
cat >"$tmp/none.yaml" <<'EOF'
autoscaling: {mode: none}
worker: {replicas: 3}
networkPolicy: {enabled: false}
EOF
cat >"$tmp/drain.yaml" <<'EOF'
worker:
  config:
    worker: {drain_ms: 120500}
EOF
cat >"$tmp/ledger.yaml" <<'EOF'
secrets:
  ledger: {existingSecret: pg-ledger-url, urlKey: uri}
  ledgerCA: {existingSecret: pg-ledger-ca, key: root.crt}
networkPolicy:
  ledger:
    to: [{ipBlock: {cidr: 10.20.30.40/32}}]
    ports: [6432]
EOF

cases=(default "dev:$CHART/values-dev.yaml" "staging:$CHART/values-staging.yaml" "prod:$CHART/values-prod.yaml"
    "full:$tmp/full.yaml" "staging+hpa:$CHART/values-staging.yaml,$tmp/hpa.yaml"
    "prod+queue:$CHART/values-prod.yaml,$tmp/queue.yaml" "none:$tmp/none.yaml" "drain:$tmp/drain.yaml"
    "prod+ledger:$CHART/values-prod.yaml,$tmp/ledger.yaml")
rendered=()
for c in "${cases[@]}"; do
    name=${c%%:*} args=()
    if [[ $c == *:* ]]; then
        IFS=, read -r -a files <<<"${c#*:}"
        for f in "${files[@]}"; do args+=(-f "$f"); done
    fi
    if ! "$HELM" template kone-dispatch "$CHART" --namespace kd-test "${args[@]}" >"$tmp/$name.out" 2>"$tmp/$name.err"; then
        grep -v 'found symbolic link in path' "$tmp/$name.err" | sed 's/^/  | /'
        echo "FAIL: helm template ($name) failed"
        exit 1
    fi
    rendered+=("$name=$tmp/$name.out")
done

"$PY" - "${rendered[@]}" <<'PYEOF'
import math, sys
import yaml

problems = []
expect = {  # case -> what the overrides asked for
    "none": {"autoscaler": None, "replicas": 3, "netpol": False},
    "drain": {"grace_min": 121},
    "full": {"sim": True, "smoke": True},
    # dev: the local cluster's dev CA verifies its brokers and its PostgreSQL alike
    "dev": {"autoscaler": None, "sim": True, "smoke": True,
            "ledger": {"ca": ("kone-dispatch-broker-ca", "ca.crt")}},
    # prod and staging mount the ledger's CA (their URLs name it in sslrootcert, verify-full)
    "prod": {"ledger": {"ca": ("kone-dispatch-ledger-ca", "ca.crt")}},
    "staging": {"ledger": {"ca": ("kone-dispatch-ledger-ca", "ca.crt")}},
    "staging+hpa": {"autoscaler": "HorizontalPodAutoscaler", "queue": "jobs.custom",
                    "ledger": {"ca": ("kone-dispatch-ledger-ca", "ca.crt")}},
    "prod+queue": {"queue": "orders.elevator.calls", "vhost": "elevators", "amqp_port": 5671,
                   "kafka_ports": {19092, 19093}, "metrics_port": 9500,
                   "ledger": {"ca": ("kone-dispatch-ledger-ca", "ca.crt")}},
    "prod+ledger": {"ledger": {"secret": "pg-ledger-url", "key": "uri", "ports": [6432],
                               "to": [{"ipBlock": {"cidr": "10.20.30.40/32"}}],
                               "ca": ("pg-ledger-ca", "root.crt")}},
}
# The ledger of values.yaml, which every environment keeps: Secret, key, egress.
LEDGER = {"secret": "kone-dispatch-ledger", "key": "url", "ports": [5432], "to": [], "ca": None}
LEDGER_FILE = "/var/run/secrets/kone-dispatch/ledger/url"
LEDGER_CA_FILE = "/var/run/secrets/kone-dispatch/ledger-ca/ca.crt"

def pods(docs):
    """(doc, pod spec, pod labels) of every workload."""
    for d in docs:
        k, s = d["kind"], d.get("spec", {})
        if k in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
            t = s["template"]
            yield d, t["spec"], t.get("metadata", {}).get("labels", {})
        elif k == "CronJob":
            t = s["jobTemplate"]["spec"]["template"]
            yield d, t["spec"], t.get("metadata", {}).get("labels", {})
        elif k == "Pod":
            yield d, s, d["metadata"].get("labels", {})

def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

def check(case, docs):
    p = lambda msg: problems.append("%s: %s" % (case, msg))
    exp = expect.get(case, {})
    by = {}
    for d in docs:
        by.setdefault(d["kind"], []).append(d)
    workers = [d for d in by.get("Deployment", [])
               if d["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"]
    if len(workers) != 1:
        p("expected one worker Deployment, found %d" % len(workers))
        return
    dep = workers[0]
    spec = dep["spec"]["template"]["spec"]
    c = {x["name"]: x for x in spec["containers"]}.get("worker")
    if not c:
        p("worker Deployment has no container named worker")
        return
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    for e in c.get("env", []):
        if "valueFrom" in e:
            p("worker env %s uses valueFrom (configuration is plain values, secrets are files)" % e["name"])

    # --- the queue: one value for the worker and its autoscaler ---
    queue = env.get("KD_AMQP_QUEUE")
    vhost = env.get("KD_AMQP_VHOST", "/")
    if not queue:
        p("worker has no KD_AMQP_QUEUE")
    if "queue" in exp and queue != exp["queue"]:
        p("KD_AMQP_QUEUE is %r, the override asked for %r" % (queue, exp["queue"]))
    if "vhost" in exp and vhost != exp["vhost"]:
        p("KD_AMQP_VHOST is %r, the override asked for %r" % (vhost, exp["vhost"]))
    scaled = by.get("ScaledObject", [])
    hpas = by.get("HorizontalPodAutoscaler", [])
    want = exp.get("autoscaler", "ScaledObject")
    got = [k for k in ("ScaledObject", "HorizontalPodAutoscaler") for _ in by.get(k, [])]
    if got != ([want] if want else []):
        p("autoscalers rendered: %s, expected %s" % (got or "none", want or "none"))
    if want is None and dep["spec"].get("replicas") != exp.get("replicas", dep["spec"].get("replicas")):
        p("replicas %r, expected %r" % (dep["spec"].get("replicas"), exp.get("replicas")))
    if want and "replicas" in dep["spec"]:
        p("Deployment sets replicas although %s owns the count (every upgrade would reset it)" % want)
    for so in scaled:
        s = so["spec"]
        if s["scaleTargetRef"].get("name") != dep["metadata"]["name"] or s["scaleTargetRef"].get("kind", "Deployment") != "Deployment":
            p("ScaledObject targets %s, not the worker Deployment %s" % (s["scaleTargetRef"], dep["metadata"]["name"]))
        trig = [t for t in s.get("triggers", []) if t.get("type") == "rabbitmq"]
        if len(trig) != 1:
            p("ScaledObject has %d rabbitmq triggers, expected 1" % len(trig))
            continue
        m = trig[0].get("metadata", {})
        if m.get("queueName") != queue:
            p("ScaledObject watches queue %r but the worker consumes %r (KD_AMQP_QUEUE)" % (m.get("queueName"), queue))
        if m.get("vhostName", "/") != vhost:
            p("ScaledObject watches vhost %r but the worker uses %r" % (m.get("vhostName"), vhost))
        if m.get("protocol") != "http":
            p("rabbitmq trigger protocol %r: must be http (management API) so unacknowledged jobs count" % m.get("protocol"))
        if m.get("mode") != "QueueLength" or not str(m.get("value", "")).isdigit() or int(m["value"]) < 1:
            p("rabbitmq trigger must be mode QueueLength with a positive integer value, got %r/%r" % (m.get("mode"), m.get("value")))
        if "host" in m or "hostFromEnv" in m:
            p("rabbitmq trigger names its host inline; it must come from the TriggerAuthentication")
        ref = trig[0].get("authenticationRef", {}).get("name")
        auths = {a["metadata"]["name"]: a for a in by.get("TriggerAuthentication", [])}
        if ref not in auths:
            p("rabbitmq trigger's authenticationRef %r is not a rendered TriggerAuthentication" % ref)
        elif not any(r.get("parameter") == "host" and r.get("name") and r.get("key")
                     for r in auths[ref]["spec"].get("secretTargetRef", [])):
            p("TriggerAuthentication %s does not take `host` from a Secret" % ref)
        for k in ("minReplicaCount", "maxReplicaCount", "cooldownPeriod"):
            if k not in s:
                p("ScaledObject lacks %s" % k)
        if s.get("minReplicaCount", 0) > s.get("maxReplicaCount", 0):
            p("ScaledObject minReplicaCount > maxReplicaCount")
    for h in hpas:
        s = h["spec"]
        if s["scaleTargetRef"].get("name") != dep["metadata"]["name"]:
            p("HPA targets %s, not the worker Deployment" % s["scaleTargetRef"])
        ext = [m for m in s.get("metrics", []) if m.get("type") == "External"]
        for m in ext:
            sel = m["external"]["metric"].get("selector", {}).get("matchLabels", {})
            if sel.get("queue") != queue:
                p("HPA external metric selects queue %r but the worker consumes %r" % (sel.get("queue"), queue))
        if not s.get("metrics"):
            p("HPA has no metrics")

    # --- grace period vs drain ---
    drain_ms = int(env.get("KD_WORKER_DRAIN_MS", "10000"))
    grace = spec.get("terminationGracePeriodSeconds")
    if not isinstance(grace, int) or grace <= math.ceil(drain_ms / 1000):
        p("terminationGracePeriodSeconds %r does not exceed the drain time %d ms (KD_WORKER_DRAIN_MS): "
          "the kubelet would SIGKILL workers mid-job" % (grace, drain_ms))
    if "grace_min" in exp and (grace or 0) < exp["grace_min"]:
        p("grace period %r for a %d ms drain" % (grace, drain_ms))

    # --- probes and the metrics port ---
    mport = env.get("KD_METRICS_PORT")
    ports = {x.get("name"): x.get("containerPort") for x in c.get("ports", [])}
    if not mport or ports.get("metrics") != int(mport):
        p("container port 'metrics' %r is not KD_METRICS_PORT %r" % (ports.get("metrics"), mport))
    if "metrics_port" in exp and str(exp["metrics_port"]) != mport:
        p("KD_METRICS_PORT %r, the override asked for %r" % (mport, exp["metrics_port"]))
    for probe, path in (("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
        g = c.get(probe, {}).get("httpGet", {})
        if g.get("path") != path or g.get("port") not in ("metrics", ports.get("metrics")):
            p("%s is %r, expected GET %s on the metrics port" % (probe, g, path))
    # readiness: GET /readyz on the port, through bash (ops.chart_ready runs it)
    rcmd = " ".join(c.get("readinessProbe", {}).get("exec", {}).get("command", []))
    if "/dev/tcp/127.0.0.1/%s" % mport not in rcmd or "GET /readyz" not in rcmd:
        p("readinessProbe %r does not ask /readyz on the metrics port" % c.get("readinessProbe"))
    for k in ("requests", "limits"):
        if not c.get("resources", {}).get(k):
            p("worker container has no resources.%s" % k)
    svcs = [s for s in by.get("Service", []) if selects(s["spec"].get("selector"), spec and dep["spec"]["template"]["metadata"]["labels"])]
    if len(svcs) != 1:
        p("expected one Service selecting the workers, found %d" % len(svcs))
    for s in svcs:
        sp = {x["name"]: x for x in s["spec"]["ports"]}.get("metrics")
        if not sp or sp.get("targetPort") not in ("metrics", ports.get("metrics")):
            p("Service %s has no 'metrics' port to the workers' metrics port" % s["metadata"]["name"])
        for sm in by.get("ServiceMonitor", []):
            if not selects(sm["spec"]["selector"].get("matchLabels"), s["metadata"]["labels"]):
                p("ServiceMonitor %s does not select Service %s" % (sm["metadata"]["name"], s["metadata"]["name"]))
            if [e.get("port") for e in sm["spec"]["endpoints"]] != ["metrics"]:
                p("ServiceMonitor endpoints are not the metrics port")
            jl = sm["spec"].get("jobLabel")
            if s["metadata"]["labels"].get(jl) != "kone-worker":
                p("scrape job would be %r, not kone-worker (alerts/ and dashboards/ select job=\"kone-worker\")"
                  % s["metadata"]["labels"].get(jl, s["metadata"]["name"]))

    # --- credentials are files from Secret volumes ---
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    for var in ("KD_AMQP_PASSWORD_FILE", "KD_KONE_CLIENT_SECRET_FILE", "KD_LEDGER_URL_FILE") + (("KD_KONE_CA_FILE",) if "KD_KONE_CA_FILE" in env else ()):
        path = env.get(var)
        if not path:
            p("worker has no %s" % var)
            continue
        m = [m for mp, m in mounts.items() if path.startswith(mp.rstrip("/") + "/")]
        if len(m) != 1 or not m[0].get("readOnly"):
            p("%s=%s is not under exactly one read-only mount" % (var, path))
        elif "secret" not in vols.get(m[0]["name"], {}):
            p("%s is mounted from volume %s, which is not a Secret" % (var, m[0]["name"]))

    # --- the call ledger: its URL (a secret: it holds the password) is a file from its Secret ---
    led = dict(LEDGER, **exp.get("ledger", {}))

    def secret_file(path):
        """(Secret name, key) whose file is `path` in the worker, or None."""
        for mp, m in mounts.items():
            if not path.startswith(mp.rstrip("/") + "/"):
                continue
            sec = vols.get(m["name"], {}).get("secret", {})
            rel = path[len(mp.rstrip("/")) + 1:]
            items = sec.get("items") or []
            keys = [i["key"] for i in items if i.get("path") == rel]
            if not items:  # the whole Secret: file names are its keys
                keys = [rel]
            return (sec.get("secretName"), keys[0]) if sec and keys else None
        return None

    if env.get("KD_LEDGER_URL_FILE") != LEDGER_FILE:
        p("KD_LEDGER_URL_FILE is %r, expected %s" % (env.get("KD_LEDGER_URL_FILE"), LEDGER_FILE))
    elif secret_file(LEDGER_FILE) != (led["secret"], led["key"]):
        p("KD_LEDGER_URL_FILE is %r (Secret, key), expected %r from secrets.ledger"
          % (secret_file(LEDGER_FILE), (led["secret"], led["key"])))
    if "KD_LEDGER_URL" in env:
        p("the worker gets KD_LEDGER_URL as a plain value: the ledger URL carries its password")
    ca_vols = [v for v in spec.get("volumes", []) if v["name"] == "ledger-ca"]
    if led["ca"]:
        if secret_file(LEDGER_CA_FILE) != tuple(led["ca"]):
            p("the ledger CA %s is %r (Secret, key), expected %r" % (LEDGER_CA_FILE, secret_file(LEDGER_CA_FILE), led["ca"]))
    elif ca_vols:
        p("a ledger-ca volume without secrets.ledgerCA.existingSecret")
    if exp.get("netpol", True):
        wl = dep["spec"]["template"]["metadata"]["labels"]
        for n in by.get("NetworkPolicy", []):
            if not selects(n["spec"]["podSelector"].get("matchLabels"), wl):
                continue
            rules = [r for r in n["spec"].get("egress", [])
                     if sorted(pp.get("port") for pp in r.get("ports", [])) == sorted(led["ports"])]
            if len(rules) != 1:
                p("worker NetworkPolicy: %d egress rules for the ledger's ports %s, expected 1"
                  % (len(rules), led["ports"]))
                continue
            r = rules[0]
            if any(pp.get("protocol", "TCP") != "TCP" for pp in r["ports"]):
                p("worker NetworkPolicy: the ledger rule is not TCP: %r" % r["ports"])
            if (r.get("to") or []) != led["to"]:
                p("worker NetworkPolicy: the ledger rule goes to %r, networkPolicy.ledger.to is %r"
                  % (r.get("to") or [], led["to"]))

    sims = [d for d in by.get("Deployment", []) if d["metadata"]["labels"].get("app.kubernetes.io/component") == "sim"]
    if exp.get("sim") and len(sims) != 1:
        p("sim.enabled but %d kone-sim Deployments" % len(sims))
    if sims:
        if not env.get("KD_KONE_WS_URL", "").startswith("wss://") or "-sim:" not in env.get("KD_KONE_WS_URL", ""):
            p("sim.enabled but the workers' KD_KONE_WS_URL is %r" % env.get("KD_KONE_WS_URL"))
    if exp.get("smoke"):
        jobs = [d for d in by.get("Job", []) if d["metadata"]["labels"].get("app.kubernetes.io/component") == "smoke"]
        if len(jobs) != 1:
            p("smoke.enabled but %d smoke Jobs" % len(jobs))
        for j in jobs:
            jenv = {e["name"]: e.get("value") for x in j["spec"]["template"]["spec"]["containers"] for e in x.get("env", [])}
            if jenv.get("KD_AMQP_QUEUE") != queue or jenv.get("KD_AMQP_VHOST", "/") != vhost:
                p("the smoke Job publishes to %r/%r, not the workers' queue %r/%r"
                  % (jenv.get("KD_AMQP_VHOST"), jenv.get("KD_AMQP_QUEUE"), vhost, queue))
    tests = [d for d in by.get("Pod", []) if "test" in d["metadata"].get("annotations", {}).get("helm.sh/hook", "")]
    if len(tests) != 1:
        p("expected one `helm test` pod, found %d" % len(tests))

    # --- every pod: restricted ---
    for d, ps, labels in pods(docs):
        where = "%s/%s" % (d["kind"], d["metadata"]["name"])
        for k in ("hostNetwork", "hostPID", "hostIPC"):
            if ps.get(k):
                p("%s sets %s" % (where, k))
        if ps.get("automountServiceAccountToken") is not False:
            p("%s mounts a service account token (the programs never call the API server)" % where)
        for v in ps.get("volumes", []):
            if "hostPath" in v:
                p("%s mounts hostPath %s" % (where, v["name"]))
        psc = ps.get("securityContext", {})
        if psc.get("runAsUser") == 0:
            p("%s runs as uid 0" % where)
        for x in ps.get("initContainers", []) + ps.get("containers", []):
            w = "%s container %s" % (where, x["name"])
            sc = x.get("securityContext", {})
            if sc.get("runAsNonRoot") is not True and psc.get("runAsNonRoot") is not True:
                p("%s: runAsNonRoot is not true" % w)
            if sc.get("runAsUser", psc.get("runAsUser")) == 0:
                p("%s: runs as uid 0" % w)
            if sc.get("readOnlyRootFilesystem") is not True:
                p("%s: readOnlyRootFilesystem is not true" % w)
            if sc.get("allowPrivilegeEscalation") is not False:
                p("%s: allowPrivilegeEscalation is not false" % w)
            if sc.get("privileged"):
                p("%s: privileged" % w)
            caps = sc.get("capabilities", {})
            if "ALL" not in (caps.get("drop") or []) or caps.get("add"):
                p("%s: capabilities must drop ALL and add none, got %r" % (w, caps))
            seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
            if seccomp != "RuntimeDefault":
                p("%s: seccompProfile %r, expected RuntimeDefault" % (w, seccomp))

    # --- network policies ---
    nps = by.get("NetworkPolicy", [])
    if exp.get("netpol", True):
        for d, ps, labels in pods(docs):
            if not any(selects(n["spec"]["podSelector"].get("matchLabels"), labels) for n in nps):
                p("no NetworkPolicy selects the pods of %s/%s" % (d["kind"], d["metadata"]["name"]))
        wl = dep["spec"]["template"]["metadata"]["labels"]
        wnp = [n for n in nps if selects(n["spec"]["podSelector"].get("matchLabels"), wl)]
        if len(wnp) != 1:
            p("expected one NetworkPolicy for the workers, found %d" % len(wnp))
        else:
            n = wnp[0]["spec"]
            if sorted(n.get("policyTypes", [])) != ["Egress", "Ingress"]:
                p("worker NetworkPolicy policyTypes %r: both Ingress and Egress must be restricted" % n.get("policyTypes"))
            out = {(pp.get("port"), pp.get("protocol", "TCP")) for r in n.get("egress", []) for pp in r.get("ports", [])}
            if any(not r.get("ports") for r in n.get("egress", [])):
                p("a worker egress rule has no ports (allows everything)")
            amqp_port = int(env.get("KD_AMQP_PORT", "5672"))
            kafka_ports = {int(b.rsplit(":", 1)[1]) for b in env.get("KD_KAFKA_BROKERS", "127.0.0.1:9092").split(",")}
            need = {(53, "UDP"), (53, "TCP"), (amqp_port, "TCP")} | {(kp, "TCP") for kp in kafka_ports}
            need |= {(lp, "TCP") for lp in dict(LEDGER, **exp.get("ledger", {}))["ports"]}
            if sims:
                need.add((int(env["KD_KONE_WS_URL"].rsplit(":", 1)[1].split("/")[0]), "TCP"))
            else:
                need.add((443, "TCP"))
            if "amqp_port" in exp and amqp_port != exp["amqp_port"]:
                p("KD_AMQP_PORT %r, the override asked for %r" % (amqp_port, exp["amqp_port"]))
            if "kafka_ports" in exp and kafka_ports != exp["kafka_ports"]:
                p("Kafka ports %r, the override asked for %r" % (kafka_ports, exp["kafka_ports"]))
            missing = need - out
            if missing:
                p("worker NetworkPolicy lacks egress to %s" % sorted(missing))
            inn = {pp.get("port") for r in n.get("ingress", []) for pp in r.get("ports", [])}
            if inn != {int(mport or 0)}:
                p("worker NetworkPolicy ingress ports %r, expected only the metrics port %s" % (inn, mport))
    elif nps:
        p("networkPolicy.enabled false but %d NetworkPolicies rendered" % len(nps))

    # --- PodDisruptionBudget ---
    for pdb in by.get("PodDisruptionBudget", []):
        if not selects(pdb["spec"]["selector"].get("matchLabels"), dep["spec"]["template"]["metadata"]["labels"]):
            p("PodDisruptionBudget does not select the workers")
    # One image for every program, except kone-sim: it has its own (the Dockerfile's `sim`
    # target), so the production image carries no simulator and no dev credentials.
    images, sim_images = set(), set()
    for _, ps, labels in pods(docs):
        is_sim = labels.get("app.kubernetes.io/component") == "sim"
        for x in ps.get("containers", []):
            (sim_images if is_sim else images).add(x["image"])
    if len(images) != 1:
        p("containers run %d different images: %s" % (len(images), sorted(images)))
    for si in sim_images:
        if si in images or not any(si.split("@")[0].split(":")[0] == i.split("@")[0].split(":")[0] + "-sim" for i in images):
            p("kone-sim runs %s: expected its own image, the main repository + '-sim'" % si)
    return "%s: queue %s, %s, grace %ss for a %d ms drain, ledger %s:%s -> %s, %d pods checked" % (
        case, queue, (got or ["fixed replicas"])[0], grace, drain_ms, led["secret"], led["key"],
        env.get("KD_LEDGER_URL_FILE"), len(list(pods(docs))))

for arg in sys.argv[1:]:
    case, path = arg.split("=", 1)
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    n = len(problems)
    line = check(case, docs)
    if len(problems) == n and line:
        print("ok: " + line)

if problems:
    for x in problems:
        print("FAIL: " + x)
    print("chart_manifests: %d problem(s)" % len(problems))
    sys.exit(1)
print("chart_manifests: ok")
PYEOF
