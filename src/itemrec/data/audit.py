"""Dataset audit: exact duplicates, class overlaps, unreadable files, tiny classes.

:func:`audit` hashes every file's bytes (SHA-1, threads for the I/O) and
reports

* **within-class duplicates**: the same bytes more than once in one class
  (they inflate counts and leak between train and test when split by image);
* **cross-class overlaps**: class pairs that share images, with how many;
  a pair whose distinct contents are (almost) the same set is a
  **duplicated class** (one product under two ids), and a class whose images
  are also found in several other classes (or mostly in others) is a
  **mixed class** (images of different products under one id);
* **unreadable files** with the reason (a cheap probe by default, a full
  decode with ``check="decode"``);
* per-class counts and **small classes** (fewer than ``min_per_class``
  images: no positive pair for contrastive / triplet / centre losses).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from itemrec.data.records import ImageDataset


@dataclass
class ClassOverlap:
    """Two classes sharing ``n_shared`` distinct images.

    Attributes:
        class_a: the first class's name (alphabetically).
        class_b: the second class's name.
        n_shared: distinct contents (SHA-1s) found in both.
        files_a: files of ``class_a`` whose content is shared.
        files_b: files of ``class_b`` whose content is shared.
        count_a: all files of ``class_a``.
        count_b: all files of ``class_b``.
        jaccard: Jaccard index of the two classes' distinct-content sets, in (0, 1].
    """

    class_a: str
    class_b: str
    n_shared: int
    files_a: int
    files_b: int
    count_a: int
    count_b: int
    jaccard: float  # of the distinct-content sets


@dataclass
class AuditReport:
    """What :func:`audit` found (see the module docstring).

    Attributes:
        name: the dataset's name.
        n_images: files audited.
        n_classes: classes (empty ones included).
        class_counts: class name -> files.
        distinct_images: distinct readable contents (SHA-1s).
        within_class_duplicates: class -> extra copies (files minus distinct contents), only
            classes that have some.
        overlaps: class pairs sharing contents, most shared first.
        duplicated_classes: pairs whose Jaccard index reaches ``duplicate_jaccard``.
        mixed_classes: classes whose images are also in two or more other classes, or mostly
            in another non-duplicate class.
        unreadable: ``(path, reason)`` of each file that failed hashing or the check.
        small_classes: non-empty classes with fewer than ``min_per_class`` files.
        empty_classes: classes with no file.
        min_per_class: the threshold used for ``small_classes``.
        duplicate_groups: the paths of each content found more than once (across classes
            too); left out of :meth:`to_dict` unless asked for.
    """

    name: str
    n_images: int
    n_classes: int
    class_counts: dict[str, int]
    distinct_images: int
    within_class_duplicates: dict[str, int]  # class -> extra copies (files minus distinct contents)
    overlaps: list[ClassOverlap]
    duplicated_classes: list[tuple[str, str]]
    mixed_classes: list[str]
    unreadable: list[tuple[str, str]]
    small_classes: list[str]
    empty_classes: list[str]
    min_per_class: int = 2
    duplicate_groups: list[list[str]] = field(default_factory=list, repr=False)

    @property
    def n_within_duplicates(self) -> int:
        """Extra copies within classes, summed over classes."""
        return int(sum(self.within_class_duplicates.values()))

    @property
    def ok(self) -> bool:
        """No duplicates, overlaps, unreadable files or small classes."""
        return not (self.within_class_duplicates or self.overlaps or self.unreadable or self.small_classes)

    def summary(self) -> str:
        """A human-readable multi-line report (at most 20 unreadable files listed).

        Returns:
            The lines joined by newlines.
        """
        lines = [
            f"audit of {self.name}: {self.n_images} images in {self.n_classes} classes "
            f"({self.distinct_images} distinct contents)",
        ]
        counts = np.array(list(self.class_counts.values()) or [0])
        lines.append(f"  images per class: min {counts.min()}, median {int(np.median(counts))}, max {counts.max()}")
        lines.append(
            f"  exact duplicates within a class: {self.n_within_duplicates} extra copies in "
            f"{len(self.within_class_duplicates)} classes"
        )
        lines.append(f"  class pairs sharing images: {len(self.overlaps)}")
        for o in self.overlaps:
            lines.append(
                f"    {o.class_a} / {o.class_b}: {o.n_shared} shared images "
                f"({o.files_a}/{o.count_a} and {o.files_b}/{o.count_b} files, jaccard {o.jaccard:.2f})"
            )
        lines.append(f"  duplicated classes: {', '.join(f'{a}={b}' for a, b in self.duplicated_classes) or 'none'}")
        lines.append(f"  mixed classes: {', '.join(self.mixed_classes) or 'none'}")
        lines.append(f"  unreadable files: {len(self.unreadable)}")
        for path, reason in self.unreadable[:20]:
            lines.append(f"    {path}: {reason}")
        if len(self.unreadable) > 20:
            lines.append(f"    ... and {len(self.unreadable) - 20} more")
        lines.append(
            f"  classes with < {self.min_per_class} images (no positive pairs for metric losses): "
            f"{', '.join(self.small_classes) or 'none'}"
        )
        if self.empty_classes:
            lines.append(f"  empty classes: {', '.join(self.empty_classes)}")
        return "\n".join(lines)

    def to_dict(self, groups: bool = False) -> dict:
        """Plain-data form, with ``n_within_duplicates`` and ``ok`` added.

        Args:
            groups: add every duplicate group's paths (large) and their count.

        Returns:
            A JSON-serialisable dict.
        """
        d = asdict(self)
        if not groups:
            d.pop("duplicate_groups")
        else:
            d["n_duplicate_groups"] = len(self.duplicate_groups)
        d["n_within_duplicates"] = self.n_within_duplicates
        d["ok"] = self.ok
        return d

    def to_json(self, indent: int | None = 1, groups: bool = False) -> str:
        """:meth:`to_dict` as JSON.

        Args:
            indent: JSON indentation (``None``: one line).
            groups: include the duplicate groups.

        Returns:
            The JSON text.
        """
        return json.dumps(self.to_dict(groups), indent=indent)


def file_sha1(path: str) -> str | None:
    """SHA-1 hex digest of a file's bytes, read in 1 MiB blocks.

    Args:
        path: the file.

    Returns:
        The 40-character hex digest, or ``None`` if the file cannot be read (``OSError``).
    """
    h = hashlib.sha1()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def _check_header(path: str) -> str | None:
    """Reason the file is unreadable from a cheap probe (see :func:`itemrec.data.probe.probe_image`), or None."""
    from itemrec.data.probe import probe_image

    ok, _, reason = probe_image(path)
    return None if ok else reason


def _check_decode(path: str) -> str | None:
    from itemrec.data.images import BadImageError, read_image

    try:
        read_image(path)
    except BadImageError as exc:
        return exc.reason
    return None


def audit(
    ds: ImageDataset,
    check: str | None = "header",
    min_per_class: int = 2,
    duplicate_jaccard: float = 0.9,
    mixed_fraction: float = 0.5,
    workers: int = 8,
    progress: bool = False,
) -> AuditReport:
    """Audit ``ds`` (see the module docstring).

    Two classes are *duplicated* when the Jaccard index of their distinct-content sets is at
    least ``duplicate_jaccard``; a class is *mixed* when its images also appear in two or
    more other classes, or when at least ``mixed_fraction`` of its files appear in another
    class that is not its duplicate.

    Args:
        ds: the dataset.
        check: ``"header"`` (:func:`~itemrec.data.probe.probe_image`: header, JPEG end marker,
            PNG CRCs; awkward formats fully decoded; fast), ``"decode"`` (full
            :func:`~itemrec.data.images.read_image`) or ``None`` (hash only).
        min_per_class: classes with fewer files are reported as small (default 2: no
            positive pair).
        duplicate_jaccard: the Jaccard index, in [0, 1], from which two classes are duplicated.
        mixed_fraction: the fraction of a class's files, in [0, 1], found in another class
            that makes it mixed.
        workers: threads for hashing and checking.
        progress: progress bars.

    Returns:
        The :class:`AuditReport`.

    Raises:
        ValueError: ``check`` is not ``"header"``, ``"decode"`` or ``None``.
    """
    if check not in ("header", "decode", None):
        raise ValueError(f"check must be 'header', 'decode' or None, got {check!r}")
    paths = [str(p) for p in ds.paths]
    names = ds.frame["class_name"].astype(str).tolist()
    iterator_wrap = (lambda it, desc: it)
    if progress:
        from tqdm.auto import tqdm

        iterator_wrap = lambda it, desc: tqdm(it, total=len(paths), desc=desc, unit="file")  # noqa: E731
    with ThreadPoolExecutor(max_workers=workers) as pool:
        hashes = list(iterator_wrap(pool.map(file_sha1, paths, chunksize=64), "hashing"))
        reasons: list[str | None] = [None] * len(paths)
        if check is not None:
            fn = _check_header if check == "header" else _check_decode
            reasons = list(iterator_wrap(pool.map(fn, paths, chunksize=32), "checking"))
    unreadable = []
    for p, h, r in zip(paths, hashes, reasons):
        if h is None:
            unreadable.append((p, "cannot read file"))
        elif r is not None:
            unreadable.append((p, r))

    counts = ds.class_counts()
    class_counts = {str(k): int(v) for k, v in counts.items()}
    by_class: dict[str, list[str]] = defaultdict(list)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (h, c) in enumerate(zip(hashes, names)):
        if h is None:
            continue
        by_class[c].append(h)
        groups[h].append(i)
    sets = {c: set(hs) for c, hs in by_class.items()}
    within = {c: len(hs) - len(sets[c]) for c, hs in by_class.items() if len(hs) > len(sets[c])}

    # classes sharing content: pairs from each content's class set
    pair_hashes: dict[tuple[str, str], int] = defaultdict(int)
    for h, idx in groups.items():
        classes = sorted({names[i] for i in idx})
        for a, b in itertools.combinations(classes, 2):
            pair_hashes[(a, b)] += 1
    overlaps = []
    for (a, b), n in sorted(pair_hashes.items(), key=lambda kv: (-kv[1], kv[0])):
        shared = sets[a] & sets[b]
        overlaps.append(
            ClassOverlap(
                a, b, n,
                sum(h in shared for h in by_class[a]), sum(h in shared for h in by_class[b]),
                class_counts[a], class_counts[b], n / len(sets[a] | sets[b]),
            )
        )
    duplicated = [(o.class_a, o.class_b) for o in overlaps if o.jaccard >= duplicate_jaccard]
    dup_of = defaultdict(set)
    for a, b in duplicated:
        dup_of[a].add(b)
        dup_of[b].add(a)
    partners: dict[str, set[str]] = defaultdict(set)
    shared_files: dict[str, set[str]] = defaultdict(set)
    for o in overlaps:
        if o.class_b in dup_of[o.class_a]:
            continue
        partners[o.class_a].add(o.class_b)
        partners[o.class_b].add(o.class_a)
        shared = sets[o.class_a] & sets[o.class_b]
        shared_files[o.class_a] |= shared
        shared_files[o.class_b] |= shared
    mixed = sorted(
        c for c in partners
        if len(partners[c]) >= 2 or sum(h in shared_files[c] for h in by_class[c]) >= mixed_fraction * len(by_class[c])
    )
    small = [c for c, n in class_counts.items() if 0 < n < min_per_class]
    empty = [c for c, n in class_counts.items() if n == 0]
    dup_groups = [[paths[i] for i in idx] for idx in groups.values() if len(idx) > 1]
    return AuditReport(
        name=ds.name,
        n_images=len(ds),
        n_classes=ds.n_classes,
        class_counts=class_counts,
        distinct_images=len(groups),
        within_class_duplicates=within,
        overlaps=overlaps,
        duplicated_classes=duplicated,
        mixed_classes=mixed,
        unreadable=unreadable,
        small_classes=small,
        empty_classes=empty,
        min_per_class=min_per_class,
        duplicate_groups=dup_groups,
    )
