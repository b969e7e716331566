"""itemrec.data.images: robust reading, fitting and batch loading."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from itemrec.data.images import BadImageError, fit_image, load_images, read_image

from fixtures.bad_images import make_bad_images as mbi  # tests/ is on sys.path (pytest prepend import mode)


@pytest.mark.parametrize("case", mbi.GOOD)
def test_read_image_good_cases(cases, case):
    path, expected = cases[case]
    img = read_image(path)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.shape == expected.shape, case
    tol = mbi.TOLERANCE.get(case, 0)
    assert np.abs(img.astype(int) - expected.astype(int)).max() <= tol, case


@pytest.mark.parametrize("case", mbi.BAD)
def test_read_image_bad_cases(cases, case):
    path, reason = cases[case]
    with pytest.raises(BadImageError) as info:
        read_image(path)
    assert info.value.path == str(path)
    assert reason in info.value.reason
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_max_pixels_is_checked_before_decoding(tmp_path):
    # a real 100x60 image with a 5,000 pixel limit: 6,000 > 5,000
    p = tmp_path / "x.png"
    Image.new("RGB", (100, 60), (1, 2, 3)).save(p)
    with pytest.raises(BadImageError, match="6000 > max_pixels=5000"):
        read_image(p, max_pixels=5000)
    assert read_image(p, max_pixels=6000).shape == (60, 100, 3)


def test_unreadable_permission(tmp_path, monkeypatch):
    p = tmp_path / "locked.png"
    Image.new("RGB", (4, 4)).save(p)
    p.chmod(0)
    try:
        if os.name == "posix" and os.geteuid() == 0:  # root reads anything (CI runs as root): simulate the refusal
            def refuse(*args, **kwargs):
                raise PermissionError(13, "Permission denied", str(p))

            monkeypatch.setattr(Image, "open", refuse)
        with pytest.raises(BadImageError, match="permission denied"):
            read_image(p)
    finally:
        p.chmod(0o644)


def test_fit_image_pad_and_crop():
    # 20 high x 40 wide: left half red, right half blue
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = (255, 0, 0)
    img[:, 20:] = (0, 0, 255)
    # pad to 10: scale min(10/20, 10/40) = 0.25 -> 5 x 10, placed at rows (10-5)//2 = 2 .. 6
    out = fit_image(img, 10, "pad")
    assert out.shape == (10, 10, 3)
    assert (out[:2] == 0).all() and (out[7:] == 0).all()
    assert (out[2:7, :4] == (255, 0, 0)).all() and (out[2:7, 6:] == (0, 0, 255)).all()
    # crop to 10: scale max(0.5, 0.25) = 0.5 -> 10 x 20, keep cols (20-10)//2 = 5 .. 14 ->
    # source cols 10..29: left half red (10..19), right half blue (20..29)
    out = fit_image(img, 10, "crop")
    assert out.shape == (10, 10, 3)
    assert (out[:, :4] == (255, 0, 0)).all() and (out[:, 6:] == (0, 0, 255)).all()
    # non-square target and fill
    out = fit_image(img, (8, 8), "pad", fill=7)
    assert out.shape == (8, 8, 3) and (out[0] == 7).all()
    with pytest.raises(ValueError, match="mode"):
        fit_image(img, 10, "stretch")
    with pytest.raises(ValueError, match="shape"):
        fit_image(np.zeros((5, 5)), 10)


def test_load_images_default_skips_and_keeps_alignment(cases):
    names = ["rgb_jpeg", "zero_byte", "grayscale", "text_as_jpeg", "cmyk_jpeg", "missing_path", "png_16bit"]
    paths = [cases[n][0] for n in names]
    labels = np.arange(len(names)) * 10
    images, keep, skipped = load_images(paths, 16)
    assert keep.tolist() == [0, 2, 4, 6]
    assert images.shape == (4, 16, 16, 3) and images.dtype == np.uint8
    assert labels[keep].tolist() == [0, 20, 40, 60]
    assert [s[0] for s in skipped] == [str(paths[1]), str(paths[3]), str(paths[5])]
    assert "zero-byte" in skipped[0][1] and "not an image" in skipped[1][1]
    # each kept image is what fit_image(read_image(path)) gives
    for row, i in enumerate(keep):
        np.testing.assert_array_equal(images[row], fit_image(read_image(paths[i]), 16))
    # the CMYK red image stays red after resizing
    assert np.abs(images[2].astype(int) - (255, 0, 0)).max() <= 6


def test_load_images_strict_names_the_file(cases):
    paths = [cases["rgb_jpeg"][0], cases["truncated_jpeg"][0], cases["grayscale"][0]]
    with pytest.raises(BadImageError) as info:
        load_images(paths, 16, strict=True)
    assert info.value.path == str(paths[1]) and "truncated" in info.value.reason
    images, keep, skipped = load_images([cases[n][0] for n in mbi.GOOD], 12, mode="crop", strict=True)
    assert len(images) == len(mbi.GOOD) and keep.tolist() == list(range(len(mbi.GOOD))) and skipped == []
