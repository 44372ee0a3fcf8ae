#!/usr/bin/env python
"""`make run`: migrate, create demo users on an empty database, then run the web server, a
Celery worker (with the requeue beat) and, without REDIS_URL, a private Redis together in
the foreground. Ctrl-C or SIGTERM stops everything it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chestnet_site import local_redis  # noqa: E402
from chestnet_site.processes import stop_process  # noqa: E402

PYTHON = sys.executable
CELERY_WORKER = [PYTHON, "-m", "celery", "-A", "chestnet_site", "worker", "--loglevel", "INFO"]
DEMO = "clinician, clinician2, radiologist, admin (password: chestnet-demo)"


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
    children: list[subprocess.Popen] = []
    stopping = False

    def stop_all(signum=None, frame=None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    try:
        if not env.get("REDIS_URL"):
            redis, env["REDIS_URL"] = local_redis.start_redis(home / "redis")
            children.append(redis)
            print(f"Started Redis at {env['REDIS_URL']}", flush=True)
            # Management commands run beside us with the same CHESTNET_HOME find the broker here.
            (home / "redis" / "url").write_text(env["REDIS_URL"])
        manage = [PYTHON, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput"], env=env, check=True, cwd=ROOT)
        subprocess.run([*manage, "seed_demo_users"], env=env, check=True, cwd=ROOT)
        subprocess.run([*manage, "ensure_default_model"], env=env, check=True, cwd=ROOT)
        # Training gets its own worker (one run at a time, a fresh child per run) so that
        # inference is never starved.
        training = ["-Q", "training", "--concurrency", "1", "--max-tasks-per-child", "1"]
        children.append(_start([*CELERY_WORKER, *training, "-n", "training@%h"], env))
        inference = [
            "-B",
            "-Q",
            "inference,celery",
            "--schedule",
            str(home / "celerybeat-schedule"),
        ]
        concurrency = os.environ.get("WORKER_CONCURRENCY", "1")
        children.append(_start([*CELERY_WORKER, *inference, "--concurrency", concurrency], env))
        web = ["chestnet_site.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2"]
        web += ["--threads", "4", "--access-logfile", "-"]
        children.append(_start([PYTHON, "-m", "gunicorn", *web], env))
        print(
            f"\nChestNet is running at http://127.0.0.1:{port}/\nDemo logins: {DEMO}\n"
            f"Data in {home}. Press Ctrl-C to stop.\n",
            flush=True,
        )
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.5)
    except subprocess.CalledProcessError as exc:
        print(f"Setup step failed: {exc}", file=sys.stderr)
    finally:
        for child in reversed(children):
            stop_process(child, timeout=20, group=True)
        (home / "redis" / "url").unlink(missing_ok=True)
    return 0 if stopping else 1


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    # Own process group, so Ctrl-C reaches us only and we stop children in order.
    return subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True)


if __name__ == "__main__":
    sys.exit(main())
