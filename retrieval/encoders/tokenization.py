"""HF ``tokenizers`` wrapper producing the int64 arrays the ONNX graph expects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Batch:
    """Padded model inputs for one batch, each ``(batch, seq)`` int64."""

    input_ids: IntArray
    attention_mask: IntArray
    token_type_ids: IntArray

    def as_feed(self) -> dict[str, IntArray]:
        """The ``input_feed`` mapping for ``InferenceSession.run``."""
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "token_type_ids": self.token_type_ids,
        }


PAD_TOKENS: tuple[str, ...] = ("[PAD]", "<pad>")
"""Padding token names of BERT (WordPiece) and SentencePiece vocabularies."""


def load_tokenizer(tokenizer_json: Path, max_length: int, pad_id: int | None = None) -> Tokenizer:
    """Load ``tokenizer.json`` with truncation at ``max_length`` and pad-to-longest batching.

    Truncation must equal the model's position-embedding count (512 for BERT) or long passages
    would index past the position table; padding to the longest item (not to max_length) keeps
    short-query batches cheap. ``pad_id`` defaults to the vocabulary's own padding token (0 if it
    has none); padded positions are masked, so this only keeps the inputs tidy.
    """
    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.enable_truncation(max_length=max_length)
    if pad_id is None:
        found = (tok.token_to_id(name) for name in PAD_TOKENS)
        pad_id = next((i for i in found if i is not None), 0)
    pad_token = tok.id_to_token(pad_id) or "[PAD]"
    tok.enable_padding(pad_id=pad_id, pad_token=pad_token)
    return tok


def encode_batch(tokenizer: Tokenizer, texts: Sequence[str]) -> Batch:
    """Tokenise ``texts`` into padded int64 arrays (special tokens added, as in training)."""
    if not texts:
        empty = np.zeros((0, 0), dtype=np.int64)
        return Batch(empty, empty.copy(), empty.copy())
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=True)
    return Batch(
        input_ids=np.asarray([e.ids for e in encodings], dtype=np.int64),
        attention_mask=np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
        token_type_ids=np.asarray([e.type_ids for e in encodings], dtype=np.int64),
    )
