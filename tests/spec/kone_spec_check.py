#!/usr/bin/env python3
"""kone_spec_check: every KONE frame in the given logs, checked against KONE's AsyncAPI file.

An independent check of the wire format (issue 12, item 7). The frames come from debug logs:
the worker's KONE client logs each frame it writes and reads ("kone: slot N conn N tx <json>" /
"rx <json>", worker/kone_conn.c) and kone-sim each frame it sends ("conn <id> tx <json>",
sim/hub.c). Each frame is mapped to a message of elevator-websocket-api-v2.yaml by its type and
callType (the table in docs/kone-sim.md, "Checked against the spec") and validated with
jsonschema against components/messages/<name>/payload.

Three frame kinds are not in the YAML, which describes requests and event data only: the
answer every request gets, the call result, and the envelope around event data. They are
checked against schemas written here from ../shared/kone/PROTOCOL.md and KONE's own example
client (konecorp/kone-api-examples: answers carry type "ok"/"error"); docs/kone-sim.md lists
them as extensions.

Every field a frame carries that its schema does not declare must be listed in the
extensions table of docs/kone-sim.md (between the spec-extensions markers); an unlisted one
fails the check, so a new field cannot slip in unreviewed. The YAML has a few defects that
make every frame fail (enum placeholders, a typo in a required name); ERRATA below corrects
exactly those, each with its reason, and prints what it changed.

Exit status: 0 all frames valid and every --require kind seen; 1 otherwise (each failure is
printed with the frame and the schema error); 2 usage or setup errors.
"""
import argparse
import copy
import json
import os
import re
import sys

try:
    import yaml
    import jsonschema
except ImportError as e:  # scripts/bootstrap-tools installs both
    print(f"kone_spec_check: {e}: run scripts/bootstrap-tools pyyaml jsonschema", file=sys.stderr)
    sys.exit(2)

FRAME_RE = re.compile(r"^(?:kone: slot \d+ conn \d+|conn \S+) (tx|rx) (.*)$", re.S)
LOG_MSG_MAX = 1023  # kd_log keeps 1023 characters of a message (shared/src/log.c)

# ---- the YAML's defects, corrected before validation -----------------------------------


def _drop_name_enums(node, fixed, path="#"):
    """E1: `enum: [<the property's own name>]` (request_id, area, time, terminal, action,
    media_id, media_cc, user_id, eta, ...). Template leftovers: no value can satisfy
    `type: number, enum: ["area"]`, and the YAML's own usage example sends
    request_id 252390420, area 3000."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            for name, sub in props.items():
                if isinstance(sub, dict) and sub.get("enum") == [name]:
                    del sub["enum"]
                    fixed.append(f"E1 {path}/properties/{name}: enum [{name}] dropped")
        for k, v in node.items():
            _drop_name_enums(v, fixed, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _drop_name_enums(v, fixed, f"{path}/{i}")


def apply_errata(messages):
    fixed = []
    _drop_name_enums(messages, fixed)
    lc = messages["lift-call"]["payload"]["properties"]["payload"]["properties"]
    # E2: request_id is `type: string` in lift-call but a number in the YAML's usage example,
    # in common-api ping and in PROTOCOL.md ("payload.request_id numeric").
    lc["request_id"]["type"] = "number"
    fixed.append("E2 lift-call payload.request_id: type string -> number")
    # E3: the key allowed_lifts is spelt with a soft hyphen (U+00AD) in the YAML.
    call = lc["call"]["properties"]
    for k in list(call):
        if "\u00ad" in k:
            call[k.replace("\u00ad", "")] = call.pop(k)
            fixed.append("E3 lift-call payload.call.allowed\\u00ad_lifts: soft hyphen removed")
    # E4: monitor-next-stop-eta requires `deck`, a property it never declares (it has `decks`).
    req = messages["monitor-next-stop-eta"]["payload"]["required"]
    if "deck" in req:
        req[req.index("deck")] = "decks"
        fixed.append("E4 monitor-next-stop-eta required: deck -> decks")
    return fixed


# ---- the frames the YAML does not describe (PROTOCOL.md, KONE's example client) ---------

ANSWER = {
    "type": "object",
    "required": ["type", "statusCode", "connectionId", "requestId"],
    "properties": {
        "type": {"enum": ["ok", "error"]},
        "statusCode": {"type": "integer", "minimum": 100, "maximum": 599},
        "connectionId": {"type": "string", "minLength": 1},
        "requestId": {"type": ["string", "integer", "null"]},
        "data": {"type": "object"},
        "message": {"type": "string"},
    },
    # 2xx is "ok" and carries no message; anything else is "error" with a message
    "if": {"properties": {"statusCode": {"minimum": 200, "maximum": 299}}},
    "then": {"properties": {"type": {"const": "ok"}}, "not": {"required": ["message"]}},
    "else": {"properties": {"type": {"const": "error"}}, "required": ["message"]},
}

CALL_RESULT = {
    "type": "object",
    "required": ["callType", "buildingId", "groupId", "data"],
    "properties": {
        "callType": {"enum": ["action", "hold_open", "delete"]},
        "buildingId": {"type": "string", "pattern": "^building:"},
        "groupId": {"type": "string"},
        "data": {
            "type": "object",
            "required": ["request_id", "success"],
            "properties": {
                "request_id": {"type": "integer"},
                "success": {"type": "boolean"},
                "session_id": {"type": "integer", "minimum": 1},
                "error": {"type": ["string", "integer"]},
            },
        },
    },
}

EVENT_ENVELOPE = {
    "type": "object",
    "required": ["callType", "buildingId", "groupId", "subtopic", "data"],
    "properties": {
        "callType": {"type": "string", "pattern": "^monitor-"},
        "buildingId": {"type": "string", "pattern": "^building:"},
        "groupId": {"type": "string"},
        "subtopic": {"type": "string", "minLength": 1},
        "data": {"type": "object"},
    },
}

REQUEST_TYPES = {
    "create-session": "create-session",
    "resume-session": "resume-session",
    "site-monitoring": "site-monitoring",
    "common-api": "common-api",
}


def classify(frame, direction_from_client):
    """(kind, coverage key, message name or None) of one frame; kind is 'request',
    'answer', 'result', 'event' or None when no rule maps it."""
    if not isinstance(frame, dict):
        return None, "not an object", None
    if direction_from_client:
        t, ct = frame.get("type"), frame.get("callType")
        if t == "lift-call-api-v2":
            if "cancelRequestId" in frame:
                return "request", "cancel-call", "cancel-call"
            return "request", f"lift-call/{ct}", "lift-call"
        if t in REQUEST_TYPES:
            name = REQUEST_TYPES[t]
            return "request", f"{name}/{ct}" if ct else name, name
        return None, f"request type {t!r}", None
    if "statusCode" in frame:
        return "answer", "answer", None
    ct = frame.get("callType")
    if isinstance(ct, str) and ct.startswith("monitor-") and "subtopic" in frame:
        return "event", ct, ct
    if ct in ("action", "hold_open", "delete") and isinstance(frame.get("data"), dict):
        return "result", f"call-result/{ct}", None
    return None, f"server frame callType {ct!r}", None


def undeclared(value, schema, path, out):
    """Paths of the fields in value that schema does not declare (dotted, [] for items)."""
    if not isinstance(schema, dict):
        return
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        props = schema["properties"]
        required = schema.get("required") or []
        for k, v in value.items():
            p = f"{path}.{k}" if path else k
            if k in props:
                undeclared(v, props[k], p, out)
            elif k not in required:  # lift-call requires groupId without describing it
                out.add(p)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, list):
            items = items[0] if items else None
        for v in value:
            undeclared(v, items, f"{path}[]", out)


def load_extensions(doc):
    """{(frame, field): why} from the table between the spec-extensions markers."""
    text = open(doc, encoding="utf-8").read()
    m = re.search(r"<!-- spec-extensions:begin -->(.*?)<!-- spec-extensions:end -->", text, re.S)
    if not m:
        raise SystemExit(f"kone_spec_check: no spec-extensions table in {doc}")
    ext = {}
    for line in m.group(1).splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] not in ("frame", "") and not set(cells[0]) <= set("-: "):
            ext[(cells[0], cells[1])] = cells[2]
    return ext


def frames_of(paths):
    """(source, direction, text) of every frame line in the logs."""
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                msg = rec.get("message", "") if isinstance(rec, dict) else ""
                m = FRAME_RE.match(msg)
                if m:
                    yield rec.get("service.name", "?"), m.group(1), m.group(2), len(msg)


def check(spec_path, docs_path, require, logs, quiet=False):
    """{failure: (count, first frame)} of the frames in logs; prints a summary unless quiet."""
    out = (lambda *_: None) if quiet else print
    spec = yaml.safe_load(open(spec_path, encoding="utf-8"))
    messages = copy.deepcopy(spec["components"]["messages"])
    for e in apply_errata(messages):
        out(f"erratum {e}")
    extensions = load_extensions(docs_path)
    V = jsonschema.Draft7Validator  # the YAML's `items: [..]` are draft-7 tuples

    failures, seen, counts, ext_seen = {}, set(), {}, set()

    def fail(src, text, why):
        # one line per distinct failure, with its count and the first frame that showed it
        key = f"{src}: {why}"
        n, first = failures.get(key, (0, text))
        failures[key] = (n + 1, first)

    for src, direction, text, msg_len in frames_of(logs):
        from_client = (src != "kone-sim" and direction == "tx")
        try:
            frame = json.loads(text)
        except ValueError as e:
            if '"statusCode"' in text[:120] and (msg_len >= LOG_MSG_MAX or len(text) >= 900):
                # an answer longer than a log line (a building's config): its envelope is
                # checked on every shorter answer; its data is not in the spec
                out(f"unchecked ({src}): an answer cut at the log line's limit: {text[:100]}...")
                continue
            why = ("cut at the log's 1 KiB message limit" if msg_len >= LOG_MSG_MAX
                   else f"not JSON ({e})")
            fail(src, text, why)
            continue
        kind, key, name = classify(frame, from_client)
        if kind is None:
            fail(src, text, f"no message of the spec and no documented extension: {key}")
            continue
        seen.add(key)
        counts[key] = counts.get(key, 0) + 1
        checks = []  # (label, schema, value, undeclared-root-prefix)
        if kind == "request":
            checks.append((name, messages[name]["payload"], frame, ""))
        elif kind == "answer":
            checks.append(("answer", ANSWER, frame, ""))
        elif kind == "result":
            checks.append(("call-result", CALL_RESULT, frame, ""))
        else:
            checks.append(("event", EVENT_ENVELOPE, frame, ""))
            payload = messages[name]["payload"]
            checks.append((name, payload, frame.get("data"), "data"))
            if name == "monitor-call-state" and isinstance(frame.get("data"), dict):
                # kone-sim sends the decks fields flat in data (documented): type-check them
                # against the YAML's decks schema too
                checks.append((name + " (flat decks)", payload["properties"]["decks"],
                               frame["data"], None))
        for label, schema, value, prefix in checks:
            for err in sorted(V(schema).iter_errors(value), key=lambda e: list(e.path)):
                where = "/".join(str(p) for p in err.path) or "(root)"
                fail(src, text, f"{label}: {where}: {err.message}")
            if prefix is None:
                continue
            extra = set()
            undeclared(value, schema, prefix, extra)
            for field in sorted(extra):
                if (label, field) in extensions:
                    ext_seen.add((label, field))
                else:
                    fail(src, text, f"{label}: field {field} is not in the spec and not listed "
                                    "in docs/kone-sim.md's extensions table")
        if kind != "request":
            whole = {"answer": "answer", "result": "call-result", "event": "event"}[kind]
            if (whole, "*") not in extensions:
                fail(src, text, f"{whole} frames are not in the YAML and not listed in "
                                "docs/kone-sim.md's extensions table")
            ext_seen.add((whole, "*"))

    out("frames checked, by message:")
    for k in sorted(counts):
        out(f"  {k:32} {counts[k]}")
    for k in [k for k in require.split(",") if k and k not in seen]:
        failures[f"coverage: no {k} frame in the logs"] = (1, "")
    for k in sorted(set(extensions) - ext_seen):
        out(f"note: extension {k[0]} {k[1]} listed but not seen in this run")
    if not counts:
        failures["no frames at all: were the logs written at debug level?"] = (1, "")
    return failures


# Frames that must fail, one defect each: proves the check can fail (run by --self-test,
# which the C test runs first). (log message, expected failure text)
BAD = [
    ('kone: slot 0 conn 0 tx {"type":"lift-call-api-v2","buildingId":"building:1","callType":'
     '"action","groupId":"1","payload":{"request_id":"7","area":1000,"call":{"action":2}}}',
     "lift-call: payload/request_id: '7' is not of type 'number'"),
    ('kone: slot 0 conn 0 tx {"type":"lift-call-api-v2","buildingId":"building:1","callType":'
     '"action","payload":{"request_id":7,"area":1000,"call":{"action":2}}}',
     "'groupId' is a required property"),
    ('kone: slot 0 conn 0 tx {"type":"lift-call-api-v2","buildingId":"building:1","callType":'
     '"action","groupId":"1","payload":{"request_id":7,"area":1000,"call":{"action":2,"x":1}}}',
     "lift-call: field payload.call.x is not in the spec"),
    ('kone: slot 0 conn 0 tx {"type":"common-api","callType":"ping","payload":{"request_id":"x"}}',
     "common-api: payload/request_id: 'x' is not of type 'number'"),
    ('conn c tx {"statusCode":201,"connectionId":"c","requestId":1}',
     "'type' is a required property"),
    ('conn c tx {"type":"ok","statusCode":404,"connectionId":"c","requestId":1,"message":"m"}',
     "answer: type: 'error' was expected"),
    ('conn c tx {"callType":"monitor-door-state","buildingId":"building:1","groupId":"1",'
     '"subtopic":"lift_1/doors","data":{"time":"t","area":1,"state":"OPENED"}}',
     "monitor-door-state: (root): 'lift_side' is a required property"),
    ('conn c tx {"callType":"monitor-call-state","buildingId":"building:1","groupId":"1",'
     '"subtopic":"call_state/1/served","data":{"time":"t","eta":5}}',
     "monitor-call-state (flat decks): eta: 5 is not of type 'string'"),
    ('conn c tx {"callType":"action","buildingId":"building:1","groupId":"1",'
     '"data":{"request_id":1,"success":"yes"}}',
     "call-result: data/success: 'yes' is not of type 'boolean'"),
    ('conn c tx {"callType":"elsewhere"}', "no message of the spec"),
]


def self_test(spec_path, docs_path):
    import tempfile
    bad = 0
    for msg, want in BAD:
        with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as f:
            f.write(json.dumps({"service.name": "kone-sim" if msg.startswith("conn") else "kone-worker",
                                "message": msg}) + "\n")
        got = check(spec_path, docs_path, "", [f.name], quiet=True)
        os.unlink(f.name)
        if not any(want in k for k in got):
            print(f"self-test: {msg}\n  expected a failure with {want!r}, got {list(got)}")
            bad += 1
    print(f"self-test: {len(BAD) - bad} of {len(BAD)} bad frames caught")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", required=True, help="elevator-websocket-api-v2.yaml")
    ap.add_argument("--docs", required=True, help="docs/kone-sim.md (the extensions table)")
    ap.add_argument("--require", default="", help="comma-separated coverage keys that must be seen")
    ap.add_argument("--self-test", action="store_true", help="check that bad frames fail")
    ap.add_argument("logs", nargs="*")
    a = ap.parse_args()
    if a.self_test:
        return self_test(a.spec, a.docs)
    if not a.logs:
        ap.error("no logs")
    failures = check(a.spec, a.docs, a.require, a.logs)
    for why, (n, frame) in failures.items():
        print(f"FAIL {why} ({n} frame{'s' if n > 1 else ''})")
        if frame:
            print(f"     first: {frame[:800]}")
    print(f"{len(failures)} distinct failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
