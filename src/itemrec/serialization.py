"""Losses, miners, distances and reducers as ``{"class_name": ..., "config": ...}`` dicts.

Every such object is registered with ``keras.saving.register_keras_serializable``
and its ``get_config()`` is its constructor arguments, so the dict is enough to
rebuild it with ``keras.saving.deserialize_keras_object``. itemrec's own objects
(registered under the package ``"itemrec"``) are written by their class name alone
(``"TripletLoss"``); an object registered by another package keeps its registered
name (``"mypackage>MyMiner"``). The module that registers a user-defined class must
be imported before its dict is read: the experiment config's ``imports`` list does
that for ``itemrec train``.
"""

from __future__ import annotations

import importlib
from typing import Any

import keras

PACKAGE = "itemrec"


class ConfigObject:
    """Base of the small serialisable objects (distances, miners, reducers): the constructor's
    arguments are the config.

    Subclasses with arguments override :meth:`get_config`; equality and the repr follow it.
    """

    def get_config(self) -> dict:
        """The constructor arguments (none here).

        Returns:
            A dict that ``type(self)(**config)`` accepts.
        """
        return {}

    @classmethod
    def from_config(cls, config: dict) -> Any:
        """Rebuild from :meth:`get_config`.

        Args:
            config: the dict :meth:`get_config` returned.

        Returns:
            A new instance.
        """
        return cls(**config)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self), repr(sorted(self.get_config().items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def registered_name(obj: Any) -> str:
    """The name an object or class is written under: ``"TripletLoss"`` for itemrec's, else ``"pkg>Name"``.

    Args:
        obj: an instance or a class.

    Returns:
        The name.

    Raises:
        ValueError: the class is not registered with ``keras.saving.register_keras_serializable``.
    """
    cls = obj if isinstance(obj, type) else type(obj)
    name = keras.saving.get_registered_name(cls)
    if keras.saving.get_registered_object(name) is not cls:
        raise ValueError(f"{cls.__name__} is not registered: decorate it with "
                         "@keras.saving.register_keras_serializable(package=...) so it can be saved")
    prefix = PACKAGE + ">"
    return name[len(prefix):] if name.startswith(prefix) else name


def serialize(obj: Any) -> dict[str, Any] | None:
    """``{"class_name": registered_name(obj), "config": obj.get_config()}`` (``None`` stays ``None``).

    Nested objects in the config are serialised by the object's own ``get_config``.

    Args:
        obj: a registered object with ``get_config``, or ``None``.

    Returns:
        The dict, or ``None``.

    Raises:
        ValueError: the class is not registered.
    """
    if obj is None:
        return None
    return {"class_name": registered_name(obj), "config": dict(obj.get_config())}


def resolve_class(class_name: str, what: str = "object") -> type:
    """The registered class a ``class_name`` names (``"TripletLoss"`` or ``"pkg>Name"``).

    Args:
        class_name: the name in a serialised dict.
        what: what it is, for the error message (``"loss"``, ``"miner"``, ...).

    Returns:
        The class.

    Raises:
        ValueError: no registered class has that name.
    """
    if not isinstance(class_name, str) or not class_name:
        raise ValueError(f"{what} class_name must be a non-empty string; got {class_name!r}")
    candidates = [class_name] if ">" in class_name else [f"{PACKAGE}>{class_name}", class_name]
    for name in candidates:
        cls = keras.saving.get_registered_object(name)
        if cls is not None:
            return cls
    raise ValueError(f"unknown {what} class_name {class_name!r}: no class is registered under that name. itemrec's "
                     "are written by class name (e.g. 'TripletLoss'); your own need "
                     "@keras.saving.register_keras_serializable(package='pkg'), the name 'pkg>Class', and their "
                     "module imported first (the config's 'imports' list)")


def deserialize(spec: Any, what: str = "object", **defaults: Any) -> Any:
    """Build the object a ``{"class_name": ..., "config": ...}`` dict describes.

    Args:
        spec: the dict.
        what: what it is, for error messages.
        **defaults: constructor arguments added when the config lacks them *and* the
            class's constructor accepts them (the trainer passes ``n_classes`` this way).

    Returns:
        The object, built by ``keras.saving.deserialize_keras_object``.

    Raises:
        ValueError: not such a dict, an unknown class, or arguments its constructor rejects.
    """
    if not isinstance(spec, dict) or "class_name" not in spec:
        raise ValueError(f"{what} must be a dict {{'class_name': ..., 'config': {{...}}}}; got {spec!r}")
    unknown = sorted(set(spec) - {"class_name", "config", "module", "registered_name"})
    if unknown:
        raise ValueError(f"{what} has unknown keys {unknown}; a serialised object holds 'class_name' and 'config'")
    cls = resolve_class(spec["class_name"], what)
    config = spec.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError(f"{what} config must be a dict of constructor arguments; got {config!r}")
    config = dict(config)
    for key, value in defaults.items():
        if key not in config and accepts(cls, key):
            config[key] = value
    full = {"module": cls.__module__, "class_name": cls.__name__, "config": config,
            "registered_name": keras.saving.get_registered_name(cls)}
    try:
        return keras.saving.deserialize_keras_object(full)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} {spec['class_name']!r} with config {config}: {_root_cause(exc)}") from exc


def _root_cause(exc: BaseException) -> str:
    """The message of the innermost exception (Keras wraps a constructor's error in its own)."""
    seen = exc
    while seen.__cause__ is not None or (seen.__context__ is not None and not seen.__suppress_context__):
        seen = seen.__cause__ or seen.__context__
    return f"{type(seen).__name__}: {seen}" if seen is not exc else str(exc)


def resolve(value: Any, base: type, names: dict[str, type], what: str, aliases: dict[str, str] | None = None,
            hint: str = "", not_base: type[Exception] = ValueError) -> Any:
    """An object of ``base`` from itself, a short name of ``names`` or a serialised dict.

    The one rule behind :func:`~itemrec.distances.get_distance`, :func:`~itemrec.mining.get_miner`
    and :func:`~itemrec.reducers.get_reducer`.

    Args:
        value: an instance of ``base``, a name, or a ``{"class_name", "config"}`` dict.
        base: the class the result must be an instance of.
        names: short name -> class, built with no arguments.
        what: what it is, for messages (``"distance"``, ``"miner"``, ...).
        aliases: older names -> names.
        hint: added to the unknown-name message.
        not_base: the error raised when a dict describes an object of another class.

    Returns:
        The object.

    Raises:
        ValueError: an unknown name; a dict :func:`deserialize` rejects.
        TypeError: any other type.
        Exception: ``not_base`` when the dict describes another kind of object.
    """
    if isinstance(value, base):
        return value
    if isinstance(value, str):
        key = (aliases or {}).get(value, value)
        if key not in names:
            raise ValueError(f"unknown {what} {value!r}; choose one of {sorted(names)}{hint}")
        return names[key]()
    if isinstance(value, dict):
        obj = deserialize(value, what)
        if not isinstance(obj, base):
            raise not_base(f"{value!r} is not a {base.__name__}")
        return obj
    if isinstance(value, type) and issubclass(value, base):
        raise TypeError(f"{what} must be a name, a serialised dict or a {base.__name__} object; got the class "
                        f"{value.__name__}: pass an instance, {value.__name__}()")
    raise TypeError(f"{what} must be a name, a serialised dict or a {base.__name__}; got {type(value).__name__}")


def accepts(cls: type, argument: str) -> bool:
    """Whether ``cls(...)`` takes a keyword ``argument`` by name.

    Args:
        cls: a class.
        argument: the keyword.

    Returns:
        ``True`` when the constructor names it.
    """
    import inspect

    try:
        return argument in inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return False


def import_modules(names: list[str]) -> None:
    """Import each module of ``names`` (those that register user-defined objects).

    The current folder is searched too (as ``python -m`` does), then ``sys.path``.

    Args:
        names: dotted module names.

    Raises:
        ValueError: a module cannot be imported (the message names it and the error).
    """
    import os
    import sys

    if names and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an import error in user code: name it
            raise ValueError(f"cannot import module {name!r} listed in 'imports': {type(exc).__name__}: {exc}") from exc
