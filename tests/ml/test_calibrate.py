"""Site calibration: the fitting maths on synthetic scores, the folded artifact (tiny
networks), the folder workflow with refusals, and the command line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml import metrics
from ml.artifact import ModelCard, read_card, write_card
from ml.calibrate import (
    CalibrationFailed,
    NotEnoughLabels,
    SiteCalibration,
    calibrate_folder,
    fit_site_calibration,
    write_calibrated_artifact,
)
from ml.config import LOGIT_LAYER, ModelConfig
from ml.ensemble import Members
from ml.features import pooled_and_logits
from tests.support.images import photograph_jpeg

REPO = Path(__file__).resolve().parents[2]


def _site_scores(n_per_class: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A site where the base model is underconfident and shifted: the true balanced-odds
    logit is 2x, the base model reports sigmoid(x + 0.8)."""
    rng = np.random.default_rng(seed)
    x = np.r_[rng.normal(-1, 1, n_per_class), rng.normal(1, 1, n_per_class)]
    targets = np.r_[np.zeros(n_per_class), np.ones(n_per_class)]
    return metrics.sigmoid(x + 0.8), targets


@pytest.fixture(scope="module")
def calibration() -> SiteCalibration:
    return fit_site_calibration(*_site_scores(), bootstrap=200)


# The fitting maths


def test_fit_recovers_the_sites_calibration_and_meets_the_target(calibration):
    scores, targets = _site_scores()
    assert calibration.scale == pytest.approx(2.0, abs=0.25)
    assert calibration.shift == pytest.approx(-1.6, abs=0.25)
    recalibrated = calibration.apply(scores)
    caught = (recalibrated[targets == 1] >= calibration.threshold).mean()
    assert caught >= 0.97 and calibration.figures["sensitivity"] == caught
    assert calibration.counts == {"NORMAL": 400, "PNEUMONIA": 400}
    # Recalibrated, the probabilities mean what they say; the base ones did not.
    ece = metrics.expected_calibration_error
    assert ece(targets, recalibrated) < 0.05 < ece(targets, scores)


def test_fit_reports_seeded_bootstrap_intervals_around_its_figures(calibration):
    again = fit_site_calibration(*_site_scores(), bootstrap=200)
    for name in ("sensitivity", "specificity"):
        low, high = calibration.figures[f"{name}_ci95"]
        assert low <= calibration.figures[name] <= high and high - low < 0.2
        assert again.figures[f"{name}_ci95"] == [low, high]
    assert calibration.figures["operating_points"]


def test_score_reference_is_a_histogram_of_the_recalibrated_scores(calibration):
    reference = calibration.score_reference
    assert reference["edges"] == pytest.approx(np.linspace(0, 1, 21).tolist())
    assert len(reference["counts"]) == 20 and sum(reference["counts"]) == 800
    assert "fitted on" in reference["source"]


def test_apply_keeps_saturated_base_scores_finite_and_order_preserving(calibration):
    out = calibration.apply(np.array([0.0, 0.2, 0.7, 1.0]))
    assert np.isfinite(out).all() and (np.diff(out) > 0).all()


def test_too_few_labels_are_refused_with_the_counts_found():
    scores, targets = _site_scores(n_per_class=60)
    keep = np.r_[np.arange(30), np.arange(60, 120)]
    with pytest.raises(NotEnoughLabels) as refused:
        fit_site_calibration(scores[keep], targets[keep], min_per_class=50)
    assert "at least 50" in str(refused.value) and "30 NORMAL and 60 PNEUMONIA" in str(
        refused.value
    )


def test_perfectly_separated_or_backward_sites_give_no_calibration():
    targets = np.r_[np.zeros(60), np.ones(60)]
    separated = np.r_[np.linspace(0.1, 0.4, 60), np.linspace(0.6, 0.9, 60)]
    with pytest.raises(CalibrationFailed, match="separates"):
        fit_site_calibration(separated, targets)
    rng = np.random.default_rng(1)
    backwards = metrics.sigmoid(np.r_[rng.normal(1, 1, 60), rng.normal(-1, 1, 60)])
    with pytest.raises(CalibrationFailed, match="backwards"):
        fit_site_calibration(backwards, targets)


# The folded artifact


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).random((6, 64, 64, 1)).astype(np.float32)


def _probabilities(path: Path, images: np.ndarray) -> np.ndarray:
    from ml.predictor import Predictor

    return Predictor.load(path).probabilities(images)


def test_folded_artifact_outputs_the_calibrated_base_probabilities(
    tiny_model_path, calibration, images, tmp_path
):
    output = tmp_path / "site.keras"
    card = write_calibrated_artifact(
        tiny_model_path, calibration, output=output, version="tiny-site"
    )
    base = _probabilities(tiny_model_path, images)
    np.testing.assert_allclose(_probabilities(output, images), calibration.apply(base), atol=1e-4)
    assert card["threshold"] == calibration.threshold == read_card(output)["threshold"]


def test_card_records_the_site_calibration_and_keeps_the_base_figures(
    tiny_model_path, calibration, tmp_path
):
    base = read_card(tiny_model_path)
    card = write_calibrated_artifact(
        tiny_model_path,
        calibration,
        output=tmp_path / "site.keras",
        version="tiny-site",
        site="St Elsewhere",
        fitted_on="2027 Q1 radiographs",
        command="python -m ml calibrate ...",
    )
    assert card["version"] == "tiny-site" and card["base_validation"] == base["validation"]
    assert "site calibration at St Elsewhere" in card["threshold_rule"]
    assert "0.97" in card["threshold_rule"]
    assert card["validation"]["operating_points"] and "in-sample" in card["validation_protocol"]
    entry = card["site_calibration"]
    assert entry["images"] == {"NORMAL": 400, "PNEUMONIA": 400}
    assert (entry["base_version"], entry["base_sha256"]) == (base["version"], base["sha256"])
    assert (entry["site"], entry["fitted_on"]) == ("St Elsewhere", "2027 Q1 radiographs")
    assert entry["target_sensitivity"] == 0.97 and entry["threshold"] == card["threshold"]
    assert (entry["scale"], entry["shift"]) == (calibration.scale, calibration.shift)
    for key in ("sensitivity", "specificity", "expected_calibration_error", "date", "command"):
        assert entry[key] not in (None, "")
    assert len(entry["sensitivity_ci95"]) == len(entry["specificity_ci95"]) == 2
    assert entry["score_reference"] == calibration.score_reference
    assert card["calibration"]["site"] == {"scale": calibration.scale, "shift": calibration.shift}


def test_figures_on_held_back_site_images_replace_the_in_sample_ones(
    tiny_model_path, calibration, tmp_path
):
    held_back = {"count": 120, "sensitivity": 0.96, "specificity": 0.91}
    card = write_calibrated_artifact(
        tiny_model_path,
        calibration,
        output=tmp_path / "site.keras",
        version="tiny-site",
        validation=held_back,
    )
    assert card["validation"] == held_back and "held-back" in card["validation_protocol"]


def test_calibration_composes_with_the_base_calibration(tmp_path, tiny_model_path, calibration):
    base = _tiny_ensemble(
        tmp_path / "base.keras",
        read_card(tiny_model_path),
        calibration={"scale": 1.5, "shift": -0.2},
    )
    card = write_calibrated_artifact(base, calibration, output=tmp_path / "o.keras", version="v")
    a, b = calibration.scale, calibration.shift
    assert card["calibration"]["scale"] == pytest.approx(a * 1.5)
    assert card["calibration"]["shift"] == pytest.approx(a * -0.2 + b)
    assert card["calibration"]["base"] == {"scale": 1.5, "shift": -0.2}


def test_an_ensembles_member_spread_follows_the_site_calibration(
    tmp_path, tiny_model_path, calibration, images
):
    import keras

    base = _tiny_ensemble(tmp_path / "base.keras", read_card(tiny_model_path))
    output = tmp_path / "site.keras"
    card = write_calibrated_artifact(base, calibration, output=output, version="tiny-site")
    model = keras.saving.load_model(output, compile=False)
    pooled, logits = pooled_and_logits(model, images)
    members = Members.from_card(ModelCard.from_dict(card))
    assert members is not None
    member_p = members.probabilities(pooled, model.get_layer(LOGIT_LAYER).get_weights()[0])
    member_logits = np.log(member_p) - np.log1p(-member_p)
    np.testing.assert_allclose(member_logits.mean(axis=1), logits, atol=1e-4)


def test_the_base_model_is_never_overwritten(tiny_model_path, calibration):
    with pytest.raises(ValueError, match="overwrite"):
        write_calibrated_artifact(tiny_model_path, calibration, output=tiny_model_path, version="x")


def _tiny_ensemble(path: Path, base_card: dict, *, calibration: dict | None = None) -> Path:
    """Two untrained members joined as ml.ensemble does, with a card whose member biases
    are consistent with the shared head (base calibration scale 1, shift 0)."""
    import keras

    from ml.ensemble import build_ensemble
    from ml.model import build_model

    keras.utils.set_random_seed(5)
    config = ModelConfig(arch="vgg", image_size=64, width=16, stages=2)
    members = [build_model(config) for _ in range(2)]
    for i, member in enumerate(members):  # distinct biases, so the test can tell them apart
        kernel, _ = member.get_layer(LOGIT_LAYER).get_weights()
        member.get_layer(LOGIT_LAYER).set_weights([kernel, np.array([0.4 - 0.8 * i])])
    build_ensemble(members).save(path)
    biases = [float(m.get_layer(LOGIT_LAYER).get_weights()[1][0]) for m in members]
    card = {k: v for k, v in base_card.items() if k not in ("sha256", "file")}
    card.update(version="tiny-ensemble", ensemble={"members": 2, "member_bias": biases})
    if calibration:
        card["calibration"] = calibration
    write_card(path, card)
    return path


# A site's folder: scored with the predictor, refusals left out


def _radiograph_like(seed: int) -> bytes:
    """Varied grey pictures: different enough that even an untrained network spreads them."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:96, 0:96] / 96.0
    kind, level = seed % 4, rng.uniform(0.2, 1.0)
    pixels = [
        np.sin(x * rng.uniform(2, 20)) ** 2,
        (x * rng.uniform(0, 1) + y * rng.uniform(0, 1)) / 2,
        ((x - 0.5) ** 2 + (y - 0.5) ** 2 < rng.uniform(0.02, 0.2)).astype(float),
        rng.random((96, 96)) ** rng.uniform(0.3, 3),
    ][kind]
    buffer = io.BytesIO()
    Image.fromarray((np.clip(level * pixels, 0, 1) * 255).astype(np.uint8), "L").save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


@pytest.fixture(scope="module")
def site_folder(tiny_model_path, tmp_path_factory) -> Path:
    """20 analysable images per class, labelled so that the base model ranks them well but
    not perfectly (two swaps across the middle), plus one unreadable and one colour file."""
    from ml.predictor import Predictor

    pictures = [_radiograph_like(seed) for seed in range(40)]
    scores = [o.probability for o in Predictor.load(tiny_model_path).predict_batch(pictures)]
    order = list(np.argsort(scores))
    order[17], order[22] = order[22], order[17]
    order[19], order[20] = order[20], order[19]
    root = tmp_path_factory.mktemp("site")
    for rank, index in enumerate(order):
        label = "NORMAL" if rank < 20 else "PNEUMONIA"
        (root / label).mkdir(exist_ok=True)
        (root / label / f"image-{index:02d}.png").write_bytes(pictures[index])
    (root / "NORMAL" / "broken.jpeg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "PNEUMONIA" / "holiday.jpeg").write_bytes(photograph_jpeg())
    return root


def test_refused_images_are_not_counted_and_are_reported(site_folder, tiny_model_path, tmp_path):
    card = calibrate_folder(
        site_folder, output=tmp_path / "site.keras", model=tiny_model_path, min_per_class=20
    )
    entry = card["site_calibration"]
    assert entry["images"] == {"NORMAL": 20, "PNEUMONIA": 20}
    scoring = entry["scoring"]
    assert (scoring["submitted"], scoring["refused"]) == (42, 2)
    assert scoring["refused_by_reason"] == {"unreadable": 1, "not_chest_radiograph": 1}
    assert card["version"].startswith("tiny-test-0-site-")
    assert entry["fitted_on"] == str(site_folder)


def test_refused_images_cannot_make_up_the_minimum(site_folder, tiny_model_path, tmp_path):
    # 21 files of each class, 20 of them analysable.
    with pytest.raises(NotEnoughLabels, match="found 20 NORMAL and 20 PNEUMONIA"):
        calibrate_folder(
            site_folder, output=tmp_path / "site.keras", model=tiny_model_path, min_per_class=21
        )
    assert not (tmp_path / "site.keras").exists()


# The command line


def run_ml(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ml", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_cli_calibrates_and_evaluate_scores_the_result(site_folder, tiny_model_path, tmp_path):
    output = tmp_path / "site.keras"
    result = run_ml(
        "calibrate",
        str(site_folder),
        "--output",
        str(output),
        "--model",
        str(tiny_model_path),
        "--min-per-class",
        "20",
        "--site",
        "St Elsewhere",
        "--version",
        "tiny-site-1",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["version"] == "tiny-site-1" and summary["refused"] == 2
    assert summary["counts"] == {"NORMAL": 20, "PNEUMONIA": 20}
    assert summary["sensitivity"] >= 0.97 and len(summary["specificity_ci95"]) == 2
    assert "python -m ml calibrate" in read_card(output)["site_calibration"]["command"]
    evaluated = run_ml(
        "evaluate", str(site_folder), "--model", str(output), "--predictions", str(tmp_path / "p")
    )
    assert evaluated.returncode == 0, evaluated.stderr
    headline = json.loads(evaluated.stdout)
    assert headline["threshold"] == summary["threshold"] and headline["count"] == 40
    # The same images, the same operating point: evaluate agrees with the fit.
    assert headline["sensitivity"] == pytest.approx(summary["sensitivity"])
    assert headline["specificity"] == pytest.approx(summary["specificity"])


def test_cli_refuses_too_few_labels_with_a_clear_message(site_folder, tmp_path):
    result = run_ml("calibrate", str(site_folder), "--output", str(tmp_path / "o.keras"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: Site calibration needs at least 50 labelled images of each class" in (
        result.stderr
    )
    assert "found 21 NORMAL and 21 PNEUMONIA" in result.stderr
