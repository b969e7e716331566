"""Result records of the gallery, and the open-set threshold calibration."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(slots=True)
class Match:
    """One candidate item for a query: cosine ``similarity`` of its best vector (or prototype).

    Attributes:
        item_id: the item's id, as enrolled.
        name: the item's display name (its id unless one was given).
        similarity: cosine similarity of the query to the item's best-scoring vector (or its
            mean prototype), in ``[-1, 1]``; with a background set (hubness correction,
            :mod:`itemrec.gallery.background`) the corrected score ``cos − β·r``, which may
            fall below ``-1``.
        attributes: the item's JSON attributes (an empty dict when none were stored).
    """

    item_id: str
    name: str
    similarity: float
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueryResult:
    """Top-k items for one query, best first.

    ``unknown`` is true when the best similarity is below the gallery threshold
    (or the gallery is empty): the query is taken to show an item not enrolled.

    Attributes:
        matches: up to k :class:`Match` objects, by decreasing similarity (fewer when the
            gallery holds fewer items; empty for an empty gallery).
        unknown: no match, or the best similarity ``< threshold``.
        threshold: the similarity threshold applied (the gallery's, or the one passed to the
            query), or ``None`` when none is set (then only an empty result is unknown).
    """

    matches: list[Match]
    unknown: bool
    threshold: float | None

    @property
    def best(self) -> Match | None:
        """The top match, or None when there is none."""
        return self.matches[0] if self.matches else None

    @property
    def item_id(self) -> str | None:
        """The recognised item id, or ``None`` when unknown."""
        return None if self.unknown or not self.matches else self.matches[0].item_id

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"item_id", "unknown", "threshold", "matches": [...]}``.

        Returns:
            A dict of plain Python values.
        """
        return {
            "item_id": self.item_id,
            "unknown": self.unknown,
            "threshold": self.threshold,
            "matches": [
                {"item_id": m.item_id, "name": m.name, "similarity": m.similarity, "attributes": m.attributes}
                for m in self.matches
            ],
        }


@dataclass(frozen=True)
class EnrollResult:
    """An acknowledged (committed) enrolment.

    Attributes:
        item_id: the item's id.
        n_vectors: vectors written for the item in this enrolment (its readable images, or
            the vectors given).
        generation: the store generation of the transaction that committed it.
        skipped: ``(path, reason)`` of each image file that could not be read or embedded
            (empty when every file was used, or vectors or arrays were given).
    """

    item_id: str
    n_vectors: int
    generation: int
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Calibration:
    """An open-set threshold chosen for a target false-accept rate (see :func:`choose_threshold`).

    Made by :meth:`itemrec.gallery.Gallery.calibrate`; ``float(calibration)`` is the threshold.
    The rates are measured on the same validation searches the threshold was chosen on.

    Attributes:
        threshold: the similarity threshold ``t``, in ``[-1, 1]`` for plain cosines; a query
            is accepted when its best similarity is ``>= t``.
        target_far: the false-accept rate (FPIR) asked for, in ``[0, 1]``.
        far: fraction of impostor (non-mated) searches accepted at ``t``, ``≤ target_far``.
        dir: detection-and-identification rate: enrolled validation queries whose top item is
            right and scores ``>= t``, over all enrolled queries, in ``[0, 1]`` (NaN when no
            validation query is of an enrolled item).
        n_impostor: impostor scores used: one per validation query with another item among
            its two best, scored by the best of those other items.
        n_mated: validation queries of enrolled items (the denominator of ``dir``).
    """

    threshold: float
    target_far: float
    far: float
    dir: float
    n_impostor: int
    n_mated: int

    def __float__(self) -> float:
        return float(self.threshold)


@dataclass(frozen=True)
class IntegrityReport:
    """What :meth:`Gallery.check` found; ``ok`` when ``problems`` is empty.

    Attributes:
        sqlite: the result of SQLite's ``PRAGMA integrity_check`` (``"ok"`` when sound).
        n_items: items in the store.
        n_vectors: vectors in the store (indexed or not, e.g. the images behind a mean prototype).
        n_indexed: stored vectors marked as indexed (those the search index should hold).
        index_ntotal: vectors in the in-memory search index.
        generation: the store's generation.
        index_file_generation: generation of the index file last read or written, or ``None``
            when none was.
        missing_from_index: ids of indexed stored vectors that the search index lacks.
        unknown_in_index: ids in the search index that no indexed stored vector has.
        problems: one human-readable line per problem found; empty when the gallery is consistent.
    """

    sqlite: str
    n_items: int
    n_vectors: int
    n_indexed: int
    index_ntotal: int
    generation: int
    index_file_generation: int | None
    missing_from_index: list[int]
    unknown_in_index: list[int]
    problems: list[str]

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def choose_threshold(impostor: np.ndarray, target_far: float) -> float:
    """The gallery's unknown threshold for a target false-accept rate: the one rule of
    :func:`itemrec.evaluation.thresholds.threshold_at_far` on similarities (``accept="above"``).

    A query is accepted when its best similarity is ``>= t``. With the impostor scores sorted
    in decreasing order ``s_(1) >= … >= s_(n)`` and ``m = ⌊target_far · n⌋`` accepts allowed,
    ``t = (s_(m) + s_(m+1)) / 2``, or the next float32 above ``s_(m+1)`` when ``m = 0`` or the two
    are tied, so the fraction of impostors accepted is at most ``target_far``. When every score
    may be accepted (``m = n``) the threshold is ``-1`` (the lowest cosine similarity) rather
    than ``-inf``, so it can be stored as JSON. This is the FPIR of ISO/IEC 19795-1 open-set
    identification, estimated on non-mated searches.

    Args:
        impostor: impostor (non-mated) similarity scores, any shape (flattened), as float32.
        target_far: in ``[0, 1]``.

    Returns:
        The threshold ``t`` (Python float).

    Raises:
        ValueError: no scores, non-finite scores, or ``target_far`` outside ``[0, 1]``.
    """
    from itemrec.evaluation.thresholds import threshold_at_far  # lazy: the gallery loads without the evaluation

    s = np.asarray(impostor, np.float32).reshape(-1)
    if not len(s):
        raise ValueError("calibration needs at least one impostor (non-mated) score")
    return max(threshold_at_far(s, float(target_far), accept="above"), -1.0)
