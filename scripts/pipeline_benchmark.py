#!/usr/bin/env python
"""Full-size pipeline benchmark (issue 12; part of `make benchmark`). Runs the stack as `make
run` does (gunicorn 2 processes x 4 threads, one Celery worker process, a private Redis, SQLite
in a temporary CHESTNET_HOME) for this checkout and, with `--baseline REF`, for a git worktree
of REF too, one after the other in the same run, and measures through the REST API:

- sequential uploads, each waiting for its result: 224-px JPEG training copies, full-size
  JPEG originals (836-2,396 px), full-size DICOM (real CR files of other vendors from
  pydicom-data: JPEG 2000 lossy and lossless, uncompressed, 1,955 x 1,841; and originals
  converted to DX in JPEG baseline and JPEG 2000 lossless);
  per upload: the POST, accepted -> result stored (server clock), POST -> result seen;
- a burst of 100 224-px uploads posted at once, five times (`--bursts`; medians): images/s
  from the first acceptance to the last result, with one worker child and with two; the
  worker's CPU time per image, and that CPU time less the model's own (decode + forward +
  Grad-CAM, as timed by the predictor); the web tier's CPU time per upload (the two share
  the machine's cores during a burst).

Rewrites only its own section of docs/benchmarks.md (between the pipeline markers).

    .venv/bin/python scripts/pipeline_benchmark.py [--baseline ca7ba69] [--n 20]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from baseline_tree import api_token  # scripts/, run as scripts/<name>.py

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.local_redis import redis_server_binary  # noqa: E402
from devtools.ports import free_port  # noqa: E402
from devtools.processes import stop_process  # noqa: E402
from devtools.reports import write_section  # noqa: E402

START, END = "<!-- pipeline-benchmark:start -->", "<!-- pipeline-benchmark:end -->"
SHARED = Path(os.environ.get("CHESTNET_SHARED_DATA", ROOT.parent / "shared" / "data"))
BOUNDARY = "chestnet-pipeline-boundary"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="", help="a git ref to measure side by side")
    parser.add_argument("--n", type=int, default=20, help="sequential uploads per kind")
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument(
        "--bursts", type=int, default=5, help="bursts per worker setup; the median is reported"
    )
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--json", default="", help="also write the raw figures here")
    args = parser.parse_args()
    files = _files()
    trees = [("this checkout", ROOT)]
    if args.baseline:
        trees.insert(0, (f"baseline {args.baseline}", _worktree(args.baseline)))
    results = {}
    try:
        for label, tree in trees:
            print(f"--- {label} ({tree})", flush=True)
            results[label] = _measure(tree, files, args.n, args.burst, args.bursts)
            print(json.dumps(results[label], indent=1), flush=True)
    finally:
        for _, tree in trees:
            if tree != ROOT:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    section = _markdown(results, files)
    heading = "## Full-size pipeline (issue 12)"
    write_section(Path(args.output), section, start=START, end=END, heading=heading)
    print(section)


def _worktree(ref: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="chestnet-baseline-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), ref], cwd=ROOT, check=True)
    return path


# --- the inputs --------------------------------------------------------------------------


def _files() -> dict[str, list[tuple[str, bytes]]]:
    """kind -> [(name, bytes)] of real radiographs."""
    small = sorted(SHARED.glob("chest_xray/train/PNEUMONIA/*.jpeg"))[:20]
    originals = sorted(SHARED.glob("originals/*/*.jpeg"), key=lambda p: -p.stat().st_size)[:5]
    if not small or not originals:
        raise SystemExit(f"No radiographs under {SHARED}")
    return {
        "jpeg224": [(p.name, p.read_bytes()) for p in small],
        "jpeg_full": [(p.name, p.read_bytes()) for p in originals],
        "dicom_full": _dicoms(originals[0]),
    }


def _dicoms(original: Path) -> list[tuple[str, bytes]]:
    from pydicom.data import get_testdata_file

    found = []
    for name in ("RG1_J2KI.dcm", "RG1_J2KR.dcm", "RG1_UNCI.dcm"):
        path = get_testdata_file(name)
        if path:
            found.append((name, Path(path).read_bytes()))
    from devtools import dicom_files

    pixels = dicom_files.chest_pixels(original, side=4000)
    j2k = dicom_files.radiograph(pixels=pixels, syntax="j2k")
    found.append((f"{original.name} as DX JPEG 2000 lossless", dicom_files.to_bytes(j2k)))
    found.append((f"{original.name} as DX JPEG baseline", _jpeg_dicom(original)))
    return found


def _jpeg_dicom(original: Path) -> bytes:
    """A DX instance whose pixel data is the original JPEG itself (8-bit baseline)."""
    import numpy as np
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    from devtools import dicom_files

    with Image.open(original) as picture:
        gray = picture.convert("L")
        buffer = io.BytesIO()
        gray.save(buffer, format="JPEG", quality=95)
    ds = dicom_files.radiograph(pixels=np.asarray(gray, dtype=np.uint16))
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    return dicom_files.to_bytes(ds)


# --- one tree ----------------------------------------------------------------------------


def _measure(tree: Path, files, n: int, burst: int, bursts: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix="chestnet-pipeline-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CHESTNET_MODEL_PATH", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(CHESTNET_HOME=str(home), DEBUG="0", PYTHONPATH=str(tree))
    port = free_port()
    redis_command = [redis_server_binary(), "--port", str(port), "--save", "", "--appendonly", "no"]
    redis = _start(redis_command, tree, env, home / "redis.log")
    env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=tree, env=env, check=True)
    web_port = free_port()
    web = _start(
        [sys.executable, "-m", "gunicorn", "chestnet_site.wsgi", "--bind"]
        + [f"127.0.0.1:{web_port}", "--workers", "2", "--threads", "4"],
        tree,
        env,
        home / "web.log",
    )
    base = f"http://127.0.0.1:{web_port}"
    _wait(lambda: _get(base + "/healthz") is not None, "gunicorn")
    token = api_token(tree, env, client="pipeline-benchmark")
    db = home / "chestnet.sqlite3"
    results: dict = {}
    try:
        for children in (1, 2):
            worker = _worker(tree, env, home, children)
            try:
                client = _Client(base, token, db)
                _warm(client, files["jpeg224"], worker, children)
                if children == 1:
                    for kind, items in files.items():
                        cycle = [items[i % len(items)] for i in range(n)]
                        results[kind] = client.sequential(cycle)
                runs = [client.burst(files["jpeg224"], burst, worker, web) for _ in range(bursts)]
                results[f"burst_{children}"] = _median_burst(runs)
            finally:
                _stop(worker)
    finally:
        _stop(web)
        _stop(redis)
    return results


def _median_burst(runs: list[dict]) -> dict:
    """Each figure's median over repeated bursts (this shared machine's neighbours make one
    burst vary by a third), with the range of images/s."""
    rates = [run["images_per_s"] for run in runs]
    median = {
        key: statistics.median(run[key] for run in runs)
        for key in ("images_per_s", "cpu_ms_per_image", "web_cpu_ms_per_upload", "batches")
    }
    models = [run["model_ms_per_image"] for run in runs if run["model_ms_per_image"] is not None]
    return {
        **median,
        "model_ms_per_image": statistics.median(models) if models else None,
        "statuses": sorted({status for run in runs for status in run["statuses"]}),
        "rates": rates,
    }


def _worker(tree: Path, env: dict, home: Path, children: int) -> subprocess.Popen:
    log = home / f"worker-{children}.log"
    worker = _start(
        [sys.executable, "-m", "celery", "-A", "chestnet_site", "worker", "-Q", "inference,celery"]
        + ["--concurrency", str(children), "--loglevel", "WARNING", "-n", f"bench{children}@%h"],
        tree,
        env,
        log,
    )
    time.sleep(3)
    _wait(lambda: len(_children(worker)) >= children, "the worker")
    return worker


def _warm(client: _Client, items, worker: subprocess.Popen, children: int) -> None:
    """Uploads until every worker child has loaded the model (seconds of CPU each)."""
    for _ in range(20):
        with ThreadPoolExecutor(max_workers=children) as pool:
            ids = [i for i, _, _ in pool.map(lambda it: client.post(*it), items[:children])]
        client._final(ids)
        if all(sum(c.cpu_times()[:2]) > 3 for c in _children(worker)):
            return
    print("WARNING: not every worker child loaded the model during the warm-up")


def _children(process: subprocess.Popen) -> list:
    import psutil

    try:
        return psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _cpu_seconds(process: subprocess.Popen) -> float:
    import psutil

    total = 0.0
    for proc in [psutil.Process(process.pid), *_children(process)]:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


class _Client:
    def __init__(self, base: str, token: str, db: Path) -> None:
        self.url, self.token, self.db = f"{base}/api/v1/cases/", token, db

    def post(self, name: str, data: bytes, barrier=None) -> tuple[int, float, float]:
        """(image id, POST ms, the time the POST started)."""
        from django.test.client import encode_multipart

        body = encode_multipart(
            BOUNDARY, {"urgency": "routine", "age": "3", "images": _F(name, data)}
        )
        request = urllib.request.Request(self.url, data=body, method="POST")
        request.add_header("Authorization", f"Token {self.token}")
        request.add_header("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
        if barrier is not None:
            barrier.wait()
        started = time.time()
        with urllib.request.urlopen(request, timeout=300) as response:
            assert response.status == 201, response.status
            image_id = json.loads(response.read())["images"][0]["id"]
        return image_id, (time.time() - started) * 1000, started

    def _final(self, ids: list[int], timeout: float = 600) -> dict[int, float]:
        """Poll the database until every image is finished: id -> the time it was seen."""
        import sqlite3

        seen: dict[int, float] = {}
        deadline = time.monotonic() + timeout
        with sqlite3.connect(self.db, timeout=30) as connection:
            while len(seen) < len(ids):
                if time.monotonic() > deadline:
                    raise SystemExit("Results did not arrive in time.")
                marks = ",".join("?" * len(ids))
                rows = connection.execute(
                    f"SELECT id FROM diagnosis_image WHERE id IN ({marks}) "
                    "AND status IN ('done','refused','failed')",
                    ids,
                ).fetchall()
                now = time.time()
                for (image_id,) in rows:
                    seen.setdefault(image_id, now)
                time.sleep(0.002)
        return seen

    def _facts(self, ids: list[int]) -> dict[int, dict]:
        import sqlite3

        marks = ",".join("?" * len(ids))
        with sqlite3.connect(self.db, timeout=30) as connection:
            rows = connection.execute(
                "SELECT i.id, i.status, i.created_at, p.created_at, p.timings "
                "FROM diagnosis_image i LEFT JOIN diagnosis_prediction p ON p.image_id = i.id "
                f"WHERE i.id IN ({marks})",
                ids,
            ).fetchall()
        facts = {}
        for image_id, status, accepted, stored, timings in rows:
            facts[image_id] = {
                "status": status,
                "accepted": _epoch(accepted),
                "stored": _epoch(stored) if stored else None,
                "timings": json.loads(timings) if timings else {},
            }
        return facts

    def sequential(self, items: list[tuple[str, bytes]]) -> dict:
        rows = []
        for name, data in items:
            image_id, post_ms, started = self.post(name, data)
            seen = self._final([image_id])[image_id]
            fact = self._facts([image_id])[image_id]
            stored = fact["stored"]
            rows.append(
                {
                    "name": name,
                    "status": fact["status"],
                    "post_ms": post_ms,
                    "seen_ms": (seen - started) * 1000,
                    "stored_ms": (stored - fact["accepted"]) * 1000 if stored else None,
                    "model_ms": _model_ms(fact["timings"]),
                }
            )
        return {
            "post_p50": _p50([r["post_ms"] for r in rows]),
            "seen_p50": _p50([r["seen_ms"] for r in rows]),
            "stored_p50": _p50([r["stored_ms"] for r in rows if r["stored_ms"] is not None]),
            "rows": rows,
        }

    def burst(self, items, count: int, worker: subprocess.Popen, web: subprocess.Popen) -> dict:
        cpu_before, web_before = _cpu_seconds(worker), _cpu_seconds(web)
        with ThreadPoolExecutor(max_workers=16) as pool:
            posted = list(pool.map(lambda i: self.post(*items[i % len(items)]), range(count)))
        ids = [image_id for image_id, _, _ in posted]
        self._final(ids)
        cpu = _cpu_seconds(worker) - cpu_before
        web_cpu = _cpu_seconds(web) - web_before
        facts = self._facts(ids).values()
        first = min(f["accepted"] for f in facts)
        last = max(f["stored"] or 0 for f in facts)
        model = [_model_ms(f["timings"]) for f in facts if f["timings"]]
        statuses = sorted({f["status"] for f in facts})
        return {
            "images_per_s": count / (last - first),
            "cpu_ms_per_image": cpu * 1000 / count,
            "web_cpu_ms_per_upload": web_cpu * 1000 / count,
            "model_ms_per_image": statistics.mean(model) if model else None,
            "statuses": statuses,
            "batches": statistics.mean(f["timings"].get("batch", 1) for f in facts),
        }


class _F:
    def __init__(self, name: str, data: bytes) -> None:
        self.name, self.data = name, data

    def read(self) -> bytes:
        return self.data


def _model_ms(timings: dict) -> float:
    return float(timings.get("decode", 0)) + float(timings.get("heatmap", 0))


def _epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace(" ", "T")).timestamp()


def _p50(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# --- processes ---------------------------------------------------------------------------


def _start(command: list[str], tree: Path, env: dict, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(process: subprocess.Popen) -> None:
    stop_process(process, timeout=30, group=True)


def _wait(ready, name: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} did not start")
        time.sleep(0.3)


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url) as response:
            return response.read()
    except OSError:
        return None


# --- the report --------------------------------------------------------------------------


def _markdown(results: dict, files) -> str:
    labels = list(results)
    head = "| path | " + " | ".join(labels) + " |\n| --- |" + " --- |" * len(labels)

    def cell(label: str, get) -> str:
        try:
            value = get(results[label])
        except (KeyError, TypeError):
            return "n/a"
        return value

    def ms(value) -> str:
        return "n/a" if value is None else f"{value:,.0f} ms"

    lines = [
        START,
        f"Measured {datetime.now():%Y-%m-%d %H:%M} on {platform.machine()}, {os.cpu_count()} "
        f"cores, Python {platform.python_version()}, SQLite, one worker process; the trees ran "
        "one after the other in one run of `scripts/pipeline_benchmark.py`. Medians.",
        "",
        head,
    ]
    rows = [
        ("224-px JPEG: accepted -> result stored", lambda r: ms(r["jpeg224"]["stored_p50"])),
        ("224-px JPEG: POST", lambda r: ms(r["jpeg224"]["post_p50"])),
        ("full-size JPEG: POST -> result seen", lambda r: ms(r["jpeg_full"]["seen_p50"])),
        ("full-size JPEG: accepted -> result stored", lambda r: ms(r["jpeg_full"]["stored_p50"])),
        ("full-size JPEG: POST", lambda r: ms(r["jpeg_full"]["post_p50"])),
        ("full-size DICOM: POST -> result seen", lambda r: ms(r["dicom_full"]["seen_p50"])),
        ("full-size DICOM: accepted -> result stored", lambda r: ms(r["dicom_full"]["stored_p50"])),
        ("full-size DICOM: POST", lambda r: ms(r["dicom_full"]["post_p50"])),
    ]
    for name, _ in files["dicom_full"]:
        rows.append(
            (
                f"&nbsp;&nbsp;{name}: POST -> seen",
                lambda r, name=name: (
                    ms(_p50([x["seen_ms"] for x in r["dicom_full"]["rows"] if x["name"] == name]))
                    + " ("
                    + ", ".join(
                        sorted({x["status"] for x in r["dicom_full"]["rows"] if x["name"] == name})
                    )
                    + ")"
                ),
            )
        )
    for children in (1, 2):
        key = f"burst_{children}"
        rows += [
            (
                f"burst of 100 224-px uploads, {children} worker child(ren): images/s "
                "(median; range)",
                lambda r, key=key: (
                    f"{r[key]['images_per_s']:.1f} "
                    f"({min(r[key]['rates']):.1f}-{max(r[key]['rates']):.1f})"
                ),
            ),
            (
                f"&nbsp;&nbsp;worker CPU per image ({children} child): all / less the model",
                lambda r, key=key: (
                    f"{r[key]['cpu_ms_per_image']:.1f} / "
                    f"{r[key]['cpu_ms_per_image'] - (r[key]['model_ms_per_image'] or 0):.1f} ms"
                ),
            ),
            (
                f"&nbsp;&nbsp;web CPU per upload ({children} child): gunicorn's processes",
                lambda r, key=key: f"{r[key]['web_cpu_ms_per_upload']:.1f} ms",
            ),
            (
                f"&nbsp;&nbsp;images per model pass ({children} child)",
                lambda r, key=key: f"{r[key]['batches']:.1f}",
            ),
        ]
    for name, get in rows:
        lines.append(f"| {name} | " + " | ".join(cell(label, get) for label in labels) + " |")
    lines.append(END)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
