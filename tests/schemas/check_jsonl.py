#!/usr/bin/env python3
"""check_jsonl.py: validates JSON lines against the JSON Schemas of docs/schemas/.

    check_jsonl.py [--closed] SCHEMA FILE...   every line of every FILE must be valid
    check_jsonl.py --logs SCHEMA FILE...       only the lines that are log lines (below)
    check_jsonl.py --events FILE...            kone-events output: a line with "outcome" is
                                               a result, one with "metrics" a metrics
                                               snapshot, any other a call-state event

--closed refuses keys the schema does not list at the top level. The published schemas let
readers meet keys added within a format version (docs/events.md, "Common rules"); the tests
close them so a key the code writes but the documentation lacks fails.

Why --logs: the integration tests keep each program's stderr in $IT_DIR/*.log, beside files
of their own (awk tables, reports) that are no log at all. A log line is a JSON object with a
key a log line of any format has had (@timestamp, log.level, message, or the older time, level,
msg, prog), so a line in an outdated format is still checked, and fails.

Exit 1 when a line fails (the first few are printed with the reason), 2 for usage; the last
line says how many lines were checked.
"""
import json
import os
import sys

from jsonschema.validators import validator_for

LOG_KEYS = {"@timestamp", "log.level", "message", "time", "level", "msg", "prog"}
SCHEMAS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "schemas")


def validator(path, closed):
    with open(path, encoding="utf-8") as f:
        schema = json.load(f)
    cls = validator_for(schema)
    cls.check_schema(schema)
    if closed:
        schema.setdefault("additionalProperties", False)
    return cls(schema)


def main(argv):
    mode = argv[0] if argv[:1] and argv[0] in ("--logs", "--events", "--closed") else ""
    if mode:
        argv = argv[1:]
    if mode == "--events":
        result = validator(os.path.join(SCHEMAS, "result.schema.json"), True)
        event = validator(os.path.join(SCHEMAS, "call-event.schema.json"), True)
        snapshot = validator(os.path.join(SCHEMAS, "worker-metrics.schema.json"), True)

        def pick(rec):
            if isinstance(rec, dict) and "outcome" in rec:
                return result
            return snapshot if isinstance(rec, dict) and "metrics" in rec else event
        files, name = argv, "events"
    else:
        if len(argv) < 2:
            print(__doc__, file=sys.stderr)
            return 2
        v = validator(argv[0], mode == "--closed")
        pick = lambda rec: v
        files, name = argv[1:], os.path.basename(argv[0])
    checked = bad = 0
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    rec = None
                if mode == "--logs" and not (isinstance(rec, dict) and LOG_KEYS & rec.keys()):
                    continue
                checked += 1
                errs = ["not JSON"] if rec is None else [e.message for e in pick(rec).iter_errors(rec)]
                if errs:
                    bad += 1
                    if bad <= 5:
                        print("%s:%d: %s: %s" % (path, n, errs[0], line[:200]), file=sys.stderr)
    print("%s: %d lines checked, %d invalid" % (name, checked, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
