"""Evaluation on classes never seen in training: pure NumPy functions of embeddings and labels.

Modules: :mod:`.cmc` (CMC, per-class ranks), :mod:`.retrieval` (Recall@K, P@1, R-precision, MAP@R, mAP),
:mod:`.verification` (VAL/FAR, ROC, thresholds), :mod:`.openset` (DIR@FAR),
:mod:`.hubness` (CSLS-style gallery offsets), :mod:`.protocols` (image-averaged
and k-shot CMC), :mod:`.gallery_draws` (both averagings over random galleries),
:mod:`.classification`, :mod:`.gini`, :mod:`.clustering_quality`, and the
neighbour engine :mod:`.neighbours` (one tie rule: ``(distance, index)``) with its
distance arithmetic :mod:`._chunked`, and the one threshold-at-FAR rule :mod:`.thresholds`.
"""

from ._chunked import pairwise_distances
from .neighbours import NeighbourEngine, average_precision_full, first_match_rank, knn
from .thresholds import accepted, allowed_accepts, detection_rates, threshold_at_far, threshold_between
from .classification import ClassificationReport, classification_report, top_k_accuracy
from .clustering_quality import ClusteringScores, clustering_scores, purity
from .gini import GiniThreshold, RejectionReport, fit_gini_threshold, gini_impurity, gini_rejection_report, lorenz_gini
from .gallery_draws import GalleryDrawsResult, cmc_gallery_draws
from .hubness import hubness_offsets
from .protocols import class_ranks, cmc_image_averaged, cmc_k_shot
from .openset import (
    DirFarCurve,
    OpenSetReport,
    OpenSetThreshold,
    dir_far_curve,
    evaluate_openset,
    fit_openset_threshold,
)
from .cmc import CMCResult, cmc, cmc_representative, per_class_ranks
from .retrieval import (
    RetrievalReport,
    map_at_r,
    mean_average_precision,
    metrics_from_matches,
    r_precision,
    recall_at_k,
    retrieval_report,
)
from .verification import (
    Threshold,
    ValFarCurve,
    VerificationReport,
    evaluate_threshold,
    fit_threshold,
    pair_counts,
    val_at_far,
    val_far_curve,
)

__all__ = [name for name, value in globals().items() if not name.startswith("_") and not hasattr(value, "__path__")
           and getattr(value, "__module__", "").startswith(__name__)]
