"""Train the intent head from labelled utterances and a knowledge base, and score it.

`train_intents` is the one way to train a head: `search-api intents train` calls it with its
command-line options, and a first start calls it with `FIXTURE_HEAD` when no head ships for the
configured model. Vectors come from the encoder the engine serves with, and the head records that
model's id: loading it under another model fails instead of routing on meaningless vectors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from retrieval.documents import Document, lexicon_from, read_jsonl
from retrieval.routing.classifier import IntentClassifier, KindAnchors
from retrieval.routing.features import QueryFeatures
from retrieval.settings import PROJECT_ROOT
from retrieval.training.intents.augment import EntityProtectingEda
from retrieval.training.intents.dataset import (
    frame_utterances,
    kb_names,
    quote_utterances,
    read_labelled,
    read_texts,
)
from retrieval.training.intents.report import ClassificationReport, macro_f1
from retrieval.training.intents.train import TrainConfig, config_dict, train_ensemble
from retrieval.util import file_digest


class SyncEncoder(Protocol):
    """What training needs of an encoder: its id and blocking batch encoding."""

    @property
    def model_id(self) -> str:
        """The model id recorded with the head."""
        ...

    def encode_queries_sync(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed texts as queries, blocking."""
        ...


@dataclass(frozen=True)
class IntentTraining:
    """Everything one training run reads; recorded with the head it writes."""

    data: tuple[Path, ...]
    """JSON Lines {text, label} files."""
    out: Path
    kb: Path
    """The knowledge base the generated utterances, anchors and entity features come from."""
    config: TrainConfig = field(default_factory=TrainConfig)
    eval_data: Path | None = None
    """A labelled file to report on (default: member 0's validation split)."""
    holdout: tuple[Path, ...] = ()
    """JSON Lines with `text`: nothing generated from the KB may mention what these mention."""
    lexicon: tuple[Path, ...] = ()
    """Names EDA augmentation must keep whole."""
    members: int = 15
    val_fraction: float = 0.15
    augment: int = 0
    frames: int = 3
    quotes: int = 100
    anchors: bool = True
    ngram_buckets: int = 2048
    ngram_max: int = 2
    ngram_boundaries: bool = True
    entity_kinds: bool = True

    def __post_init__(self) -> None:
        if (
            min(self.augment, self.frames, self.quotes, self.ngram_buckets) < 0
            or min(self.members, self.ngram_max) < 1
        ):
            raise ValueError("augment, frames, quotes, ngram_buckets must be >= 0; members, ngram_max >= 1")
        if self.members > 1 and self.config.hidden:
            raise ValueError("members > 1 averages linear heads; use hidden 0 or members 1")


FIXTURES = PROJECT_ROOT / "fixtures"
FIXTURE_HEAD_DATA = (FIXTURES / "intents" / "train.jsonl",)
FIXTURE_HEAD_EVAL = FIXTURES / "intents" / "test.jsonl"
FIXTURE_HEAD_HOLDOUT = (FIXTURES / "intents" / "test.jsonl", FIXTURES / "queries.jsonl")


def fixture_head(out: Path, kb: Path) -> IntentTraining:
    """The fixtures' head, as `fixtures/intents/README.md` trains it (deterministic)."""
    return IntentTraining(
        data=FIXTURE_HEAD_DATA,
        out=out,
        kb=kb,
        eval_data=FIXTURE_HEAD_EVAL,
        holdout=FIXTURE_HEAD_HOLDOUT,
        config=TrainConfig(patience=60, input_dropout=0.6),
    )


@dataclass(frozen=True)
class TrainedHead:
    """What a run wrote and how the head scored."""

    classifier: IntentClassifier
    report: ClassificationReport
    report_files: list[Path]
    meta: dict[str, Any]


def predictions_report(
    classifier: IntentClassifier,
    vectors: npt.NDArray[np.float32],
    texts: Sequence[str],
    truth: Sequence[str],
    source: str,
) -> tuple[ClassificationReport, dict[str, Any]]:
    """FP32 report plus the INT8 head's macro-F1 and agreement; labels outside the model count as misses."""
    labels = list(classifier.labels)
    unknown = sorted({t for t in truth if t not in labels})
    all_labels = labels + unknown  # a label the model never learned still counts against it
    y = np.array([all_labels.index(t) for t in truth], dtype=np.int64)
    fp32, _ = classifier.predict(vectors, texts)
    int8, _ = classifier.quantized().predict(vectors, texts)
    extra: dict[str, Any] = {
        "int8_macro_f1": round(macro_f1(y, int8, len(all_labels)), 4),
        "int8_argmax_agreement": round(float((fp32 == int8).mean()), 4),
    }
    if unknown:
        extra["labels_unknown_to_model"] = unknown
    report = ClassificationReport.build(y, fp32, all_labels, source=source, extra=extra)
    return report, extra


def _text_features(run: IntentTraining, documents: Sequence[Document]) -> QueryFeatures | None:
    # KB kinds of the names in the query (when a KB is read) and cue n-grams around them.
    if documents and run.entity_kinds:
        names, kinds = kb_names(documents)
        return QueryFeatures.from_names(
            names, kinds, buckets=run.ngram_buckets, max_n=run.ngram_max, boundaries=run.ngram_boundaries
        )
    if run.ngram_buckets:
        return QueryFeatures({}, run.ngram_buckets, run.ngram_max, run.ngram_boundaries)
    return None


def train_intents(run: IntentTraining, encoder: SyncEncoder, log: Any = print) -> TrainedHead:
    """Train, save the head into `run.out`, and write its report into `run.out/report`."""
    started = time.perf_counter()
    config = run.config
    rows = [row for path in run.data for row in read_labelled(path)]
    holdout = [t for path in run.holdout for t in read_texts(path)]
    eval_rows = read_labelled(run.eval_data) if run.eval_data else []
    labels = sorted({r.label for r in rows})
    if len(labels) < 2:
        raise ValueError("need at least two labels")
    index = {label: i for i, label in enumerate(labels)}

    variants: list[str] = []
    variant_of: list[int] = []
    if run.augment:
        eda = EntityProtectingEda(lexicon_from([p for p in run.lexicon if p.exists()]), seed=config.seed)
        for i, row in enumerate(rows):
            for text in eda.augment(row.text, run.augment):
                variants.append(text)
                variant_of.append(i)
    uses_kb = run.frames or run.quotes or run.anchors or run.entity_kinds
    documents = list(read_jsonl(run.kb)) if uses_kb else []
    # Generated utterances must not mirror held-out queries (the test file, the judged queries).
    generated = frame_utterances(documents, per_frame=run.frames, exclude=holdout, seed=config.seed)
    if run.quotes:
        generated += quote_utterances(documents, count=run.quotes, exclude=holdout, seed=config.seed)
    generated = [g for g in generated if g.label in index]
    log(
        f"{len(rows)} labelled utterances, {len(variants)} EDA variants, {len(generated)} generated "
        f"from the KB, {len(labels)} intents, {run.members} member(s)"
    )

    t0 = time.perf_counter()
    x_rows = encoder.encode_queries_sync([r.text for r in rows])
    x_variants = encoder.encode_queries_sync(variants)
    x_generated = encoder.encode_queries_sync([g.text for g in generated])
    anchors = None
    if run.anchors:
        names, kinds = kb_names(documents)
        anchors = KindAnchors.build(encoder.encode_queries_sync(names), kinds)
    embed_s = time.perf_counter() - t0
    features = _text_features(run, documents)

    result = train_ensemble(
        x_rows,
        np.array([index[r.label] for r in rows], dtype=np.int64),
        labels,
        model_id=encoder.model_id,
        config=config,
        members=run.members,
        val_fraction=run.val_fraction,
        x_variants=x_variants,
        variant_of=np.array(variant_of, dtype=np.int64),
        x_extra=x_generated,
        y_extra=np.array([index[g.label] for g in generated], dtype=np.int64),
        anchors=anchors,
        features=features,
        texts_labelled=[r.text for r in rows],
        texts_variants=variants,
        texts_extra=[g.text for g in generated],
    )
    classifier = result.classifier
    member_f1 = [m.best_val_macro_f1 for m in result.members]
    log(
        f"trained in {result.seconds:.1f}s; member validation macro-F1 "
        f"{', '.join(f'{f:.4f}' for f in member_f1 if f is not None)}"
    )

    if eval_rows:
        source = str(run.eval_data)
        report, extra = predictions_report(
            classifier,
            encoder.encode_queries_sync([r.text for r in eval_rows]),
            [r.text for r in eval_rows],
            [r.label for r in eval_rows],
            source,
        )
    else:
        # Every member but the first trained on the first member's validation rows, so only the
        # first member may be scored on them.
        val = result.validation_splits[0]
        source = "validation split of member 0 (member 0 alone)"
        report, extra = predictions_report(
            result.members[0].classifier,
            x_rows[val],
            [rows[i].text for i in val],
            [rows[i].label for i in val],
            source,
        )

    meta = {
        "gamma": config.gamma,
        "seed": config.seed,
        "train_config": config_dict(config),
        "members": run.members,
        "val_fraction": run.val_fraction,
        "intents": labels,
        "data": [{"path": _shown(p), "sha256": file_digest(p)} for p in run.data],
        "kb": {"path": _shown(run.kb), "sha256": file_digest(run.kb)} if documents else None,
        "holdout": [_shown(p) for p in run.holdout],
        "augment": run.augment,
        "frames": run.frames,
        "quotes": run.quotes,
        "anchors": anchors is not None,
        "ngram_buckets": run.ngram_buckets,
        "ngram_max": run.ngram_max,
        "ngram_boundaries": run.ngram_boundaries,
        "entity_kinds": features is not None and bool(features.kinds),
        "samples": {
            "labelled": len(rows),
            "eda_variants": len(variants),
            "generated": len(generated),
            "anchor_names": 0 if anchors is None else int(anchors.vectors.weight.shape[0]),
        },
        "metrics": {
            "member_validation_macro_f1": member_f1,
            "mean_validation_macro_f1": result.mean_val_macro_f1,
            "member_best_epochs": [m.best_epoch for m in result.members],
            "report_source": source,
            "report_macro_f1": report.macro_f1,
            "report_accuracy": report.accuracy,
            "report_per_class_f1": {c.label: round(c.f1, 4) for c in report.per_class},
            **extra,
        },
        "timing_s": {
            "embed": round(embed_s, 2),
            "train": round(result.seconds, 2),
            "total": round(time.perf_counter() - started, 2),
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    classifier.save(run.out, meta)
    history = [[h.__dict__ for h in m.history] for m in result.members]
    (run.out / "history.json").write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    files = report.write(run.out / "report", title=f"Intent classification ({source})")
    return TrainedHead(classifier, report, files, meta)


def _shown(path: Path) -> str:
    """A path as recorded in the head: relative to the project when inside it (the same on every clone)."""
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
