"""Grouping the products of a packed shelf scene.

The packed-scenes recipe (github.com/BCuan/embedding-clustering): embed each
detected product crop, cluster the embeddings without knowing how many
products there are (:func:`itemrec.clustering.cluster_embeddings`: HDBSCAN,
then OPTICS on its noise), and draw each product's region on the shelf by
aggregating its boxes: the union of a cluster's boxes, a morphological
closing (dilation then erosion, Serra 1982) with a kernel relative to the
image size to bridge the small gaps between neighbouring facings, and the
connected components of the result as that product's regions.

:func:`cluster_scene` does all of it in one call; :func:`draw_overlay`
(in :mod:`itemrec.scene_draw`) draws and saves the picture.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from itemrec.clustering import ClusteringResult, cluster_embeddings
from itemrec.scene_boxes import (  # noqa: F401  (re-exported: the scene's public types and box helpers)
    BOX_COLUMNS,
    Region,
    _check_labels,
    boxes_frame,
    clip_boxes,
    crop_boxes,
    fit_crops,
    read_boxes_json,
)
from itemrec.scene_draw import draw_overlay, palette  # noqa: F401  (re-exported)

EmbedFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class SceneResult:
    """Everything :func:`cluster_scene` computed, row ``i`` of each array = box ``box_ids[i]``."""

    image_path: Path
    boxes: pd.DataFrame
    crops: np.ndarray
    embeddings: np.ndarray
    clustering: ClusteringResult
    regions: dict[int, list[Region]]
    overlay_path: Path | None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def box_ids(self) -> list[str]:
        return self.boxes["id"].tolist()

    @property
    def labels(self) -> np.ndarray:
        return self.clustering.labels

    def labels_by_id(self) -> dict[str, int]:
        """``{box id: cluster}`` (``-1`` = noise)."""
        return {str(i): int(l) for i, l in zip(self.box_ids, self.clustering.labels)}


# ----------------------------------------------------------------------------- regions
def closing_kernel_size(image_shape: tuple[int, ...], closing_scale: float) -> int:
    """Side of the square closing kernel: ``max(1, round(closing_scale * max(H, W)))``, made odd."""
    if closing_scale < 0:
        raise ValueError(f"closing_scale must be >= 0, got {closing_scale}")
    k = max(1, int(round(closing_scale * max(int(image_shape[0]), int(image_shape[1])))))
    return k if k % 2 else k + 1


def aggregate_clusters(
    image_shape: tuple[int, ...],
    boxes: pd.DataFrame | Mapping,
    labels: np.ndarray,
    closing_scale: float = 0.01,
) -> dict[int, list[Region]]:
    """Regions of each cluster: union of its boxes, closed, split into connected components.

    The closing uses a square kernel of side :func:`closing_kernel_size`:
    1 % of the longer image side by default (33 px on the 3280 px test
    shelf). That bridges gaps between facings of one product on a shelf but
    not the 50-70 px between shelf rows there (at 2 %, 66 px, one cluster's
    boxes on two shelf rows merged into a single region).
    Noise (``-1``) gets no region. Returns ``{cluster: [Region, ...]}``
    ordered by cluster id, regions largest first.
    """
    import cv2

    h, w = int(image_shape[0]), int(image_shape[1])
    clipped = clip_boxes(boxes, (h, w))
    labels = _check_labels(labels, len(clipped))
    k = closing_kernel_size((h, w), closing_scale)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    cx = ((clipped["x1"] + clipped["x2"]) // 2).to_numpy()
    cy = ((clipped["y1"] + clipped["y2"]) // 2).to_numpy()
    ids = clipped["id"].to_numpy()
    regions: dict[int, list[Region]] = {}
    for cluster in sorted(set(labels[labels >= 0].tolist())):
        members = np.flatnonzero(labels == cluster)
        sub = clipped.iloc[members]
        # Work inside the cluster's bounding box grown by the kernel, not the whole image.
        gx1 = max(0, int(sub["x1"].min()) - k)
        gy1 = max(0, int(sub["y1"].min()) - k)
        gx2 = min(w, int(sub["x2"].max()) + k)
        gy2 = min(h, int(sub["y2"].max()) + k)
        canvas = np.zeros((gy2 - gy1, gx2 - gx1), dtype=np.uint8)
        for r in sub.itertuples(index=False):
            canvas[r.y1 - gy1 : r.y2 - gy1, r.x1 - gx1 : r.x2 - gx1] = 1
        if k > 1:
            # Pad so the closing does not treat the canvas border as foreground-free edge artefacts.
            padded = cv2.copyMakeBorder(canvas, k, k, k, k, cv2.BORDER_CONSTANT, value=0)
            closed = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, kernel)[k:-k, k:-k]
        else:
            closed = canvas
        n_comp, comp = cv2.connectedComponents(closed, connectivity=8)
        found: list[Region] = []
        for c in range(1, n_comp):
            mask = comp == c
            ys, xs = np.nonzero(mask)
            bx1, by1, bx2, by2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            local = mask[by1:by2, bx1:bx2]
            contours, _ = cv2.findContours(local.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            contour = max(contours, key=cv2.contourArea) + np.array([bx1 + gx1, by1 + gy1], dtype=np.int32)
            inside = [
                str(ids[m])
                for m in members
                if 0 <= cy[m] - gy1 < mask.shape[0] and 0 <= cx[m] - gx1 < mask.shape[1] and mask[cy[m] - gy1, cx[m] - gx1]
            ]
            found.append(
                Region(
                    cluster=int(cluster),
                    bbox=(bx1 + gx1, by1 + gy1, bx2 + gx1, by2 + gy1),
                    mask=local.copy(),
                    contour=contour.astype(np.int32),
                    box_ids=inside,
                    area=int(local.sum()),
                )
            )
        regions[int(cluster)] = sorted(found, key=lambda r: -r.area)
    return regions


# ----------------------------------------------------------------------------- embedding
def backbone_embed_fn(
    backbone: str = "mobilenet_v2", weights: str | os.PathLike | None = None, input_size: int = 160, batch_size: int = 32
) -> EmbedFn:
    """A frozen pretrained backbone with global average pooling as ``embed_fn``.

    :func:`itemrec.models.embedding.build_feature_extractor` (raw pixels ->
    the backbone's own preprocessing -> frozen backbone -> GAP) wrapped in an
    :class:`itemrec.embedder.ImageEmbedder`. ``weights``: a local no-top
    weights file (default for MobileNetV2: :func:`itemrec.settings.local_weights`).
    Takes ``uint8 (N, S, S, 3)`` and returns ``float32 (N, D)`` (1280 for MobileNetV2).
    """
    from itemrec import settings
    from itemrec.embedder import ImageEmbedder
    from itemrec.models.embedding import build_feature_extractor

    if weights is None:
        if backbone != "mobilenet_v2":
            raise ValueError(f"give the local weights file for backbone {backbone!r}")
        weights = settings.local_weights()
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{backbone} weights file not found: {path}")
    model = build_feature_extractor(backbone, input_size, str(path))
    return ImageEmbedder(model, input_size, batch_size=batch_size).embed_arrays


def mobilenet_embed_fn(weights: str | os.PathLike | None = None, input_size: int = 160) -> EmbedFn:
    """:func:`backbone_embed_fn` for the ImageNet MobileNetV2 (the frozen baseline of the scene tests)."""
    return backbone_embed_fn("mobilenet_v2", weights, input_size)


# ----------------------------------------------------------------------------- one call
def cluster_scene(
    image_path: str | os.PathLike,
    boxes: str | os.PathLike | pd.DataFrame | Mapping,
    embed_fn: EmbedFn,
    crop_size: int = 160,
    pad: int = 0,
    crop_mode: str = "pad",
    min_cluster_size: int = 2,
    min_samples: int | None = None,
    optics_on_noise: bool = True,
    closing_scale: float = 0.01,
    out_path: str | os.PathLike | None = None,
    max_side: int | None = None,
    progress: bool = False,
    **cluster_kwargs: Any,
) -> SceneResult:
    """Crop, embed, cluster, aggregate and (with ``out_path``) draw a shelf scene.

    ``boxes`` is a JSON path (``{id: {x1, x2, y1, y2}}``), a DataFrame
    ``[id, x1, y1, x2, y2]`` or a mapping. ``embed_fn`` maps
    ``uint8 (N, crop_size, crop_size, 3)`` to ``(N, D)`` features. Crops are
    grown by ``pad`` px and fitted to squares with ``crop_mode``. Clustering
    is :func:`itemrec.clustering.cluster_embeddings` (cosine) with the given
    parameters; regions are :func:`aggregate_clusters`; the overlay
    (:func:`draw_overlay`, long side capped at ``max_side``) is saved to
    ``out_path``. ``progress`` shows a tqdm bar over the stages.
    """
    from tqdm.auto import tqdm

    from itemrec.data.images import read_image

    bar = tqdm(total=5, desc="scene", unit="step", disable=not progress)
    bar.set_postfix_str("reading")

    image_path = Path(image_path)
    image = read_image(image_path)
    if isinstance(boxes, (str, os.PathLike)):
        frame = read_boxes_json(boxes)
    else:
        frame = boxes_frame(boxes)
    if len(frame) == 0:
        raise ValueError(f"no boxes given for {image_path}")
    frame = clip_boxes(frame, image.shape)
    crops = fit_crops(crop_boxes(image, frame, pad=pad), crop_size, crop_mode)
    bar.update()
    bar.set_postfix_str(f"embedding {len(crops)} crops")
    emb = np.asarray(embed_fn(crops), dtype=np.float32)
    bar.update()
    bar.set_postfix_str("clustering")
    if emb.ndim != 2 or emb.shape[0] != len(frame):
        raise ValueError(f"embed_fn returned shape {emb.shape} for {len(frame)} crops; expected (N, D)")
    result = cluster_embeddings(
        emb, min_cluster_size=min_cluster_size, min_samples=min_samples, optics_on_noise=optics_on_noise, **cluster_kwargs
    )
    bar.update()
    bar.set_postfix_str("regions")
    regions = aggregate_clusters(image.shape, frame, result.labels, closing_scale=closing_scale)
    bar.update()
    bar.set_postfix_str("drawing")
    overlay_path = None
    if out_path is not None:
        draw_overlay(image, frame, result.labels, regions, out_path, max_side=max_side)
        overlay_path = Path(out_path)
    bar.update()
    bar.close()
    params = dict(crop_size=crop_size, pad=pad, crop_mode=crop_mode, closing_scale=closing_scale, **result.params)
    return SceneResult(image_path, frame, crops, emb, result, regions, overlay_path, params)
