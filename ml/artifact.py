"""A model artifact: a `.keras` file and, beside it, its card (`.json`) carrying everything
needed to rebuild and trust it. Loading checks the sha256 the card records.

`ModelCard` is the card, typed: a field for each key the code reads, checked on load, and
every other key kept as it came, so `to_dict()` gives back the JSON object it was read
from. Code that writes a card (ml.train, ml.ensemble, ml.calibrate, ml.promote) builds that
JSON object itself and `write_card` stores it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
DEFAULT_ARTIFACT = ARTIFACT_DIR / "chestnet-default.keras"


class ArtifactError(RuntimeError):
    """The artifact is missing, altered or incomplete."""


@dataclass(frozen=True)
class ModelCard:
    """A model card. Its sections (validation, calibration, site_calibration...) stay the
    JSON objects they are; a key the card lacks reads None."""

    # Every card carries these (checked in this order).
    version: str
    sha256: str
    image_size: int
    threshold: float
    labels: list[str]
    preprocessing_version: str
    # The file and what the model is for.
    file: str | None = None
    name: str | None = None
    created: str | None = None
    positive_label: str | None = None
    channels: int | None = None
    intended_use: str | None = None
    intended_population: dict[str, Any] | None = None
    # How the threshold was chosen, and the evidence for it.
    threshold_rule: str | None = None
    calibration: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    validation_protocol: str | None = None
    in_batch_validation: dict[str, Any] | None = None
    gate: dict[str, Any] | None = None
    # How it was trained.
    history: dict[str, Any] | None = None
    training_config: dict[str, Any] | None = None
    training_seconds: float | None = None
    seed: int | list[int] | None = None
    dataset: dict[str, Any] | None = None
    patients: dict[str, Any] | None = None
    images: dict[str, Any] | None = None
    command: str | None = None
    # An ensemble (ml.ensemble).
    members: list[dict[str, Any]] | None = None
    ensemble: dict[str, Any] | None = None
    # A promoted candidate (ml.promote).
    candidate_version: str | None = None
    promoted: str | None = None
    promote_command: str | None = None
    # A site calibration (ml.calibrate); the base model's evidence moves under base_*.
    site_calibration: dict[str, Any] | None = None
    base_validation: dict[str, Any] | None = None
    base_validation_protocol: str | None = None
    base_in_batch_validation: dict[str, Any] | None = None
    # A score reference of its own (monitoring reads the site calibration's first).
    score_reference: dict[str, Any] | None = None
    # Keys no field above names, and the order of the keys as read.
    extra: dict[str, Any] = field(default_factory=dict)
    key_order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, name: str = "") -> ModelCard:
        """The card of a JSON object; raises ArtifactError when a required key is missing
        or a value has the wrong type. `name` (a file, a version) goes in the message."""
        where = f"Model card of {name}" if name else "Model card"
        if not isinstance(data, Mapping):
            raise ArtifactError(f"{where} is not a JSON object.")
        for key in REQUIRED:
            if key not in data:
                raise ArtifactError(f"{where} lacks '{key}'.")
        known = {key: value for key, value in data.items() if key in KINDS}
        for key, value in known.items():
            _check(where, key, value)
        extra = {key: value for key, value in data.items() if key not in KINDS}
        return cls(**known, extra=extra, key_order=tuple(data))

    def to_dict(self) -> dict[str, Any]:
        """The card's JSON object: the keys it was read with, in their order. A card built
        here without from_dict: its required keys, the others it holds, then `extra`."""
        values = {key: getattr(self, key) for key in KINDS}
        values.update(self.extra)
        order = self.key_order or tuple(
            key for key, value in values.items() if key in REQUIRED or value is not None
        )
        return {key: values[key] for key in order}


# A field's annotation says what its key may hold: (words for the message, JSON types).
_KIND_OF_TYPE: dict[str, tuple[str, tuple[type, ...]]] = {
    "str": ("a string", (str,)),
    "int": ("an integer", (int,)),
    "float": ("a number", (int, float)),
    "list[str]": ("a list of strings", (list,)),
    "list[dict[str, Any]]": ("a list", (list,)),
    "int | list[int]": ("an integer or a list", (int, list)),
    "dict[str, Any]": ("a JSON object", (dict,)),
}
_NOT_KEYS = ("extra", "key_order")
KINDS = {
    f.name: _KIND_OF_TYPE[str(f.type).removesuffix(" | None")]
    for f in fields(ModelCard)
    if f.name not in _NOT_KEYS
}
REQUIRED = tuple(
    f.name
    for f in fields(ModelCard)
    if f.name not in _NOT_KEYS and f.default is MISSING and f.default_factory is MISSING
)
_JSON_NAMES = {str: "a string", int: "an integer", float: "a number", dict: "a JSON object"}


def _check(where: str, key: str, value: Any) -> None:
    """Raise ArtifactError unless `value` is what `key` holds (an optional key: or null)."""
    if value is None and key not in REQUIRED:
        return
    words, types = KINDS[key]
    # JSON true and false are Python bools, which are ints: never a size or a threshold.
    wrong = isinstance(value, bool) or not isinstance(value, types)
    if not wrong and key == "labels":
        wrong = not all(isinstance(label, str) for label in value)
    if wrong:
        found = "a list holding other values" if isinstance(value, list) else _json_kind(value)
        raise ArtifactError(f"{where} has a wrong '{key}': {words} expected, not {found}.")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    return _JSON_NAMES.get(type(value), type(value).__name__)


def card_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_card(model_path: Path, card: dict[str, Any]) -> dict[str, Any]:
    card = {**card, "sha256": sha256_of(model_path), "file": model_path.name}
    card_path(model_path).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card


def load_card(model_path: Path, *, verify: bool = True) -> ModelCard:
    """The card of `model_path`; raises ArtifactError if either file is missing, the card
    is incomplete or the weights do not match the sha256 recorded on the card."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ArtifactError(f"Model file not found: {model_path}")
    try:
        data = json.loads(card_path(model_path).read_text())
    except FileNotFoundError:
        raise ArtifactError(f"Model card not found beside {model_path.name}.") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"Model card of {model_path.name} is not valid JSON: {exc}") from exc
    card = ModelCard.from_dict(data, name=model_path.name)
    if verify and sha256_of(model_path) != card.sha256:
        raise ArtifactError(
            f"{model_path.name} does not match the sha256 on its card: the file was altered "
            "or the card belongs to another model."
        )
    return card


def read_card(model_path: Path, *, verify: bool = True) -> dict[str, Any]:
    """The card of `model_path` as its JSON object (checked as `load_card` does), for code
    that builds a new card from it."""
    return load_card(model_path, verify=verify).to_dict()
