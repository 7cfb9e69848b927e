"""Query understanding through POST /v1/search, over the fixture knowledge base (real Milvus Lite)."""

from __future__ import annotations

import pytest

from retrieval.settings import Settings
from tests.search_api.conftest import api, serving

pytestmark = pytest.mark.integration


async def test_folding_correction_and_the_entity_source_through_the_api(settings: Settings) -> None:
    # The whole fixture world (451 entries): its lexicon holds 沈青崖, 沈青岩 and 沈清涯 alike.
    async with serving(api(settings)) as client:

        async def ask(query: str, **extra: object) -> dict:  # type: ignore[type-arg]
            response = await client.post("/v1/search", json={"query": query, "top_k": 10, **extra})
            assert response.status_code == 200, response.text
            return response.json()  # type: ignore[no-any-return]

        # Traditional characters find the simplified entry; highlights mark the entry's own text.
        traditional = await ask("顧長庚", mode="sparse", cache=False)
        simplified = await ask("顾长庚", mode="sparse", cache=False)
        assert [h["id"] for h in traditional["hits"]] == [h["id"] for h in simplified["hits"]]
        assert traditional["corrected"] is None and "顾长庚" in {h["title"] for h in traditional["hits"]}
        alias = await ask("照影劍主", mode="sparse", cache=False)
        entry = next(h for h in alias["hits"] if h["title"] == "顾长庚")
        assert "照影剑主" in {entry["text"][m["start"] : m["end"]] for m in entry["highlights"]}

        # A homophone typo is searched as the name it means, and the answer says so.
        typo = await ask("沈青涯的师父是谁", mode="sparse", cache=False)
        right = await ask("沈青崖的师父是谁", mode="sparse", cache=False)
        assert typo["corrected"] == {"沈青涯": "沈青崖"}
        assert right["corrected"] is None
        assert [h["id"] for h in typo["hits"]] == [h["id"] for h in right["hits"]]

        # Names that exist are never swapped for one another.
        for name in ("沈青崖", "沈青岩", "沈清涯", "沈青崖和沈青岩", "沈青岩的师父"):
            assert (await ask(name, mode="sparse"))["corrected"] is None

        # A relation question: the asked entry and the entries it names are a source of their own,
        # and the answer (顾长庚, 沈青崖's master) is among them.
        relation = await ask("沈青崖的师父是谁", mode="hybrid", route="none", cache=False)
        from_entity = {h["title"] for h in relation["hits"] if h["explanation"]["entity"]}
        assert {"沈青崖", "顾长庚"} <= from_entity


async def test_a_corrected_query_and_its_right_spelling_keep_their_own_cache_entries(
    settings: Settings,
) -> None:
    async with serving(api(settings)) as client:
        first = (await client.post("/v1/search", json={"query": "顾长耕"})).json()
        assert first["corrected"] == {"顾长耕": "顾长庚"} and first["cache"]["hit"] is False
        again = (await client.post("/v1/search", json={"query": "顾长耕"})).json()
        assert again["cache"]["hit"] is True and again["corrected"] == {"顾长耕": "顾长庚"}
        right = (await client.post("/v1/search", json={"query": "顾长庚"})).json()
        # Same hits, but never the typo's cached answer: that one says it corrected something.
        assert right["corrected"] is None
        assert [h["id"] for h in right["hits"]] == [h["id"] for h in first["hits"]]
        folded = (await client.post("/v1/search", json={"query": "顧長庚"})).json()
        assert folded["cache"] == {"hit": True, "tier": "exact"} and folded["corrected"] is None
