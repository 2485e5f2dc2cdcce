#!/usr/bin/env bash
# ops.chart_logs: the chart's Fluent Bit pipeline (values logShipping, docs/logging.md) reads
# exactly this release's program logs and sends the ECS lines as they are:
#   - off by default and in every env values file: nothing rendered;
#   - on: a ConfigMap with fluent-bit.conf and custom_parsers.conf (the fluent/fluent-bit
#     chart's existingConfigMap layout), in logShipping.namespace when set;
#   - one tail input per program Deployment rendered, whose Path matches the kubelet's log
#     file name of that Deployment's pods (<pod>_<namespace>_<container>-<id>.log) and of no
#     other Deployment, with a multiline parser for the runtime's wrapper;
#   - the JSON parser takes @timestamp as the record's time with a Time_Format that parses
#     the @timestamp of docs/schemas/log-line.schema.json (whose pattern the programs' lines
#     are held to by the integration tests and unit.test_log), keeping no wrapper field; the
#     es output writes @timestamp back and creates into a data stream;
#   - the Elasticsearch login is ${ENV} references, never a value.
# shellcheck source=lib/chart.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/chart.sh"

render() { "$HELM" template kd "$CHART" -n kd-prod "$@" 2>"$tmp/err" || { cat "$tmp/err"; fail "helm template $*"; }; }
for v in "" "-f $CHART/values-dev.yaml" "-f $CHART/values-staging.yaml" "-f $CHART/values-prod.yaml"; do
    # shellcheck disable=SC2086 # $v is zero or two words
    if render $v | grep -q 'fluent-bit.conf'; then fail "log shipping rendered by default (${v:-values.yaml})"; fi
done

render -f "$CHART/values-prod.yaml" --set logShipping.enabled=true >"$tmp/on.yaml"
render -f "$CHART/values-dev.yaml" --set logShipping.enabled=true --set logShipping.namespace=logging >"$tmp/on-dev.yaml"

"$PY" - "$tmp/on.yaml" "$tmp/on-dev.yaml" "$SRC/docs/schemas/log-line.schema.json" <<'PYEOF' || fail "the Fluent Bit pipeline"
import datetime, fnmatch, json, re, sys
import yaml

problems = []
p = problems.append

def sections(text):
    """[(SECTION, {key: [values]})] of a classic-mode Fluent Bit file."""
    out = []
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = re.fullmatch(r"\[([A-Z]+)\]", s)
        if m:
            out.append((m.group(1), {}))
        elif out:
            k, _, v = s.partition(" ")
            out[-1][1].setdefault(k, []).append(v.strip())
        else:
            p("a key outside any section: %r" % s)
    return out

# a timestamp of the schema's shape (the schema's pattern must accept it)
stamp = "2026-11-28T20:15:00.123Z"
pattern = json.load(open(sys.argv[3]))["properties"]["@timestamp"]["pattern"]
if not re.search(pattern, stamp):
    p("the log-line schema's @timestamp pattern %s no longer takes %s: update this test" % (pattern, stamp))

for path, want_ns in ((sys.argv[1], "kd-prod"), (sys.argv[2], "logging")):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    cms = [d for d in docs if d["kind"] == "ConfigMap" and "fluent-bit.conf" in d.get("data", {})]
    if len(cms) != 1:
        p("%s: %d Fluent Bit ConfigMaps" % (path, len(cms)))
        continue
    cm = cms[0]
    if cm["metadata"].get("namespace") != want_ns:
        p("ConfigMap in namespace %r, expected %r" % (cm["metadata"].get("namespace"), want_ns))
    conf = sections(cm["data"]["fluent-bit.conf"])
    parsers = sections(cm["data"].get("custom_parsers.conf", ""))
    inputs = [kv for s, kv in conf if s == "INPUT"]
    deps = [d for d in docs if d["kind"] == "Deployment"]
    for d in deps:
        pod = d["metadata"]["name"] + "-6d4b75cb6d-x7k2p"
        for c in d["spec"]["template"]["spec"]["containers"]:
            f = "/var/log/containers/%s_kd-prod_%s-%s.log" % (pod, c["name"], "0" * 64)
            hits = [i for i in inputs if fnmatch.fnmatch(f, i["Path"][0])]
            if len(hits) != 1:
                p("%s: %d inputs read %s" % (path, len(hits), f))
    if len(inputs) != len(deps):
        p("%s: %d inputs for %d Deployments" % (path, len(inputs), len(deps)))
    for i in inputs:
        if i.get("Name") != ["tail"] or not i.get("multiline.parser"):
            p("an input is not a tail with a multiline parser: %r" % i)
    flt = [kv for s, kv in conf if s == "FILTER" and kv.get("Name") == ["parser"]]
    if len(flt) != 1 or flt[0].get("Reserve_Data") != ["Off"] or flt[0].get("Key_Name") != ["log"]:
        p("expected one parser filter on the key log, Reserve_Data Off: %r" % flt)
    names = {kv["Name"][0]: kv for s, kv in parsers if s == "PARSER"}
    ps = names.get(flt[0]["Parser"][0]) if flt else None
    if not ps:
        p("the filter's parser is not in custom_parsers.conf")
    else:
        if ps.get("Format") != ["json"] or ps.get("Time_Key") != ["@timestamp"] or ps.get("Time_Keep") != ["Off"]:
            p("the parser must be json with Time_Key @timestamp, Time_Keep Off: %r" % ps)
        fmt = ps["Time_Format"][0].replace("%L", "%f")
        try:
            datetime.datetime.strptime(stamp, fmt)
        except ValueError as e:
            p("Time_Format %s does not parse a real @timestamp %s: %s" % (ps["Time_Format"][0], stamp, e))
    outs = [kv for s, kv in conf if s == "OUTPUT"]
    if len(outs) != 1 or outs[0].get("Name") != ["es"]:
        p("expected one es output: %r" % outs)
    else:
        o = outs[0]
        if o.get("Time_Key") != ["@timestamp"] or o.get("Write_Operation") != ["create"]:
            p("the es output must write @timestamp and create (data streams): %r" % o)
        for k in ("HTTP_User", "HTTP_Passwd"):
            if not re.fullmatch(r"\$\{[A-Z_][A-Z0-9_]*\}", o.get(k, [""])[0]):
                p("%s is not an ${ENV} reference: %r" % (k, o.get(k)))
for x in problems:
    print("  " + x)
print("fluent-bit pipeline: %d problems" % len(problems))
sys.exit(1 if problems else 0)
PYEOF
[ "$fails" -eq 0 ] || exit 1
echo "ops.chart_logs: ok"
