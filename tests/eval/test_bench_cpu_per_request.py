"""The wrk side of `bench cpu_per_request`: its script, its output parsing, the /proc accounting."""

from __future__ import annotations

import json
import os
import re

from eval.bench.cpu_per_request import descendants, lua_script, parse_wrk, tree_cpu_seconds

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8000
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   120.51ms   40.10ms 400.00ms   70.00%
  Latency Distribution
     50%  110.25ms
     75%  140.00ms
     90%  180.50ms
     99%    1.20s
  1234 requests in 10.01s, 17.50MB read
  Non-2xx or 3xx responses: 3
Requests/sec:    123.28
Transfer/sec:      1.75MB
"""


def test_parse_wrk_reads_counts_rate_and_percentiles() -> None:
    figures = parse_wrk(WRK_OUTPUT)
    assert figures["requests"] == 1234
    assert figures["errors"] == 3
    assert figures["rps"] == 123.28
    assert figures["p50_ms"] == 110.25
    assert figures["p90_ms"] == 180.5
    assert figures["p99_ms"] == 1200.0


def test_lua_script_sends_every_query_with_the_cache_off() -> None:
    queries = ["沈青岩", 'a "quoted" query']
    script = lua_script(queries, "hybrid")
    bodies = [json.loads(b) for b in re.findall(r"\[\[(.*?)\]\]", script)]
    assert [b["query"] for b in bodies] == queries
    assert all(b["cache"] is False and b["mode"] == "hybrid" for b in bodies)


def test_tree_cpu_counts_this_process() -> None:
    sum(i * i for i in range(300_000))  # spend some CPU so the counter is above zero
    spent = tree_cpu_seconds(os.getpid())
    assert spent["server"] > 0
    assert all(isinstance(pid, int) for pid in descendants(os.getpid()))
