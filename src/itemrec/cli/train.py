"""``itemrec train CONFIG.json [--set key=value ...]``: run a training experiment."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from itemrec.cli import CLIError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` command to the ``itemrec`` parser.

    Args:
        subparsers: the top-level parser's ``add_subparsers()`` action.
    """
    parser = subparsers.add_parser(
        "train",
        help="train an embedding model from a JSON experiment config",
        description=(
            "Train as CONFIG.json says (see configs/ and itemrec.training.ExperimentConfig) and write "
            "models/<name>/: model.keras, embedding.keras, config.json, history.csv, metrics.json and plots. "
            "Running it again after an interruption resumes the unfinished run."
        ),
    )
    parser.add_argument("config", type=Path, help="experiment config JSON file")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.batch_size=16 --set loss.config.margin=0.3 (values parsed as JSON)",
    )
    parser.add_argument("--name", help="run name (overrides the config's name)")
    parser.add_argument("--output-dir", help="where run folders go (overrides the config's output_dir)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run of the same name")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end (run `itemrec evaluate` later)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines or progress bars")
    parser.add_argument("--print-config", action="store_true", help="print the final config as JSON and exit")
    parser.set_defaults(handler=_train)


def load_config(path: Path, overrides: list[str], name: str | None = None, output_dir: str | None = None):
    """The config of ``path`` with ``--set`` overrides applied; errors become :class:`CLIError`.

    Args:
        path: the JSON config file.
        overrides: ``key=value`` strings (``--set``), applied in order.
        name: a run name replacing the config's ``name`` (``--name``), or ``None``.
        output_dir: a folder replacing the config's ``output_dir`` (``--output-dir``), or ``None``.

    Returns:
        The validated :class:`itemrec.training.ExperimentConfig`.

    Raises:
        CLIError: the file is missing, is not valid JSON, or the config or an override is
            invalid (the message says what to fix).
    """

    from itemrec.training.config import ConfigError, ExperimentConfig

    extra = list(overrides)
    if name:
        extra.append(f"name={json.dumps(name)}")
    if output_dir:
        extra.append(f"output_dir={json.dumps(output_dir)}")
    try:
        config = ExperimentConfig.from_json(path)
        return config.with_overrides(extra) if extra else config
    except ConfigError as exc:
        raise CLIError(f"{exc}. Fix the config file or the --set value.") from exc
    except FileNotFoundError as exc:
        raise CLIError(f"{exc}; pass the path of a JSON config such as configs/synthetic_quick.json") from exc


def _train(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides, args.name, args.output_dir)
    if args.print_config:
        print(config.to_json(), end="")
        return 0
    import logging

    from itemrec.settings import DataNotFoundError
    from itemrec.training.config import ConfigError
    from itemrec.training.runner import run_experiment

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = run_experiment(config, overwrite=args.overwrite, progress=not args.quiet, evaluate=not args.no_eval)
    except ConfigError as exc:
        raise CLIError(str(exc)) from exc
    except DataNotFoundError as exc:
        raise CLIError(str(exc)) from exc
    print(f"run folder: {result.run_dir}")
    from itemrec.training.summary import summary_lines

    for line in summary_lines(result.metrics):
        print(line)
    return 0
