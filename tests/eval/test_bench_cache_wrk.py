"""The wrk side of `bench cache_wrk`: its script sends each served text with the cache on."""

from __future__ import annotations

import json
import re

from eval.bench.cache_wrk import hits_script


def test_hits_script_sends_every_text_with_the_cache_on_and_reports_p95() -> None:
    texts = ["沈青岩", 'a "quoted" query', "請問顧長庚"]
    script = hits_script(texts)
    bodies = [json.loads(b) for b in re.findall(r"\[\[(.*?)\]\]", script)]
    assert [b["query"] for b in bodies] == texts
    assert all("cache" not in b and b["top_k"] == 10 for b in bodies)  # the cache is on by default
    assert "latency:percentile(95)" in script
