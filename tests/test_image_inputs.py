"""One decode path: training pipeline, embedding, gallery and service all see the same pixels.

Every case is a generated file: PNG/JPEG/WebP/TIFF with EXIF orientations 2-8, PNG
``tRNS`` colour keys at several bit depths (written byte by byte here, not by Pillow),
and a JPEG whose header and end marker are intact but whose scan data is damaged.
Expected pixels are computed with numpy from the stored array, independently of Pillow.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from itemrec.data.images import BadImageError, decode_image, fit_image, load_images, read_image
from itemrec.data.probe import probe_image

tf = pytest.importorskip("tensorflow")
from itemrec.data.pipeline import make_dataset, make_pk_dataset  # noqa: E402

# stored 6 high x 8 wide, every pixel distinct, so any wrong flip/rotation shows
STORED = np.stack([*np.meshgrid(np.arange(6) * 40, np.arange(8) * 30, indexing="ij"), np.full((6, 8), 77)], -1).astype(np.uint8)

# EXIF orientation -> how the stored array looks when displayed upright (TIFF/EXIF 2.3 spec)
UPRIGHT = {
    2: lambda a: a[:, ::-1],                          # mirrored left-right
    3: lambda a: a[::-1, ::-1],                       # rotated 180
    4: lambda a: a[::-1],                             # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),                # mirrored along the main diagonal
    6: lambda a: np.rot90(a, -1),                     # rotate 90 clockwise to display
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),    # mirrored along the anti-diagonal
    8: lambda a: np.rot90(a, 1),                      # rotate 90 counter-clockwise to display
}


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _save(path, arr: np.ndarray, fmt: str, orientation: int):
    kwargs = {"PNG": {}, "WEBP": {"lossless": True}, "TIFF": {}, "JPEG": {"quality": 100, "subsampling": 0}}[fmt]
    Image.fromarray(arr).save(path, format=fmt, exif=_exif(orientation), **kwargs)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(rows: list[bytes], width: int, depth: int, colour_type: int, trns: bytes | None = None) -> bytes:
    """A PNG written byte by byte (filter 0 on every row): IHDR, optional tRNS, IDAT, IEND."""
    ihdr = struct.pack(">IIBBBBB", width, len(rows), depth, colour_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    body = _chunk(b"IHDR", ihdr) + (_chunk(b"tRNS", trns) if trns is not None else b"") + _chunk(b"IDAT", zlib.compress(raw))
    return b"\x89PNG\r\n\x1a\n" + body + _chunk(b"IEND", b"")


def _all_paths_agree(paths, size=16):
    """Decode ``paths`` through every consumer; assert they agree exactly; return the fitted images."""
    ref = np.stack([fit_image(read_image(p), size, "pad") for p in paths])
    imgs, keep, skipped = load_images(paths, size)  # embedding, gallery enrolment, feature cache
    assert skipped == [] and keep.tolist() == list(range(len(paths)))
    np.testing.assert_array_equal(imgs, ref)
    uploads = np.stack([fit_image(decode_image(open(p, "rb").read()), size, "pad") for p in paths])  # service
    np.testing.assert_array_equal(uploads, ref)
    x = np.concatenate([b[0].numpy() for b in make_dataset(paths, np.arange(len(paths)), size, batch_size=4)])
    np.testing.assert_array_equal(x, ref.astype(np.float32))  # the tf.data training pipeline
    return ref


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF", "JPEG"])
def test_exif_orientation_2_to_8_in_every_format_and_path(tmp_path, fmt):
    paths = [_save(tmp_path / f"o{o}.{fmt.lower()}", STORED, fmt, o) for o in range(2, 9)]
    tol = 3 if fmt == "JPEG" else 0  # JPEG quality 100, 4:4:4: within a few levels
    for o, p in zip(range(2, 9), paths):
        got = read_image(p)
        want = UPRIGHT[o](STORED)
        assert got.shape == want.shape, (fmt, o)
        assert np.abs(got.astype(int) - want).max() <= tol, (fmt, o)
    _all_paths_agree(paths)


def test_png_exif_chunk_is_read_by_the_pk_pipeline(tmp_path):
    orientations = (6, 6, 8, 8)  # class 0: orientation 6, class 1: orientation 8
    paths = [_save(tmp_path / f"o{i}.png", STORED, "PNG", o) for i, o in enumerate(orientations)]
    for cache in (True, False):
        x, y = next(iter(make_pk_dataset(paths, [0, 0, 1, 1], 12, P=2, K=2, n_batches=1, seed=0, cache=cache)))
        assert sorted(y.numpy().tolist()) == [0, 0, 1, 1]
        for img, label in zip(x.numpy(), y.numpy()):
            want = fit_image(UPRIGHT[(6, 8)[label]](STORED).copy(), 12, "pad")
            np.testing.assert_array_equal(img, want.astype(np.float32))


def _key_cases(tmp_path):
    """(path, expected RGB) for colour-keyed PNGs: the keyed pixels must come out white (255)."""
    out = []
    # 8-bit truecolour, key (10, 20, 30): row 0 = [key, (200, 100, 50)]
    rows = [bytes([10, 20, 30, 200, 100, 50]), bytes([200, 100, 50, 10, 20, 30])]
    want = np.array([[[255] * 3, [200, 100, 50]], [[200, 100, 50], [255] * 3]], np.uint8)
    out.append(("rgb8", _png(rows, 2, 8, 2, struct.pack(">HHH", 10, 20, 30)), want))
    # 8-bit grey, key 7: [7, 120] / [120, 7]
    want = np.array([[[255] * 3, [120] * 3], [[120] * 3, [255] * 3]], np.uint8)
    out.append(("grey8", _png([bytes([7, 120]), bytes([120, 7])], 2, 8, 0, struct.pack(">H", 7)), want))
    # 16-bit grey, key 0x0102: samples 0x0102 (keyed) and 0x0101 (kept: 257 -> 257*255/65535 = 1)
    rows = [struct.pack(">HH", 0x0102, 0x0101)]
    out.append(("grey16", _png(rows, 2, 16, 0, struct.pack(">H", 0x0102)), np.array([[[255] * 3, [1] * 3]], np.uint8)))
    # 2-bit grey, key 1 (displayed as 1 * 85 = 85): samples 1, 2, 3, 0 -> white, 170, 255, 0
    out.append(("grey2", _png([bytes([0b01_10_11_00])], 4, 2, 0, struct.pack(">H", 1)),
                np.array([[[255] * 3, [170] * 3, [255] * 3, [0] * 3]], np.uint8)))
    # 16-bit truecolour, key (0x1000, 0x2000, 0x3000): the second pixel differs in a low byte only,
    # so it is kept (0x1001 -> round(4097 * 255 / 65535) = 16 by Pillow's high byte 0x10 = 16)
    rows = [struct.pack(">HHHHHH", 0x1000, 0x2000, 0x3000, 0x1001, 0x2000, 0x3000)]
    out.append(("rgb16", _png(rows, 2, 16, 2, struct.pack(">HHH", 0x1000, 0x2000, 0x3000)),
                np.array([[[255] * 3, [16, 32, 48]]], np.uint8)))
    paths = []
    for name, data, want in out:
        p = tmp_path / f"{name}.png"
        p.write_bytes(data)
        paths.append((name, p, want))
    return paths


def test_trns_colour_key_is_white_in_every_path(tmp_path):
    cases = _key_cases(tmp_path)
    for name, p, want in cases:
        np.testing.assert_array_equal(read_image(p), want, err_msg=name)
    _all_paths_agree([p for _, p, _ in cases], size=4)


def _damaged_jpeg(path):
    """A JPEG with an intact header and end marker whose scan data holds a stray SOI marker."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    sos = data.index(b"\xff\xda")
    path.write_bytes(data[: sos + 300] + b"\xff\xd8" + data[sos + 300 :])
    assert path.read_bytes()[:2] == b"\xff\xd8" and path.read_bytes()[-2:] == b"\xff\xd9"
    return path


def test_damaged_jpeg_never_stops_an_epoch(tmp_path):
    bad = str(_damaged_jpeg(tmp_path / "damaged.jpg"))
    good = [str(_save(tmp_path / f"g{i}.png", np.roll(STORED, i, 0), "PNG", 1)) for i in range(6)]
    paths = good[:2] + [bad] + good[2:]
    labels = np.array([10, 11, 12, 13, 14, 15, 16])
    # the cheap probe cannot see it; the full decode does, with a reason
    assert probe_image(bad)[0] is True
    ok, decoded, reason = probe_image(bad, decode=True)
    assert (ok, decoded) == (False, True) and "cannot decode" in reason
    _, keep, skipped = load_images(paths, 8)
    assert keep.tolist() == [0, 1, 3, 4, 5, 6] and skipped[0][0] == bad
    # the streaming pipeline skips it while iterating, reports it, and keeps the labels aligned
    ds = make_dataset(paths, labels, 8, batch_size=2)
    with pytest.warns(UserWarning, match="skipping unreadable image .*damaged.jpg"):
        ys = [y for _ in range(2) for _, yb in ds for y in yb.numpy().tolist()]  # two epochs
    assert ys == [10, 11, 13, 14, 15, 16] * 2
    assert list(ds.skipped) == [bad] and "cannot decode" in ds.skipped[bad]
    # strict: refused up front, naming the file
    with pytest.raises(BadImageError) as info:
        make_dataset(paths, labels, 8, strict=True)
    assert info.value.path == bad
    # P x K: dropped before the sampler is built (cached and streaming)
    for cache in (True, False):
        with pytest.warns(UserWarning, match="skipping 1 of 7"):
            pk = make_pk_dataset(paths, [0, 0, 1, 1, 1, 2, 2], 8, P=3, K=2, n_batches=4, cache=cache)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            batches = [y.numpy().tolist() for _, y in pk]
        assert len(batches) == 4 and all(sorted(b) == [0, 0, 1, 1, 2, 2] for b in batches)
