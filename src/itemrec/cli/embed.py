"""``itemrec embed MODEL_OR_RUN IMAGES... --out emb.npy``: embeddings of image files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from itemrec.cli import CLIError



def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``embed`` command to the ``itemrec`` parser.

    Args:
        subparsers: the top-level parser's ``add_subparsers()`` action.
    """
    parser = subparsers.add_parser(
        "embed",
        help="embed image files with a trained model",
        description=(
            "Embed IMAGES (files, or folders searched recursively for .jpg/.jpeg/.png/.gif/.bmp/.tif/.tiff/.webp) "
            "with a run's embedding.keras (give the run folder) or any .keras embedding model. Writes OUT (.npy, "
            "float32 N x D) and beside it the embedded files in row order, one per line, in OUT with .npy replaced "
            "by .paths.txt (--out emb.npy writes emb.paths.txt). Unreadable files are skipped and listed; if none "
            "can be read nothing is written and the exit code is 2."
        ),
    )
    parser.add_argument("model", type=Path, help="run folder (models/<name>) or .keras embedding model")
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders")
    parser.add_argument("--out", type=Path, required=True, help="output .npy file (X.npy: also writes X.paths.txt)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default: the model's sidecar, or 64)")
    parser.add_argument("--strict", action="store_true", help="fail on the first unreadable image instead of skipping it")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_embed)


def resolve_model(path: Path) -> Path:
    """A run folder -> its ``embedding.keras``; a ``.keras`` file -> itself.

    Args:
        path: a finished ``itemrec train`` run folder, or a ``.keras`` embedding model file.

    Returns:
        The path of the ``.keras`` file to load.

    Raises:
        CLIError: a folder without ``embedding.keras``, a file that is not ``.keras``, or a
            ``.keras`` path that does not exist.
    """
    if path.is_dir():
        candidate = path / "embedding.keras"
        if not candidate.is_file():
            raise CLIError(f"{path} has no embedding.keras; is it a finished `itemrec train` run folder?")
        return candidate
    if path.suffix != ".keras":
        raise CLIError(f"{path} is neither a run folder nor a .keras model file")
    if not path.is_file():
        raise CLIError(f"model file {path} does not exist")
    return path


def expand_images(items: list[Path]) -> list[Path]:
    """Files as given, folders expanded recursively (sorted); missing paths raise :class:`CLIError`.

    Args:
        items: image files and folders (:func:`itemrec.cli.sources.expand_images`).

    Returns:
        The image paths, in the order given (each folder's images sorted).

    Raises:
        CLIError: a path does not exist, or a folder holds no images.
    """
    from itemrec.cli.sources import expand_images as expand

    return [Path(p) for p in expand([str(i) for i in items])]


def _embed(args: argparse.Namespace) -> int:
    model_path = resolve_model(args.model)
    paths = expand_images(args.images)
    if args.out.suffix != ".npy":
        raise CLIError(f"--out must be a .npy file; got {args.out}")
    if args.batch_size is not None and args.batch_size < 1:
        raise CLIError("--batch-size must be >= 1")
    import numpy as np

    from itemrec.data.images import BadImageError
    from itemrec.embedder import ImageEmbedder

    try:
        embedder = ImageEmbedder.load(model_path, batch_size=args.batch_size)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    try:
        embedded = embedder.embed([str(p) for p in paths], strict=args.strict, progress=not args.quiet)
    except BadImageError as exc:
        raise CLIError(f"{exc} (drop --strict to skip unreadable files)") from exc
    emb = embedded.vectors
    for path, reason in embedded.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if not len(embedded):
        raise CLIError(f"none of the {len(paths)} images could be read (reasons above); nothing was written")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, emb)
    listing = args.out.with_name(args.out.name[: -len(".npy")] + ".paths.txt")
    listing.write_text("".join(f"{p}\n" for p in embedded.paths))
    print(f"wrote {args.out} ({emb.shape[0]} x {emb.shape[1]}) and {listing}")
    return 0
