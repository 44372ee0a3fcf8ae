from __future__ import annotations

import numpy as np
import pytest

from ml import metrics


def test_roc_auc_equals_the_probability_a_positive_outranks_a_negative():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, 300).astype(float)
    scores = rng.normal(targets, 1.0)
    pairs = scores[targets == 1][:, None] - scores[targets == 0][None, :]
    expected = (pairs > 0).mean() + 0.5 * (pairs == 0).mean()
    assert metrics.roc_auc(targets, scores) == pytest.approx(expected, abs=1e-9)


def test_roc_auc_of_perfect_and_reversed_scores():
    targets = np.array([0, 0, 1, 1], dtype=float)
    assert metrics.roc_auc(targets, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert metrics.roc_auc(targets, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0


def test_threshold_for_sensitivity_reaches_the_target_and_is_the_most_specific():
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 2, 500).astype(float)
    scores = 1 / (1 + np.exp(-rng.normal(2 * targets - 1, 1.0)))
    threshold = metrics.threshold_for_sensitivity(targets, scores, 0.95)
    chosen = metrics.at_threshold(targets, scores, threshold)
    assert chosen["sensitivity"] >= 0.95
    # Up to the lowest caught score nothing changes; one score higher the target is missed.
    borderline = np.min(scores[scores > threshold])
    assert metrics.at_threshold(targets, scores, borderline) == {**chosen, "threshold": borderline}
    slightly_higher = np.min(scores[scores > borderline])
    assert metrics.at_threshold(targets, scores, slightly_higher)["sensitivity"] < 0.95


def test_threshold_for_sensitivity_sits_between_scores_not_on_one():
    targets = np.array([0, 0, 1, 1, 1, 1], dtype=float)
    scores = np.array([0.1, 0.3, 0.4, 0.6, 0.8, 0.9])
    assert metrics.threshold_for_sensitivity(targets, scores, 1.0) == pytest.approx(0.35)
    assert metrics.threshold_for_sensitivity(targets, scores, 0.75) == pytest.approx(0.5)


def test_confusion_matrix_counts_at_threshold():
    targets = np.array([0, 0, 1, 1, 1], dtype=float)
    scores = np.array([0.2, 0.7, 0.4, 0.8, 0.9])
    result = metrics.at_threshold(targets, scores, 0.5)
    assert result["confusion_matrix"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 2}
    assert result["sensitivity"] == pytest.approx(2 / 3)
    assert result["specificity"] == pytest.approx(0.5)


def test_expected_calibration_error_is_small_for_calibrated_and_large_for_overconfident_scores():
    rng = np.random.default_rng(2)
    scores = rng.uniform(0, 1, 20000)
    targets = (rng.uniform(0, 1, 20000) < scores).astype(float)
    assert metrics.expected_calibration_error(targets, scores) < 0.02
    overconfident = np.where(scores > 0.5, 0.99, 0.01)
    assert metrics.expected_calibration_error(targets, overconfident) > 0.2


def test_platt_scaling_recovers_the_generating_parameters():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, 20000)
    targets = (rng.uniform(0, 1, 20000) < 1 / (1 + np.exp(-(0.5 * logits - 1.0)))).astype(float)
    scale, shift = metrics.fit_platt(logits, targets)
    assert scale == pytest.approx(0.5, abs=0.05)
    assert shift == pytest.approx(-1.0, abs=0.08)


def test_bootstrap_interval_contains_the_point_estimate():
    rng = np.random.default_rng(4)
    targets = rng.integers(0, 2, 200).astype(float)
    scores = rng.normal(targets, 1.0)
    low, high = metrics.bootstrap_auc_ci(targets, scores, rounds=200)
    assert low < metrics.roc_auc(targets, scores) < high


def test_summary_of_a_single_class_reports_auc_as_undefined():
    result = metrics.summary(np.ones(5), np.linspace(0.1, 0.9, 5), 0.5)
    assert result["roc_auc"] is None and result["roc_auc_ci95"] is None
    assert result["sensitivity"] == pytest.approx(0.6)


def test_operating_points_trace_the_roc_curve_from_strict_to_lenient():
    rng = np.random.default_rng(5)
    targets = rng.integers(0, 2, 400).astype(float)
    scores = 1 / (1 + np.exp(-rng.normal(2 * targets - 1, 1.0)))
    points = metrics.operating_points(targets, scores, limit=50)
    assert len(points) <= 50
    assert [p["threshold"] for p in points] == sorted(
        (p["threshold"] for p in points), reverse=True
    )
    assert points[-1]["sensitivity"] == 1.0
    for point in points[::10]:
        exact = metrics.at_threshold(targets, scores, point["threshold"])
        assert exact["sensitivity"] == pytest.approx(point["sensitivity"])
        assert exact["specificity"] == pytest.approx(point["specificity"])
