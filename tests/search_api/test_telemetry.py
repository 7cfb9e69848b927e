"""Observability: JSON log lines carry the request id; /metrics has route, stage and cache timings."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from search_api.telemetry import JsonFormatter, RequestIdFilter


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the root logger writes, formatted as `search-api serve` formats it."""
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield sink
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.mark.unit
def test_json_lines_keep_extra_fields_and_tracebacks(json_log: io.StringIO) -> None:
    log = logging.getLogger("test.telemetry")
    log.info("plain %s", "line", extra={"chunks": 3})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    first, second = (json.loads(line) for line in json_log.getvalue().splitlines())
    assert first["message"] == "plain line" and first["chunks"] == 3 and first["level"] == "INFO"
    assert first["request_id"] is None  # outside any request
    assert second["level"] == "ERROR" and "RuntimeError: boom" in second["exc"]


@pytest.mark.integration
async def test_every_request_logs_a_json_line_with_its_request_id(
    client: AsyncTestClient,  # type: ignore[type-arg]
    json_log: io.StringIO,
) -> None:
    await client.post("/v1/search", json={"query": "断剑客"}, headers={"X-Request-ID": "trace-42"})
    await client.post("/v1/search", json={"query": ""}, headers={"X-Request-ID": "trace-43"})
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    access = {line["request_id"]: line for line in lines if line["logger"] == "search_api.access"}
    assert access["trace-42"]["status"] == 200 and "/v1/search" in access["trace-42"]["message"]
    assert access["trace-43"]["status"] == 400
    assert access["trace-42"]["duration_ms"] > 0


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text format, or fail naming what was missing."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} {labels}")


@pytest.mark.integration
async def test_metrics_show_route_latency_stage_timings_cache_and_memory(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    for _ in range(2):  # the second is an exact cache hit
        assert (await client.post("/v1/search", json={"query": "听雪剑"})).status_code == 200
    assert (await client.post("/v1/search", json={"query": "x" * 600})).status_code == 400
    text = (await client.get("/metrics")).text
    route = {"route": "/v1/search", "method": "POST"}
    assert _sample(text, "http_request_duration_seconds_count", **route, status="200") == 2
    assert _sample(text, "http_request_duration_seconds_count", **route, status="400") == 1
    for stage in ("encode", "dense", "sparse"):  # encoder and store timings of the computed search
        assert _sample(text, "search_stage_duration_seconds_count", stage=stage) == 1
    assert _sample(text, "search_cache_lookup_duration_seconds_count", tier="exact", outcome="hit") == 1
    assert _sample(text, "search_requests_total", answer="computed") == 1
    assert _sample(text, "search_requests_total", answer="exact") == 1
    assert _sample(text, "process_resident_memory_bytes") > 10_000_000


_THIRD_PARTY_SCRIPT = """
import logging, sys
from pathlib import Path
from search_api.telemetry import configure_logging
configure_logging("DEBUG")
from retrieval.sparse.tokenizer import JiebaTokenizer
assert JiebaTokenizer(lexicon=["沈青崖"], cache_dir=Path(sys.argv[1])).tokenize("沈青崖的师父")
# onnxruntime's quantiser logs one INFO line per tensor through the root logger.
quantiser = "/site-packages/onnxruntime/quantization/base_quantizer.py"
for level, message in ((logging.INFO, "Quantization parameters for tensor"), (logging.WARNING, "kept")):
    logging.getLogger().handle(logging.LogRecord("root", level, quantiser, 1, message, None, None))
"""


@pytest.mark.unit
def test_third_party_lines_are_written_once_as_json(tmp_path: Path) -> None:
    # A fresh process, as `serve` is: jieba installs its own stderr handler when first imported.
    done = subprocess.run(
        [sys.executable, "-c", _THIRD_PARTY_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    records = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]  # no plain line
    jieba_lines = [r["message"] for r in records if r["logger"] == "jieba"]
    assert jieba_lines and len(jieba_lines) == len(set(jieba_lines))
    messages = [r["message"] for r in records]
    assert "kept" in messages and "Quantization parameters for tensor" not in messages
