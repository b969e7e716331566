"""Choose on validation classes, report on test once.

:func:`validation_sweep` trains one run per combination of a grid of config
overrides *without* evaluating on test (``run_experiment(evaluate=False)``) and
reads each run's best score on the validation classes (``valcls_score`` in
``training.json``: seen classes held out of training, see
:mod:`itemrec.training.selection`). :func:`choose` picks the best combination;
only that run is then evaluated on the test split (:func:`evaluate_choice`).

From the shell::

    python -m itemrec.experiments.open_set configs/grocery_open_linear.json \\
        --set loss.class_name=ProxyAnchorLoss --grid train.frozen_lr=1e-4,3e-4,1e-3 --test

prints the validation score of every combination, the choice, and (with
``--test``) the chosen run's test metrics. Runs are named
``<config name>__<key>=<value>...`` under the config's ``output_dir``; a
finished run is reused, not retrained.

With ``--folds``, :func:`cross_validate` trains every combination once per class
fold (``split.val_fold``: with 25% validation classes, 4 folds, so every seen
class validates once) and chooses on the mean score; :func:`retrain_on_seen_classes` then trains
the choice on every seen class for the folds' median epoch count, and ``--test``
evaluates that refit once.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from typing import Any

import numpy as np
import pandas as pd

from itemrec.training.config import ConfigError, ExperimentConfig


def _run_name(base: str, combo: dict[str, Any]) -> str:
    parts = [f"{k.split('.')[-1]}={v}" for k, v in combo.items()]
    return "__".join([base] + parts) if parts else base


def validation_score(run_dir: Any) -> dict[str, Any]:
    """The model-selection record of a finished run: best ``valcls_score``, its epoch (-1: before training).

    Read from the last phase in the run's ``training.json``.

    Args:
        run_dir: the run folder, a :class:`~pathlib.Path`.

    Returns:
        ``{"valcls_score", "best_epoch", "monitor", "seconds"}``: the best validation-class
        score (mean of CMC@1 and MAP@R, in [0, 1]), its 0-based epoch, the monitored metric's
        name and the run's total seconds (NaN when not recorded).

    Raises:
        ConfigError: the run did not select its checkpoint on validation classes.
        FileNotFoundError: the run has no ``training.json`` (not trained yet).
    """
    info = json.loads((run_dir / "training.json").read_text())
    phases = info.get("phases", {})
    last = phases[sorted(phases)[-1]] if phases else {}
    if "best_score" not in last or not str(last.get("monitor", "")).startswith("valcls_"):
        raise ConfigError(f"{run_dir} was not selected on validation classes (monitor {last.get('monitor')!r}); "
                          "use split.val_classes_fraction > 0 and train.monitor 'auto' or 'valcls_score'")
    return {"valcls_score": float(last["best_score"]), "best_epoch": int(last["best_epoch"]),
            "monitor": last.get("monitor"), "seconds": float(info.get("seconds", float("nan")))}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _check_selectable(config: ExperimentConfig, need_validation: bool = True) -> None:
    """``ConfigError`` unless ``config`` selects on validation classes and its run folder is free or its own."""
    if need_validation and (not config.split.val_classes_fraction or config.train.monitor not in ("auto", "valcls_score")):
        raise ConfigError(f"{config.name} is not selected on validation classes (split.val_classes_fraction "
                          f"{config.split.val_classes_fraction}, train.monitor {config.train.monitor!r}); a sweep "
                          "chooses on them: use a fraction > 0 and train.monitor 'auto' or 'valcls_score'")
    saved = config.run_dir / "config.json"
    if saved.is_file():  # compared with defaults filled in, so a field added since does not count as a change
        old, new = _flat(ExperimentConfig.from_json(saved).to_dict()), _flat(config.to_dict())
        diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        if diff:
            raise ConfigError(f"{config.run_dir} holds a run of a different config ({'; '.join(diff[:5])}); give the "
                              "sweep its own name (--set name=...) or output_dir, or delete that folder")


def validation_sweep(base: ExperimentConfig, grid: dict[str, list[Any]], progress: bool = False) -> pd.DataFrame:
    """Train every combination of ``grid`` (dotted keys → values) on top of ``base``; never touches test.

    Returns one row per combination: the overrides, ``run`` (name), ``valcls_score``,
    ``best_epoch`` and ``seconds``, best first.

    Every config is checked before anything trains; a combination whose run already has a
    ``training.json`` is read back, not retrained.

    Args:
        base: the config every run starts from; it must select on validation classes
            (``split.val_classes_fraction > 0``, ``train.monitor`` ``"auto"`` or ``"valcls_score"``).
        grid: dotted config keys to the values to try; every combination is trained, as
            ``<base name>__<last key part>=<value>...``. An empty grid trains ``base`` alone.
        progress: training progress output.

    Returns:
        A ``pandas.DataFrame``, one row per combination, sorted by ``valcls_score`` (highest
        first; ties keep grid order).

    Raises:
        ConfigError: an override or combination makes an invalid config; ``base`` does not
            select on validation classes; a run folder holds another config; or training's
            own errors (see :func:`itemrec.training.run_experiment`).
    """
    from itemrec.training.runner import run_experiment

    keys = list(grid)
    combos = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    configs = [base.with_overrides({**combo, "name": _run_name(base.name, combo)}) for combo in combos]
    for config in configs:  # refuse before anything trains
        _check_selectable(config)
    rows = []
    for combo, config in zip(combos, configs):
        if not (config.run_dir / "training.json").is_file():
            run_experiment(config, progress=progress, evaluate=False)
        rows.append({**combo, "run": config.name, **validation_score(config.run_dir)})
    frame = pd.DataFrame(rows)
    return frame.sort_values("valcls_score", ascending=False, kind="stable").reset_index(drop=True)


def _fold_name(base: str, combo: dict[str, Any], fold: int) -> str:
    # fold 0 is the default split: its run is the plain sweep's run of the same combination
    return _run_name(base, combo) + (f"__val_fold={fold}" if fold else "")


def epochs_from_folds(best_epochs: list[int]) -> int:
    """Epochs for the refit: the median over folds of ``best_epoch + 1`` (0-based epochs; -1 = before training).

    Rounded half up; 0 means the folds' choice was the starting weights. (A refit of 0 epochs is
    then refused by the config's validation, which needs at least one epoch with a head: see
    :func:`retrain_on_seen_classes`.)

    Args:
        best_epochs: each fold's best epoch, 0-based, -1 for the weights before training.

    Returns:
        The number of epochs, >= 0.
    """
    return int(np.floor(np.median(np.asarray(best_epochs, float) + 1.0) + 0.5))


def cross_validate(base: ExperimentConfig, grid: dict[str, list[Any]], progress: bool = False) -> pd.DataFrame:
    """:func:`validation_sweep` over every class fold (``split.val_fold``); never touches test.

    Each combination of ``grid`` trains once per fold of
    :func:`~itemrec.training.config.n_validation_folds` (4 at the default fraction 0.25: every seen
    class validates once; Musgrave et al. 2020 choose hyperparameters on the mean over class-disjoint
    folds). Fold 0 is the default split, so its run is the plain sweep's run.

    Returns:
        One row per combination, best first: the overrides, ``run`` (the fold-0 run), ``valcls_score``
        (mean over folds), ``valcls_std``, ``fold_scores``, ``best_epochs`` (per fold, 0-based, -1 =
        before training), ``refit_epochs`` (:func:`epochs_from_folds`) and ``seconds`` (all folds).

    Args:
        base: the config every run starts from (as for :func:`validation_sweep`).
        grid: dotted config keys to the values to try.
        progress: training progress output.

    Raises:
        ConfigError: ``base`` does not select on validation classes (no validation classes, or
            another monitor), an override makes an invalid config, or a run folder holds another
            config; or training's own errors.
    """
    from itemrec.training.config import n_validation_folds
    from itemrec.training.runner import run_experiment

    n_folds = n_validation_folds(base.split.val_classes_fraction)
    if not n_folds:
        raise ConfigError(f"{base.name} has no validation classes to make class folds of; cross-validation "
                          "chooses on them: set split.val_classes_fraction > 0")
    keys = list(grid)
    combos = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    runs = [[base.with_overrides({**combo, "split.val_fold": f, "name": _fold_name(base.name, combo, f)})
             for f in range(n_folds)] for combo in combos]
    for config in itertools.chain.from_iterable(runs):  # refuse before anything trains
        _check_selectable(config)
    rows = []
    for combo, configs in zip(combos, runs):
        scores = []
        for config in configs:
            if not (config.run_dir / "training.json").is_file():
                run_experiment(config, progress=progress, evaluate=False)
            scores.append(validation_score(config.run_dir))
        fold_scores = [s["valcls_score"] for s in scores]
        epochs = [s["best_epoch"] for s in scores]
        rows.append({**combo, "run": configs[0].name, "valcls_score": float(np.mean(fold_scores)),
                     "valcls_std": float(np.std(fold_scores)), "fold_scores": fold_scores, "best_epochs": epochs,
                     "refit_epochs": epochs_from_folds(epochs), "seconds": float(sum(s["seconds"] for s in scores))})
    frame = pd.DataFrame(rows)
    return frame.sort_values("valcls_score", ascending=False, kind="stable").reset_index(drop=True)


def retrain_on_seen_classes(base: ExperimentConfig, row: dict[str, Any], keys: list[str], progress: bool = False) -> ExperimentConfig:
    """Train the chosen combination on *every* seen class for the folds' epoch count; never touches test.

    ``row`` is a row of :func:`cross_validate` and ``keys`` its grid keys. The refit holds out no
    validation classes (``split.val_classes_fraction = 0``), trains ``row["refit_epochs"]`` frozen
    epochs and keeps the final weights (``train.monitor = "last"``). The run is ``<run>__refit``
    and its ``cross_validation.json`` records the folds' scores. An existing refit run (with a
    ``training.json``) is reused.

    Args:
        base: the config the sweep started from.
        row: a row of :func:`cross_validate` (as a dict): its grid values, ``run`` and
            ``refit_epochs``.
        keys: the grid's dotted keys, whose values are taken from ``row``.
        progress: training progress output.

    Returns:
        The refit's :class:`~itemrec.training.config.ExperimentConfig` (its run folder is
        ``config.run_dir``).

    Raises:
        ConfigError: ``base`` fine-tunes (the folds choose one epoch count, for the frozen phase
            only); ``row["refit_epochs"]`` is 0 (the folds kept the starting weights: the config
            refuses a run with no epoch and a head); the run folder holds another config; or
            training's own errors.
    """
    from itemrec.training.runner import run_experiment

    if base.train.finetune_epochs:
        raise ConfigError("refit chooses the frozen phase's epochs only; set train.finetune_epochs to 0")
    combo = {k: row[k] for k in keys}
    config = base.with_overrides({**combo, "name": f"{row['run']}__refit", "split.val_classes_fraction": 0.0,
                                  "split.val_fold": 0, "train.monitor": "last",
                                  "train.early_stopping_patience": None, "train.frozen_epochs": int(row["refit_epochs"])})
    _check_selectable(config, need_validation=False)
    if not (config.run_dir / "training.json").is_file():
        run_experiment(config, progress=progress, evaluate=False)
    record = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
    (config.run_dir / "cross_validation.json").write_text(json.dumps(record, indent=1, default=str))
    return config


def choose(frame: pd.DataFrame) -> str:
    """The run with the best validation-class score (the first on ties, grid order).

    Args:
        frame: a :func:`validation_sweep` or :func:`cross_validate` result (sorted best first).

    Returns:
        The ``run`` name of its first row.

    Raises:
        ValueError: ``frame`` is empty.
    """
    if frame.empty:
        raise ValueError("no runs to choose from")
    return str(frame.iloc[0]["run"])


def evaluate_choice(base: ExperimentConfig, run: str, progress: bool = False) -> dict[str, Any]:
    """Evaluate the chosen run on test (:func:`itemrec.training.evaluate_run`), once.

    Args:
        base: the sweep's base config; the run is looked for in its ``output_dir``.
        run: the chosen run's name (:func:`choose`, or the refit's ``name``).
        progress: progress bars while embedding.

    Returns:
        The run's test metrics (also written to its ``metrics.json``).

    Raises:
        FileNotFoundError: the run folder is not a trained run.
    """
    from itemrec.training.report import evaluate_run

    return evaluate_run(base.run_dir.parent / run, progress=progress)


def results_table(output_dir: Any) -> pd.DataFrame:
    """One row per evaluated run under ``output_dir`` (the runs chosen on validation and read on test).

    Columns: run, backbone, head, loss, lr, ``selection`` ("fold 0": chosen on the default validation
    classes; "class folds": a :func:`retrain_on_seen_classes` run chosen on the mean over folds, whose score is that mean),
    the validation-class score, the refit's epochs, CMC@1/@5 image-averaged
    (with the Wilson interval of @1) and class-balanced (with its draw interval), 1- and 3-shot
    CMC@1, Recall@1, MAP@R, VAL at FAR 1e-2, and the run's seconds (training with its per-epoch
    validation, plus computing backbone features where the cache was cold).

    Args:
        output_dir: the runs' folder; every ``*/metrics.json`` in it is read.

    Returns:
        A ``pandas.DataFrame`` with the columns above, one row per evaluated run, in name
        order; empty when no run has been evaluated.

    Raises:
        KeyError: an evaluated run's metrics lack an open-set figure (a closed-set run).
        FileNotFoundError: an evaluated run lacks ``config.json`` or ``training.json``.
    """
    from pathlib import Path

    rows = []
    for metrics_path in sorted(Path(output_dir).glob("*/metrics.json")):
        run = metrics_path.parent
        m = json.loads(metrics_path.read_text())
        c = ExperimentConfig.from_json(run / "config.json")
        info = json.loads((run / "training.json").read_text())
        cv_path = run / "cross_validation.json"
        cv = json.loads(cv_path.read_text()) if cv_path.is_file() else None
        rows.append({
            "run": run.name, "backbone": c.model.backbone, "head": c.model.head, "loss": c.loss.name,
            "lr": c.train.frozen_lr, "selection": "class folds" if cv else "fold 0",
            "valcls_score": cv["valcls_score"] if cv else m.get("validation_classes", {}).get("valcls_score"),
            "epochs": c.train.frozen_epochs if cv else None,
            "cmc1_image": m["rank1_image"], "cmc1_image_ci": tuple(m["rank1_image_ci"]), "cmc5_image": m["rank5_image"],
            "cmc1_balanced": m["rank1"], "cmc1_balanced_ci": tuple(m["rank1_ci"]), "cmc5_balanced": m["rank5"],
            "cmc1_1shot": m["k_shot"]["1"].get("rank1"), "cmc1_3shot": m["k_shot"]["3"].get("rank1"),
            "recall_at_1": m["recall_at_1"], "map_at_r": m["map_at_r"], "val_at_far_1e-02": m.get("val_at_far_1e-02"),
            "seconds": info.get("seconds"),
        })
    return pd.DataFrame(rows)


def _top_level_parts(values: str) -> list[str]:
    """``values`` split at the commas outside JSON brackets and strings: ``'{"a": 1, "b": 2},3'`` → 2 parts."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(values):
        if quoted:
            quoted = not (ch == '"' and values[i - 1] != "\\")
        elif ch == '"':
            quoted = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(values[start:i])
            start = i + 1
    return parts + [values[start:]]


def _parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["key=v1,v2", ...]`` → ``{key: [v1, v2]}``; each value JSON when it parses (a number, or a whole
    object such as a miner, commas inside it kept), else the text."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r} must look like key=v1,v2")
        key, values = item.split("=", 1)
        parsed = []
        for v in _top_level_parts(values):
            try:
                parsed.append(json.loads(v))
            except json.JSONDecodeError:
                parsed.append(v)
        grid[key.strip()] = parsed
    return grid


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring): sweep, print the table, choose, optionally test.

    Args:
        argv: the arguments (``None``: ``sys.argv[1:]``): a config path, ``--set KEY=VALUE``,
            ``--grid KEY=V1,V2``, ``--folds`` and ``--test``.

    Returns:
        The exit status: 0, or 2 after printing a config or file error to stderr.
    """
    from itemrec.training.summary import summary_lines


    parser = argparse.ArgumentParser(prog="python -m itemrec.experiments.open_set", description="Sweep config overrides, choose on validation classes, "
                                                 "evaluate the choice on test once.")
    parser.add_argument("config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fixed override")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="swept override")
    parser.add_argument("--test", action="store_true", help="evaluate the chosen run on the test split")
    parser.add_argument("--folds", action="store_true",
                        help="cross-validate every combination over all class folds (split.val_fold), then refit the "
                             "choice on every seen class for the folds' median epoch count; --test evaluates the refit")
    args = parser.parse_args(argv)
    try:
        base = ExperimentConfig.from_json(args.config).with_overrides(args.set)
        grid = _parse_grid(args.grid)
        if args.folds:
            frame = cross_validate(base, grid, progress=True)
            print(frame.to_string(index=False))
            refitted = retrain_on_seen_classes(base, frame.iloc[0].to_dict(), list(grid), progress=True)
            best = refitted.name
        else:
            frame = validation_sweep(base, grid, progress=True)
            print(frame.to_string(index=False))
            best = choose(frame)
    except (ConfigError, FileNotFoundError) as exc:  # user errors: a message and exit code 2
        print(f"open_set: error: {exc}", file=sys.stderr)
        return 2
    print(f"chosen on validation classes: {best}")
    if args.test:
        print("\n".join(summary_lines(evaluate_choice(base, best))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
