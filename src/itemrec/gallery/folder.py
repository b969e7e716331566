"""A gallery folder on disk: ``gallery.sqlite`` (the store) and ``index.faiss`` (the index cache).

:func:`create_store` checks a new gallery's settings and writes its store; :func:`open_store`
opens the store of an existing one. :class:`~itemrec.gallery.Gallery` builds on both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from itemrec.gallery.enrolment import PROTOTYPES
from itemrec.gallery.errors import GalleryError, GalleryMismatchError
from itemrec.gallery.index import INDEX_KINDS, FaissIndex
from itemrec.gallery.inputs import fingerprint_of
from itemrec.gallery.store import MetadataStore

DB_NAME = "gallery.sqlite"


def create_store(path: str | os.PathLike, embedder: Any, dim: int | None = None, index: str = "flat",
                 prototype: str = "each", index_params: Mapping[str, Any] | None = None,
                 threshold: float | None = None, synchronous: str = "FULL") -> MetadataStore:
    """Check a new gallery's settings, then create its folder and store (nothing is written if a check fails).

    Args:
        path: the folder (created; must not hold a gallery).
        embedder: an :class:`~itemrec.embedder.ImageEmbedder`, its fingerprint dict, or a fingerprint id.
        dim: the embedding dimension (default: the embedder's; required with an id string).
        index: ``"flat"``, ``"ivf"`` or ``"hnsw"``.
        prototype: ``"each"`` or ``"mean"``.
        index_params: parameters of the index kind.
        threshold: the unknown-rejection threshold, or None.
        synchronous: SQLite's durability setting.

    Returns:
        The new store, at generation 0.

    Raises:
        GalleryError: unknown index kind or prototype mode, no dimension, or a gallery already there.
        GalleryMismatchError: ``dim`` differs from the embedder's.
        ValueError: bad ``index_params`` or ``synchronous``.
        TypeError: ``embedder`` is not an embedder, dict or id.
    """
    if index not in INDEX_KINDS:
        raise GalleryError(f"unknown index type {index!r}; choose one of {INDEX_KINDS}")
    if prototype not in PROTOTYPES:
        raise GalleryError(f"unknown prototype mode {prototype!r}; choose one of {PROTOTYPES}")
    fp_id, fp, fp_dim = fingerprint_of(embedder)
    dim = int(dim if dim is not None else (fp_dim or 0))
    if dim <= 0:
        raise GalleryError("give dim= (the embedding dimension) for a gallery created from a fingerprint id")
    if fp_dim is not None and int(fp_dim) != dim:
        raise GalleryMismatchError(f"dim={dim} but the embedding model produces {fp_dim}-d vectors")
    path = Path(path)
    if (path / DB_NAME).exists():
        raise GalleryError(f"{path} already holds a gallery; open it with Gallery.open")
    path.mkdir(parents=True, exist_ok=True)
    FaissIndex(dim, index, **dict(index_params or {}))  # validate the parameters before writing anything
    store = MetadataStore(path / DB_NAME, synchronous=synchronous)
    store.create_schema({"fingerprint_id": fp_id, "fingerprint": fp, "dim": dim, "index_type": index,
                         "index_params": dict(index_params or {}), "prototype": prototype, "threshold": threshold})
    return store


def open_store(path: str | os.PathLike, readonly: bool = False, synchronous: str = "FULL") -> MetadataStore:
    """The store of an existing gallery folder.

    Args:
        path: the gallery folder.
        readonly: open the database read-only.
        synchronous: SQLite's durability setting.

    Returns:
        The store.

    Raises:
        FileNotFoundError: no ``gallery.sqlite`` in ``path``.
        GalleryError: the database is not a gallery.
    """
    path = Path(path)
    if not (path / DB_NAME).is_file():
        raise FileNotFoundError(f"no gallery at {path} (missing {DB_NAME}); create one with `itemrec gallery create`")
    store = MetadataStore(path / DB_NAME, readonly=readonly, synchronous=synchronous)
    if "dim" not in store.meta():
        store.close()
        raise GalleryError(f"{path / DB_NAME} is not an itemrec gallery (no meta rows)")
    return store
