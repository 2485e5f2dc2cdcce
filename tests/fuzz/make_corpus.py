#!/usr/bin/env python3
"""make_corpus.py: writes the seed corpora of tests/fuzz/corpus/<target>/ from the inputs the
unit tests themselves use, so the fuzzers start from real frames and jobs:

  kone_msg     every JSON text in the KONE message and client tests (frames, answers, events)
  kone_token   every JSON text in the token tests, each behind a status byte (200 and 401)
  job_json     every JSON text naming a job_id in the job, producer and event tests
  job          the same jobs as msgpack maps (what the producer publishes), plus the poison
               shapes of it_fault_poison (not a map, truncated, a nested map)
  events_line  result and call-state events as msgpack, and non-map values
  amqp_headers AMQP field tables as the broker sends them (x-kd-*, x-delivery-count, x-death)
  http         requests to the metrics endpoint: the probes' and Prometheus' GETs, and the
               refused shapes of test_http (a POST with a body, oversized and odd headers)

Seeds are named by the SHA-1 of their bytes, as libFuzzer names what it finds, so rerunning
adds nothing twice. Crash inputs found later are copied in by hand (scripts/fuzz says where)
and are kept whatever this script does: it only ever adds files.

  python3 tests/fuzz/make_corpus.py      (needs the msgpack module; scripts/bootstrap has it)
"""
import glob
import hashlib
import json
import os
import re
import struct

import msgpack

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")


def c_strings(path):
    """The C string literals of a file, adjacent literals joined, escapes decoded."""
    src = open(path, encoding="utf-8").read()
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    lit = r'"(?:[^"\\\n]|\\.)*"'
    for m in re.finditer(r"(?:%s\s*)+" % lit, src):
        parts = re.findall(lit, m.group(0))
        text = "".join(p[1:-1] for p in parts)
        try:
            yield text.encode("latin-1").decode("unicode_escape").encode("utf-8")
        except (UnicodeDecodeError, UnicodeEncodeError):
            continue


def json_texts(files, must=None):
    for f in files:
        for s in c_strings(f):
            if s.lstrip().startswith(b"{") and (must is None or must in s):
                yield s


def write(target, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, hashlib.sha1(data).hexdigest())
    if not os.path.exists(p):
        with open(p, "wb") as f:
            f.write(data)


def unit(*names):
    return [p for n in names for p in glob.glob(os.path.join(ROOT, "tests", "unit", n))]


# --- KONE frames
for s in json_texts(unit("test_worker_kone_msg.c", "test_worker_kone_client.c", "test_sim_proto.c")):
    write("kone_msg", s)

# --- token answers: status byte 0 -> 200, 5 -> 401 (fuzz_kone_token.c's table)
for s in json_texts(unit("test_worker_kone_token.c")):
    write("kone_token", b"\x00" + s)
    write("kone_token", b"\x05" + s)

# --- jobs, as JSON lines and as msgpack
jobs = []
for s in json_texts(unit("test_job.c", "test_producer*.c", "test_event.c", "test_sim_calls_worker.c"),
                    b"job_id"):
    write("job_json", s)
    try:
        obj = json.loads(s)
    except ValueError:
        continue
    if isinstance(obj, dict):
        jobs.append(obj)
for obj in jobs:
    write("job", msgpack.packb(obj, use_bin_type=True))
write("job", b"\xc1")                                    # never-used msgpack byte
write("job", msgpack.packb([1, 2, 3]))                    # not a map
write("job", msgpack.packb({"job_id": "j1", "v": 1})[:-2])  # truncated
write("job", msgpack.packb({"job_id": {"nested": {"deep": [1, 2.5, None, True]}}}))

# --- Kafka event values
for obj in jobs[:20]:
    ev = dict(obj)
    ev.update({"worker": "w1", "outcome": "succeeded", "attempts": 1, "kone_session_id": 4711,
               "decks": [1001010], "bin": b"\x00\xff", "float": 1.5})
    write("events_line", msgpack.packb(ev, use_bin_type=True))
write("events_line", msgpack.packb({"job_id": "j", "state": "served", "session_id": 4711}))
write("events_line", msgpack.packb({1: 2, b"k": msgpack.ExtType(5, b"xyz")}, use_bin_type=True))
write("events_line", b"not msgpack at all")
write("events_line", msgpack.packb([{"a": 1}, {"b": 2}]))


# --- AMQP field tables (AMQP 0-9-1 wire form: a 32-bit length, then name/type/value entries)
def short_str(s):
    b = s.encode()
    return bytes([len(b)]) + b


def field(kind, value):
    if kind == "l":
        return b"l" + struct.pack(">q", value)
    if kind == "I":
        return b"I" + struct.pack(">i", value)
    if kind == "b":
        return b"b" + struct.pack(">b", value)
    if kind == "S":
        b = value.encode()
        return b"S" + struct.pack(">I", len(b)) + b
    if kind == "F":
        return b"F" + table(value)
    if kind == "A":
        body = b"".join(field(k, v) for k, v in value)
        return b"A" + struct.pack(">I", len(body)) + body
    raise ValueError(kind)


def table(entries):
    body = b"".join(short_str(k) + field(kind, v) for k, kind, v in entries)
    return struct.pack(">I", len(body)) + body


write("amqp_headers", table([]))
write("amqp_headers", table([("x-kd-attempt", "l", 3), ("x-kd-first-seen", "l", 1764000000000),
                             ("x-kd-last-error", "S", "kone_timeout: no answer in 10 s")]))
write("amqp_headers", table([("x-kd-attempt", "I", 2), ("x-delivery-count", "l", 4),
                             ("x-kd-reason", "S", "undecodable"), ("x-kd-error", "S", "not a map"),
                             ("x-kd-replayed", "b", 1)]))
write("amqp_headers", table([("x-death", "A", [("F", [("count", "l", 1), ("queue", "S", "kone.calls"),
                                                      ("reason", "S", "expired")])]),
                             ("x-kd-attempt", "S", "not a number")]))


# Requests as the kubelet's probes, Prometheus and curl send them, and the shapes test_http
# refuses: another method with a body, an unknown path, HTTP/1.0, pipelined requests, a
# chunked body, a header without a value, a request line without a version.
CRLF = "\r\n"
for req in [
    "GET /metrics HTTP/1.1\r\nHost: 10.0.0.7:9464\r\nUser-Agent: Prometheus/2.53.0\r\n"
    "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n"
    "Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n",
    "GET /healthz HTTP/1.1\r\nHost: 10.0.0.7:9464\r\nUser-Agent: kube-probe/1.30\r\n"
    "Accept: */*\r\nConnection: close\r\n\r\n",
    "GET /readyz HTTP/1.1\r\nHost: 10.0.0.7:9464\r\nUser-Agent: kube-probe/1.30\r\n\r\n",
    "HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    "GET /nope HTTP/1.0\r\n\r\n",
    "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    "PUT /readyz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /metrics HTTP/1.1\r\nHost: t\r\n\r\n",
    "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Empty:\r\nX-Big: " + "a" * 2000 + "\r\n\r\n",
    "GET /metrics?x=1&y=%41 HTTP/1.1\r\nHost: t\r\n\r\n",
    "GET /metrics\r\n\r\n",
]:
    write("http", req.encode())
