"""Candidate lists of the neighbour engine (:mod:`itemrec.evaluation.neighbours`): padding, exact
re-ranking by ``(distance [+ offset], index)`` and distinct labels before a position."""

from __future__ import annotations

import numpy as np

from ._chunked import PairDistances


def _margin(k: int) -> int:
    """Extra candidates fetched beyond k, so the exact re-ranking rarely has to widen its list."""
    return 8 + k // 16


def _padded(mask: np.ndarray) -> np.ndarray:
    """Column indices of each row's true entries, left-aligned, padded with −1: (rows, max count)."""
    r, c = np.nonzero(mask)
    counts = np.bincount(r, minlength=len(mask))
    out = np.full((len(mask), int(counts.max(initial=1)) or 1), -1, np.int64)
    pos = np.arange(len(r)) - np.repeat(np.cumsum(counts) - counts, counts)
    out[r, pos] = c
    return out


def _rerank(pairs: PairDistances, rows: np.ndarray, cand: np.ndarray, k: int, self_cols: np.ndarray | None,
            offsets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The first k of ``cand`` (−1: none) by exact ``(distance [+ offset], index)``; self excluded."""
    bad = cand < 0
    if self_cols is not None:
        bad |= cand == self_cols[:, None]
    cand = np.where(bad, -1, cand)
    d = pairs.exact(rows, cand)
    if offsets is not None:
        d = d + offsets[np.maximum(cand, 0)]
    d[bad] = np.inf
    order = np.argsort(d, axis=1, kind="stable")  # FAISS lists come nearly sorted: cheap
    d, cand = np.take_along_axis(d, order, axis=1), np.take_along_axis(cand, order, axis=1)
    tied = np.flatnonzero(((d[:, 1:] == d[:, :-1]) & np.isfinite(d[:, 1:])).any(axis=1))
    if len(tied):  # equal distances: order those rows by (distance, index)
        sub_d, sub_c = d[tied], cand[tied]
        o = np.lexsort((np.where(sub_c < 0, np.iinfo(np.int64).max, sub_c), sub_d), axis=-1)
        d[tied], cand[tied] = np.take_along_axis(sub_d, o, axis=1), np.take_along_axis(sub_c, o, axis=1)
    return d[:, :k], cand[:, :k]


def _distinct_labels(rl: np.ndarray, sure: np.ndarray, cols: np.ndarray, before_u: np.ndarray) -> np.ndarray:
    """Per row: distinct labels among the references marked in ``sure`` and the ``cols`` marked in ``before_u``."""
    r1, c1 = np.nonzero(sure)
    r2, j2 = np.nonzero(before_u)
    r = np.concatenate([r1, r2])
    lab = np.concatenate([rl[c1], rl[cols[r2, j2]]])
    if not len(r):
        return np.zeros(len(sure), np.int64)
    _, codes = np.unique(lab, return_inverse=True)
    keys = np.unique(r * (codes.max() + 1) + codes)
    return np.bincount(keys // (codes.max() + 1), minlength=len(sure))
