"""The torch-free export reproduces PyTorch: m3e-small against stored reference vectors, and a
tiny random BERT (written as safetensors) against a numpy forward pass."""

from __future__ import annotations

import json
import math
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from retrieval.encoders.bert_onnx import OUTPUT_HIDDEN, OUTPUT_POOLED, BertConfig
from retrieval.encoders.build import (
    INT8_NAME,
    MANIFEST_NAME,
    BuiltModel,
    build_model,
    ensure_model,
    export_fp32,
)
from retrieval.encoders.pooling import l2_normalize, mean_pool
from retrieval.encoders.registry import M3E_SMALL
from retrieval.encoders.session import create_session
from retrieval.encoders.tokenization import Batch, encode_batch, load_tokenizer

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[3]  # tests/retrieval/encoders/<this> -> root
REFERENCE = PROJECT_ROOT / ".." / "shared" / "reference" / "m3e-small-reference-vectors.json"

F64 = npt.NDArray[np.float64]


# --------------------------------------------------------------------------------------------
# m3e-small against the PyTorch reference


@pytest.fixture(scope="session")
def reference() -> dict[str, Any]:
    path = REFERENCE.resolve()
    if not path.is_file():
        pytest.fail(f"reference vectors missing: {path} (the shared folder must sit beside the project)")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    assert len(data["vectors"]) == 8
    return data


@pytest.fixture(scope="session")
def m3e(tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    """m3e-small built once per session; the build itself must stay well under a minute."""
    out = tmp_path_factory.mktemp("m3e") / "model"
    started = time.perf_counter()
    built = build_model(M3E_SMALL.checkpoint_dir(), out)
    elapsed = time.perf_counter() - started
    assert elapsed < 60, f"build took {elapsed:.1f}s"
    return built


@pytest.fixture(scope="session")
def m3e_batches(m3e: BuiltModel, reference: dict[str, Any]) -> list[Batch]:
    tok = load_tokenizer(m3e.tokenizer_path, m3e.max_length)
    return [encode_batch(tok, [v["text"]]) for v in reference["vectors"]]


def _ids(reference: dict[str, Any]) -> list[str]:
    return [f"{i}:{v['text'][:8]!r}" for i, v in enumerate(reference["vectors"])]


REF_IDX = list(range(8))


def test_manifest_describes_the_build(m3e: BuiltModel) -> None:
    manifest = json.loads((m3e.out_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["model_id"] == m3e.model_id == "m3e-small"
    assert manifest["dim"] == m3e.dim == 512
    assert manifest["max_length"] == 512
    assert manifest["licence"] == "research use only (non-commercial)"
    assert manifest["source_checkpoint"] == str(M3E_SMALL.checkpoint_dir().resolve())
    assert len(manifest["weights_sha256"]) == 64
    assert {"model.onnx", "model.int8.onnx", "tokenizer.json"} <= set(manifest["files"])
    assert manifest["quantization"]["method"] == "onnxruntime.quantization.quantize_dynamic"
    assert m3e.int8_min_cosine >= 0.99
    # Nothing but the published files is left behind (no temp dirs, no interim graphs).
    assert sorted(p.name for p in m3e.out_dir.iterdir()) == sorted([*manifest["files"], MANIFEST_NAME])
    leftovers = [p.name for p in m3e.out_dir.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == []


def test_ensure_model_reuses_a_complete_build(m3e: BuiltModel) -> None:
    again = ensure_model(m3e.out_dir)
    assert again == m3e  # same manifest, so not rebuilt


@pytest.mark.parametrize("idx", REF_IDX)
def test_token_ids_match_reference(idx: int, m3e_batches: list[Batch], reference: dict[str, Any]) -> None:
    expected = reference["vectors"][idx]["input_ids"]
    assert m3e_batches[idx].input_ids[0].tolist() == expected


@pytest.mark.parametrize("idx", REF_IDX)
def test_fp32_matches_pytorch(
    idx: int, m3e: BuiltModel, m3e_batches: list[Batch], reference: dict[str, Any]
) -> None:
    session = create_session(m3e.fp32_path)
    batch = m3e_batches[idx]
    hidden, pooled = session.run([OUTPUT_HIDDEN, OUTPUT_POOLED], batch.as_feed())
    expected = np.asarray(reference["vectors"][idx]["embedding"], dtype=np.float64)
    # Both the in-graph pooled output and numpy pooling of last_hidden_state must match.
    assert np.abs(pooled[0] - expected).max() <= 1e-4
    assert np.abs(mean_pool(hidden, batch.attention_mask)[0] - expected).max() <= 1e-4


def test_fp32_padded_batch_matches_pytorch(m3e: BuiltModel, reference: dict[str, Any]) -> None:
    """All 8 texts in one right-padded batch: padding must not leak into any row."""
    tok = load_tokenizer(m3e.tokenizer_path, m3e.max_length)
    batch = encode_batch(tok, [v["text"] for v in reference["vectors"]])
    assert batch.input_ids.shape == (8, 512)
    (pooled,) = create_session(m3e.fp32_path).run([OUTPUT_POOLED], batch.as_feed())
    expected = np.asarray([v["embedding"] for v in reference["vectors"]])
    assert np.abs(pooled - expected).max() <= 1e-4


@pytest.mark.parametrize("idx", REF_IDX)
def test_int8_cosine_to_pytorch(
    idx: int, m3e: BuiltModel, m3e_batches: list[Batch], reference: dict[str, Any]
) -> None:
    session = create_session(m3e.int8_path)
    (pooled,) = session.run([OUTPUT_POOLED], m3e_batches[idx].as_feed())
    expected = np.asarray(reference["vectors"][idx]["embedding"], dtype=np.float32)
    cosine = float(l2_normalize(pooled[0]) @ l2_normalize(expected))
    assert cosine >= 0.99


# --------------------------------------------------------------------------------------------
# a tiny random BERT written as safetensors, against a numpy forward pass


TINY_CONFIG: dict[str, Any] = {
    "_name_or_path": "someone/tiny-random-bert",
    "architectures": ["BertForMaskedLM"],
    "model_type": "bert",
    "vocab_size": 40,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 48,
    "hidden_act": "gelu",
    "max_position_embeddings": 24,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
}


def _tiny_weights(cfg: dict[str, Any], seed: int = 0) -> dict[str, npt.NDArray[np.float32]]:
    """Random weights in HF BertForMaskedLM naming (``bert.`` prefix, plus an MLM head to ignore)."""
    rng = np.random.default_rng(seed)
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]

    def rnd(*shape: int, scale: float = 0.3) -> npt.NDArray[np.float32]:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    w: dict[str, npt.NDArray[np.float32]] = {
        "bert.embeddings.word_embeddings.weight": rnd(cfg["vocab_size"], h),
        "bert.embeddings.position_embeddings.weight": rnd(cfg["max_position_embeddings"], h),
        "bert.embeddings.token_type_embeddings.weight": rnd(cfg["type_vocab_size"], h),
        "bert.embeddings.LayerNorm.weight": 1 + rnd(h, scale=0.1),
        "bert.embeddings.LayerNorm.bias": rnd(h, scale=0.1),
        "cls.predictions.bias": rnd(cfg["vocab_size"]),
    }
    for i in range(cfg["num_hidden_layers"]):
        p = f"bert.encoder.layer.{i}"
        for name, (n_out, n_in) in {
            "attention.self.query": (h, h),
            "attention.self.key": (h, h),
            "attention.self.value": (h, h),
            "attention.output.dense": (h, h),
            "intermediate.dense": (inter, h),
            "output.dense": (h, inter),
        }.items():
            w[f"{p}.{name}.weight"] = rnd(n_out, n_in, scale=1 / math.sqrt(n_in))
            w[f"{p}.{name}.bias"] = rnd(n_out, scale=0.1)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[f"{p}.{ln}.weight"] = 1 + rnd(h, scale=0.1)
            w[f"{p}.{ln}.bias"] = rnd(h, scale=0.1)
    return w


def _write_safetensors(path: Path, tensors: dict[str, npt.NDArray[np.float32]]) -> None:
    header: dict[str, Any] = {}
    chunks: list[bytes] = []
    offset = 0
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(chunks))


def _write_tiny_tokenizer(path: Path, vocab_size: int) -> None:
    """A WordPiece tokenizer over single characters, built like BERT's (special tokens first)."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list("的是一了我不人在他有这个上们来到时大地为子中你说生国年着就那和要她出也得里后自以会")
    vocab = {tok: i for i, tok in enumerate([*specials, *chars][:vocab_size])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.save(str(path))


def _layer_norm(x: F64, g: F64, b: F64, eps: float) -> F64:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    out: F64 = (x - mu) / np.sqrt(var + eps) * g + b
    return out


_erf = np.vectorize(math.erf)

ACTIVATIONS: dict[str, Callable[[F64], F64]] = {
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "gelu_new": lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))),
    "relu": lambda x: np.maximum(x, 0.0),
}


def numpy_bert(
    cfg: dict[str, Any], weights: dict[str, npt.NDArray[np.float32]], ids: Any, mask: Any, types: Any
) -> F64:
    """Reference forward pass of HF BertModel in float64 numpy (last_hidden_state)."""
    w = {k.removeprefix("bert."): v.astype(np.float64) for k, v in weights.items()}
    h, n_heads = cfg["hidden_size"], cfg["num_attention_heads"]
    d, eps = h // n_heads, cfg["layer_norm_eps"]
    b, s = ids.shape
    act = ACTIVATIONS[cfg["hidden_act"]]

    def lin(x: F64, key: str) -> F64:
        return x @ w[f"{key}.weight"].T + w[f"{key}.bias"]

    def ln(x: F64, key: str) -> F64:
        return _layer_norm(x, w[f"{key}.weight"], w[f"{key}.bias"], eps)

    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][np.arange(s)][None]
        + w["embeddings.token_type_embeddings.weight"][types]
    )
    x = ln(x, "embeddings.LayerNorm")
    ext = (1.0 - mask[:, None, None, :]) * -10000.0
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"

        def heads(t: F64) -> F64:
            return t.reshape(b, s, n_heads, d).transpose(0, 2, 1, 3)

        q = heads(lin(x, f"{p}.attention.self.query"))
        k = heads(lin(x, f"{p}.attention.self.key"))
        v = heads(lin(x, f"{p}.attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + ext
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, h)
        x = ln(lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        inter = act(lin(x, f"{p}.intermediate.dense"))
        x = ln(lin(inter, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    out: F64 = x
    return out


def _tiny_checkpoint(folder: Path, cfg: dict[str, Any]) -> dict[str, npt.NDArray[np.float32]]:
    folder.mkdir(parents=True, exist_ok=True)
    weights = _tiny_weights(cfg)
    (folder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    _write_safetensors(folder / "model.safetensors", weights)
    _write_tiny_tokenizer(folder / "tokenizer.json", cfg["vocab_size"])
    return weights


def _tiny_inputs(cfg: dict[str, Any]) -> dict[str, npt.NDArray[np.int64]]:
    """Three right-padded rows of different lengths, mixed token types."""
    rng = np.random.default_rng(1)
    lengths = [cfg["max_position_embeddings"], 9, 3]
    s = max(lengths)
    ids = rng.integers(5, cfg["vocab_size"], size=(3, s)).astype(np.int64)
    mask = np.zeros((3, s), dtype=np.int64)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
        ids[row, n:] = 0
    types = (rng.random((3, s)) < 0.3).astype(np.int64) * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


@pytest.mark.parametrize("fused_attention", [False, True], ids=["plain-onnx", "fused-attention"])
@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
def test_tiny_bert_matches_numpy_forward(tmp_path: Path, act: str, fused_attention: bool) -> None:
    cfg = {**TINY_CONFIG, "hidden_act": act}
    ckpt = tmp_path / "tiny-bert"
    weights = _tiny_checkpoint(ckpt, cfg)
    onnx_path = tmp_path / "model.onnx"
    export_fp32(ckpt, onnx_path, fused_attention=fused_attention)

    feed = _tiny_inputs(cfg)
    hidden, pooled = create_session(onnx_path).run([OUTPUT_HIDDEN, OUTPUT_POOLED], feed)
    expected = numpy_bert(cfg, weights, feed["input_ids"], feed["attention_mask"], feed["token_type_ids"])
    mask = feed["attention_mask"].astype(bool)
    # Padded positions are garbage by design (as in HF); compare the real tokens.
    assert np.abs(hidden[mask] - expected[mask]).max() <= 1e-4
    assert np.abs(pooled - mean_pool(expected, feed["attention_mask"])).max() <= 1e-4


def test_tiny_bert_full_build(tmp_path: Path) -> None:
    """build_model on a user checkpoint: safetensors in, id from the folder name, INT8 sane."""
    ckpt = tmp_path / "tiny-bert"
    weights = _tiny_checkpoint(ckpt, TINY_CONFIG)
    messages: list[str] = []
    built = build_model(ckpt, tmp_path / "out", progress=messages.append)

    assert built.model_id == "tiny-bert"
    assert built.dim == 32
    assert built.max_length == 24
    assert built.licence.startswith("unknown")
    assert messages
    assert messages[-1].startswith("built tiny-bert")
    assert (built.out_dir / INT8_NAME).is_file()
    manifest = json.loads(built.manifest_path.read_text(encoding="utf-8"))
    assert manifest["weights_file"] == "model.safetensors"

    tok = load_tokenizer(built.tokenizer_path, built.max_length)
    batch = encode_batch(tok, ["我是中国人", "你好", "的" * 100])
    assert batch.input_ids.shape[1] == 24  # truncated at max_position_embeddings
    (pooled,) = create_session(built.fp32_path).run([OUTPUT_POOLED], batch.as_feed())
    expected = numpy_bert(TINY_CONFIG, weights, batch.input_ids, batch.attention_mask, batch.token_type_ids)
    assert np.abs(pooled - mean_pool(expected, batch.attention_mask)).max() <= 1e-4

    # A different requested id is a different model: ensure_model rebuilds under that id.
    renamed = ensure_model(built.out_dir, ckpt, model_id="tiny-renamed")
    assert renamed.model_id == "tiny-renamed"


def test_unsupported_architecture_is_refused() -> None:
    with pytest.raises(ValueError, match="model_type"):
        BertConfig.from_dict({**TINY_CONFIG, "model_type": "xlm-roberta"})
    with pytest.raises(ValueError, match="position_embedding_type"):
        BertConfig.from_dict({**TINY_CONFIG, "position_embedding_type": "relative_key"})
