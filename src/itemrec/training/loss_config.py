"""The experiment config's ``loss`` section: a serialised Keras loss object.

``"loss": {"class_name": "TripletLoss", "config": {"margin": 0.2, "miner":
{"class_name": "BatchHardMiner", "config": {}}, "distance": "squared_l2"}}``: the
``config`` is the loss's constructor arguments, and nested miners, distances,
reducers and classifier heads are ``{"class_name", "config"}`` dicts too (or the
short names their constructors accept). :func:`itemrec.serialization.deserialize`
builds it with ``keras.saving.deserialize_keras_object``, adding ``n_classes`` (the
number of training classes) when the class takes it. A loss defined outside
itemrec works the same way once its module is imported (the config's ``imports``).

Configs written before this format (``"loss": {"name": "triplet", "margin": 0.2,
...}``, one flat dict of every loss's parameters) still load:
:func:`convert_old_loss` turns them into this form with a ``FutureWarning``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from itemrec.training._checks import ConfigError

# the short names reports and tables use (the older config's loss names)
_SHORT = {"CenterLoss": "center", "TripletLoss": "triplet", "MultiSimilarityLoss": "multi_similarity",
          "ProxyAnchorLoss": "proxy_anchor", "ContrastiveLoss": "contrastive"}
_HEADS = {"CosineSoftmax": "cosine", "ArcFace": "arcface", "CosFace": "cosface"}


@dataclass
class LossConfig:
    """The loss as ``{"class_name": ..., "config": {...}}``; see the module docstring.

    Args:
        class_name: a registered :class:`itemrec.losses.MetricLoss` subclass:
            ``SoftmaxLoss``, ``CenterLoss``, ``TripletLoss``, ``MultiSimilarityLoss``,
            ``ProxyAnchorLoss``, ``ContrastiveLoss``, or ``"pkg>Class"`` for your own.
        config: its constructor arguments (``n_classes`` is added by the trainer).
    """

    class_name: str = "SoftmaxLoss"
    config: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Build the loss once for two classes, so a bad name or argument fails before training.

        Raises:
            ConfigError: unknown class, not a :class:`~itemrec.losses.MetricLoss`, or
                arguments its constructor rejects (the message names them).
        """
        if not isinstance(self.config, dict):
            raise ConfigError(f"loss.config must be an object of constructor arguments; got {self.config!r}")
        self.build(2)

    def build(self, n_classes: int) -> Any:
        """The loss object for ``n_classes`` training classes.

        Args:
            n_classes: the number of training classes (given to a class that takes ``n_classes``).

        Returns:
            The :class:`itemrec.losses.MetricLoss`.

        Raises:
            ConfigError: as :meth:`validate`.
        """
        from itemrec.losses import MetricLoss
        from itemrec.serialization import deserialize, resolve_class

        try:
            cls = resolve_class(self.class_name, "loss")
        except ValueError as exc:
            raise ConfigError(f"loss.class_name: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, MetricLoss)):
            raise ConfigError(f"loss.class_name {self.class_name!r} is a {cls!r}, not an itemrec.losses.MetricLoss")
        try:
            return deserialize(self.to_dict(), "loss", n_classes=int(n_classes))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"loss.config: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """``{"class_name": ..., "config": ...}``.

        Returns:
            The dict (a copy of the config).
        """
        return {"class_name": self.class_name, "config": dict(self.config)}

    @property
    def name(self) -> str:
        """A short name for reports: ``softmax``, ``center``, ``triplet``, ``cosine``, ``arcface``,
        ``cosface``, ``multi_similarity``, ``proxy_anchor``, ``contrastive``, else the class name."""
        base = self.class_name.split(">")[-1]
        if base == "SoftmaxLoss":
            head = self.config.get("head")
            if isinstance(head, dict):
                head_name = str(head.get("class_name", "")).split(">")[-1]
                return _HEADS.get(head_name, head_name)
            return "softmax"
        return _SHORT.get(base, base)

    @property
    def is_classifier(self) -> bool:
        """Whether the loss scores classes through a classifier head (a :class:`~itemrec.losses.SoftmaxLoss`)."""
        from itemrec.losses import SoftmaxLoss
        from itemrec.serialization import resolve_class

        cls = resolve_class(self.class_name, "loss")
        return isinstance(cls, type) and issubclass(cls, SoftmaxLoss)

    def get(self, key: str, default: Any = None) -> Any:
        """A constructor argument of the loss.

        Args:
            key: the argument's name (``"lam"``, ``"margin"``, ...).
            default: returned when the config does not set it.

        Returns:
            The value.
        """
        return self.config.get(key, default)


# -- the older format --------------------------------------------------------------------------
OLD_KEYS = ("name", "lam", "finetune_lam", "alpha", "margin", "miner", "distance", "soft_margin", "scale",
            "angular_margin", "ms_alpha", "ms_beta", "ms_base", "ms_epsilon", "proxy_margin", "proxy_alpha",
            "pos_margin", "neg_margin", "init_from_catalogue")
OLD_DEFAULTS: dict[str, Any] = {
    "name": "softmax", "lam": 0.01, "finetune_lam": None, "alpha": 0.5, "margin": 0.2, "miner": "batch_hard",
    "distance": "squared_l2", "soft_margin": False, "scale": 16.0, "angular_margin": 0.3, "ms_alpha": 2.0,
    "ms_beta": 50.0, "ms_base": 0.5, "ms_epsilon": 0.1, "proxy_margin": 0.1, "proxy_alpha": 32.0,
    "pos_margin": 0.0, "neg_margin": 1.0, "init_from_catalogue": False,
}
_MINER_CLASSES = {"batch_all": "BatchAllMiner", "batch_hard": "BatchHardMiner", "semi_hard": "SemiHardMiner",
                  "random": "RandomTripletMiner"}


def is_old_format(section: Any) -> bool:
    """Whether a ``loss`` section is the older flat format.

    Args:
        section: the JSON object.

    Returns:
        ``True`` when it has none of ``class_name``/``config`` and only older keys.
    """
    return isinstance(section, dict) and "class_name" not in section and "config" not in section \
        and set(section) <= set(OLD_KEYS)


def convert_old_loss(section: dict[str, Any], seed: int = 0, warn: bool = True,
                     where: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The older flat ``loss`` section as the new one, plus the keys that moved to ``train``.

    The same objects the older trainer built (``build_loss``'s branches), with the older
    defaults for missing keys; a random miner takes the experiment's ``seed``, as it did.

    Args:
        section: the older ``loss`` object.
        seed: the experiment's top-level seed.
        warn: emit a ``FutureWarning`` that shows the new form.
        where: what the warning names as the section's source (the config file's path), or None.

    Returns:
        ``(loss, train)``: the new ``loss`` dict, and ``{"init_from_catalogue": ...,
        "finetune_lam": ...}`` for the ``train`` section.

    Raises:
        ConfigError: an unknown older loss name or miner.
    """
    old = {**OLD_DEFAULTS, **section}
    name = old["name"]
    heads = {"cosine": ("CosineSoftmax", {"scale": old["scale"]}),
             "arcface": ("ArcFace", {"scale": old["scale"], "margin": old["angular_margin"]}),
             "cosface": ("CosFace", {"scale": old["scale"], "margin": old["angular_margin"]})}
    if name == "softmax":
        new = {"class_name": "SoftmaxLoss", "config": {}}
    elif name == "center":
        new = {"class_name": "CenterLoss", "config": {"alpha": old["alpha"], "lam": old["lam"]}}
    elif name == "triplet":
        if old["miner"] not in _MINER_CLASSES:
            raise ConfigError(f"loss.miner must be one of {list(_MINER_CLASSES)}; got {old['miner']!r}")
        miner_config = {"seed": int(seed)} if old["miner"] == "random" else {}
        new = {"class_name": "TripletLoss", "config": {
            "margin": old["margin"], "miner": {"class_name": _MINER_CLASSES[old["miner"]], "config": miner_config},
            "distance": old["distance"], "soft_margin": old["soft_margin"]}}
    elif name in heads:
        head, head_config = heads[name]
        new = {"class_name": "SoftmaxLoss", "config": {"head": {"class_name": head, "config": head_config}}}
    elif name == "multi_similarity":
        miner = None if old["ms_epsilon"] is None else {"class_name": "MultiSimilarityMiner",
                                                        "config": {"epsilon": old["ms_epsilon"]}}
        new = {"class_name": "MultiSimilarityLoss", "config": {
            "alpha": old["ms_alpha"], "beta": old["ms_beta"], "base": old["ms_base"], "miner": miner}}
    elif name == "proxy_anchor":
        new = {"class_name": "ProxyAnchorLoss", "config": {"margin": old["proxy_margin"], "alpha": old["proxy_alpha"]}}
    elif name == "contrastive":
        new = {"class_name": "ContrastiveLoss", "config": {"pos_margin": old["pos_margin"],
                                                           "neg_margin": old["neg_margin"]}}
    else:
        raise ConfigError(f"loss.name must be one of ['softmax', 'center', 'triplet', 'cosine', 'arcface', "
                          f"'cosface', 'multi_similarity', 'proxy_anchor', 'contrastive']; got {name!r}")
    train = {"init_from_catalogue": old["init_from_catalogue"], "finetune_lam": old["finetune_lam"]}
    if warn:
        import json

        moved = {k: v for k, v in train.items() if v not in (None, False)}
        warnings.warn(
            (f"{where}: " if where else "") + f"the loss section {json.dumps(section)} is in the older format; it reads as "
            f"\"loss\": {json.dumps(new)}" + (f" with train {json.dumps(moved)}" if moved else "")
            + ". Write it that way: the older format will stop loading.", FutureWarning, stacklevel=3)
    return new, train
