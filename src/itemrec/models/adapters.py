"""Embedding heads that start from what the backbone knows.

An MLP head with random weights (:func:`itemrec.models.build_head`) throws the
pretrained features away at step 0 and has to relearn them from the few
training classes, which is how training made unseen classes worse than the
frozen features. The heads here start *at* the frozen features, so the
untrained model is the frozen baseline (identity and residual; a PCA start is
its centred projection) and training moves from there:

* :class:`LinearAdapter` ``y = x W + b`` (D → ``units``) initialised at the
  identity (``units = D``) or at a PCA of the training features
  (``W`` = the top ``units`` principal directions, ``b = −μ W``: the centred
  projection), or randomly (Glorot) for comparison;
* :class:`ResidualAdapter` ``y = x + relu(x W₁ + b₁) W₂ + b₂`` with ``W₂ = 0``,
  ``b₂ = 0`` at the start (an identity map that learns a correction; the
  bottleneck adapter of Houlsby et al., ICML 2019).

Both take ``decay_to_init = λ``: in training they add ``λ Σ (θ − θ₀)²`` over
their weights to the model's losses (weight decay towards the starting point
instead of towards zero, the L2-SP regulariser of Li, Grandvalet & Davoine,
ICML 2018). ``θ₀`` is kept as non-trainable weights, so it is saved with the
model; :meth:`LinearAdapter.fit_pca` and ``reset_anchor`` move it to the current weights.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

INITS = ("identity", "pca", "random")


class _AnchoredLayer(keras.layers.Layer):
    """Shared machinery: a copy of the starting weights and the L2-SP penalty towards it."""

    def __init__(self, decay_to_init: float = 0.0, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not float(decay_to_init) >= 0.0:
            raise ValueError(f"decay_to_init must be >= 0; got {decay_to_init!r}")
        self.decay_to_init = float(decay_to_init)
        self._pairs: list[tuple[Any, Any]] = []

    def _anchored_weight(self, name: str, shape: tuple, initializer: Any) -> Any:
        var = self.add_weight(name=name, shape=shape, initializer=initializer, trainable=True)
        ref = self.add_weight(name=f"{name}_init", shape=shape, initializer="zeros", trainable=False)
        ref.assign(var)
        self._pairs.append((var, ref))
        return var

    def reset_anchor(self) -> None:
        """Make the current weights the point that ``decay_to_init`` pulls towards."""
        for var, ref in self._pairs:
            ref.assign(var)

    def _penalty(self, training: bool) -> None:
        if training and self.decay_to_init > 0.0:
            total = 0.0
            for var, ref in self._pairs:
                total = total + ops.sum(ops.square(var - ref))
            self.add_loss(self.decay_to_init * total)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape[:-1]) + (self.output_dim(int(input_shape[-1])),)

    def output_dim(self, input_dim: int) -> int:
        return input_dim

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(decay_to_init=self.decay_to_init)
        return config


@keras.saving.register_keras_serializable(package="itemrec")
class LinearAdapter(_AnchoredLayer):
    """``y = x W + b``: (B, D) → (B, units), starting at the identity, a PCA or at random.

    Args:
        units: output size; ``None`` keeps D (needed for ``init="identity"``).
        init: ``"identity"`` (``units`` must be ``None`` or D), ``"pca"`` (call
            :meth:`fit_pca` on training features before training; until then
            the first ``units`` coordinates pass through) or ``"random"``
            (Glorot-uniform ``W``, zero ``b``).
        decay_to_init: L2-SP strength λ (see the module docstring).

    Raises:
        ValueError: unknown ``init``; ``units`` < 1; ``decay_to_init`` < 0 (here); identity
            with ``units`` ≠ D; ``units`` > D for PCA (when the layer is built).
    """

    def __init__(self, units: int | None = None, init: str = "identity", decay_to_init: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(decay_to_init, **kwargs)
        if init not in INITS:
            raise ValueError(f"LinearAdapter init must be one of {INITS}; got {init!r}")
        if units is not None and int(units) < 1:
            raise ValueError(f"units must be >= 1 or None; got {units!r}")
        self.units = None if units is None else int(units)
        self.init = init

    def output_dim(self, input_dim: int) -> int:
        """The output width for an input width.

        Args:
            input_dim: D, the input features' width.

        Returns:
            ``units``, or ``input_dim`` when ``units`` is ``None``.
        """
        return self.units or input_dim

    def build(self, input_shape: tuple) -> None:
        """Create ``W`` (D, units) and ``b`` (units,) and their anchors ``θ₀`` (Keras's hook).

        Args:
            input_shape: (..., D).

        Raises:
            ValueError: ``init="identity"`` with ``units`` ≠ D, or ``init="pca"`` with ``units`` > D.
        """
        d = int(input_shape[-1])
        units = self.output_dim(d)
        if self.init == "identity" and units != d:
            raise ValueError(f"an identity LinearAdapter needs units = input size {d} (or None); got {units}")
        if self.init == "pca" and units > d:
            raise ValueError(f"a PCA LinearAdapter gives at most {d} units; got {units}")
        kernel_init: Any = "glorot_uniform" if self.init == "random" else keras.initializers.Identity()
        self.kernel = self._anchored_weight("kernel", (d, units), kernel_init)
        self.bias = self._anchored_weight("bias", (units,), "zeros")

    def fit_pca(self, features: np.ndarray) -> "LinearAdapter":
        """Set (and anchor) ``W`` to the top principal directions of ``features`` (N, D), ``b = −μ W``.

        Principal directions by SVD of the centred features (scikit-learn's
        ``PCA`` convention for the signs), so the adapter computes the centred projection
        ``(x − μ) W``; the new weights become the L2-SP anchor (:meth:`reset_anchor`). Builds the
        layer first if needed.

        Args:
            features: (N, D) training features, N ≥ ``units``; cast to float64 for the fit.

        Returns:
            This layer, for chaining.

        Raises:
            ValueError: ``features`` is not 2-D, its width is not the layer's D, or it has fewer
                than ``units`` rows.
        """
        from sklearn.decomposition import PCA

        x = np.asarray(features, dtype=np.float64)
        if not self.built:
            self.build((None, x.shape[1]))
        d, units = int(self.kernel.shape[0]), int(self.kernel.shape[1])
        if x.ndim != 2 or x.shape[1] != d or len(x) < units:
            raise ValueError(f"fit_pca needs (N >= {units}, {d}) features; got {x.shape}")
        pca = PCA(n_components=units, svd_solver="full").fit(x)
        w = pca.components_.T
        self.kernel.assign(w.astype(np.float32))
        self.bias.assign((-pca.mean_ @ w).astype(np.float32))
        self.reset_anchor()
        return self

    def call(self, x: Any, training: bool = False) -> Any:
        self._penalty(training)
        return ops.matmul(ops.cast(x, "float32"), self.kernel) + self.bias

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(units=self.units, init=self.init)
        return config


@keras.saving.register_keras_serializable(package="itemrec")
class ResidualAdapter(_AnchoredLayer):
    """``y = x + relu(x W₁ + b₁) W₂ + b₂`` (B, D) → (B, D), with ``W₂ = 0``: the identity at the start.

    Args:
        hidden: bottleneck width.
        decay_to_init: L2-SP strength λ (see the module docstring).

    Raises:
        ValueError: ``hidden`` < 1 or ``decay_to_init`` < 0.
    """

    def __init__(self, hidden: int = 256, decay_to_init: float = 0.0, **kwargs: Any) -> None:
        super().__init__(decay_to_init, **kwargs)
        if int(hidden) < 1:
            raise ValueError(f"hidden must be >= 1; got {hidden!r}")
        self.hidden = int(hidden)

    def build(self, input_shape: tuple) -> None:
        d = int(input_shape[-1])
        self.down = self._anchored_weight("down_kernel", (d, self.hidden), "glorot_uniform")
        self.down_bias = self._anchored_weight("down_bias", (self.hidden,), "zeros")
        self.up = self._anchored_weight("up_kernel", (self.hidden, d), "zeros")
        self.up_bias = self._anchored_weight("up_bias", (d,), "zeros")

    def call(self, x: Any, training: bool = False) -> Any:
        self._penalty(training)
        x = ops.cast(x, "float32")
        h = ops.relu(ops.matmul(x, self.down) + self.down_bias)
        return x + ops.matmul(h, self.up) + self.up_bias

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(hidden=self.hidden)
        return config
