"""itemrec.data.fetch (offline: the download is monkeypatched) and the `itemrec data` CLI."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from itemrec.cli import main
from itemrec.data import fetch as F
from itemrec.data.loaders import load_faces, load_grocery
from itemrec.data.records import ImageDataset


def _zip(folder: Path, target: Path, top: str) -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f"{top}/{f.relative_to(folder)}")
    return target


@pytest.fixture
def fake_download(monkeypatch, tmp_path):
    """Serve local zip files for the GitHub URLs; records what was asked."""
    served: dict[str, Path] = {}
    asked: list[str] = []

    def download(url: str, target: Path) -> None:
        asked.append(url)
        shutil.copy(served[url], target)

    monkeypatch.setattr(F, "_download", download)
    return served, asked


def test_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; fetchable: celebrity-faces"):
        F.fetch("imagenet", tmp_path)
    assert main(["data", "fetch", "imagenet", "--data-root", str(tmp_path)]) == 2


def test_fetch_faces_layout(tmp_path, fake_download):
    served, asked = fake_download
    repo = tmp_path / "repo"
    for split, person, n in (("train", "Ann A", 2), ("val", "Ann A", 1), ("train", "Bo", 1)):
        for k in range(n):
            p = repo / "Resources" / "Faces" / split / person / f"{k + 1}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (6, 6), (k * 40, 0, 0)).save(p)
    url = F.SOURCES["celebrity-faces"].urls[0]
    assert url == "https://github.com/jasmcaus/opencv-course/archive/HEAD.zip"
    served[url] = _zip(repo, tmp_path / "a.zip", "opencv-course-main")
    out = F.fetch("celebrity-faces", tmp_path / "data")
    assert out == tmp_path / "data" / "celebrity-faces" and asked == [url]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg")) == [
        "Ann A/train_1.jpg", "Ann A/train_2.jpg", "Ann A/val_1.jpg", "Bo/train_1.jpg"]
    ds = load_faces(out)
    assert ds.class_names == ["Ann A", "Bo"] and ds.frame["split"].tolist() == ["train", "train", "val", "train"]
    # already there: no second download unless forced
    F.fetch("celebrity-faces", tmp_path / "data")
    assert len(asked) == 1
    F.fetch("celebrity-faces", tmp_path / "data", force=True)
    assert len(asked) == 2
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".fetch")]  # temp cleaned


def test_fetch_grocery_layout_loads(tmp_path, fake_download):
    served, _ = fake_download
    d = tmp_path / "repo" / "dataset"
    for rel in ("train/Fruit/Apple/Red/r1.jpg", "val/Fruit/Apple/Red/r2.jpg", "test/Fruit/Pear/Green/g1.jpg",
                "iconic-images-and-descriptions/Fruit/Apple/Red/Red_Iconic.jpg",
                "iconic-images-and-descriptions/Fruit/Pear/Green/Green_Iconic.jpg"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(d / rel)
    (d / "classes.csv").write_text(
        "Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),Iconic Image Path (str),Product Description Path (str)\n"
        "Red,0,Apple,0,/iconic-images-and-descriptions/Fruit/Apple/Red/Red_Iconic.jpg,/x.txt\n"
        "Green,1,Pear,1,/iconic-images-and-descriptions/Fruit/Pear/Green/Green_Iconic.jpg,/y.txt\n")
    (d / "train.txt").write_text("train/Fruit/Apple/Red/r1.jpg, 0, 0\n")
    (d / "val.txt").write_text("val/Fruit/Apple/Red/r2.jpg, 0, 0\n")
    (d / "test.txt").write_text("test/Fruit/Pear/Green/g1.jpg, 1, 1\n")
    served[F.SOURCES["grocery-store"].urls[0]] = _zip(tmp_path / "repo", tmp_path / "g.zip", "GroceryStoreDataset-master")
    ds = load_grocery(F.fetch("grocery-store", tmp_path / "data"))
    assert ds.frame["split"].tolist() == ["train", "val", "test"] and ds.labels.tolist() == [0, 0, 1]
    assert ds.coarse_names == ["Apple", "Pear"] and all(Path(p).is_file() for p in ds.representatives.values())


def test_unsafe_archive_refused(tmp_path, fake_download):
    served, _ = fake_download
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../evil.txt", "x")
    served[F.SOURCES["mnist"].urls[0]] = bad
    with pytest.raises(ValueError, match="unsafe member path '../evil.txt'"):
        F.fetch("mnist", tmp_path / "data")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "data" / "mnist").exists()


def test_cli_synthetic_audit_split(tmp_path, capsys):
    assert main(["data", "synthetic", str(tmp_path / "syn"), "--products", "6", "--photos", "4", "--size", "32"]) == 0
    capsys.readouterr()
    assert main(["data", "audit", str(tmp_path / "syn" / "photos"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_images"] == 24 and report["n_classes"] == 6 and report["ok"] is True
    out = tmp_path / "open.csv"
    assert main(["data", "split", str(tmp_path / "syn" / "photos"), "--kind", "open", "--seed", "3",
                 "--unseen-fraction", "0.5", "--out", str(out)]) == 0
    assert "seen: 12 images / 3 classes" in capsys.readouterr().out
    ds = ImageDataset.read_csv(out)
    seen = set(ds.frame.loc[ds.frame["open_set"] == "seen", "label"])
    unseen = set(ds.frame.loc[ds.frame["open_set"] == "unseen", "label"])
    assert len(seen) == len(unseen) == 3 and not seen & unseen
    assert main(["data", "split", str(tmp_path / "syn" / "photos"), "--kind", "stratified",
                 "--fractions", "0.5,0.25,0.25", "--out", str(tmp_path / "s.csv")]) == 0
    s = ImageDataset.read_csv(tmp_path / "s.csv")
    assert s.frame["split"].value_counts().to_dict() == {"train": 12, "val": 6, "test": 6}
    assert main(["data", "audit", str(tmp_path / "nowhere")]) == 2
    assert "neither a dataset name" in capsys.readouterr().err
    assert main(["data", "split", str(tmp_path / "syn" / "photos"), "--kind", "stratified",
                 "--fractions", "0.5,0.6", "--out", str(tmp_path / "x.csv")]) == 2


def test_cli_missing_dataset_names_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ITEMREC_DATA", str(tmp_path))
    assert main(["data", "audit", "grocery-store"]) == 2
    assert "itemrec data fetch grocery-store" in capsys.readouterr().err


def test_cli_help_is_cheap():
    import subprocess
    import sys

    code = ("import sys, argparse, itemrec.data, itemrec.cli.data as d; d.register(argparse.ArgumentParser().add_subparsers()); "
            "print(sorted(m for m in ('tensorflow', 'keras', 'faiss', 'PIL', 'sklearn', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
