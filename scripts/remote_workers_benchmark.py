#!/usr/bin/env python
"""Inference workers on other hosts: images/s with one worker host and with two.

Network namespaces stand for the worker machines (devtools/netns.py). The central host,
this process's namespace, offers PostgreSQL (the machine's server at 127.0.0.1:5432, through
a relay: it is not reconfigured), a private Redis and SeaweedFS on its bridge address only
(devtools/central.py), and plays the web host: it stores N radiographs of 224 px from
../shared/data as N cases in the object store, in one transaction, so that all N are
published together as it commits. Measured from that commit until every image is finished:
first with one worker host, then with two (one worker each: prefork, one child), each on N
radiographs of its own. Then checked: every image analysed once (one attempt, then a
prediction with its preview and heatmap in the object store, or a refusal by the input
gate).

Needs root (ip netns) and PostgreSQL at --postgres with a user that may create databases;
creates and drops its own database, chestnet_bench_netns. Prints a markdown table.

    .venv/bin/python scripts/remote_workers_benchmark.py [--n 200] [--model PATH]
        [--postgres postgres://postgres@127.0.0.1:5432]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.central import CentralHost, RemoteWorker  # noqa: E402
from devtools.netns import Network, netns_available  # noqa: E402

DATABASE = "chestnet_bench_netns"
SHARED = Path(os.environ.get("CHESTNET_SHARED_DATA", ROOT.parent / "shared" / "data"))


@dataclass
class Run:
    hosts: int
    images: int
    seconds: float
    by_host: list[int]
    refused: int  # by the input gate: a result, without a prediction
    problems: list[str]

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="radiographs per run (default 200)")
    parser.add_argument("--model", default="", help="artifact (default: the shipped one)")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    reason = netns_available()
    if reason:
        raise SystemExit(f"Cannot make worker hosts here: {reason}")
    radiographs = _radiographs(2 * args.n)
    home = Path(tempfile.mkdtemp(prefix="chestnet-netns-bench-"))
    load = os.getloadavg()
    try:
        with (
            _database(args.postgres) as url,
            Network(2) as network,
            CentralHost(network, home / "central", database_url=url) as central,
        ):
            _become_the_web_host(home, url, central)
            runs = _runs(network, central, radiographs, args.model, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(_markdown(runs, args, load))
    if any(run.problems for run in runs):
        raise SystemExit(1)


def _radiographs(count: int) -> list[bytes]:
    paths = sorted(SHARED.glob("chest_xray/train/*/*.jpeg"))[::7][:count]
    if len(paths) < count:
        raise SystemExit(f"Fewer than {count} radiographs under {SHARED}/chest_xray/train")
    return [path.read_bytes() for path in paths]


@contextmanager
def _database(server: str) -> Iterator[str]:
    """A database of the benchmark's own on the PostgreSQL server, dropped afterwards."""
    import psycopg

    def drop() -> None:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")

    drop()
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {DATABASE}")
    try:
        yield f"{server}/{DATABASE}"
    finally:
        from django.apps import apps

        if apps.ready:
            from django.db import connections

            connections.close_all()
        drop()


def _become_the_web_host(home: Path, url: str, central: CentralHost) -> None:
    """This process: the database on loopback, the central Redis and the object store."""
    for name in ("CHESTNET_MODEL_PATH", "MEDIA_ROOT"):
        os.environ.pop(name, None)
    os.environ.update(central.store.env())
    os.environ.update(DATABASE_URL=url, REDIS_URL=central.redis_url, CHESTNET_HOME=str(home))
    os.environ["DJANGO_SETTINGS_MODULE"] = "chestnet_site.settings"
    manage = [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"]
    subprocess.run(manage, check=True, cwd=ROOT)
    import django

    django.setup()


def _runs(network, central, radiographs: list[bytes], model: str, home: Path) -> list[Run]:
    from accounts import roles
    from devtools.users import user_with_role

    owner = user_with_role("bench-clinician", roles.CLINICIAN)
    n = len(radiographs) // 2
    workers: list[RemoteWorker] = []
    runs = []
    try:
        for count, batch in ((1, radiographs[:n]), (2, radiographs[n:])):
            while len(workers) < count:
                host = network.hosts[len(workers)]
                env = {"CHESTNET_MODEL_PATH": model} if model else {}
                workers.append(central.start_worker(host, home, **env))
                _warm_up(workers[-1], owner, radiographs[0])
            runs.append(_burst(workers, owner, batch, central))
    finally:
        for worker in workers:
            worker.stop()
    return runs


def _warm_up(worker: RemoteWorker, owner, radiograph: bytes) -> None:
    """One upload at a time (a task takes other queued images along) until the new worker
    has loaded its model, TensorFlow's import being slow: a warm worker beside it may take
    the first ones."""
    deadline = time.monotonic() + 300
    while not worker.loaded():
        if time.monotonic() > deadline or worker.process.poll() is not None:
            raise SystemExit(f"The worker did not load its model; see {worker.log}")
        _wait_for([_upload(owner, radiograph)])


def _upload(owner, data: bytes) -> int:
    from diagnosis import services

    validated = [services.image_validate(name="radiograph.jpeg", data=data)]
    return services.case_create(owner=owner, images=validated).images.get().pk


def _wait_for(ids: list[int], timeout: float = 1800) -> None:
    from diagnosis.models import Image

    unfinished = (Image.Status.QUEUED, Image.Status.PROCESSING)
    deadline = time.monotonic() + timeout
    while Image.objects.filter(pk__in=ids, status__in=unfinished).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"Results did not arrive within {timeout:.0f} s.")
        time.sleep(0.05)


def _burst(workers: list[RemoteWorker], owner, radiographs: list[bytes], central) -> Run:
    from django.db import transaction

    with transaction.atomic():  # published together as it commits
        ids = [_upload(owner, data) for data in radiographs]
    started = time.monotonic()
    _wait_for(ids)
    seconds = time.monotonic() - started
    by_host = [len(worker.completed() & set(ids)) for worker in workers]
    return Run(len(workers), len(ids), seconds, by_host, _refused(ids), _problems(ids, central))


def _problems(ids: list[int], central: CentralHost) -> list[str]:
    """What keeps these images from having been analysed exactly once: one attempt, then a
    prediction with its preview and heatmap in the store, or a refusal by the input gate
    (a result too: no prediction, no heatmap)."""
    from diagnosis.models import Image

    keys = set(central.store.keys())
    problems = []
    for image in Image.objects.filter(pk__in=ids).select_related("prediction"):
        prediction = getattr(image, "prediction", None)
        stored = {image.preview.name} | ({prediction.heatmap.name} if prediction else set())
        if image.status not in (Image.Status.DONE, Image.Status.REFUSED):
            problems.append(f"image {image.pk}: {image.status}")
        elif (image.status == Image.Status.DONE) != (prediction is not None):
            problems.append(f"image {image.pk}: {image.status} with no prediction")
        elif image.attempts != 1:
            problems.append(f"image {image.pk}: {image.attempts} attempts")
        elif not stored <= keys:
            problems.append(f"image {image.pk}: preview or heatmap missing from the store")
    return problems


def _refused(ids: list[int]) -> int:
    from diagnosis.models import Image

    return Image.objects.filter(pk__in=ids, status=Image.Status.REFUSED).count()


def _markdown(runs: list[Run], args: argparse.Namespace, load: tuple[float, ...]) -> str:
    single = runs[0].rate
    lines = [
        f"Generated by `scripts/remote_workers_benchmark.py --n {args.n}` on {platform.node()} "
        f"({os.cpu_count()} CPUs shared by every host, load average {load[0]:.1f} at the "
        f"start), {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. Model: "
        f"{Path(args.model).name if args.model else 'the shipped default'}. Each worker host "
        "is a network namespace with one worker (prefork, one child), reaching PostgreSQL, "
        "Redis and SeaweedFS only at the central host's address; the radiographs (224 px "
        "JPEG) are published together, and timed until the last is finished. Per worker core: "
        "images/s divided by the pool children (one per host); the hosts share the machine's "
        "CPUs, and TensorFlow in each uses every core it can get.",
        "",
        "| Worker hosts | Images | Seconds | Images/s | Per worker core | Speed-up "
        "| Finished by each host | Refused by the gate | Analysed once |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        once = "yes" if not run.problems else f"NO: {'; '.join(run.problems[:5])}"
        lines.append(
            f"| {run.hosts} | {run.images} | {run.seconds:.1f} | {run.rate:.1f} | "
            f"{run.rate / run.hosts:.1f} | {run.rate / single:.2f}x | "
            f"{' / '.join(map(str, run.by_host))} | {run.refused} | {once} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
