"""The build lock: one builder per model folder, across processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from retrieval.encoders.build import hold_build_lock, needs_build

pytestmark = pytest.mark.unit


def test_the_build_lock_has_one_holder_at_a_time(tmp_path: Path) -> None:
    out = tmp_path / "models" / "m3e-small"
    first = hold_build_lock(out)
    assert first is not None
    assert hold_build_lock(out) is None  # a second open file description cannot take it
    os.close(first)
    again = hold_build_lock(out)
    assert again is not None
    os.close(again)


def test_a_missing_or_incomplete_folder_needs_a_build(tmp_path: Path) -> None:
    out = tmp_path / "models" / "m3e-small"
    assert needs_build(out)
    out.mkdir(parents=True)
    (out / "manifest.json").write_text("{}", encoding="utf-8")
    assert needs_build(out)
