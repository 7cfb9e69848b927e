"""Training the LambdaRank ranker on candidate sets, choosing among a few settings on held-back queries.

    groups = build_groups(candidate_set)            # one per judged query: features, grades
    trained = train(train_groups, valid_groups)     # a few LightGBM settings, early stopping each
    trained.save(out, meta)                         # ranker.txt + meta.json (what serving loads)

The held-back split is by query (a hash of dataset and query id), so no query's candidates are
both trained on and used to choose the model. `evaluate` scores learned vs RRF vs BM25 vs dense on
any groups with the same metrics as `search-eval quality`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from eval.metrics import METRICS, RankedRun, evaluate_run, first_per_document
from retrieval.fusion import WeightedRRF
from retrieval.ranking.features import MODEL_FEATURES, columns, feature_matrix
from retrieval.ranking.ranker import META_FILE, MODEL_FILE, LearnedRanker
from retrieval.training.ranking.candidates import CandidateSet
from retrieval.types import FusedHit, StoredHit

logger = logging.getLogger(__name__)

PARAM_OPTIONS: tuple[dict[str, Any], ...] = (
    {"num_leaves": 15, "min_data_in_leaf": 50, "learning_rate": 0.05},
    {"num_leaves": 31, "min_data_in_leaf": 30, "learning_rate": 0.05},
    {"num_leaves": 7, "min_data_in_leaf": 100, "learning_rate": 0.08},
)
"""The settings tried; the one with the best held-back nDCG@10 is kept."""

BASE_PARAMS: dict[str, Any] = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [10],
    "lambdarank_truncation_level": 20,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "seed": 0,
    "deterministic": True,
    "force_row_wise": True,
}
MAX_ROUNDS = 300
EARLY_STOP = 40
_MODEL_COLUMNS = columns(MODEL_FEATURES)


@dataclass
class Group:
    """One query's candidates: RRF-fused union, its feature rows, grades, and the lists behind it."""

    dataset: str
    query_id: str
    fused: list[FusedHit]
    matrix: npt.NDArray[np.float64]
    grades: npt.NDArray[np.int32]
    ranked: dict[str, list[StoredHit]]
    qrels: dict[str, int]
    labels: dict[str, str]
    beir_ids: list[str] = field(default_factory=list)
    """Corpus id of each fused hit."""
    source_runs: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    """Each retriever's list alone, by corpus id (the BM25 and dense baselines)."""

    @property
    def key(self) -> str:
        """Unique across datasets."""
        return f"{self.dataset}/{self.query_id}"


def build_groups(
    cs: CandidateSet, fuser: WeightedRRF | None = None, per_source: int | None = None
) -> list[Group]:
    """One group per judged query; `per_source` cuts each retriever's list first (depth studies)."""
    fuser = fuser or WeightedRRF()
    groups = []
    for q in cs.queries:
        ranked = {s: cs.stored(hits[:per_source] if per_source else hits) for s, hits in q.ranked.items()}
        fused = fuser.fuse(ranked)
        beir = [cs.beir_id(f.hit.id) for f in fused]
        grades = np.array([max(q.qrels.get(b, 0), 0) for b in beir], dtype=np.int32)
        matrix = feature_matrix(q.query, fused, ranked)
        alone = {s: [(cs.beir_id(cid), score) for cid, score in hits] for s, hits in q.ranked.items()}
        groups.append(
            Group(cs.name, q.query_id, fused, matrix, grades, ranked, q.qrels, q.labels, beir, alone)
        )
    return groups


def held_back(key: str, fraction: float) -> bool:
    """Whether a query is in the held-back split (a stable hash, the same on every run)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def _dataset(groups: Sequence[Group], weights: Mapping[str, float]) -> lgb.Dataset | None:
    use = [g for g in groups if g.grades.any()]  # a query with no answer among its candidates teaches nothing
    if not use:
        return None
    x = np.vstack([g.matrix for g in use])[:, _MODEL_COLUMNS]
    y = np.concatenate([g.grades for g in use])
    sizes = [len(g.grades) for g in use]
    # LambdaRank takes each query's weight from its rows (all alike): small datasets can count more.
    w = np.repeat([weights.get(g.dataset, 1.0) for g in use], sizes)
    return lgb.Dataset(
        x,
        y,
        group=sizes,
        weight=w,
        feature_name=list(MODEL_FEATURES),
        free_raw_data=False,
        params={"feature_pre_filter": False},
    )


@dataclass
class Trained:
    """The chosen booster, its settings and what every option scored on the held-back queries."""

    booster: lgb.Booster
    params: dict[str, Any]
    best_iteration: int
    trials: list[dict[str, Any]]

    def model_text(self) -> str:
        """LightGBM's text format, cut at the best iteration."""
        text: str = self.booster.model_to_string(num_iteration=self.best_iteration)
        return text

    def ranker(self, model_id: str) -> LearnedRanker:
        """This model as the serving code loads it."""
        return LearnedRanker(self.model_text(), {"features": list(MODEL_FEATURES), "model_id": model_id})

    def save(self, out: Path, meta: Mapping[str, Any]) -> None:
        """Write `ranker.txt` and `meta.json` (features, settings, and whatever `meta` adds)."""
        out.mkdir(parents=True, exist_ok=True)
        (out / MODEL_FILE).write_text(self.model_text(), encoding="utf-8")
        full = {
            **meta,
            "features": list(MODEL_FEATURES),
            "params": self.params,
            "best_iteration": self.best_iteration,
            "trials": self.trials,
        }
        (out / META_FILE).write_text(json.dumps(full, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def train(
    train_groups: Sequence[Group],
    valid_groups: Sequence[Group],
    *,
    options: Sequence[Mapping[str, Any]] = PARAM_OPTIONS,
    weights: Mapping[str, float] | None = None,
    threads: int = 2,
) -> Trained:
    """Train each option with early stopping on `valid_groups`; keep the best by nDCG@10 there."""
    weights = weights or {}
    train_set = _dataset(train_groups, weights)
    valid_set = _dataset(valid_groups, weights)
    if train_set is None or valid_set is None:
        raise ValueError("training needs queries with a relevant candidate in both splits")
    valid_set.reference = train_set
    best: Trained | None = None
    best_score = -1.0
    trials = []
    for option in options:
        params = {**BASE_PARAMS, **option, "num_threads": threads}
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=MAX_ROUNDS,
            valid_sets=[valid_set],
            valid_names=["valid"],
            callbacks=[lgb.early_stopping(EARLY_STOP, verbose=False)],
        )
        score = float(booster.best_score["valid"]["ndcg@10"])
        iteration = int(booster.best_iteration or MAX_ROUNDS)
        trials.append({"params": dict(option), "valid_ndcg@10": round(score, 5), "iterations": iteration})
        logger.info("ranker option %s: held-back nDCG@10 %.4f at %d rounds", option, score, iteration)
        if score > best_score:
            best_score, best = score, Trained(booster, dict(option), iteration, [])
    assert best is not None
    best.trials = trials
    return best


def split(groups: Sequence[Group], fraction: float) -> tuple[list[Group], list[Group]]:
    """(training, held-back) by a stable hash of each query."""
    train_part = [g for g in groups if not held_back(g.key, fraction)]
    valid_part = [g for g in groups if held_back(g.key, fraction)]
    return train_part, valid_part


# -- evaluation --------------------------------------------------------------------------------


def runs(groups: Sequence[Group], ranker: LearnedRanker | None, depth: int = 100) -> dict[str, RankedRun]:
    """Runs of learned (when a ranker is given), RRF, BM25 and dense over the groups, by corpus id."""
    out: dict[str, RankedRun] = {"rrf": {}, "bm25": {}, "dense": {}}
    if ranker is not None:
        out["learned"] = {}
    for g in groups:
        out["rrf"][g.query_id] = first_per_document(zip(g.beir_ids, (f.score for f in g.fused), strict=True))[
            :depth
        ]
        for mode, source in (("bm25", "sparse"), ("dense", "dense")):
            out[mode][g.query_id] = first_per_document(g.source_runs.get(source, []))[:depth]
        if ranker is not None:
            scores = ranker.scores(g.matrix)
            order = sorted(range(len(g.fused)), key=lambda i: (-scores[i], i))
            out["learned"][g.query_id] = first_per_document((g.beir_ids[i], float(scores[i])) for i in order)[
                :depth
            ]
    return out


def evaluate(groups: Sequence[Group], ranker: LearnedRanker | None) -> dict[str, Any]:
    """Mean metrics per run, and nDCG@10/Recall@10 per label value (e.g. per query style)."""
    return evaluate_folds([(groups, ranker)])


def evaluate_folds(folds: Sequence[tuple[Sequence[Group], LearnedRanker | None]]) -> dict[str, Any]:
    """One evaluation over several folds' queries, each fold's scored by its own ranker."""
    made: dict[str, RankedRun] = {}
    qrels: dict[str, dict[str, int]] = {}
    labels: dict[str, dict[str, str]] = {}
    for groups, ranker in folds:
        for mode, run in runs(groups, ranker).items():
            made.setdefault(mode, {}).update(run)
        for g in groups:
            qrels[g.query_id], labels[g.query_id] = g.qrels, g.labels
    if not qrels:
        return {}
    evaluations = {m: evaluate_run(qrels, r, METRICS, name=m) for m, r in made.items()}
    result: dict[str, Any] = {"queries": len(qrels), "metrics": {m: e.mean for m, e in evaluations.items()}}
    by_label: dict[str, dict[str, Any]] = {}
    for label_field in sorted({k for lab in labels.values() for k in lab}):
        members: dict[str, list[str]] = {}
        for query_id, lab in labels.items():
            members.setdefault(lab.get(label_field, "(none)"), []).append(query_id)
        by_label[label_field] = {
            value: {
                "queries": len(ids),
                **{m: e.group_means({value: ids})[value] for m, e in evaluations.items()},
            }
            for value, ids in sorted(members.items())
        }
    result["by_label"] = by_label
    result["per_query"] = {m: e.per_query for m, e in evaluations.items()}
    return result


def union_recall(groups: Sequence[Group]) -> dict[str, float]:
    """Share of relevant documents among the candidates, and the mean number of candidates."""
    found = total = 0
    for g in groups:
        relevant = {d for d, grade in g.qrels.items() if grade > 0}
        found += len(relevant & set(g.beir_ids))
        total += len(relevant)
    return {
        "recall": found / total if total else 0.0,
        "mean_candidates": float(np.mean([len(g.fused) for g in groups])) if groups else 0.0,
    }


def gain_importance(trained: Trained) -> list[tuple[str, float]]:
    """Features by total split gain (share of the whole), largest first."""
    gains = trained.booster.feature_importance("gain", iteration=trained.best_iteration)
    total = float(gains.sum()) or 1.0
    pairs = sorted(zip(MODEL_FEATURES, (float(g) / total for g in gains), strict=True), key=lambda p: -p[1])
    return pairs
