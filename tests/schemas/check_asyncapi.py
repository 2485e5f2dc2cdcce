#!/usr/bin/env python3
"""check_asyncapi.py FILE [SPEC_SCHEMA]: checks docs/asyncapi.yaml.

- it is valid against SPEC_SCHEMA, the AsyncAPI 3.0.0 JSON Schema the official parser starts
  with (npm @asyncapi/specs, schemas/3.0.0-without-$id.json; scripts/bootstrap-tools installs
  it and tests/ops/schemas.sh passes it): every object, field and binding the spec defines;
- it is AsyncAPI 3.x with info, channels, operations and components;
- every local $ref ("#/...") resolves, and every file $ref names a JSON Schema that exists
  beside it and is a valid schema of the draft it declares;
- every channel has at least one message, every message a payload that ends in a schema file,
  every operation a channel and only messages of that channel;
- the channel addresses are the defaults of the keys that name them (docs/configuration.md),
  so a renamed topic or queue must be renamed here too.
Exit 1 with one line per problem.
"""
import json
import os
import re
import sys

import yaml
from jsonschema.validators import validator_for

# channel -> the configuration key whose default is its address (retry: <amqp.queue>.retry)
ADDRESS_KEYS = {"jobs": "amqp.exchange", "results": "kafka.topic_results",
                "callEvents": "kafka.topic_events", "workerMetrics": "kafka.topic_metrics"}


def main(path, spec_schema=None):
    base = os.path.dirname(os.path.abspath(path))
    doc = yaml.safe_load(open(path, encoding="utf-8"))
    problems = []
    p = problems.append
    if spec_schema:
        spec = json.load(open(spec_schema, encoding="utf-8"))
        for e in validator_for(spec)(spec).iter_errors(doc):
            p("/%s: %s (%s)" % ("/".join(map(str, e.path)), e.message[:300],
                                  spec.get("title", os.path.basename(spec_schema))))

    def resolve(ref, where):
        if not ref.startswith("#/"):
            p("%s: $ref %s is not local" % (where, ref))
            return None
        node = doc
        for part in ref[2:].split("/"):
            if not isinstance(node, dict) or part not in node:
                p("%s: $ref %s does not resolve" % (where, ref))
                return None
            node = node[part]
        return node

    def walk(node, where):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                if ref.startswith("#/"):
                    resolve(ref, where)
                else:
                    f = os.path.normpath(os.path.join(base, ref))
                    if not os.path.isfile(f):
                        p("%s: schema file %s is missing" % (where, ref))
                    else:
                        s = json.load(open(f, encoding="utf-8"))
                        validator_for(s).check_schema(s)
            for k, v in node.items():
                walk(v, where + "/" + str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, "%s/%d" % (where, i))

    if not str(doc.get("asyncapi", "")).startswith("3."):
        p("asyncapi: not a 3.x document")
    for k in ("info", "channels", "operations", "components"):
        if not doc.get(k):
            p("%s: missing" % k)
    if problems:
        return problems
    walk(doc, "")

    def payload_file(msg, where):
        pl = msg.get("payload") if isinstance(msg, dict) else None
        if isinstance(pl, dict) and "$ref" in pl:
            pl = resolve(pl["$ref"], where)
        sch = pl.get("schema") if isinstance(pl, dict) else None
        if not (isinstance(sch, dict) and str(sch.get("$ref", "")).endswith(".schema.json")):
            p("%s: the payload is not a schema file of docs/schemas/" % where)

    for name, ch in doc["channels"].items():
        msgs = ch.get("messages") or {}
        if not msgs:
            p("channels/%s: no message" % name)
        for mname, m in msgs.items():
            payload_file(resolve(m["$ref"], name) if "$ref" in m else m, "channels/%s/%s" % (name, mname))
    for name, op in doc["operations"].items():
        ch_ref = (op.get("channel") or {}).get("$ref", "")
        if not ch_ref.startswith("#/channels/") or resolve(ch_ref, name) is None:
            p("operations/%s: no channel" % name)
            continue
        for m in op.get("messages") or []:
            if not m.get("$ref", "").startswith(ch_ref + "/messages/"):
                p("operations/%s: message %s is not one of its channel's" % (name, m.get("$ref")))

    defaults = {}
    conf = os.path.join(base, "configuration.md")
    for line in open(conf, encoding="utf-8"):
        # | key | environment | flag | type | default | ...
        m = re.match(r"^\| `([a-z_.]+)` \| `[A-Z_]*` \| `[^`]*` \| [^|]* \| `([^`]*)` \|", line)
        if m:
            defaults[m.group(1)] = m.group(2)
    for ch, key in ADDRESS_KEYS.items():
        got = doc["channels"].get(ch, {}).get("address")
        if key not in defaults:
            p("%s: not in docs/configuration.md" % key)
        elif got != defaults[key]:
            p("channels/%s: address %s, but %s defaults to %s" % (ch, got, key, defaults[key]))
    if doc["channels"].get("retryTiers", {}).get("address") != defaults.get("amqp.queue", "?") + ".retry":
        p("channels/retryTiers: address is not <amqp.queue>.retry")
    if doc["channels"].get("deadLetters", {}).get("address") != defaults.get("amqp.queue", "?") + ".dead":
        p("channels/deadLetters: address is not <amqp.queue>.dead")
    return problems


if __name__ == "__main__":
    probs = main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
    for line in probs:
        print("asyncapi: " + line)
    print("asyncapi: %d channels, %d operations, %d problems" % (
        len(yaml.safe_load(open(sys.argv[1]))["channels"]), len(yaml.safe_load(open(sys.argv[1]))["operations"]), len(probs)))
    sys.exit(1 if probs else 0)
