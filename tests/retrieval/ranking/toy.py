"""A toy ranker trained in a second: the hit titled as the query is the answer, retrievers disagree."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from retrieval.fusion import WeightedRRF
from retrieval.ranking.features import RankingInput, feature_matrix
from retrieval.ranking.ranker import LearnedRanker
from retrieval.training.ranking.train import Group, Trained, train
from retrieval.types import StoredHit

TOY_OPTIONS = ({"num_leaves": 7, "min_data_in_leaf": 5, "learning_rate": 0.2},)
NAMES = [chr(0x4E00 + i * 7) + chr(0x4E80 + i * 3) + chr(0x4F00 + i) for i in range(400)]


def toy_query(rng: random.Random, index: int) -> tuple[RankingInput, dict[str, list[StoredHit]], str]:
    """One query: the answer (titled as the query) is ranked low by both retrievers, others high."""
    name = NAMES[index % len(NAMES)]
    others = rng.sample([n for n in NAMES if n != name], 15)
    answer = StoredHit(f"a{index}#0", 0.0, f"a{index}", name, "character", f"{name}是剑客。", 0, {})
    decoys = [
        StoredHit(f"d{index}-{i}#0", 0.0, f"d{index}-{i}", title, "character", f"{title}提到{name}。", 0, {})
        for i, title in enumerate(others)
    ]
    pool = [*decoys, answer]
    ranked: dict[str, list[StoredHit]] = {}
    for source in ("dense", "sparse"):
        order = rng.sample(pool, len(pool))
        order.remove(answer)
        order.insert(rng.randint(4, 10), answer)  # never first: RRF alone gets it wrong
        ranked[source] = [
            StoredHit(h.id, 1.0 - 0.03 * r, h.doc_id, h.title, h.kind, h.text, 0, h.metadata)
            for r, h in enumerate(order)
        ]
    return RankingInput(name, [name], {name: 3.0}, depth=16), ranked, answer.id


def toy_groups(n: int, seed: int) -> list[Group]:
    """`n` toy queries as training groups."""
    rng = random.Random(seed)
    groups = []
    for i in range(n):
        query, ranked, answer = toy_query(rng, i)
        fused = WeightedRRF().fuse(ranked)
        grades = np.array([1 if f.hit.id == answer else 0 for f in fused], dtype=np.int32)
        matrix = feature_matrix(query, fused, ranked)
        ids = [f.hit.doc_id for f in fused]
        groups.append(Group("toy", f"q{i}", fused, matrix, grades, ranked, {f"a{i}": 1}, {}, ids))
    return groups


def toy_trained() -> Trained:
    """A ranker trained on 120 toy queries, settings chosen on 40 others."""
    return train(toy_groups(120, 0), toy_groups(40, 1), options=TOY_OPTIONS, threads=1)


def toy_ranker_folder(folder: Path, model_id: str) -> LearnedRanker:
    """Train the toy ranker, save it for `model_id` into `folder`, and return it as served."""
    trained = toy_trained()
    trained.save(folder, {"model_id": model_id})
    return LearnedRanker.load(folder)
