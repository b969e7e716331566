"""``itemrec evaluate RUN_DIR``: all metrics of a trained run on its test split;
``itemrec evaluate MODEL --data FOLDER``: a model on the user's own labelled photos (:mod:`itemrec.evaluate_folder`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from itemrec.cli import CLIError
from itemrec.training.summary import summary_lines  # noqa: F401  (re-exported: the printed summary)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command to the ``itemrec`` parser.

    Args:
        subparsers: the top-level parser's ``add_subparsers()`` action.
    """
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a run on its test split, or any model on your own labelled folder",
        description=(
            "Without --data: embed the run's test (and calibration) images with its embedding.keras and compute CMC, "
            "Recall@K, MAP@R, VAL@FAR and open-set DIR (open-set runs) or accuracy/top-5/F1 (closed-set runs); "
            "writes RUN_DIR/metrics.json and the plots. "
            "With --data FOLDER: evaluate MODEL (a run folder or a .keras embedding model) on your labelled photos: a "
            "folder-per-class tree, a SPLIT/CLASS tree (e.g. Train/ Validation/; class names are matched ignoring case "
            "and -/_) or a CSV with path and label columns. The gallery holds --gallery catalogue images and/or "
            "--gallery-shots random photos per class (from the train* split of a SPLIT/CLASS tree, the other splits "
            "query), redrawn --draws times. Reports CMC@1/5 image-averaged (every query) and class-balanced (one query "
            "per class per draw), each with its 2.5-97.5% interval across draws, Recall@1 and MAP@R (leave-one-out "
            "among the queries) and VAL at FAR (threshold fitted on half the classes, reported on the other half); "
            "writes evaluation.json, cmc.csv, per_class.csv and cmc.png to --out."
        ),
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_OR_MODEL",
                        help="a run folder written by `itemrec train` (models/<name>), or with --data a .keras embedding model")
    parser.add_argument("--data", type=Path, help="your labelled photos: CLASS/ folders, SPLIT/CLASS/ folders, or a CSV (path + label)")
    own = parser.add_argument_group("with --data")
    own.add_argument("--gallery", dest="catalogue", type=Path,
                     help="catalogue images, always in the gallery: CLASS.jpg files or CLASS/ folders (first image)")
    own.add_argument("--gallery-shots", type=int, default=None,
                     help="random photos per class put in the gallery each draw (default 1, or 0 with --gallery)")
    own.add_argument("--gallery-split", help="split the gallery photos come from (default: the one named train*)")
    own.add_argument("--query-split", action="append", dest="query_splits",
                     help="split(s) whose photos query (repeatable; default: every other split)")
    own.add_argument("--draws", type=int, default=20, help="random galleries and query draws (default 20)")
    own.add_argument("--seed", type=int, default=0)
    own.add_argument("--background", type=Path,
                     help="photos of other products for the hubness correction (CSLS): folder or CSV; off when absent")
    own.add_argument("--hubness-k", type=int, default=10, help="background neighbours (default 10)")
    own.add_argument("--beta", type=float, default=0.5, help="weight of the hubness correction (default 0.5)")
    own.add_argument("--exclude-near-duplicates", action="store_true",
                     help="drop queries that are near copies (perceptual hash) of a gallery photo of their class")
    own.add_argument("--max-hamming", type=int, default=6,
                     help="perceptual-hash bits (of 64) that may differ for a near copy (default 6)")
    own.add_argument("--features", action="store_true",
                     help="evaluate the run's backbone pooled features (the frozen model) instead of its embedding")
    own.add_argument("--far", type=float, action="append", help="target FAR for VAL (repeatable; default 1e-2 and 1e-3)")
    own.add_argument("--out", type=Path, help="output folder (default reports/evaluate/MODEL__on__DATA)")
    parser.add_argument("--json", action="store_true", help="print all metrics as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    if args.data is not None:
        return _evaluate_data(args)
    if args.features or args.catalogue or args.out:
        raise CLIError("--features, --gallery and --out go with --data FOLDER")
    if not args.run_dir.is_dir():
        raise CLIError(f"run folder {args.run_dir} does not exist; train one with `itemrec train CONFIG.json`"
                       " (or give --data FOLDER to evaluate a .keras model on your own photos)")
    from itemrec.training.report import evaluate_run

    try:
        metrics = evaluate_run(args.run_dir, progress=not args.quiet)
    except FileNotFoundError as exc:
        raise CLIError(str(exc)) from exc
    if args.json:
        print(json.dumps(metrics, indent=1))
    else:
        print("\n".join(summary_lines(metrics)))
        print(f"metrics: {args.run_dir / 'metrics.json'}")
    return 0


def _data_embedder(target: Path, features: bool) -> tuple[Any, str]:
    """The embedder of a run folder (or its backbone's pooled features) or of a .keras model, and its name."""
    from itemrec.cli.embed import resolve_model
    from itemrec.embedder import ImageEmbedder

    model_path = resolve_model(target)
    if target.is_dir() and (target / "config.json").is_file():
        from itemrec.training.config import ExperimentConfig
        from itemrec.training.run_embedders import run_embedders

        config = ExperimentConfig.from_json(target / "config.json")
        try:
            embedder, pooled = run_embedders(target, config)
        except ValueError as exc:
            raise CLIError(f"cannot load {model_path}: {exc}") from exc
        if features and pooled is None:
            raise CLIError(f"{target}: its embedding model has no 'gap' layer, so no backbone features to evaluate")
        return (pooled, f"{target.name}__features") if features else (embedder, target.name)
    if features:
        raise CLIError("--features needs a run folder (models/<name>) whose backbone it reads")
    try:
        return ImageEmbedder.load(model_path), model_path.stem
    except ValueError as exc:
        raise CLIError(str(exc)) from exc


def _evaluate_data(args: argparse.Namespace) -> int:
    from itemrec.data.layout import LayoutError
    from itemrec.evaluate_folder import FolderEvalOptions, evaluate_folder
    from itemrec.evaluate_folder_report import summary_lines as data_lines
    from itemrec.evaluate_folder_report import write_report

    shots = args.gallery_shots if args.gallery_shots is not None else (0 if args.catalogue else 1)
    if shots < 0 or args.draws < 1 or args.hubness_k < 1 or not 0 <= args.max_hamming <= 64:
        raise CLIError("--gallery-shots must be >= 0, --draws and --hubness-k >= 1, --max-hamming in 0..64")
    for path, flag in ((args.data, "--data"), (args.catalogue, "--gallery"), (args.background, "--background")):
        if path is not None and not path.exists():
            raise CLIError(f"{flag} {path} does not exist")
    if not args.run_dir.exists():
        raise CLIError(f"model {args.run_dir} does not exist: give a run folder (models/<name>) or a .keras model")
    far = tuple(args.far) if args.far else (1e-2, 1e-3)
    if not all(0 < f < 1 for f in far):
        raise CLIError("--far must lie in (0, 1)")
    opts = FolderEvalOptions(shots=shots, draws=args.draws, seed=args.seed,
                             catalogue=str(args.catalogue) if args.catalogue else None,
                             gallery_split=args.gallery_split, query_splits=args.query_splits,
                             background=str(args.background) if args.background else None, hubness_k=args.hubness_k,
                             beta=args.beta, exclude_near_duplicates=args.exclude_near_duplicates,
                             max_distance=args.max_hamming, far_targets=far)
    embedder, name = _data_embedder(args.run_dir, args.features)
    try:
        report = evaluate_folder(embedder, args.data, opts, progress=not args.quiet)
    except (LayoutError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    report["model"] = str(args.run_dir) + (" (backbone features)" if args.features else "")
    data_name = args.data.stem if args.data.suffix.lower() == ".csv" else args.data.resolve().name
    out = args.out or Path("reports") / "evaluate" / f"{name}__on__{data_name}"
    write_report(report, out, title=f"{name} on {data_name}")
    if args.json:
        print((out / "evaluation.json").read_text())
    else:
        print("\n".join(data_lines(report)))
    return 0
