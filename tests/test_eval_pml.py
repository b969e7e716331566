"""Cross-check against pytorch-metric-learning's AccuracyCalculator (an independent implementation)."""

from __future__ import annotations

import numpy as np
import pytest

from itemrec.evaluation import retrieval_report

pml = pytest.importorskip("pytorch_metric_learning", reason="pytorch-metric-learning not installed")
torch = pytest.importorskip("torch")


def data(seed, n_classes=12, per_class=(3, 15), dim=16):
    rng = np.random.default_rng(seed)
    counts = rng.integers(per_class[0], per_class[1], n_classes)
    labels = np.repeat(np.arange(n_classes), counts)
    centres = rng.normal(size=(n_classes, dim))
    x = centres[labels] + 0.9 * rng.normal(size=(len(labels), dim))
    return x.astype(np.float32), labels


@pytest.mark.parametrize("same_set", [True, False])
def test_matches_pml_accuracy_calculator(same_set):
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    x, y = data(0)
    # k="max_bin_count": PML keeps R neighbours per query, as MAP@R needs; exact torch kNN on L2
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
        knn_func=CustomKNN(LpDistance(normalize_embeddings=False)),
    )
    if same_set:
        got = calc.get_accuracy(torch.from_numpy(x), torch.from_numpy(y))
        ours = retrieval_report(x.astype(np.float64), y, ks=(1,), metric="l2")
    else:
        # separate reference set: the same classes with fresh noise
        x2, y2 = data(0)
        rng = np.random.default_rng(5)
        ref = x2 + 0.3 * rng.normal(size=x2.shape).astype(np.float32)
        got = calc.get_accuracy(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(ref), torch.from_numpy(y2))
        ours = retrieval_report(x.astype(np.float64), y, ref.astype(np.float64), y2, ks=(1,), metric="l2")
    assert ours.recall_at_k[1] == pytest.approx(got["precision_at_1"], abs=1e-6)
    assert ours.precision_at_1 == pytest.approx(got["precision_at_1"], abs=1e-6)
    assert ours.r_precision == pytest.approx(got["r_precision"], abs=1e-6)
    assert ours.map_at_r == pytest.approx(got["mean_average_precision_at_r"], abs=1e-6)
    assert 0.2 < ours.map_at_r < 1.0
