"""Web-tier memory for large uploads (docs/benchmarks.md).

The default (issue 21): a real web process, as `make run` serves it (gunicorn, gthread; one
process of 4 threads, so that every request lands in it), takes concurrent requests of many
large DICOM files through `POST /api/v1/cases/`, by default two requests of 20 files of 45
MB at once. Its resident memory is read from /proc before (after a warm-up upload) and after
the requests, and its peak (VmHWM, reset before them) while they ran. Each round starts a
fresh server in a fresh CHESTNET_HOME (SQLite); the median of the rounds is reported. With
`--baseline REF` the tree of that git commit (`git archive`, nothing checked out here) is
measured the same way in the same run, before this checkout. The client streams the bodies
from a file, so its own memory is not the server's. `--write` puts the table into
docs/benchmarks.md (between the upload-memory markers).

    .venv/bin/python scripts/upload_memory.py [--baseline HEAD] [--rounds 3] [--write]

`--header-vs-decode` (issue 9): what checking four 49-megapixel JPEGs at once costs the
process that receives them, with today's header check (`diagnosis.services.image_validate`)
beside the full decode and preview the web process did before (`ml.preprocessing.
decode_image` + `preview_png`). Each runs in a fresh interpreter; the figure is its peak
resident memory (VmHWM) minus its resident memory before the uploads."""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from baseline_tree import api_token  # scripts/, run as scripts/<name>.py

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.ports import free_port  # noqa: E402
from devtools.processes import stop_process  # noqa: E402
from devtools.reports import write_section  # noqa: E402

SIDE = 7000  # 49 megapixels, under the 50-megapixel limit
CONCURRENT = 4
MB = 1024 * 1024
START, END = "<!-- upload-memory:start -->", "<!-- upload-memory:end -->"
BOUNDARY = "chestnet-upload-memory"


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _jpeg() -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    small = (rng.random((70, 70)) * 255).astype(np.uint8)
    picture = Image.fromarray(small, mode="L").resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def _measure(mode: str) -> dict:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chestnet_site.settings")
    import django

    django.setup()
    from diagnosis import services
    from ml.preprocessing import decode_image, preview_png

    data = _jpeg()

    def header_check() -> None:
        services.image_validate(name="big.jpeg", data=data)

    def full_decode() -> None:
        preview_png(decode_image(data))

    work = header_check if mode == "header" else full_decode
    before = _status_kb("VmRSS")
    threads = [threading.Thread(target=work) for _ in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    peak = _status_kb("VmHWM")
    return {"mode": mode, "file_kb": len(data) // 1024, "rise_mb": round((peak - before) / 1024)}


def header_vs_decode() -> None:
    results = []
    for mode in ("header", "decode"):
        out = subprocess.run(
            [sys.executable, __file__, mode], capture_output=True, text=True, check=True
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        json.dumps(
            {"concurrent_uploads": CONCURRENT, "megapixels": SIDE * SIDE / 1e6, "results": results},
            indent=2,
        )
    )


# --- a real web process (issue 21) --------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("header", "decode"):
        print(json.dumps(_measure(sys.argv[1])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--header-vs-decode", action="store_true", help="issue 9's comparison")
    parser.add_argument("--baseline", help="also measure this git commit's tree, first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=20, help="files per request")
    parser.add_argument("--mb", type=int, default=45, help="size of each file")
    parser.add_argument("--concurrent", type=int, default=2, help="requests at once")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if args.header_vs_decode:
        header_vs_decode()
        return
    work = Path(tempfile.mkdtemp(prefix="chestnet-upload-memory-"))
    try:
        report = _web_benchmark(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    if args.write:
        docs = ROOT / "docs" / "benchmarks.md"
        write_section(docs, _markdown(report), start=START, end=END)


def _web_benchmark(args: argparse.Namespace, work: Path) -> dict:
    upload = work / "radiograph.dcm"
    upload.write_bytes(_large_dicom(args.mb))
    trees = [("this checkout", ROOT)]
    if args.baseline:
        trees.insert(0, (f"baseline {_short(args.baseline)}", _archive(args.baseline, work)))
    machine = _machine()
    results = {}
    for label, tree in trees:
        rounds = [_round(tree, work, upload, args) for _ in range(args.rounds)]
        results[label] = {
            "rounds": rounds,
            "rise_after_mb": statistics.median(r["rise_after_mb"] for r in rounds),
            "rise_peak_mb": statistics.median(r["rise_peak_mb"] for r in rounds),
            "before_mb": statistics.median(r["before_mb"] for r in rounds),
            "seconds": statistics.median(r["seconds"] for r in rounds),
        }
    return {
        "command": " ".join(["scripts/upload_memory.py", *sys.argv[1:]]),
        "machine": machine,
        "requests": args.concurrent,
        "files_per_request": args.files,
        "file_mb": round(upload.stat().st_size / MB, 1),
        "rounds": args.rounds,
        "results": results,
    }


def _large_dicom(megabytes: int) -> bytes:
    """An uncompressed 16-bit DX of about `megabytes` MB: it passes the upload's header
    check (under 50 megapixels), as a full-size original would."""
    import numpy as np

    from devtools import dicom_files

    side = int((megabytes * MB / 2) ** 0.5)
    pixels = np.random.default_rng(0).integers(0, 4096, size=(side, side), dtype=np.uint16)
    return dicom_files.to_bytes(dicom_files.radiograph(pixels=pixels))


def _archive(ref: str, work: Path) -> Path:
    """The tree of commit `ref`, exported (git archive): nothing is checked out here."""
    tree = work / "baseline"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref], cwd=ROOT, check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def _short(ref: str) -> str:
    out = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True)
    return out.stdout.decode().strip() or ref


def _round(tree: Path, work: Path, upload: Path, args: argparse.Namespace) -> dict:
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    (home / "tmp").mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "CHESTNET_", "DATABASE_URL", "DJANGO_SETTINGS_MODULE"))
    }
    # The broker is not needed: publishing fails at once, the images stay queued.
    env.update(
        CHESTNET_HOME=str(home), DEBUG="0", PYTHONPATH=str(tree), REDIS_URL="redis://127.0.0.1:9/0"
    )
    env.update(FILE_UPLOAD_TEMP_DIR=str(home / "tmp"), TMPDIR=str(home / "tmp"))
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=tree, env=env, check=True)
    token = api_token(tree, env, client="upload-memory")
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "chestnet_site.wsgi", "--bind", f"127.0.0.1:{port}"]
        + ["--workers", "1", "--threads", "4", "--timeout", "600"],
        cwd=tree,
        env=env,
        stdout=(home / "web.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        pid = _worker_pid(web, port)
        client = _Client(port, token, upload)
        assert client.post(1) == 201, (home / "web.log").read_text()[-3000:]  # warm-up
        _reset_peak(pid)
        before = _status_mb(pid, "VmRSS")
        started = time.monotonic()
        statuses = client.concurrent(args.concurrent, args.files)
        seconds = time.monotonic() - started
        assert statuses == [201] * args.concurrent, statuses
        time.sleep(1.0)  # the threads' last frees
        after, peak = _status_mb(pid, "VmRSS"), _status_mb(pid, "VmHWM")
    finally:
        _stop(web)
        shutil.rmtree(home, ignore_errors=True)
    return {
        "before_mb": round(before),
        "rise_after_mb": round(after - before),
        "rise_peak_mb": round(peak - before),
        "seconds": round(seconds, 1),
    }


class _Client:
    """POSTs a case of `files` copies of the upload, the body streamed from its file."""

    def __init__(self, port: int, token: str, upload: Path) -> None:
        self.port, self.token, self.upload = port, token, upload

    def post(self, files: int) -> int:
        head = [
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; '
                f'filename="{i}.dcm"\r\nContent-Type: application/dicom\r\n\r\n'
            ).encode()
            for i in range(files)
        ]
        tail = f"--{BOUNDARY}--\r\n".encode()
        size = self.upload.stat().st_size
        length = sum(len(h) + size + 2 for h in head) + len(tail)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        headers = {
            "Authorization": f"Token {self.token}",
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(length),
        }
        connection.request("POST", "/api/v1/cases/", body=self._body(head, tail), headers=headers)
        response = connection.getresponse()
        response.read()
        connection.close()
        return response.status

    def _body(self, head: list[bytes], tail: bytes) -> Iterator[bytes]:
        for part in head:
            yield part
            with self.upload.open("rb") as handle:
                while chunk := handle.read(MB):
                    yield chunk
            yield b"\r\n"
        yield tail

    def concurrent(self, requests: int, files: int) -> list[int]:
        statuses: list[int] = []
        threads = [
            threading.Thread(target=lambda: statuses.append(self.post(files)))
            for _ in range(requests)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return statuses


def _worker_pid(master: subprocess.Popen, port: int, timeout: float = 120) -> int:
    """gunicorn's one worker process, once the server answers."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if master.poll() is not None:
            raise SystemExit("gunicorn exited")
        children = psutil.Process(master.pid).children()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            connection.close()
        except OSError:
            time.sleep(0.3)
            continue
        if children:
            return children[0].pid
    raise SystemExit("gunicorn did not start")


def _reset_peak(pid: int) -> None:
    """VmHWM starts again from the current resident size (Linux: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def _stop(process: subprocess.Popen) -> None:
    stop_process(process, timeout=30, group=True)


def _machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    return (
        f"{platform.machine()} Linux, {os.cpu_count()} CPUs, {memory:.0f} GiB, load average "
        f"{load:.1f} at the start; Python {platform.python_version()}"
    )


def _markdown(report: dict) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        START,
        f"Generated by `{report['command']}` on "
        f"{report['machine']}, {when}. {report['requests']} requests at once, each "
        f"{report['files_per_request']} DICOM files of {report['file_mb']} MB "
        "(`POST /api/v1/cases/`), to one gunicorn process (4 threads), SQLite; medians of "
        f"{report['rounds']} rounds, each a fresh server.",
        "",
        "| tree | resident before | rise after the requests | rise of the peak during them "
        "| seconds for both |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, result in report["results"].items():
        lines.append(
            f"| {label} | {result['before_mb']:,.0f} MB | {result['rise_after_mb']:,.0f} MB "
            f"| {result['rise_peak_mb']:,.0f} MB | {result['seconds']:.1f} |"
        )
    lines.append(END)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
