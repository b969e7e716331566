"""Download the public datasets into the layout the loaders expect.

``fetch(name, root=None)`` downloads the GitHub archive(s) of the source
repository (see the table in ``data/README.md``), extracts them safely into a
temporary folder next to the destination, arranges the files into
``<root>/<name>/`` and renames that into place, so an interrupted fetch never
leaves a half-filled dataset folder. Needs internet; nothing else in itemrec
downloads anything.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from itemrec import settings


def _copytree(src: Path, dst: Path) -> None:
    if not src.is_dir():
        raise FileNotFoundError(f"archive lacks the folder {src.name!r} expected at {src}")
    shutil.copytree(src, dst, dirs_exist_ok=True)


def _arrange_grocery(srcs: list[Path], dest: Path) -> None:
    _copytree(srcs[0] / "dataset", dest / "dataset")
    for extra in ("LICENSE", "README.md"):
        if (srcs[0] / extra).is_file():
            shutil.copy2(srcs[0] / extra, dest / extra)


def _arrange_fashion(srcs: list[Path], dest: Path) -> None:
    _copytree(srcs[0] / "images", dest / "images")
    styles = next(iter(sorted(srcs[1].rglob("styles.csv"))), None)
    if styles is None:
        raise FileNotFoundError(f"archive {srcs[1].name} has no styles.csv")
    shutil.copy2(styles, dest / "styles.csv")


def _arrange_packed(srcs: list[Path], dest: Path) -> None:
    _copytree(srcs[0] / "data", dest)


def _arrange_mnist(srcs: list[Path], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    found = 0
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        hit = next(iter(sorted(srcs[0].rglob(f"{stem}.gz"))), None)
        if hit is not None:
            shutil.copy2(hit, dest / hit.name)
            found += stem.startswith("t10k")
    if found < 2:
        raise FileNotFoundError("archive lacks t10k-images-idx3-ubyte.gz / t10k-labels-idx1-ubyte.gz")


def _arrange_faces(srcs: list[Path], dest: Path) -> None:
    faces = srcs[0] / "Resources" / "Faces"
    if not faces.is_dir():
        raise FileNotFoundError(f"archive lacks Resources/Faces at {faces}")
    for split in ("train", "val"):
        for person in sorted(p for p in (faces / split).glob("*") if p.is_dir()):
            (dest / person.name).mkdir(parents=True, exist_ok=True)
            for f in sorted(person.iterdir()):
                if f.is_file():
                    shutil.copy2(f, dest / person.name / f"{split}_{f.name}")


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from: GitHub repositories (archived at HEAD) and how to lay them out.

    Attributes:
        repos: ``owner/name`` of each repository, downloaded in this order.
        arrange: ``(extracted top folders, destination)`` -> None: copies what the loaders
            need into the destination; raises ``FileNotFoundError`` when an archive lacks it.
        licence: the licence the source states (``"not stated"`` when none).
    """

    repos: tuple[str, ...]
    arrange: Callable[[list[Path], Path], None]
    licence: str

    @property
    def urls(self) -> list[str]:
        """The ``https://github.com/<repo>/archive/HEAD.zip`` URL of each repository."""
        return [f"https://github.com/{r}/archive/HEAD.zip" for r in self.repos]


SOURCES: dict[str, Source] = {
    "grocery-store": Source(("marcusklasson/GroceryStoreDataset",), _arrange_grocery, "MIT"),
    "fashion-products": Source(
        ("GaneshNeupane01/Fashion-Recommendation-System", "animmala3942/FashionProductRecommendationSystem"),
        _arrange_fashion, "not stated",
    ),
    "packed-scenes": Source(("BCuan/embedding-clustering",), _arrange_packed, "not stated"),
    "mnist": Source(("kelas/mnist",), _arrange_mnist, "CC BY-SA 3.0"),
    "celebrity-faces": Source(("jasmcaus/opencv-course",), _arrange_faces, "MIT"),
}


def _download(url: str, target: Path) -> None:
    """Stream ``url`` to ``target`` with a progress bar."""
    import urllib.request

    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=60) as resp, open(target, "wb") as out:  # noqa: S310 - https only
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 3)[-3]) as bar:
            for block in iter(lambda: resp.read(1 << 20), b""):
                out.write(block)
                bar.update(len(block))


def _safe_extract(archive: Path, into: Path) -> Path:
    """Extract a zip refusing absolute or ``..`` members; return its single top folder (or ``into``)."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{archive} is not a zip archive ({exc})") from exc
    into.mkdir(parents=True, exist_ok=True)
    with zf:
        for member in zf.namelist():
            parts = Path(member).parts
            if member.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise ValueError(f"{archive}: refusing unsafe member path {member!r}")
        zf.extractall(into)
    tops = [p for p in into.iterdir() if not p.name.startswith("__MACOSX")]
    return tops[0] if len(tops) == 1 and tops[0].is_dir() else into


def fetch(name: str, root: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Download dataset ``name`` into ``<root>/<name>`` (root: ``$ITEMREC_DATA``); return that folder.

    The archives are streamed to a temporary folder next to the destination, extracted
    refusing absolute and ``..`` member paths, arranged, and renamed into place, so an
    interrupted fetch leaves no half-filled dataset folder. Needs internet.

    Args:
        name: a key of :data:`SOURCES` (``grocery-store``, ``fashion-products``,
            ``packed-scenes``, ``mnist``, ``celebrity-faces``).
        root: the dataset root (default: :func:`itemrec.settings.data_root`).
        force: download again even when the folder exists and is not empty (it is replaced).

    Returns:
        The dataset folder.

    Raises:
        ValueError: unknown ``name``, a download that is not a zip archive, or an unsafe
            member path in it.
        FileNotFoundError: an archive lacks the files the loaders need.
        urllib.error.URLError: the download failed (no internet, HTTP error).
    """
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; fetchable: {', '.join(sorted(SOURCES))}")
    source = SOURCES[name]
    dest = settings.dataset_dir(name, root, must_exist=False)
    if dest.is_dir() and any(dest.iterdir()) and not force:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".fetch-{name}-", dir=dest.parent) as tmp:
        tmp = Path(tmp)
        tops = []
        for k, url in enumerate(source.urls):
            archive = tmp / f"archive{k}.zip"
            _download(url, archive)
            tops.append(_safe_extract(archive, tmp / f"x{k}"))
            archive.unlink()
        staged = tmp / "staged"
        staged.mkdir()
        source.arrange(tops, staged)
        if dest.exists():
            shutil.rmtree(dest)
        staged.rename(dest)
    return dest
