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
    """Everything :func:`cluster_scene` computed, row ``i`` of each array = box ``box_ids[i]``.

    Attributes:
        image_path: the shelf photo.
        boxes: the boxes as clipped to the image, int pixels ``[id, x1, y1, x2, y2]``
            (``x2``/``y2`` exclusive).
        crops: (N, S, S, 3) uint8 fitted crops, S = ``crop_size``.
        embeddings: (N, D) float32 embeddings of the crops.
        clustering: the :class:`itemrec.clustering.ClusteringResult` (``labels``: cluster id
            per box, ``-1`` = noise).
        regions: cluster id -> its regions on the image, largest first.
        overlay_path: where the overlay was saved, or ``None``.
        params: the settings used (crop and closing settings plus the clustering's).
    """

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
        """The box ids, in row order."""
        return self.boxes["id"].tolist()

    @property
    def labels(self) -> np.ndarray:
        """(N,) int cluster id of each box (``-1`` = noise)."""
        return self.clustering.labels

    def labels_by_id(self) -> dict[str, int]:
        """The cluster of each box, by id.

        Returns:
            ``{box id: cluster}`` (``-1`` = noise).
        """
        return {str(i): int(l) for i, l in zip(self.box_ids, self.clustering.labels)}


# ----------------------------------------------------------------------------- regions
def closing_kernel_size(image_shape: tuple[int, ...], closing_scale: float) -> int:
    """Side of the square closing kernel: ``max(1, round(closing_scale * max(H, W)))``, made odd.

    Args:
        image_shape: the image's ``(H, W, ...)``.
        closing_scale: the kernel side as a fraction of the longer image side (≥ 0).

    Returns:
        The kernel side in pixels, odd, ≥ 1.

    Raises:
        ValueError: ``closing_scale`` < 0.
    """
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

    The closing (dilation then erosion, Serra 1982) uses a square kernel of side
    :func:`closing_kernel_size`: 1 % of the longer image side by default (33 px on the
    3280 px test shelf). That bridges gaps between facings of one product on a shelf but
    not the 50-70 px between shelf rows there (at 2 %, 66 px, one cluster's
    boxes on two shelf rows merged into a single region). Components are 8-connected; a
    region lists the boxes whose centre lies in it. Noise (``-1``) gets no region.

    Args:
        image_shape: the image's ``(H, W, ...)``.
        boxes: the N boxes (DataFrame or mapping, see :func:`itemrec.scene_boxes.boxes_frame`).
        labels: (N,) integer cluster id per box, ``-1`` = noise.
        closing_scale: the closing kernel's side as a fraction of the longer image side.

    Returns:
        ``{cluster: [Region, ...]}`` ordered by cluster id, regions largest first.

    Raises:
        ValueError: ``labels`` is not one integer per box, a box is empty, inverted or outside
            the image, or ``closing_scale`` < 0.
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
    :class:`itemrec.embedder.ImageEmbedder`.

    Args:
        backbone: a key of :data:`itemrec.models.backbones.BACKBONES`.
        weights: a local no-top weights file (default for MobileNetV2:
            :func:`itemrec.settings.local_weights`; required for other backbones).
        input_size: the side S in pixels the crops are fitted to.
        batch_size: inference batch size.

    Returns:
        A function taking ``uint8 (N, S, S, 3)`` and returning ``float32 (N, D)`` (D = 1280
        for MobileNetV2).

    Raises:
        ValueError: no ``weights`` for a backbone other than MobileNetV2, or an unknown backbone.
        FileNotFoundError: the weights file does not exist
            (:class:`itemrec.settings.DataNotFoundError` for the default one).
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
    """:func:`backbone_embed_fn` for the ImageNet MobileNetV2 (the frozen baseline of the scene tests).

    Args:
        weights: the local no-top weights file (default :func:`itemrec.settings.local_weights`).
        input_size: the side S in pixels.

    Returns:
        ``uint8 (N, S, S, 3)`` -> ``float32 (N, 1280)``.

    Raises:
        FileNotFoundError: the weights file does not exist.
    """
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

    The packed-scenes recipe of the module docstring: crops grown by ``pad`` px and fitted to
    squares, embedded, clustered with :func:`itemrec.clustering.cluster_embeddings` (HDBSCAN,
    Campello et al. 2013, then OPTICS, Ankerst et al. 1999, on its noise), regions from
    :func:`aggregate_clusters`, the overlay from :func:`itemrec.scene_draw.draw_overlay`.

    Args:
        image_path: the shelf photo.
        boxes: a JSON path (``{id: {x1, x2, y1, y2}}``), a DataFrame ``[id, x1, y1, x2, y2]``
            or a mapping, in pixels.
        embed_fn: maps ``uint8 (N, crop_size, crop_size, 3)`` to ``(N, D)`` features.
        crop_size: the side S of the fitted crops in pixels.
        pad: pixels added around each box before cropping.
        crop_mode: ``"pad"``, ``"crop"`` or ``"stretch"`` (see :func:`itemrec.scene_boxes.fit_crops`).
        min_cluster_size: HDBSCAN's smallest cluster (≥ 2).
        min_samples: HDBSCAN's ``min_samples`` (``None``: ``min_cluster_size``).
        optics_on_noise: run OPTICS on HDBSCAN's noise.
        closing_scale: the closing kernel as a fraction of the longer image side.
        out_path: where to save the overlay (``.jpg``, ``.png``, ...); ``None`` draws nothing.
        max_side: cap on the overlay's longer side in pixels.
        progress: a tqdm bar over the stages.
        **cluster_kwargs: more :func:`~itemrec.clustering.cluster_embeddings` arguments
            (``metric``, ``optics_xi``, ...).

    Returns:
        The :class:`SceneResult`.

    Raises:
        BadImageError: the photo cannot be read.
        FileNotFoundError: the boxes file does not exist.
        ValueError: no boxes, a malformed or out-of-image box, ``embed_fn`` output that is not
            (N, D), bad clustering parameters, or an overlay path with an unknown suffix.
        TypeError: ``boxes`` of an unsupported type.
        OSError: the overlay could not be written.
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
