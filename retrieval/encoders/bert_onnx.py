"""Build a BERT encoder ONNX graph straight from ``config.json`` + numpy weights (no torch).

The graph mirrors HF ``BertModel`` op for op, laid out the way torch's exporter lays it out:

    word + position + token_type embeddings -> LayerNorm
    N x [ self-attention (scores / sqrt(d) + (1 - mask) * -10000, softmax) -> dense -> add & LN
          -> intermediate dense -> activation -> output dense -> add & LN ]

Two forms are produced from the same weights:

* plain ONNX (opset 17) - portable, and the FP32 parity artefact checked against PyTorch;
* ``fused_attention=True`` - each self-attention block is one ``com.microsoft.Attention`` node
  with packed QKV weights, i.e. what ``onnxruntime.transformers.optimizer`` would produce (that
  optimiser cannot run here: it needs sympy, which is not a dependency). Dynamic quantisation
  turns it into ``QAttention``, which measured faster than quantising the plain graph.

Inputs are int64 ``input_ids``, ``attention_mask``, ``token_type_ids`` with dynamic batch and
sequence axes. Outputs are ``last_hidden_state`` (batch, seq, hidden) and, because pooling
inside the graph saves copying the full hidden-state tensor back to Python,
``sentence_embedding`` (batch, hidden): the attention-mask-weighted mean, not normalised.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
"""17 is the first opset with ``LayerNormalization``; newer ones add nothing we use."""

MASK_VALUE = -10000.0
"""Added to scores of padded keys, as classic HF BERT does; ``exp`` of it underflows to 0 in FP32."""

SUPPORTED_ACTIVATIONS = frozenset({"gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish"})

INPUT_NAMES: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_HIDDEN = "last_hidden_state"
OUTPUT_POOLED = "sentence_embedding"


class UnsupportedModelError(ValueError):
    """The checkpoint's architecture is not a plain BERT encoder this builder can express."""


@dataclass(frozen=True, slots=True)
class BertConfig:
    """The subset of HF ``BertConfig`` that determines the encoder graph."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    pad_token_id: int
    name_or_path: str | None

    @property
    def head_dim(self) -> int:
        """Per-head width (hidden / heads)."""
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> BertConfig:
        """Validate a parsed ``config.json`` and keep the fields the graph needs."""
        model_type = cfg.get("model_type", "bert")
        if model_type != "bert":
            # RoBERTa/XLM-R offset positions by padding_idx + 1 and ERNIE adds task embeddings;
            # exporting them as BERT would silently produce wrong vectors.
            raise UnsupportedModelError(f"model_type {model_type!r} is not supported (only 'bert')")
        pos_type = cfg.get("position_embedding_type", "absolute")
        if pos_type != "absolute":
            raise UnsupportedModelError(f"position_embedding_type {pos_type!r} is not supported")
        act = str(cfg.get("hidden_act", "gelu"))
        if act not in SUPPORTED_ACTIVATIONS:
            raise UnsupportedModelError(
                f"hidden_act {act!r} is not supported ({sorted(SUPPORTED_ACTIVATIONS)})"
            )
        hidden = int(cfg["hidden_size"])
        heads = int(cfg["num_attention_heads"])
        if hidden % heads:
            raise UnsupportedModelError(f"hidden_size {hidden} is not divisible by {heads} heads")
        name = cfg.get("_name_or_path")
        return cls(
            vocab_size=int(cfg["vocab_size"]),
            hidden_size=hidden,
            num_hidden_layers=int(cfg["num_hidden_layers"]),
            num_attention_heads=heads,
            intermediate_size=int(cfg.get("intermediate_size", 4 * hidden)),
            hidden_act=act,
            max_position_embeddings=int(cfg.get("max_position_embeddings", 512)),
            type_vocab_size=int(cfg.get("type_vocab_size", 2)),
            layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
            pad_token_id=int(cfg.get("pad_token_id") or 0),
            name_or_path=str(name) if name else None,
        )

    @classmethod
    def from_file(cls, path: Path) -> BertConfig:
        """Load and validate ``config.json``."""
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise UnsupportedModelError(f"{path} is not a JSON object")
        return cls.from_dict(data)


class _GraphBuilder:
    """Accumulates nodes/initialisers with unique, readable names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        # Types of contrib-op outputs, which onnx shape inference cannot derive by itself.
        self.value_info: list[onnx.ValueInfoProto] = []

    def const(self, name: str, value: npt.NDArray[Any]) -> str:
        """Register an initialiser (weights and scalar constants alike)."""
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attrs: Any) -> str:
        """Append one single-output node; returns its output name (== node name)."""
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name


def _weight(
    weights: dict[str, npt.NDArray[Any]], key: str, shape: tuple[int, ...]
) -> npt.NDArray[np.float32]:
    """Fetch a float32 weight and check its shape against the config (catches config mismatch)."""
    try:
        arr = weights[key]
    except KeyError:
        raise UnsupportedModelError(f"checkpoint lacks weight {key}") from None
    if tuple(arr.shape) != shape:
        raise UnsupportedModelError(f"{key} has shape {tuple(arr.shape)}, config implies {shape}")
    return np.asarray(arr, dtype=np.float32)


def _activation(g: _GraphBuilder, x: str, act: str, prefix: str) -> str:
    """Emit the FFN activation in the decomposed form ORT's Gelu/FastGelu fusions match."""
    if act == "gelu":
        # Exact erf GELU: x * 0.5 * (1 + erf(x / sqrt(2))), as HF's GELUActivation.
        d = g.op("Div", [x, "const_sqrt2"], f"{prefix}/gelu/div")
        e = g.op("Erf", [d], f"{prefix}/gelu/erf")
        a = g.op("Add", [e, "const_one"], f"{prefix}/gelu/add")
        m = g.op("Mul", [x, a], f"{prefix}/gelu/mul")
        return g.op("Mul", [m, "const_half"], f"{prefix}/gelu/mul_half")
    if act in ("gelu_new", "gelu_pytorch_tanh"):
        # tanh approximation: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).
        p3 = g.op("Pow", [x, "const_three"], f"{prefix}/gelu/pow")
        c = g.op("Mul", [p3, "const_gelu_c"], f"{prefix}/gelu/mul_c")
        s = g.op("Add", [x, c], f"{prefix}/gelu/add_c")
        k = g.op("Mul", [s, "const_sqrt_2_over_pi"], f"{prefix}/gelu/mul_k")
        t = g.op("Tanh", [k], f"{prefix}/gelu/tanh")
        a = g.op("Add", [t, "const_one"], f"{prefix}/gelu/add")
        m = g.op("Mul", [x, a], f"{prefix}/gelu/mul")
        return g.op("Mul", [m, "const_half"], f"{prefix}/gelu/mul_half")
    if act == "relu":
        return g.op("Relu", [x], f"{prefix}/relu")
    # silu / swish
    sg = g.op("Sigmoid", [x], f"{prefix}/silu/sigmoid")
    return g.op("Mul", [x, sg], f"{prefix}/silu/mul")


def _linear(
    g: _GraphBuilder,
    x: str,
    weights: dict[str, npt.NDArray[Any]],
    key: str,
    n_in: int,
    n_out: int,
    prefix: str,
) -> str:
    """``x @ W.T + b``: torch Linear stores W as (out, in), MatMul wants (in, out)."""
    w = _weight(weights, f"{key}.weight", (n_out, n_in)).T
    b = _weight(weights, f"{key}.bias", (n_out,))
    mm = g.op("MatMul", [x, g.const(f"{key}.weight_t", w)], f"{prefix}/matmul")
    return g.op("Add", [mm, g.const(f"{key}.bias", b)], f"{prefix}/add")


def _layer_norm(
    g: _GraphBuilder, x: str, weights: dict[str, npt.NDArray[Any]], key: str, cfg: BertConfig
) -> str:
    """LayerNormalization over the hidden axis with the checkpoint's gamma/beta and epsilon."""
    h = cfg.hidden_size
    gamma = g.const(f"{key}.weight", _weight(weights, f"{key}.weight", (h,)))
    beta = g.const(f"{key}.bias", _weight(weights, f"{key}.bias", (h,)))
    return g.op("LayerNormalization", [x, gamma, beta], f"{key}/ln", axis=-1, epsilon=cfg.layer_norm_eps)


def _attention(
    g: _GraphBuilder, x: str, weights: dict[str, npt.NDArray[Any]], ap: str, cfg: BertConfig, ext_mask: str
) -> str:
    """Standard-ONNX multi-head self-attention, laid out exactly like torch's BERT export."""
    h = cfg.hidden_size
    q = _linear(g, x, weights, f"{ap}.query", h, h, f"{ap}/query")
    k = _linear(g, x, weights, f"{ap}.key", h, h, f"{ap}/key")
    v = _linear(g, x, weights, f"{ap}.value", h, h, f"{ap}/value")
    q4 = g.op("Reshape", [q, "const_heads_shape"], f"{ap}/query/reshape")
    k4 = g.op("Reshape", [k, "const_heads_shape"], f"{ap}/key/reshape")
    v4 = g.op("Reshape", [v, "const_heads_shape"], f"{ap}/value/reshape")
    qt = g.op("Transpose", [q4], f"{ap}/query/transpose", perm=[0, 2, 1, 3])
    kt = g.op("Transpose", [k4], f"{ap}/key/transpose", perm=[0, 2, 3, 1])
    vt = g.op("Transpose", [v4], f"{ap}/value/transpose", perm=[0, 2, 1, 3])
    scores = g.op("MatMul", [qt, kt], f"{ap}/scores/matmul")
    scaled = g.op("Div", [scores, "const_sqrt_head_dim"], f"{ap}/scores/div")
    masked = g.op("Add", [scaled, ext_mask], f"{ap}/scores/add_mask")
    probs = g.op("Softmax", [masked], f"{ap}/softmax", axis=-1)
    ctx = g.op("MatMul", [probs, vt], f"{ap}/context/matmul")
    ctx_t = g.op("Transpose", [ctx], f"{ap}/context/transpose", perm=[0, 2, 1, 3])
    return g.op("Reshape", [ctx_t, "const_hidden_shape"], f"{ap}/context/reshape")


def _fused_attention(
    g: _GraphBuilder, x: str, weights: dict[str, npt.NDArray[Any]], ap: str, cfg: BertConfig, mask_i32: str
) -> str:
    """ORT ``com.microsoft.Attention`` with packed QKV weights (what the transformer optimiser
    would produce). Dynamic quantisation turns it into ``QAttention``."""
    h = cfg.hidden_size
    ws = [_weight(weights, f"{ap}.{n}.weight", (h, h)).T for n in ("query", "key", "value")]
    bs = [_weight(weights, f"{ap}.{n}.bias", (h,)) for n in ("query", "key", "value")]
    w = g.const(f"{ap}.qkv.weight_t", np.concatenate(ws, axis=1))
    b = g.const(f"{ap}.qkv.bias", np.concatenate(bs))
    out = g.op(
        "Attention",
        [x, w, b, mask_i32],
        f"{ap}/attention",
        domain="com.microsoft",
        num_heads=cfg.num_attention_heads,
        mask_filter_value=MASK_VALUE,
    )
    g.value_info.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", "sequence", h]))
    return out


def build_bert_model(
    cfg: BertConfig,
    weights: dict[str, npt.NDArray[Any]],
    *,
    pooled_output: bool = True,
    fused_attention: bool = False,
    producer: str = "kb-hybrid-search",
) -> onnx.ModelProto:
    """Return an FP32 ONNX ``ModelProto`` computing ``BertModel(...).last_hidden_state``.

    ``weights`` are bare ``BertModel`` keys (see :func:`checkpoint.normalize_bert_keys`).
    Shapes are checked against ``cfg`` so a mismatched config fails here, not at inference.
    """
    g = _GraphBuilder()
    h, n_heads, d = cfg.hidden_size, cfg.num_attention_heads, cfg.head_dim
    f32 = np.float32

    # Shared scalar/shape constants.
    g.const("const_one", np.array(1.0, dtype=f32))
    g.const("const_half", np.array(0.5, dtype=f32))
    g.const("const_sqrt2", np.array(math.sqrt(2.0), dtype=f32))
    g.const("const_three", np.array(3.0, dtype=f32))
    g.const("const_gelu_c", np.array(0.044715, dtype=f32))
    g.const("const_sqrt_2_over_pi", np.array(math.sqrt(2.0 / math.pi), dtype=f32))
    g.const("const_mask_value", np.array(MASK_VALUE, dtype=f32))
    g.const("const_sqrt_head_dim", np.array(math.sqrt(d), dtype=f32))
    g.const("const_heads_shape", np.array([0, 0, n_heads, d], dtype=np.int64))
    g.const("const_hidden_shape", np.array([0, 0, h], dtype=np.int64))
    g.const("const_axes_0", np.array([0], dtype=np.int64))
    g.const("const_axes_1", np.array([1], dtype=np.int64))
    g.const("const_axes_2", np.array([2], dtype=np.int64))
    g.const("const_zero_i64", np.array(0, dtype=np.int64))
    g.const("const_one_i64", np.array(1, dtype=np.int64))

    # --- embeddings -------------------------------------------------------------------------
    word = g.const(
        "embeddings.word_embeddings.weight",
        _weight(weights, "embeddings.word_embeddings.weight", (cfg.vocab_size, h)),
    )
    pos = g.const(
        "embeddings.position_embeddings.weight",
        _weight(weights, "embeddings.position_embeddings.weight", (cfg.max_position_embeddings, h)),
    )
    tok_type = g.const(
        "embeddings.token_type_embeddings.weight",
        _weight(weights, "embeddings.token_type_embeddings.weight", (cfg.type_vocab_size, h)),
    )
    e_word = g.op("Gather", [word, "input_ids"], "embeddings/word/gather", axis=0)
    # position_ids = arange(seq_len)[None, :], derived from the input so any length works.
    shape = g.op("Shape", ["input_ids"], "embeddings/position/shape")
    seq_len = g.op("Gather", [shape, "const_one_i64"], "embeddings/position/seq_len", axis=0)
    rng = g.op("Range", ["const_zero_i64", seq_len, "const_one_i64"], "embeddings/position/range")
    pos_ids = g.op("Unsqueeze", [rng, "const_axes_0"], "embeddings/position/unsqueeze")
    e_pos = g.op("Gather", [pos, pos_ids], "embeddings/position/gather", axis=0)
    e_type = g.op("Gather", [tok_type, "token_type_ids"], "embeddings/token_type/gather", axis=0)
    s1 = g.op("Add", [e_word, e_type], "embeddings/add_type")
    s2 = g.op("Add", [s1, e_pos], "embeddings/add_pos")
    x = _layer_norm(g, s2, weights, "embeddings.LayerNorm", cfg)

    if fused_attention:
        # com.microsoft.Attention takes the raw (batch, seq) 0/1 mask as int32 and applies the
        # same -10000 fill internally (its default mask_filter_value).
        mask_in = g.op("Cast", ["attention_mask"], "mask/cast_i32", to=TensorProto.INT32)
    else:
        # Extended attention mask (batch, 1, 1, seq): 0 for real tokens, -10000 for padding.
        m1 = g.op("Unsqueeze", ["attention_mask", "const_axes_1"], "mask/unsqueeze1")
        m2 = g.op("Unsqueeze", [m1, "const_axes_2"], "mask/unsqueeze2")
        mf = g.op("Cast", [m2], "mask/cast", to=TensorProto.FLOAT)
        inv = g.op("Sub", ["const_one", mf], "mask/sub")
        mask_in = g.op("Mul", [inv, "const_mask_value"], "mask/mul")

    # --- encoder layers ---------------------------------------------------------------------
    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}"
        ap = f"{p}.attention.self"
        if fused_attention:
            ctx_h = _fused_attention(g, x, weights, ap, cfg, mask_in)
        else:
            ctx_h = _attention(g, x, weights, ap, cfg, mask_in)
        attn_out = _linear(
            g, ctx_h, weights, f"{p}.attention.output.dense", h, h, f"{p}.attention.output/dense"
        )
        res1 = g.op("Add", [attn_out, x], f"{p}.attention.output/residual")
        x = _layer_norm(g, res1, weights, f"{p}.attention.output.LayerNorm", cfg)
        inter = _linear(
            g, x, weights, f"{p}.intermediate.dense", h, cfg.intermediate_size, f"{p}.intermediate/dense"
        )
        act = _activation(g, inter, cfg.hidden_act, f"{p}.intermediate")
        out = _linear(g, act, weights, f"{p}.output.dense", cfg.intermediate_size, h, f"{p}.output/dense")
        res2 = g.op("Add", [out, x], f"{p}.output/residual")
        x = _layer_norm(g, res2, weights, f"{p}.output.LayerNorm", cfg)

    g.nodes.append(helper.make_node("Identity", [x], [OUTPUT_HIDDEN], name="output/last_hidden_state"))
    outputs = [helper.make_tensor_value_info(OUTPUT_HIDDEN, TensorProto.FLOAT, ["batch", "sequence", h])]

    if pooled_output:
        # Masked mean over the sequence: sum(h * m) / max(sum(m), 1). ReduceSum rather than a
        # MatMul with the mask so dynamic quantisation never touches (and distorts) pooling.
        pm = g.op("Unsqueeze", ["attention_mask", "const_axes_2"], "pool/mask/unsqueeze")
        pmf = g.op("Cast", [pm], "pool/mask/cast", to=TensorProto.FLOAT)
        weighted = g.op("Mul", [x, pmf], "pool/mul")
        summed = g.op("ReduceSum", [weighted, "const_axes_1"], "pool/sum", keepdims=0)
        count = g.op("ReduceSum", [pmf, "const_axes_1"], "pool/count", keepdims=0)
        count = g.op("Max", [count, "const_one"], "pool/count_clamp")
        pooled = g.op("Div", [summed, count], "pool/div")
        g.nodes.append(
            helper.make_node("Identity", [pooled], [OUTPUT_POOLED], name="output/sentence_embedding")
        )
        outputs.append(helper.make_tensor_value_info(OUTPUT_POOLED, TensorProto.FLOAT, ["batch", h]))

    # Constants for activations this config does not use would be dead initialisers (ORT warns).
    used = {name for node in g.nodes for name in node.input}
    initializers = [t for t in g.initializers if t.name in used]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in INPUT_NAMES]
    graph = helper.make_graph(
        g.nodes, "bert_encoder", inputs, outputs, initializer=initializers, value_info=g.value_info
    )
    opsets = [helper.make_opsetid("", OPSET)]
    if fused_attention:
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name=producer, ir_version=8)
    return model
