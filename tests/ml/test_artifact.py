from __future__ import annotations

import json
import shutil

import pytest

from ml.artifact import ArtifactError, read_card


def test_card_round_trips_with_the_recorded_sha256(tiny_model_path):
    card = read_card(tiny_model_path)
    assert card["file"] == tiny_model_path.name
    assert len(card["sha256"]) == 64


def test_altered_weights_are_refused(tiny_model_path, tmp_path):
    copy = tmp_path / "model.keras"
    shutil.copy(tiny_model_path, copy)
    shutil.copy(tiny_model_path.with_suffix(".json"), copy.with_suffix(".json"))
    with copy.open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError, match="sha256"):
        read_card(copy)


def test_missing_card_is_refused(tiny_model_path, tmp_path):
    copy = tmp_path / "model.keras"
    shutil.copy(tiny_model_path, copy)
    with pytest.raises(ArtifactError, match="card not found"):
        read_card(copy)


def test_card_without_a_threshold_is_refused(tiny_model_path, tmp_path):
    copy = tmp_path / "model.keras"
    shutil.copy(tiny_model_path, copy)
    card = json.loads(tiny_model_path.with_suffix(".json").read_text())
    del card["threshold"]
    copy.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match="threshold"):
        read_card(copy)
