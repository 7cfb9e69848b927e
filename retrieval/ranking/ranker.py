"""The learned ranking stage: a LightGBM LambdaRank model over `features.FEATURES`.

A ranker is a folder holding `ranker.txt` (LightGBM's text model format) and `meta.json` (the
feature names in column order and the encoder model id whose dense scores it was trained on).
Its `digest` (sha256 of the model text) goes into the cache key, so answers of another model are
never served from the cache.

Scoring a query's candidates is one `Booster.predict(pred_leaf=True)` on a (candidates x
features) matrix on one thread: each row's leaf per tree. Its score is the sum of those leaves'
values, and its per-feature contributions (path attributions, `attribution.PathAttribution`:
they sum to the score like SHAP values, at a tenth of TreeSHAP's cost) a gather from the same
leaves, done only for the page.

A query that is exactly a candidate's title or alias (after folding, spaces and punctuation
aside: 顧長庚 is 顾长庚, `features.name_typed`) names that entry, and a writer who types a name
expects its entry first. The model does not learn that reliably (few of its training queries
are names: CMRC and DRCD ask questions; in the fixture world the entry of a twin brother,
顾长安, outscored 顾长庚's own for "顾长庚"), so such candidates are lifted above all others by
the smallest margin that does it (`exact_lift`); the lift is listed in the explanation as
`exact_name`, so the contributions still sum to the score. Among themselves the model orders
them. A quote is treated alike: a query of 8 letters or more that a candidate's text holds whole
(punctuation and spaces aside, `features.quote_verbatim`) lifts that candidate, listed as
`exact_quote`, so exact-span evidence wins over fuzzy similarity; unless the query is some
candidate's name, which then alone is lifted.
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
from retrieval.ranking.attribution import PathAttribution
from retrieval.ranking.features import FEATURES, RankingInput, columns, feature_matrix
from retrieval.types import FusedHit, StoredHit

MODEL_FILE = "ranker.txt"
META_FILE = "meta.json"
TOP_CONTRIBUTIONS = 5
"""How many of a hit's largest feature contributions its explanation lists."""
EXACT_NAME = "exact_name"
"""The explanation's key for the lift of a candidate whose title or alias is the query."""
EXACT_QUOTE = "exact_quote"
"""The explanation's key for the lift of a candidate whose text holds the whole query."""
LIFT_MARGIN = 1.0
"""How far (in model-score units) a lifted candidate ends above the best of the others."""
_NAME_TYPED = FEATURES.index("name_typed")
_QUOTE_VERBATIM = FEATURES.index("quote_verbatim")


def exact_matches(matrix: np.ndarray) -> np.ndarray:
    """Per candidate: its title or alias is the query; or, when no candidate's is, its text holds
    the whole (long) query. A query that names an entry is not read as a quote ("第十二章 雪夜渡江"
    is a chapter's title, and other entries that cite the chapter hold it whole too)."""
    if not len(matrix):
        return np.zeros(0, dtype=bool)
    named: np.ndarray = matrix[:, _NAME_TYPED] > 0
    if named.any():
        return named
    quoted: np.ndarray = matrix[:, _QUOTE_VERBATIM] > 0
    return quoted


def exact_lift(matrix: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per candidate, what to add to its score so every exact match outranks the rest."""
    exact = exact_matches(matrix)
    if not exact.any() or exact.all():
        return np.zeros(len(scores))
    lift = max(0.0, float(scores[~exact].max() - scores[exact].min()) + LIFT_MARGIN)
    return np.where(exact, lift, 0.0)


@dataclass(frozen=True)
class Ranked:
    """A query's candidates and the ranker's order of them (raw model scores)."""

    fused: Sequence[FusedHit]
    order: np.ndarray
    """Indexes into `fused`, best first (ties: the fused order, which is deterministic)."""
    scores: np.ndarray
    """The model's scores plus each candidate's exact-match lift."""
    leaves: np.ndarray
    """(candidates, trees): each row's leaf per tree, in `fused` order (for the page's contributions)."""
    lift: np.ndarray
    """Per candidate, its exact-match lift (0 for most)."""
    lift_key: str
    """What the query's lifts are for (`EXACT_NAME` or `EXACT_QUOTE`), as explanations name them."""

    @property
    def hits(self) -> list[FusedHit]:
        """Every candidate in the ranker's order, scored by it (no contributions)."""
        return [replace(self.fused[i], score=float(self.scores[i])) for i in self.order.tolist()]


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
        self._paths = PathAttribution(self._booster.dump_model())
        # Columns of the full feature matrix the model reads, in its order.
        self._columns = columns(self.features)

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
        """Served scores for one query's full feature rows (`features.feature_matrix`): the model's,
        exact matches lifted."""
        _, scores, _ = self._scored(matrix)
        return scores

    def _scored(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(leaves, served scores, lifts) of full feature rows."""
        leaves = self._leaves(matrix)
        model = self._paths.scores(leaves)
        lift = exact_lift(matrix, model)
        return leaves, model + lift, lift

    def _leaves(self, matrix: np.ndarray) -> np.ndarray:
        """(rows, trees) leaf indexes of full feature rows."""
        if not len(matrix):
            return np.zeros((0, len(self._paths.leaf_values)), dtype=np.intp)
        leaves = self._booster.predict(matrix[:, self._columns], num_threads=1, pred_leaf=True)
        return np.asarray(leaves, dtype=np.intp).reshape(len(matrix), -1)

    def rank(
        self, query: RankingInput, fused: Sequence[FusedHit], ranked: Mapping[str, Sequence[StoredHit]]
    ) -> Ranked:
        """The candidates ordered by the model (ties: the fused order, which is deterministic)."""
        matrix = feature_matrix(query, fused, ranked)
        leaves, scores, lift = self._scored(matrix)
        order = np.argsort(-scores, kind="stable")  # stable: equal scores keep the fused order
        # A query that names a candidate is never read as a quote (`exact_matches`).
        key = EXACT_NAME if len(matrix) and matrix[:, _NAME_TYPED].any() else EXACT_QUOTE
        return Ranked(fused, order, scores, leaves, lift, key)

    def explain(self, ranked: Ranked, start: int, stop: int) -> list[FusedHit]:
        """Hits [start, stop) in the ranker's order, with its score and largest feature contributions."""
        chosen = ranked.order[start:stop]
        if not len(chosen):
            return []
        contrib = self._paths.contributions(ranked.leaves[chosen])
        out = []
        for i, values in zip(chosen.tolist(), contrib, strict=True):
            per_feature = values[:-1]  # the last column is the model's bias
            top = np.argsort(-np.abs(per_feature))[:TOP_CONTRIBUTIONS]
            contributions = {self.features[j]: round(float(per_feature[j]), 4) for j in top}
            contributions["bias"] = round(float(values[-1]), 4)
            if ranked.lift[i] > 0:
                contributions[ranked.lift_key] = round(float(ranked.lift[i]), 4)
            out.append(replace(ranked.fused[i], score=float(ranked.scores[i]), contributions=contributions))
        return out
