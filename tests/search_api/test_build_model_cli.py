"""`search-api build-model` for a registered model: by --model, or by SEARCH_MODEL_CHECKPOINT."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.encoders.build import BuiltModel
from search_api.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def data_dir(tmp_path: Path, e5_model: BuiltModel, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder whose model folder is the session's e5 build (linked: it is 600 MB)."""
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    (data / "models" / "multilingual-e5-small").symlink_to(
        e5_model.out_dir.resolve(), target_is_directory=True
    )
    monkeypatch.setenv("SEARCH_DATA_DIR", str(data))
    monkeypatch.delenv("SEARCH_MODEL_CHECKPOINT", raising=False)
    return data


def test_model_flag_uses_that_models_folder(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build-model", "--model", "multilingual-e5-small"]) == 0
    out = capsys.readouterr().out
    assert f"model multilingual-e5-small (dim 384) in {data_dir / 'models' / 'multilingual-e5-small'}" in out
    assert "prefixes: query 'query: ', passage 'passage: '" in out
    assert "licence: MIT" in out


def test_configured_checkpoint_may_name_a_registered_model(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCH_MODEL_CHECKPOINT", "multilingual-e5-small")
    assert main(["build-model"]) == 0
    assert f"in {data_dir / 'models' / 'multilingual-e5-small'}" in capsys.readouterr().out


def test_model_and_checkpoint_are_exclusive(data_dir: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["build-model", "--model", "multilingual-e5-small", "--checkpoint", str(data_dir)])
    assert exc.value.code == 2
