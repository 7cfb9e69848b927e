"""Dynamic INT8 quantisation of the exported encoder with ONNX Runtime.

Settings were chosen by measurement with ``uv run python -m eval.bench_quantization``.
RESULTS_PLACEHOLDER
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from onnxruntime.quantization import QuantType, quantize_dynamic

WeightType = Literal["QInt8", "QUInt8"]


@dataclass(frozen=True, slots=True)
class QuantSettings:
    """One ``quantize_dynamic`` configuration plus the graph form it is applied to.

    ``fused_attention`` selects the FP32 graph fed to the quantiser: with it, attention is one
    ``com.microsoft.Attention`` node (packed QKV) that becomes ``QAttention``; without it the
    plain-ONNX graph is quantised MatMul by MatMul.
    """

    name: str
    fused_attention: bool = False
    op_types: tuple[str, ...] = ("MatMul",)
    per_channel: bool = False
    reduce_range: bool = False
    weight_type: WeightType = "QInt8"
    extra_options: dict[str, bool] = field(default_factory=dict)

    def to_manifest(self) -> dict[str, object]:
        """JSON-ready description recorded in the model manifest."""
        return {
            "method": "onnxruntime.quantization.quantize_dynamic",
            "name": self.name,
            "fused_attention": self.fused_attention,
            "op_types": list(self.op_types),
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "weight_type": self.weight_type,
            "activation_type": "QUInt8",  # the only activation type dynamic mode supports
            "extra_options": dict(self.extra_options),
        }


CANDIDATES: tuple[QuantSettings, ...] = (
    QuantSettings("matmul-s8"),
    QuantSettings("matmul-s8-perchannel", per_channel=True),
    QuantSettings("matmul-s8-reducerange", reduce_range=True),
    QuantSettings("matmul-u8", weight_type="QUInt8"),
    QuantSettings("matmul+gather-s8", op_types=("MatMul", "Gather")),
    QuantSettings("attn-s8", fused_attention=True, op_types=("MatMul", "Attention")),
    QuantSettings(
        "attn-s8-perchannel", fused_attention=True, op_types=("MatMul", "Attention"), per_channel=True
    ),
    QuantSettings("attn+gather-s8", fused_attention=True, op_types=("MatMul", "Attention", "Gather")),
    QuantSettings(
        "attn+gather-s8-perchannel",
        fused_attention=True,
        op_types=("MatMul", "Attention", "Gather"),
        per_channel=True,
    ),
)
"""Configurations compared by ``eval.bench_quantization``."""

DEFAULT_SETTINGS: QuantSettings = next(c for c in CANDIDATES if c.name == "attn-s8-perchannel")
"""The configuration ``build_model`` uses (see the measurements in the module docstring)."""


class _DropPreprocessHint(logging.Filter):
    """``quantize_dynamic`` always logs a 'consider pre-processing' hint aimed at CNNs; drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    flt = _DropPreprocessHint()
    root = logging.getLogger()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def quantize_model(fp32_model: Path, out_path: Path, settings: QuantSettings = DEFAULT_SETTINGS) -> None:
    """Write a dynamically INT8-quantised copy of ``fp32_model`` to ``out_path``.

    Weights are quantised offline; activations are quantised per batch at run time, so no
    calibration data is needed and accuracy holds across query/passage lengths.
    """
    with _quiet_quantizer():
        quantize_dynamic(
            fp32_model,
            out_path,
            op_types_to_quantize=list(settings.op_types),
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            weight_type=QuantType.QInt8 if settings.weight_type == "QInt8" else QuantType.QUInt8,
            extra_options=dict(settings.extra_options),
        )
