"""The served query path in process: cache tiers, one encoding, degrading, routing, paging."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.answer import decode_answer
from retrieval.documents import Document
from retrieval.errors import EncoderUnavailable, UnknownIntent
from retrieval.routing.features import QueryFeatures
from retrieval.routing.router import Router, parse_routing_table
from retrieval.service import SearchQuery
from retrieval.settings import Settings, load_settings
from retrieval.training.intents.train import TrainConfig, train_ensemble
from retrieval.types import SearchMode, Vectors
from tests.conftest import HashingEncoder, open_test_engine, search

pytestmark = pytest.mark.integration

DOCS = [
    Document(id="char-1", title="沈青崖", kind="character", text="沈青崖是玄霜城的剑客，使一柄断剑。"),
    Document(id="loc-1", title="玄霜城", kind="location", text="玄霜城位于北境，终年积雪。"),
    Document(id="item-1", title="听雪剑", kind="item", text="听雪剑断为两截，是沈青崖的佩剑。"),
]


class CountingEncoder(HashingEncoder):
    """Counts query encodings; fails them while `down` (an embedding service outage)."""

    def __init__(self) -> None:
        super().__init__()
        self.queries = 0
        self.down = False

    async def encode_queries(self, texts: list[str]) -> Vectors:
        self.queries += 1
        if self.down:
            raise EncoderUnavailable("embedding service down")
        return await super().encode_queries(texts)

    async def encode_passages(self, texts: list[str]) -> Vectors:
        return await HashingEncoder.encode_queries(self, texts)  # ingest is not a query


async def test_exact_hit_returns_the_stored_bytes_without_encoding(settings: Settings) -> None:
    encoder = CountingEncoder()
    engine = await open_test_engine(settings, encoder, cache=True)
    try:
        await engine.kb.ingest(DOCS)
        first = await engine.service.search(SearchQuery("沈青崖"))
        await engine.service.drain()  # the cache write happens off the request path
        assert first.tier is None and encoder.queries == 1
        # Width, spacing and trailing punctuation fold into the exact tier's key.
        again = await engine.service.search(SearchQuery(" 沈青崖？"))
        assert again.tier == "exact" and encoder.queries == 1
        assert again.payload == first.payload and again.query == " 沈青崖？"
        assert decode_answer(again.payload).hits[0].doc_id == "char-1"
        # A write makes every cached answer stale.
        await engine.kb.delete(["loc-1"])
        after = await engine.service.search(SearchQuery("沈青崖"))
        assert after.tier is None and encoder.queries == 2
        assert "loc-1" not in {h.doc_id for h in after.answer.hits}
    finally:
        await engine.close()


async def test_an_encoder_outage_degrades_hybrid_to_bm25_and_is_not_cached(settings: Settings) -> None:
    encoder = CountingEncoder()
    engine = await open_test_engine(settings, encoder, cache=True)
    try:
        await engine.kb.ingest(DOCS)
        encoder.down = True
        degraded = await engine.service.search(SearchQuery("沈青崖"))
        await engine.service.drain()
        assert degraded.answer.degraded and degraded.answer.hits[0].doc_id == "char-1"
        assert all(h.explanation.dense is None for h in degraded.answer.hits)
        with pytest.raises(EncoderUnavailable):  # dense-only has no fallback
            await engine.service.search(SearchQuery("沈青崖", mode=SearchMode.DENSE))
        encoder.down = False
        whole = await engine.service.search(SearchQuery("沈青崖"))
        assert whole.tier is None and not whole.answer.degraded
        assert whole.answer.hits[0].explanation.dense is not None
    finally:
        await engine.close()


async def test_pages_follow_one_ranking(settings: Settings) -> None:
    engine = await open_test_engine(settings)
    try:
        await engine.kb.ingest(DOCS)
        whole = await search(engine, "沈青崖 玄霜城 听雪剑", top_k=3)
        pages = [await search(engine, "沈青崖 玄霜城 听雪剑", top_k=1, offset=i) for i in range(3)]
        assert [p.hits[0].id for p in pages] == [h.id for h in whole.hits]
        assert pages[2].offset == 2 and pages[2].top_k == 1
    finally:
        await engine.close()


async def test_a_forced_route_needs_a_router_and_a_known_intent(settings: Settings) -> None:
    engine = await open_test_engine(settings)
    try:
        with pytest.raises(UnknownIntent):
            await search(engine, "沈青崖", route="character", mode=SearchMode.SPARSE)
        engine.service.router = None
        with pytest.raises(UnknownIntent, match="needs routing"):
            await search(engine, "沈青崖", route="character")
        table = parse_routing_table({"intents": {"character": {}}})
        engine.service.router = Router(table)
        with pytest.raises(UnknownIntent, match="unknown intent"):
            await search(engine, "沈青崖", route="no-such-intent")
    finally:
        await engine.close()


async def test_routing_reads_the_query_text_the_service_hands_over(settings: Settings) -> None:
    # A head that only the text can inform (random training vectors): the intent is the KB kind
    # of the name in the query. If the service routed on the vector alone, this would raise.
    encoder = HashingEncoder()
    names = {"沈青崖": "character", "顾长庚": "character", "玄霜宫": "faction", "天机观": "faction"}
    features = QueryFeatures.from_names(list(names), list(names.values()), buckets=0)
    texts = [
        f.format(n) for n in ("沈青崖", "玄霜宫") for f in ("介绍一下{}", "说说{}", "{}的情况", "关于{}")
    ]
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(texts), encoder.dim)).astype(np.float32)
    head = train_ensemble(
        vectors / np.linalg.norm(vectors, axis=1, keepdims=True),
        np.repeat([0, 1], 4),
        ["character", "faction"],
        model_id=encoder.model_id,
        config=TrainConfig(epochs=200),
        members=1,
        val_fraction=0.0,
        features=features,
        texts_labelled=texts,
    ).classifier
    table = parse_routing_table(
        {"routing": {"threshold": 0.0}, "intents": {"character": {}, "faction": {"boost": {"faction": 2.0}}}}
    )
    engine = await open_test_engine(settings, encoder)
    try:
        engine.service.router = Router(table, head)
        await engine.kb.ingest(
            [
                Document(id="f1", title="天机观", kind="faction", text="天机观以推演天机著称。"),
                Document(id="c1", title="顾长庚", kind="character", text="顾长庚是照影峰峰主。"),
            ]
        )
        faction = await search(engine, "说说天机观", top_k=2)
        character = await search(engine, "说说顾长庚", top_k=2)
        assert faction.route is not None and faction.route["intent"] == "faction"
        assert character.route is not None and character.route["intent"] == "character"
    finally:
        await engine.close()


def _cache_settings(settings: Settings, **cache: str) -> Settings:
    environ = {"SEARCH_DATA_DIR": str(settings.data.dir)}
    environ.update({f"SEARCH_CACHE_{name.upper()}": value for name, value in cache.items()})
    return load_settings(environ=environ)


async def test_a_rewording_is_served_from_the_canonical_tier_without_encoding(settings: Settings) -> None:
    encoder = CountingEncoder()
    engine = await open_test_engine(settings, encoder, cache=True)
    try:
        await engine.kb.ingest(DOCS)
        first = await engine.service.search(SearchQuery("沈青崖的佩剑是什么？"))
        await engine.service.drain()
        # Without 的 the text searched differs, so the exact tier misses; the canonical form matches.
        variant = await engine.service.search(SearchQuery("沈青崖佩劍是什麼"))
        assert variant.tier == "canonical" and encoder.queries == 1
        assert variant.payload == first.payload
        # Another entity, a negation: computed, never served from the entry above.
        for near_miss in ("玄霜城的佩剑是什么", "沈青崖的佩剑不是什么"):
            assert (await engine.service.search(SearchQuery(near_miss))).tier is None
    finally:
        await engine.close()


async def test_wordings_of_one_question_are_searched_as_one_text(settings: Settings) -> None:
    encoder = CountingEncoder()
    engine = await open_test_engine(settings, encoder, cache=True)
    try:
        await engine.kb.ingest(DOCS)
        service = engine.service
        wordings = [
            "请问，什么是沈青崖的佩剑呢？",
            "沈青崖的佩剑是啥",
            "沈青崖 的佩剑是何物",
            "沈青崖的佩剑是什么",
        ]
        assert {service.search_text(w) for w in wordings} == {"沈青崖的佩剑是什么"}
        uncached = [(await service.search(SearchQuery(w, use_cache=False))).payload for w in wordings]
        assert len(set(uncached)) == 1  # one text searched: one answer, byte for byte
        first = await service.search(SearchQuery(wordings[0]))
        await service.drain()
        # So an exact hit for any of them is the answer it would have got uncached.
        for wording in wordings[1:]:
            hit = await service.search(SearchQuery(wording))
            assert hit.tier == "exact" and hit.payload == first.payload == uncached[0]
    finally:
        await engine.close()


async def test_a_paraphrase_below_the_trusted_threshold_is_served_only_with_agreeing_evidence(
    settings: Settings,
) -> None:
    verified = _cache_settings(
        settings, semantic_threshold="0.9999", verify_threshold="0.5", verify_min_overlap="0.5"
    )
    encoder = CountingEncoder()
    engine = await open_test_engine(verified, encoder, cache=True)
    try:
        await engine.kb.ingest(DOCS)
        await engine.service.search(SearchQuery("沈青崖的佩剑叫什么名字"))
        await engine.service.drain()
        # Not the same canonical form (名字 is gone), close vectors, the same BM25 top documents.
        paraphrase = await engine.service.search(SearchQuery("沈青崖佩剑的名字"))
        assert paraphrase.tier == "semantic"
        metrics = engine.service.cache.metrics() if engine.service.cache is not None else {}
        assert metrics["semantic_hits"] == 1
    finally:
        await engine.close()


async def test_the_ranker_learns_from_the_candidates_a_search_ranks(settings: Settings) -> None:
    # Training records `candidate_lists`; a relation question is searched with the entity source,
    # and a typo'd name as the name it means, so the candidates must be read the same way.
    docs = [
        Document(id="char-1", title="沈青崖", kind="character", text="沈青崖拜顾长庚为师，使一柄断剑。"),
        Document(id="char-2", title="顾长庚", kind="character", text="照影峰峰主，剑法通神。"),
        Document(id="loc-1", title="照影峰", kind="location", text="栖岚剑宗第七峰。"),
    ]
    engine = await open_test_engine(settings)
    try:
        await engine.kb.ingest(docs)
        query, ranked = await engine.service.candidate_lists("沈青涯的师父是谁")
        assert "沈青崖" in query.text and "沈青涯" not in query.text
        assert [h.doc_id for h in ranked["entity"]][:2] == ["char-1", "char-2"]
        served = await search(engine, "沈青涯的师父是谁", route="none")
        assert {h.doc_id for h in served.hits if h.explanation.entity} == {h.doc_id for h in ranked["entity"]}
        plain, lists = await engine.service.candidate_lists("照影峰")
        assert "entity" not in lists and plain.text == "照影峰"
    finally:
        await engine.close()
