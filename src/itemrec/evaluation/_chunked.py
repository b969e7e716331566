"""The distance arithmetic under every retrieval and verification metric: fast blocks and exact pairs.

Distances between a query set ``Q`` (n × d) and a reference set ``R`` (m × d) come two ways:

* **blocks** (:meth:`PairDistances.block`, :func:`distance_blocks`): ``D[i:j] = dist(Q[i:j], R)``
  as one BLAS product per block of query rows, so the full n × m matrix never exists; a
  block holds at most ``memory_mb`` MiB (default 256 MiB: 100,000 × 100,000 float32
  distances are 160 blocks of ~670 rows). Fast, but the rounding of a product depends on
  the BLAS kernel and the block's shape;
* **exact pairs** (:meth:`PairDistances.exact`): the distance of one (query, reference)
  pair computed on its own, always by the same code in the same order, so a pair has the
  same value wherever it is computed. Every *ranking* decision of
  :mod:`itemrec.evaluation.neighbours` is taken on these values; blocks (and FAISS) only
  pick candidates, within the error bound :meth:`PairDistances.bound` of the exact values.

Metrics (``metric=``):

* ``"cosine"``: ``D(a, b) = 1 − â·b̂`` with ``â = a / ‖a‖`` (:func:`itemrec._numeric.l2_normalize_rows`),
  in [0, 2] (exact values are clipped to it);
* ``"l2"``: ``D(a, b) = ‖a − b‖₂`` (blocks: ``sqrt(max(0, ‖a‖² + ‖b‖² − 2 a·b))``; exact pairs:
  ``sqrt(Σ (a_i − b_i)²)``).

Arithmetic is in float64 when either input is float64, else float32; exact distances are
returned as float64 (for float32 inputs: the float32 pair value, widened).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from itemrec._numeric import l2_normalize_rows

#: the names of the distances evaluation computes: those of :data:`itemrec.distances.EVALUATED`
#: (a test holds the two equal; written out so that evaluation imports without Keras)
METRICS = ("cosine", "l2")
DEFAULT_MEMORY_MB = 256.0
U32 = 2.0**-24  # unit roundoff of float32
U64 = 2.0**-53
_PAIR_CHUNK = 1 << 22  # numbers gathered at once by the float64 exact path


def check_embeddings(x: np.ndarray, name: str) -> np.ndarray:
    """``x`` as a finite 2-D float32/float64 array.

    Args:
        x: array-like (n, dim); integer or other float types become float32.
        name: how error messages name ``x``.

    Returns:
        The array (float32 or float64, not copied when it already is one).

    Raises:
        ValueError: not 2-D, or NaN/infinite values.
    """
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n, dim); got shape {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_labels(labels: np.ndarray, n: int, name: str) -> np.ndarray:
    """``labels`` as a 1-D int64 array of length ``n``.

    Args:
        labels: integer class ids (floats with integral values are accepted).
        n: required length.
        name: how error messages name ``labels``.

    Returns:
        (n,) int64 array.

    Raises:
        ValueError: wrong shape or non-integral values.
    """
    arr = np.asarray(labels)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{name} must be a 1-D array of length {n}; got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer class ids; got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def check_metric(metric, ranking_only: bool = False, who: str = "evaluation") -> str:
    """The evaluation name of ``metric`` (:func:`itemrec.distances.evaluation_metric`).

    Args:
        metric: a distance name, a serialised distance dict or a :class:`~itemrec.distances.Distance`.
        ranking_only: the caller reads only the order of neighbours, so a distance that ranks
            like one of :data:`METRICS` (``"squared_l2"``, ``"mse"``, ``"cosine_similarity"``) is accepted.
        who: what error messages name as computing the distances.

    Returns:
        ``"cosine"`` or ``"l2"``.

    Raises:
        ValueError: a distance evaluation cannot compute, or an unknown name.
        TypeError: ``metric`` of another type.
    """
    if isinstance(metric, str) and metric in METRICS:
        return metric
    from itemrec.distances import evaluation_metric  # imports Keras: only for other names and objects

    return evaluation_metric(metric, ranking_only, who)


def check_offsets(offsets: np.ndarray, n: int) -> np.ndarray:
    """A finite 1-D float64 array of ``n`` per-reference distance offsets.

    Args:
        offsets: one number per reference, added to every distance to it.
        n: the number of references.

    Returns:
        (n,) float64 array.

    Raises:
        ValueError: wrong shape, not numbers, or not finite.
    """
    o = np.asarray(offsets)
    if o.ndim != 1 or len(o) != n:
        raise ValueError(f"reference offsets must be a 1-D array of {n} values (one per reference); got shape {o.shape}")
    if not np.issubdtype(o.dtype, np.number) or not np.isfinite(o).all():
        raise ValueError("reference offsets must be finite numbers")
    return o.astype(np.float64)


def rows_per_block(n_reference: int, itemsize: int = 8, memory_mb: float = DEFAULT_MEMORY_MB, factor: int = 3) -> int:
    """Query rows per block so that ``factor`` arrays of ``rows × n_reference`` fit in ``memory_mb``.

    Args:
        n_reference: columns of a block.
        itemsize: bytes per number.
        memory_mb: the budget in MiB.
        factor: block-sized arrays alive at once.

    Returns:
        ``max(1, ⌊memory_mb · 2²⁰ / (n_reference · itemsize · factor)⌋)``.
    """
    budget = memory_mb * 2**20
    return int(max(1, budget // (max(1, n_reference) * itemsize * factor)))


def _common_dtype(a: np.ndarray, b: np.ndarray) -> type:
    return np.float64 if np.float64 in (a.dtype, b.dtype) else np.float32


class PairDistances:
    """Query and reference sets prepared once: fast distance blocks, exact pair distances, their error bound.

    Args:
        query: (n, d) finite floats.
        reference: (m, d) finite floats.
        metric: ``"cosine"`` or ``"l2"``.

    Raises:
        ValueError: bad metric, different dims, or (cosine) an all-zero row.
    """

    def __init__(self, query: np.ndarray, reference: np.ndarray, metric: str = "cosine") -> None:
        metric = check_metric(metric)
        if query.shape[1] != reference.shape[1]:
            raise ValueError(f"query dim {query.shape[1]} != reference dim {reference.shape[1]}")
        self.metric = metric
        self.dtype = _common_dtype(query, reference)
        self.u = U32 if self.dtype == np.float32 else U64
        self.dim = query.shape[1]
        if metric == "cosine":
            self.q = l2_normalize_rows(query, dtype=self.dtype, what="query embeddings (cosine)")
            self.r = self.q if reference is query else l2_normalize_rows(reference, dtype=self.dtype,
                                                                         what="reference embeddings (cosine)")
            self.q_sq = self.r_sq = None
        else:
            self.q = np.ascontiguousarray(query, dtype=self.dtype)
            self.r = self.q if reference is query else np.ascontiguousarray(reference, dtype=self.dtype)
            self.q_sq = np.einsum("ij,ij->i", self.q, self.q)
            self.r_sq = np.einsum("ij,ij->i", self.r, self.r)
            # (‖q‖ + max ‖r‖)², from the rounded squared norms made a little larger: it only has to bound
            q_norm = np.sqrt(self.q_sq.astype(np.float64) * (1 + 4 * (self.dim + 2) * self.u))
            r_max = float(np.sqrt(self.r_sq.max(initial=0.0) * (1 + 4 * (self.dim + 2) * self.u)))
            self._scale = (q_norm + r_max) ** 2

    @property
    def n_reference(self) -> int:
        """Number of references (m)."""
        return len(self.r)

    def block(self, rows: np.ndarray | slice, cols: slice = slice(None)) -> np.ndarray:
        """Fast distances (one BLAS product) of query ``rows`` to the references ``cols``.

        Args:
            rows: a slice or an index array of query rows.
            cols: a slice of reference columns (default: every reference).

        Returns:
            (len(rows), len(cols)) in ``self.dtype``.
        """
        prod = self.q[rows] @ self.r[cols].T
        if self.metric == "cosine":
            np.subtract(1.0, prod, out=prod)
            return prod
        prod *= -2.0
        prod += self.q_sq[rows, None]
        prod += self.r_sq[None, cols]
        np.maximum(prod, 0.0, out=prod)
        return np.sqrt(prod, out=prod)

    def exact(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Exact distance of query ``rows[i]`` to reference ``cols[i, j]``.

        Each pair is computed on its own (float32: FAISS's ``fvec_*_by_idx``, one SIMD loop per
        pair; float64: NumPy ``add.reduce`` over the pair's products), so its value does not
        depend on the other pairs asked for.

        Args:
            rows: (b,) query indices.
            cols: (b, c) reference indices; ``< 0``: no reference.

        Returns:
            (b, c) float64 distances; ``+inf`` where ``cols < 0``.
        """
        rows = np.asarray(rows, np.int64)
        cols = np.ascontiguousarray(cols, dtype=np.int64)
        if self.dtype == np.float32:
            raw = self._exact_faiss(rows, cols)
        else:
            raw = self._exact_numpy(rows, cols)
        if self.metric == "cosine":
            out = np.clip(1.0 - raw, 0.0, 2.0)
        else:
            out = np.sqrt(raw)
        out[cols < 0] = np.inf
        return out

    def _exact_faiss(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        import faiss

        x = np.ascontiguousarray(self.q[rows])
        out = np.empty(cols.shape, np.float32)
        fn = faiss.fvec_inner_products_by_idx if self.metric == "cosine" else faiss.fvec_L2sqr_by_idx
        if out.size:
            fn(faiss.swig_ptr(out), faiss.swig_ptr(x), faiss.swig_ptr(self.r), faiss.swig_ptr(cols),
               self.dim, len(rows), cols.shape[1])
        return out.astype(np.float64)

    def _exact_numpy(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = np.empty(cols.shape, np.float64)
        step = max(1, _PAIR_CHUNK // max(1, cols.shape[1] * self.dim))
        for s in range(0, len(rows), step):
            q = self.q[rows[s:s + step]][:, None, :]
            r = self.r[np.maximum(cols[s:s + step], 0)]
            prod = q * r if self.metric == "cosine" else (q - r) ** 2
            out[s:s + step] = np.add.reduce(prod, axis=2)
        return out

    def bound(self, rows: np.ndarray, approx: np.ndarray, u: float | None = None) -> np.ndarray:
        """Upper bound on ``|approx − exact|`` for distances ``approx`` of query ``rows`` (one row each).

        ``u`` is the unit roundoff of the arithmetic that made ``approx`` (default: this
        dtype's; FAISS: float32's). With ``γ = 4 (d + 8) u``, twice the classical dot-product
        bound ``d·u`` of both computations plus the roundings around it:

        * cosine: ``γ`` (unit vectors: ``|â·b̂| ≤ 1``);
        * l2: with ``e = γ (‖q‖ + max ‖r‖)²`` bounding the error of the squared distance,
          ``min(√e, e / approx) + 2u · approx`` (``|√s̃ − √s| ≤ |s̃ − s| / √s̃``).

        Args:
            rows: (b,) query indices of the rows of ``approx``.
            approx: (b, c) approximate distances (without offsets).
            u: unit roundoff of the arithmetic that made ``approx``.

        Returns:
            An array broadcastable against ``approx``.
        """
        u = self.u if u is None else u
        gamma = 4.0 * (self.dim + 8) * u
        if self.metric == "cosine":
            return np.full((len(rows), 1), gamma + 8 * U64)
        e = gamma * self._scale[np.asarray(rows)][:, None]
        with np.errstate(divide="ignore"):
            return np.minimum(np.sqrt(e), e / approx) + 2 * u * approx + 8 * U64 * (1.0 + approx)


def distance_blocks(
    query: np.ndarray,
    reference: np.ndarray,
    metric: str = "cosine",
    rows: int | None = None,
    memory_mb: float = DEFAULT_MEMORY_MB,
    reference_offsets: np.ndarray | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Blocks of the query × reference distance matrix (fast BLAS arithmetic).

    Args:
        query: (n, d); reference: (m, d).
        metric: ``"cosine"`` or ``"l2"``.
        rows: query rows per block; ``None``: as many as fit three blocks in ``memory_mb``.
        memory_mb: the budget in MiB.
        reference_offsets: (m,) added to column j (see :mod:`itemrec.evaluation.hubness`), or None.

    Returns:
        An iterator of ``(start, stop, D[start:stop])``.

    Raises:
        ValueError: bad metric, dims or offsets.
    """
    pairs = PairDistances(check_embeddings(query, "query embeddings"),
                          check_embeddings(reference, "reference embeddings"), metric)
    offsets = None if reference_offsets is None else check_offsets(reference_offsets, pairs.n_reference)
    step = rows or rows_per_block(pairs.n_reference, np.dtype(pairs.dtype).itemsize, memory_mb)
    for start in range(0, len(pairs.q), step):
        stop = min(start + step, len(pairs.q))
        block = pairs.block(slice(start, stop))
        yield start, stop, block if offsets is None else block + offsets[None, :]


def upper_triangle_blocks(
    x: np.ndarray, metric: str = "cosine", memory_mb: float = DEFAULT_MEMORY_MB
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Blocks ``(start, stop, D[start:stop, start:])`` of the self-distance matrix of ``x``.

    Only columns from ``start`` on are computed (the pairs ``i < j`` lie there, with the
    diagonal at ``block[r, r]``), about half the work of the full matrix. Fast BLAS
    arithmetic, as :func:`distance_blocks`.

    Args:
        x: (n, d) embeddings.
        metric: ``"cosine"`` or ``"l2"``.
        memory_mb: the budget in MiB.

    Returns:
        An iterator of ``(start, stop, block)``.

    Raises:
        ValueError: bad metric, or (cosine) an all-zero row.
    """
    pairs = PairDistances(x, x, metric)
    step = rows_per_block(len(pairs.q), np.dtype(pairs.dtype).itemsize, memory_mb)
    for start in range(0, len(pairs.q), step):
        stop = min(start + step, len(pairs.q))
        yield start, stop, pairs.block(slice(start, stop), slice(start, None))


def pairwise_distances(a: np.ndarray, b: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """The full distance matrix in one fast block (small inputs only; rankings use :mod:`.neighbours`).

    Args:
        a: (n, d); b: (m, d).
        metric: ``"cosine"`` or ``"l2"``.

    Returns:
        (n, m) distances in the inputs' common float dtype.

    Raises:
        ValueError: bad inputs or metric.
    """
    a = check_embeddings(a, "a")
    b = check_embeddings(b, "b")
    return next(distance_blocks(a, b, metric, rows=max(1, len(a))))[2]


def checked_pair(query, query_labels, reference, reference_labels, exclude_self: bool):
    """Validated ``(query, query labels, reference, reference labels)`` for the ranking functions.

    Args:
        query, query_labels, reference, reference_labels: the arrays.
        exclude_self: the query set is the reference set.

    Returns:
        The four checked arrays.

    Raises:
        ValueError: bad arrays, or ``exclude_self`` with sets of different lengths.
    """
    query = check_embeddings(query, "query embeddings")
    reference = check_embeddings(reference, "reference embeddings")
    ql = check_labels(query_labels, len(query), "query labels")
    rl = check_labels(reference_labels, len(reference), "reference labels")
    if exclude_self and len(query) != len(reference):
        raise ValueError("exclude_self needs the query set to be the reference set (same length)")
    return query, ql, reference, rl
