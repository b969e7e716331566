"""The one model loader (ImageEmbedder.load) used by every command and the service.

It refuses, with a message that says what to pass, anything that is not a complete
``.keras`` archive of a one-input, one-output embedding model, and loads with
``safe_mode=True``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from itemrec.embedder import ImageEmbedder, ModelLoadError  # noqa: E402

SIZE = 12


def tiny_embedding() -> "keras.Model":
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inp))
    return keras.Model(inp, keras.layers.Dense(8)(x), name="tiny_embedding")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A training run's two files, as the trainer writes them: embedding.keras and model.keras."""
    from itemrec.losses import TripletLoss
    from itemrec.models import MetricLearningModel

    run = tmp_path_factory.mktemp("run")
    emb = tiny_embedding()
    ImageEmbedder(emb, SIZE).save(run / "embedding.keras")
    full = MetricLearningModel(emb, TripletLoss(0.2, "batch_hard"))
    full(np.zeros((1, SIZE, SIZE, 3), np.float32))
    full.save(run / "model.keras")
    return run


def test_embedding_model_loads(run_dir):
    e = ImageEmbedder.load(run_dir / "embedding.keras")
    assert e.image_size == (SIZE, SIZE) and e.embedding_dim == 8
    assert e.embed_arrays(np.zeros((2, SIZE, SIZE, 3), np.uint8)).shape == (2, 8)


def test_training_model_is_refused_naming_the_embedding_file(run_dir):
    with pytest.raises(ModelLoadError) as info:
        ImageEmbedder.load(run_dir / "model.keras")
    msg = str(info.value)
    assert "not an embedding model" in msg and str(run_dir / "embedding.keras") in msg


def test_two_output_model_is_refused(tmp_path):
    inp = keras.Input((SIZE, SIZE, 3))
    flat = keras.layers.Flatten()(inp)
    two = keras.Model(inp, [keras.layers.Dense(4)(flat), keras.layers.Dense(2)(flat)])
    two.save(tmp_path / "two.keras")
    with pytest.raises(ModelLoadError, match="1 inputs and 2 outputs"):
        ImageEmbedder.load(tmp_path / "two.keras")


def test_truncated_archive_fifo_folder_and_missing(run_dir, tmp_path):
    data = (run_dir / "embedding.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError) as info:
        ImageEmbedder.load(tmp_path / "cut.keras")
    assert "not a complete .keras archive" in str(info.value) and "not found" not in str(info.value).lower()
    os.mkfifo(tmp_path / "pipe.keras")
    with pytest.raises(ModelLoadError, match="is a FIFO, not a regular file") as info:
        ImageEmbedder.load(tmp_path / "pipe.keras")  # must not block reading the FIFO
    assert "does not exist" not in str(info.value)
    with pytest.raises(ModelLoadError, match=f"did you mean {run_dir / 'embedding.keras'}"):
        ImageEmbedder.load(run_dir)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageEmbedder.load(tmp_path / "missing.keras")


def test_safe_mode_refuses_code_in_the_file(tmp_path):
    inp = keras.Input((SIZE, SIZE, 3))
    out = keras.layers.Lambda(lambda t: keras.ops.mean(t, axis=(1, 2)))(inp)  # Python bytecode in the file
    keras.Model(inp, out).save(tmp_path / "lambda.keras")
    with pytest.raises(ModelLoadError, match="cannot load embedding model .*safe_mode"):
        ImageEmbedder.load(tmp_path / "lambda.keras")


def test_serve_exits_2_on_the_training_model(run_dir, tmp_path):
    from itemrec.gallery import Gallery

    Gallery.create(tmp_path / "g", ImageEmbedder.load(run_dir / "embedding.keras")).close()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    res = subprocess.run([sys.executable, "-m", "itemrec", "serve", str(tmp_path / "g"), "--model", str(run_dir / "model.keras"),
                          "--port", "0"], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2, res.stderr[-2000:]
    assert str(run_dir / "embedding.keras") in res.stderr and "Traceback" not in res.stderr
