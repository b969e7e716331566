"""A Keras callback that draws the deep features every few epochs and makes an animated GIF.

In the spirit of the 2-D feature figures of Wen et al., "A Discriminative Feature
Learning Approach for Deep Face Recognition" (center loss, ECCV 2016): watch the
classes separate (softmax) or contract to their centres (center loss) as training runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from ._common import maybe_save, new_figure
from .features import draw_features, project_2d


class DeepFeatureMonitor(keras.callbacks.Callback):
    """Write ``frame_EEE.png`` every ``every`` epochs and ``gif_name`` at the end of training.

    Features with more than two dimensions are projected with ``method``, fitted anew on each
    frame, unless ``projection`` names an ``.npz`` file: then one PCA is fitted on the first
    frame drawn, saved there (or read from there when it exists, e.g. written by an earlier
    training phase) and applied to every frame, so the frames share their axes and compare.

    Args:
        data: the n inputs embedded for every frame (whatever ``embed_fn`` takes).
        labels: (n,) class labels colouring the points.
        embed_fn: a Keras model (its ``predict`` is used), a callable mapping ``data``
            to an (n, d) array, or ``None`` for the model being trained.
        out_dir: the folder the frames and the GIF are written to (created).
        every: draw a frame every this many epochs (≥ 1).
        method: ``"pca"`` or ``"tsne"`` (see :func:`itemrec.plots.project_2d`).
        gif_name: the GIF's file name in ``out_dir``.
        duration_ms: the time per GIF frame, in milliseconds.
        class_names: the legend name of each class id.
        projection: an ``.npz`` file holding (or to hold) one fixed PCA, as described above.
        title: precedes the epoch in each frame's title.

    Raises:
        ValueError: ``every`` < 1, or ``data`` and ``labels`` differ in length.
    """

    def __init__(
        self,
        data: np.ndarray,
        labels: np.ndarray,
        embed_fn: Callable[[np.ndarray], np.ndarray] | keras.Model | None,
        out_dir: str | os.PathLike,
        every: int = 1,
        method: str = "pca",
        gif_name: str = "features.gif",
        duration_ms: int = 500,
        class_names: list[str] | None = None,
        projection: str | os.PathLike | None = None,
        title: str = "",
    ) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be ≥ 1; got {every}")
        labels = np.asarray(labels)
        if len(labels) != len(data):
            raise ValueError(f"{len(data)} samples but {len(labels)} labels")
        self.data = data
        self.labels = labels
        self.embed_fn = embed_fn
        self.out_dir = Path(out_dir)
        self.every = every
        self.method = method
        self.gif_name = gif_name
        self.duration_ms = duration_ms
        self.class_names = class_names
        self.projection = Path(projection) if projection is not None else None
        self.title = title
        self.frames: list[Path] = []
        self.gif_path: Path | None = None

    def _embed(self) -> np.ndarray:
        fn = self.embed_fn if self.embed_fn is not None else self.model
        if fn is None:
            raise ValueError("DeepFeatureMonitor needs embed_fn or to be attached to a model")
        if isinstance(fn, keras.Model):
            out = fn.predict(self.data, verbose=0)
        else:
            out = fn(self.data)
        out = np.asarray(keras.ops.convert_to_numpy(out) if not isinstance(out, np.ndarray) else out)
        if out.ndim != 2 or len(out) != len(self.labels):
            raise ValueError(f"embed_fn must return ({len(self.labels)}, dim) features; got shape {out.shape}")
        return out

    def draw(self, epoch: int) -> Path:
        """Draw and save the frame of ``epoch`` (0-based, shown 1-based) as ``frame_EEE.png``.

        Args:
            epoch: the 0-based epoch.

        Returns:
            The frame's path (also appended to ``frames``).

        Raises:
            ValueError: there is neither ``embed_fn`` nor a model attached, the embeddings are
                not (n, d), the saved ``projection`` was fitted on another width, or
                :func:`itemrec.plots.project_2d` refuses the features.
        """
        feats = self._embed()
        xy = self._fixed_projection(feats) if self.projection is not None else project_2d(feats, self.method)
        fig = new_figure(5.0, 4.6)
        ax = fig.add_subplot(1, 1, 1)
        draw_features(ax, xy, self.labels, self.class_names)
        ax.set_title(f"{self.title}, epoch {epoch + 1}" if self.title else f"epoch {epoch + 1}")
        path = self.out_dir / f"frame_{epoch + 1:03d}.png"
        maybe_save(fig, path, dpi=80)
        self.frames.append(path)
        return path

    def _fixed_projection(self, feats: np.ndarray) -> np.ndarray:
        """``feats`` (n, d) on the two principal axes fitted once (and kept in ``self.projection``)."""
        if self.projection.is_file():
            with np.load(self.projection) as saved:
                mean, axes = saved["mean"], saved["components"]
            if axes.shape[1] != feats.shape[1]:
                raise ValueError(f"{self.projection} projects {axes.shape[1]}-d features; these are {feats.shape[1]}-d")
        else:
            from sklearn.decomposition import PCA

            pca = PCA(n_components=2, random_state=0).fit(np.asarray(feats, np.float64))
            mean, axes = pca.mean_, pca.components_
            self.projection.parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.projection, mean=mean, components=axes)
        return (np.asarray(feats, np.float64) - mean) @ axes.T

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.every == 0:
            self.draw(epoch)

    def on_train_end(self, logs: dict | None = None) -> None:
        self.write_gif()

    def write_gif(self) -> Path | None:
        """Assemble the frames written so far into an animated GIF (PIL), looping forever.

        Frames of another size than the first are resized to it.

        Returns:
            The GIF's path (also kept as ``gif_path``), or ``None`` when no frame was drawn.
        """
        from PIL import Image

        if not self.frames:
            return None
        images = [Image.open(p).convert("RGB") for p in self.frames]
        size = images[0].size
        images = [im if im.size == size else im.resize(size) for im in images]
        self.gif_path = self.out_dir / self.gif_name
        images[0].save(self.gif_path, save_all=True, append_images=images[1:], duration=self.duration_ms, loop=0)
        return self.gif_path
