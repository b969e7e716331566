"""Loaders for the real datasets and for any folder-per-class tree.

Every loader returns an :class:`~itemrec.data.records.ImageDataset` with
absolute paths (MNIST returns arrays, the shelf photo a path and its boxes).
``root=None`` means ``itemrec.settings.dataset_dir(NAME)``, i.e. the folder
``$ITEMREC_DATA/NAME``; a missing folder raises
:class:`~itemrec.settings.DataNotFoundError` that names the fix.

Datasets (see ``/work/shared/datasets/README.md`` for sources):

* ``grocery-store``: Klasson et al., "A Hierarchical Grocery Store Image
  Dataset with Visual and Semantic Labels", WACV 2019 — 81 fine / 43 coarse
  classes, an iconic catalogue image per class.
* ``fashion-products``: Kaggle fashion-product-images-small ids with
  ``styles.csv`` labels.
* ``packed-scenes``: shelf-product crops, folder per class (with known
  duplicated and mixed classes: see :mod:`itemrec.data.audit`), and a shelf
  photo with product boxes.
* ``mnist``: the MNIST test set in idx format.
* ``celebrity-faces``: five people, a folder each.
"""

from __future__ import annotations

import gzip
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from itemrec import settings
from itemrec.data.images import IMAGE_SUFFIXES
from itemrec.data.records import ImageDataset


def _root(name: str, root: str | os.PathLike | None) -> Path:
    if root is None:
        return settings.dataset_dir(name).resolve()
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise settings.DataNotFoundError(f"dataset {name!r}: folder {path} does not exist")
    return path


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def load_folder(
    root: str | os.PathLike,
    representatives: str | os.PathLike | dict[str, str] | None = None,
    name: str | None = None,
) -> ImageDataset:
    """A folder-per-class tree ``root/<class>/<image>`` (non-recursive within a class folder).

    Class names are the sub-folder names, sorted; label = position. Images are the files
    with an :data:`itemrec.data.images.IMAGE_SUFFIXES` suffix (JPEG, PNG, GIF, BMP, TIFF,
    WebP; any case; hidden files skipped). Empty class folders are kept (a class name with
    zero rows).

    Args:
        root: the tree's root (``~`` expanded, resolved to an absolute path).
        representatives: a dict ``class name -> image path``, or a folder holding
            ``<class name>.<ext>`` images (a catalogue); classes without one have none.
        name: the dataset's name (default: the root folder's name).

    Returns:
        The :class:`ImageDataset`, absolute paths.

    Raises:
        FileNotFoundError: ``root``, the representatives folder or a representative image
            does not exist.
        ValueError: no class sub-folders, or representatives for classes that are not there.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{root}: no class sub-folders (expected root/<class>/<image>)")
    rows = []
    for label, cls in enumerate(classes):
        for f in _image_files(root / cls):
            rows.append((str(f), label, cls))
    frame = pd.DataFrame(rows, columns=["path", "label", "class_name"])
    reps: dict[int, str] = {}
    if representatives is not None:
        if isinstance(representatives, dict):
            mapping = {str(k): str(Path(v).expanduser().resolve()) for k, v in representatives.items()}
        else:
            rep_dir = Path(representatives).expanduser().resolve()
            if not rep_dir.is_dir():
                raise FileNotFoundError(f"representatives folder {rep_dir} does not exist")
            mapping = {p.stem: str(p) for p in _image_files(rep_dir)}
        unknown = sorted(set(mapping) - set(classes))
        if unknown:
            raise ValueError(f"representatives for classes not in {root}: {unknown[:10]}")
        for k, v in mapping.items():
            if not Path(v).is_file():
                raise FileNotFoundError(f"representative image of class {k!r} not found: {v}")
        reps = {classes.index(k): v for k, v in mapping.items()}
    return ImageDataset(frame, classes, reps, name=name or root.name)


# -- Grocery Store ------------------------------------------------------------


def load_grocery(root: str | os.PathLike | None = None) -> ImageDataset:
    """The Grocery Store Dataset (Klasson et al., WACV 2019), all three splits (``split`` column: train/val/test).

    Labels and coarse labels come from the split files
    (``train/Fruit/Apple/Golden-Delicious/x.jpg, 0, 0``), class names, coarse
    names and the iconic images (the representatives) from ``classes.csv``.

    Args:
        root: the repository folder (holding ``dataset/``) or ``dataset/`` itself
            (default: ``$ITEMREC_DATA/grocery-store``).

    Returns:
        The :class:`ImageDataset` named ``grocery-store`` (81 classes, 43 coarse classes).

    Raises:
        DataNotFoundError: the folder, ``classes.csv`` or a split file is missing.
        ValueError: ``classes.csv`` lacks a column or has gaps in its class/coarse ids; a
            split-file line is malformed, has a class id out of range or a coarse id that
            disagrees with ``classes.csv``.
    """
    base = _root("grocery-store", root)
    if (base / "dataset" / "classes.csv").is_file():
        base = base / "dataset"
    classes_csv = base / "classes.csv"
    if not classes_csv.is_file():
        raise settings.DataNotFoundError(f"grocery-store: {classes_csv} not found")
    meta = pd.read_csv(classes_csv)
    meta.columns = [c.split(" (")[0].strip() for c in meta.columns]
    need = {"Class Name", "Class ID", "Coarse Class Name", "Coarse Class ID", "Iconic Image Path"}
    if not need <= set(meta.columns):
        raise ValueError(f"{classes_csv}: expected columns {sorted(need)}, got {list(meta.columns)}")
    meta = meta.sort_values("Class ID")
    ids = meta["Class ID"].to_numpy()
    if not np.array_equal(ids, np.arange(len(meta))):
        raise ValueError(f"{classes_csv}: class ids must be 0..{len(meta) - 1} without gaps")
    class_names = meta["Class Name"].astype(str).tolist()
    coarse = meta.drop_duplicates("Coarse Class ID").sort_values("Coarse Class ID")
    coarse_names = coarse["Coarse Class Name"].astype(str).tolist()
    if not np.array_equal(coarse["Coarse Class ID"].to_numpy(), np.arange(len(coarse))):
        raise ValueError(f"{classes_csv}: coarse class ids must be 0..{len(coarse) - 1} without gaps")
    reps = {int(r["Class ID"]): str(base / str(r["Iconic Image Path"]).lstrip("/")) for _, r in meta.iterrows()}
    coarse_of = dict(zip(meta["Class ID"], meta["Coarse Class ID"]))
    rows = []
    for split in ("train", "val", "test"):
        listing = base / f"{split}.txt"
        if not listing.is_file():
            raise settings.DataNotFoundError(f"grocery-store: split file {listing} not found")
        for n, line in enumerate(listing.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 3:
                raise ValueError(f"{listing}:{n}: expected 'path, class id, coarse id', got {line!r}")
            rel, fine, coarse_id = parts[0], int(parts[1]), int(parts[2])
            if not 0 <= fine < len(class_names):
                raise ValueError(f"{listing}:{n}: class id {fine} out of range 0..{len(class_names) - 1}")
            if coarse_of[fine] != coarse_id:
                raise ValueError(f"{listing}:{n}: coarse id {coarse_id} disagrees with classes.csv ({coarse_of[fine]})")
            rows.append((str(base / rel.lstrip("/")), fine, class_names[fine], coarse_id, split))
    frame = pd.DataFrame(rows, columns=["path", "label", "class_name", "coarse_label", "split"])
    return ImageDataset(frame, class_names, reps, coarse_names, name="grocery-store")


# -- Fashion products -----------------------------------------------------------


def load_fashion(
    root: str | os.PathLike | None = None, label_column: str = "articleType", min_count: int = 10
) -> ImageDataset:
    """Fashion product photos labelled by a ``styles.csv`` column (default ``articleType``).

    Rows whose image ``images/<id>.jpg`` is missing are dropped, with a
    warning giving the count; rows with an empty label and classes with fewer than
    ``min_count`` images are dropped too. Both counts are in ``ds.frame.attrs``
    (``n_missing_images``, ``n_rare_dropped``, and ``label_column``). The other
    ``styles.csv`` columns are kept. Class names are sorted; label = position.

    Args:
        root: the dataset folder (default: ``$ITEMREC_DATA/fashion-products``).
        label_column: the ``styles.csv`` column giving the class.
        min_count: the fewest images a class needs to stay.

    Returns:
        The :class:`ImageDataset` named ``fashion-products``.

    Raises:
        DataNotFoundError: the folder or ``styles.csv`` is missing.
        ValueError: ``styles.csv`` lacks ``id`` or ``label_column``.
    """
    base = _root("fashion-products", root)
    styles = base / "styles.csv"
    if not styles.is_file():
        raise settings.DataNotFoundError(f"fashion-products: {styles} not found")
    table = pd.read_csv(styles, dtype=str, keep_default_na=False, on_bad_lines="warn")
    if "id" not in table.columns or label_column not in table.columns:
        raise ValueError(f"{styles}: needs columns 'id' and {label_column!r}; has {list(table.columns)}")
    table["path"] = [str(base / "images" / f"{i}.jpg") for i in table["id"]]
    exists = np.array([os.path.isfile(p) for p in table["path"]], dtype=bool)
    n_missing = int((~exists).sum())
    if n_missing:
        warnings.warn(f"fashion-products: dropped {n_missing} rows of styles.csv whose image is missing", stacklevel=2)
    table = table[exists & (table[label_column] != "")]
    counts = table[label_column].value_counts()
    keep = counts[counts >= min_count].index
    n_rare = int(len(table) - table[label_column].isin(keep).sum())
    table = table[table[label_column].isin(keep)]
    class_names = sorted(keep.astype(str))
    index = {c: i for i, c in enumerate(class_names)}
    table = table.assign(label=table[label_column].map(index), class_name=table[label_column])
    ds = ImageDataset(table.reset_index(drop=True), class_names, name="fashion-products")
    ds.frame.attrs.update(n_missing_images=n_missing, n_rare_dropped=n_rare, label_column=label_column)
    return ds


# -- MNIST ----------------------------------------------------------------------------

_IDX_MAGIC = {2049: 1, 2051: 3}  # labels: 1 dimension; images: 3 dimensions (uint8 data)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an (optionally gzipped, by the ``.gz`` suffix) idx file of unsigned bytes, validating its header.

    Args:
        path: the idx file (magic 2049: 1-D labels; 2051: 3-D images).

    Returns:
        A uint8 array of the header's shape.

    Raises:
        ValueError: the file cannot be read, is too short, has an unknown magic number, or
            its length disagrees with its header.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read idx file ({exc})") from exc
    if len(data) < 8:
        raise ValueError(f"{path}: too short for an idx header ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic not in _IDX_MAGIC:
        raise ValueError(f"{path}: bad idx magic number {magic} (expected 2049 labels or 2051 images)")
    ndim = _IDX_MAGIC[magic]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise ValueError(f"{path}: header says shape {tuple(dims)} ({expected} bytes) but file has {len(data)} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def load_mnist(root: str | os.PathLike | None = None, split: str = "t10k") -> tuple[np.ndarray, np.ndarray]:
    """MNIST digits (LeCun et al. 1998) from the idx files, gzipped or not.

    Args:
        root: the folder of the idx files (default: ``$ITEMREC_DATA/mnist``).
        split: the file prefix, ``"t10k"`` (the 10,000 test digits; default) or ``"train"``.

    Returns:
        ``(images, labels)``: uint8 (N, 28, 28) pixels 0..255 and int64 (N,) digits 0..9.

    Raises:
        DataNotFoundError: the folder or an idx file is missing.
        ValueError: a damaged idx file, images and labels swapped or of different counts,
            or a label above 9.
    """
    base = _root("mnist", root)
    img_path = base / f"{split}-images-idx3-ubyte.gz"
    lab_path = base / f"{split}-labels-idx1-ubyte.gz"
    for p in (img_path, lab_path):
        if not p.is_file() and not p.with_suffix("").is_file():
            raise settings.DataNotFoundError(f"mnist: {p} not found")
    images = read_idx(img_path if img_path.is_file() else img_path.with_suffix(""))
    labels = read_idx(lab_path if lab_path.is_file() else lab_path.with_suffix(""))
    if images.ndim != 3 or labels.ndim != 1:
        raise ValueError(f"mnist: {img_path.name} must hold images and {lab_path.name} labels (swapped?)")
    if len(images) != len(labels):
        raise ValueError(f"mnist: {len(images)} images but {len(labels)} labels")
    if labels.max(initial=0) > 9:
        raise ValueError(f"mnist: labels must be digits 0..9, found {labels.max()}")
    return images, labels.astype(np.int64)


# -- Packed scenes ----------------------------------------------------------------------


def load_packed_scenes(root: str | os.PathLike | None = None) -> ImageDataset:
    """The packed-scenes training crops, folder per class (``train/<class>/*.jpg``).

    Args:
        root: the dataset folder (default: ``$ITEMREC_DATA/packed-scenes``); its ``train/``
            sub-folder is used when it has one.

    Returns:
        The :class:`ImageDataset` named ``packed-scenes``.

    Raises:
        DataNotFoundError: the folder is missing.
        ValueError: no class sub-folders.
    """
    base = _root("packed-scenes", root)
    return load_folder(base / "train" if (base / "train").is_dir() else base, name="packed-scenes")


def load_shelf(root: str | os.PathLike | None = None) -> tuple[Path, pd.DataFrame]:
    """The packed-scenes test shelf: ``(image path, boxes)`` with columns ``id, x1, y1, x2, y2``.

    Boxes come from ``test/shelf.json`` (``{id: {x1, x2, y1, y2}}``, pixels) and are
    checked with :func:`validate_boxes`.

    Args:
        root: the dataset folder (default: ``$ITEMREC_DATA/packed-scenes``).

    Returns:
        ``(path, boxes)``: the absolute path of ``shelf.jpeg`` and a DataFrame of int64 pixel
        boxes, ``x2``/``y2`` exclusive.

    Raises:
        DataNotFoundError: the folder, ``shelf.jpeg`` or ``shelf.json`` is missing.
        ValueError: the JSON is not an object of boxes, a box lacks a coordinate, or
            :func:`validate_boxes` refuses the boxes.
    """
    from PIL import Image

    base = _root("packed-scenes", root)
    test = base / "test" if (base / "test").is_dir() else base
    image = test / "shelf.jpeg"
    boxes_json = test / "shelf.json"
    for p in (image, boxes_json):
        if not p.is_file():
            raise settings.DataNotFoundError(f"packed-scenes: {p} not found")
    raw = json.loads(boxes_json.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{boxes_json}: expected an object {{id: {{x1, x2, y1, y2}}}}")
    rows = []
    for key, box in raw.items():
        if not isinstance(box, dict) or not {"x1", "x2", "y1", "y2"} <= set(box):
            raise ValueError(f"{boxes_json}: box {key!r} must have x1, x2, y1, y2; got {box!r}")
        rows.append((str(key), box["x1"], box["y1"], box["x2"], box["y2"]))
    boxes = pd.DataFrame(rows, columns=["id", "x1", "y1", "x2", "y2"])
    with Image.open(image) as im:
        width, height = im.size
    validate_boxes(boxes, width, height, where=str(boxes_json))
    return image.resolve(), boxes


def validate_boxes(boxes: pd.DataFrame, width: int, height: int, where: str = "boxes") -> pd.DataFrame:
    """Check ``0 <= x1 < x2 <= width`` and ``0 <= y1 < y2 <= height``, integer-valued; cast to int64.

    Args:
        boxes: a DataFrame with ``id, x1, y1, x2, y2`` (pixels); changed in place.
        width: the image width in pixels.
        height: the image height in pixels.
        where: what error messages call the boxes.

    Returns:
        ``boxes``, coordinates cast to int64.

    Raises:
        ValueError: a non-numeric or non-integer coordinate, an empty or inverted box, a box
            outside the image, or duplicate ids (the message names up to 5 boxes).
    """
    for c in ("x1", "y1", "x2", "y2"):
        vals = pd.to_numeric(boxes[c], errors="coerce")
        if vals.isna().any() or (vals != np.round(vals)).any():
            bad = boxes.loc[vals.isna() | (vals != np.round(vals)), "id"].tolist()
            raise ValueError(f"{where}: non-integer {c} in boxes {bad[:5]}")
        boxes[c] = vals.astype(np.int64)
    bad = boxes[(boxes.x1 >= boxes.x2) | (boxes.y1 >= boxes.y2)]
    if len(bad):
        raise ValueError(f"{where}: empty or inverted boxes (need x1 < x2, y1 < y2): {bad['id'].tolist()[:5]}")
    bad = boxes[(boxes.x1 < 0) | (boxes.y1 < 0) | (boxes.x2 > width) | (boxes.y2 > height)]
    if len(bad):
        raise ValueError(f"{where}: boxes outside the {width}x{height} image: {bad['id'].tolist()[:5]}")
    if boxes["id"].duplicated().any():
        raise ValueError(f"{where}: duplicate box ids {boxes.loc[boxes['id'].duplicated(), 'id'].tolist()[:5]}")
    return boxes


# -- Celebrity faces ------------------------------------------------------------------


def load_faces(root: str | os.PathLike | None = None) -> ImageDataset:
    """Celebrity faces, a folder per person; ``split`` is ``train``/``val`` from the file-name prefix.

    Files named ``train_*`` are in ``train``, ``val_*`` in ``val``, others in no split (``""``).

    Args:
        root: the dataset folder (default: ``$ITEMREC_DATA/celebrity-faces``).

    Returns:
        The :class:`ImageDataset` named ``celebrity-faces``.

    Raises:
        DataNotFoundError: the folder is missing.
        ValueError: no person sub-folders.
    """
    base = _root("celebrity-faces", root)
    ds = load_folder(base, name="celebrity-faces")
    names = ds.frame["path"].map(lambda p: Path(p).name)
    ds.frame["split"] = np.where(names.str.startswith("train_"), "train", np.where(names.str.startswith("val_"), "val", ""))
    return ds


# -- by name ------------------------------------------------------------------------------

LOADERS = {
    "grocery-store": load_grocery,
    "fashion-products": load_fashion,
    "packed-scenes": load_packed_scenes,
    "celebrity-faces": load_faces,
}


def load_dataset(name_or_folder: str | os.PathLike, root: str | os.PathLike | None = None) -> ImageDataset:
    """A named dataset or a folder-per-class tree.

    Args:
        name_or_folder: ``grocery-store``, ``fashion-products``, ``packed-scenes``,
            ``celebrity-faces``, or the path of a folder-per-class tree.
        root: the dataset root holding the named dataset's folder (default ``$ITEMREC_DATA``).

    Returns:
        The :class:`ImageDataset`.

    Raises:
        ValueError: ``mnist`` (an array dataset: use :func:`load_mnist`), or neither a known
            name nor an existing folder; from the loaders, malformed files.
        DataNotFoundError: the named dataset's folder is missing.
    """
    key = os.fspath(name_or_folder)
    if key in LOADERS:
        return LOADERS[key](None if root is None else settings.dataset_dir(key, root))
    if key == "mnist":
        raise ValueError("mnist is an array dataset: use itemrec.data.loaders.load_mnist()")
    path = Path(key).expanduser()
    if path.is_dir():
        return load_folder(path)
    raise ValueError(f"{key!r} is neither a dataset name ({', '.join(LOADERS)}) nor an existing folder")
