"""The learned half of the input gate (ml.gate) on synthetic data: the threshold rule,
the two tiers of reasons, colour, and the card round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ml.gate import (
    BROAD_FACTOR,
    MAX_COLOURFULNESS,
    ORIENTATION_RATIO,
    TURNED_MESSAGE,
    Gate,
    Gaussian,
    colour_refusal,
    fit_gate,
    thumbnail,
)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    scale = np.linspace(3.0, 0.2, 256)  # an anisotropic cloud, as real layouts are
    return {
        "train_layout": rng.normal(size=(800, 256)) * scale,
        "train_features": np.abs(rng.normal(size=(800, 24))),
        "validation_layout": rng.normal(size=(300, 256)) * scale,
        "validation_features": np.abs(rng.normal(size=(300, 24))),
    }


@pytest.fixture(scope="module")
def gate(data) -> Gate:
    return fit_gate(**data, refuse_fraction=0.02, rank=8, margin=1.0)


def test_distance_is_about_one_for_samples_of_the_fitted_distribution(data):
    gaussian = Gaussian.fit(data["train_layout"], rank=8)
    assert np.median(gaussian.distance(data["validation_layout"])) == pytest.approx(1.0, abs=0.2)


def test_thresholds_refuse_at_most_the_asked_share_of_validation_images(data, gate):
    scores = gate.scores(layout=data["validation_layout"], features=data["validation_features"])
    refused = (scores["layout_distance"] > gate.layout_threshold) | (
        scores["feature_distance"] > gate.feature_threshold
    )
    assert 0 < refused.mean() <= 0.02


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.05, 0.2])
def test_each_threshold_leaves_at_most_half_the_fraction_above_it(data, fraction):
    gate = fit_gate(**data, refuse_fraction=fraction, rank=8, margin=1.0)
    scores = gate.scores(layout=data["validation_layout"], features=data["validation_features"])
    assert (scores["layout_distance"] > gate.layout_threshold).mean() <= fraction / 2
    assert (scores["feature_distance"] > gate.feature_threshold).mean() <= fraction / 2


def _check(gate, data, *, layout_shift=0.0, feature_shift=0.0):
    layout = data["validation_layout"][0] * (1 + layout_shift)
    features = data["validation_features"][0] + feature_shift
    return gate.check(layout=layout, features=features)


def test_an_in_distribution_sample_is_analysed(data, gate):
    passed = [
        gate.check(layout=layout, features=features) is None
        for layout, features in zip(
            data["validation_layout"], data["validation_features"], strict=True
        )
    ]
    assert np.mean(passed) >= 0.98


def test_far_layout_is_not_a_chest_radiograph_and_nearer_is_outside_intended_use(data, gate):
    far = np.full(256, 40.0)
    verdict = gate.check(layout=far, features=data["validation_features"][0])
    assert verdict[0] == "not_chest_radiograph"
    assert verdict[2]["layout_distance"] > gate.broad_threshold
    between = _scaled_to(gate, data, target=1.5 * gate.layout_threshold)
    verdict = gate.check(layout=between, features=data["validation_features"][0])
    assert verdict[0] == "outside_intended_use"


def _scaled_to(gate, data, *, target: float) -> np.ndarray:
    """A layout vector whose distance is `target` (the distance is quadratic in scale)."""
    base = data["validation_layout"][1] - gate.layout.mean
    distance = gate.layout.distance((gate.layout.mean + base)[None])[0]
    return gate.layout.mean + base * np.sqrt(target / distance)


def test_the_margin_widens_the_narrow_thresholds_only(data):
    plain = fit_gate(**data, refuse_fraction=0.02, rank=8, margin=1.0)
    wide = fit_gate(**data, refuse_fraction=0.02, rank=8, margin=1.1)
    assert wide.layout_threshold == pytest.approx(1.1 * plain.layout_threshold)
    assert wide.feature_threshold == pytest.approx(1.1 * plain.feature_threshold)
    assert wide.broad_threshold == plain.broad_threshold == BROAD_FACTOR * plain.layout_threshold


def test_features_unlike_training_are_outside_intended_use(data, gate):
    verdict = _check(gate, data, feature_shift=50.0)
    assert verdict[0] == "outside_intended_use"
    assert verdict[2]["feature_distance"] > gate.feature_threshold


def test_colour_is_refused_before_any_distance():
    verdict = colour_refusal(MAX_COLOURFULNESS + 0.01)
    assert verdict[0] == "not_chest_radiograph" and "colour" in verdict[1]
    assert colour_refusal(0.0) is None


def test_gate_survives_the_json_card_unchanged(data, gate):
    restored = Gate.from_card(json.loads(json.dumps(gate.to_card())))
    before = gate.scores(layout=data["validation_layout"], features=data["validation_features"])
    after = restored.scores(layout=data["validation_layout"], features=data["validation_features"])
    for key in before:
        np.testing.assert_allclose(after[key], before[key], rtol=1e-4)
    assert restored.layout_threshold == gate.layout_threshold


def test_thumbnail_ignores_exposure_and_contrast_but_not_layout():
    rng = np.random.default_rng(1)
    image = rng.random((64, 64, 1)).astype(np.float32)
    same = thumbnail(0.5 * image + 0.2)
    np.testing.assert_allclose(same, thumbnail(image), atol=1e-4)
    assert thumbnail(image).shape == (1, 256)
    assert np.abs(thumbnail(image[::-1]) - thumbnail(image)).max() > 0.5


def test_a_layout_turned_upside_down_is_refused_as_turned():
    """A chest-like layout (dark lungs either side of a bright column, bright bottom) fitted
    as the training distribution; the same layout upside down is refused."""
    rng = np.random.default_rng(2)
    y, x = np.mgrid[0:16, 0:16] / 15.0
    base = 0.6 * np.exp(-((x - 0.5) ** 2) / 0.01) + 0.8 * y  # mediastinum + bright abdomen
    samples = np.stack([base + 0.05 * rng.normal(size=base.shape) for _ in range(400)])
    layouts = thumbnail(np.repeat(np.repeat(samples, 4, axis=1), 4, axis=2)[..., None])
    features = np.abs(rng.normal(size=(400, 8)))
    gate = fit_gate(
        train_layout=layouts[:300],
        train_features=features[:300],
        validation_layout=layouts[300:],
        validation_features=features[300:],
        rank=8,
    )
    upright = gate.check(layout=layouts[301], features=features[301])
    assert upright is None or upright[1] != TURNED_MESSAGE
    flipped = np.rot90(layouts[301].reshape(16, 16), 2).ravel()
    verdict = gate.check(layout=flipped, features=features[301])
    assert verdict[0] in {"outside_intended_use", "not_chest_radiograph"}
    assert gate.turned_ratio(flipped) > ORIENTATION_RATIO > gate.turned_ratio(layouts[301])
