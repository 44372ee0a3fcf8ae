"""Workers on other hosts need only the database, the broker and the object store.

Two network namespaces stand for two worker machines (devtools/netns.py). The central
host, this process's namespace, offers PostgreSQL (relayed), Redis and the object store on
its bridge address only (devtools/central.py), and each worker has a home and media
folder of its own, so whatever a worker reads or writes travels through those services.

No beat runs: the images of the worker that is killed come back through the broker alone
(acks_late and a short visibility timeout). The requeue sweep belongs to the one beat on the
central host, and would take an abandoned image back only after its three-minute lease."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone

from accounts import roles
from devtools.central import CentralHost, RemoteWorker
from devtools.netns import Network, netns_available
from devtools.workers import kill_worker
from diagnosis import services
from diagnosis.models import Image, Prediction
from tests.support import factories
from tests.support.images import png_bytes
from tests.support.stack import database_url, use_broker

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BURST = 100
UNFINISHED = (Image.Status.QUEUED, Image.Status.PROCESSING)


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    if django_settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        pytest.skip("workers on other hosts need a network database: set DATABASE_URL")
    reason = netns_available()
    if reason:
        pytest.skip(reason)
    with Network(2) as network:
        yield network


@pytest.fixture(scope="module")
def central(
    network: Network, django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CentralHost]:
    with CentralHost(
        network, tmp_path_factory.mktemp("central"), database_url=database_url()
    ) as host:
        yield host


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 0


def test_a_worker_host_reaches_the_central_services_only_at_the_central_address(
    network, central, redis_url
):
    own_database, own_broker = _address(database_url()), _address(redis_url)
    offered = [_address(central.database_url), _address(central.redis_url)]
    offered.append(_address(central.store.endpoint_url))
    for host in network.hosts:
        # What this process uses on loopback is not there for another host...
        assert not host.can_connect(*own_database), f"{host.namespace} reached {own_database}"
        assert not host.can_connect(*own_broker), f"{host.namespace} reached {own_broker}"
        # ...nor at the central address, where only the relay publishes the database.
        assert not host.can_connect(network.central, own_database[1])
        assert not host.can_connect(network.central, own_broker[1])
        for address in offered:
            assert host.can_connect(*address), f"{host.namespace} cannot reach {address}"


@pytest.fixture
def remote_workers(
    network, central, tiny_model_path, tmp_path, settings, monkeypatch, redis_url
) -> Iterator[list[RemoteWorker]]:
    """One worker on each host; this process publishes to the central Redis and keeps its
    uploads in the central object store, as the web host would."""
    from chestnet_site.settings import storage_from_env

    for name, value in central.store.env().items():
        monkeypatch.setenv(name, value)
    settings.STORAGES = {**settings.STORAGES, "default": storage_from_env("s3")}
    use_broker(central.redis_url)
    started: list[RemoteWorker] = []
    try:
        for host in network.hosts:
            worker = central.start_worker(
                host,
                tmp_path,
                CHESTNET_MODEL_PATH=str(tiny_model_path),
                CELERY_BROKER_VISIBILITY_TIMEOUT_S="8",  # a killed worker's task comes back soon
            )
            started.append(worker)
        yield started
    finally:
        for worker in started:
            worker.stop()
        use_broker(redis_url)


@dataclass(frozen=True)
class Kill:
    at: float  # time.monotonic()
    when: datetime
    held: frozenset[int]  # images claimed by the killed worker's unfinished tasks
    unfinished: int


def _upload(owner, seed: int) -> int:
    validated = [services.image_validate(name="a.png", data=png_bytes(128, 128, seed=seed))]
    return services.case_create(owner=owner, images=validated).images.get().pk


def _warm_up(workers: list[RemoteWorker], owner, wait) -> int:
    """One upload at a time (a task takes other queued images along) until every worker
    has loaded the model, TensorFlow's import being slow; returns how many it took."""
    uploads = 0
    deadline = time.monotonic() + 120
    while not all(worker.loaded() for worker in workers):
        assert time.monotonic() < deadline, "a worker never got an image"
        _upload(owner, seed=uploads)
        uploads += 1
        wait(lambda: _unfinished() == 0, timeout=60)
    return uploads


def _unfinished() -> int:
    return Image.objects.filter(status__in=UNFINISHED).count()


def test_a_burst_is_shared_by_worker_hosts_and_survives_losing_one(central, remote_workers, wait):
    victim, survivor = remote_workers
    owner = factories.UserFactory(username="it-clinician", role=roles.CLINICIAN)
    warm_up = _warm_up(remote_workers, owner, wait)

    with transaction.atomic():  # published together as it commits: one burst for the workers
        burst = {_upload(owner, seed) for seed in range(100, 100 + BURST)}
    started = time.monotonic()
    kill = wait(lambda: _kill_mid_task(victim, burst), timeout=60, interval=0.05)
    assert kill.unfinished > 0, "the burst was over before the kill: make it longer"
    wait(lambda: _unfinished() == 0, timeout=120)
    elapsed = time.monotonic() - started

    images = Image.objects.all()
    assert {image.status for image in images} == {Image.Status.DONE}
    assert Prediction.objects.count() == images.count()
    assert len({p.image_id for p in Prediction.objects.all()}) == images.count()
    # What the killed host held was finished by the other, from the same message again.
    assert kill.held <= survivor.completed()
    assert all(image.attempts >= 2 for image in images.filter(pk__in=kill.held))
    by_victim, by_survivor = victim.completed() & burst, survivor.completed() & burst
    assert by_victim and by_survivor - kill.held, "each worker host completes part of the burst"
    _assert_each_file_stored_once(central, images, abandoned=len(kill.held))
    assert not victim.files_on_disk() and not survivor.files_on_disk()

    done = (len(by_victim), len(by_survivor))
    _report(started, kill, elapsed, warm_up=warm_up, done=done)


def _kill_mid_task(worker: RemoteWorker, burst: set[int]) -> Kill | None:
    """SIGKILL the worker once a third of the burst is done, some of it by this worker, and
    while one of its tasks holds claimed images. Its host is frozen (SIGSTOP) while that is
    checked, so the images found held are the ones it leaves behind."""
    if len(worker.completed() & burst) < 3 or not worker.busy():
        return None
    if Image.objects.filter(pk__in=burst, status=Image.Status.DONE).count() < len(burst) // 3:
        return None
    os.killpg(worker.process.pid, signal.SIGSTOP)
    held: set[int] = set()
    try:
        held = worker.holding()
    finally:
        if not held:
            os.killpg(worker.process.pid, signal.SIGCONT)
    if not held:
        return None
    kill_worker(worker.process)
    return Kill(time.monotonic(), timezone.now(), frozenset(held), _unfinished())


def _assert_each_file_stored_once(central, images, *, abandoned: int) -> None:
    """Every image's original, preview and heatmap is in the object store. A preview or
    heatmap there that no row names can only come from an attempt that died before its
    transaction committed: at most one of each per image the killed worker abandoned."""
    keys = set(central.store.keys())
    named = set()
    for image in images.select_related("prediction"):
        for file in (image.original, image.preview, image.prediction.heatmap):
            assert file.name and _stored(file.name, keys), f"{file.name} not in the object store"
            named.add(file.name)
    results = [key for key in keys if re.search(r"(^|/)(previews|heatmaps)/", key)]
    orphans = [key for key in results if not any(_stored(name, {key}) for name in named)]
    assert len(orphans) <= 2 * abandoned, f"results stored twice or left over: {orphans}"


def _stored(name: str, keys: set[str]) -> bool:
    return any(key == name or key.endswith(f"/{name}") for key in keys)


def _report(started: float, kill: Kill, elapsed: float, *, warm_up: int, done: tuple[int, int]):
    stored = Prediction.objects.filter(created_at__lte=kill.when).count() - warm_up
    by_victim, by_survivor = done
    rate_both, rate = stored / (kill.at - started), BURST / elapsed
    last = Prediction.objects.filter(image__in=kill.held).latest("created_at").created_at
    print(
        f"\n{BURST} images, 2 worker hosts (concurrency 1 each): {rate_both:.1f} images/s "
        f"while both ran ({rate_both / 2:.1f} per worker core, {stored} images); "
        f"{rate:.1f} images/s over the whole burst ({elapsed:.1f} s), the kill and the "
        f"redelivery included. Stored by the killed host: {by_victim}; by the other: "
        f"{by_survivor}, {len(kill.held)} of them taken over from the killed host, the last "
        f"{(last - kill.when).total_seconds():.1f} s after the kill."
    )
