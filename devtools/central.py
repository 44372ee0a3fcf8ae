"""The central host of a test network (devtools.netns): what a worker on another host
needs, offered on the bridge address only. PostgreSQL stays where it is (on loopback, not
reconfigured) and is reached through a relay; Redis and the object store (SeaweedFS) are
started here, bound to the bridge address. `worker_env(home)` is a worker's whole view of
the central host; `start_worker(host, ...)` starts one on another host (a `RemoteWorker`)."""

from __future__ import annotations

import re
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from devtools import local_redis
from devtools.lifetimes import StartStop
from devtools.netns import Host, Network, TcpRelay
from devtools.seaweedfs import SeaweedFS
from devtools.workers import start_worker, stop_worker


class CentralHost(StartStop):
    def __init__(self, network: Network, directory: Path, *, database_url: str) -> None:
        """`database_url`: the PostgreSQL database as this process reaches it (loopback)."""
        self.network, self.directory = network, directory
        self._database = urlsplit(database_url)
        self._stack = ExitStack()

    def start(self) -> None:
        address = self.network.central
        with ExitStack() as stack:  # a failed start undoes what it made
            target = (self._database.hostname or "127.0.0.1", self._database.port or 5432)
            self.relay = stack.enter_context(TcpRelay(address, target))
            redis, self.redis_url = local_redis.start_redis(self.directory / "redis", bind=address)
            stack.callback(local_redis.stop, redis)
            self.store = SeaweedFS(self.directory / "seaweedfs", ip=address)
            stack.callback(self.store.stop)
            self.store.start()
            self._stack = stack.pop_all()

    def stop(self) -> None:
        self._stack.close()

    @property
    def database_url(self) -> str:
        """The same database, as a worker host reaches it: through the relay."""
        credentials = self._database.netloc.rpartition("@")[0]
        netloc = f"{credentials}@" if credentials else ""
        netloc += f"{self.network.central}:{self.relay.port}"
        return urlunsplit(self._database._replace(netloc=netloc))

    def start_worker(self, host: Host, directory: Path, **env: str) -> RemoteWorker:
        """A worker (prefork, one child) on `host`, its home and log in `directory`."""
        home, log = directory / host.namespace, directory / f"{host.namespace}.log"
        process = start_worker(log=log, env=self.worker_env(home) | env, prefix=host.prefix)
        return RemoteWorker(process, log, home)

    def worker_env(self, home: Path) -> dict[str, str]:
        """A worker host's settings: the three central services and a home of its own, so
        nothing it reads or writes on disk is shared with the web side."""
        return {
            **self.store.env(),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "CHESTNET_HOME": str(home),
            "MEDIA_ROOT": str(home / "media"),
        }


@dataclass(frozen=True)
class RemoteWorker:
    """A Celery worker on another host, and what its log says. Images are told apart by
    their claim token, the id of the task that claimed them, whatever a task's batch."""

    process: subprocess.Popen
    log: Path
    home: Path

    def completed(self) -> set[int]:
        """The images it stored a result for: claimed by a task this worker finished."""
        from diagnosis.models import Image

        tokens = self._tasks("succeeded")
        return set(Image.objects.filter(claim_token__in=tokens).values_list("pk", flat=True))

    def holding(self) -> set[int]:
        """Images claimed, and not yet finished, by its unfinished tasks."""
        from diagnosis.models import Image

        tokens = self._tasks("received") - self._ended()
        processing = Image.objects.filter(status=Image.Status.PROCESSING, claim_token__in=tokens)
        return set(processing.values_list("pk", flat=True))

    def busy(self) -> bool:
        """Whether it holds a task it has not finished, by its log."""
        return bool(self._tasks("received") - self._ended())

    def loaded(self) -> bool:
        return "Loaded model" in self._log()

    def files_on_disk(self) -> list[Path]:
        return [path for path in (self.home / "media").rglob("*") if path.is_file()]

    def stop(self) -> None:
        stop_worker(self.process)

    def _ended(self) -> set[str]:
        return self._tasks("succeeded") | self._tasks("raised") | self._tasks("retry")

    def _tasks(self, event: str) -> set[str]:
        return set(re.findall(rf"\[([0-9a-f-]{{36}})\] {event}", self._log()))

    def _log(self) -> str:
        return self.log.read_text(errors="replace")
