"""A first start's intent head: the one shipped for the served model, else trained from the fixtures.

Training the fixtures' head takes a minute of CPU, so the repository ships the head the training
command writes for each model it knows (`fixtures/intents/heads/<model id>/`, with its
provenance in `PROVENANCE.md` there). A first start copies the shipped head of the served model
into the data folder; a model without one (a checkpoint of the user's own), or a knowledge base
other than the one it was trained on, gets a head trained here.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from retrieval.routing.classifier import META_FILE
from retrieval.settings import PROJECT_ROOT, Settings
from retrieval.training.intents.run import SyncEncoder, fixture_head, train_intents
from retrieval.util import file_digest

logger = logging.getLogger(__name__)

HEAD_DIR = "intents"
"""The head's folder inside the data folder (what `config/routing.toml`'s `model_dir` names)."""
SHIPPED_HEADS = PROJECT_ROOT / "fixtures" / "intents" / "heads"
"""Heads trained by `fixture_head`'s command, one folder per embedding model id."""


def shipped_head(model_id: str, kb: Path) -> Path | None:
    """The folder of the head shipped for `model_id` and knowledge base `kb`, if the repository has one.

    A head reads the names and kinds of the knowledge base it was trained with (anchors, entity
    features), so a shipped head serves only the very file it was trained on.
    """
    folder = SHIPPED_HEADS / model_id
    if not (folder / META_FILE).is_file() or not kb.is_file():
        return None
    recorded = json.loads((folder / META_FILE).read_text(encoding="utf-8")).get("kb") or {}
    return folder if recorded.get("sha256") == file_digest(kb) else None


def ensure_default_head(settings: Settings, encoder: SyncEncoder) -> str:
    """Put an intent head into the data folder unless one is there.

    Returns what happened: "present", "shipped" (copied from the repository) or "trained".
    """
    out = settings.data.dir / HEAD_DIR
    if (out / META_FILE).exists():
        return "present"
    shipped = shipped_head(encoder.model_id, settings.data.fixtures)
    if shipped is not None:
        # Copied beside, then renamed: a crash never leaves a half-copied head that looks whole.
        staging = out.with_name(f".{out.name}.copy")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(shipped, staging, ignore=shutil.ignore_patterns("PROVENANCE.md"))
        staging.rename(out)
        logger.info("intent head for %s copied from %s", encoder.model_id, shipped)
        return "shipped"
    logger.info("no intent head ships for %s: training one from the fixtures", encoder.model_id)
    train_intents(fixture_head(out, settings.data.fixtures), encoder, log=logger.info)
    return "trained"
