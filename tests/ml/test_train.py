from __future__ import annotations

import json

import pytest

from ml.config import TrainConfig
from ml.predictor import Predictor
from ml.train import resolve_config, train


def test_flags_override_the_config_file_which_overrides_defaults(tmp_path):
    config_file = tmp_path / "config.json"
    config_file.write_text(
        json.dumps({"epochs": 7, "seed": 3, "model": {"arch": "vgg", "width": 16}})
    )
    config = resolve_config(str(config_file), {"seed": 9, "model.width": 20, "epochs": None})
    assert (config.epochs, config.seed) == (7, 9)
    assert (config.model.arch, config.model.width) == ("vgg", 20)
    assert config.batch_size == TrainConfig().batch_size


def test_a_tiny_training_run_writes_a_loadable_calibrated_artifact(radiograph_set, tmp_path):
    config = resolve_config(
        None,
        {
            "data_root": str(radiograph_set),
            "output": str(tmp_path / "m.keras"),
            "epochs": 1,
            "limit_per_class": 24,
            "cache_dir": "",
            "version": "smoke",
            "val_fraction": 0.25,
            "model.image_size": 64,
            "model.width": 16,
            "model.stages": 2,
        },
    )
    card = train(config, command="test", verbose=0)
    for key in (
        "sha256",
        "threshold",
        "threshold_rule",
        "calibration",
        "validation",
        "dataset",
        "seed",
        "training_config",
        "intended_use",
    ):
        assert key in card
    assert card["validation"]["sensitivity"] >= config.target_sensitivity
    assert sum(card["images"].values()) == 48  # train, held-out batches, in-batch
    assert card["images"]["in_batch"] > 0 and "in_batch_validation" in card
    assert (
        card["validation_protocol"] == "batch" and card["gate"]["validation_refusal_rate"] <= 0.01
    )
    predictor = Predictor.load(tmp_path / "m.keras")
    assert predictor.version == "smoke"
    assert predictor.threshold == card["threshold"]


def test_training_on_one_class_is_refused(radiograph_set, tmp_path, monkeypatch):
    import ml.train

    real = ml.train.read_manifest
    monkeypatch.setattr(
        ml.train, "read_manifest", lambda root: [r for r in real(root) if r.label == "NORMAL"]
    )
    config = resolve_config(
        None,
        {
            "data_root": str(radiograph_set),
            "output": str(tmp_path / "m.keras"),
            "limit_per_class": 10,
            "cache_dir": "",
        },
    )
    with pytest.raises(ValueError, match="both classes"):
        train(config, verbose=0)


def _tiny_config(radiograph_set, tmp_path, **extra):
    return resolve_config(
        None,
        {
            "data_root": str(radiograph_set),
            "output": str(tmp_path / "m.keras"),
            "epochs": 2,
            "limit_per_class": 24,
            "cache_dir": "",
            "val_fraction": 0.25,
            "model.image_size": 64,
            "model.width": 16,
            "model.stages": 2,
            **extra,
        },
    )


def test_progress_is_reported_every_epoch(radiograph_set, tmp_path):
    seen = []
    train(_tiny_config(radiograph_set, tmp_path), verbose=0, progress=seen.append)
    assert [event["epoch"] for event in seen] == [1, 2]
    assert {"loss", "val_auc", "epochs"} <= set(seen[0])


def test_a_cancelled_run_raises_and_writes_no_artifact(radiograph_set, tmp_path):
    from ml.train import TrainingCancelled

    with pytest.raises(TrainingCancelled):
        train(_tiny_config(radiograph_set, tmp_path), verbose=0, should_stop=lambda: True)
    assert not (tmp_path / "m.keras").exists()


def test_too_few_images_are_refused_with_a_reason(radiograph_set, tmp_path):
    # A patient split: on so few images, held-out batches may take a whole class.
    config = _tiny_config(radiograph_set, tmp_path, limit_per_class=5, split="patient")
    with pytest.raises(ValueError, match="at least 8 are needed"):
        train(config, verbose=0)


def test_an_explicit_split_replaces_the_manifest(radiograph_set, tmp_path):
    from ml.data import Split, read_manifest

    records = read_manifest(radiograph_set)
    normal = [r for r in records if r.label == "NORMAL"][:14]
    pneumonia = [r for r in records if r.label == "PNEUMONIA"][:14]
    split = Split(train=normal[:10] + pneumonia[:10], validation=normal[10:] + pneumonia[10:])
    card = train(
        _tiny_config(radiograph_set, tmp_path, epochs=1, dataset_name="custom"),
        verbose=0,
        split=split,
    )
    assert card["images"] == {"train": 20, "validation": 8, "in_batch": 0}
    assert card["dataset"]["source"] == "custom"


def test_promotion_keeps_the_weights_and_adds_release_version_and_operating_points(
    radiograph_set, tmp_path
):
    from ml.artifact import read_card, sha256_of
    from ml.promote import promote

    card = train(_tiny_config(radiograph_set, tmp_path, epochs=1, version="candidate-x"), verbose=0)
    promoted = promote(
        tmp_path / "m.keras", version="release-1", destination=tmp_path / "out/default.keras"
    )
    assert promoted["sha256"] == card["sha256"] == sha256_of(tmp_path / "out/default.keras")
    assert (promoted["version"], promoted["candidate_version"]) == ("release-1", "candidate-x")
    assert promoted["validation"]["operating_points"][-1]["sensitivity"] == 1.0
    assert read_card(tmp_path / "out/default.keras")["version"] == "release-1"


def test_promotion_can_rechoose_the_threshold_on_validation(radiograph_set, tmp_path):
    from ml.promote import promote

    train(_tiny_config(radiograph_set, tmp_path, epochs=1), verbose=0)
    promoted = promote(
        tmp_path / "m.keras", version="r", destination=tmp_path / "d.keras", target_sensitivity=1.0
    )
    assert promoted["validation"]["sensitivity"] == 1.0
    assert "1.00" in promoted["threshold_rule"]
