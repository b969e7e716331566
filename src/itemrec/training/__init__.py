"""Training workflows: experiment configs, the feature cache, callbacks, runs and their evaluation.

``from itemrec.training import ExperimentConfig, run_experiment, evaluate_run``.
Names load on first use, so importing the package does not import TensorFlow.
"""

from __future__ import annotations

from itemrec._lazy import lazy_attributes

_WHERE = {
    "ExperimentConfig": "config",
    "ConfigError": "config",
    "DataConfig": "config",
    "SplitConfig": "config",
    "ModelConfig": "config",
    "LossConfig": "config",
    "TrainConfig": "config",
    "EvalConfig": "config",
    "FeatureCache": "features",
    "CachedFeatures": "features",
    "decode_images": "features",
    "SplitData": "data",
    "make_splits": "data",
    "experiment_splits": "data",
    "batch_indices": "data",
    "phase_callbacks": "callbacks",
    "BestCheckpoint": "callbacks",
    "get_strategy": "distribute",
    "split_cpu": "distribute",
    "run_experiment": "runner",
    "RunResult": "runner",
    "build_loss": "runner",
    "evaluate_run": "report",
}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, globals())
