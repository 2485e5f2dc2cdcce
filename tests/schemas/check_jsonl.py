#!/usr/bin/env python3
"""check_jsonl.py: validates JSON lines against one of the JSON Schemas in docs/schemas/.

    check_jsonl.py SCHEMA FILE...          every line of every FILE must be valid
    check_jsonl.py --logs SCHEMA FILE...   only the lines that are log lines (see below)

Why --logs: the integration tests keep each program's stderr in $IT_DIR/*.log, beside files
of their own (awk tables, reports) that are no log at all. A log line is a JSON object with a
key a log line of any format has had (@timestamp, log.level, message, or the older time, level,
msg, prog), so a line in an outdated format is still checked, and fails. Exit 1 when a line
fails (the first few are printed with the reason), 2 for usage; the last line says how many
lines were checked.
"""
import json
import sys

from jsonschema import Draft202012Validator

LOG_KEYS = {"@timestamp", "log.level", "message", "time", "level", "msg", "prog"}


def main(argv):
    logs = argv[:1] == ["--logs"]
    if logs:
        argv = argv[1:]
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        schema = json.load(f)
    Draft202012Validator.check_schema(schema)
    v = Draft202012Validator(schema)
    checked = bad = 0
    for path in argv[1:]:
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    rec = None
                if logs and not (isinstance(rec, dict) and LOG_KEYS & rec.keys()):
                    continue
                checked += 1
                errs = ["not JSON"] if rec is None else list(v.iter_errors(rec))
                if errs:
                    bad += 1
                    if bad <= 5:
                        why = errs[0] if isinstance(errs[0], str) else errs[0].message
                        print("%s:%d: %s: %s" % (path, n, why, line[:200]), file=sys.stderr)
    print("%s: %d lines checked, %d invalid" % (argv[0].rsplit("/", 1)[-1], checked, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
