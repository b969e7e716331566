"""How a gallery decides on labelled queries: the open-set rates and the threshold trade-off.

For each query the gallery says an item id or "unknown" (best similarity below its threshold).
A query is *known* when its true item is enrolled. Over the known queries:

* ``top1``: the best-scoring item is the right one (whatever the threshold);
* ``accepted_correct``: accepted as the right item;
* ``misidentified``: accepted as another item;
* ``rejected_known``: rejected as unknown although enrolled;

and over the unknown queries (items not enrolled): ``rejected_unknown`` (correctly rejected)
and ``accepted_unknown`` (taken for an enrolled item). Labels are matched to item ids by
:func:`itemrec.data.layout.class_key` (case, ``-``/``_``), so ``Green-Apple`` photos count for
item ``green_apple``.

:func:`operating_points` is the trade-off: for each target FAR, the threshold
:meth:`~itemrec.gallery.Gallery.calibrate` fits on calibration photos (not stored) and the
rates it then gives on the queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

OPERATING_FARS = (0.01, 0.05, 0.1, 0.2, 0.3)


def _rate(num: int, den: int) -> float | None:
    return float(num / den) if den else None


def decision_rates(truth: Sequence[str], best: Sequence[str | None], decision: Sequence[str | None],
                   enrolled: set[str]) -> dict[str, Any]:
    """The rates of the module docstring.

    Args:
        truth: (N,) the true item id of each query.
        best: (N,) the best-scoring item id (``None`` on an empty gallery).
        decision: (N,) the gallery's answer, ``None`` for "unknown".
        enrolled: the enrolled item ids.

    Returns:
        ``{n_known, n_unknown, top1, accepted_correct, misidentified, rejected_known,
        rejected_unknown, accepted_unknown}``; a rate is ``None`` when its denominator is 0.
    """
    known = [t in enrolled for t in truth]
    n_k = sum(known)
    n_u = len(known) - n_k
    k_rows = [(t, b, d) for t, b, d, k in zip(truth, best, decision, known) if k]
    u_dec = [d for d, k in zip(decision, known) if not k]
    return {
        "n_known": n_k,
        "n_unknown": n_u,
        "top1": _rate(sum(b == t for t, b, _ in k_rows), n_k),
        "accepted_correct": _rate(sum(d == t for t, _, d in k_rows), n_k),
        "misidentified": _rate(sum(d is not None and d != t for t, _, d in k_rows), n_k),
        "rejected_known": _rate(sum(d is None for _, _, d in k_rows), n_k),
        "rejected_unknown": _rate(sum(d is None for d in u_dec), n_u),
        "accepted_unknown": _rate(sum(d is not None for d in u_dec), n_u),
    }


def operating_points(gallery: Any, calib_emb: Any, calib_ids: list[str], query_emb: Any, query_products: list[str],
                     enrolled: set[str], fars: tuple[float, ...] = OPERATING_FARS) -> list[dict[str, Any]]:
    """The trade-off behind the threshold: for each target FAR, the threshold
    :meth:`~itemrec.gallery.Gallery.calibrate` fits on ``calib_emb``/``calib_ids`` (not stored) and
    what the gallery then decides on the queries.

    Args:
        gallery: an open :class:`~itemrec.gallery.Gallery`.
        calib_emb: (M, D) calibration embeddings.
        calib_ids: (M,) the item each calibration photo shows.
        query_emb: (N, D) query embeddings.
        query_products: (N,) the item each query shows.
        enrolled: the enrolled item ids.
        fars: the target FARs.

    Returns:
        One dict per target FAR: ``target_far``, the calibration's ``threshold``, ``far_calib``,
        ``dir_calib``, ``n_impostor``, ``n_mated``, the :func:`decision_rates` on the queries, and
        ``recognised`` (= ``accepted_correct``) and ``unknown_rejected`` (= ``rejected_unknown``),
        as the demo's report names them.

    Raises:
        ValueError: a calibration without impostor scores (see :meth:`Gallery.calibrate`).
    """
    rows = []
    for far in fars:
        cal = gallery.calibrate(calib_emb, calib_ids, target_far=far, save=False)
        results = gallery.query(vectors=query_emb, k=1, threshold=cal.threshold)
        rates = decision_rates(query_products, [r.best.item_id if r.best else None for r in results],
                               [r.item_id for r in results], enrolled)
        rows.append({"target_far": far, "threshold": cal.threshold, "far_calib": cal.far, "dir_calib": cal.dir,
                     "n_impostor": cal.n_impostor, "n_mated": cal.n_mated, **rates,
                     "recognised": rates["accepted_correct"], "unknown_rejected": rates["rejected_unknown"]})
    return rows


def match_ids(labels: Sequence[str], item_ids: Sequence[str]) -> list[str]:
    """Each label as the enrolled item id it names.

    Args:
        labels: (N,) labels (folder names, item names).
        item_ids: the enrolled item ids.

    Returns:
        (N,) the item id each label names, matched exactly, else by
        :func:`~itemrec.data.layout.class_key` (case, ``-``/``_``); a label unchanged when no item matches.
    """
    from itemrec.data.layout import class_key

    exact = set(item_ids)
    by_key = {class_key(i): i for i in item_ids}
    return [lab if lab in exact else by_key.get(class_key(lab), lab) for lab in labels]


def evaluate_gallery(gallery: Any, query_emb: np.ndarray, query_labels: Sequence[str],
                     calib: tuple[np.ndarray, Sequence[str]] | None = None,
                     fars: tuple[float, ...] = OPERATING_FARS) -> dict[str, Any]:
    """Rates at the gallery's own threshold and the trade-off at ``fars``.

    Args:
        gallery: an open :class:`~itemrec.gallery.Gallery`.
        query_emb: (N, D) query embeddings.
        query_labels: (N,) their item names (matched by :func:`match_ids`).
        calib: ``(embeddings, labels)`` to fit the trade-off's thresholds on; ``None``: the queries
            themselves (thresholds then fitted and reported on the same photos: optimistic).
        fars: target FARs of the trade-off.

    Returns:
        ``{"threshold", "at_threshold": decision_rates, "operating_points": [...], "calibrated_on",
        "enrolled_items", "unknown_labels"}``.
    """
    items = [str(i) for i in gallery.items()["item_id"]]
    enrolled = set(items)
    truth = match_ids([str(x) for x in query_labels], items)
    results = gallery.query(vectors=query_emb, k=1)
    rates = decision_rates(truth, [r.best.item_id if r.best else None for r in results],
                           [r.item_id for r in results], enrolled)
    if calib is None:
        c_emb, c_ids, where = query_emb, truth, "the queries themselves (optimistic: fitted and reported on the same photos)"
    else:
        c_emb, c_ids, where = calib[0], match_ids([str(x) for x in calib[1]], items), "the calibration photos"
    points = operating_points(gallery, c_emb, list(c_ids), query_emb, truth, enrolled, fars) if len(items) else []
    return {"threshold": gallery.threshold, "at_threshold": rates, "operating_points": points,
            "calibrated_on": where, "enrolled_items": len(items),
            "unknown_labels": sorted({t for t in truth if t not in enrolled})}


def calibration_notes(n_impostor: int, n_genuine: int, target_far: float, threshold: float,
                      max_impostor: float | None = None) -> list[str]:
    """What a calibration can mean given its score counts (the lines ``gallery calibrate`` prints).

    With ``n`` impostor scores the smallest FAR that can be told from 0 is ``1/n``; a target
    below it gives the threshold just above the highest impostor score, which means only
    "above every impostor seen", not the target FAR.

    Args:
        n_impostor: impostor (non-mated) scores used.
        n_genuine: genuine (mated) scores used.
        target_far: the FAR asked for.
        threshold: the threshold chosen.
        max_impostor: the highest impostor score, quoted in the warning when given.

    Returns:
        Lines to print: the counts, and a warning when ``target_far < 1 / n_impostor``.
    """
    lines = [f"used {n_impostor} impostor scores (best match to another item) and {n_genuine} genuine scores "
             "(photos of enrolled items)"]
    if n_impostor and target_far < 1.0 / n_impostor:
        top = f" ({max_impostor:.4f})" if max_impostor is not None else ""
        lines.append(f"warning: target FAR {target_far:g} is below 1/{n_impostor} = {1.0 / n_impostor:.4g}, the "
                     f"smallest FAR {n_impostor} impostor scores can measure; the threshold {threshold:.4f} only means "
                     f"'above the highest impostor score seen'{top}. Calibrate on at least "
                     f"{int(np.ceil(1.0 / max(target_far, 1e-12)))} photos of items other than the one they show "
                     "for this target to mean anything")
    return lines
