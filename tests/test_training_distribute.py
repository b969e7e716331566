"""MirroredStrategy over two logical CPU devices (in a subprocess: they must exist before TF starts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from itemrec.training.distribute import split_cpu
    split_cpu(2)
    import numpy as np, keras, tensorflow as tf
    from itemrec.losses import TripletLoss
    from itemrec.training import ExperimentConfig, get_strategy, run_experiment
    from itemrec.models import MetricLearningModel

    out = {}
    strategy = get_strategy("mirrored")
    out["replicas"] = strategy.num_replicas_in_sync
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype("float32")
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3], "int32")
    w0 = rng.normal(size=(4, 3)).astype("float32")
    with strategy.scope():
        inp = keras.Input((4,))
        emb_model = keras.Model(inp, keras.layers.Dense(3, use_bias=False)(inp))
        emb_model.set_weights([w0])
        loss = TripletLoss(0.5, "batch_hard")
        model = MetricLearningModel(emb_model, loss)  # the plain model: it scales its loss per replica
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    out["eval_loss"] = float(model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)["loss"])
    # reference without any strategy: each replica mines in its own half of the batch
    ref_loss = TripletLoss(0.5, "batch_hard")
    w = tf.Variable(w0)
    with tf.GradientTape() as tape:
        halves = [ref_loss.compute(tf.matmul(x[s], w), y[s])[0] for s in (slice(0, 4), slice(4, 8))]
        mean = (halves[0] + halves[1]) / 2
    grad = tape.gradient(mean, w).numpy()
    out["half_losses"] = [float(h) for h in halves]
    out["full_batch_loss"] = float(ref_loss.compute(x @ w0, y)[0])
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    out["max_step_error"] = float(np.abs(emb_model.get_weights()[0] - (w0 - 0.1 * grad)).max())
    out["step_size"] = float(np.abs(0.1 * grad).max())

    cfg = ExperimentConfig.from_dict(json.loads(sys.argv[1]))
    r = run_experiment(cfg, evaluate=False)
    out["run_replicas"] = r.training["replicas"]
    out["run_losses"] = r.history["loss"].tolist()
    print("RESULT" + json.dumps(out))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    cfg = {
        "name": "mirrored", "output_dir": str(tmp_path), "strategy": "mirrored",
        "data": {"name": "synthetic", "synthetic_products": 8, "synthetic_photos": 5, "synthetic_image_size": 40},
        "split": {"val_classes_fraction": 0.0},  # too few seen classes to hold any out for selection
        "model": {"backbone": "small_cnn", "weights": None, "input_size": 32, "embedding_dim": 8, "hidden": 16},
        "loss": {"class_name": "TripletLoss", "config": {"miner": "batch_hard"}},
        "train": {"frozen_epochs": 1, "finetune_epochs": 1, "finetune_layers": "all", "p": 4, "k": 2, "tensorboard": False},
    }
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(cfg)], env=env, capture_output=True, text=True, timeout=300)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    out = json.loads(line[0][len("RESULT"):])
    assert out["replicas"] == 2 and out["run_replicas"] == 2
    # the reported loss is the mean of the two replicas' in-batch-mined losses, not the full-batch loss
    expected = sum(out["half_losses"]) / 2
    assert out["eval_loss"] == pytest.approx(expected, rel=1e-5)
    assert abs(out["full_batch_loss"] - expected) > 1e-3
    # one SGD step equals the step on the mean of the replicas' losses (gradients are not double counted)
    assert out["step_size"] > 1e-3 and out["max_step_error"] < 1e-6
    assert len(out["run_losses"]) == 2 and all(v == v and v < 1e6 for v in out["run_losses"])
