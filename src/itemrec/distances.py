"""Distances between embeddings: one object per metric, for ``keras.ops`` and for NumPy.

Each distance is a small Keras-serialisable object (the design of
pytorch-metric-learning's ``distances`` module, Musgrave et al. 2020). The same
object computes the (N, M) matrix in ``keras.ops`` for training
(:meth:`Distance.pairwise`, :meth:`Distance.paired`) and in NumPy for evaluation
and the gallery (:meth:`Distance.pairwise_numpy`), and knows its direction:
``inverted`` is ``False`` for a distance (smaller is closer) and ``True`` for a
similarity (larger is closer). A miner or loss that needs "smaller is closer"
negates an inverted matrix.

For ``a`` (N, D) and ``b`` (M, D):

* :class:`SquaredL2Distance` (``"squared_l2"``): ``‖a_i − b_j‖² = ‖a_i‖² − 2 a_i·b_j + ‖b_j‖²``
  (clamped at 0);
* :class:`L2Distance` (``"l2"``): ``√(squared_l2)``, computed as ``√(d² + ε·[d² = 0]) · [d² > 0]``
  so the gradient at zero distance is 0 instead of NaN/inf (the trick of TF-Addons'
  ``pairwise_distance`` and pytorch-metric-learning's ``LpDistance``);
* :class:`MeanSquaredDistance` (``"mse"``): ``squared_l2 / D``, the mean-squared distance of
  the original triplet experiment;
* :class:`CosineDistance` (``"cosine"``): ``1 − cos(a_i, b_j)`` with both sides
  L2-normalised, in [0, 2];
* :class:`CosineSimilarity` (``"cosine_similarity"``, inverted): ``cos(a_i, b_j)`` in [−1, 1].

``keras.ops`` results are float32 whatever the input dtype, so distances stay finite
under the ``mixed_float16`` policy (float16 overflows at 65504); NumPy results are
float32 too. :func:`get_distance` turns a name, a serialised ``{"class_name", "config"}``
dict or an object into a distance; :func:`pairwise_distances` and
:func:`paired_distances` are the same maths by name.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from itemrec.serialization import ConfigObject, resolve

_EPS = 1e-12


def l2_normalize(x: Any, axis: int = -1, epsilon: float = _EPS) -> Any:
    """``x / max(‖x‖, √ε)`` along ``axis`` in ``keras.ops`` (safe for the zero vector).

    Args:
        x: a tensor, any shape.
        axis: the axis normalised.
        epsilon: floor on the squared norm.

    Returns:
        A tensor of ``x``'s shape and dtype whose slices along ``axis`` have norm 1 (0 for zero slices).
    """
    sq = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(sq, epsilon))


def _safe_sqrt(sq: Any) -> Any:
    zero = ops.cast(ops.less_equal(sq, 0.0), sq.dtype)
    return ops.sqrt(sq + zero * 1e-16) * (1.0 - zero)


def _check_pair(a: Any, b: Any) -> None:
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise ValueError(f"pairwise distances need 2-D inputs (N, D); got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[-1] is not None and b.shape[-1] is not None and a.shape[-1] != b.shape[-1]:
        raise ValueError(f"embedding sizes differ: a has D={a.shape[-1]}, b has D={b.shape[-1]}")


class Distance(ConfigObject):
    """Base class: a metric between embeddings, in ``keras.ops`` and in NumPy.

    Subclasses implement :meth:`_matrix` and :meth:`_matrix_numpy` on float32
    inputs (and :meth:`_rows` for paired rows when the matrix formula does not
    give it cheaply). ``inverted`` says the direction: ``False`` when smaller is
    closer (a distance), ``True`` when larger is closer (a similarity).
    The constructor takes no arguments, so the config is ``{}`` (:class:`~itemrec.serialization.ConfigObject`).
    """

    name = "distance"
    inverted = False
    #: the evaluated distance (``"cosine"`` or ``"l2"``, :data:`EVALUATED`) whose order of neighbours
    #: this one's equals, or ``None``; ranking metrics (CMC, Recall@K, MAP@R) accept this distance
    #: and compute that one (:func:`evaluation_metric`)
    ranks_like: str | None = None

    # -- keras.ops -------------------------------------------------------------
    def pairwise(self, a: Any, b: Any | None = None) -> Any:
        """(N, M) float32 matrix between the rows of ``a`` (N, D) and ``b`` (M, D).

        Args:
            a: (N, D) embeddings.
            b: (M, D) embeddings, or ``None`` for ``a`` against itself; then the
                diagonal is exactly the value of a point against itself (0 for
                distances, 1 for :class:`CosineSimilarity` of non-zero rows).

        Returns:
            (N, M) float32 tensor.

        Raises:
            ValueError: an input is not 2-D, or the two D differ.
        """
        same = b is None
        a = ops.cast(a, "float32")
        b = a if same else ops.cast(b, "float32")
        _check_pair(a, b)
        return self._matrix(a, b, same)

    def paired(self, a: Any, b: Any) -> Any:
        """(N,) float32 values between matching rows ``a[i]`` and ``b[i]``, both (N, D).

        Args:
            a: (N, D) embeddings.
            b: (N, D) embeddings.

        Returns:
            (N,) float32 tensor.
        """
        return self._rows(ops.cast(a, "float32"), ops.cast(b, "float32"))

    # -- NumPy -----------------------------------------------------------------
    def pairwise_numpy(self, a: Any, b: Any | None = None) -> np.ndarray:
        """:meth:`pairwise` in NumPy (float32), for evaluation and the gallery.

        Args:
            a: (N, D) array-like.
            b: (M, D) array-like, or ``None`` for ``a`` against itself.

        Returns:
            (N, M) float32 array.

        Raises:
            ValueError: an input is not 2-D, or the two D differ.
        """
        same = b is None
        a = np.asarray(a, dtype=np.float32)
        b = a if same else np.asarray(b, dtype=np.float32)
        _check_pair(a, b)
        return self._matrix_numpy(a, b, same).astype(np.float32)

    def closer_first(self, values: Any) -> Any:
        """Values ordered so that smaller is closer: ``values``, or ``−values`` when inverted.

        Args:
            values: a tensor or array of this object's values.

        Returns:
            The same type and shape.
        """
        return -values if self.inverted else values

    # -- to implement ----------------------------------------------------------
    def _matrix(self, a: Any, b: Any, same: bool) -> Any:
        raise NotImplementedError

    def _matrix_numpy(self, a: np.ndarray, b: np.ndarray, same: bool) -> np.ndarray:
        raise NotImplementedError

    def _rows(self, a: Any, b: Any) -> Any:
        raise NotImplementedError



def _squared(a: Any, b: Any, same: bool) -> Any:
    na = ops.sum(ops.square(a), axis=1)
    nb = ops.sum(ops.square(b), axis=1)
    dist = ops.maximum(ops.expand_dims(na, 1) - 2.0 * ops.matmul(a, ops.transpose(b)) + ops.expand_dims(nb, 0), 0.0)
    if same:
        dist = dist * (1.0 - ops.eye(ops.shape(a)[0], dtype="float32"))
    return dist


def _squared_numpy(a: np.ndarray, b: np.ndarray, same: bool) -> np.ndarray:
    dist = np.maximum((a * a).sum(1)[:, None] - 2.0 * (a @ b.T) + (b * b).sum(1)[None, :], 0.0)
    if same:
        np.fill_diagonal(dist, 0.0)
    return dist


@keras.saving.register_keras_serializable(package="itemrec")
class SquaredL2Distance(Distance):
    """``‖a − b‖²`` (see the module docstring)."""

    name = "squared_l2"
    ranks_like = "l2"

    def _matrix(self, a, b, same):
        return _squared(a, b, same)

    def _matrix_numpy(self, a, b, same):
        return _squared_numpy(a, b, same)

    def _rows(self, a, b):
        return ops.sum(ops.square(a - b), axis=-1)


@keras.saving.register_keras_serializable(package="itemrec")
class L2Distance(Distance):
    """``‖a − b‖`` with a zero gradient at zero distance (see the module docstring)."""

    name = "l2"
    ranks_like = "l2"

    def _matrix(self, a, b, same):
        return _safe_sqrt(_squared(a, b, same))

    def _matrix_numpy(self, a, b, same):
        return np.sqrt(_squared_numpy(a, b, same))  # zero stays exactly zero

    def _rows(self, a, b):
        return _safe_sqrt(ops.sum(ops.square(a - b), axis=-1))


@keras.saving.register_keras_serializable(package="itemrec")
class MeanSquaredDistance(Distance):
    """``‖a − b‖² / D``, the original triplet experiment's mean-squared distance."""

    name = "mse"
    ranks_like = "l2"

    def _matrix(self, a, b, same):
        return _squared(a, b, same) / ops.cast(ops.shape(a)[-1], "float32")

    def _matrix_numpy(self, a, b, same):
        return _squared_numpy(a, b, same) / a.shape[-1]

    def _rows(self, a, b):
        return ops.sum(ops.square(a - b), axis=-1) / ops.cast(ops.shape(a)[-1], "float32")


def _cosine(a: Any, b: Any) -> Any:
    return ops.clip(ops.matmul(l2_normalize(a), ops.transpose(l2_normalize(b))), -1.0, 1.0)


def _cosine_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from itemrec._numeric import l2_normalize_rows

    unit_a = l2_normalize_rows(a, dtype=np.float32, zero="keep")
    unit_b = unit_a if b is a else l2_normalize_rows(b, dtype=np.float32, zero="keep")
    return np.clip(unit_a @ unit_b.T, -1.0, 1.0)


@keras.saving.register_keras_serializable(package="itemrec")
class CosineDistance(Distance):
    """``1 − cos(a, b)`` in [0, 2]; the zero vector has cosine 0 to everything (distance 1)."""

    name = "cosine"
    ranks_like = "cosine"

    def _matrix(self, a, b, same):
        dist = ops.maximum(1.0 - _cosine(a, b), 0.0)
        if same:
            dist = dist * (1.0 - ops.eye(ops.shape(a)[0], dtype="float32"))
        return dist

    def _matrix_numpy(self, a, b, same):
        dist = np.maximum(1.0 - _cosine_numpy(a, b), 0.0)
        if same:
            np.fill_diagonal(dist, 0.0)
        return dist

    def _rows(self, a, b):
        cos = ops.sum(l2_normalize(a) * l2_normalize(b), axis=-1)
        return ops.maximum(1.0 - ops.clip(cos, -1.0, 1.0), 0.0)


@keras.saving.register_keras_serializable(package="itemrec")
class CosineSimilarity(Distance):
    """``cos(a, b)`` in [−1, 1]: a similarity, so ``inverted`` (larger is closer)."""

    name = "cosine_similarity"
    inverted = True
    ranks_like = "cosine"

    def _matrix(self, a, b, same):
        return _cosine(a, b)

    def _matrix_numpy(self, a, b, same):
        return _cosine_numpy(a, b)

    def _rows(self, a, b):
        return ops.clip(ops.sum(l2_normalize(a) * l2_normalize(b), axis=-1), -1.0, 1.0)


DISTANCES: dict[str, type[Distance]] = {
    cls.name: cls for cls in (SquaredL2Distance, L2Distance, CosineDistance, MeanSquaredDistance, CosineSimilarity)
}
#: the metric names of :func:`pairwise_distances` (distances only, no similarity)
METRICS = ("squared_l2", "l2", "cosine", "mse")


def get_distance(distance: Any) -> Distance:
    """A :class:`Distance` from a name in :data:`DISTANCES`, a serialised dict or an instance.

    Args:
        distance: ``"squared_l2"``, ``"l2"``, ``"cosine"``, ``"mse"`` or
            ``"cosine_similarity"``; a ``{"class_name": ..., "config": ...}`` dict (any
            registered :class:`Distance` subclass, including one defined outside itemrec);
            or a :class:`Distance`.

    Returns:
        The :class:`Distance`.

    Raises:
        ValueError: an unknown name, or a dict that does not describe a :class:`Distance`.
        TypeError: any other type.
    """
    return resolve(distance, Distance, DISTANCES, "distance")


#: the distances whose values evaluation (:mod:`itemrec.evaluation`: exact pair values, error bounds,
#: thresholds in their units), the gallery and clustering compute in NumPy
EVALUATED: tuple[type[Distance], ...] = (CosineDistance, L2Distance)


#: other spellings of the evaluated distances, named in "unknown distance" messages
_SPELLINGS = {"euclidean": "l2", "L2": "l2", "cos": "cosine", "Cosine": "cosine"}


def evaluation_metric(distance: Any, ranking_only: bool = False, who: str = "evaluation") -> str:
    """The name under which evaluation computes ``distance``: ``"cosine"`` or ``"l2"``.

    Evaluation computes the values of the distances of :data:`EVALUATED`. A measure that only
    ranks (CMC, Recall@K, MAP@R: ``ranking_only=True``) also takes any distance whose
    :attr:`Distance.ranks_like` names one of them, such as ``"squared_l2"`` (ranks like ``"l2"``)
    or ``"cosine_similarity"`` (ranks like ``"cosine"``), and computes that one.

    Args:
        distance: a name, a serialised ``{"class_name", "config"}`` dict or a :class:`Distance`
            (as :func:`get_distance`).
        ranking_only: the caller reads only the order of neighbours, not distance values.
        who: what the error messages name as computing the distances (``"evaluation"``,
            ``"clustering"``, ``"eval.metric"``).

    Returns:
        ``"cosine"`` or ``"l2"``.

    Raises:
        ValueError: an unknown distance, or one evaluation cannot compute (naming the one it
            ranks like, when there is one, or how to declare it).
        TypeError: ``distance`` of another type.
    """
    names = tuple(cls.name for cls in EVALUATED)
    if isinstance(distance, str) and distance not in DISTANCES:
        also = [n for n, c in sorted(DISTANCES.items()) if c.ranks_like in names and n not in names]
        more = f", or a distance that ranks like one of them: {also}" if ranking_only else ""
        guess = _SPELLINGS.get(distance, distance.lower() if distance.lower() in names else None)
        hint = f"; did you mean {guess!r}?" if guess else ""
        raise ValueError(f"unknown distance metric {distance!r}; {who} computes {names}{more}{hint}")
    dist = get_distance(distance)
    if type(dist) in EVALUATED:
        return dist.name
    like = dist.ranks_like
    if ranking_only and like in names:
        return like
    got = f"{who} computes the distances {names}; got {dist.name!r} ({type(dist).__name__})"
    if like in names:
        units = "distance values and thresholds are" if who != "clustering" else "its distances are"
        raise ValueError(f"{got}; it orders neighbours like {like!r}, so pass {like!r} ({units} then in {like!r} units)")
    if like is not None:
        raise ValueError(f"{got}; its ranks_like = {like!r} must be one of {names}")
    if ranking_only:
        raise ValueError(f"{got}. If it orders neighbours as one of them does, say so on the class "
                         f"(ranks_like = 'cosine' or 'l2') and ranking measures will compute that one")
    raise ValueError(got)


def check_metric(metric: str) -> str:
    """``metric`` if it names a distance of :data:`METRICS`.

    Args:
        metric: the name.

    Returns:
        ``metric``.

    Raises:
        ValueError: any other name, listing the choices.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown distance metric {metric!r}; choose one of {METRICS}")
    return metric


def pairwise_distances(a: Any, b: Any | None = None, metric: str = "squared_l2") -> Any:
    """(N, M) float32 ``keras.ops`` matrix of ``metric`` between the rows of ``a`` and ``b``.

    Args:
        a: (N, D) embeddings.
        b: (M, D) embeddings, or ``None`` for ``a`` against itself (diagonal exactly 0).
        metric: a name of :data:`METRICS`.

    Returns:
        (N, M) float32 tensor; see :meth:`Distance.pairwise`.

    Raises:
        ValueError: unknown metric, an input not 2-D, or different D.
    """
    return get_distance(check_metric(metric)).pairwise(a, b)


def paired_distances(a: Any, b: Any, metric: str = "squared_l2") -> Any:
    """(N,) float32 ``keras.ops`` distances between matching rows ``a[i]`` and ``b[i]``.

    Args:
        a: (N, D) embeddings.
        b: (N, D) embeddings.
        metric: a name of :data:`METRICS`.

    Returns:
        (N,) float32 tensor.

    Raises:
        ValueError: unknown metric.
    """
    return get_distance(check_metric(metric)).paired(a, b)
