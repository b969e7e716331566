"""MNIST-style glyph rendering: scaling to a 20×20 box and centring by centre of mass in 28×28."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from itemrec import glyphs

DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def _bbox(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.flatnonzero(img.any(axis=1)), np.flatnonzero(img.any(axis=0))


def test_center_of_mass_hand_worked():
    img = np.zeros((4, 5))
    img[1, 1] = 1.0
    img[3, 4] = 3.0
    # rows: (1·1 + 3·3) / 4 = 2.5; columns: (1·1 + 4·3) / 4 = 3.25
    assert glyphs.center_of_mass(img) == pytest.approx((2.5, 3.25))
    with pytest.raises(ValueError, match="no ink|without ink"):
        glyphs.center_of_mass(np.zeros((3, 3)))


def test_mnist_normalize_places_a_bar_exactly():
    # A 10×40 bar of full ink: scaled by 20/40 = 0.5 to 5×20 (still all 255), its centre of mass
    # is at local (2, 9.5); the field centre is pixel 14, so it goes to rows 14-2 = 12..16 and
    # columns floor(14 - 9.5 + 0.5) = 5..24.
    img = np.pad(np.full((10, 40), 255, np.uint8), 30)
    out = glyphs.mnist_normalize(img)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    expected = np.zeros((28, 28), np.uint8)
    expected[12:17, 5:25] = 255
    np.testing.assert_array_equal(out, expected)


def test_mnist_normalize_centres_by_mass_not_by_box():
    # An L shape: a heavy vertical stroke and a light foot. Its bounding box is 20 px high after
    # scaling, but its centre of mass (not the box centre) must land on pixel 14 ± 0.5.
    img = np.zeros((100, 100), np.uint8)
    img[10:90, 10:25] = 255
    img[75:90, 25:70] = 80
    out = glyphs.mnist_normalize(img)
    cy, cx = glyphs.center_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    rows, cols = _bbox(out)
    assert rows[-1] - rows[0] + 1 == 20  # the longer side fills the 20-pixel box
    assert cols[-1] - cols[0] + 1 < 20
    # the box centre is right of the mass centre: the glyph is not box-centred
    assert (cols[0] + cols[-1]) / 2 > cx + 1


def test_mnist_normalize_keeps_an_off_centre_mass_inside_the_field():
    # A mass concentrated at one end: the shift to put it on 14 would push the glyph out, so it is clipped.
    img = np.zeros((60, 60), np.uint8)
    img[5:55, 5:8] = 255
    img[5:8, 5:55] = 10
    img[5:15, 5:15] = 255
    out = glyphs.mnist_normalize(img)
    rows, cols = _bbox(out)
    assert rows[0] >= 0 and cols[0] >= 0 and rows[-1] <= 27 and cols[-1] <= 27
    assert int(out.astype(np.int64).sum()) > 0


def test_mnist_normalize_rejects_bad_input():
    with pytest.raises(ValueError, match="no ink"):
        glyphs.mnist_normalize(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        glyphs.mnist_normalize(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="box"):
        glyphs.mnist_normalize(np.ones((10, 10), np.uint8), box=30)


def test_render_glyph_is_mnist_shaped_and_deterministic():
    a = glyphs.render_glyph("A")
    b = glyphs.render_glyph("A")
    np.testing.assert_array_equal(a, b)
    assert a.shape == (28, 28) and a.dtype == np.uint8 and a.max() > 200
    cy, cx = glyphs.center_of_mass(a)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    rows, cols = _bbox(a)
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (19, 20)
    # different letters are different images
    assert not np.array_equal(a, glyphs.render_glyph("K"))


def test_render_glyph_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no ink"):
        glyphs.render_glyph(" ")
    with pytest.raises(ValueError, match="one character"):
        glyphs.render_glyph("AB")
    with pytest.raises(FileNotFoundError, match="nofont.ttf"):
        glyphs.render_glyph("A", tmp_path / "nofont.ttf")
    bad = tmp_path / "bad.ttf"
    bad.write_bytes(b"not a font")
    with pytest.raises(ValueError, match="bad.ttf"):
        glyphs.render_glyph("A", bad)


def test_find_fonts(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.TTF").write_bytes(b"")
    (tmp_path / "b.otf").write_bytes(b"")
    (tmp_path / "c.txt").write_bytes(b"")
    assert [p.name for p in glyphs.find_fonts(tmp_path)] == ["x.TTF", "b.otf"]
    assert glyphs.find_fonts(tmp_path / "missing") == []


def test_render_glyphs_every_char_in_every_font():
    fonts = [None] + ([DEJAVU] if Path(DEJAVU).is_file() else [])
    g = glyphs.render_glyphs("AxK", fonts=fonts)
    assert len(g) == 3 * len(fonts) and g.images.shape == (3 * len(fonts), 28, 28)
    assert g.chars == list("AxK") * len(fonts)
    assert g.fonts[:3] == ["default"] * 3
    assert g.as_rgb().shape == (3 * len(fonts), 28, 28, 3)
    np.testing.assert_array_equal(g.as_rgb()[..., 2], g.images)
    assert not set(glyphs.DIGIT_LIKE) & set(glyphs.LETTERS)


def test_rendered_letters_match_mnist_statistics(dataset_path):
    """Letters and MNIST digits share the placement and scale (centre of mass, box) and are close in ink."""
    from itemrec.data.loaders import load_mnist

    digits, _ = load_mnist(dataset_path("mnist"))
    letters = glyphs.render_glyphs(glyphs.LETTERS[:12], fonts=[None]).images
    com_d = np.array([glyphs.center_of_mass(x) for x in digits[:2000]]).mean(axis=0)
    com_l = np.array([glyphs.center_of_mass(x) for x in letters]).mean(axis=0)
    assert np.all(np.abs(com_d - 14.0) < 0.1)  # MNIST: 13.99 and 14.01
    assert np.all(np.abs(com_l - com_d) < 0.25)
    side_d = np.array([max(len(r), len(c)) for r, c in map(_bbox, digits[:2000] > 0)])
    assert np.median(side_d) == 20
    side_l = np.array([max(len(r), len(c)) for r, c in map(_bbox, letters > 0)])
    assert np.median(side_l) == 20
    ink_d, ink_l = digits.mean(), letters.mean()  # MNIST about 33.8 of 255
    assert 0.6 < ink_l / ink_d < 1.6
