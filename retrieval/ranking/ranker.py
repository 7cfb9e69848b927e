"""The learned ranking stage: a LightGBM LambdaRank model over `features.FEATURES`.

A ranker is a folder holding `ranker.txt` (LightGBM's text model format) and `meta.json` (the
feature names in column order and the encoder model id whose dense scores it was trained on).
Its `digest` (sha256 of the model text) goes into the cache key, so answers of another model are
never served from the cache.

Scoring a query's candidates is one `Booster.predict` on a (candidates x features) matrix on one
thread; per-feature contributions (`pred_contrib=True`) are computed only for the page returned.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from retrieval.errors import ModelMismatch
from retrieval.ranking.features import FEATURES, RankingInput, feature_matrix
from retrieval.types import FusedHit, StoredHit

MODEL_FILE = "ranker.txt"
META_FILE = "meta.json"
TOP_CONTRIBUTIONS = 5
"""How many of a hit's largest feature contributions its explanation lists."""


@dataclass(frozen=True)
class Ranked:
    """A query's candidates in the ranker's order; `scores` are the model's raw outputs."""

    hits: list[FusedHit]
    matrix: np.ndarray
    """Feature rows in `hits` order (kept for the page's contributions)."""


class LearnedRanker:
    """A trained LambdaRank model and the feature layout it expects."""

    def __init__(self, model_text: str, meta: Mapping[str, Any]):
        self.meta = dict(meta)
        self.features: tuple[str, ...] = tuple(meta.get("features", ()))
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise ModelMismatch(f"ranker uses features this code does not compute: {unknown}")
        self.model_id: str = str(meta.get("model_id", ""))
        self.digest = hashlib.sha256(model_text.encode()).hexdigest()
        self._booster = lgb.Booster(model_str=model_text)
        if self._booster.num_feature() != len(self.features):
            raise ModelMismatch(
                f"ranker has {self._booster.num_feature()} features, meta lists {len(self.features)}"
            )
        # Columns of the full feature matrix the model reads, in its order.
        self._columns = np.array([FEATURES.index(f) for f in self.features], dtype=np.intp)

    @classmethod
    def load(cls, folder: Path) -> LearnedRanker:
        """Read a ranker folder (`ModelMismatch` if it is not one this code can serve)."""
        try:
            text = (folder / MODEL_FILE).read_text(encoding="utf-8")
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelMismatch(f"no readable ranker in {folder}: {exc}") from exc
        return cls(text, meta)

    def describe(self) -> dict[str, Any]:
        """What /v1/ready reports about the ranker."""
        return {
            "model_id": self.model_id,
            "digest": self.digest[:16],
            "features": len(self.features),
            "trained_on": self.meta.get("datasets", []),
        }

    def scores(self, matrix: np.ndarray) -> np.ndarray:
        """Raw model scores for full feature rows (`features.feature_matrix`)."""
        if not len(matrix):
            return np.zeros(0)
        return np.asarray(self._booster.predict(matrix[:, self._columns], num_threads=1))

    def rank(
        self, query: RankingInput, fused: Sequence[FusedHit], ranked: Mapping[str, Sequence[StoredHit]]
    ) -> Ranked:
        """The candidates ordered by the model (ties: the fused order, which is deterministic)."""
        matrix = feature_matrix(query, fused, ranked)
        scores = self.scores(matrix)
        order = sorted(range(len(fused)), key=lambda i: (-scores[i], i))
        hits = [replace(fused[i], score=float(scores[i])) for i in order]
        return Ranked(hits, matrix[order])

    def explain(self, ranked: Ranked, start: int, stop: int) -> list[FusedHit]:
        """Hits [start, stop) with their largest feature contributions (by absolute value)."""
        page = ranked.hits[start:stop]
        if not page:
            return []
        rows = ranked.matrix[start:stop][:, self._columns]
        contrib = np.asarray(self._booster.predict(rows, num_threads=1, pred_contrib=True))
        out = []
        for hit, values in zip(page, contrib, strict=True):
            per_feature = values[:-1]  # the last column is the model's bias
            top = np.argsort(-np.abs(per_feature))[:TOP_CONTRIBUTIONS]
            contributions = {self.features[i]: round(float(per_feature[i]), 4) for i in top}
            contributions["bias"] = round(float(values[-1]), 4)
            out.append(replace(hit, contributions=contributions))
        return out
