"""Compare dynamic-INT8 quantisation settings for the encoder: accuracy and CPU latency.

Run: ``uv run search-eval bench quantization [--threads 2] [--settings NAME ...]``

For FP32 and every candidate in ``retrieval.encoders.quantize.CANDIDATES`` it prints

* cosine of the INT8 pooled embedding to FP32 (min/mean over the 8 reference texts plus the
  32 benchmark passages) and to the PyTorch reference vectors (min over 8);
* latency of one short query (13 tokens) and of a batch of 32 passages of ~190 tokens,
  median and P95 over repeated ``session.run`` calls (tokenisation excluded, session warm).
  All sessions are timed in interleaved rounds, so load from other processes on the machine
  skews every setting alike instead of whichever happened to run at that moment.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from onnxruntime import InferenceSession

from eval.bench.stats import percentile
from retrieval.encoders.bert_onnx import OUTPUT_POOLED
from retrieval.encoders.build import export_fp32
from retrieval.encoders.pooling import l2_normalize
from retrieval.encoders.quantize import CANDIDATES, DEFAULT_SETTINGS, QuantSettings, quantize_model
from retrieval.encoders.registry import default_checkpoint_dir
from retrieval.encoders.session import create_session
from retrieval.encoders.tokenization import Batch, encode_batch, load_tokenizer

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REFERENCE = PROJECT_ROOT.parent / "shared" / "reference" / "m3e-small-reference-vectors.json"
QUERY = "林黛玉的性格是怎样的？"
BATCH_SIZE = 32
PASSAGE_CHARS = 196  # ~190 tokens for this Chinese text with m3e-small's tokenizer
PASSAGE_STRIDE = 30

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the results table."""

    name: str
    size_mb: float
    cos_fp32_min: float
    cos_fp32_mean: float
    cos_ref_min: float
    single_p50_ms: float
    single_p95_ms: float
    batch_p50_ms: float
    batch_p95_ms: float


def _passages(long_text: str) -> list[str]:
    """32 overlapping windows of the long reference text (~190 tokens each)."""
    return [long_text[i * PASSAGE_STRIDE : i * PASSAGE_STRIDE + PASSAGE_CHARS] for i in range(BATCH_SIZE)]


def _pooled(session: InferenceSession, batch: Batch) -> F32:
    (out,) = session.run([OUTPUT_POOLED], batch.as_feed())
    return np.asarray(out, dtype=np.float32)


def _accuracy(
    session: InferenceSession, ref_batches: list[Batch], passages: Batch, ref_vectors: F32
) -> tuple[F32, F32]:
    """(normalised vectors of refs + passages, cosine of each ref text to the PyTorch vector)."""
    # Reference texts one by one (as the reference was produced), passages as one batch.
    ref_out = np.concatenate([_pooled(session, b) for b in ref_batches])
    vectors = l2_normalize(np.concatenate([ref_out, _pooled(session, passages)]))
    cos_ref = np.sum(l2_normalize(ref_out) * l2_normalize(ref_vectors), axis=1)
    return vectors, cos_ref


def _latencies(
    sessions: dict[str, InferenceSession], query: Batch, passages: Batch, single_runs: int, batch_runs: int
) -> dict[str, tuple[list[float], list[float]]]:
    """Time every session in interleaved rounds so machine-load drift hits all settings alike."""
    names = list(sessions)
    single: dict[str, list[float]] = {n: [] for n in names}
    batch: dict[str, list[float]] = {n: [] for n in names}
    for name in names:  # warm-up: first runs allocate arenas and pick kernels
        for _ in range(10):
            _pooled(sessions[name], query)
        _pooled(sessions[name], passages)
    rounds = max(batch_runs, 1)
    per_round = max(single_runs // rounds, 1)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            sess = sessions[name]
            # Let the previous session's spinning pool threads go idle, then re-warm this one's
            # caches, so a block measures this setting rather than the switch.
            time.sleep(0.05)
            for _ in range(3):
                _pooled(sess, query)
            for _ in range(per_round):
                t0 = time.perf_counter()
                _pooled(sess, query)
                single[name].append((time.perf_counter() - t0) * 1000.0)
            t0 = time.perf_counter()
            _pooled(sess, passages)
            batch[name].append((time.perf_counter() - t0) * 1000.0)
    return {n: (single[n], batch[n]) for n in names}


def main(argv: Sequence[str] | None = None) -> None:
    """Build FP32 once, quantise with each setting, print the comparison table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (2 = all cores here)")
    parser.add_argument("--single-runs", type=int, default=300)
    parser.add_argument("--batch-runs", type=int, default=15)
    parser.add_argument("--settings", nargs="*", help="names from CANDIDATES (default: all)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint folder (default m3e-small)")
    args = parser.parse_args(argv)

    wanted: list[QuantSettings] = [c for c in CANDIDATES if not args.settings or c.name in args.settings]
    checkpoint = args.checkpoint or default_checkpoint_dir()
    reference: dict[str, Any] = json.loads(REFERENCE.read_text(encoding="utf-8"))
    tok = load_tokenizer(checkpoint / "tokenizer.json", int(reference.get("max_length", 512)))
    texts = [v["text"] for v in reference["vectors"]]
    ref_vectors = np.asarray([v["embedding"] for v in reference["vectors"]], dtype=np.float32)
    ref_batches = [encode_batch(tok, [t]) for t in texts]
    passages = encode_batch(tok, _passages(max(texts, key=len)))
    query = encode_batch(tok, [QUERY])
    n_tok = passages.attention_mask.sum(axis=1)
    print(
        f"checkpoint {checkpoint}\nthreads={args.threads}  query={query.input_ids.shape[1]} tokens  "
        f"batch={BATCH_SIZE} x {n_tok.mean():.0f} tokens (padded to {passages.input_ids.shape[1]})  "
        f"runs: single={args.single_runs} batch={args.batch_runs}\n"
    )

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp_s:
        tmp = Path(tmp_s)
        models: dict[str, Path] = {"fp32": tmp / "model.onnx"}
        export_fp32(checkpoint, models["fp32"])
        fused = tmp / "model.fused.onnx"
        if any(s.fused_attention for s in wanted):
            export_fp32(checkpoint, fused, fused_attention=True)
        for settings in wanted:
            models[settings.name] = tmp / f"{settings.name}.onnx"
            source = fused if settings.fused_attention else models["fp32"]
            quantize_model(source, models[settings.name], settings)

        sessions = {
            name: create_session(path, intra_op_threads=args.threads, inter_op_threads=1)
            for name, path in models.items()
        }
        accuracy = {name: _accuracy(s, ref_batches, passages, ref_vectors) for name, s in sessions.items()}
        fp32_vectors = accuracy["fp32"][0]
        timings = _latencies(sessions, query, passages, args.single_runs, args.batch_runs)
        for name, path in models.items():
            vectors, cos_ref = accuracy[name]
            cos_fp32 = np.sum(vectors * fp32_vectors, axis=1)
            single, batch = timings[name]
            rows.append(
                Row(
                    name=name,
                    size_mb=path.stat().st_size / 1e6,
                    cos_fp32_min=float(cos_fp32.min()),
                    cos_fp32_mean=float(cos_fp32.mean()),
                    cos_ref_min=float(cos_ref.min()),
                    single_p50_ms=statistics.median(single),
                    single_p95_ms=percentile(single, 95),
                    batch_p50_ms=statistics.median(batch),
                    batch_p95_ms=percentile(batch, 95),
                )
            )

    header = (
        f"{'setting':26s} {'MB':>6s} {'cos32 min':>9s} {'cos32 avg':>9s} {'cosref min':>10s} "
        f"{'1q p50':>7s} {'1q p95':>7s} {'b32 p50':>8s} {'b32 p95':>8s}   (ms)"
    )
    load1, load5, _ = os.getloadavg()
    # Other processes on a 2-core box move the absolute numbers; the load puts them in context.
    print(f"load average at end: {load1:.2f} (1 min), {load5:.2f} (5 min)\n")
    print(header)
    print("-" * len(header))
    for r in rows:
        mark = "  <- default" if r.name == DEFAULT_SETTINGS.name else ""
        print(
            f"{r.name:26s} {r.size_mb:6.1f} {r.cos_fp32_min:9.4f} {r.cos_fp32_mean:9.4f} "
            f"{r.cos_ref_min:10.4f} "
            f"{r.single_p50_ms:7.2f} {r.single_p95_ms:7.2f} {r.batch_p50_ms:8.1f} {r.batch_p95_ms:8.1f}{mark}"
        )


if __name__ == "__main__":
    main()
