"""A model artifact: a `.keras` file and, beside it, its card (`.json`) carrying everything
needed to rebuild and trust it. Loading checks the sha256 the card records."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
DEFAULT_ARTIFACT = ARTIFACT_DIR / "chestnet-default.keras"


class ArtifactError(RuntimeError):
    """The artifact is missing, altered or incomplete."""


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


def read_card(model_path: Path, *, verify: bool = True) -> dict[str, Any]:
    """The card of `model_path`; raises ArtifactError if either file is missing or the
    weights do not match the sha256 recorded on the card."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ArtifactError(f"Model file not found: {model_path}")
    try:
        card = json.loads(card_path(model_path).read_text())
    except FileNotFoundError:
        raise ArtifactError(f"Model card not found beside {model_path.name}.") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"Model card of {model_path.name} is not valid JSON: {exc}") from exc
    for key in ("version", "sha256", "image_size", "threshold", "labels", "preprocessing_version"):
        if key not in card:
            raise ArtifactError(f"Model card of {model_path.name} lacks '{key}'.")
    if verify and sha256_of(model_path) != card["sha256"]:
        raise ArtifactError(
            f"{model_path.name} does not match the sha256 on its card: the file was altered "
            "or the card belongs to another model."
        )
    return card
