"""The web process imports ml's TensorFlow-free modules: none of them may load TensorFlow
or Keras at import, only inside the functions that run a network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

TENSORFLOW_FREE = (
    "ml.config",
    "ml.train",
    "ml.gradcam",
    "ml.ensemble",
    "ml.features",
    "ml.predictor",
    "ml.evaluate",
    "ml.promote",
    "ml.benchmark",
    "ml.cli",
    "ml.data",
    "ml.preprocessing",
    "ml.gate",
    "ml.header",
    "ml.outcome",
    "ml.overlay",
    "ml.metrics",
    "ml.artifact",
)


def loaded_frameworks(modules: tuple[str, ...]) -> list[str]:
    """The frameworks a fresh interpreter holds after importing `modules`."""
    code = (
        "import importlib, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(' '.join(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_tensorflow_free_modules_import_without_tensorflow_or_keras():
    assert loaded_frameworks(TENSORFLOW_FREE) == []


def test_the_check_sees_a_module_that_loads_tensorflow():
    assert "tensorflow" in loaded_frameworks(("ml.config", "ml.model"))
