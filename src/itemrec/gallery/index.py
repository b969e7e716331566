"""Vector search indexes behind the gallery (TF-Similarity style ``SearchIndex``).

Vectors are L2-normalised before they get here, so the inner product is the
cosine similarity ``cos(q, x) = q·x / (‖q‖ ‖x‖) = q·x``.

:class:`FaissIndex` is the embedded default (Johnson, Douze & Jégou, "Billion-scale
similarity search with GPUs", 2017):

* ``"flat"``: ``IndexFlatIP``, exact search, O(N·D) per query;
* ``"ivf"``: ``IndexIVFFlat`` (inverted lists over a k-means coarse quantiser,
  Jégou et al. 2011), ``nlist`` cells, ``nprobe`` visited per query. It needs
  training: until the index holds ``min_train`` vectors it stays exact (flat),
  then it trains on everything it holds (``nlist = 4·√N`` unless given);
* ``"hnsw"``: ``IndexHNSWFlat`` (Malkov & Yashunin, "Efficient and
  robust approximate nearest neighbor search using Hierarchical Navigable Small
  World graphs", 2018). HNSW cannot delete, so removed ids become *tombstones*
  (positions) excluded from the search by an ``IDSelectorNot``, and the graph is rebuilt from the live vectors
  once tombstones pass ``tombstone_ratio`` of the index.

The on-disk form is one file: a header (magic, JSON with the generation and
parameters, the tombstone ids) followed by the FAISS serialisation; callers
write it to a temporary file and ``os.replace`` it (see :func:`itemrec.gallery.index_file.save_index_file`).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

INDEX_KINDS = ("flat", "ivf", "hnsw")
_MAGIC = b"ITEMREC-INDEX-1\n"


class FaissIndex:
    """A FAISS index with external int64 ids; see the module docstring for the kinds.

    Args:
        dim: the vector dimension.
        kind: ``"flat"``, ``"ivf"`` or ``"hnsw"``.
        nlist, nprobe, min_train: IVF cells (default ``4·√N``), cells visited per query, and the
            vectors held before it trains (exact until then).
        hnsw_m, ef_construction, ef_search: HNSW links per node and candidate list sizes.
        tombstone_ratio: HNSW rebuilds once removed vectors pass this fraction.

    Raises:
        ValueError: an unknown ``kind`` or a dimension below 1.
    """

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        *,
        nlist: int | None = None,
        nprobe: int = 16,
        min_train: int = 10_000,
        hnsw_m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
        tombstone_ratio: float = 0.1,
    ) -> None:
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {kind!r}; choose one of {INDEX_KINDS}")
        if int(dim) <= 0:
            raise ValueError(f"index dimension must be positive, got {dim}")
        self.dim = int(dim)
        self.kind = kind
        self.params = {
            "nlist": nlist,
            "nprobe": int(nprobe),
            "min_train": int(min_train),
            "hnsw_m": int(hnsw_m),
            "ef_construction": int(ef_construction),
            "ef_search": int(ef_search),
            "tombstone_ratio": float(tombstone_ratio),
        }
        self._tombstones: set[int] = set()  # HNSW: positions removed but still in the graph
        self._selector: tuple[Any, Any] | None = None
        self._pos_ids = np.zeros(0, np.int64)  # flat/HNSW: position in the FAISS index -> external id
        self._index = self._new_index(trained_ivf=False)

    # -- construction -----------------------------------------------------------
    def _new_index(self, trained_ivf: bool, train: np.ndarray | None = None) -> Any:
        """Flat and HNSW indexes are used bare (their labels are positions, mapped to ids here):
        an ``IndexIDMap`` wrapper would open an OpenMP region per search to translate labels,
        which costs tens of ms at p99 on a busy machine. IVF stores the ids itself."""
        import faiss

        p = self.params
        if self.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, p["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = p["ef_construction"]
            inner.hnsw.efSearch = p["ef_search"]
            return inner
        if self.kind == "ivf" and trained_ivf:
            assert train is not None
            nlist = p["nlist"] or max(1, int(4 * np.sqrt(len(train))))
            nlist = min(nlist, len(train))
            quantizer = faiss.IndexFlatIP(self.dim)
            ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            ivf.train(train)
            ivf.nprobe = min(p["nprobe"], nlist)
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
            return ivf
        return faiss.IndexFlatIP(self.dim)

    @property
    def is_exact(self) -> bool:
        """True while searches are exhaustive (flat, or IVF not yet trained)."""
        return self.kind == "flat" or (self.kind == "ivf" and not self._is_ivf())

    def _is_ivf(self) -> bool:
        import faiss

        return isinstance(self._index, faiss.IndexIVF)

    # -- SearchIndex ------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        """Vectors searchable (HNSW tombstones excluded)."""
        return int(self._index.ntotal) - len(self._tombstones)

    @property
    def faiss_index(self) -> Any:
        """The wrapped FAISS index (its labels are positions for flat/HNSW, ids for IVF); for benchmarks
        and inspection: writing through it bypasses the id mapping and the gallery's SQLite log."""
        return self._index

    def _check(self, ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"index expects vectors of shape (N, {self.dim}), got {vectors.shape}")
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        return ids, vectors

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under the given ids; an IVF index trains once it holds ``min_train`` vectors.

        Args:
            ids: (N,) int64 ids, none of them present already.
            vectors: (N, D) float32 unit rows.

        Raises:
            ValueError: wrong shapes, or as many ids as vectors not given.
        """
        ids, vectors = self._check(ids, vectors)
        if not len(ids):
            return
        if self._is_ivf():
            self._index.add_with_ids(vectors, ids)
            return
        self._index.add(vectors)
        self._pos_ids = np.concatenate([self._pos_ids, ids])
        if self.kind == "ivf" and self._index.ntotal >= self.params["min_train"]:
            self._retrain()

    def _retrain(self) -> None:
        all_ids, all_vecs = self.live_vectors()
        self._index = self._new_index(trained_ivf=True, train=all_vecs)
        self._tombstones.clear()
        self._selector = None
        self._pos_ids = np.zeros(0, np.int64)
        if len(all_ids):
            self._index.add_with_ids(all_vecs, all_ids)

    def live_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Everything searchable, reconstructed from the index.

        Returns:
            ``(ids (n,) int64, vectors (n, D) float32)``.
        """
        if self._is_ivf():
            ids = self.ids()
            vecs = np.vstack([self._index.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros((0, self.dim))
            return ids, np.asarray(vecs, np.float32)
        n = int(self._index.ntotal)
        vecs = self._index.reconstruct_n(0, n) if n else np.zeros((0, self.dim), np.float32)
        live = np.ones(n, bool)
        live[list(self._tombstones)] = False
        return self._pos_ids[live].copy(), np.asarray(vecs[live], np.float32)

    def remove(self, ids: np.ndarray) -> int:
        """Remove the given ids (absent ids are ignored); HNSW marks tombstones and rebuilds past ``tombstone_ratio``.

        Args:
            ids: int64 ids.

        Returns:
            How many were removed.
        """
        import faiss

        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return 0
        if self._is_ivf():  # the IVF hashtable direct map only removes through an IDSelectorArray
            return int(self._index.remove_ids(faiss.IDSelectorArray(ids)))
        hit = np.isin(self._pos_ids, ids)
        if self.kind == "hnsw":
            positions = set(np.flatnonzero(hit).tolist()) - self._tombstones
            self._tombstones |= positions
            self._selector = None
            if len(self._tombstones) > self.params["tombstone_ratio"] * max(1, int(self._index.ntotal)):
                live_ids, live_vecs = self.live_vectors()
                self._tombstones.clear()
                self._index = self._new_index(trained_ivf=False)
                self._index.add(live_vecs)
                self._pos_ids = live_ids
            return len(positions)
        positions = np.flatnonzero(hit).astype(np.int64)
        if len(positions):  # IndexFlat compacts in order, as does the mask below
            self._index.remove_ids(faiss.IDSelectorBatch(positions))
            self._pos_ids = self._pos_ids[~hit]
        return len(positions)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` vectors per query row by inner product (the cosine for unit rows), best first.

        Args:
            vectors: (n, D) float32 queries.
            k: results per query.

        Returns:
            ``(scores (n, k) float32, ids (n, k) int64)``; ``-inf`` and ``-1`` where fewer than ``k`` exist.

        Raises:
            ValueError: wrong query shape, or ``k < 1``.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"index expects queries of shape (N, {self.dim}), got {vectors.shape}")
        k = int(k)
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        kk = min(k, max(1, self.ntotal))
        if self._tombstones:
            import faiss

            if self._selector is None:  # cached until the tombstones change; holds its parts alive
                batch = faiss.IDSelectorBatch(np.fromiter(self._tombstones, np.int64, len(self._tombstones)))
                self._selector = (batch, faiss.IDSelectorNot(batch))
            params = faiss.SearchParametersHNSW()
            params.sel = self._selector[1]
            params.efSearch = self.params["ef_search"]
            # faiss.contrib.torch_utils (imported by pytorch-metric-learning, for one) replaces
            # Index.search with a version that drops ``params``; its NumPy original stays as search_numpy
            search = getattr(self._index, "search_numpy", self._index.search)
            scores, labels = search(vectors, kk, params=params)
        else:
            scores, labels = self._index.search(vectors, kk)
        if self._is_ivf():
            ids = labels
        elif len(self._pos_ids) and labels.min() >= 0:  # the common case: k hits per row
            ids = self._pos_ids[labels]
        else:
            ids = np.where(labels >= 0, self._pos_ids[np.maximum(labels, 0)] if len(self._pos_ids) else -1, -1)
        if ids.min() < 0:
            scores = np.where(ids < 0, -np.inf, scores)
        scores = scores.astype(np.float32, copy=False)
        if kk < k:
            pad = k - kk
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        return scores, ids

    def ids(self) -> np.ndarray:
        """Every searchable id.

        Returns:
            (n,) int64, sorted.
        """
        import faiss

        if self._is_ivf():
            invlists = self._index.invlists
            parts = []
            for lst in range(self._index.nlist):
                size = invlists.list_size(lst)
                if size:
                    parts.append(faiss.rev_swig_ptr(invlists.get_ids(lst), size).copy())
            return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        live = np.ones(len(self._pos_ids), bool)
        live[list(self._tombstones)] = False
        return np.sort(self._pos_ids[live])

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Trade speed for recall at query time.

        Args:
            nprobe: IVF cells visited per query (None: unchanged).
            ef_search: HNSW candidate list size (None: unchanged).
        """
        if nprobe is not None:
            self.params["nprobe"] = int(nprobe)
            if self._is_ivf():
                self._index.nprobe = min(int(nprobe), self._index.nlist)
        if ef_search is not None:
            self.params["ef_search"] = int(ef_search)
            if self.kind == "hnsw":
                self._index.hnsw.efSearch = int(ef_search)

    # -- persistence -----------------------------------------------------------
    def header(self) -> dict[str, Any]:
        """What the index file's header records about the index.

        Returns:
            ``{"kind", "dim", "params", "ntotal"}``.
        """
        return {"kind": self.kind, "dim": self.dim, "params": self.params, "ntotal": self.ntotal}

    def write(self, fh: Any, extra: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> None:
        """Write header, tombstones, named int64 ``arrays`` and the FAISS serialisation into a binary file.

        Args:
            fh: a file open for binary writing.
            extra: more header keys (JSON-serialisable), such as the gallery generation.
            arrays: named int64 arrays stored after the header.
        """
        import faiss

        arrays = {
            "tombstones": np.fromiter(sorted(self._tombstones), np.int64, len(self._tombstones)),
            "positions": self._pos_ids,
            **(arrays or {}),
        }
        arrays = {name: np.ascontiguousarray(a, dtype=np.int64) for name, a in arrays.items()}
        head = json.dumps({**self.header(), **extra, "arrays": {n: len(a) for n, a in arrays.items()}}).encode()
        fh.write(_MAGIC + struct.pack("<Q", len(head)) + head)
        for a in arrays.values():
            fh.write(a.tobytes())
        faiss.write_index(self._index, faiss.PyCallbackIOWriter(fh.write))

    @classmethod
    def read(cls, path: str | os.PathLike) -> tuple["FaissIndex", dict[str, Any], dict[str, np.ndarray]]:
        """Read a file written by :meth:`write`.

        Args:
            path: the index file.

        Returns:
            ``(index, header dict, {name: int64 array})`` (the extra arrays given to :meth:`write`).

        Raises:
            ValueError: not an index file, truncated, or ids and vectors disagree.
            OSError: the file cannot be read (FAISS raises ``RuntimeError`` for a damaged body).
        """
        import faiss

        path = Path(path)
        with open(path, "rb") as fh:
            magic = fh.read(len(_MAGIC))
            if magic != _MAGIC:
                raise ValueError(f"{path} is not an itemrec index file")
            (n_head,) = struct.unpack("<Q", fh.read(8))
            head = json.loads(fh.read(n_head))
            arrays = {}
            for name, n in head["arrays"].items():
                buf = fh.read(8 * n)
                if len(buf) != 8 * n:
                    raise ValueError(f"{path} is truncated (array {name!r})")
                arrays[name] = np.frombuffer(buf, np.int64).copy()
            raw = faiss.read_index(faiss.PyCallbackIOReader(fh.read))
        self = cls(head["dim"], head["kind"], **head["params"])
        self._index = raw
        self._tombstones = set(arrays.pop("tombstones").tolist())
        self._pos_ids = arrays.pop("positions")
        if not self._is_ivf() and len(self._pos_ids) != raw.ntotal:
            raise ValueError(f"{path}: {len(self._pos_ids)} ids for {raw.ntotal} vectors")
        return self, head, arrays
