"""`itemrec gallery ...` end to end in-process, on a folder-per-item tree of PNGs and a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")

from itemrec.cli import main  # noqa: E402
from itemrec.embedder import ImageEmbedder  # noqa: E402

SIZE = 16


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)
    x = keras.layers.Flatten()(keras.layers.Conv2D(8, 3)(x))
    model = keras.Model(inp, keras.layers.Dense(16)(x))
    model_path = ImageEmbedder(model, SIZE).save(tmp / "m.keras")
    rng = np.random.default_rng(0)
    tree, val = tmp / "items", tmp / "val"
    for i in range(3):
        base = rng.integers(0, 256, (SIZE, SIZE, 3))
        for j in range(2):
            for root in (tree, val):
                (root / f"sku{i}").mkdir(parents=True, exist_ok=True)
                noisy = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
                Image.fromarray(noisy).save(root / f"sku{i}" / f"{j}.png")
    (val / "sku9").mkdir()  # an item that is not enrolled
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(val / "sku9" / "0.png")
    (tree / "sku2" / "broken.jpg").write_text("nope")
    return tmp, model_path, tree, val


def test_gallery_cli_round_trip(setup, capsys):
    tmp, model, tree, val = setup
    g = str(tmp / "g")
    assert main(["gallery", "create", g, "--model", str(model)]) == 0
    assert json.loads(capsys.readouterr().out)["dim"] == 16
    assert main(["gallery", "add", g, str(tree), "--model", str(model)]) == 0
    out = capsys.readouterr().out
    assert "enrolled 3 items (6 images, 1 skipped)" in out and "broken.jpg: not an image" in out
    assert main(["gallery", "list", g, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(i["item_id"], i["n_vectors"]) for i in listed["items"]] == [("sku0", 2), ("sku1", 2), ("sku2", 2)]
    assert main(["gallery", "query", g, str(val / "sku1" / "0.png"), "--model", str(model), "-k", "2", "--json"]) == 0
    (res,) = json.loads(capsys.readouterr().out)
    assert res["item_id"] == "sku1" and len(res["matches"]) == 2
    assert main(["gallery", "calibrate", g, str(val), "--model", str(model), "--target-far", "0.0"]) == 0
    cal = json.loads(capsys.readouterr().out)
    assert cal["far"] == 0.0 and cal["n_impostor"] == 7  # 6 mated queries' non-mated scores + sku9
    assert main(["gallery", "query", g, str(val / "sku9" / "0.png"), "--model", str(model)]) == 0
    assert "UNKNOWN" in capsys.readouterr().out
    assert main(["gallery", "remove", g, "sku0"]) == 0
    assert main(["gallery", "remove", g, "sku0"]) == 2  # CLIError: not in the gallery
    assert "not in the gallery" in capsys.readouterr().err
    assert main(["gallery", "check", g]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["n_items"] == 2 and report["index_ntotal"] == 4
    assert main(["gallery", "background", g, "--photos", str(val)]) == 2  # needs --model
    assert "--photos needs --model" in capsys.readouterr().err
    assert main(["gallery", "background", g, "--photos", str(val), "--model", str(model), "-k", "3"]) == 0
    assert "7 background photos, k 3, beta 0.5" in capsys.readouterr().out  # 3 items x 2 + sku9
    assert main(["gallery", "list", g, "--json"]) == 0
    described = json.loads(capsys.readouterr().out)["gallery"]
    assert described["hubness"] == {"k": 3, "beta": 0.5, "n_background": 7} and described["threshold"] is None
    assert main(["gallery", "query", g, str(val / "sku1" / "0.png"), "--model", str(model), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["matches"]) == 2  # 2 items left
    assert main(["gallery", "background", g, "--clear"]) == 0
    assert "hubness correction off" in capsys.readouterr().out
    assert main(["gallery", "list", g, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gallery"]["hubness"] is None
    assert main(["gallery", "create", g, "--fingerprint", "x", "--dim", "4"]) == 2  # already exists
    assert main(["gallery", "add", g, str(tmp / "nothing-here"), "--model", str(model)]) == 2
