"""The model build cache: where it lives, what its key follows, and ensure_model's use of it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from retrieval.encoders import build as build_module
from retrieval.encoders import build_cache
from retrieval.encoders.build import INT8_NAME, MANIFEST_NAME, BuiltModel, ensure_model, needs_build


def test_the_cache_root_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(build_cache.ENV_VAR, str(tmp_path / "mine"))
    assert build_cache.cache_root() == tmp_path / "mine"
    monkeypatch.setenv(build_cache.ENV_VAR, "off")
    assert build_cache.cache_root() is None
    monkeypatch.delenv(build_cache.ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert build_cache.cache_root() == tmp_path / "xdg" / "kb-hybrid-search" / "models"


def test_the_key_changes_with_the_source_and_the_build_settings(tmp_path: Path) -> None:
    source = tmp_path / "ckpt"
    source.mkdir()
    (source / "weights.bin").write_bytes(b"1234")
    key = build_cache.cache_key("m", "int8-a", 1, source)
    assert build_cache.cache_key("m", "int8-a", 1, source) == key
    assert build_cache.cache_key("m", "int8-b", 1, source) != key
    assert build_cache.cache_key("m", "int8-a", 2, source) != key
    assert build_cache.cache_key("other", "int8-a", 1, source) != key
    (source / "weights.bin").write_bytes(b"12345")  # new weights, same name
    assert build_cache.cache_key("m", "int8-a", 1, source) != key
    assert key.startswith("m-")


def test_a_build_is_kept_and_a_fresh_folder_gets_it_without_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(build_cache.ENV_VAR, str(tmp_path / "cache"))
    said: list[str] = []
    first = ensure_model(tmp_path / "a" / "m3e-small", "m3e-small", progress=said.append)
    assert any(line.startswith("built m3e-small") for line in said)
    entries = list((tmp_path / "cache").iterdir())
    assert len(entries) == 1 and entries[0].name.startswith("m3e-small-")

    said.clear()
    out = tmp_path / "b" / "m3e-small"
    assert needs_build(out, "m3e-small")  # a fresh folder still has to be filled
    second = ensure_model(out, "m3e-small", progress=said.append)
    assert said == [f"copied m3e-small from the model cache {entries[0]}"]
    assert BuiltModel.load(out).weights_sha256 == first.weights_sha256
    # Hard links where the file system allows: the served file is the cached one.
    assert os.path.samefile(second.int8_path, entries[0] / INT8_NAME)
    assert not needs_build(out, "m3e-small")
    leftovers = [
        p.name for p in out.parent.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")
    ]
    assert leftovers == []


def test_an_incomplete_entry_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, m3e_model: BuiltModel
) -> None:
    monkeypatch.setenv(build_cache.ENV_VAR, str(tmp_path / "cache"))
    entry = build_module.cache_build(m3e_model.out_dir, "m3e-small")
    assert entry is not None and (entry / MANIFEST_NAME).is_file()
    (entry / INT8_NAME).unlink()
    (entry / INT8_NAME).write_bytes(b"truncated")  # a damaged entry: sizes no longer match

    class Built(Exception):
        pass

    def build_instead(*_args: object) -> BuiltModel:
        raise Built

    monkeypatch.setattr(build_module, "_build_unlocked", build_instead)
    with pytest.raises(Built):
        ensure_model(tmp_path / "fresh" / "m3e-small", "m3e-small")
    assert not (tmp_path / "fresh" / "m3e-small").exists()


def test_an_entry_is_not_published_for_a_build_of_something_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, m3e_model: BuiltModel
) -> None:
    monkeypatch.setenv(build_cache.ENV_VAR, str(tmp_path / "cache"))
    assert build_module.cache_build(m3e_model.out_dir, "multilingual-e5-small") is None
    monkeypatch.setenv(build_cache.ENV_VAR, "off")
    assert build_module.cache_build(m3e_model.out_dir, "m3e-small") is None
    assert not (tmp_path / "cache").exists()
