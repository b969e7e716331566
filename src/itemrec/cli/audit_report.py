"""What ``itemrec data audit`` reads and prints beyond :mod:`itemrec.data.audit`: split/class trees
and manifests, and the near-duplicate reports of :mod:`itemrec.data.near_duplicates`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from itemrec.cli import CLIError


def load_audited(name: str, root: Path | None, load_named: Callable[[str, Path | None], Any]) -> Any:
    """An :class:`~itemrec.data.records.ImageDataset` of a named dataset, a folder or a CSV manifest.

    A ``split/class`` tree gets classes named ``SPLIT/CLASS`` (as spelled on disk), so a photo in
    two splits shows as an overlap of two classes; a CSV manifest is read with
    :func:`itemrec.data.layout.read_manifest`; a folder-per-class tree or a named dataset is
    read by ``load_named``.

    Args:
        name: a dataset name, a folder or a ``.csv`` manifest.
        root: the dataset root for named datasets (``None``: ``$ITEMREC_DATA``).
        load_named: ``(name, root) -> ImageDataset`` for what is neither a manifest nor a
            ``split/class`` tree.

    Returns:
        The dataset.

    Raises:
        CLIError: the manifest or folder cannot be read as a layout (or does not exist);
            whatever ``load_named`` raises otherwise.
    """
    from itemrec.data.layout import LayoutError, read_folder, read_manifest

    path = Path(name).expanduser()
    try:
        if path.suffix.lower() == ".csv":
            return _dataset(read_manifest(path), path.stem)
        if path.is_dir():
            data = read_folder(path)
            if data.layout == "split/class":
                return _dataset(data, path.name)
    except (LayoutError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from exc
    return load_named(name, root)


def _dataset(data: Any, name: str) -> Any:
    import pandas as pd

    from itemrec.data.records import ImageDataset

    f = data.frame
    cls = [f"{s}/{c}" if s else c for s, c in zip(f["split"], f["folder"])]
    names = sorted(set(cls))
    frame = pd.DataFrame({"path": f["path"], "label": [names.index(c) for c in cls], "class_name": cls,
                          "split": f["split"]})
    return ImageDataset(frame, names, name=name)


def duplicates_dict(report: Any, top: int = 50) -> dict[str, Any]:
    """JSON form of a :class:`~itemrec.data.near_duplicates.DuplicateReport` (the ``top`` class pairs).

    Args:
        report: the report.
        top: how many class pairs to list, most pairs first.

    Returns:
        ``max_distance_bits``, ``exact_pairs``, ``near_pairs``, ``n_a``, ``n_b``,
        ``images_with_duplicate``, ``class_pairs`` (``top`` records), ``n_class_pairs``,
        ``unreadable`` (at most 20), and ``images_of_b_with_duplicate`` between two sets.
    """
    by = report.by_class()
    out = {"max_distance_bits": report.max_distance, **report.counts(), "n_a": report.n_a, "n_b": report.n_b,
           "images_with_duplicate": report.images_with_duplicate("a"),
           "class_pairs": by.head(top).to_dict(orient="records"), "n_class_pairs": int(len(by)),
           "unreadable": [list(u) for u in report.unreadable[:20]]}
    if report.n_b:
        out["images_of_b_with_duplicate"] = report.images_with_duplicate("b")
    return out


def duplicate_lines(near: Any, cross: Any, name_a: str, name_b: str | None, top: int = 15) -> list[str]:
    """The printed summary of the near-duplicate and cross-dataset reports (either may be ``None``).

    Args:
        near: the within-dataset :class:`~itemrec.data.near_duplicates.DuplicateReport`, or ``None``.
        cross: the report between the dataset and another, or ``None``.
        name_a: the audited dataset's name.
        name_b: the other dataset's name.
        top: class pairs listed per report.

    Returns:
        The lines (indented, no trailing newlines); a hint to evaluate with
        ``--exclude-near-duplicates`` when most near pairs are within a class.
    """
    lines: list[str] = []
    if near is not None:
        c = near.counts()
        same = near.pairs["class_a"] == near.pairs["class_b"]
        lines.append(f"  near duplicates (perceptual hash within {near.max_distance} bits): {c['near_pairs']} near and "
                     f"{c['exact_pairs']} exact pairs; {near.images_with_duplicate()} of {near.n_a} images have one; "
                     f"{int(same.sum())} pairs within a class, {int((~same).sum())} across classes")
        if len(near.pairs) and same.mean() > 0.5:
            lines.append("    many near-identical photos within classes (video frames?): leave-one-out Recall@1 "
                         "is inflated; evaluate with `itemrec evaluate ... --exclude-near-duplicates`")
        lines += _class_rows(near, top)
    if cross is not None:
        c = cross.counts()
        lines.append(f"against {name_b}: {c['exact_pairs']} exact and {c['near_pairs']} near pairs; "
                     f"{cross.images_with_duplicate('a')} of {cross.n_a} images of {name_a} and "
                     f"{cross.images_with_duplicate('b')} of {cross.n_b} of {name_b} are involved")
        lines += _class_rows(cross, top)
    return lines


def _class_rows(report: Any, top: int) -> list[str]:
    by = report.by_class()
    rows = [f"    {r.class_a} / {r.class_b}: {r.pairs} {r.kind} pairs" for r in by.head(top).itertuples()]
    if len(by) > top:
        rows.append(f"    ... and {len(by) - top} more class pairs (--json or --pairs-csv for all)")
    return rows
