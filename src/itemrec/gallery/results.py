"""Result records of the gallery, and the open-set threshold calibration."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(slots=True)
class Match:
    """One candidate item for a query: cosine ``similarity`` of its best vector (or prototype)."""

    item_id: str
    name: str
    similarity: float
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueryResult:
    """Top-k items for one query, best first.

    ``unknown`` is true when the best similarity is below the gallery threshold
    (or the gallery is empty): the query is taken to show an item not enrolled.
    """

    matches: list[Match]
    unknown: bool
    threshold: float | None

    @property
    def best(self) -> Match | None:
        return self.matches[0] if self.matches else None

    @property
    def item_id(self) -> str | None:
        """The recognised item id, or ``None`` when unknown."""
        return None if self.unknown or not self.matches else self.matches[0].item_id

    def to_dict(self) -> dict[str, Any]:
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
    """An acknowledged (committed) enrolment."""

    item_id: str
    n_vectors: int
    generation: int
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Calibration:
    """An open-set threshold chosen for a target false-accept rate (see :func:`choose_threshold`)."""

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
    """What :meth:`Gallery.check` found; ``ok`` when ``problems`` is empty."""

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
        return not self.problems


def choose_threshold(impostor: np.ndarray, target_far: float) -> float:
    """The lowest threshold ``t`` with ``#{s_i >= t} / n <= target_far`` over impostor scores ``s``.

    With the scores sorted in decreasing order ``s_(1) >= … >= s_(n)`` and
    ``m = ⌊target_far · n⌋`` accepts allowed, ``t`` is the next float32 above
    ``s_(m+1)``, so ``s_(m+1)`` and everything below it are rejected (a query
    is accepted when its best similarity is ``>= t``). ``target_far >= 1``
    gives ``-1`` (accept all). This is the FPIR of ISO/IEC 19795-1 open-set
    identification, estimated on non-mated searches.
    """
    s = np.sort(np.asarray(impostor, np.float32).reshape(-1))[::-1]
    if not len(s):
        raise ValueError("calibration needs at least one impostor (non-mated) score")
    if not 0.0 <= target_far <= 1.0:
        raise ValueError(f"target_far must lie in [0, 1], got {target_far}")
    m = int(np.floor(target_far * len(s) + 1e-9))
    if m >= len(s):
        return -1.0
    return float(np.nextafter(s[m], np.float32(np.inf)))
