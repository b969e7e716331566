"""Run folders keyed by what was trained: names, reuse, re-evaluation and sibling runs.

A run folder is ``output_dir/name``. :func:`keyed` names it after the values a
notebook sweeps (``center_lam0.01_alpha0.5``) plus a short hash of the
training-relevant config (:meth:`ExperimentConfig.training_key`), so a changed
parameter makes a new folder and the earlier run stays. :func:`run_or_load`
then trains a config once:

* no folder yet: train (:func:`itemrec.training.run_experiment`);
* the same training config, finished: read back; if only the evaluation
  settings (``eval``: CMC draws, FAR targets, ...) changed, the saved model is
  re-evaluated with them, without retraining;
* the same training config, unfinished: resume;
* another training config under the same name: :class:`ConfigError`, unless
  ``overwrite=True``. Nothing is ever deleted without it.

:func:`sibling_runs` finds the finished runs that differ from a config only in
chosen keys (the λ values tried so far), for plots that compare them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

from itemrec.training.config import ConfigError, ExperimentConfig

NEEDED = ("done.json", "config.json", "history.csv", "metrics.json")


def _get(raw: dict[str, Any], dotted: str) -> Any:
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{dotted!r} is not a config key")
        node = node[part]
    return node


def _label(value: Any) -> str:
    if isinstance(value, dict) and "class_name" in value:  # a serialised object: its class
        value = str(value["class_name"]).split(">")[-1]
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "-", text)


def keyed(config: ExperimentConfig, swept: Iterable[str] = (), length: int = 8) -> ExperimentConfig:
    """``config`` renamed ``<name>_<key><value>..._<training hash>``.

    Args:
        config: the run's config; its ``name`` is the stem of the new name.
        swept: dotted keys whose values go into the name, e.g. ``("loss.config.lam", "loss.config.alpha")``
            gives ``center_lam0.01_alpha0.5_1a2b3c4d`` (a serialised object gives its class name).
        length: characters of the hash of :meth:`ExperimentConfig.training_dict`.

    Returns:
        A copy of ``config`` with the new name.

    Raises:
        ConfigError: a swept key that is not in the config.
    """
    raw = config.to_dict()
    parts = [config.name] + [f"{k.split('.')[-1]}{_label(_get(raw, k))}" for k in swept]
    parts.append(config.training_key(length))
    return config.with_overrides({"name": "_".join(parts)})


def load_run(run_dir: str | os.PathLike) -> Any:
    """A finished run folder read back as an :class:`itemrec.training.RunResult` (no training).

    Args:
        run_dir: the run's folder.

    Returns:
        The ``RunResult``: its config, history (DataFrame), metrics, ``training.json``
        (empty when absent) and the paths of its files.

    Raises:
        FileNotFoundError: the folder lacks one of ``done.json``, ``config.json``,
            ``history.csv``, ``metrics.json``.
        ConfigError: its ``config.json`` is not a valid config.
    """
    import pandas as pd

    from itemrec.training.runner import RunResult

    run_dir = Path(run_dir)
    for need in NEEDED:
        if not (run_dir / need).is_file():
            raise FileNotFoundError(f"{run_dir / need} not found: {run_dir} is not a finished, evaluated run")
    config = ExperimentConfig.from_json(run_dir / "config.json")
    training = json.loads((run_dir / "training.json").read_text()) if (run_dir / "training.json").is_file() else {}
    files = {n: run_dir / f for n, f in (("embedding", "embedding.keras"), ("model", "model.keras"),
                                          ("history", "history.csv"), ("config", "config.json"),
                                          ("metrics", "metrics.json"))}
    return RunResult(run_dir, config, pd.read_csv(run_dir / "history.csv"),
                     json.loads((run_dir / "metrics.json").read_text()), training, files)


def _differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += _differences(va, vb, f"{prefix}{k}.")
        elif va != vb:
            keys.append(f"{prefix}{k}")
    return keys


def run_or_load(config: ExperimentConfig, overwrite: bool = False, progress: bool = False) -> Any:
    """Train ``config`` unless its folder holds the same training; see the module docstring.

    Args:
        config: the run; its folder is ``config.run_dir``.
        overwrite: replace a folder holding another training config (or redo this one).
        progress: progress bars and per-epoch logs.

    Returns:
        The :class:`itemrec.training.RunResult`, trained, resumed, re-evaluated or read back.

    Raises:
        ConfigError: the folder holds a run trained with another config and ``overwrite`` is off
            (the message names the keys that differ).
    """
    from itemrec.training.report import evaluate_run
    from itemrec.training.runner import run_experiment

    run_dir = config.run_dir
    saved = run_dir / "config.json"
    if not saved.is_file() or overwrite:
        return run_experiment(config, overwrite=overwrite and saved.is_file(), progress=progress)
    old = ExperimentConfig.from_json(saved)
    changed = _differences(old.training_dict(), config.training_dict())
    if changed:
        raise ConfigError(
            f"{run_dir} holds a run trained with another config (differs in {changed}); name runs with "
            "itemrec.training.runs.keyed(config) so each training config gets its own folder, or pass "
            "overwrite=True to replace it"
        )
    if old.to_dict() != config.to_dict():  # evaluation settings (or the folder's place) changed: record them
        config.to_json(saved)
        if (run_dir / "done.json").is_file():
            evaluate_run(run_dir, progress=progress)
            return load_run(run_dir)
    if (run_dir / "done.json").is_file():
        if not (run_dir / "metrics.json").is_file():
            evaluate_run(run_dir, progress=progress)
        return load_run(run_dir)
    return run_experiment(config, progress=progress)  # resumes the unfinished run


def sibling_runs(config: ExperimentConfig, vary: Iterable[str], progress: bool = False) -> dict[str, Any]:
    """Finished runs in ``config.output_dir`` that differ from ``config`` at most in the ``vary`` keys.

    Each is evaluated with ``config.eval`` (re-evaluated if it was saved with
    other evaluation settings), so their curves compare. ``config``'s own run is
    included when it is finished. Folders whose config does not read (another version)
    or whose name is not their config's name are skipped.

    Args:
        config: the reference run.
        vary: dotted training keys allowed to differ, e.g. ``("loss.config.lam", "train.finetune_lam")``.
        progress: progress bars while re-evaluating.

    Returns:
        ``{run name: RunResult}`` in name order.

    Raises:
        ConfigError: a key of ``vary`` is not a training config key (a typo is an error,
            not an empty result).
    """
    vary = tuple(vary)
    for key in vary:
        _get(config.training_dict(), key)  # a typo in vary is an error, not an empty result

    def masked(c: ExperimentConfig) -> dict[str, Any]:
        raw = c.training_dict()
        for key in vary:
            *path, last = key.split(".")
            node = raw
            for part in path:
                node = node[part]
            node.pop(last, None)
        return raw

    want = masked(config)
    out: dict[str, Any] = {}
    root = Path(config.output_dir).expanduser()
    for saved in sorted(root.glob("*/config.json")):
        if not (saved.parent / "done.json").is_file():
            continue
        try:
            other = ExperimentConfig.from_json(saved)
        except (ConfigError, TypeError, ValueError):
            continue  # not a run of this version: not a sibling
        if other.name == saved.parent.name and masked(other) == want:
            same_eval = other.with_overrides({"eval": config.to_dict()["eval"], "output_dir": str(root)})
            out[other.name] = run_or_load(same_eval, progress=progress)
    return out
