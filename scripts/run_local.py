#!/usr/bin/env python
"""`make run`: migrate, create demo users on an empty database, then run the web server, two
Celery workers (training; inference), beat, the DICOM listener (unless CHESTNET_DICOM_PORT
is 0) and, without REDIS_URL, a private Redis together in the foreground, until Ctrl-C or
SIGTERM.

No queued work is lost and no process is left behind:
- the private Redis keeps its queue in an append-only file in CHESTNET_HOME/redis;
- a child that exits is started again (Redis on the same port, so its URL stays valid),
  after 1 s, doubling while it keeps exiting within seconds of starting; the fifth such
  exit in a row stops everything (a setup error, say a port in use, not a crash), except
  for an optional part (the DICOM listener): it is left off, with its one line of why, and
  the rest runs on (a listener whose port is taken says so and exits 78: not restarted);
- Ctrl-C or SIGTERM stops the children in order, web first, Redis last. Killed outright, this
  process takes its children with it: the kernel SIGKILLs them (PR_SET_PDEATHSIG), Celery
  does the same to its pool processes and gunicorn's workers exit once their master is
  gone. Beat runs on its own for that reason: a worker's embedded beat (-B) outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools import local_redis  # noqa: E402
from devtools.ports import free_port  # noqa: E402
from devtools.processes import die_with_parent, stop_process  # noqa: E402

PYTHON = sys.executable
CELERY = [PYTHON, "-m", "celery", "-A", "chestnet_site"]
CELERY_WORKER = [*CELERY, "worker", "--loglevel", "INFO"]
DEMO = "clinician, clinician2, radiologist, admin (password: chestnet-demo)"
RESTART_AFTER_S, RESTART_AFTER_MAX_S = 1.0, 30.0
# An object store that is not up yet is asked again after 1 s, doubling up to this.
STORE_RETRY_MAX_S = 30.0
STORE_NOT_YET = 1  # `manage.py storage_check`'s exit status for "down, starting or full"
QUICK_EXIT_S, QUICK_EXITS_MAX = 10.0, 5
EX_CONFIG = 78  # a part that cannot start as configured (dicom_listener: port in use)


class GaveUp(RuntimeError):
    """A child keeps exiting right after it starts."""


class StopRequested(Exception):
    """Ctrl-C or SIGTERM came before the stack was up."""


@dataclass
class Child:
    """A supervised process: how to start it, and its restart bookkeeping."""

    name: str
    launch: Callable[[], subprocess.Popen]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    quick_exits: int = 0
    optional: bool = False  # the rest runs without it when it cannot start
    off: bool = False  # an optional part left off

    def start(self) -> None:
        self.started_at, self.restart_at = time.monotonic(), None
        self.process = self.launch()


def main() -> int:
    home = Path(os.environ.get("CHESTNET_HOME") or ROOT / "var").resolve()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    port = os.environ.get("PORT", "8000")
    env = {
        **os.environ,
        "CHESTNET_HOME": str(home),
        "DEBUG": os.environ.get("DEBUG", "1"),
        "PYTHONUNBUFFERED": "1",
    }
    stop_requested = _stop_on_signals()
    children: list[Child] = []
    try:
        if not env.get("REDIS_URL"):
            children.append(_redis(home, env))
        _prepare(env, stop_requested)
        for name, command in _services(home, port):
            optional = name == "DICOM listener"
            children.append(Child(name, _launcher(command, env), optional=optional))
            children[-1].start()
        print(
            f"\nChestNet is running at http://127.0.0.1:{port}/\nDemo logins: {DEMO}\n"
            f"{_dicom_line()}"
            f"Data in {home}. Press Ctrl-C to stop.\n",
            flush=True,
        )
        supervise(children, stop_requested)
    except subprocess.CalledProcessError as exc:
        print(f"Setup step failed: {exc} {exc.output or ''}".strip(), file=sys.stderr, flush=True)
    except GaveUp as exc:
        print(f"Stopping everything: {exc}", file=sys.stderr, flush=True)
    except StopRequested:
        pass
    finally:
        for child in reversed(children):
            if child.process is not None:
                stop_process(child.process, timeout=20, group=True)
        (home / "redis" / "url").unlink(missing_ok=True)
    return 0 if stop_requested() else 1


def _stop_on_signals() -> Callable[[], bool]:
    """Ctrl-C and SIGTERM ask us to stop; returns whether one came."""
    requested = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: requested.set())
    return requested.is_set


def _child_options() -> dict[str, Any]:
    # Own process group, so Ctrl-C reaches us only and we stop children in order; and
    # killed by the kernel when we die without stopping them.
    return {"start_new_session": True, "preexec_fn": die_with_parent()}


def _redis(home: Path, env: dict[str, str]) -> Child:
    """The private Redis: durable, and always on the port it first got."""
    directory, port = home / "redis", free_port()

    def launch() -> subprocess.Popen:
        options = _child_options()
        return local_redis.start_redis(directory, port=port, durable=True, **options)[0]

    redis = Child("Redis", launch)
    redis.start()
    env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    print(f"Started Redis at {env['REDIS_URL']}", flush=True)
    # Management commands run beside us with the same CHESTNET_HOME find the broker here.
    (directory / "url").write_text(env["REDIS_URL"])
    return redis


def _prepare(env: dict[str, str], stop_requested: Callable[[], bool]) -> None:
    for step in ("migrate --noinput", "seed_demo_users"):
        _manage(step, env)
    if env.get("CHESTNET_STORAGE") == "s3":
        store_wait(env, stop_requested)  # the default model is uploaded there next
    _manage("ensure_default_model", env)


def _manage(step: str, env: dict[str, str], **options: Any) -> subprocess.CompletedProcess:
    command = [PYTHON, str(ROOT / "manage.py"), *step.split()]
    options.setdefault("check", True)
    return subprocess.run(command, env=env, cwd=ROOT, preexec_fn=die_with_parent(), **options)


def store_wait(env: dict[str, str], stop_requested: Callable[[], bool]) -> float:
    """Until the object store takes a write (`manage.py storage_check`): one that is down or
    still starting (a SeaweedFS whose volume server is joining) is asked again with backoff,
    said in one line, and the stack starts as soon as it answers. A store that refuses
    (credentials, bucket) stops the start with its reason. Returns the seconds waited."""
    started, delay, said = time.monotonic(), RESTART_AFTER_S, False
    while True:
        check = _manage("storage_check", env, check=False, capture_output=True, text=True)
        line = (check.stdout.strip().splitlines() or ["no answer"])[-1]
        if check.returncode == 0:
            waited = time.monotonic() - started
            if said:
                print(f"The object store answers; starting (waited {waited:.0f} s).", flush=True)
            return waited
        if check.returncode != STORE_NOT_YET:
            raise subprocess.CalledProcessError(check.returncode, "storage_check", line)
        if not said:
            print(
                f"{line}. Waiting for it, asking again with backoff up to "
                f"{STORE_RETRY_MAX_S:.0f} s apart (Ctrl-C to stop).",
                file=sys.stderr,
                flush=True,
            )
            said = True
        _sleep(delay, stop_requested)
        delay = min(STORE_RETRY_MAX_S, delay * 2)


def _sleep(seconds: float, stop_requested: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stop_requested():
            raise StopRequested
        time.sleep(min(0.2, seconds))


def _services(home: Path, port: str) -> list[tuple[str, list[str]]]:
    # Training gets its own worker (one run at a time, a fresh child per run) so that
    # inference is never starved.
    training = ["-Q", "training", "--concurrency", "1", "--max-tasks-per-child", "1"]
    concurrency = os.environ.get("WORKER_CONCURRENCY", "1")
    inference = ["-Q", "inference,celery", "--concurrency", concurrency]
    beat = ["beat", "--loglevel", "INFO", "--schedule", str(home / "celerybeat-schedule")]
    web = ["chestnet_site.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2"]
    web += ["--threads", "4", "--access-logfile", "-"]
    services = [
        ("training worker", [*CELERY_WORKER, *training, "-n", "training@%h"]),
        ("inference worker", [*CELERY_WORKER, *inference]),
        ("beat", [*CELERY, *beat]),
        ("web", [PYTHON, "-m", "gunicorn", *web]),
    ]
    if os.environ.get("CHESTNET_DICOM_PORT", "11112") != "0":
        services.append(("DICOM listener", [PYTHON, str(ROOT / "manage.py"), "dicom_listener"]))
    return services


def _dicom_line() -> str:
    port = os.environ.get("CHESTNET_DICOM_PORT", "11112")
    if port == "0":
        return ""
    aet = os.environ.get("CHESTNET_DICOM_AET", "CHESTNET")
    return f"DICOM listener: AE title {aet}, port {port}\n"


def _launcher(command: list[str], env: dict[str, str]) -> Callable[[], subprocess.Popen]:
    return lambda: subprocess.Popen(command, env=env, cwd=ROOT, **_child_options())


def supervise(children: list[Child], stop_requested: Callable[[], bool]) -> None:
    """Until a stop is requested, start again each child that exited."""
    while not stop_requested():
        for child in children:
            _keep_alive(child)
        time.sleep(0.5)


def _keep_alive(child: Child) -> None:
    assert child.process is not None
    if child.off:
        return
    if child.restart_at is None:
        code = child.process.poll()
        if code is not None:
            # What is left of its process group (a gunicorn worker holding the port) goes too.
            stop_process(child.process, timeout=0, group=True)
            if child.optional and code == EX_CONFIG:
                _leave_off(child, "cannot start as configured (see the line above)")
                return
            _schedule_restart(child, f"exited with code {code}")
    elif time.monotonic() >= child.restart_at:
        try:
            child.start()
        # E.g. Redis did not answer on its port (taken meanwhile).
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            _schedule_restart(child, f"did not start ({exc})")


def _schedule_restart(child: Child, what: str) -> None:
    quick = time.monotonic() - child.started_at < QUICK_EXIT_S
    child.quick_exits = child.quick_exits + 1 if quick else 0
    if child.quick_exits >= QUICK_EXITS_MAX and child.optional:
        _leave_off(child, f"{what}, {child.quick_exits} times in a row right after starting")
        return
    if child.quick_exits >= QUICK_EXITS_MAX:
        raise GaveUp(
            f"{child.name} {what}, {child.quick_exits} times in a row right after starting."
        )
    delay = min(RESTART_AFTER_MAX_S, RESTART_AFTER_S * 2**child.quick_exits)
    child.restart_at = time.monotonic() + delay
    print(f"{child.name} {what}; starting it again in {delay:.0f} s.", file=sys.stderr, flush=True)


def _leave_off(child: Child, what: str) -> None:
    child.off, child.restart_at = True, None
    print(
        f"{child.name} is off: it {what}. The web app and workers go on; /healthz reports it.",
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
