"""The dataset record every loader returns, and its CSV manifest form.

An :class:`ImageDataset` is a table with one row per image:

=================  ====================================================
column             meaning
=================  ====================================================
``path``           absolute path of the image file (str)
``label``          integer class id, ``0..n_classes-1`` (int)
``class_name``     human-readable class name (str)
``coarse_label``   optional coarse class id (nullable int, ``-1`` = none)
``split``          optional split name (``train``/``val``/``test``/...)
=================  ====================================================

plus ``class_names`` (index = label) and ``representatives``: for each label
that has one, the path of its catalogue ("iconic") image. Representatives are
not rows of the table, so they are never their own queries.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ("path", "label", "class_name", "coarse_label", "split")


@dataclass
class ImageDataset:
    """A labelled image collection (see the module docstring).

    The frame is copied and normalised on construction: missing ``coarse_label`` /
    ``split`` columns are added (``-1`` / ``""``), the known columns come first, the index
    is reset.

    Attributes:
        frame: one row per image, with at least ``path``, ``label`` and ``class_name``.
        class_names: the name of each label (index = label).
        representatives: label to the path of its catalogue ("iconic") image, for the
            classes that have one.
        coarse_names: the name of each coarse label, or ``None``.
        name: the dataset's name, used in messages and by splits (``"<name>/train"``).

    Raises:
        ValueError: a required column is missing, or a label lies outside
            ``0..len(class_names)-1``.
    """

    frame: pd.DataFrame
    class_names: list[str]
    representatives: dict[int, str] = field(default_factory=dict)
    coarse_names: list[str] | None = None
    name: str = "dataset"

    def __post_init__(self) -> None:
        frame = self.frame.copy()
        for col in ("path", "label", "class_name"):
            if col not in frame.columns:
                raise ValueError(f"ImageDataset frame lacks the {col!r} column")
        if "coarse_label" not in frame.columns:
            frame["coarse_label"] = -1
        if "split" not in frame.columns:
            frame["split"] = ""
        frame["path"] = frame["path"].astype(str)
        frame["label"] = frame["label"].astype(np.int64)
        frame["coarse_label"] = frame["coarse_label"].fillna(-1).astype(np.int64)
        frame["split"] = frame["split"].fillna("").astype(str)
        frame = frame[list(COLUMNS) + [c for c in frame.columns if c not in COLUMNS]]
        self.frame = frame.reset_index(drop=True)
        if len(frame) and (frame["label"].min() < 0 or frame["label"].max() >= len(self.class_names)):
            raise ValueError(
                f"labels must lie in 0..{len(self.class_names) - 1} (class_names has "
                f"{len(self.class_names)} entries); got {frame['label'].min()}..{frame['label'].max()}"
            )
        self.representatives = {int(k): str(v) for k, v in self.representatives.items()}

    # -- views ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.frame)

    @property
    def paths(self) -> np.ndarray:
        """(N,) object array of the image paths."""
        return self.frame["path"].to_numpy(dtype=object)

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 class labels."""
        return self.frame["label"].to_numpy(dtype=np.int64)

    @property
    def coarse_labels(self) -> np.ndarray:
        """(N,) int64 coarse labels (``-1`` = none)."""
        return self.frame["coarse_label"].to_numpy(dtype=np.int64)

    @property
    def n_classes(self) -> int:
        """The number of class names (classes without images included)."""
        return len(self.class_names)

    def class_counts(self) -> pd.Series:
        """Images per class name, every class listed (zero included).

        Returns:
            A ``pandas.Series`` indexed by class name in label order.
        """
        counts = self.frame["class_name"].value_counts()
        return counts.reindex(self.class_names, fill_value=0)

    def subset(self, mask: np.ndarray | pd.Series, name: str | None = None) -> "ImageDataset":
        """Rows where ``mask`` is true; labels and class names are kept as they are.

        Args:
            mask: (N,) booleans.
            name: the subset's name (default: this dataset's).

        Returns:
            A new :class:`ImageDataset`.
        """
        mask = np.asarray(mask, dtype=bool)
        return ImageDataset(
            self.frame[mask].reset_index(drop=True),
            list(self.class_names),
            dict(self.representatives),
            self.coarse_names,
            name or self.name,
        )

    def split(self, name: str) -> "ImageDataset":
        """Rows whose ``split`` column equals ``name``.

        Args:
            name: a split name (``"train"``, ``"val"``, ``"test"``, ...).

        Returns:
            The subset, named ``<name>/<split>``.

        Raises:
            ValueError: no row is in that split; the message lists the splits present.
        """
        mask = self.frame["split"] == name
        if not mask.any():
            raise ValueError(
                f"{self.name}: no rows in split {name!r}; splits present: "
                f"{sorted(set(self.frame['split']))}"
            )
        return self.subset(mask, f"{self.name}/{name}")

    def with_classes(self, labels: np.ndarray | list[int], relabel: bool = False) -> "ImageDataset":
        """Rows of the given classes, optionally relabelled densely.

        Args:
            labels: the classes to keep.
            relabel: map them to ``0..len(labels)-1`` in the given order (class names and
                representatives follow); otherwise labels stay as they are.

        Returns:
            A new :class:`ImageDataset`.
        """
        labels = [int(x) for x in labels]
        sub = self.subset(self.frame["label"].isin(labels).to_numpy())
        if not relabel:
            return sub
        mapping = {old: new for new, old in enumerate(labels)}
        frame = sub.frame.copy()
        frame["label"] = frame["label"].map(mapping)
        reps = {mapping[k]: v for k, v in self.representatives.items() if k in mapping}
        return ImageDataset(frame, [self.class_names[i] for i in labels], reps, self.coarse_names, self.name)

    def representative_arrays(self, labels: np.ndarray | list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(paths, labels) of the catalogue images.

        Args:
            labels: the classes wanted, in order (default: all that have one, sorted).

        Returns:
            ``(paths, labels)``: an object array of paths and an int64 array of labels.

        Raises:
            ValueError: a requested class has no representative image.
        """
        keys = sorted(self.representatives) if labels is None else [int(x) for x in labels]
        missing = [k for k in keys if k not in self.representatives]
        if missing:
            raise ValueError(f"classes without a representative image: {missing[:10]}")
        return (np.array([self.representatives[k] for k in keys], dtype=object), np.array(keys, dtype=np.int64))

    # -- manifests -------------------------------------------------------------
    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the manifest CSV and a JSON sidecar (``<stem>.meta.json``) with class names and representatives.

        Args:
            path: the CSV file (parents created).

        Returns:
            ``path`` as a ``Path``.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.frame.to_csv(path, index=False)
        meta = {
            "name": self.name,
            "class_names": self.class_names,
            "coarse_names": self.coarse_names,
            "representatives": {str(k): v for k, v in self.representatives.items()},
        }
        _sidecar(path).write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def read_csv(cls, path: str | os.PathLike) -> "ImageDataset":
        """Read a manifest written by :meth:`to_csv`.

        Args:
            path: the CSV file; its ``.meta.json`` sidecar must be next to it.

        Returns:
            The :class:`ImageDataset` (its name defaults to the file's stem).

        Raises:
            FileNotFoundError: the CSV or its sidecar does not exist.
            ValueError: the table is not a valid dataset (see the class).
        """
        path = Path(path)
        frame = pd.read_csv(path, keep_default_na=False, dtype={"split": str, "class_name": str})
        meta = json.loads(_sidecar(path).read_text())
        return cls(
            frame,
            list(meta["class_names"]),
            {int(k): v for k, v in meta.get("representatives", {}).items()},
            meta.get("coarse_names"),
            meta.get("name", path.stem),
        )


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".meta.json")
