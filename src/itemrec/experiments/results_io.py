"""``results.json``: the key numbers a notebook reports, written where its tests and the README read them."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def to_jsonable(value: Any, where: str = "results") -> Any:
    """Plain JSON types from NumPy/pandas scalars, arrays, paths, dicts and lists; NaN/inf become ``None``.

    Args:
        value: what to convert: dicts (keys become strings), lists/tuples, NumPy arrays and
            scalars, Python numbers, strings, ``None``, paths, or anything with a
            ``to_dict()`` (pandas Series/DataFrame), nested freely.
        where: the location of ``value`` in the results, for the error message
            (extended with ``.key`` and ``[i]`` while recursing).

    Returns:
        The same data in ``dict``/``list``/``str``/``int``/``float``/``bool``/``None`` only;
        paths become strings.

    Raises:
        TypeError: a value of any other type (the message names its location).
    """
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist(), where)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (str, type(None))):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "to_dict"):  # pandas Series/DataFrame
        return to_jsonable(value.to_dict(), where)
    raise TypeError(f"{where}: cannot write a {type(value).__name__} to results.json")


def save_results(out_dir: str | os.PathLike, results: dict[str, Any], name: str = "results.json") -> Path:
    """Write ``results`` as JSON to ``out_dir/name`` (folders created) and return the path.

    Args:
        out_dir: the folder (created when missing).
        results: the numbers to write, converted by :func:`to_jsonable`.
        name: the file name.

    Returns:
        The path written.

    Raises:
        TypeError: ``results`` is not a dict, or holds a value :func:`to_jsonable` cannot convert.
    """

    if not isinstance(results, dict):
        raise TypeError(f"results must be a dict; got {type(results).__name__}")
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(results), indent=1) + "\n")
    return path
