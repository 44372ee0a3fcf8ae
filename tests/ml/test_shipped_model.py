"""The default artifact in the repository: it loads, is the file its card describes, and
behaves like a pneumonia classifier. It is never retrained here."""

from __future__ import annotations

import numpy as np
import pytest

from ml.artifact import DEFAULT_ARTIFACT, read_card, sha256_of
from ml.gradcam import gradcam
from ml.predictor import Predictor
from ml.preprocessing import PREPROCESSING_VERSION, preprocess


@pytest.fixture(scope="module")
def shipped() -> Predictor:
    return Predictor.load()


def test_default_artifact_is_small_and_matches_its_card():
    card = read_card(DEFAULT_ARTIFACT)
    assert DEFAULT_ARTIFACT.stat().st_size <= 25 * 1024 * 1024
    assert sha256_of(DEFAULT_ARTIFACT) == card["sha256"]
    assert card["preprocessing_version"] == PREPROCESSING_VERSION
    assert card["labels"] == ["NORMAL", "PNEUMONIA"]


def test_card_documents_threshold_choice_data_and_intended_use():
    card = read_card(DEFAULT_ARTIFACT)
    assert "validation" in card["threshold_rule"]
    assert 0.0 < card["threshold"] < 1.0
    assert len(card["dataset"]["manifest_sha256"]) == 64
    assert card["command"].startswith("python -m ml train")
    assert "pediatric" in card["intended_use"] and "radiologist" in card["intended_use"]
    assert card["validation"]["sensitivity"] >= 0.95


def test_shipped_model_loads_by_default_with_its_version(shipped):
    assert shipped.version == read_card(DEFAULT_ARTIFACT)["version"]


def test_shipped_model_separates_shared_radiographs(shipped, shared_data):
    # Originals are training patients: a sanity check that the right file loaded, not a score.
    normal = [p.read_bytes() for p in sorted((shared_data / "originals/NORMAL").iterdir())[:6]]
    pneumonia = [
        p.read_bytes() for p in sorted((shared_data / "originals/PNEUMONIA").iterdir())[:6]
    ]
    p_normal = [r.probability for r in shipped.predict_batch(normal)]
    p_pneumonia = [r.probability for r in shipped.predict_batch(pneumonia)]
    assert np.mean(p_pneumonia) > np.mean(p_normal) + 0.3
    assert sum(p >= shipped.threshold for p in p_pneumonia) >= 5


def test_compiled_heatmaps_match_tf_keras_vis_on_the_shipped_model(shipped, shared_data):
    paths = sorted((shared_data / "chest_xray/train/PNEUMONIA").iterdir())[:3]
    paths += sorted((shared_data / "chest_xray/train/NORMAL").iterdir())[:2]
    for path in paths:
        data = path.read_bytes()
        compiled = shipped.predict(data).heatmap
        reference = gradcam(shipped.model, preprocess(data, shipped.image_size))
        assert compiled.shape == reference.shape == (shipped.image_size, shipped.image_size)
        assert np.corrcoef(compiled.ravel(), reference.ravel())[0, 1] >= 0.99, path.name
