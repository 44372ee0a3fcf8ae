"""Child processes: stopping one politely first, then for sure; and tying one's life to its
parent's."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # linux/prctl.h


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


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A `preexec_fn` after which the kernel sends `sig` to the child when this process dies,
    even by SIGKILL, so no child outlives its supervisor. Linux only (None elsewhere). The
    signal fires when the *thread* that started the child ends: start children from the
    main thread."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the forked child
    parent = os.getpid()

    def set_parent_death_signal() -> None:
        if prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before prctl: no signal will come
            os.kill(os.getpid(), sig)

    return set_parent_death_signal
