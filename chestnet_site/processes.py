"""Stopping a child process: politely first, then for sure."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process(process: subprocess.Popen, *, timeout: float = 10.0, group: bool = False) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL. With `group` (a process started with
    `start_new_session=True`) the kill reaches its whole process group, so a Celery
    worker's pool children and beat never outlive their parent."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    if group:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    elif process.poll() is None:
        process.kill()
    process.wait()
