"""The Keras callbacks of a training phase.

:func:`phase_callbacks` gives, in this order:

1. :class:`EpochTimer`: adds ``epoch_seconds`` to the logs;
2. ``keras.callbacks.TerminateOnNaN``;
3. ``keras.callbacks.BackupAndRestore`` in ``<phase_dir>/backup``: after the
   process is killed, re-running the same phase restores weights, optimizer
   state, random-generator state and the epoch counter, and continues from the
   last finished epoch;
4. :class:`itemrec.training.selection.OpenSetSelection` when given: open-set
   scores on the validation classes, and the weights before training as a
   checkpoint candidate;
5. :class:`BestCheckpoint`: the weights that scored best on the monitored
   validation metric, with the best score kept on disk so a resumed run keeps
   comparing against it;
6. ``keras.callbacks.CSVLogger`` (appending, so a resumed run continues the file);
7. ``keras.callbacks.EarlyStopping`` when a patience is given;
8. ``keras.callbacks.TensorBoard`` logs when asked;
9. :class:`itemrec.plots.DeepFeatureMonitor` when given data to draw.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

MAXIMISED = ("acc", "accuracy", "recall", "map", "precision", "auc", "f1", "cmc", "score")


def monitor_mode(monitor: str) -> str:
    """Whether a logged metric improves upwards or downwards, read from its name.

    Args:
        monitor: a logged name such as ``"val_loss"`` or ``"valcls_score"``.

    Returns:
        ``"max"`` when the lower-cased name contains an accuracy-like token (acc, accuracy,
        recall, map, precision, auc, f1, cmc, score), else ``"min"``.
    """
    name = monitor.lower()
    return "max" if any(tok in name for tok in MAXIMISED) else "min"


class EpochTimer(keras.callbacks.Callback):
    """Adds the wall-clock seconds of each epoch to its logs as ``epoch_seconds``."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


class BestCheckpoint(keras.callbacks.Callback):
    """Save the weights whenever ``monitor`` improves; the best value survives restarts.

    Writes ``path`` (a ``.weights.h5`` file, atomically) and ``path + ".json"`` holding
    ``{"monitor", "mode", "best", "epoch"}``; on ``train_begin`` a saved best for the same
    monitor is read back, so a resumed run keeps comparing against it. A missing monitored
    value (e.g. no validation data) raises, so a run cannot silently keep its first weights.

    Args:
        path: the checkpoint file, ending in ``.weights.h5``.
        monitor: the logged value to follow (default ``"val_loss"``).
        mode: ``"min"`` or ``"max"`` (default: :func:`monitor_mode` of ``monitor``).

    Raises:
        ValueError: ``path`` does not end in ``.weights.h5``, or ``mode`` is neither
            ``"min"`` nor ``"max"``.
    """

    def __init__(self, path: str | os.PathLike, monitor: str = "val_loss", mode: str | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.name.endswith(".weights.h5"):
            raise ValueError(f"checkpoint path must end with .weights.h5; got {self.path}")
        self.monitor = monitor
        self.mode = mode or monitor_mode(monitor)
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max'; got {self.mode!r}")
        self.meta_path = Path(str(self.path) + ".json")
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.meta_path.is_file() and self.path.is_file():
            meta = json.loads(self.meta_path.read_text())
            if meta.get("monitor") == self.monitor:
                self.best, self.best_epoch = float(meta["best"]), meta.get("epoch")

    def _better(self, value: float) -> bool:
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Offer the epoch's weights with its ``monitor`` value (Keras's hook; see :meth:`consider`).

        Args:
            epoch: the 0-based epoch.
            logs: the epoch's logs; must hold ``monitor``.

        Raises:
            KeyError: the logs lack ``monitor``; the message lists the names they have.
        """
        logs = logs or {}
        if self.monitor not in logs:
            raise KeyError(
                f"BestCheckpoint monitors {self.monitor!r} but the epoch logs only have {sorted(logs)}; "
                "set train.monitor to one of them"
            )
        self.consider(float(logs[self.monitor]), epoch)

    def has_saved(self) -> bool:
        """Whether a best checkpoint from an earlier (interrupted) run of this phase is on disk.

        Returns:
            True when both the weights file and its ``.json`` exist.
        """
        return self.meta_path.is_file() and self.path.is_file()

    def consider(self, value: float, epoch: int) -> bool:
        """Save the model's weights if ``value`` beats the best so far. Non-finite values never win.

        Args:
            value: the monitored value of the weights as they are now.
            epoch: the 0-based epoch they come from; ``-1``: before training.

        Returns:
            Whether they were saved (and became the best).

        Raises:
            RuntimeError: no model is set (Keras sets it inside ``fit``).
        """
        if self.model is None:
            raise RuntimeError("BestCheckpoint.consider needs the callback's model set (it is, inside fit)")
        saved = bool(np.isfinite(value) and self._better(value))
        if saved:
            self.best, self.best_epoch = value, epoch
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name("tmp-" + self.path.name)
            self.model.save_weights(tmp)
            os.replace(tmp, self.path)
            self.meta_path.write_text(
                json.dumps({"monitor": self.monitor, "mode": self.mode, "best": value, "epoch": epoch})
            )
        return saved


def restored_epoch(backup_dir: str | os.PathLike) -> int:
    """The epoch ``BackupAndRestore`` in ``backup_dir`` would resume at.

    Args:
        backup_dir: the ``BackupAndRestore`` folder (``<phase_dir>/backup``).

    Returns:
        The epoch recorded in its ``training_metadata.json``; 0 when there is no backup or
        it cannot be read.
    """
    meta = Path(backup_dir) / "training_metadata.json"
    if not meta.is_file():
        return 0
    try:
        return int(json.loads(meta.read_text())["epoch"])
    except (ValueError, KeyError):
        return 0


def phase_callbacks(
    phase_dir: str | os.PathLike,
    monitor: str = "val_loss",
    patience: int | None = None,
    tensorboard_dir: str | os.PathLike | None = None,
    feature_monitor: dict[str, Any] | None = None,
    delete_backup: bool = False,
    selection: Any = None,
) -> list[keras.callbacks.Callback]:
    """Callbacks of one phase writing under ``phase_dir`` (see the module docstring).

    Files: ``backup/`` (``BackupAndRestore``), ``best.weights.h5`` and its ``.json``
    (:class:`BestCheckpoint`), ``history.csv`` (``CSVLogger``, appended), ``features/``
    (the feature monitor's frames by default).

    Args:
        phase_dir: the phase's folder (created).
        monitor: the logged value the checkpoint and early stopping follow (its direction
            from :func:`monitor_mode`), or ``"last"``: no checkpoint and no early stopping,
            the phase ends with its final weights.
        patience: epochs without improvement before early stopping (``None``/0: none).
        tensorboard_dir: write TensorBoard logs there (``None``: none).
        feature_monitor: keyword arguments of :class:`itemrec.plots.DeepFeatureMonitor`
            (``data``, ``labels``, ``embed_fn``...; ``out_dir`` defaults to
            ``phase_dir/features``); ``None``/empty: none.
        delete_backup: let ``BackupAndRestore`` delete its backup when ``fit``
            returns (the runner keeps it until the phase's weights are saved instead).
        selection: an :class:`itemrec.training.selection.OpenSetSelection`; it runs
            before the checkpoint (so its ``valcls_*`` scores are in the logs it reads)
            and offers the weights before training to it as epoch ``-1``.

    Returns:
        The callbacks, in the order of the module docstring.

    Raises:
        ValueError: ``monitor="last"`` with a ``patience`` or a ``selection``.
    """
    phase_dir = Path(phase_dir)
    phase_dir.mkdir(parents=True, exist_ok=True)
    cbs: list[keras.callbacks.Callback] = [
        EpochTimer(),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.BackupAndRestore(str(phase_dir / "backup"), save_freq="epoch", delete_checkpoint=delete_backup),
    ]
    if monitor == "last":  # a fixed number of epochs (e.g. chosen by cross-validation): keep the final weights
        if patience or selection is not None:
            raise ValueError("monitor 'last' keeps the final weights: no early stopping or selection")
        cbs.append(keras.callbacks.CSVLogger(str(phase_dir / "history.csv"), append=True))
        patience = None
    else:
        mode = monitor_mode(monitor)
        checkpoint = BestCheckpoint(phase_dir / "best.weights.h5", monitor, mode)
        if selection is not None:
            selection.checkpoint = checkpoint
            cbs.append(selection)
        cbs += [checkpoint, keras.callbacks.CSVLogger(str(phase_dir / "history.csv"), append=True)]
    if patience:
        cbs.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=int(patience)))
    if tensorboard_dir is not None:
        cbs.append(keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir), write_graph=False))
    if feature_monitor:
        from itemrec.plots import DeepFeatureMonitor

        kwargs = dict(feature_monitor)
        kwargs.setdefault("out_dir", phase_dir / "features")
        cbs.append(DeepFeatureMonitor(**kwargs))
    return cbs
