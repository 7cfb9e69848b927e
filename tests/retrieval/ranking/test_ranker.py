"""A toy ranker: trained in a second, it puts the planted answer first where RRF does not."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from retrieval.errors import ModelMismatch
from retrieval.fusion import WeightedRRF
from retrieval.ranking.ranker import META_FILE, TOP_CONTRIBUTIONS, LearnedRanker
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
        first += ranker.rank(query, fused, ranked).hits[0].hit.id == answer
    assert rrf_first == 0 and first == 30


def test_explanations_carry_the_largest_contributions_for_the_page_only(ranker: LearnedRanker) -> None:
    query, ranked, _ = toy_query(random.Random(3), 250)
    ordered = ranker.rank(query, WeightedRRF().fuse(ranked), ranked)
    page = ranker.explain(ordered, 0, 3)
    assert [h.hit.id for h in page] == [h.hit.id for h in ordered.hits[:3]]
    top = page[0].contributions
    assert len(top) == TOP_CONTRIBUTIONS + 1 and "bias" in top
    # The toy's only signal is the title equal to the query: that feature leads the contributions.
    assert max((k for k in top if k != "bias"), key=lambda k: abs(top[k])) in {
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
