"""Face detection and cropping (OpenCV Haar cascade) and leave-one-out retrieval precision."""

from __future__ import annotations

import numpy as np
import pytest

from itemrec import faces


def test_square_box_hand_worked():
    # face (x=10, y=20, w=30, h=40), margin 0.25: side = round(40 · 1.5) = 60 around the centre
    # (25, 40): x1 = 25 - 30 = -5, moved inside to 0; y1 = 40 - 30 = 10.
    assert faces.square_box(10, 20, 30, 40, 0.25, 200, 200) == (0, 10, 60, 70)
    # near the bottom-right corner the square is moved back inside: x1 = 190 - 60 = 130
    assert faces.square_box(170, 170, 30, 30, 0.5, 200, 200)[2:] == (200, 200)
    # a square larger than the image shrinks to the shorter side
    assert faces.square_box(0, 0, 100, 100, 1.0, 150, 120) == (0, 0, 120, 120)
    with pytest.raises(ValueError, match="margin"):
        faces.square_box(0, 0, 10, 10, -0.1, 50, 50)


def test_center_box():
    assert faces.center_box(300, 200) == (50, 0, 250, 200)
    assert faces.center_box(100, 160) == (0, 30, 100, 130)


def test_cascade_is_found():
    path = faces.cascade_path()
    assert path.name == faces.HAAR_FRONTAL_FACE and path.stat().st_size > 100_000


def test_no_face_falls_back_to_centre_crop():
    img = np.full((120, 200, 3), 128, np.uint8)
    img[:, 90:110] = 255  # a bright stripe, no face
    fc = faces.crop_face(img, size=64)
    assert not fc.detected and fc.box is None and fc.n_faces == 0
    assert fc.crop_box == (40, 0, 160, 120)
    assert fc.image.shape == (64, 64, 3)
    # the crop is the centre square scaled by 64/120: the stripe (x 90..110 -> 50..70 in the crop) is in its middle
    assert fc.image[32, 32].tolist() == [255, 255, 255] and fc.image[32, 5].tolist() == [128, 128, 128]


def test_bad_images_are_named():
    with pytest.raises(ValueError, match="RGB"):
        faces.detect_faces(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        faces.crop_face(np.zeros((10, 10, 3), np.float32))


def test_crop_faces_on_celebrity_photos(dataset_path, tmp_path):
    from itemrec.data.loaders import load_faces

    ds = load_faces(dataset_path("celebrity-faces"))
    assert len(ds) == 118 and ds.n_classes == 5
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    paths = list(ds.paths[::6]) + [str(bad)]  # 20 photos, every person
    fc = faces.crop_faces(paths, size=96, margin=0.2)
    assert fc.images.shape == (20, 96, 96, 3) and fc.images.dtype == np.uint8
    assert fc.skipped and fc.skipped[0][0] == str(bad)
    assert fc.keep.tolist() == list(range(20))
    # The cascade finds a face in 110 of the 118 photos; in this subset at least 80 %.
    assert fc.detection_rate >= 0.8
    found = fc.boxes[fc.detected]
    assert (found[:, 2] >= 20).all() and (found[:, 2] == found[:, 3]).all()  # square cascade windows
    assert (fc.boxes[~fc.detected] == -1).all()
    assert (fc.n_faces[fc.detected] >= 1).all() and (fc.n_faces[~fc.detected] == 0).all()
    with pytest.raises(Exception, match="broken.jpg"):
        faces.crop_faces([str(bad)], strict=True)


def test_detect_faces_largest_first(dataset_path):
    from itemrec.data.images import read_image

    # A photo with two detections (the subject and a small false positive).
    img = read_image(dataset_path("celebrity-faces") / "Jerry Seinfeld" / "train_16.jpg")
    boxes = faces.detect_faces(img)
    assert len(boxes) >= 1
    areas = boxes[:, 2] * boxes[:, 3]
    assert (np.diff(areas) <= 0).all()
    x, y, w, h = boxes[0]
    assert 0 <= x and 0 <= y and x + w <= img.shape[1] and y + h <= img.shape[0]
    assert w >= 0.15 * min(img.shape[:2])


def test_loo_retrieval_hand_worked():
    # Cosine similarities: e0·e1 0.994, e1·e3 0.991, e0·e3 0.970, e2·e3 0.243, e1·e2 0.110, e0·e2 0.
    # Nearest neighbours: e0 -> e1 (same), e1 -> e0 (same), e2 -> e3 (same), e3 -> e1 (other class).
    emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.8, 0.2]])
    labels = np.array([0, 0, 1, 1])
    r = faces.loo_retrieval(emb, labels, ks=(1, 2))
    assert r.precision_at_1 == pytest.approx(3 / 4)
    # top 2: e0 [e1, e3] 1/2, e1 [e0, e3] 1/2, e2 [e3, e1] 1/2, e3 [e1, e0] 0 -> mean 0.375
    assert r.precision_at_k[2] == pytest.approx(0.375)
    assert r.per_class_precision_at_1 == {0: 1.0, 1: 0.5}
    assert r.neighbours[:, 0].tolist() == [1, 0, 3, 1]
    assert r.predicted.tolist() == [0, 0, 1, 0]


def test_loo_precision_at_1_agrees_with_retrieval_report():
    from itemrec.evaluation import retrieval_report

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 12)
    emb = rng.normal(size=(60, 8)) + 1.5 * np.eye(8)[labels]
    r = faces.loo_retrieval(emb, labels, ks=(1,))
    assert r.precision_at_1 == pytest.approx(retrieval_report(emb, labels, ks=(1,)).precision_at_1)
    assert 0.3 < r.precision_at_1 <= 1.0


def test_loo_retrieval_errors():
    emb = np.eye(3)
    with pytest.raises(ValueError, match="1..N-1"):
        faces.loo_retrieval(emb, np.array([0, 1, 1]), ks=(3,))
    with pytest.raises(ValueError, match="labels"):
        faces.loo_retrieval(emb, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\[1\]"):
        faces.loo_retrieval(np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]), np.array([0, 1, 1]), ks=(1,))
