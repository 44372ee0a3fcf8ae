"""Fixtures shared by the ml tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def labelled_folder(radiograph_set, tmp_path_factory) -> Path:
    """NORMAL/ and PNEUMONIA/ with four real radiographs each, and one broken JPEG."""
    root = tmp_path_factory.mktemp("eval")
    for label in ("NORMAL", "PNEUMONIA"):
        (root / label).mkdir()
        for path in sorted((radiograph_set / "chest_xray/train" / label).iterdir())[:4]:
            shutil.copy(path, root / label / path.name)
    (root / "NORMAL" / "broken.jpeg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root
