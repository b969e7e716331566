"""Where the gallery commands read photos from: item folders, CSV manifests, files and folders.

Kept apart from :mod:`itemrec.cli.gallery` so that module holds the commands only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from itemrec.cli import CLIError


def read_source(source: str | os.PathLike, empty: list[str] | None = None) -> list[dict[str, Any]]:
    """``[{item_id, name, paths, attributes}]`` from a folder-per-item tree or a CSV manifest.

    A folder: one entry per sub-folder with image files (:data:`itemrec.data.images.IMAGE_SUFFIXES`,
    TIFF and WebP included; not recursive), its name the item id and name. A CSV: ``path`` and
    ``item_id`` (or ``class_name``, ``class`` or ``label``), optional ``name`` and
    ``attributes`` (a JSON object, read from the item's first row); relative paths are
    relative to the CSV's folder.

    Args:
        source: the folder or ``.csv`` file.
        empty: a list that sub-folders without images are appended to (``None``: not
            reported).

    Returns:
        One dict per item, in folder-name or first-appearance order.

    Raises:
        CLIError: no sub-folder with images; a CSV without ``path`` or an id column, with
            attributes that are not JSON, or with no rows; a source that is neither a folder
            nor a ``.csv`` file.
    """
    from itemrec.data.layout import READABLE_SUFFIXES as IMAGE_SUFFIXES

    src = Path(source)
    if src.is_dir():
        entries = []
        for sub in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
            paths = sorted(str(f) for f in sub.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if paths:
                entries.append({"item_id": sub.name, "name": sub.name, "paths": paths, "attributes": None})
            elif empty is not None:
                empty.append(sub.name)
        if not entries:
            raise CLIError(f"{src}: no sub-folders with images ({', '.join(IMAGE_SUFFIXES)}); expected SOURCE/ITEM_ID/*.jpg")
        return entries
    if src.is_file() and src.suffix.lower() == ".csv":
        return _read_csv(src)
    raise CLIError(f"{src}: expected a folder of item folders or a .csv file")


def _read_csv(src: Path) -> list[dict[str, Any]]:
    import pandas as pd

    from itemrec.data.layout import LABEL_COLUMNS

    frame = pd.read_csv(src, dtype=str, keep_default_na=False)
    id_col = next((c for c in LABEL_COLUMNS if c in frame.columns), None)
    if "path" not in frame.columns or id_col is None:
        raise CLIError(f"{src}: CSV needs a path column and one of {', '.join(LABEL_COLUMNS)} "
                       f"(item_id,path[,name,attributes]); it has {', '.join(frame.columns)}")
    entries = []
    for item_id, rows in frame.groupby(id_col, sort=False):
        paths = [str(p) if Path(p).is_absolute() else str(src.parent / p) for p in rows["path"]]
        name = rows["name"].iloc[0] if "name" in rows and rows["name"].iloc[0] else str(item_id)
        attrs = None
        if "attributes" in rows and rows["attributes"].iloc[0]:
            try:
                attrs = json.loads(rows["attributes"].iloc[0])
            except json.JSONDecodeError as exc:
                raise CLIError(f"{src}: attributes of item {item_id!r} are not JSON ({exc})") from exc
        entries.append({"item_id": str(item_id), "name": name, "paths": paths, "attributes": attrs})
    if not entries:
        raise CLIError(f"{src}: no rows")
    return entries


def expand_images(items: list[str]) -> list[str]:
    """Image files as given, folders expanded recursively (sorted).

    Args:
        items: image files and folders.

    Returns:
        The image paths, in the order given.

    Raises:
        CLIError: a path does not exist, or a folder holds no images.
    """
    from itemrec.data.layout import READABLE_SUFFIXES, image_files

    out: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = image_files(p, recursive=True)
            if not found:
                raise CLIError(f"folder {p} holds no images ({', '.join(READABLE_SUFFIXES)})")
            out += [str(f) for f in found]
        elif p.exists():
            out.append(item)
        else:
            raise CLIError(f"image {p} does not exist")
    return out


def check_readable(entries: list[dict[str, Any]], progress: bool = True) -> tuple[list[dict[str, Any]], list, list[str]]:
    """Decode every image of every entry first (:func:`itemrec.data.images.read_image`, in 4 threads).

    Args:
        entries: ``[{item_id, paths, ...}]`` as :func:`read_source` gives them.
        progress: a progress bar.

    Returns:
        ``(entries with only their readable paths, skipped [(path, reason)], item ids left with none)``;
        entries left with no readable path are dropped.
    """
    from concurrent.futures import ThreadPoolExecutor

    from itemrec.data.images import BadImageError, read_image

    def reason(path: str) -> str | None:
        try:
            read_image(path)
        except BadImageError as exc:
            return exc.reason
        return None

    paths = [p for e in entries for p in e["paths"]]
    with ThreadPoolExecutor(max_workers=4) as pool:
        it = pool.map(reason, paths, chunksize=16)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(paths), desc="checking images", unit="image")
        bad = dict((p, r) for p, r in zip(paths, it) if r is not None)
    kept, none_left = [], []
    for e in entries:
        good = [p for p in e["paths"] if p not in bad]
        if good:
            kept.append({**e, "paths": good})
        else:
            none_left.append(e["item_id"])
    return kept, list(bad.items()), none_left
