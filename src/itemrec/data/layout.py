"""A user's own labelled photos: folder-per-class trees, ``split/class`` trees and CSV manifests.

Three layouts are read into one table (:class:`LabelledImages`):

* **folder-per-class**: ``ROOT/<class>/<image>``;
* **split/class**: ``ROOT/<split>/<class>/<image>``, e.g. ``Train/`` and ``Validation/``;
  recognised when no folder under ``ROOT`` holds images directly but some hold class folders;
* **manifest**: a CSV with a ``path`` column and a label column (``item_id``, ``class_name``,
  ``class`` or ``label``, first found wins) and optionally ``split``, such as the split CSVs
  ``itemrec train`` writes. Relative paths are relative to the CSV's folder.

Class names are matched across splits by a *key* (:func:`class_key`): case folded, with
``-``, spaces and ``.`` read as ``_``, so ``Green-Apple``, ``green_apple`` and
``GREEN APPLE`` are one class. Every spelling seen is kept (``spellings``).

Images are recognised by suffix (:data:`READABLE_SUFFIXES`, every format Pillow reads here,
TIFF and WebP included); whether they decode is checked where they are read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from itemrec.data.images import IMAGE_SUFFIXES as READABLE_SUFFIXES  # one list: every format the decode path reads

if TYPE_CHECKING:
    import pandas as pd

LABEL_COLUMNS = ("item_id", "class_name", "class", "label")


class LayoutError(ValueError):
    """The folder or manifest is not a layout this module reads; the message says what was expected."""


def class_key(name: str) -> str:
    """``"Green-Apple "`` -> ``"green_apple"``: case folded, ``-``/space/``.`` as ``_``, runs of ``_`` merged.

    Args:
        name: a class folder name or label.

    Returns:
        The key, without leading or trailing ``_``; the name itself when nothing would remain.
    """
    key = re.sub(r"[\s\-.]+", "_", str(name).strip().casefold())
    return re.sub(r"_+", "_", key).strip("_") or str(name)


def image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """Files under ``folder`` with a :data:`READABLE_SUFFIXES` suffix (any case; hidden files skipped), sorted.

    Args:
        folder: the folder.
        recursive: search sub-folders too.

    Returns:
        The image paths, sorted.
    """
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in READABLE_SUFFIXES
                  and not p.name.startswith("."))


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


@dataclass
class LabelledImages:
    """Labelled image paths in one of the layouts of the module docstring.

    Attributes:
        frame: columns ``path`` (str), ``key`` (:func:`class_key`), ``class_name`` (the first
            spelling seen of that key), ``folder`` (the spelling of this row), ``split`` (``""``
            when the layout has none).
        layout: ``"folder-per-class"``, ``"split/class"`` or ``"manifest"``.
        root: the folder or CSV read.
        empty_folders: class folders holding no image file.
    """

    frame: pd.DataFrame
    layout: str
    root: str
    empty_folders: list[str] = field(default_factory=list)

    @property
    def splits(self) -> list[str]:
        """The split names present, sorted (empty when the layout has none)."""
        return sorted(s for s in self.frame["split"].unique() if s)

    @property
    def classes(self) -> list[str]:
        """Class keys, sorted."""
        return sorted(self.frame["key"].unique())

    @property
    def spellings(self) -> dict[str, list[str]]:
        """Class key -> every folder name or label spelling found for it (only keys with two or more)."""
        groups = self.frame.groupby("key")["folder"].unique()
        return {k: sorted(v) for k, v in groups.items() if len(v) > 1}

    def names(self) -> dict[str, str]:
        """Class key -> display name (first spelling).

        Returns:
            The mapping, one entry per class.
        """
        return dict(zip(self.frame["key"], self.frame["class_name"]))

    def in_split(self, splits: list[str] | None) -> pd.DataFrame:
        """Rows of the given splits.

        Args:
            splits: split names, or ``None`` for all rows.

        Returns:
            The rows of :attr:`frame`.
        """
        return self.frame if splits is None else self.frame[self.frame["split"].isin(splits)]

    def find_split(self, name: str) -> str:
        """The split whose key equals ``class_key(name)`` (so ``validation`` finds ``Validation``).

        Args:
            name: the split wanted.

        Returns:
            The split's own spelling.

        Raises:
            LayoutError: no split matches; the message names the splits there are.
        """
        for s in self.splits:
            if class_key(s) == class_key(name):
                return s
        raise LayoutError(f"{self.root} has no split {name!r}; its splits: {', '.join(self.splits) or 'none'}")


def _frame(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["path", "folder", "split"])
    frame["key"] = [class_key(f) for f in frame["folder"]]
    first = frame.drop_duplicates("key").set_index("key")["folder"]
    frame["class_name"] = frame["key"].map(first)
    return frame[["path", "key", "class_name", "folder", "split"]]


def read_folder(root: str | os.PathLike) -> LabelledImages:
    """Read a folder-per-class or ``split/class`` tree (see the module docstring).

    Images are searched recursively under each class folder.

    Args:
        root: the tree's root (``~`` expanded).

    Returns:
        The :class:`LabelledImages`.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        LayoutError: no class folders, images both directly in split folders and in class
            folders, or no image at all.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    tops = _subdirs(root)
    if not tops:
        raise LayoutError(f"{root}: no sub-folders; expected ROOT/<class>/<image> or ROOT/<split>/<class>/<image>")
    direct = {t: image_files(t) for t in tops}
    nested = {t: _subdirs(t) for t in tops}
    split_tree = not any(direct.values()) and any(nested.values())
    rows: list[tuple[str, str, str]] = []
    empty: list[str] = []
    if split_tree:
        for split in tops:
            for cls in nested[split]:
                files = image_files(cls, recursive=True)
                rows += [(str(f), cls.name, split.name) for f in files]
                if not files:
                    empty.append(str(cls))
        layout = "split/class"
    else:
        for cls in tops:
            files = image_files(cls, recursive=True)
            rows += [(str(f), cls.name, "") for f in files]
            if not files:
                empty.append(str(cls))
        layout = "folder-per-class"
    if not rows:
        raise LayoutError(f"{root}: no images ({', '.join(READABLE_SUFFIXES)}) in its class folders")
    return LabelledImages(_frame(rows), layout, str(root), empty)


def read_manifest(path: str | os.PathLike) -> LabelledImages:
    """Read a CSV manifest with ``path`` and a label column (see the module docstring).

    Args:
        path: the CSV (``~`` expanded); relative image paths are relative to its folder.

    Returns:
        The :class:`LabelledImages` (layout ``"manifest"``).

    Raises:
        FileNotFoundError: the CSV does not exist.
        LayoutError: no ``path`` column, no label column, or no rows.
    """
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    label = next((c for c in LABEL_COLUMNS if c in frame.columns), None)
    if "path" not in frame.columns or label is None:
        raise LayoutError(f"{path}: a manifest needs a 'path' column and one of {', '.join(LABEL_COLUMNS)}; "
                          f"it has {', '.join(frame.columns)}")
    if not len(frame):
        raise LayoutError(f"{path}: no rows")
    paths = [p if Path(p).is_absolute() else str(path.parent / p) for p in frame["path"]]
    split = frame["split"] if "split" in frame.columns else [""] * len(frame)
    return LabelledImages(_frame(list(zip(paths, frame[label], split))), "manifest", str(path))


def read_labelled(source: str | os.PathLike) -> LabelledImages:
    """:func:`read_manifest` for a ``.csv`` file, :func:`read_folder` for a folder.

    Args:
        source: a ``.csv`` manifest or a folder.

    Returns:
        The :class:`LabelledImages`.

    Raises:
        LayoutError: ``source`` is a file that is not a ``.csv``, or the layout is not readable.
        FileNotFoundError: ``source`` does not exist.
    """
    p = Path(source).expanduser()
    if p.suffix.lower() == ".csv":
        return read_manifest(p)
    if p.is_file():
        raise LayoutError(f"{p}: expected a folder of class folders or a .csv manifest")
    return read_folder(p)
