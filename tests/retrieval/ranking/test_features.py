"""Ranking features on hand-made (query, candidate) pairs."""

from __future__ import annotations

import math
import random

import pytest

from retrieval.fusion import WeightedRRF
from retrieval.ranking.features import (
    FEATURES,
    RankingInput,
    feature_matrix,
    longest_shared_span,
    query_terms,
)
from retrieval.types import StoredHit

pytestmark = pytest.mark.unit


def col(name: str) -> int:
    return FEATURES.index(name)


def hit(cid: str, score: float, title: str, text: str, aliases: tuple[str, ...] = ()) -> StoredHit:
    meta = {"aliases": list(aliases)} if aliases else {}
    return StoredHit(cid, score, cid.split("#")[0], title, "character", text, 2, meta)


def test_longest_shared_span() -> None:
    assert longest_shared_span("断剑录里的沈青崖", "沈青崖是主角") == 3
    assert longest_shared_span("abc", "xyz") == 0
    assert longest_shared_span("他说天下无剑", "她说：天下无剑，心中有剑。") == 4
    assert longest_shared_span("", "anything") == 0


def test_query_terms_drop_punctuation_and_repeats() -> None:
    assert query_terms(["沈青崖", "的", "？", "沈青崖", " "]) == ["沈青崖", "的"]


def test_features_of_a_title_match_and_a_passing_mention() -> None:
    about = hit("a#0", 0.80, "顾长庚", "栖岚剑宗长老。", aliases=("长庚",))
    mention = hit("b#0", 0.95, "沈青崖", "拜顾长庚为师，顾长庚授其剑法。")
    only_dense = hit("c#0", 0.70, "落雁渡", "渡口。")
    ranked = {
        "dense": [mention, about, only_dense],
        "sparse": [hit("b#0", 9.0, "沈青崖", mention.text), hit("a#0", 6.0, "顾长庚", about.text)],
    }
    fused = WeightedRRF().fuse(ranked)
    query = RankingInput("顾长庚", ["顾长庚"], {"顾长庚": 4.0}, depth=3)
    m = feature_matrix(query, fused, ranked)
    rows = {f.hit.id: m[i] for i, f in enumerate(fused)}
    a, b, c = rows["a#0"], rows["b#0"], rows["c#0"]
    assert m.shape == (3, len(FEATURES))
    assert a[col("name_exact")] == 1 and b[col("name_exact")] == 0
    assert a[col("title_idf_coverage")] == 1 and b[col("title_idf_coverage")] == 0
    assert b[col("idf_coverage")] == 1 and b[col("name_mentions")] == 0  # counts the hit's own title
    assert a[col("span_share")] == 1 and a[col("span_title_share")] == 1
    assert b[col("sparse_rank")] == 1 and a[col("sparse_rank")] == 2
    assert b[col("dense_score_norm")] == 1 and c[col("dense_score_norm")] == 0
    # Missing from a list: no score, rank depth + 1; a source nobody returned is NaN throughout.
    assert (
        math.isnan(c[col("sparse_score")]) and c[col("sparse_rank")] == 4 and c[col("sparse_rank_recip")] == 0
    )
    assert math.isnan(a[col("entity_score")]) and a[col("entity_rank")] == 4
    assert a[col("n_sources")] == 2 and c[col("n_sources")] == 1


def test_an_extra_source_gets_columns_and_an_unknown_one_is_ignored() -> None:
    a = hit("a#0", 1.0, "顾长庚", "长老。")
    ranked = {
        "dense": [a],
        "sparse": [a],
        "entity": [hit("a#0", 1.0, "顾长庚", "长老。")],
        "mystery": [hit("z#0", 5.0, "x", "y")],
    }
    fused = WeightedRRF().fuse({k: v for k, v in ranked.items() if k != "mystery"})
    m = feature_matrix(RankingInput("顾长庚的师父", ["顾长庚", "的", "师父"], {}), fused, ranked)
    assert m[0, col("entity_rank")] == 1 and m[0, col("entity_score")] == 1.0
    assert m.shape[1] == len(FEATURES)


def test_the_joined_search_equals_a_per_candidate_search() -> None:
    # Random strings over a small alphabet: many partial overlaps, spans across candidates' borders.
    rng = random.Random(5)
    alphabet = "顾长庚沈青崖的师父剑"
    hits = [
        hit(
            f"h{i}#0",
            1.0 - i / 100,
            "".join(rng.choices(alphabet, k=rng.randint(0, 4))),
            "".join(rng.choices(alphabet, k=rng.randint(0, 30))),
        )
        for i in range(60)
    ]
    for _ in range(20):
        text = "".join(rng.choices(alphabet, k=rng.randint(1, 8)))
        terms = [text[: len(text) // 2], text[len(text) // 2 :]]
        fused = WeightedRRF().fuse({"dense": hits})
        m = feature_matrix(RankingInput(text, terms, dict.fromkeys(terms, 1.0)), fused, {"dense": hits})
        for row, f in enumerate(fused):
            head = "\n".join(n for n in (f.hit.title,) if n)
            span = max(longest_shared_span(text, f.hit.text), longest_shared_span(text, head) if head else 0)
            assert m[row, col("span_chars")] == span
            present = [t in f.hit.text or t in head for t in query_terms(terms)]
            assert m[row, col("term_coverage")] == pytest.approx(sum(present) / len(present))


def test_a_long_query_held_whole_by_a_text_is_a_quote_whatever_its_punctuation() -> None:
    said = hit("a#0", 0.5, "第八十章", "赫连烬举杖高呼：“神火重燃，信者不死！”众人跪拜。")
    half = hit("b#0", 0.9, "烬火教", "教中常言神火重燃。")
    hits = [half, said]
    fused = WeightedRRF().fuse({"dense": hits})
    rows = {f.hit.id: i for i, f in enumerate(fused)}
    quote = feature_matrix(RankingInput("神火重燃, 信者不死", ["神火", "重燃"], {}), fused, {"dense": hits})
    assert quote[rows["a#0"], col("quote_verbatim")] == 1 and quote[rows["b#0"], col("quote_verbatim")] == 0
    short = feature_matrix(RankingInput("神火重燃", ["神火", "重燃"], {}), fused, {"dense": hits})
    assert not short[:, col("quote_verbatim")].any()  # 4 characters: a phrase, not a quote


def test_a_typed_name_matches_whatever_its_spaces_punctuation_and_case() -> None:
    chapter = hit("a#0", 0.5, "第十二章 雪夜渡江", "雪夜。", aliases=("Snow Night",))
    cites = hit("b#0", 0.9, "冰魄渡", "见第十二章 雪夜渡江。")
    hits = [cites, chapter]
    fused = WeightedRRF().fuse({"dense": hits})
    rows = {f.hit.id: i for i, f in enumerate(fused)}
    for typed in ("第十二章雪夜渡江", "第十二章·雪夜渡江", "snow night"):
        m = feature_matrix(RankingInput(typed, [typed], {}), fused, {"dense": hits})
        assert m[rows["a#0"], col("name_typed")] == 1 and m[rows["b#0"], col("name_typed")] == 0, typed
    part = feature_matrix(RankingInput("雪夜渡江", ["雪夜渡江"], {}), fused, {"dense": hits})
    assert not part[:, col("name_typed")].any()  # part of a name is not the name
    # A knowledge base written in traditional characters: the folded query still names the entry.
    written = [hit("t#0", 0.5, "顧長庚", "照影峰峰主。")]
    folded = WeightedRRF().fuse({"dense": written})
    m = feature_matrix(RankingInput("顾长庚", ["顾长庚"], {}), folded, {"dense": written})
    assert m[0, col("name_typed")] == 1 and m[0, col("name_exact")] == 0
