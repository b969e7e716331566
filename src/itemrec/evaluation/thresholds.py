"""The one rule that turns a target false-accept rate into a threshold, and the rates it gives.

Used by VAL/FAR (:func:`itemrec.evaluation.fit_threshold`, pair distances), open-set DIR
(:func:`itemrec.evaluation.fit_openset_threshold`, nearest-gallery distances) and the
gallery's unknown threshold (:func:`itemrec.gallery.choose_threshold`,
:meth:`itemrec.gallery.Gallery.calibrate`, cosine similarities).

**Rule.** Scores are oriented by ``accept``: ``"below"`` (distances: a score is accepted
when ``score <= t``) or ``"above"`` (similarities: accepted when ``score >= t``). Sort the
``n`` impostor scores from the most to the least accepted, ``s_1, s_2, …`` and allow
``m = ⌊target_far · n⌋`` accepts (computed as ``⌊target_far · n + 10⁻⁹⌋``, so a target such
as 0.29 whose binary value lies just below 0.29 still allows 29 of 100). Then

* ``m = n``: every score is accepted: ``t = +∞`` (below) / ``−∞`` (above);
* ``m ≥ 1`` and ``s_m ≠ s_{m+1}``: ``t = (s_m + s_{m+1}) / 2``, the midpoint (float64),
  accepting exactly ``s_1 … s_m``;
* otherwise (``m = 0``, or ``s_m`` tied with ``s_{m+1}``): ``t`` is the next float of the
  scores' dtype past ``s_{m+1}`` on the reject side, so ``s_{m+1}`` and every score tied with
  it are rejected (fewer than ``m`` accepts: ties are never split).

So the fraction of impostor scores accepted at ``t`` is always ``≤ target_far``, and ``t`` is
the midpoint of the gap where the rate first exceeds the target (FaceNet's VAL/FAR,
Schroff et al. 2015; FPIR of ISO/IEC 19795-1 for the open-set case).
"""

from __future__ import annotations

import numpy as np

ACCEPT = ("below", "above")


def _check_accept(accept: str) -> str:
    if accept not in ACCEPT:
        raise ValueError(f"accept must be one of {ACCEPT}; got {accept!r}")
    return accept


def allowed_accepts(n: int, target_far: float) -> int:
    """``m = ⌊target_far · n + 10⁻⁹⌋``: impostor scores that may be accepted (module docstring).

    Args:
        n: number of impostor scores, ``≥ 1``.
        target_far: in ``[0, 1]``.

    Returns:
        ``m`` in ``0..n``.

    Raises:
        ValueError: ``target_far`` outside ``[0, 1]`` or ``n < 1``.
    """
    if not 0.0 <= target_far <= 1.0:
        raise ValueError(f"target_far must lie in [0, 1]; got {target_far}")
    if n < 1:
        raise ValueError("a threshold needs at least one impostor score")
    return min(n, int(np.floor(target_far * n + 1e-9)))


def threshold_between(last_accepted: float | None, first_rejected: float | None, accept: str = "below",
                      dtype: type = np.float64) -> float:
    """The threshold of the rule between the m-th and (m+1)-th impostor scores (module docstring).

    Args:
        last_accepted: ``s_m`` (None when ``m = 0``).
        first_rejected: ``s_{m+1}`` (None when ``m = n``: accept everything).
        accept: ``"below"`` (accept ``score <= t``) or ``"above"`` (accept ``score >= t``).
        dtype: float dtype of the scores, for the next float past ``s_{m+1}``.

    Returns:
        ``t`` as a Python float (``±inf`` when everything is accepted).

    Raises:
        ValueError: bad ``accept``.
    """
    _check_accept(accept)
    if first_rejected is None:
        return float(np.inf if accept == "below" else -np.inf)
    lo, hi = (last_accepted, first_rejected) if accept == "below" else (first_rejected, last_accepted)
    if last_accepted is not None and lo < hi:
        return float((np.float64(last_accepted) + np.float64(first_rejected)) / 2)
    toward = -np.inf if accept == "below" else np.inf
    return float(np.nextafter(np.asarray(first_rejected, dtype), np.asarray(toward, dtype)))


def threshold_at_far(impostor_scores: np.ndarray, target_far: float, accept: str = "below") -> float:
    """The threshold whose false-accept rate on ``impostor_scores`` is at most ``target_far``.

    Args:
        impostor_scores: (n,) scores of impostors (non-mated comparisons); any shape is flattened.
            float32 scores keep their dtype for the next-float step.
        target_far: in ``[0, 1]``.
        accept: ``"below"`` (distances: accepted when ``score <= t``) or ``"above"``
            (similarities: accepted when ``score >= t``).

    Returns:
        ``t`` (Python float), per the rule in the module docstring.

    Raises:
        ValueError: no scores, non-finite scores, ``target_far`` outside ``[0, 1]``, bad ``accept``.
    """
    _check_accept(accept)
    s = np.asarray(impostor_scores).reshape(-1)
    if s.dtype not in (np.float32, np.float64):
        s = s.astype(np.float64)
    if not np.isfinite(s).all():
        raise ValueError("impostor scores must be finite")
    m = allowed_accepts(len(s), target_far)
    s = np.sort(s) if accept == "below" else -np.sort(-s)
    last = None if m == 0 else s[m - 1]
    first = None if m == len(s) else s[m]
    return threshold_between(last, first, accept, s.dtype.type)


def accepted(scores: np.ndarray, threshold: float, accept: str = "below") -> np.ndarray:
    """Which scores the threshold accepts: ``score <= t`` (below) or ``score >= t`` (above), in float64.

    Args:
        scores: any shape.
        threshold: ``t``.
        accept: ``"below"`` or ``"above"``.

    Returns:
        Boolean array of ``scores``' shape.

    Raises:
        ValueError: bad ``accept``.
    """
    _check_accept(accept)
    s = np.asarray(scores, np.float64)
    return s <= threshold if accept == "below" else s >= threshold


def detection_rates(genuine_scores: np.ndarray, genuine_correct: np.ndarray, impostor_scores: np.ndarray,
                    threshold: float, accept: str = "below") -> tuple[float, float]:
    """Open-set ``(DIR, FAR)`` at a threshold (Phillips, Grother & Micheals 2011, rank 1).

    ``DIR = |{genuine: accepted and correct}| / |genuine|``;
    ``FAR = |{impostor: accepted}| / |impostor|``.

    Args:
        genuine_scores: (g,) best score of each search whose identity is enrolled.
        genuine_correct: (g,) bool, whether that best match has the right identity.
        impostor_scores: (i,) best score of each search whose identity is not enrolled
            (or, for a gallery, the best score among the *other* identities).
        threshold: ``t``.
        accept: ``"below"`` or ``"above"``, as in :func:`accepted`.

    Returns:
        ``(dir, far)`` as floats; NaN for a rate whose set is empty.

    Raises:
        ValueError: ``genuine_scores`` and ``genuine_correct`` of different lengths, or bad ``accept``.
    """
    g = np.asarray(genuine_scores).reshape(-1)
    c = np.asarray(genuine_correct, bool).reshape(-1)
    if len(g) != len(c):
        raise ValueError(f"{len(g)} genuine scores but {len(c)} correctness flags")
    imp = np.asarray(impostor_scores).reshape(-1)
    dir_ = float((accepted(g, threshold, accept) & c).mean()) if len(g) else float("nan")
    far = float(accepted(imp, threshold, accept).mean()) if len(imp) else float("nan")
    return dir_, far
