"""Ranked runs, their evaluation with ranx, TREC run files and latency percentiles.

A run is kept as `RankedRun`: for each query the documents best first, with the engine's score.
ranx re-sorts documents by score, and fused RRF scores tie often (a document first in one list
scores exactly what another document first in the other list scores), so ranx is handed
rank-derived scores instead: the engine's order, which already breaks ties deterministically,
is exactly what gets measured.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.beir import Qrels

METRICS: tuple[str, ...] = ("recall@10", "ndcg@10", "mrr@10", "recall@100")
"""What every quality run reports (ranx metric names)."""

STAT_TESTS: dict[str, str] = {
    "student": "two-sided paired Student's t-test",
    "fisher": "Fisher's randomisation test",
    "tukey": "Tukey's HSD test",
}
"""ranx.compare's test names, spelled out for reports."""

RankedRun = dict[str, list[tuple[str, float]]]
"""query id -> [(document id, engine score)], best first."""


def first_per_document(ranked: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """Collapse chunk hits to documents: a document keeps its first (best) rank and that score."""
    seen: set[str] = set()
    docs: list[tuple[str, float]] = []
    for doc_id, score in ranked:
        if doc_id not in seen:
            seen.add(doc_id)
            docs.append((doc_id, score))
    return docs


def relevant_only(qrels: Mapping[str, Mapping[str, int]]) -> Qrels:
    """Queries with at least one positive judgement (others cannot be scored by recall or MRR)."""
    return {q: dict(judged) for q, judged in qrels.items() if any(score > 0 for score in judged.values())}


def _ranx_qrels(qrels: Mapping[str, Mapping[str, int]]) -> Any:
    from ranx import Qrels as RanxQrels

    return RanxQrels(
        {q: {d: int(s) for d, s in judged.items()} for q, judged in relevant_only(qrels).items()}
    )


def _ranx_run(run: Mapping[str, Sequence[tuple[str, float]]], name: str) -> Any:
    from ranx import Run as RanxRun

    # Rank-derived scores: see the module docstring. Queries without results are left out and
    # added back empty by make_comparable.
    data = {
        q: {doc_id: float(len(docs) - i) for i, (doc_id, _) in enumerate(first_per_document(docs))}
        for q, docs in run.items()
        if docs
    }
    return RanxRun(data, name=name)


@dataclass(frozen=True)
class Evaluation:
    """Mean and per-query scores of one run."""

    mean: dict[str, float]
    per_query: dict[str, dict[str, float]]
    """metric -> query id -> score, for every judged query (0 when the run missed it)."""

    def group_means(self, groups: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
        """Mean of each metric over each group of query ids (e.g. per intent)."""
        judged = set(next(iter(self.per_query.values()), {}))
        out: dict[str, dict[str, float]] = {}
        for group, ids in groups.items():
            scored = [q for q in ids if q in judged]
            if scored:
                out[group] = {
                    metric: sum(values[q] for q in scored) / len(scored)
                    for metric, values in self.per_query.items()
                }
        return out


def evaluate_run(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Sequence[tuple[str, float]]],
    metrics: Sequence[str] = METRICS,
    name: str = "run",
) -> Evaluation:
    """Score a run against qrels with ranx; queries the run lacks score 0, unjudged ones are ignored."""
    from ranx import evaluate

    judged = relevant_only(qrels)
    if not judged:
        raise ValueError("no query has a relevant document; nothing to evaluate")
    if not any(run.get(q) for q in judged):
        # ranx cannot hold a run without a single result; every judged query scores 0 then.
        zeros = {m: {q: 0.0 for q in judged} for m in metrics}
        return Evaluation({m: 0.0 for m in metrics}, zeros)
    ranx_qrels = _ranx_qrels(judged)
    aligned = _ranx_run(run, name).make_comparable(ranx_qrels)
    # evaluate() keeps the per-query scores in aligned.scores (save_results_in_run).
    means = evaluate(ranx_qrels, aligned, list(metrics))
    if not isinstance(means, Mapping):
        means = {metrics[0]: float(means)}
    per_query = {m: {str(q): float(v) for q, v in aligned.scores[m].items()} for m in metrics}
    return Evaluation({m: float(means[m]) for m in metrics}, per_query)


@dataclass(frozen=True)
class Comparison:
    """ranx.compare's outcome: the printable table and its data (p-values, win/tie/loss)."""

    table: str
    data: dict[str, Any]
    stat_test: str
    max_p: float


def _plain(value: Any) -> Any:
    """numpy scalars and nested containers to JSON-ready Python values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None  # strict JSON has no NaN (ranx gives it for a t-test between identical scores)
    return value


def compare_runs(
    qrels: Mapping[str, Mapping[str, int]],
    runs: Mapping[str, Mapping[str, Sequence[tuple[str, float]]]],
    metrics: Sequence[str] = METRICS,
    *,
    max_p: float = 0.05,
    stat_test: str = "student",
) -> Comparison:
    """Paired significance tests between runs (two-sided paired t-test by default)."""
    from ranx import compare

    if len(runs) < 2:
        raise ValueError("comparing needs at least two runs")
    report = compare(
        _ranx_qrels(qrels),
        [_ranx_run(run, name) for name, run in runs.items()],
        list(metrics),
        stat_test=stat_test,
        max_p=max_p,
        make_comparable=True,
        rounding_digits=4,
    )
    return Comparison(report.to_table(), _plain(report.to_dict()), stat_test, max_p)


def write_trec(
    path: Path, run: Mapping[str, Sequence[tuple[str, float]]], tag: str, depth: int = 100
) -> None:
    """Write `qid Q0 docid rank score tag` lines, at most `depth` documents per query.

    The score column is the engine's score; the rank column is authoritative (trec_eval would
    re-sort tied scores by document id).
    """
    if any(ch.isspace() for ch in tag) or not tag:
        raise ValueError(f"run tag must be one word, not {tag!r}")
    lines: list[str] = []
    for query_id, docs in run.items():
        for rank, (doc_id, score) in enumerate(first_per_document(docs)[:depth], start=1):
            if any(ch.isspace() for ch in doc_id) or any(ch.isspace() for ch in query_id):
                raise ValueError(f"ids in a TREC run cannot hold whitespace: {query_id!r} {doc_id!r}")
            lines.append(f"{query_id} Q0 {doc_id} {rank} {score:.6f} {tag}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")


def read_trec(path: Path) -> RankedRun:
    """Read a TREC run file back, ordered by its rank column."""
    rows: dict[str, list[tuple[int, str, float]]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 6:
            raise ValueError(f"{path}:{number}: expected 6 columns, got {len(parts)}")
        query_id, _, doc_id, rank, score, _ = parts
        rows.setdefault(query_id, []).append((int(rank), doc_id, float(score)))
    return {q: [(d, s) for _, d, s in sorted(entries)] for q, entries in rows.items()}


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; floats get 4 decimals."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return "nan" if math.isnan(value) else f"{value:.4f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines.extend("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)
    return "\n".join(lines) + "\n"
