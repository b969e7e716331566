"""The demo's report: ``report.md`` with its PNG plots beside it, and the printed summary.

Plots: the training curves, CMC, VAL/FAR and ROC of
:func:`itemrec.training.evaluate_run` (copied from the run folder), and a
query/match grid drawn with :func:`itemrec.plots.plot_query_matches`, whose
query titles are annotated with the gallery's decision. Also the counting of
the gallery's decisions (:func:`recognition_counts`), the choice of the queries
drawn (:func:`pick_shown`); the threshold trade-off is
:func:`itemrec.gallery.evaluation.operating_points`, shared with ``itemrec gallery evaluate``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from itemrec.gallery.evaluation import OPERATING_FARS, decision_rates, operating_points  # noqa: F401  (the demo's trade-off)

if TYPE_CHECKING:  # annotations only: the demo imports this module to report
    from itemrec.demo import QueryOutcome

RUN_PLOTS = ("curves.png", "cmc.png", "val_far.png", "roc.png")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _f(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def recognition_counts(outcomes: list[QueryOutcome], fam_of: dict[str, int], enrolled: set[str]) -> dict[str, Any]:
    """Counts over all query photos: known ones recognised/misidentified/rejected, unknown ones rejected/accepted.

    The rates are :func:`itemrec.gallery.evaluation.decision_rates` over the outcomes, the
    products with enrolled queries counting as known.

    Args:
        outcomes: what the gallery said about each test photo.
        fam_of: product -> family index (to list an unknown product's enrolled siblings).
        enrolled: the enrolled product names.

    Returns:
        ``n_known_queries``, ``n_unknown_queries`` (counts), ``top1_accuracy``, ``recognised``,
        ``misidentified``, ``rejected_known``, ``unknown_rejected``, ``unknown_accepted``
        (fractions in [0, 1], ``None`` when there is no such query), and
        ``per_unknown_product``: for each never-enrolled product, its photo count, how many
        were rejected, what they were accepted as, and its enrolled family siblings.
    """
    known = [o for o in outcomes if o.enrolled]
    unknown = [o for o in outcomes if not o.enrolled]
    per_unknown: dict[str, Any] = {}
    for o in unknown:
        d = per_unknown.setdefault(o.product, {"photos": 0, "rejected": 0, "accepted_as": {},
                                               "enrolled_siblings": sorted(p for p in enrolled if fam_of[p] == fam_of[o.product])})
        d["photos"] += 1
        if o.decision is None:
            d["rejected"] += 1
        else:
            d["accepted_as"][o.decision] = d["accepted_as"].get(o.decision, 0) + 1
    r = decision_rates([o.product for o in outcomes], [o.best_item for o in outcomes],
                       [o.decision for o in outcomes], {o.product for o in known})
    return {
        "n_known_queries": r["n_known"],
        "n_unknown_queries": r["n_unknown"],
        "top1_accuracy": r["top1"],
        "recognised": r["accepted_correct"],
        "misidentified": r["misidentified"],
        "rejected_known": r["rejected_known"],
        "unknown_rejected": r["rejected_unknown"],
        "unknown_accepted": r["accepted_unknown"],
        "per_unknown_product": per_unknown,
    }


def pick_shown(outcomes: list[QueryOutcome], n_known: int, per_unknown: int, rng: Any) -> list[QueryOutcome]:
    """A few known queries (one photo each of different products) and a few photos of each unknown product.

    Args:
        outcomes: the query outcomes.
        n_known: how many enrolled products to show (fewer if there are fewer).
        per_unknown: photos shown per never-enrolled product (the first ones).
        rng: a ``numpy.random.Generator`` choosing the known products and their photo.

    Returns:
        The outcomes to draw: known ones in product order, then the unknown ones.
    """
    known_products = sorted({o.product for o in outcomes if o.enrolled})
    pick = rng.choice(len(known_products), size=min(n_known, len(known_products)), replace=False)
    shown = []
    for p in sorted(known_products[i] for i in pick):
        photos = [o for o in outcomes if o.product == p]
        shown.append(photos[int(rng.integers(len(photos)))])
    for p in sorted({o.product for o in outcomes if not o.enrolled}):
        shown += [o for o in outcomes if o.product == p][:per_unknown]
    return shown


def plot_demo_queries(result: Any, gallery_images: dict[str, str], path: Path) -> Path:
    """Grid of the shown queries (rows) and their top matches among the enrolled catalogue images.

    Each query's title gives whether its product was enrolled, the gallery's decision and
    the best similarity, green when the decision is right.

    Args:
        result: the :class:`itemrec.demo.DemoResult` (its ``shown`` outcomes).
        gallery_images: enrolled product -> its catalogue image path.
        path: the PNG to write.

    Returns:
        ``path``.

    Raises:
        ValueError: a top match that is not in ``gallery_images``.
    """
    from itemrec.plots import plot_query_matches

    shown = result.shown
    items = sorted(gallery_images)
    names = sorted(set(items) | {o.product for o in shown})
    code = {n: i for i, n in enumerate(names)}
    k = min(len(o.top_items) for o in shown)
    neighbors = np.array([[items.index(i) for i in o.top_items[:k]] for o in shown], dtype=np.int64)
    sims = np.array([o.top_similarities[:k] for o in shown], dtype=np.float64)
    fig = plot_query_matches(
        [o.path for o in shown], np.array([code[o.product] for o in shown]),
        [gallery_images[i] for i in items], np.array([code[i] for i in items]),
        neighbors, sims, class_names=names, thumb=64,
    )
    for row, o in enumerate(shown):
        ax = fig.axes[row * (k + 1)]
        what = "enrolled" if o.enrolled else "NEVER ENROLLED"
        said = o.decision if o.decision is not None else "unknown"
        ax.set_title(f"query ({what})\n{o.product}\n-> {said} ({o.best_similarity:.2f})", fontsize=6,
                     color=(0.1, 0.6, 0.1) if o.correct else (0.85, 0.1, 0.1))
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def summary_lines(result: Any) -> list[str]:
    """The short summary ``itemrec demo`` prints.

    Args:
        result: the :class:`itemrec.demo.DemoResult`.

    Returns:
        The lines: data, training time, the unseen products' metrics
        (:func:`itemrec.training.summary.summary_lines`), the gallery, the calibrated
        threshold, the recognition counts, other operating points, timings, the report's path.
    """
    from itemrec.training.summary import summary_lines as eval_lines

    d, r, c, t = result.dataset, result.recognition, result.calibration, result.timings
    lines = [
        f"itemrec demo: {d['products']} synthetic products ({d['seen_products']} seen in training, "
        f"{d['unseen_products']} unseen), {d['photos_per_product']} photos each, {d['image_size']} px",
        f"training: {_f(t.get('train'), 1)} s ({result.settings['epochs']} epochs x {result.settings['steps_per_epoch']} steps, "
        f"{result.settings['model']}, {result.settings['loss']} loss)",
        "evaluation on the unseen products:",
        *("  " + line for line in eval_lines(result.metrics)),
        f"gallery: {len(result.gallery['enrolled'])} unseen products enrolled from their catalogue image "
        f"+ {result.settings['enrol_photos']} photo(s), "
        f"{len(result.gallery['unknown'])} never enrolled ({', '.join(result.gallery['unknown'])})",
        f"  unknown threshold {c['threshold']:.4f} (cosine), fitted on {c['n_impostor']} other calibration photos "
        f"for FAR {c['target_far']}: FAR {_f(c['far_calib'])}, DIR {_f(c['dir_calib'])} on calibration",
        f"  {r['n_known_queries']} test photos of enrolled products: top-1 right {_pct(r['top1_accuracy'])}, "
        f"recognised {_pct(r['recognised'])}, misidentified {_pct(r['misidentified'])}, "
        f"rejected as unknown {_pct(r['rejected_known'])}",
        f"  {r['n_unknown_queries']} test photos of never-enrolled products: "
        f"rejected as unknown {_pct(r['unknown_rejected'])}, accepted as an enrolled product {_pct(r['unknown_accepted'])}",
    ]
    for product, u in r["per_unknown_product"].items():
        acc = ", ".join(f"{k} x{v}" for k, v in sorted(u["accepted_as"].items())) or "none"
        sib = ", ".join(u["enrolled_siblings"]) or "none"
        lines.append(f"    {product}: {u['rejected']}/{u['photos']} rejected; accepted as: {acc}; enrolled family siblings: {sib}")
    ops = r.get("operating_points", [])
    if ops:
        lines.append("  other thresholds (target FAR: known recognised / unknown rejected): " + ", ".join(
            f"{p['target_far']}: {_pct(p['recognised'])} / {_pct(p['unknown_rejected'])}" for p in ops))
    if "total" in t:
        lines.append(f"time: total {t['total']:.1f} s wall, {t['total_cpu']:.1f} s CPU")
    lines.append(f"report: {result.out_dir / 'report.md'}")
    return lines


def write_plots(result: Any, run_dir: Path, gallery_images: dict[str, str]) -> list[str]:
    """Copy the run's plots beside ``report.md`` and draw the query grid.

    Args:
        result: the :class:`itemrec.demo.DemoResult`; its ``files`` gains the PNGs' paths.
        run_dir: the training run's folder (its ``curves.png``, ``cmc.png``, ``val_far.png``,
            ``roc.png`` are copied when present).
        gallery_images: enrolled product -> its catalogue image path.

    Returns:
        The PNG file names written into ``result.out_dir``.
    """
    out = Path(result.out_dir)
    plots = []
    for name in RUN_PLOTS:
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, out / name)
            plots.append(name)
    plot_demo_queries(result, gallery_images, out / "queries.png")
    plots.append("queries.png")
    result.files.update({name: str(out / name) for name in plots})
    return plots


def write_markdown(result: Any, plots: list[str]) -> Path:
    """Write ``report.md`` into ``result.out_dir`` (the plots named in ``plots`` lie beside it).

    Args:
        result: the :class:`itemrec.demo.DemoResult`; its ``files`` gains ``report.md``.
        plots: the PNG names :func:`write_plots` wrote.

    Returns:
        The report's path.
    """
    path = Path(result.out_dir) / "report.md"
    path.write_text(_markdown(result, plots))
    result.files["report.md"] = str(path)
    return path


def _markdown(result: Any, plots: list[str]) -> str:
    m, d, r, c, s, g = result.metrics, result.dataset, result.recognition, result.calibration, result.settings, result.gallery
    t = result.timings
    lines = [
        "# itemrec demo report",
        "",
        f"Seed {s['seed']}{' (quick version)' if s['quick'] else ''}. Everything here was made offline from the "
        "embedded synthetic catalogue (`itemrec.data.synthetic`); no dataset or pretrained weights were used.",
        "",
        "## Data and split",
        "",
        f"{d['products']} products (in families of 1-3 flavour variants), one catalogue image and "
        f"{d['photos_per_product']} shelf photos each, {d['image_size']} px. Class-disjoint split: "
        f"{d['seen_products']} seen products for training ({d['train_images']} train / {d['val_images']} validation photos), "
        f"{d['unseen_products']} unseen products held out ({d['calib_images']} calibration / {d['test_images']} test photos).",
        "",
        "## Training",
        "",
        f"`{s['model']}`, {s['embedding_dim']}-d L2-normalised embedding, {s['loss']} loss, Adam lr {s['learning_rate']}, "
        f"{s['epochs']} epochs x {s['steps_per_epoch']} steps of {s['batch_size']} photos: "
        f"**{_f(t.get('train'), 1)} s** of training. Run folder: `run/` (config, model, history, metrics).",
        "",
        "![training curves](curves.png)" if "curves.png" in plots else "",
        "",
        "## Evaluation on the unseen products",
        "",
        "| metric | value |",
        "|---|---|",
        f"| CMC rank-1 vs catalogue images ({m['cmc']['n_draws']} draws of one photo per product) | "
        f"{_f(m['rank1'])} (95% interval {_f(m['rank1_ci'][0])}-{_f(m['rank1_ci'][1])}) |",
        f"| CMC rank-5 | {_f(m['rank5'])} |",
        f"| Recall@1 / Recall@5 (photos vs photos) | {_f(m['recall_at_1'])} / {_f(m['recall_at_5'])} |",
        f"| MAP@R | {_f(m['map_at_r'])} |",
        f"| ROC AUC (test pairs) | {_f(m.get('roc_auc'))} |",
    ]
    for key, v in m["verification"].items():
        lines.append(f"| VAL at FAR {key} (threshold {v['threshold']:.3f} fitted on calibration) | "
                     f"VAL {_f(v['val'])} at FAR {_f(v['far'], 4)} on test |")
    o = m["openset"]
    lines += [
        f"| open-set DIR at FAR {o['target_far']} ({o['n_enrolled_classes']} of {m['n_test_classes']} products enrolled) | "
        f"DIR {_f(o['dir'])} at FAR {_f(o['far'])} |",
        "",
        *(f"![{name[:-4]}]({name})" for name in ("cmc.png", "val_far.png", "roc.png") if name in plots),
        "",
        "## Gallery and recognition",
        "",
        f"Gallery `gallery/` (SQLite + FAISS, model fingerprint `{g['fingerprint_id']}`): {len(g['enrolled'])} unseen "
        f"products enrolled from their catalogue image and {s['enrol_photos']} calibration photo(s) each; "
        f"{len(g['unknown'])} never enrolled (nor seen by the calibration): "
        f"{', '.join(f'`{u}`' for u in g['unknown'])}. Integrity check: {'ok' if g['integrity_ok'] else g['problems']}.",
        "",
        f"Unknown threshold **{c['threshold']:.4f}** (cosine similarity), calibrated on the other {c['n_impostor']} calibration photos of "
        f"enrolled products (each searched against the other products) for FAR {c['target_far']}: FAR {_f(c['far_calib'])}, DIR {_f(c['dir_calib'])} there.",
        "",
        "| test photos | outcome |",
        "|---|---|",
        f"| {r['n_known_queries']} of enrolled products | top-1 right {_pct(r['top1_accuracy'])}; recognised "
        f"{_pct(r['recognised'])}, misidentified {_pct(r['misidentified'])}, rejected as unknown {_pct(r['rejected_known'])} |",
        f"| {r['n_unknown_queries']} of never-enrolled products | rejected as unknown {_pct(r['unknown_rejected'])}, "
        f"accepted as an enrolled product {_pct(r['unknown_accepted'])} |",
        "",
        "The trade-off behind the threshold (calibrated on the same photos for other target FARs, test photos decided again):",
        "",
        "| target FAR | threshold | FAR / DIR on calibration | known recognised | known rejected | unknown rejected |",
        "|---|---|---|---|---|---|",
        *(f"| {p['target_far']} | {p['threshold']:.3f} | {_f(p['far_calib'])} / {_f(p['dir_calib'])} | "
          f"{_pct(p['recognised'])} | {_pct(p['rejected_known'])} | {_pct(p['unknown_rejected'])} |"
          for p in r.get("operating_points", [])),
        "",
    ]
    for product, u in r["per_unknown_product"].items():
        acc = ", ".join(f"`{k}` x{v}" for k, v in sorted(u["accepted_as"].items())) or "nothing"
        sib = ", ".join(f"`{x}`" for x in u["enrolled_siblings"]) or "none"
        lines.append(f"- never-enrolled `{product}`: {u['rejected']} of {u['photos']} photos rejected as unknown; "
                     f"accepted as {acc}. Enrolled products of the same family: {sib}.")
    lines += ["", "![queries and their matches](queries.png)", "",
              f"Each row: a test photo (title green when the gallery's decision is right: its own product, or "
              f"*unknown* for a never-enrolled one), then the catalogue images of its top matches with their "
              f"cosine similarity (green frame: the right product). Threshold {c['threshold']:.3f}.", "", "| query | enrolled | decision | best match (similarity) |",
              "|---|---|---|---|"]
    for q in result.shown:
        lines.append(f"| `{q.product}` | {'yes' if q.enrolled else 'no'} | {q.decision or 'unknown'} "
                     f"{'(right)' if q.correct else '(wrong)'} | `{q.best_item}` ({q.best_similarity:.3f}) |")
    lines += ["", "## Timings (wall seconds)", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in t.items()]
    return "\n".join(lines) + "\n"
