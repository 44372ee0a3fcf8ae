from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ml.artifact import ArtifactError, write_card
from ml.predictor import Predictor
from ml.preprocessing import UnreadableImage


@pytest.fixture(scope="module")
def predictor(tiny_model_path):
    return Predictor.load(tiny_model_path)


@pytest.fixture(scope="module")
def radiographs(shared_data):
    normal = sorted((shared_data / "originals/NORMAL").iterdir())[:2]
    pneumonia = sorted((shared_data / "chest_xray/train/PNEUMONIA").iterdir())[:2]
    return [path.read_bytes() for path in normal + pneumonia]


def test_prediction_carries_probability_label_threshold_and_version(predictor, radiographs):
    result = predictor.predict(radiographs[0])
    assert 0.0 <= result.probability <= 1.0
    assert result.label == ("PNEUMONIA" if result.probability >= result.threshold else "NORMAL")
    assert result.threshold == predictor.threshold
    assert result.model_version == predictor.version == "tiny-test-0"
    assert set(result.timings) == {"decode", "heatmap"}


def test_heatmap_is_a_2d_map_in_unit_range_at_model_input_size(predictor, radiographs):
    heatmap = predictor.predict(radiographs[0]).heatmap
    assert heatmap.shape == (predictor.image_size, predictor.image_size)
    assert heatmap.dtype == np.float32
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0


def test_no_heatmap_when_not_asked(predictor, radiographs):
    assert predictor.predict(radiographs[0], heatmap=False).heatmap is None


def test_batch_predictions_equal_single_predictions(predictor, radiographs):
    batch = predictor.predict_batch(radiographs, heatmap=False)
    single = [predictor.predict(data, heatmap=False).probability for data in radiographs]
    assert [r.probability for r in batch] == pytest.approx(single, abs=1e-5)


def test_decoded_image_is_returned_at_original_size(predictor, shared_data):
    path = sorted((shared_data / "originals/NORMAL").iterdir())[0]
    from PIL import Image

    width, height = Image.open(path).size
    assert predictor.predict(path.read_bytes(), heatmap=False).image.shape == (height, width)


def test_unreadable_bytes_raise_a_clear_error(predictor):
    with pytest.raises(UnreadableImage):
        predictor.predict(b"definitely not an image")


def test_artifact_from_another_preprocessing_version_is_refused(tiny_model_path, tmp_path):
    copy = tmp_path / "old.keras"
    shutil.copy(tiny_model_path, copy)
    card = json.loads(tiny_model_path.with_suffix(".json").read_text())
    write_card(copy, {**card, "preprocessing_version": "0"})
    with pytest.raises(ArtifactError, match="preprocessing"):
        Predictor.load(copy)


def test_threshold_override_changes_the_label_not_the_probability(tiny_model_path, radiographs):
    strict = Predictor.load(tiny_model_path, threshold=1.0)
    lenient = Predictor.load(tiny_model_path, threshold=0.0)
    a, b = (
        strict.predict(radiographs[0], heatmap=False),
        lenient.predict(radiographs[0], heatmap=False),
    )
    assert a.probability == pytest.approx(b.probability)
    assert (a.label, b.label, a.threshold) == ("NORMAL", "PNEUMONIA", 1.0)
