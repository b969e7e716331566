"""What embedding a list of image files gives: the vectors of the files that could be read,
with their paths and labels kept aligned, and the files skipped with the reason.

:meth:`itemrec.embedder.ImageEmbedder.embed` (and every embedder with the same interface)
returns an :class:`EmbeddedSet`, so callers never index their labels by the kept positions
themselves:

>>> s = embedder.embed(paths, labels)       # doctest: +SKIP
>>> s.vectors.shape, len(s.labels), s.skipped   # doctest: +SKIP
((98, 128), 98, [('c.jpg', 'not an image (unrecognised format)')])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class EmbeddedSet:
    """Embeddings of the readable files of a list, aligned with their paths and labels.

    Attributes:
        vectors: (N, D) float32, row ``i`` the embedding of ``paths[i]`` (as the model gives it,
            not normalised).
        labels: the labels of the kept files, in the same order (the type given to
            :meth:`from_kept`: a NumPy array, a pandas Series/DataFrame with a fresh 0..N-1 index,
            or a list), or ``None`` when no labels were given.
        paths: (N,) the kept files, as strings, in input order.
        skipped: ``(path, reason)`` of each file that could not be read, in input order.
    """

    vectors: np.ndarray
    labels: Any
    paths: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]

    def __len__(self) -> int:
        """Number of embedded (kept) files, ``N``."""
        return len(self.paths)

    @property
    def dim(self) -> int:
        """The embedding dimension ``D``."""
        return int(self.vectors.shape[1])

    @classmethod
    def from_kept(
        cls,
        vectors: Any,
        keep: Any,
        paths: Sequence[str | os.PathLike],
        labels: Any = None,
        skipped: Sequence[tuple[str, str]] = (),
    ) -> "EmbeddedSet":
        """Build the set from an embedder's raw output: vectors of the kept files and their positions.

        Args:
            vectors: (N, D) embeddings of the kept files, in the order of ``keep``.
            keep: (N,) int positions in ``paths`` of the files embedded.
            paths: (M,) every file given to the embedder.
            labels: (M,) one label per file in ``paths`` (array, list, tuple, or pandas
                Series/DataFrame rows), or ``None``.
            skipped: ``(path, reason)`` of the files left out.

        Returns:
            The :class:`EmbeddedSet`; a labels array keeps its dtype.

        Raises:
            ValueError: ``labels`` and ``paths`` differ in length, ``vectors`` is not 2-D, or
                ``vectors`` and ``keep`` differ in length, or ``keep`` is outside ``paths``.
        """
        paths = [os.fspath(p) for p in paths]
        keep = np.asarray(keep, np.int64).reshape(-1)
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"embeddings must be (N, D), got shape {vectors.shape}")
        if len(vectors) != len(keep):
            raise ValueError(f"{len(vectors)} embeddings for {len(keep)} kept files")
        if len(keep) and (keep.min() < 0 or keep.max() >= len(paths)):
            raise ValueError(f"kept positions must lie in [0, {len(paths)}), got {keep.min()}..{keep.max()}")
        return cls(vectors, select(labels, keep, len(paths)), tuple(paths[i] for i in keep),
                   tuple((str(p), str(r)) for p, r in skipped))


def select(labels: Any, keep: np.ndarray, n: int) -> Any:
    """The entries ``keep`` of ``labels`` (one per file), in the same kind of container.

    Args:
        labels: (n,) NumPy array, pandas Series/DataFrame (rows), list or tuple; or ``None``.
        keep: (N,) int positions.
        n: the number of files the labels must cover.

    Returns:
        ``None`` for ``None``; an array for an array, a Series/DataFrame (index reset to
        0..N-1) for pandas objects, a list for any other sequence.

    Raises:
        ValueError: ``labels`` does not hold ``n`` entries.
    """
    if labels is None:
        return None
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} paths; give one label per path")
    if hasattr(labels, "iloc"):  # pandas: positional rows, fresh index
        return labels.iloc[keep].reset_index(drop=True)
    if isinstance(labels, np.ndarray):
        return labels[keep]
    return [labels[int(i)] for i in keep]
