"""Exact and near-duplicate photos, within one set or across two (leakage between datasets).

* **exact**: the same bytes (SHA-1 of the file);
* **near**: perceptual hashes (``imagehash.phash``: DCT of the 32×32 greyscale image, 64 bits)
  at most ``max_distance`` bits apart (Hamming distance). Consecutive video frames, re-encoded
  or resized copies land within a few bits; photos of different products are usually 20 or more
  bits apart. The default, 6 of 64 bits, is the kind of margin imagehash's own examples use.

Images are decoded with :func:`itemrec.data.images.read_image` (orientation, transparency on
white), so a file is hashed as every other command sees it. Pairs are compared 64 bits at a
time with ``numpy.bitwise_count`` in blocks, so 10,000 × 10,000 hashes take a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from itemrec.data.audit import file_sha1

DEFAULT_MAX_DISTANCE = 6


def _phash(path: str) -> tuple[int | None, str | None]:
    import imagehash
    from PIL import Image

    from itemrec.data.images import BadImageError, read_image

    try:
        bits = imagehash.phash(Image.fromarray(read_image(path))).hash.reshape(-1)
    except BadImageError as exc:
        return None, exc.reason
    return int.from_bytes(np.packbits(bits).tobytes(), "big"), None


def hash_files(paths: Sequence[str], progress: bool = False, workers: int = 4, desc: str = "hashing"
               ) -> tuple[list[str | None], np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """SHA-1 and perceptual hash (``imagehash.phash``, 64 bits) of each file.

    Args:
        paths: N image files.
        progress: show a tqdm bar.
        workers: decoding threads (Pillow releases the GIL while decoding).
        desc: the progress bar's label.

    Returns:
        ``(sha1 hex or None per file, phash (N,) uint64, readable (N,) bool, unreadable [(path, reason)])``;
        an unreadable file's phash is 0 and it takes part in no near pair.
    """
    paths = [str(p) for p in paths]

    def both(p: str) -> tuple[str | None, int | None, str | None]:
        return (file_sha1(p), *_phash(p))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        it = pool.map(both, paths, chunksize=16)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(paths), desc=desc, unit="image")
        got = list(it)
    sha = [g[0] for g in got]
    ok = np.array([g[1] is not None for g in got], bool)
    ph = np.array([g[1] or 0 for g in got], np.uint64)
    bad = [(p, g[2] or "cannot read file") for p, g in zip(paths, got) if g[1] is None]
    return sha, ph, ok, bad


def near_pairs(a: np.ndarray, b: np.ndarray | None = None, max_distance: int = DEFAULT_MAX_DISTANCE,
               a_ok: np.ndarray | None = None, b_ok: np.ndarray | None = None, block: int = 2048
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs of 64-bit hashes at most ``max_distance`` bits apart (Hamming distance).

    Args:
        a: (N,) uint64 hashes.
        b: (M,) uint64 hashes, or ``None`` for pairs within ``a`` (``i < j``).
        max_distance: largest Hamming distance that counts, 0..64.
        a_ok: (N,) bool mask of the hashes of ``a`` to use (unreadable files: False).
        b_ok: (M,) bool mask for ``b`` (default all; within ``a``: ``a_ok``).
        block: rows of ``a`` compared at a time (memory ``block × M`` bytes).

    Returns:
        ``(i (P,), j (P,), distance (P,))`` int64, sorted by ``i`` then ``j``.

    Raises:
        ValueError: ``max_distance`` outside 0..64.
    """
    if not 0 <= max_distance <= 64:
        raise ValueError(f"max_distance must lie in 0..64 bits; got {max_distance}")
    a = np.asarray(a, np.uint64)
    same = b is None
    b = a if same else np.asarray(b, np.uint64)
    a_ok = np.ones(len(a), bool) if a_ok is None else np.asarray(a_ok, bool)
    b_ok = (a_ok if same else np.ones(len(b), bool)) if b_ok is None else np.asarray(b_ok, bool)
    out_i, out_j, out_d = [], [], []
    for start in range(0, len(a), block):
        d = np.bitwise_count(a[start:start + block, None] ^ b[None, :])
        hit = (d <= max_distance) & a_ok[start:start + block, None] & b_ok[None, :]
        if same:
            hit &= np.arange(start, start + len(d))[:, None] < np.arange(len(b))[None, :]
        i, j = np.nonzero(hit)
        out_i.append(i + start)
        out_j.append(j)
        out_d.append(d[i, j])
    cat = (lambda x: np.concatenate(x).astype(np.int64)) if out_i else (lambda x: np.zeros(0, np.int64))
    return cat(out_i), cat(out_j), cat(out_d)


@dataclass
class DuplicateReport:
    """Duplicate pairs found by :func:`find_duplicates`.

    Attributes:
        pairs: columns ``path_a``, ``class_a``, ``path_b``, ``class_b``, ``kind``
            (``"exact"`` or ``"near"``), ``distance`` (bits; 0 for exact).
        n_a: images of set A compared.
        n_b: images of set B compared (0 within one set).
        max_distance: the Hamming distance used, in bits.
        unreadable: ``(path, reason)`` of the files that could not be decoded.
    """

    pairs: pd.DataFrame
    n_a: int
    n_b: int
    max_distance: int
    unreadable: list[tuple[str, str]]

    def images_with_duplicate(self, side: str = "a") -> int:
        """How many distinct images of side ``a`` (or ``b``) are in at least one pair.

        Args:
            side: ``"a"`` or ``"b"``; within one set both columns are side A, whatever is asked.

        Returns:
            The count.
        """
        col = f"path_{side}"
        if self.n_b == 0:  # within one set, both columns are side a
            return int(pd.concat([self.pairs["path_a"], self.pairs["path_b"]]).nunique())
        return int(self.pairs[col].nunique())

    def by_class(self) -> pd.DataFrame:
        """Pairs counted per (class_a, class_b, kind), most first.

        Returns:
            A DataFrame with columns ``class_a``, ``class_b``, ``kind``, ``pairs``.
        """
        if not len(self.pairs):
            return pd.DataFrame(columns=["class_a", "class_b", "kind", "pairs"])
        g = self.pairs.groupby(["class_a", "class_b", "kind"]).size().rename("pairs").reset_index()
        return g.sort_values(["pairs", "class_a", "class_b"], ascending=[False, True, True]).reset_index(drop=True)

    def counts(self) -> dict[str, int]:
        """Exact and near pairs counted.

        Returns:
            ``{"exact_pairs": int, "near_pairs": int}``.
        """
        k = self.pairs["kind"]
        return {"exact_pairs": int((k == "exact").sum()), "near_pairs": int((k == "near").sum())}


def find_duplicates(paths_a: Sequence[str], classes_a: Sequence[str], paths_b: Sequence[str] | None = None,
                    classes_b: Sequence[str] | None = None, max_distance: int = DEFAULT_MAX_DISTANCE,
                    progress: bool = False, hashes: tuple | None = None) -> DuplicateReport:
    """Exact and near duplicates within set A (``paths_b`` None) or between sets A and B.

    Args:
        paths_a: N files of A.
        classes_a: their N class names.
        paths_b: M files of B, or ``None`` to search within A.
        classes_b: their M class names.
        max_distance: perceptual-hash bits (0..64) that may differ for a near pair.
        progress: tqdm bars while hashing.
        hashes: precomputed :func:`hash_files` result for A (reused by callers that hash once).

    Returns:
        :class:`DuplicateReport`; a pair with equal bytes is ``exact`` (also when the files
        do not decode), otherwise ``near``.

    Raises:
        ValueError: ``max_distance`` outside 0..64.
    """
    sha_a, ph_a, ok_a, bad = hashes if hashes is not None else hash_files(paths_a, progress, desc="hashing A")
    if paths_b is None:
        sha_b, ph_b, ok_b = sha_a, None, None
    else:
        sha_b, ph_b, ok_b, bad_b = hash_files(paths_b, progress, desc="hashing B")
        bad = bad + bad_b
    i, j, d = near_pairs(ph_a, ph_b, max_distance, ok_a, ok_b)
    pb, cb = (paths_a, classes_a) if paths_b is None else (paths_b, classes_b)
    # exact pairs whose hashes could not be compared (undecodable but identical bytes) still count
    exact = {(x, y) for x, y in zip(i.tolist(), j.tolist()) if sha_a[x] is not None and sha_a[x] == sha_b[y]}
    extra = _exact_unhashed(sha_a, sha_b, ok_a, ok_b, paths_b is None)
    rows = [(str(paths_a[x]), str(classes_a[x]), str(pb[y]), str(cb[y]), "exact" if (x, y) in exact else "near",
             0 if (x, y) in exact else int(dd)) for x, y, dd in zip(i.tolist(), j.tolist(), d.tolist())]
    rows += [(str(paths_a[x]), str(classes_a[x]), str(pb[y]), str(cb[y]), "exact", 0) for x, y in extra]
    pairs = pd.DataFrame(rows, columns=["path_a", "class_a", "path_b", "class_b", "kind", "distance"])
    return DuplicateReport(pairs, len(paths_a), 0 if paths_b is None else len(paths_b), max_distance, bad)


def _exact_unhashed(sha_a: list, sha_b: list, ok_a: np.ndarray, ok_b: np.ndarray | None, same: bool
                    ) -> list[tuple[int, int]]:
    """Pairs of identical bytes where one side could not be decoded (so has no perceptual hash)."""
    ok_b = ok_a if ok_b is None else ok_b
    where_b: dict[str, list[int]] = {}
    for y, s in enumerate(sha_b):
        if s is not None:
            where_b.setdefault(s, []).append(y)
    out = []
    for x, s in enumerate(sha_a):
        for y in where_b.get(s, []) if s is not None else []:
            if (same and y <= x) or (ok_a[x] and ok_b[y]):
                continue
            out.append((x, y))
    return out
