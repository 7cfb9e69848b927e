"""Engine wiring of the local model: a registered model named in settings, its text prefixes."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.collections.specs import ensure_built_model, local_encoder
from retrieval.encoders.build import BuiltModel
from retrieval.settings import Settings, load_settings

pytestmark = pytest.mark.integration


async def test_settings_naming_e5_give_an_encoder_with_its_prefixes(
    tmp_path: Path, e5_model: BuiltModel
) -> None:
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    (data / "models" / "multilingual-e5-small").symlink_to(
        e5_model.out_dir.resolve(), target_is_directory=True
    )
    settings = load_settings(
        environ={"SEARCH_DATA_DIR": str(data), "SEARCH_MODEL_CHECKPOINT": "multilingual-e5-small"}
    )
    assert settings.model_build_dir == data / "models" / "multilingual-e5-small"
    built = ensure_built_model(settings)  # the complete build is reused, not rebuilt
    assert built.manifest_path.resolve() == e5_model.manifest_path.resolve()
    encoder = local_encoder(settings, built)
    assert (encoder.query_prefix, encoder.passage_prefix) == ("query: ", "passage: ")
    assert encoder.model_id == "multilingual-e5-small"
    await encoder.close()


async def test_m3e_encoder_has_no_prefixes(settings: Settings, m3e_model: BuiltModel) -> None:
    encoder = local_encoder(settings, m3e_model)
    assert (encoder.query_prefix, encoder.passage_prefix) == ("", "")
    await encoder.close()
