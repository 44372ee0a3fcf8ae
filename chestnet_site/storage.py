"""Stored files: their names, random because uploaded file names can carry patient names and
storage paths appear in logs; the local file system storage, which leaves nothing behind
when a write fails; and the removal of files no row names (`orphans_remove`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.files.storage import FileSystemStorage as DjangoFileSystemStorage
from django.core.files.storage import default_storage
from django.utils.deconstruct import deconstructible

from chestnet_site.faults import FULL_ERRNOS, StorageFull


@deconstructible
class RandomName:
    """An `upload_to` that ignores the given name: `<folder>/<random hex><suffix>`. The
    folder may name fields of the instance: `RandomName("datasets/{dataset_id}", ".bin")`."""

    def __init__(self, folder: str, suffix: str) -> None:
        self.folder, self.suffix = folder, suffix

    def __call__(self, instance: Any, filename: str) -> str:
        folder = self.folder.format_map(vars(instance)) if "{" in self.folder else self.folder
        return f"{folder}/{uuid.uuid4().hex}{self.suffix}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RandomName) and (self.folder, self.suffix) == (
            other.folder,
            other.suffix,
        )

    def __hash__(self) -> int:
        return hash((self.folder, self.suffix))


class FileSystemStorage(DjangoFileSystemStorage):
    """Django's local storage, except that a write that fails (a full disk, a quota) leaves
    no part of the file behind: Django's own keeps the bytes written so far under a name
    no row learns, an orphan. Files are streamed in chunks (a spooled upload is copied,
    never read whole); a full disk raises `StorageFull`."""

    def _save(self, name: str, content: Any) -> str:
        try:
            Path(self.path(name)).parent.mkdir(parents=True, exist_ok=True)
            while True:
                path = Path(self.path(name))
                try:
                    _write_new(path, content)
                    break
                except FileExistsError:  # taken since get_available_name chose it
                    name = self.get_available_name(name)
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:
                raise StorageFull(exc.errno, "The file storage is full.") from exc
            raise
        if self.file_permissions_mode is not None:
            os.chmod(path, self.file_permissions_mode)
        return path.relative_to(Path(self.location)).as_posix()


def _write_new(path: Path, content: Any) -> None:
    """Write `content` (a Django File) to a file that must not exist yet; on any failure
    the file is removed again."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    descriptor = os.open(path, flags, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            for chunk in content.chunks():
                handle.write(chunk if isinstance(chunk, bytes) else chunk.encode())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def orphans_remove(
    *, folder: str, in_use: Collection[str], older_than: datetime, storage: Any = None
) -> int:
    """Delete the files directly in `folder` of the storage that no row names (`in_use`)
    and that were last written before `older_than`: a younger one may be a file whose row
    is being committed. Returns how many were removed. Only the candidates' times are
    looked up (one request each on an object store), not every file's."""
    storage = storage or default_storage
    try:
        _, files = storage.listdir(folder)
    except FileNotFoundError:
        return 0
    removed = 0
    for base in files:
        name = f"{folder}/{base}"
        if name in in_use:
            continue
        try:
            if storage.get_modified_time(name) >= older_than:
                continue
            storage.delete(name)
        except FileNotFoundError:  # deleted meanwhile
            continue
        removed += 1
    return removed


def storage_probe(storage: Any = None) -> None:
    """Write a small file and delete it again: raises what the storage raises when it cannot
    take a write now (down, still starting, full) or at all (refused credentials)."""
    from django.core.files.base import ContentFile

    storage = storage or default_storage
    name = storage.save(f"health/probe-{uuid.uuid4().hex}", ContentFile(b"probe"))
    storage.delete(name)
