"""Index samplers for metric learning: P×K batches and random triplets.

* :class:`PKSampler`: batches of ``P`` classes × ``K`` images each, the batch
  construction of Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for
  Person Re-Identification" (2017), needed for batch-hard / batch-all triplet
  mining and for centre losses (every class in a batch has positives).
* :func:`random_triplets`: uniformly drawn (anchor, positive, negative)
  index triplets, as in the original offline triplet experiment (Schroff et
  al., "FaceNet", CVPR 2015, without mining).

Pure NumPy; no TensorFlow import.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np


class PKSampler:
    """Iterable of index batches: ``P`` distinct classes × ``K`` indices each (``P*K`` per batch).

    The batch construction of Hermans, Beyer & Leibe (2017). Classes are visited in a
    shuffled cycle so that all of them appear about equally often; within a class ``K``
    indices are drawn without replacement, or with replacement (after taking each image
    once) when the class has fewer than ``K`` images. Classes with fewer than 2 images have
    no positive pair and are excluded with a warning. Batches are arranged class by class:
    ``batch[p*K:(p+1)*K]`` share a label. Each ``iter()`` continues the seeded random stream,
    so epochs differ but the whole sequence is reproducible from ``seed``; ``len()`` is
    ``n_batches``.

    Args:
        labels: (N,) integer class labels.
        P: classes per batch (≥ 1).
        K: images per class (≥ 1).
        seed: the seed of the random stream.
        n_batches: batches per iteration; default ``n_eligible_images // (P*K)`` (at least 1).

    Raises:
        ValueError: ``labels`` not 1-D, P or K below 1, or fewer than P classes with at
            least 2 images.
    """

    def __init__(self, labels: np.ndarray, P: int, K: int, seed: int = 0, n_batches: int | None = None) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
        if P < 1 or K < 1:
            raise ValueError(f"P and K must be >= 1, got P={P}, K={K}")
        self.labels = labels.astype(np.int64)
        self.P, self.K = int(P), int(K)
        classes, counts = np.unique(self.labels, return_counts=True)
        small = classes[counts < 2]
        if len(small):
            warnings.warn(
                f"PKSampler: excluding {len(small)} classes with fewer than 2 images (no positives): "
                f"{small.tolist()[:10]}",
                stacklevel=2,
            )
        self.classes = classes[counts >= 2]
        if len(self.classes) < self.P:
            raise ValueError(f"PKSampler needs P={self.P} classes with >= 2 images; only {len(self.classes)} have")
        self.members = {int(c): np.flatnonzero(self.labels == c) for c in self.classes}
        n_eligible = int(sum(len(m) for m in self.members.values()))
        self.n_batches = int(n_batches) if n_batches is not None else max(1, n_eligible // (self.P * self.K))
        self.rng = np.random.default_rng(seed)
        self._queue: list[int] = []

    @property
    def batch_size(self) -> int:
        """``P * K``, the indices in every batch."""
        return self.P * self.K

    def __len__(self) -> int:
        return self.n_batches

    def _next_classes(self) -> list[int]:
        chosen: list[int] = []
        while len(chosen) < self.P:
            if not self._queue:
                self._queue = [int(c) for c in self.rng.permutation(self.classes)]
            c = self._queue.pop()
            if c in chosen:  # at a cycle boundary: put it back for the next batch
                self._queue.insert(0, c)
                if not set(self._queue) - set(chosen):  # only chosen ones left: start a new cycle
                    self._queue = []
                continue
            chosen.append(c)
        return chosen

    def _draw(self, c: int) -> np.ndarray:
        m = self.members[c]
        if len(m) >= self.K:
            return self.rng.choice(m, size=self.K, replace=False)
        extra = self.rng.choice(m, size=self.K - len(m), replace=True)
        return self.rng.permutation(np.concatenate([m, extra]))

    def __iter__(self) -> Iterator[np.ndarray]:
        for _ in range(self.n_batches):
            yield np.concatenate([self._draw(c) for c in self._next_classes()]).astype(np.int64)


def random_triplets(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``(n, 3)`` int64 index triplets (anchor, positive, negative), drawn without mining.

    Anchors are drawn uniformly from the samples whose class has at least two
    images; the positive uniformly from the anchor's class minus the anchor;
    the negative uniformly from all samples of other classes (the offline triplets of
    Schroff et al., FaceNet, CVPR 2015, without their mining).

    Args:
        labels: (N,) integer class labels.
        n: the number of triplets (≥ 0).
        seed: the seed of the draws.

    Returns:
        (n, 3) int64 indices into ``labels``.

    Raises:
        ValueError: ``labels`` not 1-D, ``n`` < 0, fewer than 2 classes, or no class with at
            least 2 images.
    """
    labels = np.asarray(labels).astype(np.int64)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    classes, starts, counts = np.unique(sorted_labels, return_index=True, return_counts=True)
    if len(classes) < 2:
        raise ValueError("random_triplets needs at least 2 classes")
    eligible = np.flatnonzero(counts[np.searchsorted(classes, sorted_labels)] >= 2)
    if len(eligible) == 0:
        raise ValueError("random_triplets needs a class with at least 2 images")
    rng = np.random.default_rng(seed)
    a_rank = rng.choice(eligible, size=n)  # positions in the sorted order
    ci = np.searchsorted(classes, sorted_labels[a_rank])
    start, count = starts[ci], counts[ci]
    # positive: a random other member of the class (skip the anchor's own slot)
    r = (rng.random(n) * (count - 1)).astype(np.int64)
    r += r >= (a_rank - start)
    p_rank = start + r
    # negative: a random position outside the class's block [start, start + count)
    r = (rng.random(n) * (len(labels) - count)).astype(np.int64)
    r += np.where(r >= start, count, 0)
    return np.stack([order[a_rank], order[p_rank], order[r]], axis=1).astype(np.int64)
