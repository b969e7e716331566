"""``itemrec gallery create|add|remove|list|query|calibrate|evaluate|background|check``.

Heavy imports (Keras, FAISS) happen inside the handlers.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from itemrec.cli import CLIError
from itemrec.cli.sources import check_readable, expand_images, read_source


def register(subparsers: Any) -> None:
    """Add the ``gallery`` command group (create, add, remove, list, query, calibrate, evaluate,
    background, check) to the ``itemrec`` parser.

    Args:
        subparsers: the top-level parser's ``add_subparsers()`` action.
    """
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

    a = sub.add_parser("add", help="enrol items from a folder-per-item tree or a CSV",
                       description="Every image is decoded first; if an item has no readable image (or its folder "
                                   "none at all) nothing is enrolled and the items are named, unless --skip-empty.")
    a.add_argument("gallery")
    a.add_argument("source", help="folder with one sub-folder of photos per item, or a CSV with path and item_id "
                                  "(or class_name/class/label: the split CSVs of `itemrec train` work) [,name,attributes]")
    a.add_argument("--model", required=True, help="embedding model (.keras) the gallery was created with")
    a.add_argument("--commit-every", type=int, default=1, help="items per transaction (default 1)")
    a.add_argument("--skip-empty", action="store_true", help="enrol the other items when some have no readable image")
    a.set_defaults(handler=_add)

    r = sub.add_parser("remove", help="remove items")
    r.add_argument("gallery")
    r.add_argument("item_ids", nargs="+")
    r.set_defaults(handler=_remove)

    ls = sub.add_parser("list", help="list enrolled items")
    ls.add_argument("gallery")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(handler=_list)

    q = sub.add_parser("query", help="recognise images",
                       description="Recognise image files or every image in folders. Unreadable images are listed "
                                   "and the command exits 2 after answering for the others.")
    q.add_argument("gallery")
    q.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
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

    ev = sub.add_parser("evaluate", help="rates of the gallery on labelled queries, and the threshold trade-off",
                        description="Recognise labelled query photos (folder per item, SPLIT/ITEM tree or CSV with "
                                    "path and label); labels not enrolled count as unknown (names matched ignoring "
                                    "case and -/_). Reports top-1, accepted-correct, misidentified and rejected-known "
                                    "rates of the enrolled items' photos, rejected-unknown of the others, at the "
                                    "gallery's threshold and at thresholds fitted for several target FARs.")
    ev.add_argument("gallery")
    ev.add_argument("--queries", required=True, help="labelled query photos: folder or CSV")
    ev.add_argument("--model", required=True)
    ev.add_argument("--calibration", help="labelled photos to fit the trade-off thresholds on "
                                          "(default: the queries themselves, which is optimistic)")
    ev.add_argument("--far", type=float, action="append", help="target FARs of the trade-off (repeatable; default 0.01 0.05 0.1 0.2 0.3)")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(handler=_evaluate)

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

    empty: list[str] = []
    entries = read_source(args.source, empty)
    g = _open(args.gallery, args.model)
    try:
        entries, skipped, unreadable_items = check_readable(entries)
        for path, reason in skipped:
            print(f"skipped {path}: {reason}")
        problems = ([f"item folder(s) with no image file: {', '.join(empty)}"] if empty else []) + (
            [f"item(s) with no readable image: {', '.join(unreadable_items)}"] if unreadable_items else [])
        if problems and not args.skip_empty:
            raise CLIError("; ".join(problems) + ". Nothing was enrolled: add readable photos (.jpg, .png, .tif, "
                           ".webp, ...) to them, remove them, or pass --skip-empty to enrol the others")
        for line in problems:
            print(f"not enrolled: {line}")
        try:
            results = g.enroll_many(entries, commit_every=args.commit_every, total=len(entries))
        except GalleryError as exc:
            raise CLIError(str(exc)) from exc
    finally:
        g.close()
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
    images = expand_images(args.images)
    g = _open(args.gallery, args.model, readonly=True)
    try:
        embedded = g.embedder.embed(images)
        skipped = embedded.skipped
        results = g.query(vectors=embedded.vectors, k=args.k) if len(embedded) else []
    finally:
        g.close()
    out = [{"image": path, **r.to_dict()} for path, r in zip(embedded.paths, results)]
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for row in out:
            label = "UNKNOWN" if row["unknown"] else row["item_id"]
            tops = ", ".join(f"{m['item_id']} {m['similarity']:.3f}" for m in row["matches"])
            print(f"{row['image']}: {label}  [{tops}]")
    if skipped:
        listing = "; ".join(f"{p}: {r}" for p, r in skipped[:10])
        raise CLIError(f"{len(skipped)} of {len(images)} images could not be read ({listing}); "
                       "replace or remove them (the others were answered above)")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    import sys

    import numpy as np

    from itemrec.gallery.evaluation import calibration_notes, match_ids

    if not 0 <= args.target_far <= 1:
        raise CLIError(f"--target-far must lie in [0, 1]; got {args.target_far}")
    entries = read_source(args.source)
    g = _open(args.gallery, args.model)
    try:
        paths = [p for e in entries for p in e["paths"]]
        ids = [e["item_id"] for e in entries for _ in e["paths"]]
        embedded = g.embedder.embed(paths, ids, progress=True)
        for path, reason in embedded.skipped:
            print(f"skipped {path}: {reason}", file=sys.stderr)
        if not len(embedded):
            raise CLIError(f"{args.source}: none of the {len(paths)} calibration photos could be read")
        ids = match_ids(embedded.labels, [str(i) for i in g.items()["item_id"]])
        try:
            cal = g.calibrate(embedded.vectors, np.asarray(ids, object), args.target_far)
        except ValueError as exc:
            raise CLIError(f"{exc}: calibrate with photos of at least two items, or of items not enrolled") from exc
    finally:
        g.close()
    notes = calibration_notes(cal.n_impostor, cal.n_mated, cal.target_far, cal.threshold)
    for line in notes:
        print(line, file=sys.stderr)
    warning = next((n for n in notes if n.startswith("warning")), None)
    print(json.dumps({**cal.__dict__, "n_genuine": cal.n_mated, "warning": warning}, indent=1))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from itemrec.data.layout import LayoutError, read_labelled
    from itemrec.gallery.evaluation import OPERATING_FARS, evaluate_gallery

    fars = tuple(args.far) if args.far else OPERATING_FARS
    if not all(0 <= f <= 1 for f in fars):
        raise CLIError("--far must lie in [0, 1]")

    def labelled(source: str, what: str) -> tuple[Any, list[str], list]:
        try:
            data = read_labelled(source)
        except (LayoutError, FileNotFoundError) as exc:
            raise CLIError(f"{what}: {exc}") from exc
        embedded = g.embedder.embed(data.frame["path"].tolist(), data.frame["folder"].tolist(), progress=True)
        if not len(embedded):
            raise CLIError(f"{what}: none of the {len(data.frame)} photos could be read")
        return embedded.vectors, embedded.labels, list(embedded.skipped)

    g = _open(args.gallery, args.model, readonly=True)
    try:
        q_emb, q_labels, skipped = labelled(args.queries, "--queries")
        calib = labelled(args.calibration, "--calibration")[:2] if args.calibration else None
        report = evaluate_gallery(g, q_emb, q_labels, calib, fars)
    finally:
        g.close()
    report["unreadable"] = [list(s) for s in skipped]
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for line in gallery_eval_lines(report):
        print(line)
    return 0


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def gallery_eval_lines(report: dict[str, Any]) -> list[str]:
    """The table ``gallery evaluate`` prints.

    Args:
        report: the dict of :func:`itemrec.gallery.evaluation.evaluate_gallery` (``"threshold"``,
            ``"at_threshold"``, ``"operating_points"``, ``"calibrated_on"``, ``"enrolled_items"``,
            ``"unknown_labels"``), optionally with ``"unreadable"`` (the query photos skipped).

    Returns:
        Lines without newlines: the query counts, the rates at the gallery's own threshold
        (percentages; ``n/a`` where a rate is undefined), and one row per target FAR of the
        threshold trade-off.
    """
    r = report["at_threshold"]
    t = report["threshold"]
    lines = [
        f"{r['n_known']} photos of enrolled items, {r['n_unknown']} of {len(report['unknown_labels'])} labels not "
        f"enrolled (unknown: {', '.join(report['unknown_labels'][:10]) or 'none'}); {report['enrolled_items']} items enrolled",
        f"at the gallery's threshold ({'none set: nothing is rejected' if t is None else f'{t:.4f}'}): "
        f"top-1 {_pct(r['top1'])}, accepted correct {_pct(r['accepted_correct'])}, misidentified "
        f"{_pct(r['misidentified'])}, rejected known {_pct(r['rejected_known'])}, rejected unknown "
        f"{_pct(r['rejected_unknown'])}",
        f"trade-off (thresholds fitted on {report['calibrated_on']}):",
        "  target FAR  threshold  accepted correct  misidentified  rejected known  rejected unknown",
    ]
    for p in report["operating_points"]:
        lines.append(f"  {p['target_far']:<10g}  {p['threshold']:9.4f}  {_pct(p['accepted_correct']):>16}  "
                     f"{_pct(p['misidentified']):>13}  {_pct(p['rejected_known']):>14}  {_pct(p['rejected_unknown']):>16}")
    if report.get("unreadable"):
        lines.append(f"{len(report['unreadable'])} unreadable query photos skipped")
    return lines


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
            embedded = g.embedder.embed(paths, progress=True)
            for path, reason in embedded.skipped:
                print(f"skipped {path}: {reason}")
            if not len(embedded):
                raise CLIError(f"{args.photos}: no readable background photos")
            n = g.set_background(vectors=embedded.vectors, k=args.k, beta=args.beta)
            print(f"hubness correction on: {n} background photos, k {args.k}, beta {args.beta}; "
                  "the unknown threshold was cleared: run `itemrec gallery calibrate`")
    except GalleryError as exc:
        raise CLIError(str(exc)) from exc
    finally:
        g.close()
    return 0
