from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ml.artifact import ArtifactError, write_card
from ml.predictor import Predictor


@pytest.fixture(scope="module")
def predictor(tiny_model_path):
    return Predictor.load(tiny_model_path)


@pytest.fixture(scope="module")
def radiographs(radiograph_set):
    normal = sorted((radiograph_set / "originals/NORMAL").iterdir())[:2]
    pneumonia = sorted((radiograph_set / "chest_xray/train/PNEUMONIA").iterdir())[:2]
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


def test_decoded_image_is_returned_at_original_size(predictor, radiograph_set):
    path = sorted((radiograph_set / "originals/NORMAL").iterdir())[0]
    from PIL import Image

    width, height = Image.open(path).size
    assert predictor.predict(path.read_bytes(), heatmap=False).image.shape == (height, width)


def test_unreadable_bytes_are_a_refusal_not_an_exception(predictor):
    outcome = predictor.predict(b"definitely not an image")
    assert outcome.refused and outcome.reason == "unreadable"
    assert "PNG, JPEG or DICOM" in outcome.message
    assert outcome.model_version == predictor.version
    assert not hasattr(outcome, "probability")


def test_a_multi_frame_dicom_is_refused_as_unsupported(predictor):
    from pydicom.data import get_testdata_file

    outcome = predictor.predict(open(get_testdata_file("emri_small.dcm"), "rb").read())
    assert (outcome.refused, outcome.reason) == (True, "unsupported")


@pytest.fixture(scope="module")
def gated(gated_ensemble_path):
    return Predictor.load(gated_ensemble_path)


def test_a_ct_dicom_is_refused_from_its_header(gated):
    from pydicom.data import get_testdata_file

    outcome = gated.predict(open(get_testdata_file("CT_small.dcm"), "rb").read())
    assert (outcome.refused, outcome.reason) == (True, "not_chest_radiograph")
    assert "CT" in outcome.message


def test_a_colour_photograph_is_refused(gated):
    from io import BytesIO

    from PIL import Image

    rng = np.random.default_rng(0)
    picture = np.zeros((300, 400, 3), np.uint8)
    picture[..., 0] = np.linspace(0, 255, 400)[None]
    picture[..., 1] = rng.integers(0, 255, (300, 400))
    picture[100:200, 150:250, 2] = 255
    buffer = BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG")
    outcome = gated.predict(buffer.getvalue())
    assert (outcome.refused, outcome.reason) == (True, "not_chest_radiograph")


def test_a_document_is_refused_by_the_learned_layout_distance(gated):
    from io import BytesIO

    from PIL import Image, ImageDraw

    page = Image.new("L", (850, 1100), 250)
    draw = ImageDraw.Draw(page)
    for y in range(60, 1040, 22):
        draw.text((60, y), "Discharge summary: lorem ipsum dolor sit amet " * 2, fill=10)
    buffer = BytesIO()
    page.save(buffer, format="PNG")
    outcome = gated.predict(buffer.getvalue())
    assert outcome.refused and outcome.reason == "not_chest_radiograph"
    assert outcome.details["layout_distance"] > gated.gate.layout_threshold


@pytest.mark.parametrize(("age", "refused"), [(0.5, True), (1, False), (5, False), (6, True)])
def test_the_callers_age_is_checked_against_the_intended_population(
    gated, radiograph_set, age, refused
):
    # Ages the gate accepts still need pixels it accepts: use a validation-batch radiograph.
    from ml.config import TrainConfig
    from ml.train import split_for

    record = split_for(TrainConfig(data_root=str(radiograph_set), limit_per_class=40)).validation[0]
    data = (radiograph_set / record.path).read_bytes()
    assert gated.predict(data, age_years=None, heatmap=False).refused is False
    outcome = gated.predict(data, age_years=age, heatmap=False)
    assert outcome.refused is refused
    if refused:
        assert outcome.reason == "outside_intended_use" and "1 to 5" in outcome.message


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


def test_an_unknown_age_is_analysed_with_a_warning_and_a_header_age_counts_as_known(
    predictor, radiographs
):
    from devtools import dicom_files

    note = "Age unknown: the AI was validated on children aged 1 to 5 years only."
    png = radiographs[0]
    assert note in predictor.predict(png, heatmap=False).warnings
    assert note not in predictor.predict(png, age_years=3, heatmap=False).warnings
    pixels = dicom_files.chest_pixels(side=128)
    with_age = dicom_files.radiograph(pixels=pixels, age="004Y")
    without = dicom_files.radiograph(pixels=pixels, age="")
    del without.PatientBirthDate
    assert note not in predictor.predict(dicom_files.to_bytes(with_age), heatmap=False).warnings
    outcome = predictor.predict(dicom_files.to_bytes(without), heatmap=False)
    assert not outcome.refused and note in outcome.warnings
