"""Files for the TensorBoard Embedding Projector, written directly (no TensorBoard needed).

Layout (https://www.tensorflow.org/tensorboard/tensorboard_projector_plugin):
``tensors.tsv`` (one embedding per line, tab-separated), ``metadata.tsv`` (a header
line of column names, then one row per embedding), ``sprite.png`` (thumbnails in a
square grid, row-major, each ``single_image_dim`` pixels) and
``projector_config.pbtxt`` pointing at them. Load it with
``tensorboard --logdir OUT_DIR`` or at projector.tensorflow.org ("Load" the TSVs).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._common import load_image

MAX_SPRITE = 8192  # the projector's largest sprite side


@dataclass
class ProjectorExport:
    """The files :func:`export_projector` wrote.

    Attributes:
        out_dir: the folder holding them.
        tensors: ``tensors.tsv``, one embedding per line.
        metadata: ``metadata.tsv``, a header then one ``label<TAB>class_name`` row per embedding.
        config: ``projector_config.pbtxt``.
        sprite: ``sprite.png``, or ``None`` when no images were given.
        thumb_size: the side in pixels of each sprite thumbnail, or ``None`` without a sprite.
    """

    out_dir: Path
    tensors: Path
    metadata: Path
    config: Path
    sprite: Path | None
    thumb_size: int | None


def export_projector(
    embeddings: np.ndarray,
    labels: np.ndarray,
    images: Sequence | None,
    out_dir: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    thumb_size: int = 64,
    tensor_name: str = "embeddings",
) -> ProjectorExport:
    """Write tensors.tsv, metadata.tsv, sprite.png (when ``images``) and projector_config.pbtxt.

    Values are written with 6 significant digits. The sprite is a ⌈√n⌉ × ⌈√n⌉ grid of
    thumbnails, each ``min(thumb_size, 8192 // ⌈√n⌉)`` pixels so the sheet stays within the
    projector's 8192-pixel limit.

    Args:
        embeddings: (n, d) array.
        labels: (n,) labels; with ``class_names`` they must be ints indexing it.
        images: n images (arrays or file paths) for the sprite, or ``None`` for none.
        out_dir: the folder to write to (created).
        class_names: the name of each class id, written next to the label (tabs and
            newlines replaced by spaces).
        thumb_size: the wanted thumbnail side in pixels (default 64).
        tensor_name: the tensor's name in the projector.

    Returns:
        The :class:`ProjectorExport` of the written paths.

    Raises:
        ValueError: ``embeddings`` is not 2-D, ``labels`` or ``images`` differ from it in
            length, too many images to fit the sprite, or an image array has a bad shape.
        FileNotFoundError: an image path does not exist.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be (n, dim); got shape {emb.shape}")
    if len(labels) != len(emb):
        raise ValueError(f"{len(emb)} embeddings but {len(labels)} labels")
    if images is not None and len(images) != len(emb):
        raise ValueError(f"{len(emb)} embeddings but {len(images)} images")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = out / "tensors.tsv"
    np.savetxt(tensors, emb, delimiter="\t", fmt="%.6g")
    metadata = out / "metadata.tsv"
    with metadata.open("w") as fh:
        fh.write("label\tclass_name\n")
        for lab in labels:
            name = class_names[int(lab)] if class_names is not None else str(lab)
            fh.write(f"{lab}\t{str(name).replace(chr(9), ' ').replace(chr(10), ' ')}\n")
    sprite_path, size = None, None
    if images is not None:
        from PIL import Image

        grid = math.ceil(math.sqrt(len(emb)))
        size = int(min(thumb_size, MAX_SPRITE // grid))
        if size < 1:
            raise ValueError(f"{len(emb)} images do not fit a {MAX_SPRITE}px sprite")
        sheet = np.full((grid * size, grid * size, 3), 255, dtype=np.uint8)
        for i, item in enumerate(images):
            r, c = divmod(i, grid)
            sheet[r * size:(r + 1) * size, c * size:(c + 1) * size] = load_image(item, size)
        sprite_path = out / "sprite.png"
        Image.fromarray(sheet).save(sprite_path)
    config = out / "projector_config.pbtxt"
    lines = [
        "embeddings {",
        f'  tensor_name: "{tensor_name}"',
        f'  tensor_path: "{tensors.name}"',
        f'  metadata_path: "{metadata.name}"',
    ]
    if sprite_path is not None:
        lines += ["  sprite {", f'    image_path: "{sprite_path.name}"',
                  f"    single_image_dim: {size}", f"    single_image_dim: {size}", "  }"]
    lines.append("}")
    config.write_text("\n".join(lines) + "\n")
    return ProjectorExport(out, tensors, metadata, config, sprite_path, size)
