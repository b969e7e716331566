"""The ``itemrec`` command line.

Each command group lives in its own module under :mod:`itemrec.cli` and exposes
``register(subparsers)``; the modules import heavy libraries (TensorFlow,
FAISS) inside their handlers only, so ``itemrec --help`` stays fast.
A handler receives the parsed ``argparse.Namespace`` and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Command-group modules, in the order they appear in --help.
GROUPS = ("data", "train", "evaluate", "embed", "gallery", "serve", "scene", "demo")


class CLIError(Exception):
    """An error the user can fix; :func:`main` prints it without a traceback and exits with code 2."""


def build_parser() -> argparse.ArgumentParser:
    """The ``itemrec`` argument parser with every command group of :data:`GROUPS` registered.

    A group whose module does not exist (not built yet) is left out.

    Returns:
        The ``argparse.ArgumentParser``; each (sub)command sets ``handler`` in its defaults.

    Raises:
        ModuleNotFoundError: a group module exists but one of its own imports is missing.
    """
    parser = argparse.ArgumentParser(
        prog="itemrec",
        description="Open-set item recognition by embedding similarity against a gallery.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        try:
            module = importlib.import_module(f"itemrec.cli.{group}")
        except ModuleNotFoundError as exc:
            if exc.name == f"itemrec.cli.{group}":
                continue  # group not built yet
            raise
        module.register(sub)
    return parser


def _version() -> str:
    from itemrec import __version__

    return f"itemrec {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Run the ``itemrec`` command line.

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).

    Returns:
        The exit code: the handler's (0 when it returns ``None``); 2 for no command (help is
        printed), a :class:`CLIError` or a ``FileNotFoundError`` (message on stderr);
        130 on Ctrl-C.

    Raises:
        SystemExit: from ``argparse`` for ``--help``, ``--version`` or malformed arguments
            (code 2 for the latter).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except CLIError as exc:
        print(f"itemrec: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"itemrec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("itemrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
