"""Pairwise and paired distances between embeddings, written in ``keras.ops``.

Metrics (``a`` is (N, D), ``b`` is (M, D)):

* ``"squared_l2"``: ``‖a_i − b_j‖² = ‖a_i‖² − 2 a_i·b_j + ‖b_j‖²`` (clamped at 0);
* ``"l2"``: ``√(squared_l2)``, computed as ``√(d² + ε·[d² = 0]) · [d² > 0]`` so the
  gradient at zero distance is 0 instead of NaN/inf (the trick of TF-Addons'
  ``pairwise_distance`` and pytorch-metric-learning's ``LpDistance``);
* ``"mse"``: ``squared_l2 / D``, the mean-squared distance of the original
  experiment;
* ``"cosine"``: ``1 − cos(a_i, b_j)`` with both sides L2-normalised, in [0, 2].

Everything is computed in float32 whatever the input dtype, so distances stay
finite under the ``mixed_float16`` policy (float16 overflows at 65504).
"""

from __future__ import annotations

from typing import Any

METRICS = ("squared_l2", "l2", "cosine", "mse")
_EPS = 1e-12


def check_metric(metric: str) -> str:
    """Return ``metric`` if it is known, else raise ``ValueError`` listing the choices."""
    if metric not in METRICS:
        raise ValueError(f"unknown distance metric {metric!r}; choose one of {METRICS}")
    return metric


def l2_normalize(x: Any, axis: int = -1, epsilon: float = _EPS) -> Any:
    """``x / max(‖x‖, √ε)`` along ``axis`` (safe for the zero vector)."""
    from keras import ops

    sq = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(sq, epsilon))


def _safe_sqrt(sq: Any) -> Any:
    from keras import ops

    zero = ops.cast(ops.less_equal(sq, 0.0), sq.dtype)
    return ops.sqrt(sq + zero * 1e-16) * (1.0 - zero)


def pairwise_distances(a: Any, b: Any | None = None, metric: str = "squared_l2") -> Any:
    """(N, M) float32 matrix of distances between the rows of ``a`` and ``b``.

    With ``b=None`` the distances of ``a`` to itself are returned and the
    diagonal is exactly 0. See the module docstring for the metrics.
    """
    from keras import ops

    check_metric(metric)
    same = b is None
    a = ops.cast(a, "float32")
    b = a if same else ops.cast(b, "float32")
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise ValueError(f"pairwise_distances needs 2-D inputs (N, D); got shapes {a.shape} and {b.shape}")
    if a.shape[-1] is not None and b.shape[-1] is not None and a.shape[-1] != b.shape[-1]:
        raise ValueError(f"embedding sizes differ: a has D={a.shape[-1]}, b has D={b.shape[-1]}")
    if metric == "cosine":
        cos = ops.matmul(l2_normalize(a), ops.transpose(l2_normalize(b)))
        dist = 1.0 - ops.clip(cos, -1.0, 1.0)
        dist = ops.maximum(dist, 0.0)
    else:
        na = ops.sum(ops.square(a), axis=1)
        nb = ops.sum(ops.square(b), axis=1)
        dist = ops.expand_dims(na, 1) - 2.0 * ops.matmul(a, ops.transpose(b)) + ops.expand_dims(nb, 0)
        dist = ops.maximum(dist, 0.0)
    if same:
        n = ops.shape(a)[0]
        dist = dist * (1.0 - ops.eye(n, dtype="float32"))
    if metric == "l2":
        dist = _safe_sqrt(dist)
    elif metric == "mse":
        dist = dist / ops.cast(ops.shape(a)[-1], "float32")
    return dist


def paired_distances(a: Any, b: Any, metric: str = "squared_l2") -> Any:
    """(N,) float32 distances between matching rows ``a[i]`` and ``b[i]``."""
    from keras import ops

    check_metric(metric)
    a = ops.cast(a, "float32")
    b = ops.cast(b, "float32")
    if metric == "cosine":
        cos = ops.sum(l2_normalize(a) * l2_normalize(b), axis=-1)
        return ops.maximum(1.0 - ops.clip(cos, -1.0, 1.0), 0.0)
    sq = ops.sum(ops.square(a - b), axis=-1)
    if metric == "l2":
        return _safe_sqrt(sq)
    if metric == "mse":
        return sq / ops.cast(ops.shape(a)[-1], "float32")
    return sq
