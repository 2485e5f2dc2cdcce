"""opscheck: shared checks of the operations files (alerts/, dashboards/, RUNBOOK.md).

Used by tests/ops/*.sh. Knows, offline:
  - which metric names exist: the worker's catalogue (docs/metrics.md's table, itself
    checked against the code by unit.test_worker_metrics), RabbitMQ's exporter
    (tests/ops/rabbitmq-metrics.txt, read from a live 3.10 node), the recording rules of
    alerts/*.rules.yml, and Prometheus' own `up`;
  - which metric names a PromQL expression uses (a tokenizer, not a parser: the parse
    itself is promtool's job, see wrap_as_rules);
  - GitHub's heading anchors, to resolve runbook_url fragments.
Every check returns a list of problems; an empty list is a pass.
"""
import json
import os
import re
import sys

import yaml

SRC = os.environ.get("KD_SRC_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", ".."))
RUNBOOK_BASE = "https://github.com/kone-dispatch/kone-dispatch/blob/main/RUNBOOK.md"
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def path(*p):
    return os.path.join(SRC, *p)


# ---- known metric names -------------------------------------------------------------

def catalogue():
    """{name: type} from the table between the metrics-table markers of docs/metrics.md."""
    text = open(path("docs", "metrics.md"), encoding="utf-8").read()
    m = re.search(r"<!-- metrics-table:begin -->(.*?)<!-- metrics-table:end -->", text, re.S)
    if not m:
        raise SystemExit("docs/metrics.md: no metrics-table markers")
    out = {}
    for line in m.group(1).splitlines():
        r = re.match(r"\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|\s*(\w+)\s*\|", line)
        if r:
            out[r.group(1)] = r.group(2)
    return out


def rabbitmq():
    out = {}
    for line in open(path("tests", "ops", "rabbitmq-metrics.txt"), encoding="utf-8"):
        line = line.strip()
        if line and not line.startswith("#"):
            name, typ = line.split()[:2]
            out[name] = typ
    return out


def rule_files():
    d = path("alerts")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".rules.yml"))


def rules():
    """[(file, rule dict)] for every rule of every group."""
    out = []
    for f in rule_files():
        doc = yaml.safe_load(open(f, encoding="utf-8"))
        for g in doc.get("groups", []):
            for r in g.get("rules", []):
                out.append((f, r))
    return out


def recorded():
    return {r["record"] for _, r in rules() if "record" in r}


def known_names():
    """Every series name a query may use: histogram families expand to their suffixes."""
    names = set(PROMETHEUS_OWN) | recorded()
    for src in (catalogue(), rabbitmq()):
        for n, t in src.items():
            names.add(n)
            if t in ("histogram", "summary"):
                names.update({n + "_bucket", n + "_sum", n + "_count"})
    return names


# ---- PromQL ---------------------------------------------------------------------------

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "inf", "nan", "atan2"}


def metric_names(expr):
    """Metric names an expression selects. Strings, label matchers, ranges and grouping
    clauses are removed first; what remains that is an identifier not followed by '('
    (a function or aggregation) and not a keyword is a metric name."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    names = set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", e))
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e):
        tok, call = m.group(1), m.group(2)
        if call or tok.lower() in KEYWORDS:
            continue
        names.add(tok)
    return names


def grafana_to_promql(expr):
    """Replaces Grafana's variables by values promtool accepts."""
    e = expr.replace("$__rate_interval", "5m").replace("${__rate_interval}", "5m")
    e = e.replace("$__interval", "1m").replace("${__interval}", "1m")
    e = e.replace("$__range", "1h").replace("${__range}", "1h")
    e = re.sub(r"\$\{(\w+)(:\w+)?\}", r"\1_value", e)
    e = re.sub(r"\$(\w+)", r"\1_value", e)
    return e


def wrap_as_rules(named_exprs):
    """A rule file with one recording rule per expression, so `promtool check rules`
    parses every expression offline."""
    out = {"groups": [{"name": "parse-check", "rules": []}]}
    for i, (_, expr) in enumerate(named_exprs):
        out["groups"][0]["rules"].append({"record": "parse_check:expr_%d" % i, "expr": expr})
    return yaml.safe_dump(out, sort_keys=False, width=1000)


# ---- GitHub anchors ---------------------------------------------------------------------

def github_anchor(heading):
    """GitHub's rule: lower case, drop everything but letters, digits, spaces, '-' and '_',
    spaces become '-'. Duplicates get -1, -2 ... (see headings())."""
    h = re.sub(r"<[^>]+>", "", heading).strip().lower()
    h = re.sub(r"[^\w\- ]", "", h, flags=re.UNICODE)
    return h.replace(" ", "-")


def headings(md_path):
    """{anchor: heading text} for every ATX heading outside code fences."""
    out, seen, fence = {}, {}, False
    for line in open(md_path, encoding="utf-8"):
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        m = None if fence else re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        a = github_anchor(m.group(2))
        n = seen.get(a, 0)
        seen[a] = n + 1
        out[a if n == 0 else "%s-%d" % (a, n)] = m.group(2)
    return out


# ---- dashboards -----------------------------------------------------------------------

def dashboard_files():
    d = path("dashboards")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".json"))


def panels(dash):
    """Every panel, rows' nested panels included."""
    for p in dash.get("panels", []):
        yield p
        for q in p.get("panels", []):
            yield q


def report(problems, what):
    for p in problems:
        print("FAIL: " + p)
    if problems:
        print("%s: %d problem(s)" % (what, len(problems)))
        return 1
    print("%s: ok" % what)
    return 0


def load_json(f):
    return json.load(open(f, encoding="utf-8"))


if __name__ == "__main__":
    for a in sys.argv[1:]:
        print(sorted(metric_names(a)))
