"""One report over several run folders: markdown, JSON and PNG plots.

A run folder may hold any of:

* ``results.json`` (+ ``latencies.json``) from `search-eval quality`: metrics per mode, and the
  engine-side latency of every query;
* ``latency.json`` (+ ``latency_raw.json``) from `search-eval latency`: client-side latency;
* ``confusion.json``: an intent confusion matrix (format in `eval.confusion`).

Plots: ``metrics.png`` (grouped bars of every metric per run and mode), ``latency.png``
(histogram and CDF of every latency distribution found), ``confusion-<run>.png`` per matrix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.bench.stats import latency_summary
from eval.confusion import CONFUSION_FILE, ConfusionMatrix
from eval.latency import LATENCY_FILE, RAW_FILE
from eval.metrics import METRICS, STAT_TESTS, markdown_table

METRIC_LABELS = {
    "recall@10": "Recall@10",
    "ndcg@10": "nDCG@10",
    "mrr@10": "MRR@10",
    "recall@100": "Recall@100",
}


@dataclass
class RunFolder:
    """What one run folder holds."""

    name: str
    path: Path
    quality: dict[str, Any] | None = None
    engine_latencies: dict[str, list[float]] = field(default_factory=dict)
    """mode -> per-query took_ms from a quality run."""
    load: dict[str, Any] | None = None
    load_latencies: list[float] = field(default_factory=list)
    confusion: ConfusionMatrix | None = None


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read_run_folder(path: Path, name: str | None = None) -> RunFolder:
    """Load whatever results a folder holds; ValueError when it holds none."""
    if not path.is_dir():
        raise ValueError(f"run folder {path} does not exist")
    run = RunFolder(name or path.name, path)
    if (path / "results.json").is_file():
        run.quality = _json(path / "results.json")
        if (path / "latencies.json").is_file():
            took = _json(path / "latencies.json").get("took_ms", {})
            run.engine_latencies = {str(m): [float(v) for v in values] for m, values in took.items()}
    if (path / LATENCY_FILE).is_file():
        run.load = _json(path / LATENCY_FILE)
        if (path / RAW_FILE).is_file():
            raw = _json(path / RAW_FILE)
            fields = raw["fields"]
            at, status = fields.index("latency_ms"), fields.index("status")
            run.load_latencies = [float(s[at]) for s in raw["samples"] if s[status] == 200]
    if (path / CONFUSION_FILE).is_file():
        run.confusion = ConfusionMatrix.load(path / CONFUSION_FILE)
    if run.quality is None and run.load is None and run.confusion is None:
        raise ValueError(f"{path} holds no results.json, {LATENCY_FILE} or {CONFUSION_FILE}")
    return run


def _unique_names(paths: Sequence[Path]) -> list[str]:
    names = [p.name for p in paths]
    # Two folders called "out" in different places: qualify them with their parent.
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(runs: Sequence[RunFolder], path: Path) -> bool:
    """Grouped bars: one group per metric, one bar per (run, mode). False when nothing to plot."""
    series = [
        (f"{r.name}:{mode}" if len(runs) > 1 else mode, values)
        for r in runs
        if r.quality
        for mode, values in r.quality["metrics"].items()
    ]
    if not series:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(min(14.0, max(7.0, 1.2 + 0.2 * len(series) * len(METRICS))), 5.0))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        xs = [m + (i - (len(series) - 1) / 2) * width for m in range(len(METRICS))]
        bars = ax.bar(xs, [values[m] for m in METRICS], width, label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, rotation=90, padding=2)
    ax.set_xticks(range(len(METRICS)), [METRIC_LABELS[m] for m in METRICS])
    # Scores often sit close to 1; a zoomed axis shows the differences, and the title says so.
    lowest = min(values[m] for _, values in series for m in METRICS)
    floor = max(0.0, math.floor((lowest - 0.05) * 10) / 10)
    ax.set_ylim(floor, 1.0 + (1.0 - floor) * 0.12)
    ax.set_ylabel("score")
    ax.set_title("Retrieval quality by mode" + (f" (axis starts at {floor:.1f})" if floor > 0 else ""))
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(len(series), 4))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def latency_series(runs: Sequence[RunFolder]) -> list[tuple[str, list[float]]]:
    """Every latency distribution: client-side load runs and engine-side quality runs."""
    series: list[tuple[str, list[float]]] = []
    for r in runs:
        if r.load_latencies:
            mode = (r.load or {}).get("config", {}).get("mode", "")
            series.append((f"{r.name} HTTP {mode}".strip(), r.load_latencies))
        series.extend(
            (f"{r.name} engine {mode}", values) for mode, values in r.engine_latencies.items() if values
        )
    return series


def plot_latency(runs: Sequence[RunFolder], path: Path) -> bool:
    """Histogram (log-spaced bins) and CDF of each latency distribution. False when none."""
    series = latency_series(runs)
    if not series:
        return False
    plt = _plt()
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(12, 4.5))
    low = max(min(min(v) for _, v in series), 0.01)
    high = max(max(v) for _, v in series)
    steps = 40
    ratio = (high / low) ** (1 / steps) if high > low else 2.0
    bins = [low * ratio**i for i in range(steps + 1)]
    # tab10 repeats after ten series; tab20 keeps each one distinct.
    colours = plt.get_cmap("tab10" if len(series) <= 10 else "tab20").colors
    for i, (label, values) in enumerate(series):
        colour = colours[i % len(colours)]
        # Normalised per series: runs of different sizes stay comparable.
        weights = [1 / len(values)] * len(values)
        hist.hist(values, bins=bins, weights=weights, histtype="step", label=label, color=colour)
        ordered = sorted(values)
        cdf.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label, color=colour)
    for ax in (hist, cdf):
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
    hist.set_ylabel("share of requests")
    hist.set_title("Latency histogram")
    cdf.set_ylabel("share of requests at or below")
    cdf.axhline(0.95, color="grey", linewidth=0.8, linestyle="--")
    cdf.set_title("Latency CDF (dashed: P95)")
    cdf.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_confusion(matrix: ConfusionMatrix, path: Path, title: str) -> None:
    """Heat map with counts in the cells."""
    plt = _plt()
    n = len(matrix.labels)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * n + 2), max(3.5, 0.6 * n + 2)))
    image = ax.imshow(matrix.matrix, cmap="Blues")
    peak = max((v for row in matrix.matrix for v in row), default=0)
    for i, row in enumerate(matrix.matrix):
        for j, value in enumerate(row):
            ax.text(
                j,
                i,
                str(value),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if peak and value > peak / 2 else "black",
            )
    ax.set_xticks(range(n), matrix.labels, rotation=45, ha="right")
    ax.set_yticks(range(n), matrix.labels)
    ax.set_xlabel(matrix.columns)
    ax.set_ylabel(matrix.rows)
    ax.set_title(f"{title} (accuracy {matrix.accuracy:.1%})" if not math.isnan(matrix.accuracy) else title)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_report(run_dirs: Sequence[Path], out: Path) -> dict[str, Any]:
    """Read every run folder, write report.md, report.json and the plots into `out`."""
    if not run_dirs:
        raise ValueError("no run folder given")
    runs = [read_run_folder(p, n) for p, n in zip(run_dirs, _unique_names(run_dirs), strict=True)]
    out.mkdir(parents=True, exist_ok=True)
    figures: list[str] = []
    if plot_metrics(runs, out / "metrics.png"):
        figures.append("metrics.png")
    if plot_latency(runs, out / "latency.png"):
        figures.append("latency.png")
    for r in runs:
        if r.confusion is not None:
            name = "confusion-" + r.name.replace("/", "-") + ".png"
            plot_confusion(r.confusion, out / name, f"Intent routing: {r.name}")
            figures.append(name)

    quality_rows = [
        [r.name, r.quality["dataset"]["name"], mode, *(values[m] for m in METRICS)]
        for r in runs
        if r.quality
        for mode, values in r.quality["metrics"].items()
    ]
    latency_rows = []
    for label, values in latency_series(runs):
        s = latency_summary(values)
        latency_rows.append([label, s["count"], s["p50_ms"], s["p95_ms"], s["p99_ms"]])
    load_rows = [
        [
            r.name,
            r.load["config"]["mode"],
            r.load["config"]["concurrency"],
            r.load["requests"],
            r.load["qps"],
            r.load["error_rate"],
            r.load["latency_ms"]["cached"].get("count", 0),
            r.load["latency_ms"]["all"].get("p95_ms", float("nan")),
            r.load["budget_ms"],
            "PASS" if r.load["passed"] else "FAIL",
        ]
        for r in runs
        if r.load
    ]
    lines = ["# Evaluation report", ""]
    if quality_rows:
        lines += [
            "## Quality",
            "",
            markdown_table(["run", "dataset", "mode", *(METRIC_LABELS[m] for m in METRICS)], quality_rows),
        ]
        for r in runs:
            comparison = r.quality.get("comparison") if r.quality else None
            if comparison:
                test = STAT_TESTS.get(comparison["stat_test"], comparison["stat_test"])
                lines += [
                    f"Significance in {r.name} ({test}, p < {comparison['max_p']}):",
                    "",
                    "```",
                    comparison["table"],
                    "```",
                    "",
                ]
    if load_rows:
        header = [
            "run",
            "mode",
            "concurrency",
            "requests",
            "QPS",
            "error rate",
            "cached",
            "P95 ms",
            "budget ms",
            "verdict",
        ]
        lines += ["## Load (HTTP)", "", markdown_table(header, load_rows)]
    if latency_rows:
        lines += [
            "## Latency distributions",
            "",
            markdown_table(["series", "count", "P50 ms", "P95 ms", "P99 ms"], latency_rows),
        ]
    for r in runs:
        if r.confusion is not None:
            cm = r.confusion
            lines += [
                f"## Intent confusion: {r.name}",
                "",
                f"accuracy {cm.accuracy:.3f}",
                "",
                markdown_table(
                    [f"{cm.rows} \\ {cm.columns}", *cm.labels],
                    [[label, *row] for label, row in zip(cm.labels, cm.matrix, strict=True)],
                ),
            ]
    lines += ["## Figures", "", *(f"![{f}]({f})" for f in figures), ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    data = {
        "runs": [
            {
                "name": r.name,
                "path": str(r.path),
                "quality": None
                if r.quality is None
                else {
                    "dataset": r.quality["dataset"]["name"],
                    "metrics": r.quality["metrics"],
                    "latency_ms": r.quality["latency_ms"],
                    "config": r.quality["config"],
                    "provenance": r.quality["provenance"],
                },
                "load": r.load,
                "confusion": None if r.confusion is None else r.confusion.to_json(),
            }
            for r in runs
        ],
        "figures": figures,
    }
    (out / "report.json").write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return data
