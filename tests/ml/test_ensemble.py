"""Ensembles shipped as one artifact: the head's arithmetic, the members' spread, and an
artifact `ml.ensemble.combine` writes from two tiny trained members."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ml.artifact import read_card, write_card
from ml.config import LOGIT_LAYER, ModelConfig
from ml.ensemble import Members, build_ensemble, combine, member_bias
from ml.features import pooled_and_logits
from ml.model import build_model
from ml.predictor import Predictor


@pytest.fixture(scope="module")
def members():
    import keras

    keras.utils.set_random_seed(3)
    config = ModelConfig(arch="vgg", image_size=64, width=16, stages=2)
    return [build_model(config) for _ in range(3)]


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((5, 64, 64, 1)).astype(np.float32)


def _logits(model, images):
    return pooled_and_logits(model, images)[1]


def test_ensemble_logit_is_the_mean_of_the_members_logits(members, images):
    ensemble = build_ensemble(members)
    expected = np.mean([_logits(m, images) for m in members], axis=0)
    np.testing.assert_allclose(_logits(ensemble, images), expected, rtol=1e-4, atol=1e-5)


def test_member_probabilities_are_recovered_from_pooled_features(members, images):
    ensemble = build_ensemble(members)
    scale, shift = 1.7, -0.3
    layer = ensemble.get_layer(LOGIT_LAYER)
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * scale, bias * scale + shift])
    spread = Members(count=3, bias=np.array(member_bias(members, scale, shift)))
    pooled, _ = pooled_and_logits(ensemble, images)
    recovered = spread.probabilities(pooled, layer.get_weights()[0])
    expected = np.stack(
        [1 / (1 + np.exp(-(scale * _logits(m, images) + shift))) for m in members], axis=1
    )
    np.testing.assert_allclose(recovered, expected, rtol=1e-4, atol=1e-5)


def test_members_of_another_input_size_are_refused(members):
    other = build_model(ModelConfig(arch="vgg", image_size=96, width=16, stages=2))
    with pytest.raises(ValueError, match="input size"):
        build_ensemble([members[0], other])


def test_combined_artifact_carries_calibration_members_spread_and_gate(gated_ensemble_path):
    card = read_card(gated_ensemble_path)
    assert card["ensemble"]["members"] == 2 and len(card["ensemble"]["member_bias"]) == 2
    assert [m["version"] for m in card["members"]] == ["tiny-member-1", "tiny-member-2"]
    assert card["calibration"]["method"].startswith("platt")
    assert card["validation"]["sensitivity"] >= 0.97
    assert "in_batch_validation" in card and "held-out acquisition" in card["threshold_rule"]
    assert card["gate"]["validation_refusal_rate"] <= 0.01
    assert card["intended_population"]["max_age_years"] == 6


def test_uncertainty_is_the_members_spread_within_its_range(gated_ensemble_path, radiograph_set):
    predictor = Predictor.load(gated_ensemble_path)
    files = sorted((radiograph_set / "chest_xray/train/PNEUMONIA").iterdir())[:6]
    outcomes = predictor.predict_batch([p.read_bytes() for p in files])
    spreads = [o.uncertainty for o in outcomes if not o.refused]
    assert spreads and all(0.0 <= s <= 0.5 for s in spreads)
    assert max(spreads) > 0.0  # two differently seeded members disagree somewhat


def test_an_ensemble_of_one_network_twice_is_certain(gated_ensemble_path, tmp_path, radiograph_set):
    member = gated_ensemble_path.parent / "member1.keras"
    for name in ("a", "b"):
        shutil.copy(member, tmp_path / f"{name}.keras")
        shutil.copy(member.with_suffix(".json"), tmp_path / f"{name}.json")
    output = tmp_path / "twice.keras"
    combine([tmp_path / "a.keras", tmp_path / "b.keras"], output=output, version="twice")
    predictor = Predictor.load(output)
    data = sorted((radiograph_set / "chest_xray/train/NORMAL").iterdir())[0].read_bytes()
    predictor.gate = None  # the spread, not the gate, is under test
    assert predictor.predict(data, heatmap=False).uncertainty == pytest.approx(0.0, abs=1e-6)


def test_members_validated_on_different_splits_are_refused(gated_ensemble_path, tmp_path):
    member = gated_ensemble_path.parent / "member1.keras"
    other = tmp_path / "other.keras"
    shutil.copy(member, other)
    card = json.loads(member.with_suffix(".json").read_text())
    card["training_config"]["split_seed"] = 99
    write_card(other, card)
    with pytest.raises(ValueError, match="split_seed"):
        combine([member, other], output=tmp_path / "x.keras", version="x")


def test_trimmed_ensemble_scores_the_central_square_and_frames_its_heatmap(members, images):
    from ml.config import TRIM_LAYER
    from ml.gradcam import CompiledExplainer, gradcam

    ensemble = build_ensemble(members[:2], trim=0.05)
    offset, side = ensemble.get_layer(TRIM_LAYER).box(64)
    assert (offset, side) == (3, 58)
    import keras

    centre = keras.ops.image.resize(
        images[:, offset : offset + side, offset : offset + side, :], (64, 64)
    )
    expected = np.mean([_logits(m, np.asarray(centre)) for m in members[:2]], axis=0)
    np.testing.assert_allclose(_logits(ensemble, images), expected, rtol=1e-4, atol=1e-5)
    _, maps = CompiledExplainer(ensemble)(images[:2])
    assert maps[:, :offset].max() == 0 and maps[:, :, offset + side :].max() == 0
    reference = gradcam(ensemble, images[0])
    assert np.corrcoef(maps[0].ravel(), reference.ravel())[0, 1] >= 0.99
