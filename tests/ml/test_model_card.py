"""The typed model card: checked on load, and giving back exactly the JSON it was read from."""

from __future__ import annotations

import json
import shutil

import pytest

from ml.artifact import DEFAULT_ARTIFACT, ArtifactError, ModelCard, card_path, load_card, read_card

MINIMAL = {
    "version": "v1",
    "sha256": "0" * 64,
    "image_size": 64,
    "threshold": 0.5,
    "labels": ["NORMAL", "PNEUMONIA"],
    "preprocessing_version": "1",
}


def test_the_shipped_card_round_trips_to_the_same_json():
    text = card_path(DEFAULT_ARTIFACT).read_text()
    card = load_card(DEFAULT_ARTIFACT)
    assert card.to_dict() == json.loads(text)
    assert json.dumps(card.to_dict(), indent=2, sort_keys=True) + "\n" == text
    assert card.extra == {}  # every key of the shipped card has a field
    assert card.version == "chestnet-2.0-ens2-vgg224" and 0.0 < card.threshold < 1.0
    assert card.labels == ["NORMAL", "PNEUMONIA"] and card.image_size == 224
    assert "held-out acquisition batches" in card.threshold_rule
    assert card.validation["operating_points"] and card.site_calibration is None


def test_a_card_with_an_unknown_key_keeps_it_and_its_key_order():
    data = {"future_section": {"a": [1, 2]}, **MINIMAL, "threshold_rule": None, "zz": 3}
    card = ModelCard.from_dict(data)
    assert card.extra == {"future_section": {"a": [1, 2]}, "zz": 3}
    assert card.to_dict() == data and list(card.to_dict()) == list(data)
    assert card.threshold_rule is None and card.validation is None


def test_read_card_gives_the_json_object_load_card_types(tiny_model_path):
    on_disk = json.loads(card_path(tiny_model_path).read_text())
    assert read_card(tiny_model_path) == on_disk == load_card(tiny_model_path).to_dict()


def test_a_card_built_in_code_gives_its_required_keys_and_what_it_holds():
    card = ModelCard(**MINIMAL, threshold_rule="by hand", extra={"note": "x"})
    assert card.to_dict() == {**MINIMAL, "threshold_rule": "by hand", "note": "x"}


@pytest.mark.parametrize("key", list(MINIMAL))
def test_a_missing_key_is_named(key):
    data = {k: v for k, v in MINIMAL.items() if k != key}
    with pytest.raises(ArtifactError, match=f"^Model card of m.keras lacks '{key}'.$"):
        ModelCard.from_dict(data, name="m.keras")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("threshold", "0.5", "'threshold': a number expected, not a string"),
        ("threshold", None, "'threshold': a number expected, not null"),
        ("image_size", 224.0, "'image_size': an integer expected, not a number"),
        ("image_size", True, "'image_size': an integer expected, not true or false"),
        ("labels", "NORMAL", "'labels': a list of strings expected, not a string"),
        ("labels", ["NORMAL", 1], "'labels': a list of strings expected, not a list holding"),
        ("validation", [], "'validation': a JSON object expected, not a list"),
        ("threshold_rule", 3, "'threshold_rule': a string expected, not an integer"),
    ],
)
def test_a_wrongly_typed_key_is_named_with_what_it_should_hold(key, value, message):
    with pytest.raises(ArtifactError, match=f"^Model card of m.keras has a wrong {message}"):
        ModelCard.from_dict({**MINIMAL, key: value}, name="m.keras")


def test_loading_refuses_a_wrongly_typed_card(tiny_model_path, tmp_path):
    copy = tmp_path / "model.keras"
    shutil.copy(tiny_model_path, copy)
    data = json.loads(card_path(tiny_model_path).read_text())
    card_path(copy).write_text(json.dumps({**data, "image_size": "64"}))
    with pytest.raises(ArtifactError, match="model.keras has a wrong 'image_size'"):
        load_card(copy)
    with pytest.raises(ArtifactError, match="model.keras has a wrong 'image_size'"):
        read_card(copy)
