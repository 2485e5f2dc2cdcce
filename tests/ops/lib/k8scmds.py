"""k8scmds: the kubectl and helm commands of RUNBOOK.md and docs/**/*.md against the chart's
rendered manifests (tests/ops/runbook_k8s.sh renders them into $KD_RENDER_DIR/<namespace>.yaml
and documents the rules). Prints one line per problem; exit status 1 when there is any.
"""
import glob
import os
import re
import shlex
import sys

import yaml

import opscheck as oc

RELEASE = "kone-dispatch"
BROKER_NS = {"messaging"}          # values-*.yaml: rabbitmq.messaging.svc, kafka-*.messaging
KINDS = {
    "deploy": "Deployment", "deployment": "Deployment", "deployments": "Deployment",
    "deployment.apps": "Deployment",
    "pod": "Pod", "pods": "Pod", "po": "Pod",
    "secret": "Secret", "secrets": "Secret",
    "scaledobject": "ScaledObject", "scaledobjects": "ScaledObject", "so": "ScaledObject",
    "scaledobject.keda.sh": "ScaledObject",
    "triggerauthentication": "TriggerAuthentication", "triggerauthentications": "TriggerAuthentication",
    "svc": "Service", "service": "Service", "services": "Service",
    "pdb": "PodDisruptionBudget", "poddisruptionbudget": "PodDisruptionBudget",
    "poddisruptionbudgets": "PodDisruptionBudget",
    "cm": "ConfigMap", "configmap": "ConfigMap", "configmaps": "ConfigMap",
    "sa": "ServiceAccount", "serviceaccount": "ServiceAccount",
    "servicemonitor": "ServiceMonitor", "servicemonitors": "ServiceMonitor",
    "prometheusrule": "PrometheusRule", "prometheusrules": "PrometheusRule",
    "networkpolicy": "NetworkPolicy", "netpol": "NetworkPolicy", "networkpolicies": "NetworkPolicy",
    "hpa": "HorizontalPodAutoscaler", "horizontalpodautoscaler": "HorizontalPodAutoscaler",
    "endpoints": "Endpoints", "ep": "Endpoints",
    "job": "Job", "jobs": "Job", "rs": "ReplicaSet", "replicaset": "ReplicaSet",
    "events": "Event", "event": "Event", "ev": "Event",
    "namespace": "Namespace", "ns": "Namespace", "node": "Node", "nodes": "Node",
}
# Objects Kubernetes makes from the chart's (names generated) or that are not namespaced.
GENERATED = {"Pod", "ReplicaSet", "Event", "Node", "Namespace"}
# Verbs whose first positional arguments are objects (kind/name or kind name...).
OBJECT_VERBS = {"get", "describe", "delete", "annotate", "label", "patch", "edit", "scale",
                "logs", "exec", "port-forward", "top", "debug", "wait", "cp"}
HELM_RELEASE_VERBS = {"rollback", "history", "status", "upgrade", "get", "test", "uninstall",
                      "install", "template"}
FLAGS_WITH_VALUE = {"-n", "--namespace", "-l", "--selector", "-c", "--container", "-o",
                    "--output", "--since", "--tail", "--replicas", "--image", "--target",
                    "--profile", "--sort-by", "--field-selector", "--timeout", "-f", "--values",
                    "--from-file", "--from-literal", "--dry-run", "--context", "--revision",
                    "--set", "--set-string", "--version", "--max", "--for", "-p"}


class Render:
    """One environment's manifests: objects by (kind, name), Secret keys the pods read,
    labels, containers."""

    def __init__(self, path):
        self.objects = set()
        self.secret_keys = {}          # Secret name -> keys the chart reads
        self.labels = []               # label dicts of objects and pod templates
        self.containers = set()
        for doc in yaml.safe_load_all(open(path, encoding="utf-8")):
            if not doc:
                continue
            kind, name = doc["kind"], doc["metadata"]["name"]
            self.objects.add((kind, name))
            self.labels.append(doc["metadata"].get("labels") or {})
            pod = doc.get("spec") if kind == "Pod" else None
            tmpl = (doc.get("spec") or {}).get("template") or {}
            if kind == "Job":
                pod = tmpl.get("spec")
            elif tmpl:
                self.labels.append((tmpl.get("metadata") or {}).get("labels") or {})
                pod = tmpl.get("spec")
            if pod:
                for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
                    self.containers.add(c["name"])
                for v in pod.get("volumes") or []:
                    s = v.get("secret")
                    if s:
                        keys = self.secret_keys.setdefault(s["secretName"], set())
                        keys.update(i["key"] for i in s.get("items") or [])
            if kind == "TriggerAuthentication":
                for ref in doc["spec"].get("secretTargetRef") or []:
                    self.secret_keys.setdefault(ref["name"], set()).add(ref["key"])
        for s in self.secret_keys:
            self.objects.add(("Secret", s))

    def selects(self, selector):
        want = {}
        for part in selector.split(","):
            if "=" not in part or "!" in part:
                return True            # set-based selectors: not checked
            k, v = part.split("=", 1)
            want[k.strip()] = v.strip()
        return any(all(lbl.get(k) == v for k, v in want.items()) for lbl in self.labels)


def renders():
    d = os.environ["KD_RENDER_DIR"]
    return {os.path.basename(f)[:-5]: Render(f) for f in glob.glob(os.path.join(d, "*.yaml"))
            if os.path.basename(f).startswith("kone-dispatch")}


def doc_files():
    files = [oc.path("RUNBOOK.md")]
    files += sorted(glob.glob(oc.path("docs", "**", "*.md"), recursive=True))
    return files


def commands(path):
    """(line number, command text) for every kubectl/helm command in code blocks and inline
    code spans, continuation lines joined, and the file's variable assignments."""
    out, vars_, fence, buf, start = [], {}, False, "", 0
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        s = line.rstrip("\n")
        if s.lstrip().startswith("```"):
            fence = not fence
            continue
        if fence:
            if buf:
                buf += " " + s.strip()
            else:
                buf, start = s.strip(), n
            if buf.endswith("\\"):
                buf = buf[:-1]
                continue
            for m in re.finditer(r"(?:^|[\s;&])(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|'[^']*'|[^\s;&]+)", buf):
                v = m.group(2).strip("\"'")
                if "$(" not in v:
                    vars_[m.group(1)] = v
            out.append((start, buf))
            buf = ""
        else:
            # inline spans: only commands that name something (a namespace, kind/name)
            for m in re.finditer(r"`((?:kubectl|helm)\s[^`]*)`", s):
                if re.search(r"\s(-n|--namespace)[\s=]|\w/\w", m.group(1)):
                    out.append((n, m.group(1)))
    return out, vars_


def split_commands(text):
    """The kubectl/helm invocations of a shell line: split at | ; & ( ) and ` outside quotes."""
    parts, cur, quote = [], "", None
    for ch in text:
        if quote:
            cur += ch
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote, cur = ch, cur + ch
        elif ch == "#" and (not cur or cur[-1] == " "):
            break                                   # a comment
        elif ch in "|;&()`":
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for p in parts:
        p = p.strip().lstrip("$").strip()
        if re.match(r"^(?:\w+=\S+\s+)*(kubectl|helm)\s", p + " "):
            yield p


def substitute(cmd, vars_):
    def rep(m):
        name = m.group(1) or m.group(2)
        return vars_.get(name, m.group(0))
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", rep, cmd)


def placeholder(tok):
    return bool(re.search(r"<[^>]*>|\$|\.\.\.", tok))


def verb_of(toks):
    """The first argument that is neither a flag nor a flag's value."""
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.startswith("-"):
            i += 2 if t in FLAGS_WITH_VALUE else 1
            continue
        return t
    return None


class Checker:
    def __init__(self):
        self.renders = renders()
        self.problems = []

    def bad(self, where, msg):
        self.problems.append("%s: %s" % (where, msg))

    def render_for(self, where, ns):
        if ns in self.renders:
            return self.renders[ns]
        if ns in BROKER_NS or placeholder(ns):
            return None
        self.bad(where, "namespace %r is neither an environment's (%s) nor the brokers' (%s)"
                 % (ns, ", ".join(sorted(self.renders)), ", ".join(sorted(BROKER_NS))))
        return None

    def kubectl(self, where, toks):
        args, flags, i = [], {}, 0
        while i < len(toks):
            t = toks[i]
            if t == "--":
                break
            if t.startswith("-") and t != "-":
                key, val = (t.split("=", 1) + [None])[:2]
                if val is None and key in FLAGS_WITH_VALUE and i + 1 < len(toks):
                    val, i = toks[i + 1], i + 1
                flags.setdefault(key, []).append(val)
            else:
                args.append(t)
            i += 1
        ns = (flags.get("-n") or flags.get("--namespace") or [None])[0]
        if not args:
            return
        verb = args[0]
        if verb == "create" and args[1:2] == ["namespace"]:
            if len(args) > 2 and not placeholder(args[2]) and args[2] not in self.renders:
                self.bad(where, "creates namespace %r, no environment's" % args[2])
            return
        if verb in ("config", "version", "api-resources", "cluster-info", "apply", "auth"):
            return
        if verb == "rollout" and args[1:2] == ["undo"]:
            self.bad(where, "kubectl rollout undo drifts from Helm's record: use helm rollback")
        if ns is None:
            self.bad(where, "kubectl %s without -n: name the namespace" % verb)
            return
        r = self.render_for(where, ns)
        for c in (flags.get("-c") or []) + (flags.get("--container") or []) + (flags.get("--target") or []):
            if r and c and not placeholder(c) and c not in r.containers:
                self.bad(where, "container %r is not in any pod of the chart (%s)" % (c, sorted(r.containers)))
        for sel in (flags.get("-l") or []) + (flags.get("--selector") or []):
            if r and sel and not placeholder(sel) and not r.selects(sel):
                self.bad(where, "label selector %r selects nothing the chart renders" % sel)
        if r is None:
            return
        if verb == "create" and args[1:3] == ["secret", "generic"] and len(args) > 3:
            self.secret_create(where, r, args[3], flags)
            return
        objs = []
        if verb == "rollout":
            objs = args[2:]
        elif verb in OBJECT_VERBS:
            objs = args[1:]
            if verb in ("logs", "exec", "port-forward", "debug", "cp"):
                objs = objs[:1]
                if objs and "/" not in objs[0]:
                    objs = ["pod/" + objs[0]]
        self.objects(where, r, verb, objs, flags)

    def objects(self, where, r, verb, objs, flags):
        kind = None
        for i, o in enumerate(objs):
            if "=" in o or re.match(r"^\d+(:\d+)?$", o) or (verb in ("annotate", "label") and o.endswith("-")):
                continue                # annotate/label key=value and key-, port-forward ports
            if "/" in o:
                k, name = o.split("/", 1)
                kinds = [KINDS.get(k.lower())]
            elif kind is None:
                kinds = [KINDS.get(x.lower()) for x in o.split(",")]
                if None in kinds:
                    self.bad(where, "unknown kind %r" % o)
                    return
                kind = kinds
                continue
            else:
                kinds, name = kind, o
            for k in kinds:
                if k is None:
                    self.bad(where, "unknown kind in %r" % o)
                elif k in GENERATED:
                    if not placeholder(name) and k == "Pod":
                        self.bad(where, "pod %r: pod names are generated, use a placeholder (<pod>)" % name)
                elif placeholder(name):
                    continue
                elif k == "Endpoints" and ("Service", name) in r.objects:
                    continue            # a Service's Endpoints carry its name
                elif (k, name) not in r.objects:
                    have = sorted(n for kk, n in r.objects if kk == k)
                    self.bad(where, "%s %r is not in the chart's render (it has: %s)" % (k, name, have or "none"))
                elif k == "Secret":
                    for out in (flags.get("-o") or []) + (flags.get("--output") or []):
                        for key in re.findall(r"\.data\.((?:[\w-]|\\\.)+)", out or ""):
                            key = key.replace("\\.", ".")
                            if key not in r.secret_keys.get(name, set()):
                                self.bad(where, "Secret %s: key %r is not one the chart mounts (%s)"
                                         % (name, key, sorted(r.secret_keys.get(name, ()))))

    def secret_create(self, where, r, name, flags):
        if placeholder(name):
            return
        if name not in r.secret_keys:
            self.bad(where, "Secret %r is not one the chart mounts (%s)" % (name, sorted(r.secret_keys)))
            return
        given = set()
        for v in (flags.get("--from-file") or []) + (flags.get("--from-literal") or []):
            if v:
                given.add(v.split("=", 1)[0] if "=" in v else os.path.basename(v))
        missing = r.secret_keys[name] - given
        if missing:
            self.bad(where, "Secret %s created without key(s) %s, which the chart mounts"
                     % (name, sorted(missing)))

    def helm(self, where, toks):
        args, ns, i = [], None, 0
        while i < len(toks):
            t = toks[i]
            if t in ("-n", "--namespace") and i + 1 < len(toks):
                ns, i = toks[i + 1], i + 2
                continue
            if t.startswith("--namespace="):
                ns = t.split("=", 1)[1]
            elif t.startswith("-"):
                if t in FLAGS_WITH_VALUE and i + 1 < len(toks):
                    i += 1
            else:
                args.append(t)
            i += 1
        if not args or args[0] not in HELM_RELEASE_VERBS or len(args) < 2:
            return
        rel = args[1]
        if args[0] == "get" and len(args) > 2:
            rel = args[2]
        if not placeholder(rel) and rel != RELEASE:
            self.bad(where, "helm %s names release %r; the release is %s" % (args[0], rel, RELEASE))
        if args[0] != "template":
            if ns is None:
                self.bad(where, "helm %s without -n: name the release's namespace" % args[0])
            else:
                self.render_for(where, ns)

    def check_file(self, path):
        rel = os.path.relpath(path, oc.SRC)
        cmds, vars_ = commands(path)
        paused = False
        for n, text in cmds:
            for c in split_commands(text):
                where = "%s:%d: %s" % (rel, n, c if len(c) < 90 else c[:87] + "...")
                c = substitute(c, vars_)
                try:
                    toks = shlex.split(c, comments=False)
                except ValueError as e:
                    self.bad(where, "cannot read the command (%s)" % e)
                    continue
                if re.search(r"autoscaling\.keda\.sh/paused", c) and " annotate " in " %s " % c:
                    paused = True
                prog = toks[0]
                while "=" in prog and len(toks) > 1:
                    toks = toks[1:]
                    prog = toks[0]
                if prog == "kubectl":
                    if verb_of(toks[1:]) == "scale" and not paused:
                        self.bad(where, "kubectl scale before the KEDA pause annotation: KEDA scales it back")
                    self.kubectl(where, toks[1:])
                else:
                    self.helm(where, toks[1:])

    def run(self):
        if set(self.renders) != {"kone-dispatch", "kone-dispatch-staging", "kone-dispatch-dev"}:
            self.bad("renders", "expected three environments' renders, got %s" % sorted(self.renders))
        files = doc_files()
        for f in files:
            self.check_file(f)
        print("%d files read" % len(files))
        return oc.report(self.problems, "kubectl/helm commands")


if __name__ == "__main__":
    sys.exit(Checker().run())
