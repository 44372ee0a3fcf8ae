"""A disk with little room left, for the storage: `full_disk(settings, room=...)` makes the
default storage ChestNet's own local storage on a disk that holds `room` more bytes. A write
past it fails midway with ENOSPC, after part of the file was written, as the kernel's does;
deleting a file gives its room back. Every file the storage keeps is listed by
`stored_files()`, to compare with the names the rows hold."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.core.files.base import File

from chestnet_site.storage import FileSystemStorage


class Disk:
    room = 0  # bytes the disk can still take


class FullDiskStorage(FileSystemStorage):
    def _save(self, name: str, content: Any) -> str:
        return super()._save(name, _Filling(content))

    def delete(self, name: str) -> None:
        path = Path(self.path(name))
        size = path.stat().st_size if path.is_file() else 0
        super().delete(name)
        Disk.room += size


class _Filling(File):
    """The content, whose chunks stop where the disk is full."""

    def __init__(self, content: Any) -> None:
        super().__init__(content)
        self.content = content

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        for chunk in self.content.chunks(chunk_size):
            if len(chunk) > Disk.room:
                written, Disk.room = chunk[: Disk.room], 0
                yield written  # what the disk took, before it was full
                raise OSError(errno.ENOSPC, "No space left on device")
            Disk.room -= len(chunk)
            yield chunk


def full_disk(settings: Any, *, room: int) -> None:
    """The default storage, from now on in this test, on a disk with `room` bytes left."""
    Disk.room = room
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "tests.support.full_disk.FullDiskStorage"},
    }


def stored_files(media_root: Path, *folders: str) -> set[str]:
    """The storage names of every file in these folders of MEDIA_ROOT (all by default)."""
    roots = [media_root / folder for folder in folders] if folders else [media_root]
    return {
        path.relative_to(media_root).as_posix()
        for root in roots
        if root.exists()
        for path in root.rglob("*")
        if path.is_file()
    }
