"""`python -m ml benchmark`: where the time goes when serving one radiograph.

Every figure is measured in the same process and run, next to the bare compiled forward
pass of the same model, so ratios are meaningful on a noisy shared machine.
"""

from __future__ import annotations

import functools
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ml.config import DEFAULT_DATA

BATCH_SIZES = (1, 4, 8, 16, 32)


def _stats(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(samples, 50)), 2),
        "p95_ms": round(float(np.percentile(samples, 95)), 2),
        "runs": len(samples),
    }


def _interleaved(functions: dict[str, Callable[[], object]], runs: int, warmup: int = 3) -> dict:
    """Time each function `runs` times, round-robin, so a noisy neighbour slows all alike."""
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for round_ in range(warmup + runs):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            if round_ >= warmup:
                samples[name].append((time.perf_counter() - started) * 1000)
    return {name: _stats(values) for name, values in samples.items()}


def _jpeg2000_threads(runs: int) -> dict[str, Any]:
    """Decoding a lossless JPEG 2000 CR (pydicom-data's RG1_J2KI.dcm, 1,955 x 1,841, read one
    pyramid level down) with OpenJPEG on one thread and on every core: the OPJ_NUM_THREADS
    the Celery app sets. OpenJPEG reads the variable for each image it opens."""
    import os

    from pydicom.data import get_testdata_file

    from ml.preprocessing import decode

    path = get_testdata_file("RG1_J2KI.dcm")
    if path is None:
        return {}
    data = Path(path).read_bytes()
    before = os.environ.get("OPJ_NUM_THREADS")

    def on(threads: str) -> Callable[[], object]:
        def run() -> object:
            os.environ["OPJ_NUM_THREADS"] = threads
            return decode(data)

        return run

    cores = str(len(os.sched_getaffinity(0)))
    try:
        return _interleaved(
            {"decode_jpeg2000_one_thread": on("1"), "decode_jpeg2000_every_core": on(cores)},
            runs,
            warmup=1,
        )
    finally:
        if before is None:
            os.environ.pop("OPJ_NUM_THREADS", None)
        else:
            os.environ["OPJ_NUM_THREADS"] = before


def run_benchmark(
    *, model: str | None, runs: int, batch_size: int, data_root: Path = DEFAULT_DATA
) -> dict[str, Any]:
    """Each stage's p50 and p95 in milliseconds, batch throughput, the ratios and budgets
    they are judged by, and the peak memory of this process."""
    import os

    import tensorflow as tf

    from ml.gradcam import CompiledExplainer, gradcam
    from ml.predictor import Predictor
    from ml.preprocessing import preprocess

    small = next((data_root / "chest_xray/train/PNEUMONIA").glob("*.jpeg")).read_bytes()
    large = max(
        (data_root / "originals/PNEUMONIA").glob("*"), key=lambda p: p.stat().st_size
    ).read_bytes()
    predictor = Predictor.load(model)
    size = predictor.image_size
    x = preprocess(small, size)[np.newaxis]
    bare = tf.function(lambda t: predictor.model(t, training=False))
    bare(x)
    explainer = CompiledExplainer(predictor.model)
    results: dict[str, Any] = {
        "model_version": predictor.version,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, TensorFlow {tf.__version__}",
    }
    results |= _interleaved(
        {
            "bare_compiled_forward": lambda: bare(x),
            "preprocess_224px_jpeg": lambda: preprocess(small, size),
            # predict() is the whole path a worker runs: decode, header rules, colour,
            # forward pass, learned gate, member spread (and Grad-CAM when asked).
            "gate_predict_no_heatmap": lambda: predictor.predict(small, heatmap=False),
            "gate_predict_heatmap": lambda: predictor.predict(small, heatmap=True),
            "gradcam_compiled": lambda: explainer(x),
        },
        runs,
    )
    few = max(runs // 5, 5)
    results |= _interleaved(
        {
            "preprocess_full_size_jpeg": lambda: preprocess(large, size),
            "gate_predict_heatmap_full_size": lambda: predictor.predict(large, heatmap=True),
            "gradcam_tf_keras_vis": lambda: gradcam(predictor.model, x[0]),
        },
        few,
        warmup=1,
    )
    results |= _jpeg2000_threads(few)
    # What a worker's batch costs: decode, gate, forward pass and Grad-CAM of distinct files,
    # per image, by batch size (CHESTNET_INFERENCE_BATCH sits where this stops falling).
    folder = sorted((data_root / "chest_xray/train/PNEUMONIA").glob("*.jpeg"))
    files = [path.read_bytes() for path in folder[: max(BATCH_SIZES)]]
    sizes = [n for n in BATCH_SIZES if n <= len(files)]
    by_size = _interleaved(
        {
            str(n): functools.partial(
                predictor.predict_batch, files[:n], heatmap=True, ages=[3] * n
            )
            for n in sizes
        },
        few,
        warmup=1,
    )
    results["predict_batch_heatmap_ms_per_image"] = {
        n: round(by_size[str(n)]["p50_ms"] / n, 2) for n in sizes
    }
    batch = [small] * batch_size
    timing = _interleaved({"batch": lambda: predictor.predict_batch(batch, heatmap=False)}, few)[
        "batch"
    ]
    results["batch_throughput_images_per_s"] = round(batch_size / (timing["p50_ms"] / 1000), 1)
    results["batch_size"] = batch_size
    results["no_heatmap_over_bare_ratio"] = round(
        results["gate_predict_no_heatmap"]["p50_ms"] / results["bare_compiled_forward"]["p50_ms"],
        2,
    )
    results["no_heatmap_budget_ms"] = round(1.5 * results["bare_compiled_forward"]["p50_ms"] + 5, 2)
    results["gate_predict_heatmap_target_ms"] = 30.0
    results["ensemble_members"] = predictor.members.count if predictor.members else 1
    results["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return results
