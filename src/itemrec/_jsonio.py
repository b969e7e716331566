"""JSON helpers shared by the reports (no itemrec imports, so any layer may use it)."""

from __future__ import annotations

from typing import Any

import numpy as np


def json_default(x: Any) -> Any:
    """``json.dumps(default=...)`` for NumPy scalars and arrays.

    Raises:
        TypeError: ``x`` is neither a NumPy scalar nor an array.
    """
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
