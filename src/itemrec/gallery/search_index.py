"""What a gallery needs from a vector index: :class:`SearchIndex`, a typing protocol.

:class:`itemrec.gallery.index.FaissIndex` implements it; another index (a service, another
library) can stand in for it by providing the same members.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class SearchIndex(Protocol):
    """A vector index with external int64 ids over float32 (N, D) unit rows.

    Attributes:
        dim: the vector dimension ``D``.
    """

    dim: int

    @property
    def ntotal(self) -> int:
        """Vectors searchable."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under new ids.

        Args:
            ids: (N,) int64 ids not present yet.
            vectors: (N, D) float32 unit rows.
        """

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids (absent ones ignored).

        Args:
            ids: int64 ids.

        Returns:
            How many were removed.
        """

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` vectors per query by inner product, best first.

        Args:
            vectors: (n, D) float32 queries.
            k: results per query.

        Returns:
            ``(scores (n, k) float32, ids (n, k) int64)``, ``-inf``/``-1`` where fewer exist.
        """

    def ids(self) -> np.ndarray:
        """Every searchable id.

        Returns:
            (n,) int64, sorted.
        """

    def write(self, fh: Any, extra: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> None:
        """Serialise into a binary file.

        Args:
            fh: a file open for binary writing.
            extra: more header keys.
            arrays: named int64 arrays stored with it.
        """
