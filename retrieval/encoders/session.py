"""The single place where ONNX Runtime inference sessions are created.

Keeping construction here means thread counts, optimisation level and provider choice are
decided once, and the serving encoder, the build step and the benchmarks all measure the
same configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

DEFAULT_PROVIDERS: tuple[str, ...] = ("CPUExecutionProvider",)


class ProviderUnavailableError(RuntimeError):
    """A requested execution provider is not compiled into the installed onnxruntime."""


def create_session(
    model_path: Path,
    *,
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
    providers: Sequence[str] | None = None,
    allow_spinning: bool = True,
    enable_profiling: bool = False,
) -> ort.InferenceSession:
    """Open ``model_path`` with full graph optimisation and explicit thread pools.

    Thread counts are always explicit: ORT's default (one intra-op thread per core, spinning)
    fights with the asyncio event loop and with other sessions on a 2-core box, so the caller
    decides. ``0`` keeps ORT's own default for that pool. Providers are validated up front
    against ``onnxruntime.get_available_providers()`` so a typo fails loudly instead of silently
    falling back to CPU. ``allow_spinning=False`` stops idle pool threads busy-waiting after a
    run, trading a little latency for CPU left to other work (several sessions, or a busy loop).
    """
    if intra_op_threads < 0 or inter_op_threads < 0:
        raise ValueError("thread counts must be >= 0 (0 = onnxruntime default)")
    wanted = list(providers) if providers else list(DEFAULT_PROVIDERS)
    available = set(ort.get_available_providers())
    missing = [p for p in wanted if p not in available]
    if missing:
        raise ProviderUnavailableError(
            f"execution provider(s) {missing} not available; installed: {sorted(available)}"
        )
    if not model_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {model_path}")

    opts = ort.SessionOptions()
    # ALL enables the layout/transformer fusions (Attention, SkipLayerNorm, BiasGelu, ...).
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = inter_op_threads
    # Operators of one BERT layer are a strict chain; parallel execution only adds overhead.
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_profiling = enable_profiling
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    return ort.InferenceSession(str(model_path), sess_options=opts, providers=wanted)
