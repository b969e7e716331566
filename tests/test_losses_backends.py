"""The loss and mining tests again under the PyTorch and JAX Keras backends, in a subprocess
(plus the model's logged-metrics test, which runs ``MetricLearningModel.evaluate``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("backend, module", [("torch", "torch"), ("jax", "jax")])
def test_loss_tests_pass_under_other_backends(backend, module):
    pytest.importorskip(module)  # under CI (ITEMREC_REQUIRE_DATA=1) a missing backend fails (conftest)
    here = Path(__file__).parent
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    which = subprocess.run([sys.executable, "-c", "import keras; print(keras.backend.backend())"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert which.stdout.strip().splitlines()[-1] == backend, which.stdout + which.stderr
    files = [
        str(here / "test_losses.py"),
        str(here / "test_mining.py"),
        str(here / "test_models_fit.py") + "::test_logged_accuracy_is_the_fraction_over_samples_with_a_partial_last_batch",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout and "skipped" not in proc.stdout
