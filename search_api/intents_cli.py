"""`search-api intents ...`: train, apply and evaluate the intent classifier of the router.

    intents train   --data fixtures/intents/train.jsonl --out data/intents \\
                    --eval-data fixtures/intents/test.jsonl \\
                    --holdout fixtures/intents/test.jsonl --holdout fixtures/queries.jsonl
    intents predict --model data/intents --data in.jsonl --out out.jsonl
    intents eval    --model data/intents --data fixtures/intents/test.jsonl [--out DIR]

Input lines are ``{"text", "label"}`` (``predict`` needs only ``text``). Vectors come from the
configured embedding model (the one the pipeline uses), and the trained head records that
model's id: loading it under another model fails instead of routing on meaningless vectors.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.settings import PROJECT_ROOT, Settings, load_settings

DEFAULT_OUT = "data/intents"


def add_intents_commands(subparsers: Any) -> None:
    """Add `intents train|predict|eval` to an argparse subparsers object (`func(args, settings)`)."""
    intents = subparsers.add_parser("intents", help="train, apply and evaluate the intent classifier")
    sub = intents.add_subparsers(dest="intents_command", required=True)

    train = sub.add_parser("train", help="train the intent head on labelled utterances")
    train.add_argument("--data", action="append", required=True, help="JSON Lines {text,label}; repeatable")
    train.add_argument("--out", default=DEFAULT_OUT, help=f"model folder (default {DEFAULT_OUT})")
    train.add_argument("--eval-data", help="labelled file to report on (default: the validation split)")
    train.add_argument("--gamma", type=float, default=0.0, help="focal-loss gamma; 0 = cross-entropy")
    train.add_argument("--epochs", type=int, default=300)
    train.add_argument("--patience", type=int, default=60, help="early stopping on validation macro-F1")
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--learning-rate", type=float, default=3e-3)
    train.add_argument("--weight-decay", type=float, default=1e-3)
    train.add_argument("--hidden", type=int, default=0, help="hidden units; 0 = linear softmax head")
    train.add_argument("--dropout", type=float, default=0.0, help="dropout on the hidden layer")
    train.add_argument("--input-dropout", type=float, default=0.6)
    train.add_argument(
        "--class-weighting", default="inverse_sqrt", choices=("none", "inverse", "inverse_sqrt", "effective")
    )
    train.add_argument("--val-fraction", type=float, default=0.15)
    train.add_argument(
        "--members", type=int, default=15, help="linear heads on different splits, averaged into one"
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--augment", type=int, default=0, help="EDA variants per training utterance")
    train.add_argument("--frames", type=int, default=3, help="utterances per KB question frame (0: none)")
    train.add_argument("--quotes", type=int, default=100, help="verbatim KB spans added as quotes")
    train.add_argument("--kb", help="knowledge base JSON Lines (default: the configured fixtures file)")
    train.add_argument(
        "--no-anchors", action="store_true", help="no KB anchor (max-cosine per kind) features"
    )
    train.add_argument(
        "--ngram-buckets",
        type=int,
        default=2048,
        help="hashed character n-gram buckets of the query text (0: no n-gram features)",
    )
    train.add_argument("--ngram-max", type=int, default=2, help="longest character n-gram hashed")
    train.add_argument(
        "--ngram-boundaries",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mark the query's start and end in the n-grams",
    )
    train.add_argument(
        "--no-entity-kinds", action="store_true", help="no counts of the KB kinds named in the query text"
    )
    train.add_argument(
        "--holdout",
        action="append",
        default=[],
        help="JSON Lines with `text`: nothing generated from the KB may mention what these mention",
    )
    train.set_defaults(func=cmd_intents_train)

    predict = sub.add_parser("predict", help="label every line of a file")
    predict.add_argument("--model", default=DEFAULT_OUT)
    predict.add_argument("--data", required=True, help="JSON Lines with `text`")
    predict.add_argument("--out", required=True, help="JSON Lines {text,label,confidence}, input order")
    predict.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    predict.set_defaults(func=cmd_intents_predict)

    evaluate = sub.add_parser("eval", help="score the model on a labelled file and print the report")
    evaluate.add_argument("--model", default=DEFAULT_OUT)
    evaluate.add_argument("--data", required=True, help="JSON Lines {text,label}")
    evaluate.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    evaluate.add_argument("--out", help="also write report.json/.md, confusion.json/.png here")
    evaluate.set_defaults(func=cmd_intents_eval)


# -- helpers -------------------------------------------------------------------------------------


def _encoder(settings: Settings) -> Any:
    from retrieval.engine import ensure_built_model, local_encoder

    return local_encoder(settings, ensure_built_model(settings, progress=print))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kb_path(args: argparse.Namespace, settings: Settings) -> Path:
    return Path(args.kb) if args.kb else settings.service.fixtures_path


def _predictions_report(
    classifier: Any, vectors: np.ndarray, texts: Sequence[str], truth: Sequence[str], source: str
) -> tuple[Any, dict[str, Any]]:
    """fp32 report plus the INT8 head's macro-F1 and agreement, labels outside the model counted as misses."""
    from retrieval.routing.report import ClassificationReport, macro_f1

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


# -- commands ------------------------------------------------------------------------------------


DEFAULT_TRAINING = (
    "--data", "fixtures/intents/train.jsonl",
    "--eval-data", "fixtures/intents/test.jsonl",
    "--holdout", "fixtures/intents/test.jsonl",
    "--holdout", "fixtures/queries.jsonl",
)  # fmt: skip


def ensure_default_head(settings: Settings, out: Path) -> bool:
    """Train the fixtures' intent head into `out` unless one is there (serve's first start).

    Same command as fixtures/intents/README.md; deterministic. Returns whether it trained.
    """
    if (out / "meta.json").exists():
        return False
    parser = argparse.ArgumentParser()
    add_intents_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["intents", "train", *DEFAULT_TRAINING, "--out", str(out)])
    with contextlib.chdir(PROJECT_ROOT):
        code = cmd_intents_train(args, settings)
    if code != 0:
        raise RuntimeError(f"training the intent head failed with exit code {code}")
    return True


def cmd_intents_train(args: argparse.Namespace, settings: Settings) -> int:
    """Train, save the head into --out, and write the report into --out/report."""
    from retrieval.documents import lexicon_from, read_jsonl
    from retrieval.engine import lexicon_paths
    from retrieval.routing.augment import EntityProtectingEda
    from retrieval.routing.classifier import KindAnchors, TrainConfig, config_dict, train_ensemble
    from retrieval.routing.dataset import (
        frame_utterances,
        kb_names,
        quote_utterances,
        read_labelled,
        read_texts,
    )
    from retrieval.routing.features import QueryFeatures

    started = time.perf_counter()
    try:
        config = TrainConfig(
            hidden=args.hidden,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            weight_decay=args.weight_decay,
            dropout=args.dropout,
            input_dropout=args.input_dropout,
            gamma=args.gamma,
            class_weighting=args.class_weighting,
            patience=args.patience,
            seed=args.seed,
        )
        if (
            min(args.augment, args.frames, args.quotes, args.ngram_buckets) < 0
            or min(args.members, args.ngram_max) < 1
        ):
            raise ValueError(
                "--augment, --frames, --quotes, --ngram-buckets must be >= 0; --members, --ngram-max >= 1"
            )
        if args.members > 1 and args.hidden:
            raise ValueError("--members > 1 averages linear heads; use --hidden 0 or --members 1")
        rows = [row for path in args.data for row in read_labelled(Path(path))]
        holdout = [t for path in args.holdout for t in read_texts(Path(path))]
        eval_rows = read_labelled(Path(args.eval_data)) if args.eval_data else []
    except (OSError, ValueError) as exc:
        print(f"intents train: {exc}", file=sys.stderr)
        return 2
    labels = sorted({r.label for r in rows})
    if len(labels) < 2:
        print("intents train: need at least two labels", file=sys.stderr)
        return 2
    index = {label: i for i, label in enumerate(labels)}

    variants: list[str] = []
    variant_of: list[int] = []
    if args.augment:
        words = lexicon_from([p for p in lexicon_paths(settings) if p.exists()])
        eda = EntityProtectingEda(words, seed=args.seed)
        for i, row in enumerate(rows):
            for text in eda.augment(row.text, args.augment):
                variants.append(text)
                variant_of.append(i)
    kb = _kb_path(args, settings)
    uses_kb = args.frames or args.quotes or not args.no_anchors or not args.no_entity_kinds
    documents = list(read_jsonl(kb)) if uses_kb else []
    # Generated utterances must not mirror held-out queries (the test file, the judged queries).
    generated = frame_utterances(documents, per_frame=args.frames, exclude=holdout, seed=args.seed)
    if args.quotes:
        generated += quote_utterances(documents, count=args.quotes, exclude=holdout, seed=args.seed)
    generated = [g for g in generated if g.label in index]
    print(
        f"{len(rows)} labelled utterances, {len(variants)} EDA variants, {len(generated)} generated "
        f"from the KB, {len(labels)} intents, {args.members} member(s)",
        flush=True,
    )

    encoder = _encoder(settings)
    t0 = time.perf_counter()
    x_rows = encoder.encode_queries_sync([r.text for r in rows])
    x_variants = encoder.encode_queries_sync(variants)
    x_generated = encoder.encode_queries_sync([g.text for g in generated])
    anchors = None
    if not args.no_anchors:
        names, kinds = kb_names(documents)
        anchors = KindAnchors.build(encoder.encode_queries_sync(names), kinds)
    embed_s = time.perf_counter() - t0
    # Text features: KB kinds of the names in the query (when a KB is read) and cue n-grams.
    features = None
    if documents and not args.no_entity_kinds:
        names, kinds = kb_names(documents)
        features = QueryFeatures.from_names(
            names, kinds, buckets=args.ngram_buckets, max_n=args.ngram_max, boundaries=args.ngram_boundaries
        )
    elif args.ngram_buckets:
        features = QueryFeatures({}, args.ngram_buckets, args.ngram_max, args.ngram_boundaries)

    result = train_ensemble(
        x_rows,
        np.array([index[r.label] for r in rows], dtype=np.int64),
        labels,
        model_id=encoder.model_id,
        config=config,
        members=args.members,
        val_fraction=args.val_fraction,
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
    print(
        f"trained in {result.seconds:.1f}s; member validation macro-F1 "
        f"{', '.join(f'{f:.4f}' for f in member_f1 if f is not None)}",
        flush=True,
    )

    if eval_rows:
        eval_vectors = encoder.encode_queries_sync([r.text for r in eval_rows])
        report, extra = _predictions_report(
            classifier,
            eval_vectors,
            [r.text for r in eval_rows],
            [r.label for r in eval_rows],
            args.eval_data,
        )
        source = str(args.eval_data)
    else:
        # Every member but the first trained on the first member's validation rows, so only the
        # first member may be scored on them.
        val = result.validation_splits[0]
        source = "validation split of member 0 (member 0 alone)"
        report, extra = _predictions_report(
            result.members[0].classifier,
            x_rows[val],
            [rows[i].text for i in val],
            [rows[i].label for i in val],
            source,
        )

    out = Path(args.out)
    meta = {
        "gamma": config.gamma,
        "seed": config.seed,
        "train_config": config_dict(config),
        "members": args.members,
        "val_fraction": args.val_fraction,
        "intents": labels,
        "data": [{"path": str(p), "sha256": _sha256(Path(p))} for p in args.data],
        "kb": {"path": str(kb), "sha256": _sha256(kb)} if documents else None,
        "holdout": list(args.holdout),
        "augment": args.augment,
        "frames": args.frames,
        "quotes": args.quotes,
        "anchors": anchors is not None,
        "ngram_buckets": args.ngram_buckets,
        "ngram_max": args.ngram_max,
        "ngram_boundaries": args.ngram_boundaries,
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
    classifier.save(out, meta)
    history = [[h.__dict__ for h in m.history] for m in result.members]
    (out / "history.json").write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    title = f"Intent classification ({source})"
    files = report.write(out / "report", title=title)
    print(report.to_markdown(title))
    print(f"model written to {out}; report: {', '.join(str(f) for f in files)}")
    return 0


def _load(args: argparse.Namespace, settings: Settings) -> tuple[Any, Any]:
    from retrieval.routing.classifier import IntentClassifier

    encoder = _encoder(settings)
    classifier = IntentClassifier.load(Path(args.model), model_id=encoder.model_id, precision=args.precision)
    return encoder, classifier


def cmd_intents_predict(args: argparse.Namespace, settings: Settings) -> int:
    """Write one {text,label,confidence} line per input line, in input order."""
    from retrieval.routing.dataset import read_texts

    try:
        texts = read_texts(Path(args.data))
        encoder, classifier = _load(args, settings)
    except (OSError, ValueError) as exc:
        print(f"intents predict: {exc}", file=sys.stderr)
        return 2
    vectors = encoder.encode_queries_sync(texts)
    index, confidence = classifier.predict(vectors, texts) if texts else (np.zeros(0, np.int64), np.zeros(0))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for text, i, c in zip(texts, index, confidence, strict=True):
            line = {"text": text, "label": classifier.labels[int(i)], "confidence": round(float(c), 4)}
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    print(f"{len(texts)} predictions written to {out}")
    return 0


def cmd_intents_eval(args: argparse.Namespace, settings: Settings) -> int:
    """Print the classification report of the model on a labelled file."""
    from retrieval.routing.dataset import read_labelled

    try:
        rows = read_labelled(Path(args.data))
        encoder, classifier = _load(args, settings)
    except (OSError, ValueError) as exc:
        print(f"intents eval: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print("intents eval: no labelled lines", file=sys.stderr)
        return 2
    vectors = encoder.encode_queries_sync([r.text for r in rows])
    report, _ = _predictions_report(
        classifier, vectors, [r.text for r in rows], [r.label for r in rows], str(args.data)
    )
    title = f"Intent classification ({args.data}, {classifier.precision} head)"
    print(report.to_markdown(title))
    if args.out:
        files = report.write(Path(args.out), title=title)
        print(f"report written: {', '.join(str(f) for f in files)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (the same commands as `search-api intents ...`)."""
    parser = argparse.ArgumentParser(prog="intents", description=__doc__)
    parser.add_argument("--config", help="TOML file overriding config/default.toml")
    add_intents_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        settings = load_settings(Path(args.config) if args.config else None)
    except (OSError, ValueError) as exc:
        print(f"intents: configuration error: {exc}", file=sys.stderr)
        return 2
    return int(args.func(args, settings))


if __name__ == "__main__":
    sys.exit(main())
