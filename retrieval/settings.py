"""Settings: `config/default.toml`, then an optional override file, then environment variables.

One frozen dataclass per section so each role receives only the part it needs.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from retrieval.encoders.factory import remote_config_from_env
from retrieval.encoders.remote import RemoteEncoderConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "default.toml"

# Well-known variables (from the design documents and the README) mapped to section.key.
_NAMED_ENV: dict[str, tuple[str, str]] = {
    "SEARCH_DATA_DIR": ("service", "data_dir"),
    "SEARCH_API_HOST": ("service", "host"),
    "SEARCH_API_PORT": ("service", "port"),
    "SEARCH_API_ADMIN_KEY": ("service", "admin_key"),
    "SEARCH_API_KEYS": ("service", "api_keys"),
    "SEARCH_CORS_ORIGINS": ("service", "cors_origins"),
    "MILVUS_URI": ("store", "uri"),
    "MILVUS_TOKEN": ("store", "token"),
    "SEARCH_MODEL_CHECKPOINT": ("model", "checkpoint"),
    "REDIS_URL": ("cache", "redis_url"),
}


@dataclass(frozen=True)
class ServiceSettings:
    """Process-level settings of the API."""

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = PROJECT_ROOT / "data"
    ingest_fixtures: bool = True
    fixtures_path: Path = PROJECT_ROOT / "fixtures" / "kb.jsonl"
    # Keys stay out of reprs (and so out of any log line that prints the settings).
    admin_key: str = field(default="", repr=False)
    """Plain admin key (`SEARCH_API_ADMIN_KEY`); with `admin_key_hashes`, writes need one of them."""
    admin_key_hashes: tuple[str, ...] = field(default=(), repr=False)
    """`sha256:<hex>` digests of further admin keys (`search-api hash-key`)."""
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    """Plain search keys (`SEARCH_API_KEYS`, comma-separated); any search key makes search need one."""
    api_key_hashes: tuple[str, ...] = field(default=(), repr=False)
    """`sha256:<hex>` digests of search keys."""
    cors_origins: tuple[str, ...] = ()


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
class StoreSettings:
    """Where the Milvus collection lives."""

    uri: str = ""
    token: str = field(default="", repr=False)
    collection: str = "kb_chunks"
    timeout_s: float = 5.0
    search_timeout_s: float = 2.0
    load_timeout_s: float = 600.0
    lite_server: bool = False
    lite_index: str = "FLAT"
    ivf_nlist: int = 1024
    ivf_nprobe: int = 32


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
    """Weighted Reciprocal Rank Fusion."""

    k: int = 60
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    candidates: int = 100


@dataclass(frozen=True)
class RoutingSettings:
    """Intent routing: the routing table and whether to train the fixtures' head on first start."""

    enabled: bool = True
    table: Path = PROJECT_ROOT / "config" / "routing.toml"
    train_on_start: bool = True


@dataclass(frozen=True)
class SearchSettings:
    """Request limits."""

    max_query_chars: int = 512
    max_top_k: int = 100
    max_offset: int = 1000
    max_documents_per_request: int = 256
    max_document_chars: int = 100_000


@dataclass(frozen=True)
class LimitsSettings:
    """Rate limiting per API key, else per client address; 0 requests turns it off."""

    rate_limit: int = 0
    rate_limit_unit: str = "second"


@dataclass(frozen=True)
class CacheSettings:
    """Query cache: in-process LFU by default, Redis (shared by workers) when `redis_url` is set."""

    enabled: bool = True
    redis_url: str = ""
    ttl_s: float = 3600.0
    max_entries: int = 10_000
    semantic_threshold: float = 0.995
    socket_timeout_s: float = 0.05
    key_prefix: str = "search:cache:"


@dataclass(frozen=True)
class Settings:
    """All settings, one section per role.

    `remote_encoder` is set when EMBEDDING_PROVIDER names a remote service (ollama, openai); it
    is read from the EMBEDDING_* variables of the design documents, see
    `retrieval.encoders.factory.remote_config_from_env`.
    """

    service: ServiceSettings = field(default_factory=ServiceSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    sparse: SparseSettings = field(default_factory=SparseSettings)
    chunking: ChunkingSettings = field(default_factory=ChunkingSettings)
    fusion: FusionSettings = field(default_factory=FusionSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    remote_encoder: RemoteEncoderConfig | None = None

    @property
    def milvus_uri(self) -> str:
        """The store URI: a server when configured, else the Milvus Lite file in the data folder."""
        return self.store.uri or str(self.service.data_dir / "milvus.db")

    @property
    def model_dir(self) -> Path:
        """Where the ONNX build of the configured checkpoint lives."""
        return self.service.data_dir / "models"


_S = TypeVar("_S")

_SECTION_TYPES: dict[str, type[Any]] = {
    "service": ServiceSettings,
    "model": ModelSettings,
    "store": StoreSettings,
    "sparse": SparseSettings,
    "chunking": ChunkingSettings,
    "fusion": FusionSettings,
    "search": SearchSettings,
    "routing": RoutingSettings,
    "cache": CacheSettings,
    "limits": LimitsSettings,
}


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


def load_settings(config_file: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the defaults, an optional override TOML (`SEARCH_CONFIG`), then the environment."""
    env = os.environ if environ is None else environ
    with DEFAULT_CONFIG.open("rb") as fh:
        merged: dict[str, dict[str, Any]] = tomllib.load(fh)
    override = config_file or (Path(env["SEARCH_CONFIG"]) if env.get("SEARCH_CONFIG") else None)
    if override is not None:
        with override.open("rb") as fh:
            for section, values in tomllib.load(fh).items():
                merged.setdefault(section, {}).update(values)

    sections = _SECTION_TYPES
    for name, value in env.items():
        if name in _NAMED_ENV:
            section, key = _NAMED_ENV[name]
            merged.setdefault(section, {})[key] = value
        elif name.startswith("SEARCH_") and name.count("_") >= 2:
            section, _, key = name[len("SEARCH_") :].lower().partition("_")
            if section in sections and key:
                merged.setdefault(section, {})[key] = value

    built: dict[str, Any] = {}
    for section in sections:
        cls = _SECTION_TYPES[section]
        built[section] = _build(cls, merged.get(section, {}), section)
    unknown = set(merged) - set(sections)
    if unknown:
        raise ValueError(f"unknown settings section(s): {sorted(unknown)}")
    return Settings(**built, remote_encoder=remote_config_from_env(env))
