"""Detection metrics shared by the methods: ROC AUC and precision at a top fraction (numpy only).

Example:
    >>> import numpy as np
    >>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True]))
    0.75
"""

from __future__ import annotations

import numpy as np

__all__ = ["precision_at", "roc_auc"]


def _check_scores(score: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    score = np.asarray(score, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    if score.ndim != 1 or score.shape != positive.shape:
        raise ValueError(f"score and positive: expected equal 1-d shapes, got {score.shape} and {positive.shape}")
    if not np.isfinite(score).all():
        raise ValueError(f"score: {int((~np.isfinite(score)).sum())} non-finite values; drop those rows first")
    return score, positive


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` (higher = more anomalous) for the labels ``positive``.

    The probability that a random positive scores above a random negative (ties count
    half): 1 for a perfectly separating score, 0.5 for a random one, 0 for a reversed one.

    Args:
        score: ``(N,)`` finite scores.
        positive: ``(N,)`` booleans, True for the anomalies.

    Returns:
        The AUC, or NaN when ``positive`` holds only one class.
    """
    score, positive = _check_scores(score, positive)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # average ranks of ties (Mann-Whitney U)
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def precision_at(score: np.ndarray, positive: np.ndarray, fraction: float = 0.01) -> float:
    """Fraction of positives among the ``max(1, round(fraction N))`` highest-scoring objects.

    Ties at the cut are broken by the order of the input (a stable sort), so a constant
    score has the precision of the first rows.

    Args:
        score: ``(N,)`` finite scores, higher = more anomalous.
        positive: ``(N,)`` booleans.
        fraction: The top fraction inspected (0.01: the top 1 %).

    Returns:
        The precision in [0, 1] (NaN for ``N = 0``).
    """
    score, positive = _check_scores(score, positive)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction: expected in (0, 1], got {fraction}")
    if len(score) == 0:
        return float("nan")
    k = max(1, int(round(fraction * len(score))))
    top = np.argsort(-score, kind="stable")[:k]
    return float(positive[top].mean())
