"""Retrieval quality of the engine on a BEIR dataset: ingest once, search every query per mode, score.

Each corpus entry is ingested as one chunk (`chunk=False`), so the ids the engine returns are the
ids the qrels judge. The collection is named after a fingerprint of the corpus, the model and
every setting that shapes what is stored (jieba mode, lexicon, BM25 parameters), so a rerun with
the same inputs finds it complete and skips ingestion, and a change gets a fresh collection.

Collections live in their own Milvus Lite file (``<data_dir>/eval/milvus.db``) so a quality run
never contends for the file lock of an API serving ``<data_dir>/milvus.db``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import platform
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from eval.beir import BeirDataset, CorpusDoc, DatasetError, corpus_digest, dataset_digest, load_beir
from eval.bench.stats import latency_summary
from eval.confusion import CONFUSION_FILE, ConfusionMatrix
from eval.converters import REPORT_FILE as CONVERSION_FILE
from eval.metrics import (
    METRICS,
    STAT_TESTS,
    Comparison,
    Evaluation,
    RankedRun,
    compare_runs,
    evaluate_run,
    first_per_document,
    markdown_table,
    write_trec,
)
from retrieval.collections.specs import ensure_built_model, local_encoder
from retrieval.collections.stores import store_for
from retrieval.documents import Document, lexicon_from
from retrieval.encoders.protocol import Encoder
from retrieval.engine import Engine, lexicon_paths, open_engine
from retrieval.errors import InvalidDocument
from retrieval.knowledge_base import index_text
from retrieval.routing.router import ROUTE_OFF
from retrieval.service import SearchQuery, SearchService
from retrieval.settings import PROJECT_ROOT, Settings
from retrieval.text import ANALYSIS
from retrieval.types import DOC_ID_PATTERN, SearchMode

logger = logging.getLogger(__name__)

MODES: Mapping[str, SearchMode] = {
    "bm25": SearchMode.SPARSE,
    "dense": SearchMode.DENSE,
    "hybrid": SearchMode.HYBRID,
}
ROUTED = "routed"
"""Hybrid with the intent router choosing the route; the other modes turn routing off."""
HYBRID_RRF = "hybrid-rrf"
"""Hybrid ordered by weighted RRF whatever the configured fusion (`hybrid` uses the configured one)."""

STORE_SCHEMA = 1
"""Bump when what `quality` stores per document changes, so old collections are not reused."""


class RoutingUnavailable(RuntimeError):
    """`routed` was asked for but the engine has no router."""


def parse_modes(text: str | Sequence[str]) -> tuple[str, ...]:
    """Mode names from "bm25,dense,hybrid[,routed]", validated, duplicates dropped, order kept."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if not names:
        raise ValueError("no mode given")
    unknown = [n for n in names if n not in MODES and n not in (ROUTED, HYBRID_RRF)]
    if unknown:
        raise ValueError(f"unknown mode(s) {unknown}; choose from {[*MODES, ROUTED, HYBRID_RRF]}")
    return tuple(dict.fromkeys(names))


def mode_query(mode_name: str, text: str, depth: int, *, cache: bool) -> SearchQuery:
    """The served query of an evaluation mode: `routed` lets the router choose, the rest turn it off."""
    if mode_name == ROUTED:
        return SearchQuery(text, top_k=depth, mode=SearchMode.HYBRID, use_cache=cache)
    if mode_name == HYBRID_RRF:
        return SearchQuery(
            text, top_k=depth, mode=SearchMode.HYBRID, route=ROUTE_OFF, use_cache=cache, fusion="rrf"
        )
    return SearchQuery(text, top_k=depth, mode=MODES[mode_name], route=ROUTE_OFF, use_cache=cache)


class StoreIds:
    """BEIR ids to storable document ids and back.

    Ids the store accepts are kept as they are (so TREC files read naturally); any other id
    becomes ``x`` + a 24-hex-digit blake2b of it, with the original kept in memory.
    """

    def __init__(self, beir_ids: Sequence[str]):
        self._to_store: dict[str, str] = {}
        self._to_beir: dict[str, str] = {}
        for beir_id in beir_ids:
            store_id = (
                beir_id
                if DOC_ID_PATTERN.match(beir_id)
                else "x" + hashlib.blake2b(beir_id.encode(), digest_size=12).hexdigest()
            )
            other = self._to_beir.get(store_id)
            if other is not None and other != beir_id:
                raise DatasetError(f"corpus ids {other!r} and {beir_id!r} map to the same store id")
            self._to_store[beir_id] = store_id
            self._to_beir[store_id] = beir_id

    def to_store(self, beir_id: str) -> str:
        """The store id of a corpus id."""
        return self._to_store[beir_id]

    def to_beir(self, store_id: str) -> str:
        """The corpus id of a store id (unknown ids, e.g. from another ingest, pass through)."""
        return self._to_beir.get(store_id, store_id)

    @property
    def remapped(self) -> int:
        """How many ids had to be rewritten."""
        return sum(1 for b, s in self._to_store.items() if b != s)


@dataclass(frozen=True)
class QualityConfig:
    """One quality run."""

    dataset: Path
    out: Path
    modes: tuple[str, ...] = ("bm25", "dense", "hybrid")
    depth: int = 100
    """Documents kept per query (TREC files and Recall@100)."""
    limit_queries: int | None = None
    ingest_batch: int = 128
    max_p: float = 0.05
    quiet: bool = False
    dataset_name: str = ""
    cache: bool = False
    """Search through the configured cache (as served) instead of computing every answer."""

    def __post_init__(self) -> None:
        if self.depth < 10:
            raise ValueError("depth must be at least 10 (metrics are cut at 10)")
        if self.limit_queries is not None and self.limit_queries < 1:
            raise ValueError("limit_queries must be positive")
        if self.ingest_batch < 1:
            raise ValueError("ingest_batch must be positive")
        parse_modes(self.modes)


@dataclass
class ModeResult:
    """Everything measured for one mode."""

    name: str
    run: RankedRun
    took_ms: list[float]
    evaluation: Evaluation
    routed_pairs: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class QualityResult:
    """A finished run: what `results.json` holds, plus the markdown and the modes' raw data."""

    summary: dict[str, Any]
    markdown: str
    modes: dict[str, ModeResult]
    comparison: Comparison | None


def with_overrides(
    settings: Settings,
    *,
    data_dir: Path | None = None,
    precision: str | None = None,
    rrf_k: int | None = None,
    dense_weight: float | None = None,
    sparse_weight: float | None = None,
    fusion_method: str | None = None,
    ranker: str | None = None,
) -> Settings:
    """Settings with the CLI's overrides applied (engine defaults stay untouched elsewhere)."""
    if precision is not None and precision not in {"int8", "fp32"}:
        raise ValueError(f"precision must be int8 or fp32, not {precision!r}")
    fusion = dataclasses.replace(
        settings.fusion,
        k=settings.fusion.k if rrf_k is None else rrf_k,
        dense_weight=settings.fusion.dense_weight if dense_weight is None else dense_weight,
        sparse_weight=settings.fusion.sparse_weight if sparse_weight is None else sparse_weight,
        method=settings.fusion.method if fusion_method is None else fusion_method,
        ranker=settings.fusion.ranker if ranker is None else str(Path(ranker).resolve()),
    )
    if fusion.k < 0 or fusion.dense_weight < 0 or fusion.sparse_weight < 0:
        raise ValueError("RRF k and weights must be >= 0")
    return dataclasses.replace(
        settings,
        data=settings.data
        if data_dir is None
        else dataclasses.replace(settings.data, dir=data_dir.resolve()),
        model=settings.model
        if precision is None
        else dataclasses.replace(settings.model, precision=precision),
        fusion=fusion,
    )


def eval_store_settings(settings: Settings) -> Settings:
    """Point Milvus Lite at the evaluation's own file; a configured Milvus server is used as is."""
    if settings.store.uri:
        return settings
    uri = str(settings.data.dir / "eval" / "milvus.db")
    return dataclasses.replace(settings, store=dataclasses.replace(settings.store, uri=uri))


def lexicon_digest(settings: Settings) -> str:
    """Fingerprint of the jieba lexicon words (they change tokens, hence stored sparse vectors)."""
    words = sorted(set(lexicon_from([p for p in lexicon_paths(settings) if p.exists()])))
    return hashlib.sha256("\n".join(words).encode()).hexdigest()


def collection_name(corpus_sha: str, model_id: str, settings: Settings) -> str:
    """`beir_<hash>` over the corpus and everything that shapes the stored vectors."""
    key = {
        "schema": STORE_SCHEMA,
        "corpus": corpus_sha,
        "model": model_id,
        # What the engine embeds and tokenises for a chunk (title/alias head, repeats): when that
        # code or its setting changes, stored vectors are stale.
        "index_text": hashlib.sha256(inspect.getsource(index_text).encode()).hexdigest(),
        "head_repeats": settings.chunking.head_repeats,
        "jieba_mode": settings.sparse.mode,
        "bm25": [settings.sparse.k1, settings.sparse.b, settings.sparse.epsilon],
        "reweight_drift": settings.sparse.reweight_drift,
        "lexicon": lexicon_digest(settings),
        "analysis": ANALYSIS,
    }
    return "beir_" + hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def git_revision(cwd: Path = PROJECT_ROOT) -> dict[str, Any]:
    """HEAD commit and whether tracked files differ from it; nulls when git is unavailable."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def documents_of(
    corpus: Mapping[str, CorpusDoc], ids: StoreIds, max_chars: int
) -> tuple[list[Document], int]:
    docs: list[Document] = []
    skipped = 0
    for entry in corpus.values():
        # BEIR corpora hold title-only entries; the title is then the only text there is.
        text = entry.text if entry.text.strip() else entry.title
        if not text.strip():
            skipped += 1
            continue
        metadata = entry.extra.get("metadata")
        aliases = entry.extra.get("aliases")
        doc = Document(
            id=ids.to_store(entry.id),
            text=text,
            title=entry.title,
            kind=entry.kind or "lore",
            metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
            aliases=tuple(str(a) for a in aliases) if isinstance(aliases, list) else (),
        )
        try:
            docs.append(doc.validate(max_chars))
        except InvalidDocument as exc:
            raise DatasetError(f"corpus entry {entry.id!r} cannot be stored: {exc}") from exc
    return docs, skipped


async def open_ingested(
    settings: Settings,
    encoder: Encoder,
    dataset: BeirDataset,
    ids: StoreIds,
    config: QualityConfig,
) -> tuple[Engine, dict[str, Any]]:
    """The engine over the dataset's collection, ingesting it first unless a complete copy is there."""
    name = collection_name(corpus_digest(dataset.root), encoder.model_id, settings)
    marker = settings.data.dir / "eval" / f"{name}.json"
    docs, skipped = documents_of(dataset.corpus, ids, settings.data.max_document_chars)
    recorded: dict[str, Any] = json.loads(marker.read_text()) if marker.is_file() else {}
    probe = store_for(settings, name)
    try:
        rows = (await probe.open(encoder.model_id, encoder.dim)).rows if await probe.ready() else 0
        complete = recorded.get("chunks") == len(docs) and rows == len(docs)
        if rows and not complete:
            # A partial copy (interrupted ingest): start clean rather than patch it.
            logger.info("collection %s holds %d of %d documents; re-ingesting", name, rows, len(docs))
            await probe.drop()
    finally:
        await probe.close()
    if not complete:
        marker.unlink(missing_ok=True)
        stats = settings.data.dir / "bm25" / f"{name}.json"
        stats.unlink(missing_ok=True)
        stats.with_suffix(".dirty").unlink(missing_ok=True)
    # The same engine the API serves, over this collection; its own fixtures stay out of it.
    engine = await open_engine(
        settings, encoder=encoder, collection=name, cache=config.cache, ingest_fixtures=False
    )
    if complete:
        return engine, {**recorded, "collection": name, "skipped": True}
    try:
        started = time.perf_counter()
        chunks = 0
        batch = config.ingest_batch
        with tqdm(total=len(docs), desc="ingest+encode", unit="doc", disable=config.quiet) as bar:
            for start in range(0, len(docs), batch):
                part = docs[start : start + batch]
                report = await engine.kb.ingest(part, chunk=False)
                chunks += report.chunks
                bar.update(len(part))
        info = {
            "collection": name,
            "documents": len(docs),
            "chunks": chunks,
            "empty_documents_skipped": skipped,
            "ids_remapped": ids.remapped,
            "model_id": encoder.model_id,
            "seconds": round(time.perf_counter() - started, 2),
            "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(info, indent=2) + "\n")
        return engine, {**info, "skipped": False}
    except BaseException:
        await engine.close()
        raise


async def _run_mode(
    service: SearchService,
    mode_name: str,
    queries: Sequence[tuple[str, str, str | None]],
    ids: StoreIds,
    config: QualityConfig,
) -> tuple[RankedRun, list[float], list[tuple[str, str]]]:
    depth = config.depth
    # One untimed search first: the first call pays one-off costs (thread pools, jieba cache).
    await service.search(mode_query(mode_name, queries[0][1], depth, cache=False))
    run: RankedRun = {}
    took: list[float] = []
    pairs: list[tuple[str, str]] = []
    for query_id, text, intent in tqdm(queries, desc=mode_name, unit="query", disable=config.quiet):
        result = await service.search(mode_query(mode_name, text, depth, cache=config.cache))
        took.append(result.took_ms)
        answer = result.answer
        run[query_id] = first_per_document((ids.to_beir(h.doc_id), h.score) for h in answer.hits)[:depth]
        predicted = answer.route.get("intent") if answer.route is not None and mode_name == ROUTED else None
        if intent is not None and predicted is not None:
            pairs.append((intent, str(predicted)))
    return run, took, pairs


def default_encoder(settings: Settings, progress: Callable[[str], None] | None = None) -> Encoder:
    """The configured local ONNX model, built into the data folder on first use."""
    return local_encoder(settings, ensure_built_model(settings, progress=progress or logger.info))


async def run_quality(
    config: QualityConfig, settings: Settings, *, encoder: Encoder | None = None
) -> QualityResult:
    """Ingest (unless done), search every judged query in every mode, score, write the files.

    `encoder` replaces the configured model (tests inject a fast one); its `model_id` takes part
    in the collection name, so different encoders never share a collection.
    """
    dataset = load_beir(config.dataset)
    for warning in dataset.warnings:
        logger.warning("%s: %s", config.dataset, warning)
    judged = [q for q in dataset.judged_queries() if q.text.strip()]
    if config.limit_queries is not None:
        judged = judged[: config.limit_queries]
    if not judged:
        raise DatasetError(f"{config.dataset} has no query with a relevant document")
    spaced = [i for i in [*dataset.corpus, *(q.id for q in judged)] if any(ch.isspace() for ch in i)]
    if spaced:
        # Checked up front: TREC run files are whitespace-separated, and failing after an ingest wastes it.
        raise DatasetError(f"ids with whitespace cannot go into TREC run files, e.g. {spaced[0]!r}")
    settings = eval_store_settings(settings)
    encoder = encoder or default_encoder(settings)
    ids = StoreIds(list(dataset.corpus))
    try:
        await encoder.discover_dim()  # a collection is named and sized by the model's dimension
        engine, ingest = await open_ingested(settings, encoder, dataset, ids, config)
    except BaseException:
        await encoder.close()  # the engine owns it once open; until then nobody else closes it
        raise
    # Only the evaluated queries: with --limit-queries the rest must not count as misses.
    qrels = {q.id: dataset.qrels[q.id] for q in judged}
    modes: dict[str, ModeResult] = {}
    try:
        if ROUTED in config.modes and engine.service.router is None:
            raise RoutingUnavailable(
                "mode 'routed' needs the intent router: routing is off or no head is trained for "
                f"{encoder.model_id} (`search-api intents train`)"
            )
        queries = [(q.id, q.text, q.labels.get("intent")) for q in judged]
        for mode_name in config.modes:
            run, took, pairs = await _run_mode(engine.service, mode_name, queries, ids, config)
            evaluation = evaluate_run(qrels, run, METRICS, name=mode_name)
            modes[mode_name] = ModeResult(mode_name, run, took, evaluation, pairs)
    finally:
        await engine.close()

    comparison = (
        compare_runs(qrels, {m: r.run for m, r in modes.items()}, METRICS, max_p=config.max_p)
        if len(modes) >= 2
        else None
    )
    ranker = engine.service.ranker.describe() if engine.service.ranker is not None else None
    summary = _summary(config, settings, dataset, judged, ingest, encoder.model_id, modes, comparison, ranker)
    markdown = results_markdown(summary, comparison)
    _write_outputs(config, modes, summary, markdown)
    return QualityResult(summary, markdown, modes, comparison)


def _breakdown(
    dataset: BeirDataset, judged: Sequence[Any], modes: Mapping[str, ModeResult]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label_field in dataset.label_fields():
        groups: dict[str, list[str]] = {}
        for q in judged:
            groups.setdefault(q.labels.get(label_field, "(none)"), []).append(q.id)
        out[label_field] = {
            label: {
                "queries": len(members),
                **{m: r.evaluation.group_means({label: members})[label] for m, r in modes.items()},
            }
            for label, members in sorted(groups.items())
        }
    return out


def _summary(
    config: QualityConfig,
    settings: Settings,
    dataset: BeirDataset,
    judged: Sequence[Any],
    ingest: dict[str, Any],
    model_id: str,
    modes: Mapping[str, ModeResult],
    comparison: Comparison | None,
    ranker: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    conversion_path = dataset.root / CONVERSION_FILE
    conversion = json.loads(conversion_path.read_text()) if conversion_path.is_file() else None
    metrics = {m: r.evaluation.mean for m, r in modes.items()}
    summary: dict[str, Any] = {
        "kind": "quality",
        "dataset": {
            "name": config.dataset_name or dataset.root.name,
            "path": str(dataset.root),
            "digest": dataset_digest(dataset.root, dataset.split),
            "corpus_digest": corpus_digest(dataset.root),
            "corpus_docs": len(dataset.corpus),
            "queries_total": len(dataset.queries),
            "queries_evaluated": len(judged),
            "warnings": list(dataset.warnings),
            "conversion": conversion,
        },
        "provenance": {
            "git": git_revision(),
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "config": {
            "model_id": model_id,
            "precision": settings.model.precision,
            "fusion": {
                "method": settings.fusion.method,
                "ranker": ranker,
                "k": settings.fusion.k,
                "dense_weight": settings.fusion.dense_weight,
                "sparse_weight": settings.fusion.sparse_weight,
                "candidates": settings.fusion.candidates,
            },
            "jieba_mode": settings.sparse.mode,
            "bm25": {"k1": settings.sparse.k1, "b": settings.sparse.b, "epsilon": settings.sparse.epsilon},
            "reweight_drift": settings.sparse.reweight_drift,
            "lexicon": list(settings.sparse.lexicon),
            "lexicon_digest": lexicon_digest(settings),
            "analysis": ANALYSIS,
            "chunking": "one chunk per corpus entry",
            "head_repeats": settings.chunking.head_repeats,
            "depth": config.depth,
            "modes": list(config.modes),
            "limit_queries": config.limit_queries,
            "store_uri": settings.milvus_uri,
        },
        "ingest": ingest,
        "metrics": metrics,
        "latency_ms": {m: latency_summary(r.took_ms) for m, r in modes.items()},
        "breakdown": _breakdown(dataset, judged, modes),
        "comparison": None
        if comparison is None
        else {
            "stat_test": comparison.stat_test,
            "max_p": comparison.max_p,
            "table": comparison.table,
            "report": comparison.data,
        },
        "files": [f"{m}.trec" for m in modes]
        + ["results.json", "results.md", "per_query.tsv", "latencies.json"],
    }
    routed = modes.get(ROUTED)
    if routed is not None and routed.routed_pairs:
        summary["files"].append(CONFUSION_FILE)
    singles = [m for m in ("bm25", "dense") if m in metrics]
    if "hybrid" in metrics and singles:
        summary["hybrid_vs_best_single"] = {
            metric: {
                "hybrid": metrics["hybrid"][metric],
                "best_single": max(metrics[m][metric] for m in singles),
                "best_single_mode": max(singles, key=lambda m: metrics[m][metric]),
                "delta": metrics["hybrid"][metric] - max(metrics[m][metric] for m in singles),
            }
            for metric in METRICS
        }
    return summary


METRIC_LABELS = {
    "recall@10": "Recall@10",
    "ndcg@10": "nDCG@10",
    "mrr@10": "MRR@10",
    "recall@100": "Recall@100",
}


def metrics_table(summary: Mapping[str, Any]) -> str:
    """The headline table: one row per mode, the four metrics and latency percentiles."""
    # Latency here is the engine's own took_ms (no HTTP); `search-eval latency` measures the API.
    header = ["mode", *(METRIC_LABELS[m] for m in METRICS), "engine P50 ms", "engine P95 ms"]
    rows = [
        [
            mode,
            *(values[m] for m in METRICS),
            summary["latency_ms"][mode].get("p50_ms", float("nan")),
            summary["latency_ms"][mode].get("p95_ms", float("nan")),
        ]
        for mode, values in summary["metrics"].items()
    ]
    return markdown_table(header, rows)


def _pvalue_table(comparison: Comparison) -> str:
    names: list[str] = comparison.data["model_names"]
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            p_values = comparison.data[a]["comparisons"][b]
            rows.append(
                [f"{a} vs {b}", *(float("nan") if p_values[m] is None else p_values[m] for m in METRICS)]
            )
    return markdown_table(["pair (p-value)", *(METRIC_LABELS[m] for m in METRICS)], rows)


def results_markdown(summary: Mapping[str, Any], comparison: Comparison | None) -> str:
    """results.md: headline table, significance, breakdowns, provenance."""
    ds = summary["dataset"]
    cfg = summary["config"]
    git = summary["provenance"]["git"]
    lines = [
        f"# Retrieval quality: {ds['name']}",
        "",
        f"{ds['queries_evaluated']} queries over {ds['corpus_docs']} documents; "
        f"model `{cfg['model_id']}` ({cfg['precision']}); fusion `{cfg['fusion'].get('method')}` (ranker "
        f"{(cfg['fusion'].get('ranker') or {}).get('digest', 'none')}); RRF k={cfg['fusion']['k']}, "
        f"weights dense={cfg['fusion']['dense_weight']} sparse={cfg['fusion']['sparse_weight']}, "
        f"candidates={cfg['fusion']['candidates']}; jieba `{cfg['jieba_mode']}`.",
        "",
        metrics_table(summary),
    ]
    versus = summary.get("hybrid_vs_best_single")
    if versus:
        lines.append(
            "Hybrid minus the better single retriever: "
            + ", ".join(
                f"{METRIC_LABELS[m]} {v['delta']:+.4f} (vs {v['best_single_mode']})"
                for m, v in versus.items()
            )
            + "\n"
        )
    if comparison is not None:
        lines += [
            f"## Significance ({STAT_TESTS.get(comparison.stat_test, comparison.stat_test)}, "
            f"p < {comparison.max_p})",
            "",
            "ranx.compare (a superscript letter: significantly better than that row):",
            "",
            "```",
            comparison.table,
            "```",
            "",
            _pvalue_table(comparison),
        ]
    for label_field, groups in summary["breakdown"].items():
        modes = list(summary["metrics"])
        header = [
            label_field,
            "queries",
            *(f"{m} {METRIC_LABELS[k]}" for m in modes for k in ("ndcg@10", "recall@10")),
        ]
        rows = [
            [label, g["queries"], *(g[m][k] for m in modes for k in ("ndcg@10", "recall@10"))]
            for label, g in groups.items()
        ]
        lines += [f"## By {label_field}", "", markdown_table(header, rows)]
    ingest = summary["ingest"]
    lines += [
        "## Provenance",
        "",
        f"- dataset `{ds['path']}` sha256 `{ds['digest'][:16]}…`",
        f"- collection `{ingest['collection']}` ({'reused' if ingest['skipped'] else 'ingested'}: "
        f"{ingest.get('documents')} documents in {ingest.get('seconds')} s)",
        f"- git `{git['commit'] or 'unknown'}`{' (uncommitted changes)' if git['dirty'] else ''}",
        f"- {summary['provenance']['timestamp']}",
        "",
    ]
    return "\n".join(lines)


def _write_outputs(
    config: QualityConfig, modes: Mapping[str, ModeResult], summary: Mapping[str, Any], markdown: str
) -> None:
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    for name, result in modes.items():
        write_trec(out / f"{name}.trec", result.run, tag=name, depth=config.depth)
    (out / "results.json").write_text(
        json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    (out / "results.md").write_text(markdown, encoding="utf-8")
    lines = ["mode\tquery-id\t" + "\t".join(METRICS) + "\n"]
    for name, result in modes.items():
        per_query = result.evaluation.per_query
        for query_id in per_query[METRICS[0]]:
            lines.append(
                f"{name}\t{query_id}\t" + "\t".join(f"{per_query[m][query_id]:.6f}" for m in METRICS) + "\n"
            )
    (out / "per_query.tsv").write_text("".join(lines), encoding="utf-8")
    latencies = {name: [round(v, 3) for v in r.took_ms] for name, r in modes.items()}
    (out / "latencies.json").write_text(json.dumps({"took_ms": latencies}) + "\n", encoding="utf-8")
    routed = modes.get(ROUTED)
    if routed is not None and routed.routed_pairs:
        ConfusionMatrix.from_pairs(
            routed.routed_pairs, source=f"quality routed on {summary['dataset']['name']}"
        ).save(out / CONFUSION_FILE)
