"""Shared fixtures.

Real datasets are found through ``ITEMREC_DATA`` (and weights through
``ITEMREC_WEIGHTS``). Without them the tests that need them skip, except when
``ITEMREC_REQUIRE_DATA=1`` (set by ``.ci/run``), where a missing dataset fails.
Under that flag ``pytest.importorskip`` fails too: the independent cross-checks
(pytorch-metric-learning, torch, JAX) must run in CI, never skip silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

from itemrec import settings  # noqa: E402

REQUIRED = os.environ.get("ITEMREC_REQUIRE_DATA") == "1"

if REQUIRED:
    _importorskip = pytest.importorskip

    def _import_or_fail(modname: str, *args, **kwargs):
        """``pytest.importorskip`` that fails instead of skipping (CI installs every cross-check)."""
        try:
            return _importorskip(modname, *args, **kwargs)
        except pytest.skip.Exception as exc:
            pytest.fail(f"{modname} is required here (ITEMREC_REQUIRE_DATA=1) but missing: {exc}", pytrace=False)

    pytest.importorskip = _import_or_fail

FIXTURES = Path(__file__).parent / "fixtures"


def _missing(what: str) -> None:
    if os.environ.get("ITEMREC_REQUIRE_DATA") == "1":
        pytest.fail(f"{what} is required here (ITEMREC_REQUIRE_DATA=1) but missing")
    pytest.skip(f"{what} not available; set ITEMREC_DATA / ITEMREC_WEIGHTS")


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real dataset root (``ITEMREC_DATA``)."""
    root = settings.data_root()
    if not any((root / name).is_dir() for name in settings.DATASETS):
        _missing(f"dataset root {root}")
    return root


@pytest.fixture(scope="session")
def dataset_path(data_root):
    """``dataset_path("grocery-store")`` -> folder of that real dataset."""

    def get(name: str) -> Path:
        path = data_root / name
        if not path.is_dir():
            _missing(f"dataset {name}")
        return path

    return get


@pytest.fixture(scope="session")
def mobilenet_weights() -> Path:
    """The local ImageNet MobileNetV2 no-top weights file."""
    try:
        return settings.local_weights()
    except settings.DataNotFoundError:
        _missing("MobileNetV2 weights file")


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """The bad- and awkward-image fixture files (``tests/fixtures/bad_images``), made fresh per module."""
    from fixtures.bad_images import make_bad_images

    return make_bad_images.make_bad_images(tmp_path_factory.mktemp("bad_images"))
