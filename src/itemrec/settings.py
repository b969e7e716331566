"""Where itemrec finds datasets and pretrained weights.

One setting each, an environment variable that an explicit argument overrides:

* ``ITEMREC_DATA``: the dataset root, holding one folder per named dataset
  (``grocery-store/``, ``fashion-products/``, ``packed-scenes/``, ``mnist/``,
  ``celebrity-faces/``). Defaults to ``./data``.
* ``ITEMREC_WEIGHTS``: a folder of local weight files (for instance
  ``mobilenet_v2_1.0_224_imagenet_no_top.h5``). Defaults to ``./weights`` and,
  if absent, to ``<ITEMREC_DATA>/../weights``.
"""

from __future__ import annotations

import os
from pathlib import Path

DATASETS = ("grocery-store", "fashion-products", "packed-scenes", "mnist", "celebrity-faces")
MOBILENET_V2_WEIGHTS = "mobilenet_v2_1.0_224_imagenet_no_top.h5"


class DataNotFoundError(FileNotFoundError):
    """A named dataset or weights file is not where the settings say."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The dataset root: ``root`` if given, else ``$ITEMREC_DATA``, else ``./data``.

    Args:
        root: an explicit root (``~`` expanded), overriding the environment.

    Returns:
        The root's path (relative paths stay relative to the working directory); it need
        not exist.
    """
    if root is not None:
        return Path(root).expanduser()
    return Path(os.environ.get("ITEMREC_DATA", "data")).expanduser()


def dataset_dir(name: str, root: str | os.PathLike | None = None, must_exist: bool = True) -> Path:
    """Folder of the named dataset under the dataset root.

    Args:
        name: the dataset's folder name, e.g. one of :data:`DATASETS`.
        root: the dataset root (default: :func:`data_root`).
        must_exist: raise when the folder is missing (default True).

    Returns:
        ``<root>/<name>``.

    Raises:
        DataNotFoundError: the folder is missing and ``must_exist`` is set; the message names
            the fix (``ITEMREC_DATA``, ``--data-root`` or ``itemrec data fetch NAME``).
    """
    path = data_root(root) / name
    if must_exist and not path.is_dir():
        raise DataNotFoundError(
            f"dataset {name!r} not found at {path}. Set ITEMREC_DATA to the folder that holds "
            f"it, pass --data-root, or download it with `itemrec data fetch {name}`."
        )
    return path


def weights_dir(root: str | os.PathLike | None = None) -> Path:
    """Folder of local weight files.

    Lookup order: ``root``, then ``$ITEMREC_WEIGHTS``, then ``./weights`` if it is a folder,
    then ``<dataset root>/../weights``.

    Args:
        root: an explicit folder (``~`` expanded), overriding everything else.

    Returns:
        The folder's path; it need not exist.
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("ITEMREC_WEIGHTS")
    if env:
        return Path(env).expanduser()
    local = Path("weights")
    if local.is_dir():
        return local
    return data_root().parent / "weights"


def local_weights(filename: str = MOBILENET_V2_WEIGHTS, root: str | os.PathLike | None = None) -> Path:
    """Path of a local weights file under :func:`weights_dir`.

    Args:
        filename: the file's name (default the MobileNetV2 no-top ImageNet weights,
            :data:`MOBILENET_V2_WEIGHTS`).
        root: the weights folder (default: :func:`weights_dir`'s lookup).

    Returns:
        The file's path, which exists.

    Raises:
        DataNotFoundError: the file is absent; the message names ``ITEMREC_WEIGHTS`` and the
            ``weights='imagenet'`` alternative.
    """
    path = weights_dir(root) / filename
    if not path.is_file():
        raise DataNotFoundError(
            f"weights file {filename!r} not found at {path}. Set ITEMREC_WEIGHTS to the folder "
            f"that holds it, or use weights='imagenet' to download from Keras (needs internet)."
        )
    return path
