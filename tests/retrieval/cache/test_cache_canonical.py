"""The canonical-form tier: which wordings share a key, which never do, and the tier on both backends."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, generate_latest

from retrieval.cache.canonical import canonical_form, canonical_tokens
from retrieval.cache.config import CacheConfig
from retrieval.cache.memory import MemoryCache
from retrieval.cache.protocol import CacheKey, normalise_query
from retrieval.settings import PROJECT_ROOT
from retrieval.sparse.tokenizer import JiebaTokenizer
from retrieval.text import to_simplified
from tests.retrieval.cache.cache_test_support import MakeCache, random_unit


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> JiebaTokenizer:
    # The fixtures' own lexicon: names must stay whole the way they do in the served engine.
    names: list[str] = []
    for line in (PROJECT_ROOT / "fixtures" / "kb.jsonl").read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        names += [doc["title"], *doc.get("aliases", [])]
    return JiebaTokenizer(names, mode="precise", cache_dir=tmp_path_factory.mktemp("jieba"))


def form(tokenizer: JiebaTokenizer, query: str) -> str:
    """The canonical form the search service computes for `query`."""
    text = normalise_query(query)
    return canonical_form(text, tokenizer.entities(to_simplified(text)), tokenizer.words)


def key(tokenizer: JiebaTokenizer, query: str) -> CacheKey:
    return CacheKey.for_query(query, canonical=form(tokenizer, query))


@pytest.mark.unit
@pytest.mark.parametrize(
    "variants",
    [
        # question word moved across the copula, particles, wrappers, traditional script, width
        [
            "沈青崖的师父是谁？",
            "谁是沈青崖的师父",
            "請問沈青崖的師父是誰呢",
            "沈青崖师父是谁啊",
            "沈青崖的师父是谁 ?",
        ],
        ["噬魂宗现在的山门在哪里？", "我想知道噬魂宗现在的山门在什么地方", "噬魂宗现在的山门在何处"],
        ["沈伯庸是被谁杀的？", "沈伯庸被谁杀的", "请问，沈伯庸是被谁杀的呢"],
        ["第十二章 雪夜渡江", "第12章 雪夜渡江", "第十二章，雪夜渡江"],
        ["落雁坡之战是哪一年打的？", "落雁坡之战是哪年打的"],
    ],
)
def test_surface_variants_and_reorderings_share_one_form(
    tokenizer: JiebaTokenizer, variants: list[str]
) -> None:
    forms = {form(tokenizer, v) for v in variants}
    assert len(forms) == 1
    assert forms != {""}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("one", "other"),
    [
        # who does what to whom: the same words, roles swapped
        ("沈青崖打败了顾长安", "顾长安打败了沈青崖"),
        ("沈青崖把顾长安打败了", "沈青崖被顾长安打败了"),
        ("沈伯庸是被谁杀的", "沈伯庸杀了谁"),
        # the question word inside one side of the copula asks something else
        ("沈青崖的师父是谁", "沈青崖是谁的师父"),
        # guards: another entity, a negation, another number
        ("沈青崖的师父是谁", "沈青岩的师父是谁"),
        ("沈青崖会用剑吗", "沈青崖不会用剑吗"),
        ("第十二章 雪夜渡江", "第十三章 雪夜渡江"),
        ("落雁坡之战是哪一年打的", "落雁坡之战是什么时候打的"),
    ],
)
def test_different_questions_never_share_a_form(tokenizer: JiebaTokenizer, one: str, other: str) -> None:
    assert form(tokenizer, one) != form(tokenizer, other)


@pytest.mark.unit
def test_word_order_is_kept_around_the_verb(tokenizer: JiebaTokenizer) -> None:
    text = normalise_query("沈青崖打败了顾长安")
    entities = tokenizer.entities(text)
    assert canonical_tokens(text, entities, tokenizer.words) == ("沈青崖", "打败", "顾长安")
    reverse = normalise_query("顾长安打败了沈青崖")
    assert canonical_tokens(reverse, entities, tokenizer.words) == ("顾长安", "打败", "沈青崖")


@pytest.mark.unit
def test_a_query_of_function_words_only_has_no_form(tokenizer: JiebaTokenizer) -> None:
    assert form(tokenizer, "是谁呢？") != ""  # the question word stays
    assert form(tokenizer, "的了吗") == ""
    assert CacheKey.for_query("的了吗").canonical_digest == ""


@pytest.mark.unit
def test_canonical_digest_never_equals_an_exact_digest(tokenizer: JiebaTokenizer) -> None:
    k = key(tokenizer, "沈青崖的师父是谁")
    assert k.canonical_digest not in ("", k.digest)
    assert key(tokenizer, "谁是沈青崖的师父").canonical_digest == k.canonical_digest
    assert key(tokenizer, "谁是沈青崖的师父").digest != k.digest


@pytest.mark.integration
async def test_redis_serves_a_variant_from_the_canonical_tier_in_another_worker(
    make_redis_cache: MakeCache, shared_redis: aioredis.Redis, tokenizer: JiebaTokenizer
) -> None:
    writer, reader = await make_redis_cache(), await make_redis_cache()
    original = key(tokenizer, "沈青崖的师父是谁？")
    seen = await writer.get_canonical(original)
    assert not seen.is_hit
    await writer.put(original, random_unit(1), {"沈青崖"}, b"answer", 20.0, kb_version=seen.kb_version)

    variant = key(tokenizer, "請問，誰是沈青崖的師父")
    assert not (await reader.get_exact(variant)).is_hit  # another text: not an exact hit
    hit = await reader.get_canonical(variant)
    assert hit.hit is not None
    assert (hit.hit.tier, hit.hit.payload, hit.hit.saved_ms) == ("canonical", b"answer", 20.0)
    for near_miss in ("沈青岩的师父是谁", "沈青崖是谁的师父", "沈青崖不是谁的师父"):
        assert not (await reader.get_canonical(key(tokenizer, near_miss))).is_hit
    assert reader.metrics()["canonical_hits"] == 1
    assert reader.metrics()["canonical_misses"] == 3
    # The copy lives under its own key with the entry's TTL.
    ttl = await shared_redis.pttl(f"{writer.config.key_prefix}c:{original.canonical_digest}")
    assert 0 < ttl <= writer.config.ttl_s * 1000


@pytest.mark.integration
async def test_redis_canonical_entries_expire_and_die_with_the_version(
    make_redis_cache: MakeCache, tokenizer: JiebaTokenizer
) -> None:
    cache = await make_redis_cache(ttl_s=1.0)
    original, variant = key(tokenizer, "沈青崖的师父是谁"), key(tokenizer, "谁是沈青崖的师父")
    await cache.put(original, None, {"沈青崖"}, b"v1", 1.0)
    assert (await cache.get_canonical(variant)).is_hit
    await cache.bump_version()
    assert not (await cache.get_canonical(variant)).is_hit
    after = await cache.get_canonical(variant)
    await cache.put(original, None, {"沈青崖"}, b"v2", 1.0, kb_version=after.kb_version)
    assert (await cache.get_canonical(variant)).is_hit
    await asyncio.sleep(1.2)
    assert not (await cache.get_canonical(variant)).is_hit


@pytest.mark.integration
async def test_redis_canonical_tier_can_be_switched_off(
    make_redis_cache: MakeCache, tokenizer: JiebaTokenizer
) -> None:
    cache = await make_redis_cache(canonical=False)
    await cache.put(key(tokenizer, "沈青崖的师父是谁"), None, {"沈青崖"}, b"answer", 1.0)
    assert not (await cache.get_canonical(key(tokenizer, "谁是沈青崖的师父"))).is_hit
    assert (await cache.get_exact(key(tokenizer, "沈青崖的师父是谁"))).is_hit


@pytest.mark.unit
async def test_memory_canonical_tier_follows_its_entry(tokenizer: JiebaTokenizer) -> None:
    cache = MemoryCache(CacheConfig(max_entries=2))
    original = key(tokenizer, "沈青崖的师父是谁")
    await cache.put(original, None, {"沈青崖"}, b"answer", 5.0)
    hit = await cache.get_canonical(key(tokenizer, "谁是沈青崖的师父呢"))
    assert hit.hit is not None
    assert (hit.hit.tier, hit.hit.payload) == ("canonical", b"answer")
    assert not (await cache.get_canonical(key(tokenizer, "沈青崖是谁的师父"))).is_hit
    # A canonical hit counts for LFU; evicting an entry (two slots) takes its canonical form along.
    await cache.put(key(tokenizer, "顾长安是谁"), None, {"顾长安"}, b"b", 1.0)
    await cache.put(key(tokenizer, "温照雪是谁"), None, {"温照雪"}, b"c", 1.0)
    assert not (await cache.get_canonical(key(tokenizer, "谁是顾长安"))).is_hit
    assert (await cache.get_canonical(key(tokenizer, "谁是沈青崖的师父"))).is_hit
    assert (await cache.status())["canonical_entries"] == 2
    await cache.bump_version()
    assert not (await cache.get_canonical(key(tokenizer, "谁是温照雪"))).is_hit


@pytest.mark.unit
async def test_canonical_tier_is_counted_and_exposed_to_prometheus(tokenizer: JiebaTokenizer) -> None:
    registry = CollectorRegistry()
    cache = MemoryCache(registry=registry)
    await cache.put(key(tokenizer, "沈青崖的师父是谁"), None, {"沈青崖"}, b"answer", 5.0)
    await cache.get_canonical(key(tokenizer, "谁是沈青崖的师父"))
    await cache.get_canonical(key(tokenizer, "谁是沈青岩的师父"))
    text = generate_latest(registry).decode()
    assert 'search_cache_hits_total{backend="memory",tier="canonical"} 1.0' in text
    assert 'search_cache_misses_total{backend="memory",tier="canonical"} 1.0' in text
    assert 'search_cache_guard_rejections_total{backend="memory",reason="roles"} 0.0' in text
