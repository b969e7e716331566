"""Validation helpers of :mod:`itemrec.training.config`: each error names the field and the allowed values."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """An invalid experiment configuration; the message names the field and the fix."""


def _choice(where: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{where} must be one of {list(choices)}; got {value!r}")


def _positive(where: str, value: Any, allow_zero: bool = False, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number; got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{where} must be {'>= 0' if allow_zero else '> 0'}; got {value!r}")


def _int(where: str, value: Any, minimum: int = 0, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} must be an integer; got {value!r}")
    if value < minimum:
        raise ConfigError(f"{where} must be >= {minimum}; got {value}")


def _fraction(where: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ConfigError(f"{where} must lie strictly between 0 and 1; got {value!r}")
