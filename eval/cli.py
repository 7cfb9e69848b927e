"""`search-eval`: retrieval quality, HTTP latency, reports, and dataset converters.

    search-eval quality --dataset DIR|fixtures|cmrc-chunk|drcd-heldout|... --modes bm25,dense,hybrid --out DIR
    search-eval latency --url http://127.0.0.1:8000 --concurrency 4 --duration 30 [--budget-ms 600]
    search-eval report --runs DIR [DIR ...] --out DIR
    search-eval convert-cmrc --input cmrc2018_dev.json --level paragraph|chunk --out DIR
    search-eval convert-fixtures --out DIR [--variant traditional|typo|typo-tune]

Exit status: 0 success, 1 a latency run over budget (or with too many errors), 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from eval.converters import FIXTURE_VARIANTS
from retrieval.settings import PROJECT_ROOT, Settings, load_settings

if TYPE_CHECKING:
    from eval.quality import QualityConfig

logger = logging.getLogger("eval")

DATASET_SHORTCUTS = (
    "fixtures",
    "fixtures-traditional",
    "fixtures-typo",
    "fixtures-typo-tune",
    "cmrc-chunk",
    "cmrc-paragraph",
    "drcd-train",
    "drcd-heldout",
)
"""`quality --dataset` names converted on the fly into <data_dir>/datasets/<name>."""
DEFAULT_QUERIES = PROJECT_ROOT / "fixtures" / "queries.jsonl"

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or inputs: reported in one line, exit status 2."""


def _settings(args: argparse.Namespace) -> Settings:
    from eval.quality import with_overrides

    try:
        settings = load_settings(Path(args.config) if args.config else None)
    except (OSError, ValueError) as exc:
        raise UsageError(f"configuration error: {exc}") from exc
    return with_overrides(settings, data_dir=Path(args.data_dir) if args.data_dir else None)


def resolve_dataset(name: str, settings: Settings, cmrc_input: Path, quiet: bool) -> tuple[Path, str]:
    """A dataset folder for `--dataset`: a shortcut is converted into the data folder first."""
    from eval.converters import DRCD_DEV, FIXTURES_DIR, CmrcLevel, convert_cmrc, convert_fixtures

    if name not in DATASET_SHORTCUTS:
        path = Path(name)
        if not path.is_dir():
            raise UsageError(
                f"dataset {name!r} is neither a folder nor one of {', '.join(DATASET_SHORTCUTS)}"
            )
        return path.resolve(), path.resolve().name
    out = settings.data.dir / "datasets" / name
    if name.startswith("fixtures"):
        # fixtures-traditional / -typo / -typo-tune: the same corpus and qrels, queries rewritten.
        report = convert_fixtures(
            FIXTURES_DIR, out, name.removeprefix("fixtures").removeprefix("-") or "plain"
        )
    elif name.startswith("drcd-"):
        # DRCD at chunk level, split by article; drcd-heldout is never trained or tuned on.
        report = convert_cmrc(
            DRCD_DEV,
            out,
            "chunk",
            max_chars=settings.chunking.max_chars,
            min_chars=settings.chunking.min_chars,
            part="heldout" if name == "drcd-heldout" else "train",
        )
    else:
        level: CmrcLevel = "chunk" if name == "cmrc-chunk" else "paragraph"
        report = convert_cmrc(
            cmrc_input,
            out,
            level,
            max_chars=settings.chunking.max_chars,
            min_chars=settings.chunking.min_chars,
        )
    if not quiet:
        print(f"dataset {name} -> {out}: {report.summary()}", file=sys.stderr)
    return out, name


def _compare_encoders(specs: str, config: QualityConfig, settings: Settings) -> int:
    """Score the same dataset with each encoder spec; print and write one table across them."""
    from eval.metrics import METRICS, markdown_table
    from eval.quality import run_quality
    from retrieval.collections.specs import encoder_from_spec, parse_spec

    rows: list[list[object]] = []
    for spec in (s.strip() for s in specs.split(",") if s.strip()):
        try:
            parse_spec(spec)
        except ValueError as exc:
            print(f"search-eval quality: {exc}", file=sys.stderr)
            return 2
        slug = "".join(ch if ch.isalnum() else "_" for ch in spec)
        encoder = encoder_from_spec(spec, settings)
        run = dataclasses.replace(config, out=config.out / slug)
        summary = asyncio.run(run_quality(run, settings, encoder=encoder)).summary
        for mode, values in summary["metrics"].items():
            rows.append([spec, summary["config"]["model_id"], mode, *(values[m] for m in METRICS)])
    table = markdown_table(["encoder", "model id", "mode", *METRICS], rows)
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "encoders.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    return 0


def cmd_quality(args: argparse.Namespace) -> int:
    """Ingest a BEIR dataset once and score every mode."""
    from eval.quality import QualityConfig, metrics_table, parse_modes, run_quality, with_overrides

    settings = with_overrides(
        _settings(args),
        precision=args.encoder_precision,
        rrf_k=args.rrf_k,
        dense_weight=args.dense_weight,
        sparse_weight=args.sparse_weight,
        fusion_method=args.fusion,
        ranker=args.ranker,
    )
    dataset, name = resolve_dataset(args.dataset, settings, Path(args.cmrc_input), args.quiet)
    config = QualityConfig(
        dataset=dataset,
        out=Path(args.out),
        modes=parse_modes(args.modes),
        depth=args.depth,
        limit_queries=args.limit_queries,
        ingest_batch=args.batch,
        max_p=args.max_p,
        quiet=args.quiet,
        dataset_name=name,
        cache=args.cache == "on",
    )
    if args.encoder:
        return _compare_encoders(args.encoder, config, settings)
    result = asyncio.run(run_quality(config, settings))
    summary = result.summary
    ingest = summary["ingest"]
    print()
    print(
        f"{name}: {summary['dataset']['queries_evaluated']} queries, "
        f"{summary['dataset']['corpus_docs']} documents, model {summary['config']['model_id']}, "
        f"RRF k={settings.fusion.k} "
        f"dense={settings.fusion.dense_weight} sparse={settings.fusion.sparse_weight}"
    )
    print(metrics_table(summary))
    versus = summary.get("hybrid_vs_best_single")
    if versus:
        print(
            "hybrid - best single: "
            + ", ".join(
                f"{metric} {v['delta']:+.4f} ({v['best_single_mode']})" for metric, v in versus.items()
            )
        )
    if result.comparison is not None:
        print(result.comparison.table)
    print(
        f"ingest: {'reused' if ingest['skipped'] else 'ingested'} collection {ingest['collection']} "
        f"({ingest.get('documents')} docs, {ingest.get('seconds')} s)"
    )
    trec = ", ".join(f"{m}.trec" for m in config.modes)
    print(f"wrote {config.out}/results.md, results.json, per_query.tsv and {trec}")
    return EXIT_OK


def cmd_latency(args: argparse.Namespace) -> int:
    """Drive a running API and judge its P95 against the budget."""
    from eval.latency import LatencyConfig, check_ready, load_query_texts, run_latency, write_latency

    if args.duration is None and args.requests is None:
        raise UsageError("give --duration, --requests, or both")
    queries_path = Path(args.queries) if args.queries else DEFAULT_QUERIES
    if not queries_path.is_file():
        raise UsageError(
            f"query file {queries_path} not found; pass --queries FILE (.jsonl with `text`, or .txt)"
        )
    config = LatencyConfig(
        url=args.url,
        concurrency=args.concurrency,
        queries=tuple(load_query_texts(queries_path)),
        duration_s=args.duration,
        requests=args.requests,
        mode=args.mode,
        cache=args.cache,
        top_k=args.top_k,
        budget_ms=args.budget_ms,
        timeout_s=args.timeout,
        warmup=args.warmup,
        max_error_rate=args.max_error_rate,
        rss_source=args.rss,
        max_rss_growth=args.max_rss_growth,
    )

    async def go() -> int:
        try:
            await check_ready(config.url, args.wait_ready)
        except RuntimeError as exc:
            raise UsageError(str(exc)) from exc
        result = await run_latency(config)
        print(
            f"{config.mode} x{config.concurrency}, cache {config.cache}, "
            f"{len(config.queries)} distinct queries, {result.wall_s:.1f} s (stopped by {result.stopped_by})"
        )
        print(result.markdown())
        if args.out:
            for path in write_latency(result, Path(args.out)):
                print(f"wrote {path}")
        return EXIT_OK if result.passed else EXIT_FAILED

    return asyncio.run(go())


def cmd_report(args: argparse.Namespace) -> int:
    """Markdown, JSON and plots over run folders."""
    from eval.report import build_report

    data = build_report([Path(p) for p in args.runs], Path(args.out))
    print((Path(args.out) / "report.md").read_text(encoding="utf-8"))
    print(f"wrote {args.out}/report.md, report.json, {', '.join(data['figures']) or 'no figures'}")
    return EXIT_OK


def cmd_convert_cmrc(args: argparse.Namespace) -> int:
    """CMRC 2018 into BEIR at paragraph or chunk level."""
    from eval.converters import convert_cmrc

    settings = _settings(args)
    report = convert_cmrc(
        Path(args.input),
        Path(args.out),
        args.level,
        max_chars=args.max_chars if args.max_chars is not None else settings.chunking.max_chars,
        min_chars=args.min_chars if args.min_chars is not None else settings.chunking.min_chars,
    )
    print(report.summary())
    print(f"wrote {args.out}")
    return EXIT_OK


def cmd_convert_fixtures(args: argparse.Namespace) -> int:
    """The fixture knowledge base, queries and qrels into BEIR."""
    from eval.converters import convert_fixtures

    report = convert_fixtures(Path(args.fixtures), Path(args.out), args.variant)
    print(report.summary())
    print(f"wrote {args.out}")
    return EXIT_OK


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The `search-eval` argument parser."""
    from eval.converters import CMRC_DEV, FIXTURES_DIR

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML file overriding config/default.toml")
    common.add_argument("--data-dir", help="data folder (default: settings, i.e. data/ or SEARCH_DATA_DIR)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    common.add_argument("--log-level", default="INFO")

    parser = argparse.ArgumentParser(
        prog="search-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    quality = sub.add_parser("quality", parents=[common], help="retrieval quality on a BEIR dataset")
    quality.add_argument(
        "--dataset",
        required=True,
        help=f"BEIR folder, or one of {', '.join(DATASET_SHORTCUTS)} (converted into the data folder)",
    )
    quality.add_argument(
        "--modes", default="bm25,dense,hybrid", help="comma-separated: bm25,dense,hybrid,hybrid-rrf,routed"
    )
    quality.add_argument("--out", required=True, help="output folder")
    quality.add_argument("--encoder-precision", choices=["int8", "fp32"], default=None)
    quality.add_argument(
        "--encoder",
        default=None,
        help="A/B encoders, comma-separated specs (local, local-fp32, ollama/<model>, openai/<model>): "
        "each is scored into OUT/<spec> and the modes are compared side by side",
    )
    quality.add_argument("--rrf-k", type=int, default=None, help="RRF k (default: settings fusion.k)")
    quality.add_argument("--dense-weight", type=_non_negative_float, default=None)
    quality.add_argument("--sparse-weight", type=_non_negative_float, default=None)
    quality.add_argument(
        "--fusion",
        choices=("learned", "rrf"),
        default=None,
        help="how `hybrid` and `routed` order hits (default fusion.method); `hybrid-rrf` is RRF",
    )
    quality.add_argument("--ranker", default=None, help="ranker folder to serve (default: fusion.ranker)")
    quality.add_argument("--limit-queries", type=_positive_int, default=None, help="first N judged queries")
    quality.add_argument(
        "--depth", type=_positive_int, default=100, help="documents kept per query (default 100)"
    )
    quality.add_argument(
        "--cache",
        choices=["on", "off"],
        default="off",
        help="search through the configured cache, as served (default off: every answer computed)",
    )
    quality.add_argument("--batch", type=_positive_int, default=128, help="documents per ingest call")
    quality.add_argument("--max-p", type=float, default=0.05, help="significance level of the paired t-test")
    quality.add_argument("--cmrc-input", default=str(CMRC_DEV), help="CMRC file for the cmrc-* shortcuts")
    quality.set_defaults(func=cmd_quality)

    latency = sub.add_parser("latency", parents=[common], help="load a running API over loopback HTTP")
    latency.add_argument("--url", required=True, help="API base URL on loopback, e.g. http://127.0.0.1:8000")
    latency.add_argument("--concurrency", type=_positive_int, default=1)
    latency.add_argument("--duration", type=float, default=None, help="seconds (hard stop)")
    latency.add_argument("--requests", type=_positive_int, default=None, help="request count (hard stop)")
    latency.add_argument("--mode", choices=["hybrid", "dense", "sparse"], default="hybrid")
    latency.add_argument("--queries", default=None, help=f"query file (default {DEFAULT_QUERIES})")
    latency.add_argument(
        "--budget-ms", type=float, default=None, help="P95 budget (default 600 hybrid/sparse, 400 dense)"
    )
    latency.add_argument("--cache", choices=["on", "off", "mixed"], default="on")
    latency.add_argument("--top-k", type=_positive_int, default=10)
    latency.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    latency.add_argument("--warmup", type=int, default=0, help="untimed requests before measuring")
    latency.add_argument(
        "--rss",
        default=None,
        metavar="metrics|pid:N",
        help="record the server's resident memory at start, every second and at the end: from its "
        "/metrics (process_resident_memory_bytes) or from /proc/N/status",
    )
    latency.add_argument(
        "--max-rss-growth", type=float, default=0.10, help="fail when RSS grew more (fraction; 0.10)"
    )
    latency.add_argument("--wait-ready", type=float, default=0.0, help="seconds to wait for /v1/ready")
    latency.add_argument("--max-error-rate", type=float, default=0.01)
    latency.add_argument("--out", default=None, help="folder for latency.json and latency_raw.json")
    latency.set_defaults(func=cmd_latency)

    report = sub.add_parser("report", parents=[common], help="markdown, JSON and plots over run folders")
    report.add_argument("--runs", nargs="+", required=True)
    report.add_argument("--out", required=True)
    report.set_defaults(func=cmd_report)

    cmrc = sub.add_parser("convert-cmrc", parents=[common], help="CMRC 2018 (SQuAD JSON) into BEIR")
    cmrc.add_argument("--input", default=str(CMRC_DEV))
    cmrc.add_argument("--level", choices=["paragraph", "chunk"], required=True)
    cmrc.add_argument("--out", required=True)
    cmrc.add_argument("--max-chars", type=_positive_int, default=None, help="chunk size (default: settings)")
    cmrc.add_argument(
        "--min-chars", type=int, default=None, help="smallest trailing chunk (default: settings)"
    )
    cmrc.set_defaults(func=cmd_convert_cmrc)

    fixtures = sub.add_parser("convert-fixtures", parents=[common], help="fixtures/ into BEIR")
    fixtures.add_argument("--fixtures", default=str(FIXTURES_DIR))
    fixtures.add_argument("--out", required=True)
    fixtures.add_argument(
        "--variant",
        choices=FIXTURE_VARIANTS,
        default="plain",
        help="traditional (OpenCC s2t), typo (a homophone in a name, seed 2), typo-tune (seed 1)",
    )
    fixtures.set_defaults(func=cmd_convert_fixtures)

    bench = sub.add_parser(
        "bench",
        help="run a benchmark of eval/bench/ (its own options follow the name; NAME --help lists them)",
    )
    bench.add_argument("name", choices=benchmark_names())
    bench.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options")
    bench.set_defaults(func=cmd_bench, quiet=False, log_level="INFO")
    return parser


def benchmark_names() -> list[str]:
    """The benchmarks of `eval.bench` (every module with a `main`, but the shared helpers)."""
    import pkgutil

    import eval.bench

    helpers = {"stats", "results"}
    return sorted(m.name for m in pkgutil.iter_modules(eval.bench.__path__) if m.name not in helpers)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run `eval.bench.<name>.main` with the remaining options."""
    import importlib

    module = importlib.import_module(f"eval.bench.{args.name}")
    code = module.main(args.options)
    return int(code or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `search-eval` and `python -m eval`."""
    from eval.beir import DatasetError
    from eval.latency import NotLoopback
    from eval.quality import RoutingUnavailable

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # jieba logs its dictionary loading at DEBUG through a handler of its own; keep it out of ours.
    logging.getLogger("jieba").propagate = False
    # httpx logs every request at INFO: thousands of lines in a load run.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except (UsageError, DatasetError, NotLoopback, RoutingUnavailable, FileNotFoundError, ValueError) as exc:
        print(f"search-eval {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
