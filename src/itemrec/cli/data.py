"""``itemrec data``: fetch datasets, audit them, write split manifests, render the synthetic set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from itemrec.cli import CLIError

DATASETS_HELP = "grocery-store, fashion-products, packed-scenes, celebrity-faces, or a folder-per-class tree"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command group (fetch, audit, split, synthetic) to the ``itemrec`` parser.

    Args:
        subparsers: the top-level parser's ``add_subparsers()`` action.
    """
    parser = subparsers.add_parser(
        "data",
        help="fetch, audit and split datasets",
        description="Fetch the public datasets, audit them for duplicates and unreadable files, and write split manifests.",
    )
    parser.set_defaults(handler=lambda args: _usage(parser))
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    p = sub.add_parser("fetch", help="download a public dataset into $ITEMREC_DATA/NAME",
                       description="Download NAME from its GitHub source and lay it out as the loaders expect (needs internet).")
    p.add_argument("name", help="grocery-store, fashion-products, packed-scenes, mnist or celebrity-faces")
    p.add_argument("--data-root", type=Path, help="dataset root (default: $ITEMREC_DATA or ./data)")
    p.add_argument("--force", action="store_true", help="download again even if the folder exists")
    p.set_defaults(handler=_fetch)

    p = sub.add_parser("audit", help="find duplicates, class overlaps, unreadable files, tiny classes; leakage between two sets",
                       description="Hash every image (SHA-1) and check it opens; report duplicates within and across "
                                   "classes. A SPLIT/CLASS tree (Train/ Validation/ ...) is read with classes named "
                                   "SPLIT/CLASS, so photos shared between splits show as class overlaps. "
                                   "--near-duplicates adds near-identical photos (perceptual hashes, e.g. video frames); "
                                   "--against B reports exact and near duplicates between DATASET and B with the "
                                   "classes involved. Exit 2 when files are unreadable.")
    p.add_argument("dataset", help=DATASETS_HELP + ", a SPLIT/CLASS tree or a CSV with path and label")
    p.add_argument("--against", help="a second dataset (same forms) to check for photos shared with the first")
    p.add_argument("--near-duplicates", action="store_true",
                   help="also find near-identical photos within the dataset (perceptual hashes; decodes every image)")
    p.add_argument("--max-hamming", type=int, default=6,
                   help="perceptual-hash bits (of 64) that may differ for a near duplicate (default 6)")
    p.add_argument("--data-root", type=Path, help="dataset root (default: $ITEMREC_DATA or ./data)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a summary")
    p.add_argument("--check", choices=("header", "decode", "none"), default="header",
                   help="how to test readability: header (fast, default), decode (full), none")
    p.add_argument("--min-per-class", type=int, default=2, help="flag classes with fewer images (default 2)")
    p.add_argument("--pairs-csv", type=Path, help="write every duplicate pair found (near and --against) to this CSV")
    p.set_defaults(handler=_audit)

    p = sub.add_parser("split", help="write a seeded split manifest (CSV + .meta.json)",
                       description=("open: hold out whole classes (column open_set = seen/unseen; grocery-store uses the "
                                    "fixed GROCERY_UNSEEN classes unless --unseen-fraction is given). "
                                    "stratified: closed-set train/val/test in the split column."))
    p.add_argument("dataset", help=DATASETS_HELP)
    p.add_argument("--kind", choices=("open", "stratified"), required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="manifest CSV to write")
    p.add_argument("--unseen-fraction", type=float, default=None, help="open: fraction of classes held out (default 0.5)")
    p.add_argument("--fractions", default="0.7,0.15,0.15", help="stratified: train,val,test fractions")
    p.add_argument("--data-root", type=Path, help="dataset root (default: $ITEMREC_DATA or ./data)")
    p.set_defaults(handler=_split)

    p = sub.add_parser("synthetic", help="write the synthetic retail catalogue as JPEGs",
                       description="Render the embedded synthetic catalogue into OUT/photos/<product>/ and OUT/catalogue/.")
    p.add_argument("out", type=Path)
    p.add_argument("--products", type=int, default=20)
    p.add_argument("--photos", type=int, default=10, help="photos per product")
    p.add_argument("--size", type=int, default=96, help="image size in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_synthetic)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _load(name: str, root: Path | None):
    from itemrec import settings
    from itemrec.data.loaders import load_dataset

    try:
        return load_dataset(name, root)
    except settings.DataNotFoundError as exc:
        raise CLIError(str(exc)) from exc
    except ValueError as exc:
        raise CLIError(f"{exc}") from exc


def _fetch(args: argparse.Namespace) -> int:
    from itemrec.data.fetch import SOURCES, fetch

    if args.name not in SOURCES:
        raise CLIError(f"unknown dataset {args.name!r}; fetchable: {', '.join(sorted(SOURCES))}")
    try:
        path = fetch(args.name, args.data_root, force=args.force)
    except OSError as exc:
        raise CLIError(f"could not fetch {args.name}: {exc}. Check the internet connection, or copy the data by hand.") from exc
    print(path)
    return 0


def _audit(args: argparse.Namespace) -> int:
    import json

    from itemrec.cli.audit_report import duplicate_lines, duplicates_dict, load_audited
    from itemrec.data.audit import audit

    if not 0 <= args.max_hamming <= 64:
        raise CLIError("--max-hamming must lie in 0..64")
    ds = load_audited(args.dataset, args.data_root, _load)
    other = load_audited(args.against, args.data_root, _load) if args.against else None
    progress = sys.stderr.isatty()
    report = audit(ds, check=None if args.check == "none" else args.check, min_per_class=args.min_per_class,
                   progress=progress)
    near = cross = None
    if args.near_duplicates or other is not None:
        from itemrec.data.near_duplicates import find_duplicates, hash_files

        paths, names = [str(p) for p in ds.paths], ds.frame["class_name"].astype(str).tolist()
        hashes = hash_files(paths, progress, desc="perceptual hashes")
        if args.near_duplicates:
            near = find_duplicates(paths, names, max_distance=args.max_hamming, hashes=hashes)
        if other is not None:
            cross = find_duplicates(paths, names, [str(p) for p in other.paths],
                                    other.frame["class_name"].astype(str).tolist(), args.max_hamming,
                                    progress, hashes=hashes)
    if args.pairs_csv:
        import pandas as pd

        frames = [r.pairs.assign(scope=scope) for r, scope in ((near, "within"), (cross, "against")) if r is not None]
        if frames:
            args.pairs_csv.parent.mkdir(parents=True, exist_ok=True)
            pd.concat(frames).to_csv(args.pairs_csv, index=False)
    if args.json:
        out = report.to_dict()
        if near is not None:
            out["near_duplicates"] = duplicates_dict(near)
        if cross is not None:
            out["against"] = {"dataset": args.against, **duplicates_dict(cross)}
        print(json.dumps(out, indent=1))
    else:
        print(report.summary())
        for line in duplicate_lines(near, cross, args.dataset, args.against):
            print(line)
    if report.unreadable:
        print(f"itemrec: error: {len(report.unreadable)} unreadable files in {args.dataset} (listed above): "
              "replace or remove them, or they are skipped in training and evaluation", file=sys.stderr)
        return 2
    return 0


def _split(args: argparse.Namespace) -> int:
    import numpy as np

    from itemrec.data import splits

    ds = _load(args.dataset, args.data_root)
    try:
        if args.kind == "open":
            if args.dataset == "grocery-store" and args.unseen_fraction is None:
                _, unseen = splits.grocery_open_set(ds)
            else:
                _, unseen = splits.class_disjoint_split(ds, args.unseen_fraction or 0.5, seed=args.seed)
            out = ds.subset(np.ones(len(ds), bool))
            out.frame["open_set"] = np.where(np.isin(out.labels, np.unique(unseen.labels)), "unseen", "seen")
            detail = out.frame.groupby("open_set")["label"].agg(["size", "nunique"]).to_dict("index")
            text = ", ".join(f"{k}: {v['size']} images / {v['nunique']} classes" for k, v in detail.items())
        else:
            fractions = [float(x) for x in args.fractions.split(",")]
            out = splits.stratified_split(ds, fractions, seed=args.seed)
            text = ", ".join(f"{k}: {v}" for k, v in out.frame["split"].value_counts().sort_index().items())
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    path = out.to_csv(args.out)
    print(f"wrote {path} ({text})")
    return 0


def _synthetic(args: argparse.Namespace) -> int:
    from itemrec.data.synthetic import write_catalogue

    try:
        ds = write_catalogue(args.out, args.products, args.photos, args.size, args.seed)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    print(f"wrote {len(ds)} photos of {ds.n_classes} products to {args.out}/photos and {args.out}/catalogue")
    return 0
