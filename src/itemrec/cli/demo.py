"""``itemrec demo [--out DIR] [--quick] [--seed N]``: the offline end-to-end demo (see :mod:`itemrec.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from itemrec.cli import CLIError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command to the ``itemrec`` parser.

    Args:
        subparsers: the top-level parser's ``add_subparsers()`` action.
    """
    parser = subparsers.add_parser(
        "demo",
        help="offline end-to-end demo on the embedded synthetic catalogue",
        description=(
            "Render a synthetic product catalogue, train a small CNN from scratch on half of the products "
            "(about 1-3 minutes on 2 CPU cores), evaluate it on the other, unseen half (CMC, VAL/FAR, DIR), "
            "enrol the unseen products in a gallery (SQLite + FAISS) except a few that stay unknown, calibrate "
            "the unknown threshold and recognise test photos. Writes OUT/report.md with plots, OUT/demo.json, "
            "OUT/run/ (the trained model) and OUT/gallery/. Needs no dataset, weights or network."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("models/demo"),
                        help="output folder (default: models/demo); must be empty or an earlier demo's")
    parser.add_argument("--quick", action="store_true", help="a tiny version in seconds (what the tests run)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the catalogue, split and training (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines or progress bars")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0; got {args.seed}")
    import logging

    from itemrec.demo import DemoError, run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = run_demo(args.out, quick=args.quick, seed=args.seed, progress=not args.quiet)
    except DemoError as exc:
        raise CLIError(str(exc)) from exc
    print("\n".join(result.summary_lines()))
    return 0
