"""On a storage without local paths (an object store), a worker loads a copy of the artifact
from CHESTNET_MODEL_CACHE: downloaded once, checked against its sha256, never half-written."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, default_storage

from ml.artifact import ArtifactError, write_card
from registry import artifacts, services


class PathlessStorage(Storage):
    """Files in a dict. Like an object store's, its path() raises NotImplementedError."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def _save(self, name: str, content) -> str:
        self.files[name] = content.read()
        return name

    def _open(self, name: str, mode: str = "rb") -> ContentFile:
        return ContentFile(self.files[name], name=name)

    def exists(self, name: str) -> bool:
        return name in self.files

    def delete(self, name: str) -> None:
        self.files.pop(name, None)


@pytest.fixture(autouse=True)
def _no_local_paths(monkeypatch):
    monkeypatch.setattr(default_storage, "_wrapped", PathlessStorage())


@pytest.fixture
def version(tmp_path, db):
    path = tmp_path / "m.keras"
    path.write_bytes(b"weights" * 100)
    write_card(
        path,
        {
            "version": "cached-1",
            "image_size": 64,
            "threshold": 0.5,
            "labels": ["NORMAL", "PNEUMONIA"],
            "preprocessing_version": "1",
        },
    )
    return services.version_register(path=path, origin="trained")


def test_a_worker_loads_a_verified_copy_kept_in_the_model_cache(version, settings):
    local = artifacts.local_artifact(version)

    assert local == settings.CHESTNET_MODEL_CACHE / version.sha256 / "model.keras"
    assert local.read_bytes() == b"weights" * 100
    assert local.with_suffix(".json").is_file()
    default_storage.delete(version.artifact)  # later loads do not download again
    assert artifacts.local_artifact(version) == local


def test_an_altered_stored_artifact_is_refused_and_leaves_nothing_in_the_cache(version, settings):
    default_storage.delete(version.artifact)
    default_storage.save(version.artifact, ContentFile(b"tampered"))

    with pytest.raises(ArtifactError, match="altered"):
        artifacts.local_artifact(version)
    assert not any(settings.CHESTNET_MODEL_CACHE.iterdir())
