"""Settings: TOML defaults, override file, environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.settings import load_settings


@pytest.mark.unit
def test_environment_overrides_toml(tmp_path: Path) -> None:
    override = tmp_path / "o.toml"
    override.write_text("[fusion]\nk = 10\n[store]\ncollection = 'other'\n")
    s = load_settings(
        override,
        environ={"SEARCH_DATA_DIR": str(tmp_path), "SEARCH_FUSION_K": "30", "MILVUS_URI": "http://h:19530"},
    )
    assert s.fusion.k == 30 and s.store.collection == "other"
    assert s.data.dir == tmp_path
    assert s.milvus_uri == "http://h:19530"
    assert load_settings(environ={"SEARCH_DATA_DIR": str(tmp_path)}).milvus_uri == str(tmp_path / "milvus.db")


@pytest.mark.unit
def test_bad_values_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid literal"):
        load_settings(environ={"SEARCH_FUSION_K": "many"})
    bad = tmp_path / "bad.toml"
    bad.write_text("[fusion]\nkk = 1\n")
    with pytest.raises(ValueError, match="unknown setting"):
        load_settings(bad, environ={})


@pytest.mark.unit
def test_rank_depth_reads_from_the_environment_and_refuses_negatives(tmp_path: Path) -> None:
    environ = {"SEARCH_DATA_DIR": str(tmp_path), "SEARCH_FUSION_RANK_DEPTH": "60"}
    assert load_settings(environ=environ).fusion.rank_depth == 60
    with pytest.raises(ValueError, match="rank_depth"):
        load_settings(environ={**environ, "SEARCH_FUSION_RANK_DEPTH": "-1"})
