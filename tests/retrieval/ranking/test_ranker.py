"""A toy ranker: trained in a second, it puts the planted answer first where RRF does not."""

from __future__ import annotations

import random
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from retrieval.errors import ModelMismatch
from retrieval.fusion import WeightedRRF
from retrieval.ranking.features import FEATURES, RankingInput
from retrieval.ranking.ranker import (
    EXACT_NAME,
    EXACT_QUOTE,
    META_FILE,
    TOP_CONTRIBUTIONS,
    LearnedRanker,
    exact_lift,
)
from retrieval.types import StoredHit
from tests.retrieval.ranking.toy import toy_query, toy_ranker_folder

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def ranker(tmp_path_factory: pytest.TempPathFactory) -> LearnedRanker:
    return toy_ranker_folder(tmp_path_factory.mktemp("ranker"), "toy-model")


def test_the_planted_answer_comes_first_on_unseen_queries(ranker: LearnedRanker) -> None:
    rng = random.Random(7)
    first = rrf_first = 0
    for i in range(200, 230):
        query, ranked, answer = toy_query(rng, i)
        fused = WeightedRRF().fuse(ranked)
        rrf_first += fused[0].hit.id == answer
        ordered = ranker.rank(query, fused, ranked)
        # The model's own scores, without the exact-name lift (the toy answer is titled as the query).
        model = ordered.scores - ordered.lift
        first += fused[int(np.argmax(model))].hit.id == answer
    assert rrf_first == 0 and first == 30


def test_explanations_carry_the_largest_contributions_for_the_page_only(ranker: LearnedRanker) -> None:
    query, ranked, _ = toy_query(random.Random(3), 250)
    ordered = ranker.rank(query, WeightedRRF().fuse(ranked), ranked)
    page = ranker.explain(ordered, 0, 3)
    assert [h.hit.id for h in page] == [h.hit.id for h in ordered.hits[:3]]
    top = page[0].contributions
    # The largest features and the bias; the exact-name lift too where the model alone fell short.
    assert len(set(top) - {EXACT_NAME}) == TOP_CONTRIBUTIONS + 1 and "bias" in top
    # The toy's only signal is the title equal to the query: that feature leads the contributions.
    assert max((k for k in top if k not in ("bias", EXACT_NAME)), key=lambda k: abs(top[k])) in {
        "name_exact",
        "query_in_name",
        "span_title_share",
        "name_share",
        "title_idf_coverage",
    }
    assert all(not h.contributions for h in ordered.hits[3:])


def test_a_ranker_listing_features_this_code_lacks_is_refused(tmp_path: Path, ranker: LearnedRanker) -> None:
    folder = tmp_path / "r"
    toy_ranker_folder(folder, "toy-model")
    meta = (folder / META_FILE).read_text().replace('"rrf"', '"no_such_feature"')
    (folder / META_FILE).write_text(meta)
    with pytest.raises(ModelMismatch):
        LearnedRanker.load(folder)
    with pytest.raises(ModelMismatch):
        LearnedRanker.load(tmp_path / "missing")


def test_exact_lift_is_the_smallest_that_puts_every_exact_match_first() -> None:
    matrix = np.zeros((5, len(FEATURES)))
    matrix[[2, 4], FEATURES.index("name_typed")] = 1.0
    scores = np.array([3.0, 2.0, 0.5, 1.0, -1.0])
    lift = exact_lift(matrix, scores)
    assert lift.tolist() == [0.0, 0.0, 5.0, 0.0, 5.0]  # 3.0 - (-1.0) + the 1.0 margin
    assert np.argsort(-(scores + lift), kind="stable").tolist() == [2, 4, 0, 1, 3]
    ahead = np.array([1.0, 2.0, 8.5, 1.0, 7.0])  # exact matches already first by more than the margin
    assert not exact_lift(matrix, ahead).any()
    assert not exact_lift(np.zeros((5, len(FEATURES))), scores).any()  # no exact match
    # Texts holding the whole query are lifted when no candidate is named by it...
    quotes = np.zeros((5, len(FEATURES)))
    quotes[[1, 3], FEATURES.index("quote_verbatim")] = 1.0
    assert (exact_lift(quotes, scores) > 0).tolist() == [False, True, False, True, False]
    # ...and a query that names an entry ("第十二章 雪夜渡江") is a name, not a quote.
    quotes[2, FEATURES.index("name_typed")] = 1.0
    assert (exact_lift(quotes, scores) > 0).tolist() == [False, False, True, False, False]


@pytest.fixture(scope="module")
def dense_only() -> LearnedRanker:
    """A model that knows only the dense score (it learned nothing about names or quotes)."""
    rng = np.random.default_rng(1)
    x = rng.random((400, len(FEATURES)))
    dense = FEATURES.index("dense_score")
    y = np.minimum((x[:, dense] * 4).astype(int), 3)
    booster = lgb.train(
        {"objective": "lambdarank", "num_leaves": 7, "min_data_in_leaf": 5, "verbose": -1},
        lgb.Dataset(x, y, group=[20] * 20),
        num_boost_round=20,
    )
    return LearnedRanker(booster.model_to_string(), {"features": list(FEATURES), "model_id": "m"})


def test_a_typed_name_puts_its_entry_first_even_where_the_model_prefers_another(
    dense_only: LearnedRanker,
) -> None:
    # The dense side ranks the named entry last.
    ranker = dense_only
    titles = ["顾长安", "顾长庚传", "照影峰", "顾长庚"]
    hits = [StoredHit(f"{t}#0", 0.0, t, t, "character", f"{t}的故事。", 0, {}) for t in titles]
    ranked = {
        "dense": [
            StoredHit(h.id, 0.9 - 0.2 * i, h.doc_id, h.title, h.kind, h.text) for i, h in enumerate(hits)
        ]
    }
    fused = WeightedRRF().fuse(ranked)
    ordered = ranker.rank(RankingInput("顾长庚", ["顾长庚"], {"顾长庚": 2.0}), fused, ranked)
    model = ordered.scores - ordered.lift
    assert fused[int(np.argmax(model))].hit.title == "顾长安"  # the model alone: the wrong entry
    assert ordered.hits[0].hit.title == "顾长庚"
    page = ranker.explain(ordered, 0, 2)
    assert page[0].hit.title == "顾长庚" and page[0].contributions[EXACT_NAME] > 0
    assert EXACT_NAME not in page[1].contributions
    # The listed contributions are the largest few; with all of them the sum is the score.
    assert page[0].score == pytest.approx(float(ordered.scores[ordered.order[0]]))


def test_a_quote_puts_the_text_that_holds_it_first(dense_only: LearnedRanker) -> None:
    texts = {"烬火教": "教中常言神火重燃。", "第八十章": "赫连烬高呼：“神火重燃，信者不死！”"}
    hits = [StoredHit(f"{t}#0", 0.0, t, t, "chapter", x, 0, {}) for t, x in texts.items()]
    ranked = {
        "dense": [
            StoredHit(h.id, 0.9 - 0.5 * i, h.doc_id, h.title, h.kind, h.text) for i, h in enumerate(hits)
        ]
    }
    fused = WeightedRRF().fuse(ranked)
    ordered = dense_only.rank(RankingInput("神火重燃,信者不死", ["神火", "重燃", "信者"], {}), fused, ranked)
    assert fused[int(np.argmax(ordered.scores - ordered.lift))].hit.title == "烬火教"  # the model alone
    page = dense_only.explain(ordered, 0, 2)
    assert page[0].hit.title == "第八十章" and page[0].contributions[EXACT_QUOTE] > 0
    assert EXACT_NAME not in page[0].contributions
