"""itemrec.scene: box checks, crops, region aggregation, the overlay, cluster_scene and the CLI (synthetic)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import adjusted_rand_score

from itemrec import scene
from itemrec.scene import (
    aggregate_clusters,
    closing_kernel_size,
    cluster_scene,
    crop_boxes,
    draw_overlay,
    fit_crops,
    palette,
    read_boxes_json,
)
from itemrec.scene_draw import NOISE_COLOR


def frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["id", "x1", "y1", "x2", "y2"])


# ----------------------------------------------------------------------------- boxes and crops
def test_crop_boxes_values_padding_and_clipping():
    img = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    boxes = frame([("a", 2, 3, 5, 7), ("b", -4, -2, 3, 2), ("c", 10, 8, 20, 30)])
    a, b, c = crop_boxes(img, boxes)
    assert (a == img[3:7, 2:5]).all()
    assert (b == img[0:2, 0:3]).all()  # clipped at the top-left corner
    assert (c == img[8:10, 10:12]).all()  # clipped at the bottom-right corner
    (a1,) = crop_boxes(img, frame([("a", 2, 3, 5, 7)]), pad=1)
    assert (a1 == img[2:8, 1:6]).all()


def test_read_boxes_json_and_mapping(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"p": {"x1": 1, "x2": 5, "y1": 2, "y2": 9}, "q": {"x1": 0, "x2": 3, "y1": 0, "y2": 3}}))
    got = read_boxes_json(path)
    assert got["id"].tolist() == ["p", "q"]
    assert got.loc[0, ["x1", "y1", "x2", "y2"]].tolist() == [1, 2, 5, 9]


@pytest.mark.parametrize(
    "boxes, match",
    [
        (frame([("ok", 0, 0, 4, 4), ("flat", 3, 2, 3, 8)]), "box 'flat' is empty or inverted"),
        (frame([("inv", 5, 2, 3, 8)]), "box 'inv' is empty or inverted"),
        (frame([("away", 50, 50, 60, 60)]), "box 'away' lies outside the 12x10 image"),
        (frame([("dup", 0, 0, 2, 2), ("dup", 1, 1, 3, 3)]), "duplicate box id 'dup'"),
        ({"m": {"x1": 0, "x2": 3, "y1": 0}}, r"box 'm' lacks \['y2'\]"),
        ({"n": {"x1": "left", "x2": 3, "y1": 0, "y2": 2}}, "box 'n' has a non-numeric x1"),
        (pd.DataFrame({"id": ["a"], "x1": [0]}), "lacks columns"),
    ],
)
def test_bad_boxes_are_named(boxes, match):
    with pytest.raises(ValueError, match=match):
        crop_boxes(np.zeros((10, 12, 3), np.uint8), boxes)


def test_fit_crops_modes():
    crops = [np.full((20, 10, 3), 200, np.uint8)]
    padded = fit_crops(crops, 8, "pad")
    # 20x10 -> 8x4 centred on black: columns 0-1 and 6-7 are the letterbox.
    assert padded.shape == (1, 8, 8, 3)
    assert (padded[0, :, :2] == 0).all() and (padded[0, :, 2:6] == 200).all()
    assert (fit_crops(crops, 8, "stretch") == 200).all()
    with pytest.raises(ValueError, match="crop mode"):
        fit_crops(crops, 8, "squash")


# ----------------------------------------------------------------------------- regions
def test_closing_kernel_size():
    assert closing_kernel_size((100, 200), 0.02) == 5  # round(4.0) = 4 -> odd 5
    assert closing_kernel_size((3280, 2464), 0.01) == 33  # round(32.8) = 33
    assert closing_kernel_size((100, 200), 0.0) == 1


def test_aggregate_clusters_hand_worked():
    # 100x200 image. Cluster 0: boxes A and B 2 px apart, C far right; cluster 1: D; E is noise.
    boxes = frame(
        [("A", 10, 10, 30, 50), ("B", 32, 10, 52, 50), ("C", 150, 10, 170, 50), ("D", 60, 60, 80, 90), ("E", 100, 60, 110, 70)]
    )
    labels = np.array([0, 0, 0, 1, -1])
    regions = aggregate_clusters((100, 200), boxes, labels, closing_scale=0.02)  # 5x5 kernel bridges the 2 px gap
    assert sorted(regions) == [0, 1]
    big, small = regions[0]
    assert big.bbox == (10, 10, 52, 50) and big.area == 42 * 40 and sorted(big.box_ids) == ["A", "B"]
    assert small.bbox == (150, 10, 170, 50) and small.area == 20 * 40 and small.box_ids == ["C"]
    assert big.mask.shape == (40, 42) and big.mask.all()
    (d,) = regions[1]
    assert d.bbox == (60, 60, 80, 90) and d.area == 600 and d.box_ids == ["D"]
    xs, ys = d.contour[:, 0, 0], d.contour[:, 0, 1]
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (60, 60, 79, 89)
    # Without closing (1x1 kernel) A and B stay apart: three regions for cluster 0.
    apart = aggregate_clusters((100, 200), boxes, labels, closing_scale=0.0)
    assert len(apart[0]) == 3 and sorted(r.area for r in apart[0]) == [800, 800, 800]
    with pytest.raises(ValueError, match="one entry per box"):
        aggregate_clusters((100, 200), boxes, labels[:3])


# ----------------------------------------------------------------------------- overlay
def test_palette_distinct_and_never_grey():
    cols = palette(64)
    assert len(set(cols)) == 64
    assert NOISE_COLOR not in cols
    assert palette(5) == cols[:5]


def grid_scene(n_clusters: int, side: int = 60, box: int = 24):
    """One box per cluster on a grid, plus one noise box at the end."""
    per_row = 10
    rows = []
    for c in range(n_clusters):
        x, y = 10 + (c % per_row) * side, 10 + (c // per_row) * side
        rows.append((f"b{c}", x, y, x + box, y + box))
    y_noise = 10 + (n_clusters // per_row + 1) * side
    rows.append(("noise", 10, y_noise, 10 + box, y_noise + box))
    h, w = y_noise + side, 10 + per_row * side
    return (h, w), frame(rows), np.array(list(range(n_clusters)) + [-1])


def colour_present(img: np.ndarray, colour) -> bool:
    return bool(np.all(img == np.array(colour, np.uint8), axis=-1).any())


@pytest.mark.parametrize("n_clusters", [1, 3, 40])
def test_every_cluster_is_drawn_and_saved(tmp_path, n_clusters):
    (h, w), boxes, labels = grid_scene(n_clusters)
    image = np.full((h, w, 3), 40, np.uint8)
    regions = aggregate_clusters((h, w), boxes, labels, closing_scale=0.0)
    out = tmp_path / "sub" / "overlay.png"
    drawn = draw_overlay(image, boxes, labels, regions, out)
    assert out.is_file()
    saved = np.asarray(Image.open(out).convert("RGB"))
    assert (saved == drawn).all()  # PNG is lossless: the file holds exactly what was returned
    for c, colour in enumerate(palette(n_clusters)):
        assert colour_present(saved, colour), f"cluster {c} (colour {colour}) is missing from the overlay"
    assert colour_present(saved, NOISE_COLOR)  # the noise box, thin grey
    assert not colour_present(image, palette(1)[0])


def test_overlay_jpeg_downscaled(tmp_path):
    (h, w), boxes, labels = grid_scene(3)
    image = np.full((h, w, 3), 40, np.uint8)
    regions = aggregate_clusters((h, w), boxes, labels)
    out = tmp_path / "o.jpg"
    drawn = draw_overlay(image, boxes, labels, regions, out, max_side=300)
    assert max(drawn.shape[:2]) == 300
    assert Image.open(out).size == (drawn.shape[1], drawn.shape[0])
    with pytest.raises(ValueError, match="must end in"):
        draw_overlay(image, boxes, labels, regions, tmp_path / "o.txt")
    with pytest.raises(ValueError, match="no regions"):
        draw_overlay(image, boxes, labels, {}, tmp_path / "o.png")


# ----------------------------------------------------------------------------- cluster_scene and the CLI
PRODUCTS = {"red": (200, 30, 30), "blue": (30, 30, 200), "green": (30, 200, 30)}


def synthetic_shelf(tmp_path):
    """A 200x300 shelf: three products, each a row of coloured boxes, plus their boxes JSON and truth."""
    img = np.full((200, 300, 3), 90, np.uint8)
    boxes, truth = {}, {}
    for r, (name, colour) in enumerate(PRODUCTS.items()):
        for k in range(3):
            x1, y1 = 10 + k * 40, 10 + r * 60
            img[y1 : y1 + 40, x1 : x1 + 30] = colour
            boxes[f"{name}{k}"] = {"x1": x1, "x2": x1 + 30, "y1": y1, "y2": y1 + 40}
            truth[f"{name}{k}"] = name
    path = tmp_path / "shelf.png"
    Image.fromarray(img).save(path)
    (tmp_path / "shelf.json").write_text(json.dumps(boxes))
    (tmp_path / "truth.json").write_text(json.dumps({"labels": truth}))
    return path, tmp_path / "shelf.json", truth


def mean_colour(images: np.ndarray) -> np.ndarray:
    """A stand-in embed_fn: the mean RGB of each crop, black letterbox excluded."""
    x = images.astype(np.float64)
    lit = x.sum(axis=-1) > 0
    return np.stack([im[m].mean(axis=0) for im, m in zip(x, lit)]).astype(np.float32)


def test_cluster_scene_end_to_end(tmp_path):
    path, boxes_json, truth = synthetic_shelf(tmp_path)
    res = cluster_scene(path, boxes_json, mean_colour, crop_size=32, out_path=tmp_path / "o.png")
    assert res.crops.shape == (9, 32, 32, 3) and res.embeddings.shape == (9, 3)
    y = [truth[i] for i in res.box_ids]
    assert adjusted_rand_score(y, res.labels) == 1.0
    assert res.clustering.n_clusters == 3 and res.clustering.n_noise == 0
    # Boxes of one product are 10 px apart; the closing kernel is 1% of 300 px = 3 px, so each box is its own region.
    assert sum(len(v) for v in res.regions.values()) == 9
    saved = np.asarray(Image.open(res.overlay_path).convert("RGB"))
    for colour in palette(3):
        assert colour_present(saved, colour)
    assert set(res.labels_by_id()) == set(truth)
    with pytest.raises(ValueError, match="embed_fn returned shape"):
        cluster_scene(path, boxes_json, lambda x: np.zeros((2, 3)), crop_size=32)


def test_cli_scene_cluster(tmp_path, monkeypatch, capsys):
    from itemrec.cli import main

    path, boxes_json, _ = synthetic_shelf(tmp_path)
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"not used: the backbone is replaced below")
    monkeypatch.setattr(scene, "backbone_embed_fn", lambda backbone, w, size: mean_colour)
    out, js = tmp_path / "o.jpg", tmp_path / "labels.json"
    rc = main([
        "scene", "cluster", str(path), str(boxes_json), "--weights", str(weights), "--crop-size", "32",
        "--out", str(out), "--json", str(js), "--truth", str(tmp_path / "truth.json"),
    ])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "3 clusters" in text and "ARI 1.000" in text
    payload = json.loads(js.read_text())
    assert payload["n_clusters"] == 3 and len(payload["labels"]) == 9
    assert payload["labels"]["red0"] == payload["labels"]["red2"] != payload["labels"]["blue0"]
    assert payload["scores"]["ari"] == 1.0
    assert out.is_file()


def test_cli_scene_errors(tmp_path, capsys):
    from itemrec.cli import main

    path, boxes_json, _ = synthetic_shelf(tmp_path)
    assert main(["scene", "cluster", str(tmp_path / "nope.jpg"), str(boxes_json), "--out", "o.jpg"]) == 2
    assert "image" in capsys.readouterr().err
    assert main(["scene", "cluster", str(path), str(boxes_json), "--out", str(tmp_path / "o.gif")]) == 2
    assert "must end in" in capsys.readouterr().err
    args = ["scene", "cluster", str(path), str(boxes_json), "--out", str(tmp_path / "o.jpg")]
    assert main(args + ["--min-cluster-size", "1"]) == 2
    assert main(args + ["--backbone", "resnet50"]) == 2
    assert "give --weights" in capsys.readouterr().err
    assert main(args + ["--model", str(tmp_path / "missing.keras")]) == 2
    assert "not found" in capsys.readouterr().err
