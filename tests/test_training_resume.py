"""Kill a training process with SIGKILL mid-run, run it again: it resumes from the last finished epoch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from itemrec.cli import main

CONFIG = {
    "name": "killed",
    "seed": 1,
    "data": {"name": "synthetic", "synthetic_products": 6, "synthetic_photos": 6, "synthetic_image_size": 40},
    "split": {"val_classes_fraction": 0.0},  # too few seen classes to hold any out for selection
    "model": {"backbone": "small_cnn", "weights": None, "input_size": 32, "embedding_dim": 8, "hidden": 16},
    "loss": {"class_name": "SoftmaxLoss"},
    "train": {"frozen_epochs": 0, "finetune_epochs": 10, "finetune_layers": "all", "finetune_lr": 1e-3,
              "batch_size": 8, "steps_per_epoch": 6, "tensorboard": False},
    "eval": {"cmc_draws": 5},
}


@pytest.mark.slow
def test_sigkill_then_resume_continues_from_last_epoch(tmp_path):
    cfg = tmp_path / "killed.json"
    cfg.write_text(json.dumps({**CONFIG, "output_dir": str(tmp_path)}))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "itemrec", "train", str(cfg), "--quiet", "--no-eval"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    meta = tmp_path / "killed" / "phase2" / "backup" / "training_metadata.json"
    killed_at = None
    try:  # no clock: wait for the training's own progress (it ends by itself if epoch 3 never comes)
        while proc.poll() is None:
            if meta.is_file():
                try:
                    epoch = json.loads(meta.read_text())["epoch"]
                except (ValueError, KeyError):
                    epoch = 0  # caught mid-write
                if epoch >= 3:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    killed_at = json.loads(meta.read_text())["epoch"]  # the process is dead: stable now
                    break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert killed_at is not None, f"training ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    assert 3 <= killed_at < 10
    run = tmp_path / "killed"
    assert not (run / "done.json").exists()
    logged_before = (run / "phase2" / "history.csv").read_text().splitlines()[1:]
    assert len(logged_before) >= killed_at  # every finished epoch was logged before the kill

    assert main(["train", str(cfg), "--quiet", "--no-eval"]) == 0
    info = json.loads((run / "training.json").read_text())
    assert info["phases"]["phase2"]["resumed_at_epoch"] == killed_at
    import pandas as pd

    rows = pd.read_csv(run / "phase2" / "history.csv")
    # the resumed process ran only epochs killed_at..9: at most one epoch was logged twice (killed between log and backup)
    assert len(rows) - len(logged_before) == 10 - killed_at
    hist = pd.read_csv(run / "history.csv")
    assert hist["epoch"].tolist() == list(range(10))
    assert (run / "embedding.keras").is_file() and (run / "done.json").is_file()
    assert not (run / "phase2" / "backup").exists()
