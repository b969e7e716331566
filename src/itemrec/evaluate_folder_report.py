"""Files and printed summary of ``itemrec evaluate MODEL --data FOLDER`` (:mod:`itemrec.evaluate_folder`).

Written to the output folder: ``evaluation.json`` (every number, the options and notes),
``cmc.csv`` (one row per rank: both averagings with their intervals across draws),
``per_class.csv`` (per class: queries over all draws, hit@1, hit@5, photos) and ``cmc.png``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from itemrec._jsonio import json_default


def _f(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4f}" if isinstance(x, float) else str(x)


def cmc_table(report: dict[str, Any]) -> pd.DataFrame:
    """One row per rank: ``image_mean, image_ci_low, image_ci_high, balanced_mean, balanced_ci_low, balanced_ci_high``.

    Args:
        report: the dict of :func:`itemrec.evaluate_folder.evaluate_folder`; its ``"_curves"``
            (a :class:`itemrec.evaluation.GalleryDrawsResult`) is read.

    Returns:
        A DataFrame with a ``rank`` column (1..max_rank) and, for the image-averaged and the
        class-balanced CMC, the mean over draws and the 2.5/97.5 percentiles across draws
        (identification rates in ``[0, 1]``).
    """
    res = report["_curves"]
    return pd.DataFrame({
        "rank": res.image.ranks,
        "image_mean": res.image.mean, "image_ci_low": res.image.ci_low, "image_ci_high": res.image.ci_high,
        "balanced_mean": res.balanced.mean, "balanced_ci_low": res.balanced.ci_low,
        "balanced_ci_high": res.balanced.ci_high,
    })


def write_report(report: dict[str, Any], out_dir: str | os.PathLike, title: str = "CMC") -> dict[str, str]:
    """Write the files of the module docstring into ``out_dir`` (created).

    ``evaluation.json`` holds the report's public keys (those not starting with ``_``) plus
    ``"files"``; ``report["files"]`` is set too, so :func:`summary_lines` lists them.

    Args:
        report: the dict of :func:`itemrec.evaluate_folder.evaluate_folder` (with its
            ``"_curves"`` and ``"_per_class"``).
        out_dir: the output folder, created with its parents if missing.
        title: title of the CMC plot.

    Returns:
        ``{file name: path}`` of ``evaluation.json``, ``cmc.csv``, ``per_class.csv`` and ``cmc.png``.
    """
    from itemrec import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {name: str(out / name) for name in ("evaluation.json", "cmc.csv", "per_class.csv", "cmc.png")}
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    public["files"] = files
    Path(files["evaluation.json"]).write_text(json.dumps(public, indent=1, default=json_default) + "\n")
    cmc_table(report).to_csv(files["cmc.csv"], index=False)
    report["_per_class"].to_csv(files["per_class.csv"], index=False)
    res = report["_curves"]
    fig = plots.plot_cmc({"image-averaged": res.image, "class-balanced": res.balanced}, title=title, path=files["cmc.png"])
    import matplotlib.pyplot as plt

    plt.close(fig)
    report["files"] = files
    return files


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The lines ``itemrec evaluate --data`` prints.

    Args:
        report: the dict of :func:`itemrec.evaluate_folder.evaluate_folder` (after
            :func:`write_report` the written files are listed last).

    Returns:
        Human-readable lines without newlines: the data and gallery, the hubness and
        near-copy settings when on, both CMCs' rank-1/rank-5 with intervals, Recall@1/5 and
        MAP@R, VAL at each target FAR, the notes.
    """
    c, g = report["cmc"], report["gallery"]
    gal = " + ".join(x for x in (
        f"catalogue ({g['catalogue_images']} images)" if g["catalogue_images"] else "",
        f"{g['shots']} random photo{'s' if g['shots'] != 1 else ''} per class" if g["shots"] else "") if x)
    lines = [
        f"{report['data']} ({report['layout']}): {report['n_photos']} photos read, {report['n_unreadable']} unreadable; "
        f"{report['n_classes']} classes evaluated against {report['n_gallery_classes']} gallery classes",
        f"  gallery: {gal}; {report['pools']}; {c['n_draws']} draws, seed {g['seed']}",
    ]
    h = report.get("hubness")
    if h:
        lines.append(f"  hubness correction on: {h['n_background']} background photos, k {h['k']}, beta {h['beta']}")
    n = report.get("near_duplicates")
    if n:
        lines.append(f"  near copies (perceptual hash within {n['max_distance_bits']} bits): {n['photos_with_same_class_copy']} "
                     f"photos have one in their class; {n['queries_dropped_per_draw']:.1f} queries per draw dropped as "
                     "near copies of a gallery photo")
    im, cb = c["image_averaged"], c["class_balanced"]
    lines += [
        f"  CMC image-averaged (every query, {im['queries_per_draw']} per draw): rank-1 {_f(im['rank1'])} "
        f"[{im['rank1_ci_draws'][0]:.4f}, {im['rank1_ci_draws'][1]:.4f}] across draws "
        f"(Wilson over queries [{im['rank1_ci_wilson'][0]:.4f}, {im['rank1_ci_wilson'][1]:.4f}]), "
        f"rank-5 {_f(im['rank5'])} [{im['rank5_ci_draws'][0]:.4f}, {im['rank5_ci_draws'][1]:.4f}]",
        f"  CMC class-balanced (one query per class per draw): rank-1 {_f(cb['rank1'])} "
        f"[{cb['rank1_ci_draws'][0]:.4f}, {cb['rank1_ci_draws'][1]:.4f}], "
        f"rank-5 {_f(cb['rank5'])} [{cb['rank5_ci_draws'][0]:.4f}, {cb['rank5_ci_draws'][1]:.4f}]",
    ]
    r = report["retrieval"]
    if "skipped" in r:
        lines.append(f"  Recall@1 / MAP@R: skipped ({r['skipped']})")
    else:
        lines.append(f"  leave-one-out among the query photos ({r['n_queries']} with another photo of their class): "
                     f"Recall@1 {_f(r['recall_at_1'])}, Recall@5 {_f(r['recall_at_5'])}, MAP@R {_f(r['map_at_r'])}"
                     + (" (near copies inflate these)" if n and n["photos_with_same_class_copy"] else ""))
    for key, v in report["verification"].items():
        if "skipped" in v:
            lines.append(f"  VAL at FAR {key}: skipped ({v['skipped']})")
        else:
            lines.append(f"  VAL {_f(v['val'])} at FAR {_f(v['far'])} (target {key}; threshold fitted on "
                         f"{v['fit_classes']} classes, reported on the other {v['report_classes']})")
    lines += [f"  note: {x}" for x in report["notes"]]
    if report.get("files"):
        lines.append(f"wrote {', '.join(report['files'].values())}")
    return lines
