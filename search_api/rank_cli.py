"""`search-api rank ...`: train the learned ranker and measure it honestly.

    rank train --dataset fixtures --dataset cmrc-chunk --dataset drcd-train --out data/ranking/<model id>
    rank cv    --dataset fixtures --dataset cmrc-chunk --dataset drcd-train --by-query fixtures \\
               --eval drcd-heldout --out reports/ranking
    rank depth --dataset cmrc-chunk --depths 10,20,50,100

`--dataset` takes a BEIR folder with qrels or a `search-eval quality` shortcut (fixtures,
cmrc-chunk, drcd-train, drcd-heldout; never train on drcd-heldout). Candidates come from the
configured encoder (SEARCH_MODEL_CHECKPOINT picks another) through the served search path and
are cached in <data_dir>/ranking/candidates, so a retrain does not re-encode. A ranker trained
into <data_dir>/ranking/<model id> is what `serve` loads for that model.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from search_api.settings import ApiSettings

HELD_ASIDE = "drcd-heldout"


def add_rank_commands(subparsers: Any) -> None:
    """Add `rank train|cv|depth` to an argparse subparsers object (`func(args, settings)`)."""
    rank = subparsers.add_parser("rank", help="train and measure the learned ranker")
    sub = rank.add_subparsers(dest="rank_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--dataset", action="append", required=True, help="BEIR folder or shortcut; repeatable"
        )
        p.add_argument(
            "--candidates", type=int, default=None, help="per-retriever depth (default fusion.candidates)"
        )
        p.add_argument("--threads", type=int, default=2, help="LightGBM threads")
        p.add_argument("--quiet", action="store_true")

    def training(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--holdout", type=float, default=0.15, help="share of queries held back for model choice"
        )
        p.add_argument(
            "--weight", action="append", default=[], help="NAME=W: weight of a dataset's queries; repeatable"
        )
        p.add_argument(
            "--params",
            default=None,
            help='one LightGBM setting as JSON instead of trying the built-in few, e.g. {"num_leaves": 15}',
        )

    train = sub.add_parser("train", help="train a ranker from judged datasets")
    common(train)
    training(train)
    train.add_argument("--out", required=True, help="ranker folder (ranker.txt, meta.json, report.md)")
    train.set_defaults(func=cmd_rank_train)

    cv = sub.add_parser("cv", help="figures from models that never saw the queries they score")
    common(cv)
    training(cv)
    cv.add_argument("--by-query", action="append", default=[], help="dataset scored by k-fold CV by query")
    cv.add_argument("--folds", type=int, default=5)
    cv.add_argument("--eval", action="append", default=[], help="dataset only evaluated (never trained on)")
    cv.add_argument("--out", required=True, help="folder for cv.md, cv.json and the models")
    cv.set_defaults(func=cmd_rank_cv)

    depth = sub.add_parser("depth", help="recall of the candidate union per retriever depth")
    common(depth)
    depth.add_argument("--depths", default="10,20,30,50,100")
    depth.set_defaults(func=cmd_rank_depth)


def _weights(pairs: list[str]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            out[name] = float(value)
        except ValueError as exc:
            raise ValueError(f"--weight wants NAME=NUMBER, not {pair!r}") from exc
    return out


def _options(args: argparse.Namespace) -> Any:
    from retrieval.training.ranking.run import TrainOptions
    from retrieval.training.ranking.train import PARAM_OPTIONS

    try:
        params = (json.loads(args.params),) if args.params else PARAM_OPTIONS
    except ValueError as exc:
        raise ValueError(f"--params is not JSON: {exc}") from exc
    return TrainOptions(
        holdout=args.holdout, weights=_weights(args.weight), threads=args.threads, params=params
    )


def _sets(names: list[str], args: argparse.Namespace, api: ApiSettings) -> list[Any]:
    from eval.cli import resolve_dataset
    from eval.converters import CMRC_DEV
    from retrieval.training.ranking.candidates import collect

    settings = api.engine
    if args.candidates is not None:
        settings = dataclasses.replace(
            settings, fusion=dataclasses.replace(settings.fusion, candidates=args.candidates)
        )
    # Candidates are what RRF and the ranker see: collect them with fusion off the model's path.
    out = []
    for name in names:
        folder, label = resolve_dataset(name, settings, CMRC_DEV, args.quiet)
        out.append(asyncio.run(collect(folder, settings, name=label, quiet=args.quiet)))
    return out


def _log(line: str) -> None:
    print(line, flush=True)


def cmd_rank_train(args: argparse.Namespace, api: ApiSettings) -> int:
    """Train a ranker; refuses the held-aside DRCD part."""
    from retrieval.training.ranking.run import command_line, train_command

    if HELD_ASIDE in args.dataset:
        print(
            f"search-api rank train: {HELD_ASIDE} is held aside for figures, never trained on",
            file=sys.stderr,
        )
        return 2
    try:
        options = _options(args)
        sets = _sets(args.dataset, args, api)
        train_command(sets, Path(args.out), options, command_line(), _log)
    except ValueError as exc:
        print(f"search-api rank train: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_rank_cv(args: argparse.Namespace, api: ApiSettings) -> int:
    """Cross-validated figures (see `retrieval.training.ranking.run`)."""
    from retrieval.training.ranking.run import command_line, cv_command

    if HELD_ASIDE in args.dataset:
        print(f"search-api rank cv: {HELD_ASIDE} may only be an --eval dataset", file=sys.stderr)
        return 2
    try:
        options = _options(args)
        sets = _sets(args.dataset, args, api)
        evals = _sets(args.eval, args, api)
        by_query = [s.name for s in sets if s.name in args.by_query]
        cv_command(sets, evals, by_query, args.folds, Path(args.out), options, command_line(), _log)
    except ValueError as exc:
        print(f"search-api rank cv: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_rank_depth(args: argparse.Namespace, api: ApiSettings) -> int:
    """Union recall per depth."""
    from retrieval.training.ranking.run import depth_command

    depths = [int(d) for d in args.depths.split(",") if d.strip()]
    depth_command(_sets(args.dataset, args, api), depths, _log)
    return 0
