"""`serve`'s model build in a child process: it claims the build lock, and the engine waits for it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from retrieval.collections.specs import ensure_built_model
from retrieval.encoders.build import hold_build_lock
from retrieval.encoders.build_cache import ENV_VAR
from retrieval.settings import Settings
from search_api.model_build import BUILDING, SKIP, ModelBuild
from search_api.settings import load_api_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    # The child reads its settings from the environment, as `serve`'s child does. m3e-small, the
    # smaller model, with an empty model cache of its own: the child really builds.
    monkeypatch.setenv("SEARCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SEARCH_MODEL_CHECKPOINT", "m3e-small")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "model-cache"))
    return load_api_settings().engine


def test_the_child_builds_and_the_engine_waits_for_it_rather_than_building(fresh: Settings) -> None:
    build = ModelBuild.start(fresh, None, "INFO", "json")
    assert build is not None
    try:
        assert build.wait_claimed() == BUILDING
        said: list[str] = []
        built = ensure_built_model(fresh, said.append)  # blocks on the child's lock
        assert said == []  # nothing built here: the child's build was found complete
        assert built.int8_path.is_file() and built.model_id == "m3e-small"
        assert build.wait(timeout_s=120) == 0
    finally:
        build.stop()
    # A second start finds the build folder and starts no child.
    assert ModelBuild.start(fresh, None, "INFO", "json") is None


def test_the_child_leaves_a_build_that_another_process_holds_alone(fresh: Settings) -> None:
    fd = hold_build_lock(fresh.model_build_dir)  # another worker is building
    assert fd is not None
    try:
        build = ModelBuild.start(fresh, None, "INFO", "json")
        assert build is not None
        assert build.wait_claimed() == SKIP
        assert build.wait(timeout_s=120) == 0
        build.stop()
    finally:
        os.close(fd)
    assert not fresh.model_build_dir.exists()


def test_no_child_for_a_remote_encoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EMBEDDING_PROVIDER", "openai")
    monkeypatch.setenv("EMBEDDING_API_URL", "http://127.0.0.1:9")
    settings = load_api_settings().engine
    assert ModelBuild.start(settings, None, "INFO", "json") is None
