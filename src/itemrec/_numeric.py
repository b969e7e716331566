"""Small NumPy helpers shared across the package (the ``keras.ops`` versions live in :mod:`itemrec.distances`)."""

from __future__ import annotations

import numpy as np


def l2_normalize_rows(x: np.ndarray, *, dtype: type | None = None, zero: str = "raise",
                      what: str = "embeddings") -> np.ndarray:
    """Each row of ``x`` divided by its Euclidean norm: the one NumPy L2 normalisation of the package.

    The norms are computed in float64 (``sqrt(Σ x²)``, so float32 rows with entries near
    float32's range do not overflow) and the division is done in float64 before the
    result is cast to ``dtype``. The same row always gives the same normalised row,
    whichever array it sits in, so distances computed from two calls agree exactly.

    Args:
        x: (N, D) array of finite numbers.
        dtype: float dtype of the result; ``None``: ``x``'s dtype when it is float32 or
            float64, else float64.
        zero: what a row of norm 0 becomes: ``"raise"`` (a ValueError naming the rows:
            cosine similarity is undefined for it) or ``"keep"`` (it stays all zeros).
        what: how the error messages name ``x``.

    Returns:
        (N, D) array of ``dtype``, C-contiguous; every row has norm 1 (up to rounding)
        except zero rows kept with ``zero="keep"``.

    Raises:
        ValueError: ``x`` is not 2-D, holds NaN or infinite values, has a zero row with
            ``zero="raise"``, or ``zero`` is not one of the two choices.
    """
    if zero not in ("raise", "keep"):
        raise ValueError(f"zero must be 'raise' or 'keep'; got {zero!r}")
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (N, D); got shape {arr.shape}")
    if dtype is None:
        dtype = arr.dtype.type if arr.dtype in (np.float32, np.float64) else np.float64
    wide = arr.astype(np.float64, copy=False)
    bad = np.flatnonzero(~np.isfinite(wide).all(axis=1))
    if bad.size:
        raise ValueError(f"{what} rows {bad[:10].tolist()} contain NaN or infinite values")
    norms = np.sqrt(np.add.reduce(wide * wide, axis=1))
    zeros = norms == 0
    if zeros.any() and zero == "raise":
        raise ValueError(f"{what} rows {np.flatnonzero(zeros)[:10].tolist()} have zero norm: "
                         "cosine similarity is undefined for them")
    out = wide / np.where(zeros, 1.0, norms)[:, None]
    return np.ascontiguousarray(out, dtype=dtype)
