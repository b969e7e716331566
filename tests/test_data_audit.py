"""itemrec.data.audit: duplicates, class overlaps, unreadable files, tiny classes."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from itemrec.data.audit import audit
from itemrec.data.loaders import load_folder


def _img(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


@pytest.fixture
def messy(tmp_path):
    root = tmp_path / "messy"
    _img(root / "apple" / "a1.png", (255, 0, 0))
    shutil.copy(root / "apple" / "a1.png", root / "apple" / "a1_copy.png")  # within-class duplicate
    _img(root / "apple" / "a2.png", (250, 0, 0))
    _img(root / "pear" / "p1.png", (0, 255, 0))
    _img(root / "pear" / "p2.png", (0, 250, 0))
    shutil.copytree(root / "pear", root / "pear_again")  # duplicated class
    _img(root / "plum" / "u1.png", (0, 0, 255))  # single image: no positives
    # a mixed class: one image of apple, one of plum, one of its own
    (root / "mix").mkdir()
    shutil.copy(root / "apple" / "a2.png", root / "mix" / "m1.png")
    shutil.copy(root / "plum" / "u1.png", root / "mix" / "m2.png")
    _img(root / "mix" / "m3.png", (9, 9, 9))
    (root / "mix" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    (root / "empty_cls").mkdir()
    return load_folder(root)


def test_audit_finds_everything(messy):
    r = audit(messy)
    # 3 apple + 2 pear + 2 pear_again + 1 plum + 4 mix = 12 files
    assert r.n_images == 12 and r.n_classes == 6
    assert r.class_counts == {"apple": 3, "empty_cls": 0, "mix": 4, "pear": 2, "pear_again": 2, "plum": 1}
    assert r.within_class_duplicates == {"apple": 1}
    # distinct contents: red, red2, green, green2, blue, gray, junk = 7
    assert r.distinct_images == 7
    pairs = {(o.class_a, o.class_b): o.n_shared for o in r.overlaps}
    assert pairs == {("pear", "pear_again"): 2, ("apple", "mix"): 1, ("mix", "plum"): 1}
    assert r.duplicated_classes == [("pear", "pear_again")]
    # mix shares images with two other classes; plum's single image is all shared (1 >= 0.5 * 1)
    assert r.mixed_classes == ["mix", "plum"]
    assert [p.split("/")[-1] for p, _ in r.unreadable] == ["broken.png"]
    assert r.small_classes == ["plum"] and r.empty_classes == ["empty_cls"]
    assert not r.ok
    text = r.summary()
    assert "pear / pear_again: 2 shared" in text and "mixed classes: mix, plum" in text and "broken.png" in text
    data = json.loads(r.to_json())
    assert data["n_within_duplicates"] == 1 and data["duplicated_classes"] == [["pear", "pear_again"]]
    # groups of identical files: a1/a1_copy, a2/m1, p1/p1', p2/p2', u1/m2 = 5
    assert "duplicate_groups" not in data and len(json.loads(r.to_json(groups=True))["duplicate_groups"]) == 5


def test_audit_decode_check_and_clean(tmp_path):
    root = tmp_path / "clean"
    for c, col in (("a", (1, 2, 3)), ("b", (4, 5, 6))):
        for k in range(2):
            _img(root / c / f"{k}.png", tuple(v + k for v in col))
    r = audit(load_folder(root), check="decode")
    assert r.ok and r.unreadable == [] and r.overlaps == []
    with pytest.raises(ValueError, match="check"):
        audit(load_folder(root), check="full")


def test_packed_scenes_known_problems(dataset_path):
    from itemrec.data.loaders import load_packed_scenes

    r = audit(load_packed_scenes(dataset_path("packed-scenes")))
    assert r.n_images == 10540 and r.n_classes == 27
    assert ("SI8OGC7FoM", "SI9OGT7FoM") in r.duplicated_classes
    assert ("vbbzecbQgV", "vddz3cbOgV") in r.duplicated_classes
    assert "MrlIsXerE3D" in r.mixed_classes  # its images also sit in CF9wuUMw9u, Ig4hbSBAdm and nAkJ2fmb2j
    partners = {o.class_b if o.class_a == "MrlIsXerE3D" else o.class_a for o in r.overlaps if "MrlIsXerE3D" in (o.class_a, o.class_b)}
    assert partners == {"CF9wuUMw9u", "Ig4hbSBAdm", "nAkJ2fmb2j"}
    dup = next(o for o in r.overlaps if o.class_a == "SI8OGC7FoM")
    assert (dup.files_a, dup.files_b, dup.count_a) == (159, 159, 159)
    assert r.unreadable == [] and r.small_classes == []
    assert r.n_within_duplicates > 0 and r.distinct_images < 10540
