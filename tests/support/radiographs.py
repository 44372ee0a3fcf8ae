"""Where the test suite's radiographs are: the licensed fixture set in tests/data/radiographs
(a subset of the public data set, chosen by scripts/make_test_fixtures.py), or the folder
CHESTNET_SHARED_DATA names when it is set explicitly. Both have the same layout:
chest_xray/train/{NORMAL,PNEUMONIA}, originals/{NORMAL,PNEUMONIA} and MANIFEST.csv."""

from __future__ import annotations

import os
from pathlib import Path

FIXTURE_SET = Path(__file__).resolve().parents[1] / "data" / "radiographs"


def radiographs_root() -> Path:
    configured = os.environ.get("CHESTNET_SHARED_DATA")
    return Path(configured) if configured else FIXTURE_SET
