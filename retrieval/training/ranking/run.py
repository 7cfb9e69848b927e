"""What `search-api rank train|cv|depth` do: candidate sets in, a ranker and a report out.

train   every --dataset's queries, minus a held-back share (by query) for choosing the
        settings; writes ranker.txt, meta.json and report.md/json into --out.
cv      honest figures: each --dataset is scored by a model that never saw its queries
        (k-fold by query for the --by-query datasets, the other datasets left out for the
        rest), each --eval dataset by the model trained on all --dataset sets.
depth   Recall@100 of the candidate union and its size for each per-retriever depth N.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.metrics import markdown_table
from retrieval.settings import PROJECT_ROOT
from retrieval.training.ranking.candidates import CandidateSet
from retrieval.training.ranking.train import (
    PARAM_OPTIONS,
    Group,
    Trained,
    build_groups,
    evaluate,
    evaluate_folds,
    gain_importance,
    split,
    train,
    union_recall,
)

MODES = ("learned", "rrf", "bm25", "dense")
HEADLINE = ("ndcg@10", "recall@10", "mrr@10", "recall@100")


@dataclass(frozen=True)
class TrainOptions:
    """How a ranker is trained."""

    holdout: float = 0.15
    """Share of queries held back (by a hash of the query) to choose settings and stop early."""
    weights: Mapping[str, float] | None = None
    """Per-dataset query weight (default 1)."""
    threads: int = 2
    params: Sequence[Mapping[str, Any]] = PARAM_OPTIONS
    """LightGBM settings tried (the best on the held-back share is kept)."""


def _commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def fit(groups: Sequence[Group], options: TrainOptions) -> Trained:
    """Train on `groups` minus their held-back share, choosing settings on that share."""
    train_part, valid_part = split(groups, options.holdout)
    return train(
        train_part, valid_part, options=options.params, weights=options.weights, threads=options.threads
    )


def _table(figures: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for name, result in figures.items():
        for mode in MODES:
            if mode in result.get("metrics", {}):
                rows.append([name, mode, *(result["metrics"][mode][m] for m in HEADLINE)])
    return markdown_table(["dataset", "ranking", *HEADLINE], rows)


def _style_table(result: Mapping[str, Any], label: str = "style") -> str:
    groups = result.get("by_label", {}).get(label)
    if not groups:
        return ""
    modes = [m for m in MODES if m in result["metrics"]]
    rows = [[value, g["queries"], *(g[m]["ndcg@10"] for m in modes)] for value, g in groups.items()]
    return markdown_table([label, "queries", *(f"{m} nDCG@10" for m in modes)], rows)


def _strip(result: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "per_query"}


def train_command(
    sets: Sequence[CandidateSet], out: Path, options: TrainOptions, command: str, log: Callable[[str], None]
) -> dict[str, Any]:
    """Train on every set, write the ranker and its report; returns the report."""
    model_ids = {s.model_id for s in sets}
    if len(model_ids) != 1:
        raise ValueError(f"candidate sets come from different encoders: {sorted(model_ids)}")
    by_set = {s.name: build_groups(s) for s in sets}
    groups = [g for gs in by_set.values() for g in gs]
    trained = fit(groups, options)
    model_id = model_ids.pop()
    ranker = trained.ranker(model_id)
    figures = {}
    for name, gs in by_set.items():
        _, valid = split(gs, options.holdout)
        figures[f"{name} (held back, {len(valid)} q)"] = _strip(evaluate(valid, ranker))
    importance = gain_importance(trained)
    meta = {
        "model_id": model_id,
        "datasets": [
            {"name": s.name, "queries": len(s.queries), "corpus": len(s.hits), "path": str(s.dataset.root)}
            for s in sets
        ],
        "holdout": options.holdout,
        "weights": dict(options.weights or {}),
        "commit": _commit(),
        "command": command,
    }
    trained.save(out, meta)
    report = {
        **meta,
        "params": trained.params,
        "trials": trained.trials,
        "figures": figures,
        "gain_importance": importance,
    }
    lines = [
        f"# Ranker for `{model_id}`",
        "",
        f"Trained on {', '.join(s.name for s in sets)}; {options.holdout:.0%} of each set's queries "
        "held back (by a hash of the query) for choosing settings and early stopping. Figures below are on "
        "those held-back queries only.",
        "",
        _table(figures),
        "## Settings tried (held-back nDCG@10)",
        "",
        markdown_table(
            ["settings", "nDCG@10", "rounds"],
            [[json.dumps(t["params"]), t["valid_ndcg@10"], t["iterations"]] for t in trained.trials],
        ),
        "## Feature importance (share of total split gain)",
        "",
        markdown_table(["feature", "gain share"], [[f, g] for f, g in importance]),
        f"Command: `{command}` at commit `{meta['commit']}`.",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    (out / "report.json").write_text(
        json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    log(_table(figures))
    return report


def cv_command(
    sets: Sequence[CandidateSet],
    eval_sets: Sequence[CandidateSet],
    by_query: Sequence[str],
    folds: int,
    out: Path,
    options: TrainOptions,
    command: str,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Figures from models that never saw the queries they score (see the module docstring)."""
    by_set = {s.name: build_groups(s) for s in sets}
    model_id = sets[0].model_id
    figures: dict[str, dict[str, Any]] = {}
    how: dict[str, str] = {}
    for name, gs in by_set.items():
        others = [g for other, ogs in by_set.items() if other != name for g in ogs]
        if name in by_query:
            per_fold = []
            for k in range(folds):
                test = [g for i, g in enumerate(sorted(gs, key=lambda g: g.key)) if i % folds == k]
                test_keys = {g.key for g in test}
                rest = [g for g in gs if g.key not in test_keys]
                trained = fit([*others, *rest], options)
                per_fold.append((test, trained.ranker(model_id)))
                log(f"{name} fold {k + 1}/{folds} trained")
            figures[name] = _strip(evaluate_folds(per_fold))
            rest_names = ", ".join(o for o in by_set if o != name)
            how[name] = f"{folds}-fold cross-validation by query (other folds + {rest_names})"
        else:
            trained = fit(others, options)
            figures[name] = _strip(evaluate(gs, trained.ranker(model_id)))
            how[name] = f"model trained without it (on {', '.join(o for o in by_set if o != name)})"
            trained.save(
                out / "models" / f"without-{name}",
                {"model_id": model_id, "command": command, "commit": _commit(), "without": name},
            )
        log(f"{name}: {how[name]}")
    if eval_sets:
        trained = fit([g for gs in by_set.values() for g in gs], options)
        trained.save(out / "models" / "all", {"model_id": model_id, "command": command, "commit": _commit()})
        for s in eval_sets:
            figures[s.name] = _strip(evaluate(build_groups(s), trained.ranker(model_id)))
            how[s.name] = f"never trained on; model trained on {', '.join(by_set)}"
    lines = [f"# Ranker cross-validation, `{model_id}`", "", _table(figures)]
    lines += [f"- **{name}**: {text}" for name, text in how.items()]
    for name, result in figures.items():
        styles = _style_table(result)
        if styles:
            lines += ["", f"## {name} by style", "", styles]
    lines += ["", f"Command: `{command}` at commit `{_commit()}`.", ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "cv.md").write_text("\n".join(lines), encoding="utf-8")
    (out / "cv.json").write_text(
        json.dumps(
            {"model_id": model_id, "figures": figures, "how": how, "command": command},
            ensure_ascii=False,
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    log("\n".join(lines))
    return figures


def depth_command(sets: Sequence[CandidateSet], depths: Sequence[int], log: Callable[[str], None]) -> str:
    """Recall of the candidate union (dense top-N + sparse top-N) and its size, per N and dataset."""
    rows = []
    for s in sets:
        for n in depths:
            figures = union_recall(build_groups(s, per_source=n))
            rows.append([s.name, n, figures["recall"], figures["mean_candidates"]])
    table = markdown_table(["dataset", "N per retriever", "union recall", "mean candidates"], rows)
    log(table)
    return table


def command_line() -> str:
    """The command as typed (for provenance)."""
    return " ".join(["uv run search-api", *sys.argv[1:]])
