"""Reducers: how a loss turns its per-triplet or per-pair losses into one number.

A reducer is called as ``reducer(losses, mask) -> scalar``: ``losses`` holds one
value per candidate (any shape) and ``mask`` (same shape, float 0/1) marks the
candidates that were mined. The names and rules are pytorch-metric-learning's
(Musgrave et al. 2020):

* :class:`MeanReducer` (``"mean"``): ``Σ mask·ℓ / Σ mask``, the mean over every mined
  candidate;
* :class:`AvgNonZeroReducer` (``"avg_non_zero"``): ``Σ mask·ℓ / #{mask·ℓ > 0}``, the
  mean over the *active* candidates (Hermans et al. 2017's batch-all averaging).

Both give 0 when nothing counts.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from itemrec.serialization import ConfigObject, resolve


class Reducer(ConfigObject):
    """Base class: ``reducer(losses, mask) -> scalar`` (see the module docstring)."""

    name = "reducer"

    def __call__(self, losses: Any, mask: Any) -> Any:
        """Reduce ``losses`` over the candidates ``mask`` marks.

        Args:
            losses: float32 tensor, one loss per candidate.
            mask: float32 tensor of ``losses``'s shape, 1 for a mined candidate.

        Returns:
            A float32 scalar.
        """
        losses = ops.cast(losses, "float32") * ops.cast(mask, "float32")
        return ops.sum(losses) / ops.maximum(self.count(losses, ops.cast(mask, "float32")), 1.0)

    def count(self, masked_losses: Any, mask: Any) -> Any:
        """The denominator.

        Args:
            masked_losses: the losses times the mask.
            mask: the mask.

        Returns:
            A float32 scalar.

        Raises:
            NotImplementedError: in the base class.
        """
        raise NotImplementedError



@keras.saving.register_keras_serializable(package="itemrec")
class MeanReducer(Reducer):
    """The mean over every mined candidate."""

    name = "mean"

    def count(self, masked_losses: Any, mask: Any) -> Any:
        """The number of mined candidates.

        Args:
            masked_losses: the losses times the mask (unused).
            mask: float32 0/1 mask.

        Returns:
            ``Σ mask``.
        """
        return ops.sum(mask)


@keras.saving.register_keras_serializable(package="itemrec")
class AvgNonZeroReducer(Reducer):
    """The mean over the mined candidates whose loss is > 0 (1e-16)."""

    name = "avg_non_zero"

    def count(self, masked_losses: Any, mask: Any) -> Any:
        """The number of mined candidates whose loss is > 1e-16.

        Args:
            masked_losses: the losses times the mask.
            mask: float32 0/1 mask.

        Returns:
            ``Σ mask · [ℓ > 1e-16]``.
        """
        return ops.sum(mask * ops.cast(ops.greater(masked_losses, 1e-16), "float32"))


REDUCERS: dict[str, type[Reducer]] = {"mean": MeanReducer, "avg_non_zero": AvgNonZeroReducer}
# the names TripletLoss took before reducers were objects
_OLD_NAMES = {"mined": "mean", "active": "avg_non_zero"}


def get_reducer(reducer: Any) -> Reducer | None:
    """A reducer from a name (``"mean"``, ``"avg_non_zero"``; or the older ``"mined"``, ``"active"``),
    a serialised dict, an instance, or ``None``.

    Args:
        reducer: what to resolve.

    Returns:
        The :class:`Reducer`, or ``None``.

    Raises:
        ValueError: an unknown name or a dict that is not a reducer.
        TypeError: any other type.
    """
    return None if reducer is None else resolve(reducer, Reducer, REDUCERS, "reducer", aliases=_OLD_NAMES)
