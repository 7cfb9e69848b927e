"""`search-api`: serve the API, build a model, ingest documents."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from retrieval.settings import Settings, load_settings

logger = logging.getLogger("search_api")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the API with uvicorn; the model is built and fixtures ingested on first start."""
    import uvicorn

    from search_api.app import create_app

    host = args.host or settings.service.host
    port = args.port or settings.service.port
    uvicorn.run(
        create_app(settings), host=host, port=port, log_level=args.log_level.lower(), access_log=False
    )
    return 0


def cmd_build_model(args: argparse.Namespace, settings: Settings) -> int:
    """Convert a BERT-family checkpoint folder into model.onnx (FP32) and model.int8.onnx."""
    from retrieval.encoders.build import build_model, ensure_model
    from retrieval.encoders.registry import default_checkpoint_dir
    from retrieval.engine import model_build_dir

    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    if checkpoint is None and settings.model.checkpoint:
        checkpoint = Path(settings.model.checkpoint)
    out = Path(args.out) if args.out else model_build_dir(settings)
    if args.force:
        built = build_model(
            checkpoint or default_checkpoint_dir(), out, model_id=args.model_id, progress=print
        )
    else:
        built = ensure_model(out, checkpoint, model_id=args.model_id, progress=print)
    print(f"model {built.model_id} (dim {built.dim}) in {built.out_dir}")
    print(f"  fp32: {built.fp32_path}")
    print(f"  int8: {built.int8_path} (min cosine to fp32 {built.int8_min_cosine:.4f})")
    print(f"  licence: {built.licence}")
    return 0


async def _ingest(path: Path, settings: Settings, batch: int) -> int:
    from retrieval.documents import read_jsonl
    from retrieval.engine import open_pipeline

    pipeline = await open_pipeline(settings)
    try:
        docs = [d.validate(settings.search.max_document_chars) for d in read_jsonl(path)]
        total = 0
        for start in range(0, len(docs), batch):
            report = await pipeline.ingest(docs[start : start + batch])
            total += report.chunks
            print(f"{min(start + batch, len(docs))}/{len(docs)} documents, {total} chunks", flush=True)
        return 0
    finally:
        await pipeline.close()


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """Upsert a JSON Lines file of documents into the configured collection."""
    return asyncio.run(_ingest(Path(args.file), settings, args.batch))


def build_parser() -> argparse.ArgumentParser:
    """The `search-api` argument parser."""
    parser = argparse.ArgumentParser(prog="search-api", description=__doc__)
    parser.add_argument("--config", help="TOML file overriding config/default.toml")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.set_defaults(func=cmd_serve)

    build = sub.add_parser("build-model", help="export a BERT-family checkpoint to ONNX FP32 + INT8")
    build.add_argument(
        "--checkpoint", help="folder with config.json, weights and tokenizer.json (default m3e-small)"
    )
    build.add_argument("--out", help="output folder (default: the data folder's model folder)")
    build.add_argument("--model-id", default=None)
    build.add_argument("--force", action="store_true", help="rebuild even if a complete build exists")
    build.set_defaults(func=cmd_build_model)

    ingest = sub.add_parser("ingest", help="upsert documents from a JSON Lines file")
    ingest.add_argument("file")
    ingest.add_argument("--batch", type=int, default=256)
    ingest.set_defaults(func=cmd_ingest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `search-api` console script."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level)
    try:
        settings = load_settings(Path(args.config) if args.config else None)
    except (OSError, ValueError) as exc:
        print(f"search-api: configuration error: {exc}", file=sys.stderr)
        return 2
    return int(args.func(args, settings))


if __name__ == "__main__":
    sys.exit(main())
