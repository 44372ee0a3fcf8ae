"""File names in storage. Random, because uploaded file names can carry patient names and
storage paths appear in logs."""

from __future__ import annotations

import uuid
from typing import Any

from django.utils.deconstruct import deconstructible


@deconstructible
class RandomName:
    """An `upload_to` that ignores the given name: `<folder>/<random hex><suffix>`. The
    folder may name fields of the instance: `RandomName("datasets/{dataset_id}", ".bin")`."""

    def __init__(self, folder: str, suffix: str) -> None:
        self.folder, self.suffix = folder, suffix

    def __call__(self, instance: Any, filename: str) -> str:
        folder = self.folder.format_map(vars(instance)) if "{" in self.folder else self.folder
        return f"{folder}/{uuid.uuid4().hex}{self.suffix}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RandomName) and (self.folder, self.suffix) == (
            other.folder,
            other.suffix,
        )

    def __hash__(self) -> int:
        return hash((self.folder, self.suffix))
