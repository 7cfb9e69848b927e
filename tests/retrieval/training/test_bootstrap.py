"""A first start's intent head: the shipped one when it fits the model and the knowledge base."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from retrieval.routing.router import load_router
from retrieval.settings import PROJECT_ROOT, Settings
from retrieval.training.intents.bootstrap import SHIPPED_HEADS, ensure_default_head, shipped_head
from retrieval.util import file_digest

pytestmark = pytest.mark.unit


class RefusingEncoder:
    """Has the default model's id; training would need its vectors, so it refuses to give any."""

    model_id = "m3e-small"

    def encode_queries_sync(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        raise AssertionError("a shipped head must be copied, not trained")


@pytest.mark.parametrize("model_id", ["m3e-small", "multilingual-e5-small"])
def test_the_shipped_head_records_the_files_it_was_trained_on(model_id: str) -> None:
    # Editing the training data or the knowledge base without retraining the head fails here.
    meta = json.loads((SHIPPED_HEADS / model_id / "meta.json").read_text(encoding="utf-8"))
    assert meta["embedding_model_id"] == model_id
    assert meta["kb"]["sha256"] == file_digest(PROJECT_ROOT / meta["kb"]["path"])
    for data in meta["data"]:
        assert data["sha256"] == file_digest(PROJECT_ROOT / data["path"])
    assert meta["metrics"]["report_macro_f1"] >= 0.94


def test_a_first_start_copies_the_shipped_head_and_routes_with_it(settings: Settings) -> None:
    assert ensure_default_head(settings, RefusingEncoder()) == "shipped"
    assert ensure_default_head(settings, RefusingEncoder()) == "present"
    router = load_router(settings.routing.table, model_id="m3e-small", base_dir=settings.data.dir)
    assert router.classifier is not None and "character" in router.classifier.labels


def test_no_head_ships_for_another_knowledge_base_or_model(tmp_path: Path, settings: Settings) -> None:
    other = tmp_path / "kb.jsonl"
    other.write_text('{"id": "x", "title": "某人", "text": "另一个世界。"}\n', encoding="utf-8")
    assert shipped_head("m3e-small", other) is None
    assert shipped_head("another-model", settings.data.fixtures) is None
    assert shipped_head("m3e-small", settings.data.fixtures) == SHIPPED_HEADS / "m3e-small"
    e5 = "multilingual-e5-small"
    assert shipped_head(e5, settings.data.fixtures) == SHIPPED_HEADS / e5
    # So a first start on another knowledge base trains instead of copying.
    elsewhere = dataclasses.replace(settings, data=dataclasses.replace(settings.data, fixtures=other))
    with pytest.raises(AssertionError, match="must be copied"):
        ensure_default_head(elsewhere, RefusingEncoder())
