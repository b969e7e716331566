"""``itemrec scene``: group the products of a packed shelf photo.

``itemrec scene cluster IMAGE BOXES.json --out overlay.jpg`` crops every box,
embeds the crops (a trained embedding model with ``--model``, or a frozen
pretrained backbone), clusters them (HDBSCAN, then OPTICS on the noise) and
draws one colour per product group. Heavy libraries load inside the handler.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from itemrec.cli import CLIError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scene`` command group (``scene cluster``) to the ``itemrec`` parser.

    Args:
        subparsers: the top-level parser's ``add_subparsers()`` action.
    """
    parser = subparsers.add_parser(
        "scene",
        help="group identical products in a shelf photo",
        description="Cluster the product boxes of a packed shelf scene without knowing how many products there are.",
    )
    sub = parser.add_subparsers(dest="scene_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=lambda args: _no_subcommand(parser))

    p = sub.add_parser(
        "cluster",
        help="crop, embed and cluster the boxes of IMAGE; draw the groups",
        description=(
            "Crop every box of BOXES.json ({id: {x1, x2, y1, y2}}) from IMAGE, embed the crops, cluster the "
            "embeddings (HDBSCAN on cosine distances, then OPTICS on the points HDBSCAN left as noise) and "
            "save an overlay with one colour per cluster."
        ),
    )
    p.add_argument("image", type=Path, help="shelf photo (JPEG/PNG)")
    p.add_argument("boxes", type=Path, help="boxes JSON: {id: {x1, x2, y1, y2}} in pixels")
    emb = p.add_mutually_exclusive_group()
    emb.add_argument("--model", type=Path, help="trained embedding model (.keras, with its .embedder.json sidecar)")
    emb.add_argument(
        "--backbone", default=None, help="frozen pretrained backbone with GAP features (default: mobilenet_v2)"
    )
    p.add_argument("--weights", type=Path, help="local no-top weights file for --backbone (default: ITEMREC_WEIGHTS)")
    p.add_argument("--crop-size", type=int, default=None, help="crop side in pixels (default 160; --model: its input size)")
    p.add_argument(
        "--crop-mode", choices=("pad", "crop", "stretch"), default="pad", help="fit crops to squares by (default: pad)"
    )
    p.add_argument("--pad", type=int, default=0, help="grow every box by this many pixels before cropping")
    p.add_argument("--min-cluster-size", type=int, default=2, help="HDBSCAN min_cluster_size (default 2)")
    p.add_argument("--min-samples", type=int, default=None, help="HDBSCAN min_samples (default: min cluster size)")
    p.add_argument("--no-optics", action="store_true", help="skip the OPTICS pass on HDBSCAN's noise")
    p.add_argument("--closing-scale", type=float, default=0.01, help="closing kernel side as a fraction of the long image side (default 0.01)")
    p.add_argument("--out", type=Path, required=True, help="overlay image to write (.jpg or .png)")
    p.add_argument("--max-side", type=int, default=None, help="scale the overlay's long side down to this many px")
    p.add_argument("--json", type=Path, default=None, help="write {box id: cluster} and the regions here")
    p.add_argument("--truth", type=Path, default=None, help="hand labels JSON ({'labels': {id: product}}) to score against")
    p.set_defaults(handler=cluster_command)


def _no_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _embed_fn(args: argparse.Namespace):
    """(embed_fn, crop_size, description) from --model or --backbone/--weights."""
    if args.model is not None:
        if args.weights is not None:
            raise CLIError("--weights goes with --backbone; a --model file carries its own weights")
        if not args.model.exists():  # a FIFO or folder exists: the loader says what it is
            raise CLIError(f"embedding model {args.model} not found")
        from itemrec.embedder import ImageEmbedder

        try:
            embedder = ImageEmbedder.load(args.model)
        except (OSError, ValueError) as exc:  # the shared loader's message names the problem and the fix
            raise CLIError(str(exc)) from exc
        size = embedder.image_size[0]
        if args.crop_size is not None and args.crop_size != size:
            raise CLIError(f"--crop-size {args.crop_size} differs from the model's input size {size}; leave it out")
        return embedder.embed_arrays, size, f"model {args.model}"

    from itemrec import settings
    from itemrec.models.backbones import BACKBONES
    from itemrec.scene import backbone_embed_fn

    backbone = args.backbone or "mobilenet_v2"
    if backbone not in BACKBONES or backbone == "small_cnn":
        raise CLIError(f"unknown pretrained backbone {backbone!r}; choose one of {sorted(set(BACKBONES) - {'small_cnn'})}")
    weights = args.weights
    if weights is None:
        if backbone != "mobilenet_v2":
            raise CLIError(f"give --weights PATH (a local no-top weights file) for backbone {backbone!r}")
        try:
            weights = settings.local_weights()
        except settings.DataNotFoundError as exc:
            raise CLIError(str(exc)) from exc
    if not Path(weights).is_file():
        raise CLIError(f"weights file {weights} not found")
    size = args.crop_size or 160
    if size < 32:
        raise CLIError(f"--crop-size must be at least 32 for {backbone}, got {size}")
    return backbone_embed_fn(backbone, weights, size), size, f"frozen {backbone} ({Path(weights).name})"


def cluster_command(args: argparse.Namespace) -> int:
    """``itemrec scene cluster``: crop, embed and cluster the boxes of a shelf photo; draw the groups.

    Prints the cluster counts (and ARI, NMI and purity against ``--truth``), writes the
    overlay to ``--out`` and, with ``--json``, the labels, regions and settings.

    Args:
        args: the parsed arguments of ``scene cluster``.

    Returns:
        0.

    Raises:
        CLIError: a bad option (``--min-cluster-size`` < 2, ``--pad`` < 0, an ``--out``
            suffix other than .jpg/.jpeg/.png, ``--weights`` with ``--model``, a crop size
            that differs from the model's or is below 32), a missing image, boxes, model,
            weights or truth file, unreadable boxes or truth, truth lacking a box, an
            unreadable photo, or a clustering error.
    """
    if args.min_cluster_size < 2:
        raise CLIError(f"--min-cluster-size must be at least 2, got {args.min_cluster_size}")
    if args.pad < 0:
        raise CLIError(f"--pad must be >= 0, got {args.pad}")
    for path, what in ((args.image, "image"), (args.boxes, "boxes file")):
        if not path.is_file():
            raise CLIError(f"{what} {path} not found")
    if args.out.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        raise CLIError(f"--out {args.out} must end in .jpg, .jpeg or .png")
    truth = _read_truth(args.truth) if args.truth is not None else None

    from itemrec.data.images import BadImageError
    from itemrec.scene import cluster_scene, read_boxes_json

    try:
        boxes = read_boxes_json(args.boxes)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    if truth is not None:
        missing = sorted(set(boxes["id"]) - set(truth))
        if missing:
            raise CLIError(f"--truth {args.truth} has no label for boxes {missing[:5]}")
    embed_fn, size, described = _embed_fn(args)
    try:
        result = cluster_scene(
            args.image,
            boxes,
            embed_fn,
            crop_size=size,
            pad=args.pad,
            crop_mode=args.crop_mode,
            min_cluster_size=args.min_cluster_size,
            min_samples=args.min_samples,
            optics_on_noise=not args.no_optics,
            closing_scale=args.closing_scale,
            out_path=args.out,
            max_side=args.max_side,
            progress=True,
        )
    except BadImageError as exc:
        raise CLIError(str(exc)) from exc
    except ValueError as exc:
        raise CLIError(f"{args.boxes}: {exc}") from exc

    c = result.clustering
    print(f"{len(result.box_ids)} boxes embedded with {described} at {size} px")
    print(
        f"{c.n_clusters} clusters ({c.n_hdbscan_clusters} HDBSCAN + {c.n_optics_clusters} OPTICS), "
        f"{c.n_noise} noise boxes"
    )
    summary: dict = {}
    if truth is not None:
        import numpy as np

        from itemrec.clustering import clustering_scores

        s = clustering_scores(np.array([truth[i] for i in result.box_ids]), c.labels)
        print(f"against {args.truth}: ARI {s.ari:.3f}  NMI {s.nmi:.3f}  purity {s.purity:.3f} ({s.n_true_classes} products)")
        summary = {"ari": s.ari, "nmi": s.nmi, "purity": s.purity}
    print(f"overlay written to {args.out}")
    if args.json is not None:
        payload = {
            "image": str(args.image),
            "boxes": str(args.boxes),
            "embedding": described,
            "params": result.params,
            "n_clusters": c.n_clusters,
            "n_noise": c.n_noise,
            "labels": result.labels_by_id(),
            "from_optics": {i: bool(f) for i, f in zip(result.box_ids, c.from_optics)},
            "regions": {
                str(k): [{"bbox": list(r.bbox), "box_ids": r.box_ids, "area": r.area} for r in regs]
                for k, regs in result.regions.items()
            },
            **({"scores": summary} if summary else {}),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=1))
        print(f"labels written to {args.json}")
    return 0


def _read_truth(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise CLIError(f"--truth file {path} not found")
    try:
        raw = json.loads(path.read_text())
    except ValueError as exc:
        raise CLIError(f"--truth file {path} is not valid JSON: {exc}") from exc
    labels = raw.get("labels", raw) if isinstance(raw, dict) else None
    if not isinstance(labels, dict) or not all(isinstance(v, (str, int)) for v in labels.values()):
        raise CLIError(f"--truth file {path} must hold {{'labels': {{box id: product}}}} or {{box id: product}}")
    return {str(k): str(v) for k, v in labels.items()}
