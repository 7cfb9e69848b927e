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
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retrieval.settings import Settings
from search_api.settings import ApiSettings, load_api_settings

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
    from retrieval.collections.specs import ensure_built_model, local_encoder

    return local_encoder(settings, ensure_built_model(settings, progress=print))


def _training(args: argparse.Namespace, settings: Settings) -> Any:
    from retrieval.engine import lexicon_paths
    from retrieval.training.intents.run import IntentTraining
    from retrieval.training.intents.train import TrainConfig

    return IntentTraining(
        data=tuple(Path(p) for p in args.data),
        out=Path(args.out),
        kb=Path(args.kb) if args.kb else settings.data.fixtures,
        config=TrainConfig(
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
        ),
        eval_data=Path(args.eval_data) if args.eval_data else None,
        holdout=tuple(Path(p) for p in args.holdout),
        lexicon=tuple(lexicon_paths(settings)),
        members=args.members,
        val_fraction=args.val_fraction,
        augment=args.augment,
        frames=args.frames,
        quotes=args.quotes,
        anchors=not args.no_anchors,
        ngram_buckets=args.ngram_buckets,
        ngram_max=args.ngram_max,
        ngram_boundaries=args.ngram_boundaries,
        entity_kinds=not args.no_entity_kinds,
    )


# -- commands ------------------------------------------------------------------------------------


def cmd_intents_train(args: argparse.Namespace, api: ApiSettings) -> int:
    """Train, save the head into --out, and write the report into --out/report."""
    from retrieval.training.intents.run import train_intents

    settings = api.engine
    try:
        run = _training(args, settings)
        trained = train_intents(run, _encoder(settings), log=lambda line: print(line, flush=True))
    except (OSError, ValueError) as exc:
        print(f"intents train: {exc}", file=sys.stderr)
        return 2
    title = f"Intent classification ({trained.meta['metrics']['report_source']})"
    print(trained.report.to_markdown(title))
    print(f"model written to {run.out}; report: {', '.join(str(f) for f in trained.report_files)}")
    return 0


def _load(args: argparse.Namespace, settings: Settings) -> tuple[Any, Any]:
    from retrieval.routing.classifier import IntentClassifier

    encoder = _encoder(settings)
    classifier = IntentClassifier.load(Path(args.model), model_id=encoder.model_id, precision=args.precision)
    return encoder, classifier


def cmd_intents_predict(args: argparse.Namespace, api: ApiSettings) -> int:
    """Write one {text,label,confidence} line per input line, in input order."""
    import numpy as np  # here, not at the top: `search-api serve` loads this module and needs no numpy yet

    from retrieval.training.intents.dataset import read_texts

    try:
        texts = read_texts(Path(args.data))
        encoder, classifier = _load(args, api.engine)
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


def cmd_intents_eval(args: argparse.Namespace, api: ApiSettings) -> int:
    """Print the classification report of the model on a labelled file."""
    from retrieval.training.intents.dataset import read_labelled
    from retrieval.training.intents.run import predictions_report

    try:
        rows = read_labelled(Path(args.data))
        encoder, classifier = _load(args, api.engine)
    except (OSError, ValueError) as exc:
        print(f"intents eval: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print("intents eval: no labelled lines", file=sys.stderr)
        return 2
    vectors = encoder.encode_queries_sync([r.text for r in rows])
    report, _ = predictions_report(
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
        settings = load_api_settings(Path(args.config) if args.config else None)
    except (OSError, ValueError) as exc:
        print(f"intents: configuration error: {exc}", file=sys.stderr)
        return 2
    return int(args.func(args, settings))


if __name__ == "__main__":
    sys.exit(main())
