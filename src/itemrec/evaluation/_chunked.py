"""The memory-bounded distance engine every retrieval and verification metric uses.

Distances between a query set ``Q`` (n × d) and a reference set ``R`` (m × d) are
computed one block of query rows at a time, ``D[i:j] = dist(Q[i:j], R)``, so the
full n × m matrix never exists; a block holds at most ``memory_mb`` MiB. With the
default 256 MiB, 100,000 × 100,000 float32 distances are 160 blocks of ~670 rows.

Metrics (``metric=``):

* ``"cosine"``: ``D(a, b) = 1 − a·b / (‖a‖ ‖b‖)``, in [0, 2];
* ``"l2"``: ``D(a, b) = ‖a − b‖₂`` (computed as ``sqrt(max(0, ‖a‖² + ‖b‖² − 2 a·b))``).

Arithmetic is in float64 when either input is float64, else float32.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

METRICS = ("cosine", "l2")
DEFAULT_MEMORY_MB = 256.0


def check_embeddings(x: np.ndarray, name: str) -> np.ndarray:
    """``x`` as a finite 2-D float array, or a ValueError naming ``name``."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n, dim); got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_labels(labels: np.ndarray, n: int, name: str) -> np.ndarray:
    """``labels`` as a 1-D integer array of length ``n``, or a ValueError naming ``name``."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{name} must be a 1-D array of length {n}; got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer class ids; got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
    return metric


def _common_dtype(a: np.ndarray, b: np.ndarray) -> type:
    return np.float64 if np.float64 in (a.dtype, b.dtype) else np.float32


def _prepare(x: np.ndarray, metric: str, dtype: type) -> tuple[np.ndarray, np.ndarray | None]:
    x = np.ascontiguousarray(x, dtype=dtype)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise ValueError("cosine distance is undefined for all-zero embeddings")
        return x / norms, None
    return x, np.einsum("ij,ij->i", x, x)


def rows_per_block(n_reference: int, itemsize: int = 8, memory_mb: float = DEFAULT_MEMORY_MB, factor: int = 3) -> int:
    """Query rows per block so that ``factor`` arrays of ``rows × n_reference`` fit ``memory_mb``."""
    budget = memory_mb * 2**20
    return int(max(1, budget // (max(1, n_reference) * itemsize * factor)))


def _finish(block: np.ndarray, metric: str, q_sq, r_sq) -> np.ndarray:
    if metric == "cosine":
        np.subtract(1.0, block, out=block)
    else:
        block *= -2.0
        block += q_sq[:, None]
        block += r_sq[None, :]
        np.maximum(block, 0.0, out=block)
        np.sqrt(block, out=block)
    return block


def distance_blocks(
    query: np.ndarray,
    reference: np.ndarray,
    metric: str = "cosine",
    rows: int | None = None,
    memory_mb: float = DEFAULT_MEMORY_MB,
    reference_offsets: np.ndarray | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(start, stop, D[start:stop])``, blocks of the query × reference distance matrix,
    plus ``reference_offsets[j]`` on column ``j`` when given (see :mod:`itemrec.evaluation.hubness`)."""
    check_metric(metric)
    dtype = _common_dtype(query, reference)
    ref, ref_sq = _prepare(reference, metric, dtype)
    qry, q_sq = _prepare(query, metric, dtype)
    offsets = None if reference_offsets is None else check_offsets(reference_offsets, len(ref)).astype(dtype)
    step = rows or rows_per_block(len(ref), np.dtype(dtype).itemsize, memory_mb)
    for start in range(0, len(qry), step):
        stop = min(start + step, len(qry))
        q_part = None if q_sq is None else q_sq[start:stop]
        block = _finish(qry[start:stop] @ ref.T, metric, q_part, ref_sq)
        yield start, stop, block if offsets is None else block + offsets[None, :]


def check_offsets(offsets: np.ndarray, n: int) -> np.ndarray:
    """A finite 1-D array of ``n`` per-reference distance offsets, or a clear error."""
    o = np.asarray(offsets)
    if o.ndim != 1 or len(o) != n:
        raise ValueError(f"reference offsets must be a 1-D array of {n} values (one per reference); got shape {o.shape}")
    if not np.issubdtype(o.dtype, np.number) or not np.isfinite(o).all():
        raise ValueError("reference offsets must be finite numbers")
    return o


def upper_triangle_blocks(
    x: np.ndarray, metric: str = "cosine", memory_mb: float = DEFAULT_MEMORY_MB
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(start, stop, D[start:stop, start:])`` of the self-distance matrix of ``x``.

    Only columns from ``start`` on are computed (the pairs ``i < j`` lie there, with
    the diagonal at ``block[r, r]``), about half the work of the full matrix.
    """
    check_metric(metric)
    dtype = _common_dtype(x, x)
    xp, sq = _prepare(x, metric, dtype)
    step = rows_per_block(len(xp), np.dtype(dtype).itemsize, memory_mb)
    for start in range(0, len(xp), step):
        stop = min(start + step, len(xp))
        block = xp[start:stop] @ xp[start:].T
        yield start, stop, _finish(block, metric, None if sq is None else sq[start:stop],
                                   None if sq is None else sq[start:])


def pairwise_distances(a: np.ndarray, b: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """The full distance matrix (small inputs only; the engine's single-block case)."""
    a = check_embeddings(a, "a")
    b = check_embeddings(b, "b")
    return next(distance_blocks(a, b, metric, rows=max(1, len(a))))[2]


def knn(
    query: np.ndarray,
    reference: np.ndarray,
    k: int,
    metric: str = "cosine",
    exclude_self: bool = False,
    memory_mb: float = DEFAULT_MEMORY_MB,
    reference_offsets: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest references of each query: ``(distances, indices)``, each n × k, nearest first
    (by distance plus ``reference_offsets[j]`` when given).

    ``exclude_self`` treats query ``i`` and reference ``i`` as the same item (the
    query set *is* the reference set) and never returns it. Within the k found,
    equal distances are ordered by reference index; which of several items tied
    at the k-th distance is kept is unspecified.
    """
    query = check_embeddings(query, "query embeddings")
    reference = check_embeddings(reference, "reference embeddings")
    if query.shape[1] != reference.shape[1]:
        raise ValueError(f"query dim {query.shape[1]} != reference dim {reference.shape[1]}")
    if exclude_self and len(query) != len(reference):
        raise ValueError("exclude_self needs the query set to be the reference set (same length)")
    available = len(reference) - int(exclude_self)
    if not 1 <= k <= available:
        raise ValueError(f"k must lie in 1..{available} (references available); got {k}")
    out_d = np.empty((len(query), k), dtype=_common_dtype(query, reference))
    out_i = np.empty((len(query), k), dtype=np.int64)
    for start, stop, block in distance_blocks(query, reference, metric, memory_mb=memory_mb,
                                              reference_offsets=reference_offsets):
        if exclude_self:
            rows = np.arange(stop - start)
            block[rows, start + rows] = np.inf
        if k < block.shape[1]:
            part = np.argpartition(block, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(block.shape[1]), block.shape).copy()
        dpart = np.take_along_axis(block, part, axis=1)
        order = np.lexsort((part, dpart), axis=-1)
        out_i[start:stop] = np.take_along_axis(part, order, axis=1)
        out_d[start:stop] = np.take_along_axis(dpart, order, axis=1)
    return out_d, out_i


def _checked_pair(query, query_labels, reference, reference_labels, exclude_self: bool):
    """Validated ``(query, query labels, reference, reference labels)`` for the ranking functions."""
    query = check_embeddings(query, "query embeddings")
    reference = check_embeddings(reference, "reference embeddings")
    ql = check_labels(query_labels, len(query), "query labels")
    rl = check_labels(reference_labels, len(reference), "reference labels")
    if exclude_self and len(query) != len(reference):
        raise ValueError("exclude_self needs the query set to be the reference set (same length)")
    return query, ql, reference, rl


def first_match_rank(
    query: np.ndarray,
    query_labels: np.ndarray,
    reference: np.ndarray,
    reference_labels: np.ndarray,
    metric: str = "cosine",
    exclude_self: bool = False,
    memory_mb: float = DEFAULT_MEMORY_MB,
    reference_offsets: np.ndarray | None = None,
) -> np.ndarray:
    """1-based rank of the nearest same-label reference for each query (0: the query has none).

    ``rank_i = 1 + |{j : label_j ≠ label_i, D(i, j) < min_{l: label_l = label_i} D(i, l)}|``:
    different-label items at exactly the same distance do not push the match down. With
    ``reference_offsets``, ``D(i, j)`` is replaced by ``D(i, j) + offsets[j]``.
    """
    query, ql, reference, rl = _checked_pair(query, query_labels, reference, reference_labels, exclude_self)
    ranks = np.zeros(len(query), dtype=np.int64)
    for start, stop, block in distance_blocks(query, reference, metric, memory_mb=memory_mb,
                                              reference_offsets=reference_offsets):
        same = ql[start:stop, None] == rl[None, :]
        if exclude_self:
            rows = np.arange(stop - start)
            block[rows, start + rows] = np.inf
            same[rows, start + rows] = False
        best = np.where(same, block, np.inf).min(axis=1)
        closer = (block < best[:, None]) & ~same
        ranks[start:stop] = np.where(np.isfinite(best), 1 + closer.sum(axis=1), 0)
    return ranks


def average_precision_full(
    query: np.ndarray,
    query_labels: np.ndarray,
    reference: np.ndarray,
    reference_labels: np.ndarray,
    metric: str = "cosine",
    exclude_self: bool = False,
    memory_mb: float = DEFAULT_MEMORY_MB,
) -> np.ndarray:
    """Average precision of each query over the full ranking of the references (NaN: no relevant item).

    ``AP_i = (1/R_i) Σ_{k: rel(k)} P_i(k)`` with ``P_i(k)`` the fraction of relevant
    items among the first k; equal distances are ordered by reference index.
    """
    query, ql, reference, rl = _checked_pair(query, query_labels, reference, reference_labels, exclude_self)
    out = np.full(len(query), np.nan)
    positions = np.arange(1, len(reference) + 1, dtype=np.float64)
    for start, stop, block in distance_blocks(query, reference, metric, memory_mb=memory_mb / 2):
        if exclude_self:
            rows = np.arange(stop - start)
            block[rows, start + rows] = np.inf
        order = np.argsort(block, axis=1, kind="stable")
        rel = rl[order] == ql[start:stop, None]
        if exclude_self:
            rel &= order != (start + np.arange(stop - start))[:, None]
        n_rel = rel.sum(axis=1)
        prec = np.cumsum(rel, axis=1) / positions
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:stop] = np.where(n_rel > 0, (prec * rel).sum(axis=1) / n_rel, np.nan)
    return out
