"""Binary classification metrics in NumPy: the same code scores validation and test."""

from __future__ import annotations

import numpy as np


def roc_curve(targets: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rates, true-positive rates and the thresholds (score >= t) giving them."""
    order = np.argsort(-scores, kind="mergesort")
    scores, targets = scores[order], targets[order]
    distinct = np.r_[np.where(np.diff(scores))[0], len(scores) - 1]
    tps = np.cumsum(targets)[distinct]
    fps = (1 + distinct) - tps
    positives, negatives = max(tps[-1], 1), max(fps[-1], 1)
    tpr = np.r_[0.0, tps / positives]
    fpr = np.r_[0.0, fps / negatives]
    return fpr, tpr, np.r_[np.inf, scores[distinct]]


def roc_auc(targets: np.ndarray, scores: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(targets, scores)
    return float(np.trapezoid(tpr, fpr))


def precision_recall_curve(
    targets: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="mergesort")
    hits = np.cumsum(targets[order])
    precision = hits / np.arange(1, len(targets) + 1)
    recall = hits / max(targets.sum(), 1)
    return precision, recall


def bootstrap_auc_ci(
    targets: np.ndarray, scores: np.ndarray, *, rounds: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Percentile 95% interval of ROC AUC over resamples that keep both classes."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        sample = rng.integers(0, len(targets), len(targets))
        if 0 < targets[sample].sum() < len(sample):
            values.append(roc_auc(targets[sample], scores[sample]))
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def expected_calibration_error(targets: np.ndarray, scores: np.ndarray, *, bins: int = 10) -> float:
    """Weighted mean |observed rate - mean predicted probability| over equal-width bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(targets[members].mean() - scores[members].mean())
    return float(error)


def calibration_bins(targets: np.ndarray, scores: np.ndarray, *, bins: int = 10) -> list[dict]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    return [
        {
            "low": float(edges[b]),
            "high": float(edges[b + 1]),
            "count": int((which == b).sum()),
            "mean_probability": float(scores[which == b].mean()) if (which == b).any() else None,
            "observed_rate": float(targets[which == b].mean()) if (which == b).any() else None,
        }
        for b in range(bins)
    ]


def at_threshold(targets: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    predicted = scores >= threshold
    positive = targets == 1
    tp, fn = int((predicted & positive).sum()), int((~predicted & positive).sum())
    fp, tn = int((predicted & ~positive).sum()), int((~predicted & ~positive).sum())
    sensitivity = tp / max(tp + fn, 1)
    precision = tp / max(tp + fp, 1)
    return {
        "threshold": float(threshold),
        "accuracy": (tp + tn) / max(len(targets), 1),
        "sensitivity": sensitivity,
        "specificity": tn / max(tn + fp, 1),
        "precision": precision,
        "f1": 2 * precision * sensitivity / max(precision + sensitivity, 1e-12),
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def threshold_for_sensitivity(targets: np.ndarray, scores: np.ndarray, sensitivity: float) -> float:
    """The most specific threshold whose sensitivity is at least `sensitivity`.

    It lies halfway between the lowest positive that must be caught and the next lower
    score, not on that positive's score: a threshold equal to a score flips that case on
    float noise (training computes calibrated scores in float64, serving in float32).
    """
    positives = np.sort(scores[targets == 1])
    if len(positives) == 0:
        raise ValueError("No positive examples to set a sensitivity target on.")
    allowed_misses = int(np.floor((1.0 - sensitivity) * len(positives) + 1e-9))
    borderline = positives[allowed_misses]
    lower = scores[scores < borderline]
    return float((borderline + lower.max()) / 2 if len(lower) else borderline)


def summary(
    targets: np.ndarray, scores: np.ndarray, threshold: float, *, bootstrap: int = 1000
) -> dict:
    targets = np.asarray(targets, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    both_classes = 0 < targets.sum() < len(targets)
    return {
        "count": int(len(targets)),
        "positives": int(targets.sum()),
        **at_threshold(targets, scores, threshold),
        # ROC AUC is undefined on a single class; say so rather than report a number.
        "roc_auc": roc_auc(targets, scores) if both_classes else None,
        "roc_auc_ci95": list(bootstrap_auc_ci(targets, scores, rounds=bootstrap))
        if both_classes
        else None,
        "expected_calibration_error": expected_calibration_error(targets, scores),
        "calibration": calibration_bins(targets, scores),
    }


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def fit_platt(
    logits: np.ndarray, targets: np.ndarray, *, iterations: int = 100, balanced: bool = False
) -> tuple[float, float]:
    """Fit p = sigmoid(a * logit + b) by Newton's method on the log loss (Platt scaling).

    `balanced` weights each class equally, so the probabilities assume even odds instead of
    inheriting the fitting set's prevalence (74% pneumonia in the training data)."""
    a, b = 1.0, 0.0
    design = np.stack([logits, np.ones_like(logits)], axis=1)
    weights = np.ones_like(logits, dtype=np.float64)
    if balanced:
        positives = max(float(targets.sum()), 1.0)
        negatives = max(float(len(targets) - targets.sum()), 1.0)
        weights = np.where(
            targets == 1, len(targets) / (2 * positives), len(targets) / (2 * negatives)
        )
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(a * logits + b)))
        gradient = design.T @ (weights * (p - targets))
        hessian = design.T @ (design * (weights * p * (1 - p))[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return float(a), float(b)


def operating_points(targets: np.ndarray, scores: np.ndarray, *, limit: int = 200) -> list[dict]:
    """(threshold, sensitivity, specificity) along the ROC curve, thinned to at most `limit`
    points: stored on the card so a threshold can be chosen later without the data."""
    fpr, tpr, thresholds = roc_curve(np.asarray(targets, float), np.asarray(scores, float))
    keep = np.unique(
        np.linspace(1, len(thresholds) - 1, min(limit, len(thresholds) - 1)).astype(int)
    )
    return [
        {
            "threshold": float(thresholds[i]),
            "sensitivity": float(tpr[i]),
            "specificity": float(1 - fpr[i]),
        }
        for i in keep
    ]


def wilson_interval(
    successes: int, total: int, *, z: float = 1.959964
) -> tuple[float, float] | None:
    """The Wilson score 95% interval of a proportion; None when there is nothing to count.
    Unlike the normal approximation it stays inside [0, 1] and is honest at 0/n and n/n."""
    if total <= 0:
        return None
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def histogram(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of scores in [edges[i], edges[i+1]) (the last bin closed), as calibration_bins
    and the score references on cards count them."""
    which = np.clip(np.digitize(np.asarray(scores, float), edges[1:-1]), 0, len(edges) - 2)
    return np.bincount(which, minlength=len(edges) - 1)


def population_stability_index(
    reference: np.ndarray, current: np.ndarray, *, floor: float = 1e-4
) -> float:
    """PSI = sum (c - r) ln(c / r) over bins of two count vectors, after normalising each to
    proportions (empty bins floored so the logarithm stays finite). Rule of thumb: < 0.1
    stable, 0.1-0.25 a moderate shift, > 0.25 a major one."""
    r = np.asarray(reference, float)
    c = np.asarray(current, float)
    if r.sum() <= 0 or c.sum() <= 0:
        raise ValueError("Both distributions need at least one count.")
    r = np.maximum(r / r.sum(), floor)
    c = np.maximum(c / c.sum(), floor)
    return float(np.sum((c - r) * np.log(c / r)))


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> float:
    """The Kolmogorov-Smirnov distance between two binned distributions: the largest gap
    between their cumulative proportions at the bin edges (a lower bound of the raw-score
    statistic, exact when no bin is split)."""
    r = np.asarray(reference, float)
    c = np.asarray(current, float)
    if r.sum() <= 0 or c.sum() <= 0:
        raise ValueError("Both distributions need at least one count.")
    return float(np.max(np.abs(np.cumsum(r) / r.sum() - np.cumsum(c) / c.sum())))
