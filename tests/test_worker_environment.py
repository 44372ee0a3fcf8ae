"""The environment the Celery app gives its worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "OPJ_NUM_THREADS"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


def test_workers_decode_jpeg_2000_on_every_core_unless_the_operator_says_otherwise():
    shown = "import os, chestnet_site.celery; print(os.environ['OPJ_NUM_THREADS'])"
    assert _python(shown) == str(len(os.sched_getaffinity(0)))
    assert _python(shown, OPJ_NUM_THREADS="1") == "1"


def test_jpeg_2000_decoded_on_several_threads_is_the_same_image():
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG1_J2KI.dcm")
    if path is None:
        pytest.skip("pydicom-data's RG1_J2KI.dcm is not installed")
    digest = (
        "import hashlib, pathlib, sys; from ml.preprocessing import decode; "
        f"image = decode(pathlib.Path({str(path)!r}).read_bytes()).image; "
        "print(image.shape, hashlib.sha256(image.tobytes()).hexdigest())"
    )
    one = _python(digest, OPJ_NUM_THREADS="1")
    assert "(978, 921)" in one  # read one level down its pyramid, by Pillow's OpenJPEG
    assert _python(digest, OPJ_NUM_THREADS="2") == one
