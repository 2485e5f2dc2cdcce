#!/usr/bin/env python3
"""ledger_pgbench: PostgreSQL's time per job of the call ledger's statements (issue 17).

    . .dev/env   # a running dev stack (scripts/dev-up); run as its PostgreSQL's OS user or root
    python3 docs/perf/ledger_pgbench.py [--version 3] [--inflight 200] [--rows 2500] [--txns 200]

(--version 2 and main's single statements: this file as of 54606d1, `git show
54606d1:docs/perf/ledger_pgbench.py`, run from a checkout of that commit.)

Builds the ledger's schema as the worker would at --version (its DDL read from
worker/ledger_sql.c) in a schema of its own (kdperf_vN) of the stack's database, fills it
with --rows `done` rows (ANALYZEd) then --inflight rows `writing`/`accepted` held by the
benchmark's owner (not analyzed: a worker's owner is new to the statistics, as in the bench),
and runs pgbench (-M prepared, one client, synchronous_commit as configured) over --txns
transactions of the worker's shape: a pipeline of 30 claims (one commit), then of their 30
accepts, then of their 30 dones, the statements of worker/ledger_sql.c with the worker's
parameters (since the ledger sends a batch's claims, accepts and dones as one statement per
kind with array parameters, that shape: three statements per 30 jobs).
Prints PostgreSQL's CPU per job (the pgbench backend's user + system time, read
from the postmaster's reaped children, so the machine's other load does not count) and the
wall time per batch of 30 (which does: commits, a shared disk).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "worker", "ledger_sql.c")
N = 30  # statements per batch: a RabbitMQ clump


def c_strings(text):
    """The C string literals of an initializer, adjacent ones joined, split at top-level commas."""
    out, cur, i = [], None, 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            j, buf = i + 1, []
            while text[j] != '"':
                if text[j] == "\\":
                    buf.append({"n": "\n", "\\": "\\", '"': '"'}.get(text[j + 1], text[j + 1]))
                    j += 2
                else:
                    buf.append(text[j])
                    j += 1
            cur = (cur or "") + "".join(buf)
            i = j + 1
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        elif ch == ",":
            if cur is not None:
                out.append(cur)
            cur, i = None, i + 1
        else:
            i += 1
    if cur is not None:
        out.append(cur)
    return out


def ddl(src, version):
    stmts = []
    for v in range(1, version + 1):
        m = re.search(r"lg_schema_v%d\[\] = \{(.*?)\n\};" % v, src, re.S)
        stmts += c_strings(m.group(1))
    return stmts


def statement(src, name):
    m = re.search(r"static const char %s\[\] =(.*?);\n" % name, src, re.S)
    return c_strings(m.group(1))[0]


def run(argv):
    """argv, its output kept; on failure its last lines, never the command (the URL holds the
    ledger's password)."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode:
        sys.exit("%s failed (%d): %s" % (argv[0], p.returncode, p.stdout[-800:]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", type=int, default=3)
    ap.add_argument("--inflight", type=int, default=200)
    ap.add_argument("--rows", type=int, default=2500)
    ap.add_argument("--txns", type=int, default=200)
    a = ap.parse_args()
    src = open(SRC).read()
    url = open(os.environ["KD_LEDGER_URL_FILE"]).read().strip()
    schema = "kdperf_v%d" % a.version
    surl = url + ("&" if "?" in url else "?") + "options=-csearch_path%3D" + schema
    owner = "bench/0000abcd"
    setup = ["DROP SCHEMA IF EXISTS %s CASCADE" % schema, "CREATE SCHEMA %s" % schema,
             "SET search_path = %s" % schema] + ddl(src, a.version) + [
        "INSERT INTO kd_calls (job_id, state, attempt, worker, building_id, session_id, outcome,"
        " kone_status, result, lease_until, expires_at, kone_session) SELECT 'old-' || g, 'done',"
        " 1, 'old/1', 'building:' || (g %% 50), g, 'succeeded', 201, convert_to(repeat('{\"o\":1}',"
        " 70), 'UTF8'), now(), now() + interval '6 days', 's' FROM generate_series(1, %d) g" % a.rows,
        "ALTER TABLE kd_calls SET (autovacuum_enabled = false)",
        "VACUUM ANALYZE kd_calls",
        "INSERT INTO kd_calls (job_id, state, attempt, worker, building_id, lease_until, expires_at)"
        " SELECT 'inflight-' || g, CASE WHEN g %% 2 = 0 THEN 'writing' ELSE 'accepted' END, 1, '%s',"
        " 'b', now() + interval '1 day', now() + interval '7 days' FROM generate_series(1, %d) g"
        % (owner, a.inflight)]
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(";\n".join(setup) + ";\n")
    run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-f", f.name, url])

    def bind(sql, names, k):
        return re.sub(r"\$(\d+)", lambda m: ":" + names[int(m.group(1)) - 1] +
                      (str(k) if names[int(m.group(1)) - 1] in ("r", "sid") else ""), sql)

    claim = statement(src, "sql_claim")
    if a.version < 3 and "unnest" in claim:
        sys.exit("--version 2: the batched statements need kd_claim (v3); run the copy of this "
                 "script from before the batched statements")
    if a.version < 3:  # before kd_claim: its full statement, as the worker sent it
        fn = [s for s in ddl(src, 3) if "FUNCTION kd_claim" in s][0]
        claim = fn.split("RETURN QUERY", 1)[1].rsplit("; END", 1)[0].strip()
        for i, p in enumerate(["p_job", "p_attempt", "p_owner", "p_building", "p_lease_ms",
                               "p_retention_h", "p_retry_ambiguous", "p_replayed"]):
            claim = re.sub(r"\b%s\b" % p, "$%d" % (i + 1), claim)
    names = {"claim": ["r", "att", "owner", "bld", "lease", "ret", "amb", "rep"],
             "accept": ["r", "owner", "sid", "ksess"],
             "done": ["r", "owner", "outc", "fail", "kst", "ecode", "emsg", "st", "fin", "rtt",
                      "res", "ret", "sid"]}
    accept = statement(src, "sql_accept")
    done = statement(src, "sql_done")
    lines = ["\\set r%d random(1, 900000000000000)\n\\set sid%d random(1, 900000000000000)" % (k, k)
             for k in range(N)]
    lines += ["\\set att 1", "\\set lease 15000", "\\set ret 168", "\\set amb false",
              "\\set rep false", "\\set fail 0", "\\set kst 201", "\\set st 1733380000000000",
              "\\set fin 1733380000500000", "\\set rtt 40000", "\\startpipeline"]
    if "unnest" in claim:
        # the batched shape (issue 17, ledgerbatch): one statement per kind and batch, each
        # per-job parameter an array of the batch's 30 values (built from pgbench variables;
        # the worker sends it as one text-array parameter; pgbench takes 255 at most, so the
        # values that are the same for every job come as array literals of 30, as the worker's)
        def arrays(sql, kind):
            def one(m):
                n = names[kind][int(m.group(1)) - 1]
                if n in ("owner", "lease", "ret", "amb"):
                    return ":" + n
                if n in ("r", "sid"):
                    return "ARRAY[%s]" % ", ".join(":%s%d" % (n, k) for k in range(N))
                return ":%ss" % n  # the same value for each job: an array literal (-D)
            return re.sub(r"\$(\d+)", one, sql) + ";"
        lines += [arrays(claim, "claim"), "\\endpipeline", "\\startpipeline",
                  arrays(accept, "accept"), "\\endpipeline", "\\startpipeline",
                  arrays(done, "done")]
    else:
        claim = bind(claim, names["claim"], 0)
        lines += [re.sub(r":r0\b", ":r%d" % k, claim) + ";" for k in range(N)]
        lines += ["\\endpipeline", "\\startpipeline"]
        lines += [bind(accept, names["accept"], k) + ";" for k in range(N)]
        lines += ["\\endpipeline", "\\startpipeline"]
        lines += [bind(done, names["done"], k) + ";" for k in range(N)]
    lines += ["\\endpipeline"]
    with tempfile.NamedTemporaryFile("w", suffix=".pgb", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    res = "\\x" + ('{"job_id":"x","outcome":"succeeded"}' * 14).encode().hex()
    same = {"att": "1", "rep": "false", "bld": "building:7", "ksess": "s2", "outc": "succeeded",
            "fail": "0", "kst": "201", "ecode": "-", "emsg": "-", "st": "1733380000000000",
            "fin": "1733380000500000", "rtt": "40000", "res": "\\" + res}
    literals = sum((["-D", '%ss={%s}' % (n, ",".join(['"%s"' % v] * N))] for n, v in same.items()),
                   [])
    data = os.path.join(os.environ["KD_STATE_DIR"], "postgres", "data", "postmaster.pid")
    pm = open(data).readline().strip()

    def reaped():
        st = open("/proc/%s/stat" % pm).read().rsplit(")", 1)[1].split()
        return (int(st[13]) + int(st[14])) / os.sysconf("SC_CLK_TCK")  # cutime + cstime

    time.sleep(0.5)  # the set-up's backend reaped first
    c0, t0 = reaped(), time.time()
    run(["pgbench", "-n", "-M", "prepared", "-c", "1", "-t", str(a.txns), "-f", f.name,
                    "-D", "owner=" + owner, "-D", "bld=building:7", "-D", "ksess=s2",
                    "-D", "outc=succeeded", "-D", "ecode=-", "-D", "emsg=-", "-D", "res=" + res,
                    *literals, surl])
    t1 = time.time()
    time.sleep(0.3)
    c1 = reaped()
    jobs = a.txns * N
    print("schema v%d, %d rows in flight: %.1f us of PostgreSQL CPU per job (claim + accept + done),"
          " %.2f ms wall per batch of %d" % (a.version, a.inflight, (c1 - c0) * 1e6 / jobs,
                                            (t1 - t0) * 1000 / (a.txns * 3), N))
    run(["psql", "-q", "-c", "DROP SCHEMA %s CASCADE" % schema, url])


if __name__ == "__main__":
    sys.exit(main())
