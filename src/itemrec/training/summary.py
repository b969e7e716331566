"""The few printed lines that summarise a run's metrics (``itemrec evaluate``, ``itemrec train``,
the open-set sweep and the demo print them)."""

from __future__ import annotations

from typing import Any


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4f}" if isinstance(x, float) else str(x)


def summary_lines(metrics: dict[str, Any]) -> list[str]:
    """A few lines with the headline metrics of :func:`itemrec.training.evaluate_run`.

    Open-set metrics (``kind == "open"``): class-balanced CMC rank-1/5 with its 95% interval,
    the image-averaged CMC (Wilson interval) and the hubness-corrected one when present,
    Recall@1/5 and MAP@R (Musgrave et al. 2020), the k-shot galleries, the backbone's
    features, validation classes, VAL at FAR for each target and the open-set DIR at FAR.
    Closed-set metrics: accuracy, top-5 accuracy, macro and weighted F1. Floats are printed
    with 4 decimals, ``None`` as ``n/a``.

    Args:
        metrics: the metrics dict of a run (as written to its ``metrics.json``); must hold
            the keys its kind prints.

    Returns:
        The lines (no trailing newlines); empty for empty ``metrics``.
    """
    if not metrics:
        return []
    if metrics.get("kind") == "open":
        lo, hi = metrics["rank1_ci"]
        lines = [
            f"open set, {metrics['n_test_classes']} unseen classes, {metrics['n_test_images']} test images "
            f"(gallery: {metrics['gallery']})",
            f"  CMC class-balanced (one query per class, {metrics['cmc']['n_draws']} draws): rank-1 "
            f"{_fmt(metrics['rank1'])} (95% CI {lo:.4f}..{hi:.4f}), rank-5 {_fmt(metrics['rank5'])}",
            f"  Recall@1 {_fmt(metrics['recall_at_1'])}  Recall@5 {_fmt(metrics['recall_at_5'])}  "
            f"MAP@R {_fmt(metrics['map_at_r'])}",
        ]
        if "rank1_image" in metrics:
            lo, hi = metrics["rank1_image_ci"]
            lines.insert(1, f"  CMC image-averaged (every test photo once): rank-1 {_fmt(metrics['rank1_image'])} "
                            f"(95% Wilson CI {lo:.4f}..{hi:.4f}), rank-5 {_fmt(metrics['rank5_image'])}")
        for k, v in metrics.get("k_shot", {}).items():
            if "skipped" in v:
                continue
            lines.append(f"  {k}-shot gallery (catalogue + {k} photo{'s' if k != '1' else ''} per class, image-averaged over "
                         f"{v['n_draws']} draws): rank-1 {_fmt(v['rank1'])}, rank-5 {_fmt(v['rank5'])}")
        f = metrics.get("backbone_features")
        if f:
            lines.append(f"  backbone's pooled features: CMC rank-1 image-averaged {_fmt(f['rank1_image'])}, "
                         f"class-balanced {_fmt(f['rank1'])}; Recall@1 {_fmt(f['recall_at_1'])}, "
                         f"MAP@R {_fmt(f['map_at_r'])}")
        v = metrics.get("validation_classes")
        if v:
            lines.append(f"  {len(v['classes'])} validation classes (model selection, image-averaged): "
                         f"CMC@1 {_fmt(v['valcls_cmc1'])}, "
                         f"MAP@R {_fmt(v['valcls_map_at_r'])}, score {_fmt(v['valcls_score'])}")
        h = metrics.get("hubness")
        if h:
            lines.insert(3, f"  class-balanced with hubness correction (k {h['k']}, beta {h['beta']}): CMC rank-1 {_fmt(h['rank1'])} "
                            f"(95% CI {h['rank1_ci'][0]:.4f}..{h['rank1_ci'][1]:.4f}), rank-5 {_fmt(h['rank5'])}")
        for key, v in metrics["verification"].items():
            lines.append(f"  VAL {_fmt(v['val'])} at FAR {_fmt(v['far'])} (target {key}, threshold {v['threshold']:.4f})")
        o = metrics["openset"]
        lines.append(f"  open-set DIR {_fmt(o['dir'])} at FAR {_fmt(o['far'])} (target {o['target_far']})")
        return lines
    return [
        f"closed set, {metrics['n_classes']} classes, {metrics['n_test_images']} test images ({metrics['scorer']})",
        f"  accuracy {_fmt(metrics['accuracy'])}  top-5 {_fmt(metrics['top5_accuracy'])}  "
        f"F1 macro {_fmt(metrics['f1_macro'])}  F1 weighted {_fmt(metrics['f1_weighted'])}",
    ]
