"""``tf.distribute`` strategies for training, chosen by the config's ``strategy`` field.

* ``"default"``: the default (single-device) strategy;
* ``"mirrored"``: :class:`tf.distribute.MirroredStrategy` over the local GPUs,
  or over the logical CPU devices when there is no GPU (tests split one CPU
  into two with ``tf.config.set_logical_device_configuration`` before
  TensorFlow initialises);
* ``"multiworker"``: :class:`tf.distribute.MultiWorkerMirroredStrategy`, the
  cluster described by ``TF_CONFIG`` as usual. Every worker runs the same
  ``itemrec train`` command; the run folder should be per worker (or on the
  chief only): this module does not yet make non-chief workers skip writing,
  and it is untested here (one machine).

Batches are split across replicas and each replica runs the loss on its own
slice, so in-batch triplet mining happens *per replica* (P×K batches keep
their structure when ``P`` is a multiple of the replica count: see
:func:`check_pk_for_replicas`). Gradients are summed across replicas by
``tf.distribute``, so each replica's loss is divided by the number of replicas,
as Keras's own compiled losses do (in :class:`itemrec.models.MetricLearningModel`).
"""

from __future__ import annotations

from typing import Any

STRATEGY_NAMES = ("default", "mirrored", "multiworker")


_STRATEGIES: dict[str, Any] = {}


def get_strategy(name: str = "default") -> Any:
    """The ``tf.distribute`` strategy named ``name`` (see the module docstring).

    One strategy object per name and process: two ``MirroredStrategy`` objects
    in one process number their collective ops alike and their all-reduces
    clash ("Shape mismatch in the collective instance"), so runs share it.

    Args:
        name: ``"default"``, ``"mirrored"`` or ``"multiworker"``.

    Returns:
        The strategy (``"default"``: the current one from ``tf.distribute.get_strategy()``).

    Raises:
        ValueError: unknown ``name``.
    """
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name not in STRATEGY_NAMES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGY_NAMES}")
    if name not in _STRATEGIES:
        if name == "mirrored":
            gpus = tf.config.list_logical_devices("GPU")
            devices = None if gpus else [d.name for d in tf.config.list_logical_devices("CPU")]
            _STRATEGIES[name] = tf.distribute.MirroredStrategy(devices=devices)
        else:
            _STRATEGIES[name] = tf.distribute.MultiWorkerMirroredStrategy()
    return _STRATEGIES[name]


def split_cpu(n: int = 2) -> None:
    """Split the first physical CPU into ``n`` logical devices (call before TensorFlow runs anything).

    So ``"mirrored"`` has several replicas on a machine without GPUs (tests).

    Args:
        n: the number of logical CPU devices (default 2).

    Raises:
        RuntimeError: TensorFlow has already initialised its devices.
    """
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * int(n))
    except RuntimeError as exc:
        raise RuntimeError(
            "logical CPU devices must be configured before TensorFlow initialises; "
            "call split_cpu() first thing in the process"
        ) from exc


def check_pk_for_replicas(p: int | None, k: int | None, batch: int, replicas: int) -> None:
    """The global batch must split evenly; with P×K, each replica should get whole classes.

    Args:
        p: P, classes per batch (``None``: not a P×K batch, not checked).
        k: K, images per class (not checked: whole classes per replica only need P to split).
        batch: the global batch size in images.
        replicas: the number of replicas in sync.

    Raises:
        ValueError: ``batch`` or ``p`` is not a multiple of ``replicas``.
    """
    if batch % replicas:
        raise ValueError(f"the global batch of {batch} images does not split over {replicas} replicas; use a multiple")
    if p is not None and p % replicas:
        raise ValueError(
            f"train.p={p} classes per batch is not a multiple of the {replicas} replicas, so a class would be "
            "cut between replicas and lose its positives; use a multiple"
        )
