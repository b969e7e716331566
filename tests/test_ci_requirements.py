"""Under CI (``ITEMREC_REQUIRE_DATA=1``) a missing cross-check package fails the run instead of skipping it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_missing_package_fails_under_ci_and_skips_elsewhere(tmp_path):
    here = Path(__file__).parent
    (tmp_path / "conftest.py").write_text((here / "conftest.py").read_text())
    (tmp_path / "test_probe.py").write_text(
        "import pytest\n\ndef test_needs_it():\n    pytest.importorskip('no_such_module_for_itemrec')\n")
    results = {}
    for flag in ("1", "0"):
        env = dict(os.environ, ITEMREC_REQUIRE_DATA=flag)
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                              env=env, capture_output=True, text=True, cwd=tmp_path)
        results[flag] = (proc.returncode, proc.stdout)
    assert results["1"][0] == 1 and "1 failed" in results["1"][1], results["1"][1][-1500:]
    assert results["0"][0] == 0 and "1 skipped" in results["0"][1], results["0"][1][-1500:]
