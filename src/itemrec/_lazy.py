"""PEP 562 lazy attributes for itemrec's packages.

A package lists ``{public name: submodule}`` and gets a module ``__getattr__``
that imports the submodule on first use (and caches the value in the package),
so importing the package stays cheap (no TensorFlow, Keras or matplotlib).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_attributes(package: str, where: dict[str, str], namespace: dict[str, Any]) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package`` whose public names live in ``where``'s submodules."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__
