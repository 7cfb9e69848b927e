"""`search-api`: serve the API, build a model, ingest documents."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from retrieval.encoders.registry import REGISTRY
from retrieval.settings import Settings
from search_api.intents_cli import add_intents_commands
from search_api.rank_cli import add_rank_commands
from search_api.settings import ApiSettings, load_api_settings

logger = logging.getLogger("search_api")


def _configure_logging(level: str, fmt: str = "json") -> None:
    from search_api.telemetry import configure_logging

    configure_logging(level, fmt)


def cmd_serve(args: argparse.Namespace, settings: ApiSettings) -> int:
    """Run the API with uvicorn; the model is built and fixtures ingested on first start."""
    from search_api.model_build import ModelBuild

    # Started before the web stack is imported: the build and the imports use a core each.
    config = Path(args.config) if args.config else None
    model_build = ModelBuild.start(settings.engine, config, args.log_level, args.log_format)

    import uvicorn

    from search_api.app import create_app

    host = args.host or settings.service.host
    port = args.port or settings.service.port
    uvicorn.run(
        create_app(settings, model_build=model_build),
        host=host,
        port=port,
        log_level=args.log_level.lower(),
        access_log=False,  # the app logs each request itself, with its request id
        log_config=None,  # keep the root handler (JSON lines) for uvicorn's own lines too
    )
    return 0


def cmd_hash_key(args: argparse.Namespace, _: ApiSettings) -> int:
    """Print the `sha256:<hex>` digest of a key read from stdin, or of a new random key."""
    import getpass
    import secrets

    from search_api.auth import hash_key

    if args.generate:
        key = secrets.token_urlsafe(32)
        print(f"key:    {key}")
    elif sys.stdin.isatty():
        key = getpass.getpass("API key (not echoed): ")
    else:
        # Read from a pipe, never from argv, so the key stays out of shell history and `ps`.
        key = sys.stdin.readline().rstrip("\r\n")
    if not key:
        print("search-api hash-key: empty key", file=sys.stderr)
        return 2
    print(f"{'digest: ' if args.generate else ''}{hash_key(key)}")
    return 0


def cmd_build_model(args: argparse.Namespace, api: ApiSettings) -> int:
    """Convert a checkpoint folder or a registered model into model.onnx (FP32) and model.int8.onnx."""
    from retrieval.encoders.build import build_model, ensure_model

    settings = api.engine
    chosen = args.checkpoint or args.model
    if chosen:
        # Same as setting model.checkpoint, so the output folder is the one the server will use.
        settings = dataclasses.replace(settings, model=dataclasses.replace(settings.model, checkpoint=chosen))
    checkpoint = settings.model.checkpoint or None
    out = Path(args.out) if args.out else settings.model_build_dir
    if args.force:
        built = build_model(checkpoint or "", out, model_id=args.model_id, progress=print)
    else:
        built = ensure_model(out, checkpoint, model_id=args.model_id, progress=print)
    print(f"model {built.model_id} (dim {built.dim}) in {built.out_dir}")
    print(f"  fp32: {built.fp32_path}")
    print(f"  int8: {built.int8_path} (min cosine to fp32 {built.int8_min_cosine:.4f})")
    print(f"  licence: {built.licence}")
    if built.query_prefix or built.passage_prefix:
        print(f"  prefixes: query {built.query_prefix!r}, passage {built.passage_prefix!r}")
    return 0


async def _ingest(path: Path, size: int, settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from retrieval.bulk_ingest import BulkProgress, bulk_ingest, checkpoint_path
    from retrieval.collections.stores import pointer_for
    from retrieval.engine import configured_encoder, open_knowledge_base

    show = args.progress if args.progress is not None else sys.stderr.isatty()
    collection = await pointer_for(settings).active()
    kb = await open_knowledge_base(settings, await configured_encoder(settings))
    bar = tqdm(total=size, unit="B", unit_scale=True, desc="ingest", disable=not show)

    def progress(p: BulkProgress) -> None:
        rate = p.chunks / p.elapsed_s if p.elapsed_s > 0 else 0.0
        bar.set_postfix_str(f"{p.documents} docs, {p.chunks} chunks, {rate:.0f} chunks/s", refresh=False)
        bar.update(p.offset - bar.n)  # redraws, postfix included

    try:
        report = await bulk_ingest(
            kb,
            path,
            checkpoint=checkpoint_path(settings.collections_dir, path, collection),
            collection=collection,
            batch=args.batch,
            max_chars=settings.data.max_document_chars,
            restart=args.restart,
            on_progress=progress,
        )
    finally:
        bar.close()
        await kb.close()
    resumed = f" (resumed after {report.resumed_documents})" if report.resumed_documents else ""
    print(
        f"ingested {report.documents} documents{resumed}, {report.chunks} chunks in "
        f"{report.elapsed_s:.1f} s ({report.chunks_per_s:.0f} chunks/s) into {collection}"
    )
    return 0


def cmd_ingest(args: argparse.Namespace, api: ApiSettings) -> int:
    """Upsert a JSON Lines file of documents into the configured collection (resumable, idempotent)."""
    from retrieval.bulk_ingest import IngestCheckpointError
    from retrieval.errors import InvalidDocument

    path = Path(args.file)
    if not path.is_file():
        print(f"search-api ingest: {path} is not a file", file=sys.stderr)
        return 2
    if args.batch < 1:
        print("search-api ingest: --batch must be >= 1", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_ingest(path, path.stat().st_size, api.engine, args))
    except KeyboardInterrupt:
        print("search-api ingest: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (InvalidDocument, IngestCheckpointError) as exc:
        print(
            f"search-api ingest: {exc}; the batches before it are in, and a rerun resumes there",
            file=sys.stderr,
        )
        return 2
    except Exception as exc:  # a CLI reports every failure in one line and a non-zero status
        print(f"search-api ingest: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _api_url(settings: ApiSettings) -> str:
    host = settings.service.host
    # A server bound to every interface is reached over loopback from here.
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return (
        f"http://[{host}]:{settings.service.port}"
        if ":" in host
        else f"http://{host}:{settings.service.port}"
    )


def _api_reachable(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/v1/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _http_error(response: object) -> str:
    import httpx

    if not isinstance(response, httpx.Response):
        return str(response)
    try:
        body = response.json()
        return f"HTTP {response.status_code} {body.get('code')}: {body.get('message')}"
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"


def _reindex_over_http(url: str, args: argparse.Namespace, settings: ApiSettings) -> int:
    """Drive the admin endpoints of a running server and show the job's progress."""
    import time

    import httpx
    from tqdm import tqdm

    from search_api.auth import API_KEY_HEADER

    key = settings.service.admin_key
    headers = {API_KEY_HEADER: key} if key else {}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30.0) as client:
        if args.rollback:
            response = client.post("/v1/admin/reindex/rollback")
            if response.status_code != 200:
                print(f"search-api reindex: rollback failed: {_http_error(response)}", file=sys.stderr)
                return 1
            done = response.json()
            print(
                f"rolled back {done['replaced']} -> {done['active']} ({done['model_id']}, "
                f"dim {done['dim']}); {done['replayed_documents']} documents replayed"
            )
            return 0
        response = client.post("/v1/admin/reindex", json={"to": args.to, "batch": args.batch})
        if response.status_code != 202:
            print(f"search-api reindex: not started: {_http_error(response)}", file=sys.stderr)
            return 1
        job_id = response.json()["id"]
        status = response.json()
        with tqdm(unit="chunk", desc=f"reindex -> {args.to}", disable=args.no_progress) as bar:
            while status["state"] == "running":
                time.sleep(args.poll)
                response = client.get("/v1/admin/reindex")
                if response.status_code != 200:
                    print(f"search-api reindex: status failed: {_http_error(response)}", file=sys.stderr)
                    return 1
                status = response.json()
                if status.get("id") != job_id:
                    print("search-api reindex: another reindex replaced this one", file=sys.stderr)
                    return 1
                bar.total, bar.n = status["total"], status["done"]
                bar.refresh()
    if status["state"] != "succeeded":
        print(f"search-api reindex: {status['state']}: {status.get('error')}", file=sys.stderr)
        return 1
    print(f"now serving {status['collection']} ({status['model_id']}, dim {status['dim']})")
    return 0


async def _reindex_in_process(args: argparse.Namespace, settings: Settings) -> int:
    """Reindex or roll back against the data folder (Milvus Lite) or the Milvus server directly."""
    from retrieval.collections.manager import CollectionManager
    from retrieval.collections.specs import encoder_from_spec, spec_for_model_id
    from retrieval.engine import open_knowledge_base

    live = await CollectionManager.describe_live(settings)
    if live.model_id is None:
        print(f"search-api reindex: collection {live.name} does not exist yet", file=sys.stderr)
        return 1
    # Open the live collection with the encoder it was built by, whatever is configured now.
    encoder = encoder_from_spec(live.spec or spec_for_model_id(live.model_id), settings)
    await encoder.discover_dim()
    kb = await open_knowledge_base(settings, encoder)
    collections = CollectionManager(settings, kb)
    try:
        if args.rollback:
            undone = await collections.rollback()
            print(
                f"rolled back {undone.replaced} -> {undone.active} ({undone.model_id}, dim {undone.dim}); "
                f"{undone.replayed_documents} documents replayed"
            )
            return 0
        report = await collections.reindex(args.to, batch=args.batch, progress=not args.no_progress)
        print(
            f"now serving {report.target} ({report.model_id}, dim {report.dim}): {report.rows} chunks, "
            f"{report.copied} copied now, {report.resumed_from} before, {report.replayed_documents} "
            f"documents replayed; {report.source} kept for --rollback"
        )
        return 0
    finally:
        await collections.close()
        await kb.close()


def cmd_reindex(args: argparse.Namespace, settings: ApiSettings) -> int:
    """Re-embed for another model (or roll back): through the running API, else in-process."""
    url = args.url
    if url is None and _api_reachable(_api_url(settings)):
        url = _api_url(settings)
    try:
        if url is not None:
            return _reindex_over_http(url, args, settings)
        return asyncio.run(_reindex_in_process(args, settings.engine))
    except KeyboardInterrupt:
        print("search-api reindex: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # a CLI reports every failure in one line and a non-zero status
        print(f"search-api reindex: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    """The `search-api` argument parser."""
    parser = argparse.ArgumentParser(prog="search-api", description=__doc__)
    parser.add_argument("--config", help="TOML file overriding config/default.toml")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--log-format", choices=["json", "text"], default="json", help="JSON lines (default) or text"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.set_defaults(func=cmd_serve)

    build = sub.add_parser("build-model", help="export a BERT-family checkpoint to ONNX FP32 + INT8")
    source = build.add_mutually_exclusive_group()
    source.add_argument(
        "--checkpoint",
        help="folder with config.json, weights and tokenizer.json (default multilingual-e5-small)",
    )
    source.add_argument("--model", choices=sorted(REGISTRY), help="a registered model instead of a folder")
    build.add_argument("--out", help="output folder (default: the data folder's model folder)")
    build.add_argument("--model-id", default=None)
    build.add_argument("--force", action="store_true", help="rebuild even if a complete build exists")
    build.set_defaults(func=cmd_build_model)

    ingest = sub.add_parser(
        "ingest",
        help="upsert documents from a JSON Lines file (bulk; resumable; idempotent)",
        description="Embedding, tokenising and writing overlap. A checkpoint in the data folder records "
        "progress after every batch, so an interrupted run continues where it stopped when the same "
        "command is run again; re-running a finished file leaves the collection as it was.",
    )
    ingest.add_argument("file")
    ingest.add_argument("--batch", type=int, default=256, help="documents per batch (default 256)")
    ingest.add_argument("--restart", action="store_true", help="ignore a checkpoint and start from line 1")
    shown = ingest.add_mutually_exclusive_group()
    shown.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="show a progress bar"
    )
    shown.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    ingest.set_defaults(func=cmd_ingest)

    reindex = sub.add_parser(
        "reindex",
        help="re-embed every chunk for another model into a new collection and swap (or roll back)",
        description="Through the API when one is running (at --url, or the configured host and port), "
        "else in-process against the data folder or the Milvus server. Rerun an interrupted reindex "
        "with the same --to to resume it.",
    )
    what = reindex.add_mutually_exclusive_group(required=True)
    what.add_argument("--to", help="encoder spec: local, local-fp32, ollama/<model> or openai/<model>")
    what.add_argument("--rollback", action="store_true", help="swap back to the previous collection")
    reindex.add_argument("--url", default=None, help="a running API, e.g. http://127.0.0.1:8000")
    reindex.add_argument("--batch", type=int, default=256, help="chunks per embedding batch")
    reindex.add_argument("--poll", type=float, default=0.5, help="seconds between status polls (API)")
    reindex.add_argument("--no-progress", action="store_true", help="no progress bar")
    reindex.set_defaults(func=cmd_reindex)

    hash_cmd = sub.add_parser(
        "hash-key",
        help="print the sha256 digest of an API key (read from stdin) for api_key_hashes/admin_key_hashes",
    )
    hash_cmd.add_argument("--generate", action="store_true", help="make a new random key and print both")
    hash_cmd.set_defaults(func=cmd_hash_key)

    add_intents_commands(sub)
    add_rank_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `search-api` console script."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level, args.log_format)
    try:
        settings = load_api_settings(Path(args.config) if args.config else None)
    except (OSError, ValueError) as exc:
        print(f"search-api: configuration error: {exc}", file=sys.stderr)
        return 2
    return int(args.func(args, settings))


if __name__ == "__main__":
    sys.exit(main())
