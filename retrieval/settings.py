"""The engine's settings: `config/default.toml`, then an optional override file, then the environment.

One frozen dataclass per section so each role receives only the part it needs; a role that takes
a config object defines it (`StoreConfig`, `CacheConfig`) and this module only assembles them.
The API's own sections (address, keys, request limits) live in `search_api.settings`.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from retrieval.cache.config import CacheConfig
from retrieval.encoders.registry import DEFAULT_MODEL_ID
from retrieval.encoders.remote_config import RemoteEncoderConfig, remote_config_from_env
from retrieval.store.config import StoreConfig
from retrieval.understanding.config import UnderstandingConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "default.toml"

NAMED_ENV: Mapping[str, tuple[str, str]] = {
    "MILVUS_URI": ("store", "uri"),
    "MILVUS_TOKEN": ("store", "token"),
    "SEARCH_MODEL_CHECKPOINT": ("model", "checkpoint"),
    "REDIS_URL": ("cache", "redis_url"),
}
"""Well-known variables of the design documents and the README, mapped to (section, key)."""


@dataclass(frozen=True)
class DataSettings:
    """Where the engine keeps its state and what it ingests on start."""

    dir: Path = PROJECT_ROOT / "data"
    """All state: model builds, the Milvus Lite file, BM25 statistics, pointers, trained heads."""
    ingest_fixtures: bool = True
    fixtures: Path = PROJECT_ROOT / "fixtures" / "kb.jsonl"
    max_document_chars: int = 100_000
    """Longest document text an ingest accepts (the API and the bulk CLI alike)."""


@dataclass(frozen=True)
class ModelSettings:
    """Which checkpoint to build and how to run it."""

    checkpoint: str = ""
    precision: str = "int8"
    intra_op_threads: int = 2
    batch_window_ms: float = 0.0
    max_batch: int = 32
    allow_spinning: bool = False


@dataclass(frozen=True)
class SparseSettings:
    """jieba mode and BM25 parameters (rank-bm25's BM25Okapi defaults)."""

    mode: str = "search"
    k1: float = 1.5
    b: float = 0.75
    epsilon: float = 0.25
    reweight_drift: float = 0.05
    lexicon: tuple[str, ...] = ("fixtures/kb.jsonl",)


@dataclass(frozen=True)
class ChunkingSettings:
    """Sentence-aware chunk sizes, in characters."""

    max_chars: int = 400
    min_chars: int = 40
    head_repeats: int = 2


@dataclass(frozen=True)
class FusionSettings:
    """How the retrievers' candidates are ordered: the learned ranker or weighted RRF."""

    method: str = "learned"
    """"learned" (the LambdaRank stage; RRF when no ranker fits the encoder) or "rrf"."""
    ranker: str = ""
    """A ranker folder; empty: <data_dir>/ranking/<model id>, else the one shipped for the model."""
    k: int = 60
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    candidates: int = 100
    rank_depth: int = 0
    """How many of the RRF-fused candidates the learned stage scores (0: all of them)."""

    def __post_init__(self) -> None:
        if self.rank_depth < 0:
            raise ValueError(f"fusion.rank_depth must be >= 0, not {self.rank_depth}")
        if self.method not in ("learned", "rrf"):
            raise ValueError(f"fusion.method must be learned or rrf, not {self.method!r}")


@dataclass(frozen=True)
class RoutingSettings:
    """Intent routing: the routing table and whether to train the fixtures' head on first start."""

    enabled: bool = True
    table: Path = PROJECT_ROOT / "config" / "routing.toml"
    train_on_start: bool = True


@dataclass(frozen=True)
class Settings:
    """The engine's settings, one section per role; the API adds its own (`search_api.settings`).

    `remote_encoder` is set when EMBEDDING_PROVIDER names a remote service (ollama, openai); it
    is read from the EMBEDDING_* variables of the design documents, see
    `retrieval.encoders.factory.remote_config_from_env`.
    """

    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    store: StoreConfig = field(default_factory=StoreConfig)
    sparse: SparseSettings = field(default_factory=SparseSettings)
    chunking: ChunkingSettings = field(default_factory=ChunkingSettings)
    fusion: FusionSettings = field(default_factory=FusionSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    cache: CacheConfig = field(default_factory=CacheConfig)
    understanding: UnderstandingConfig = field(default_factory=UnderstandingConfig)
    remote_encoder: RemoteEncoderConfig | None = None

    @property
    def milvus_uri(self) -> str:
        """The store URI: a server when configured, else the Milvus Lite file in the data folder."""
        return self.store.uri or str(self.data.dir / "milvus.db")

    @property
    def model_dir(self) -> Path:
        """Where the ONNX builds of checkpoints live."""
        return self.data.dir / "models"

    @property
    def model_build_dir(self) -> Path:
        """Folder of the ONNX build of the configured checkpoint (one folder per checkpoint)."""
        return self.model_dir / (
            Path(self.model.checkpoint).name if self.model.checkpoint else DEFAULT_MODEL_ID
        )

    @property
    def collections_dir(self) -> Path:
        """Where pointer files, reindex checkpoints and write journals live."""
        return self.data.dir / "collections"


SECTIONS: Mapping[str, type[Any]] = {
    "data": DataSettings,
    "model": ModelSettings,
    "store": StoreConfig,
    "sparse": SparseSettings,
    "chunking": ChunkingSettings,
    "fusion": FusionSettings,
    "routing": RoutingSettings,
    "cache": CacheConfig,
    "understanding": UnderstandingConfig,
}
"""The engine's sections of the settings files, by name."""

_S = TypeVar("_S")


def _coerce(value: Any, to: Any, key: str) -> Any:
    """Convert a TOML or environment value to the dataclass field's type, rejecting nonsense."""
    if isinstance(value, str):
        raw = value.strip()
        if to in (bool, "bool"):
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(f"{key}: expected a boolean, got {value!r}")
        if to in (int, "int"):
            return int(raw)
        if to in (float, "float"):
            return float(raw)
        if to in (Path, "Path"):
            return _resolve_path(raw)
        if to in ("tuple[str, ...]",):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return value
    if to in (Path, "Path"):
        return _resolve_path(str(value))
    if to in ("tuple[str, ...]",):
        return tuple(str(v) for v in value)
    if to in (float, "float") and isinstance(value, int):
        return float(value)
    return value


def _resolve_path(raw: str) -> Path:
    path = Path(raw).expanduser()
    # Relative paths in config are relative to the project, not to wherever the CLI runs.
    return path if path.is_absolute() else PROJECT_ROOT / path


def _build(cls: type[_S], values: Mapping[str, Any], section: str) -> _S:
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ValueError(f"unknown setting [{section}] {key}")
        kwargs[key] = _coerce(value, fields[key].type, f"{section}.{key}")
    return cls(**kwargs)


def read_config(
    sections: Mapping[str, type[Any]],
    named_env: Mapping[str, tuple[str, str]],
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Raw values by section: the defaults, an override TOML (`SEARCH_CONFIG`), then the environment.

    Environment variables are `named_env` names or ``SEARCH_<SECTION>_<KEY>`` for a section in
    `sections`; other sections of the files are returned too, for the layer that owns them.
    """
    env = os.environ if environ is None else environ
    with DEFAULT_CONFIG.open("rb") as fh:
        merged: dict[str, dict[str, Any]] = tomllib.load(fh)
    override = config_file or (Path(env["SEARCH_CONFIG"]) if env.get("SEARCH_CONFIG") else None)
    if override is not None:
        with override.open("rb") as fh:
            for section, values in tomllib.load(fh).items():
                merged.setdefault(section, {}).update(values)
    for name, value in env.items():
        if name in named_env:
            section, key = named_env[name]
            merged.setdefault(section, {})[key] = value
        elif name.startswith("SEARCH_") and name.count("_") >= 2:
            section, _, key = name[len("SEARCH_") :].lower().partition("_")
            if section in sections and key:
                merged.setdefault(section, {})[key] = value
    return merged


def build_sections(
    sections: Mapping[str, type[Any]], merged: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Each section's dataclass built from its raw values (ValueError for an unknown key)."""
    return {name: _build(cls, merged.get(name, {}), name) for name, cls in sections.items()}


def settings_from(
    merged: Mapping[str, Mapping[str, Any]], environ: Mapping[str, str] | None = None
) -> Settings:
    """The engine's settings from raw values (`read_config`); sections of other layers are ignored."""
    env = os.environ if environ is None else environ
    return Settings(**build_sections(SECTIONS, merged), remote_encoder=remote_config_from_env(env))


def load_settings(config_file: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the defaults, an optional override TOML (`SEARCH_CONFIG`), then the environment.

    Only the engine's sections are read; the API's (`[service]`, `[search]`, `[limits]`) are
    checked by `search_api.settings.load_api_settings`, which `search-api` uses.
    """
    return settings_from(read_config(SECTIONS, NAMED_ENV, config_file, environ), environ)
