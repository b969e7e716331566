"""``itemrec gallery create|add|remove|list|query|calibrate|check``.

Heavy imports (Keras, FAISS) happen inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from itemrec.cli import CLIError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("gallery", help="build and query a persistent item gallery (SQLite + FAISS)",
                              description="Build and query a persistent item gallery (SQLite + FAISS).")
    sub = p.add_subparsers(dest="gallery_command", metavar="ACTION", required=True)

    c = sub.add_parser("create", help="create an empty gallery for an embedding model")
    c.add_argument("gallery", help="gallery folder to create")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="embedding model (.keras) whose fingerprint the gallery records")
    src.add_argument("--fingerprint", help="fingerprint id, for galleries fed with precomputed vectors (needs --dim)")
    c.add_argument("--dim", type=int, help="embedding dimension (default: the model's)")
    c.add_argument("--index", choices=("flat", "ivf", "hnsw"), default="flat", help="search index (default: flat, exact)")
    c.add_argument("--prototype", choices=("each", "mean"), default="each",
                   help="index every image (each) or one mean vector per item (mean)")
    c.add_argument("--threshold", type=float, help="cosine similarity under which a query is unknown")
    c.set_defaults(handler=_create)

    a = sub.add_parser("add", help="enrol items from a folder-per-item tree or a CSV")
    a.add_argument("gallery")
    a.add_argument("source", help="folder with one sub-folder of photos per item, or a CSV (item_id,path[,name,attributes])")
    a.add_argument("--model", required=True, help="embedding model (.keras) the gallery was created with")
    a.add_argument("--commit-every", type=int, default=1, help="items per transaction (default 1)")
    a.set_defaults(handler=_add)

    r = sub.add_parser("remove", help="remove items")
    r.add_argument("gallery")
    r.add_argument("item_ids", nargs="+")
    r.set_defaults(handler=_remove)

    ls = sub.add_parser("list", help="list enrolled items")
    ls.add_argument("gallery")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(handler=_list)

    q = sub.add_parser("query", help="recognise images")
    q.add_argument("gallery")
    q.add_argument("images", nargs="+", help="image files")
    q.add_argument("--model", required=True)
    q.add_argument("-k", type=int, default=5, help="matches per image (default 5)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=_query)

    cal = sub.add_parser("calibrate", help="set the unknown threshold from labelled validation photos")
    cal.add_argument("gallery")
    cal.add_argument("source", help="folder-per-item tree or CSV of validation photos (items may be absent from the gallery)")
    cal.add_argument("--model", required=True)
    cal.add_argument("--target-far", type=float, default=0.01, help="false-accept rate to allow (default 0.01)")
    cal.set_defaults(handler=_calibrate)

    bg = sub.add_parser("background", help="switch the hubness correction on (background photos) or off",
                        description="Rank down catalogue items that are near every photo: score = cos - beta * r, "
                                    "r = mean cosine of an item's vector to its k nearest background photos "
                                    "(CSLS). Background: photos of products other than those queried. "
                                    "Clears the unknown threshold: calibrate again afterwards.")
    bg.add_argument("gallery")
    what = bg.add_mutually_exclusive_group(required=True)
    what.add_argument("--photos", help="folder-per-item tree or CSV of background photos")
    what.add_argument("--clear", action="store_true", help="switch the correction off")
    bg.add_argument("--model", help="embedding model (.keras) the gallery was created with (with --photos)")
    bg.add_argument("-k", type=int, default=10, help="background neighbours per vector (default 10)")
    bg.add_argument("--beta", type=float, default=0.5, help="weight of the correction (default 0.5, as CSLS)")
    bg.set_defaults(handler=_background)

    ch = sub.add_parser("check", help="verify the store and index (exit 1 on problems)")
    ch.add_argument("gallery")
    ch.set_defaults(handler=_check)


def read_source(source: str | os.PathLike) -> list[dict[str, Any]]:
    """``[{item_id, name, paths, attributes}]`` from a folder-per-item tree or a CSV manifest."""
    src = Path(source)
    if src.is_dir():
        entries = []
        for sub in sorted(p for p in src.iterdir() if p.is_dir()):
            paths = sorted(str(f) for f in sub.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if paths:
                entries.append({"item_id": sub.name, "name": sub.name, "paths": paths, "attributes": None})
        if not entries:
            raise CLIError(f"{src}: no sub-folders with images ({', '.join(IMAGE_SUFFIXES)}); expected SOURCE/ITEM_ID/*.jpg")
        return entries
    if src.is_file() and src.suffix.lower() == ".csv":
        import pandas as pd

        frame = pd.read_csv(src, dtype=str, keep_default_na=False)
        missing = {"item_id", "path"} - set(frame.columns)
        if missing:
            raise CLIError(f"{src}: CSV lacks column(s) {sorted(missing)}; needs item_id,path[,name,attributes]")
        entries = []
        for item_id, rows in frame.groupby("item_id", sort=False):
            paths = [str(p) if Path(p).is_absolute() else str(src.parent / p) for p in rows["path"]]
            name = rows["name"].iloc[0] if "name" in rows and rows["name"].iloc[0] else str(item_id)
            attrs = None
            if "attributes" in rows and rows["attributes"].iloc[0]:
                try:
                    attrs = json.loads(rows["attributes"].iloc[0])
                except json.JSONDecodeError as exc:
                    raise CLIError(f"{src}: attributes of item {item_id!r} are not JSON ({exc})") from exc
            entries.append({"item_id": str(item_id), "name": name, "paths": paths, "attributes": attrs})
        return entries
    raise CLIError(f"{src}: expected a folder of item folders or a .csv file")


def _embedder(model: str) -> Any:
    from itemrec.embedder import ImageEmbedder

    try:
        return ImageEmbedder.load(model)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc


def _open(path: str, model: str | None = None, readonly: bool = False) -> Any:
    from itemrec.gallery import Gallery, GalleryError

    try:
        return Gallery.open(path, readonly=readonly, embedder=_embedder(model) if model else None)
    except GalleryError as exc:
        raise CLIError(str(exc)) from exc


def _create(args: argparse.Namespace) -> int:
    from itemrec.gallery import Gallery, GalleryError

    source: Any = _embedder(args.model) if args.model else args.fingerprint
    try:
        g = Gallery.create(args.gallery, source, dim=args.dim, index=args.index, prototype=args.prototype,
                           threshold=args.threshold)
    except GalleryError as exc:
        raise CLIError(str(exc)) from exc
    print(json.dumps(g.describe(), indent=1))
    g.close()
    return 0


def _add(args: argparse.Namespace) -> int:
    from itemrec.gallery import GalleryError

    entries = read_source(args.source)
    g = _open(args.gallery, args.model)
    skipped: list[tuple[str, str]] = []
    try:
        results = g.enroll_many(entries, commit_every=args.commit_every, total=len(entries))
    except GalleryError as exc:
        raise CLIError(str(exc)) from exc
    finally:
        g.close()
    for r in results:
        skipped += r.skipped
    for path, reason in skipped:
        print(f"skipped {path}: {reason}")
    print(f"enrolled {len(results)} items ({sum(r.n_vectors for r in results)} images, {len(skipped)} skipped)")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from itemrec.gallery import ItemNotFoundError

    g = _open(args.gallery)
    try:
        for item in args.item_ids:
            try:
                n = g.remove(item)
            except ItemNotFoundError as exc:
                raise CLIError(str(exc)) from exc
            print(f"removed {item} ({n} vectors)")
    finally:
        g.close()
    return 0


def _list(args: argparse.Namespace) -> int:
    g = _open(args.gallery, readonly=True)
    frame = g.items()
    if args.json:
        print(json.dumps({"gallery": g.describe(), "items": json.loads(frame.to_json(orient="records"))}, indent=1))
    else:
        print(json.dumps(g.describe()))
        print(frame.to_string(index=False) if len(frame) else "(no items)")
    g.close()
    return 0


def _query(args: argparse.Namespace) -> int:
    g = _open(args.gallery, args.model, readonly=True)
    emb, keep, skipped = g.embedder.embed_paths(args.images)
    for path, reason in skipped:
        print(f"skipped {path}: {reason}")
    results = g.query(vectors=emb, k=args.k) if len(keep) else []
    out = [{"image": args.images[i], **r.to_dict()} for i, r in zip(keep, results)]
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for row in out:
            label = "UNKNOWN" if row["unknown"] else row["item_id"]
            tops = ", ".join(f"{m['item_id']} {m['similarity']:.3f}" for m in row["matches"])
            print(f"{row['image']}: {label}  [{tops}]")
    g.close()
    return 0 if not skipped else 1


def _calibrate(args: argparse.Namespace) -> int:
    import numpy as np

    entries = read_source(args.source)
    g = _open(args.gallery, args.model)
    paths = [p for e in entries for p in e["paths"]]
    ids = [e["item_id"] for e in entries for _ in e["paths"]]
    emb, keep, skipped = g.embedder.embed_paths(paths, progress=True)
    cal = g.calibrate(emb, np.asarray(ids, object)[keep], args.target_far)
    print(json.dumps(cal.__dict__, indent=1))
    g.close()
    return 0


def _check(args: argparse.Namespace) -> int:
    g = _open(args.gallery)
    report = g.check()
    print(json.dumps({**report.__dict__, "missing_from_index": report.missing_from_index[:20],
                      "unknown_in_index": report.unknown_in_index[:20], "ok": report.ok}, indent=1))
    g.close()
    return 0 if report.ok else 1


def _background(args: argparse.Namespace) -> int:
    from itemrec.gallery import GalleryError

    if args.photos and not args.model:
        raise CLIError("--photos needs --model (the embedding model the gallery was created with)")
    g = _open(args.gallery, args.model if args.photos else None)
    try:
        if args.clear:
            g.clear_background()
            print("hubness correction off; the unknown threshold was cleared: run `itemrec gallery calibrate`")
        else:
            paths = [p for e in read_source(args.photos) for p in e["paths"]]
            emb, keep, skipped = g.embedder.embed_paths(paths, progress=True)
            for path, reason in skipped:
                print(f"skipped {path}: {reason}")
            if not len(keep):
                raise CLIError(f"{args.photos}: no readable background photos")
            n = g.set_background(vectors=emb, k=args.k, beta=args.beta)
            print(f"hubness correction on: {n} background photos, k {args.k}, beta {args.beta}; "
                  "the unknown threshold was cleared: run `itemrec gallery calibrate`")
    except GalleryError as exc:
        raise CLIError(str(exc)) from exc
    finally:
        g.close()
    return 0
