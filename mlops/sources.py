"""Reading a labelled dataset from a zip or a server folder, and refusing unsafe ones.

A source is a list of entries (relative name, sizes, how to read it). `plan_import` checks
every name and size before a single byte is decompressed: absolute paths, `..`, symlinks,
encrypted entries, duplicate names, too many files, too many bytes and suspicious
compression ratios (zip bombs) are refused with a reason the admin can act on."""

from __future__ import annotations

import re
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from django.conf import settings

from ml.data import LABELS

SPLIT_FOLDERS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
SYSTEM_NAMES = {"thumbs.db", "desktop.ini", "__macosx"}
# personNNN_bacteria_1.jpeg, IM-0115-0001.jpeg, NORMAL2-IM-1427-0001.jpeg (see MANIFEST.csv)
_PATIENT = re.compile(r"^(person\d+|NORMAL2-IM-\d+|IM-\d+)", re.IGNORECASE)
_DRIVE = re.compile(r"^[A-Za-z]:")


class ImportRefused(ValueError):
    """The source cannot be imported; `problems` lists the reasons, safe to show."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = problems[:10] + ([f"… and {len(problems) - 10} more"] if len(problems) > 10 else [])
        super().__init__("; ".join(shown))


@dataclass(frozen=True)
class Entry:
    name: str
    size: int
    compressed: int
    is_dir: bool = False
    is_symlink: bool = False
    encrypted: bool = False
    read: Callable[[], bytes] = field(default=lambda: b"", compare=False, repr=False)


@dataclass(frozen=True)
class Planned:
    name: str
    label: str
    split: str
    patient: str
    read: Callable[[], bytes] = field(compare=False, repr=False)


@dataclass
class Plan:
    items: list[Planned]
    skipped: list[tuple[str, str]]  # (name, reason)


def patient_from_name(name: str) -> str:
    stem = PurePosixPath(name).stem
    match = _PATIENT.match(stem)
    return (match.group(1) if match else stem)[:64]


def zip_entries(archive: zipfile.ZipFile) -> list[Entry]:
    return [
        Entry(
            name=info.filename,
            size=info.file_size,
            compressed=info.compress_size,
            is_dir=info.is_dir(),
            is_symlink=stat.S_ISLNK(info.external_attr >> 16),
            encrypted=bool(info.flag_bits & 0x1),
            read=_zip_reader(archive, info),
        )
        for info in archive.infolist()
    ]


def _zip_reader(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], bytes]:
    def read() -> bytes:
        with archive.open(info) as handle:
            # Never trust the declared size: read at most one byte more than it claims.
            data = handle.read(info.file_size + 1)
        if len(data) != info.file_size:
            raise ImportRefused([f"{info.filename}: its size differs from the zip's header."])
        return data

    return read


def folder_entries(root: Path) -> list[Entry]:
    entries = []
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_symlink():
            entries.append(Entry(name=name, size=0, compressed=0, is_symlink=True))
        elif path.is_dir():
            entries.append(Entry(name=name + "/", size=0, compressed=0, is_dir=True))
        elif path.is_file():
            size = path.stat().st_size
            entries.append(Entry(name=name, size=size, compressed=size, read=path.read_bytes))
    return entries


def plan_import(entries: list[Entry]) -> Plan:
    """Check every entry's name and size and map files to (label, split, patient)."""
    problems = _unsafe(entries)
    if problems:
        raise ImportRefused(problems)
    files = [e for e in entries if not e.is_dir]
    items, skipped = [], []
    for entry in files:
        reason = _skip_reason(entry.name)
        if reason:
            skipped.append((entry.name, reason))
            continue
        parts = PurePosixPath(entry.name).parts
        label = parts[-2].upper()
        split = SPLIT_FOLDERS.get(parts[-3].lower(), "") if len(parts) >= 3 else ""
        items.append(Planned(entry.name, label, split, patient_from_name(entry.name), entry.read))
    _check_structure(entries, items)
    return Plan(items=items, skipped=skipped)


def _unsafe(entries: list[Entry]) -> list[str]:
    problems, seen = [], set()
    max_file = settings.CHESTNET_MAX_UPLOAD_MB * 1024 * 1024
    for entry in entries:
        name = entry.name
        parts = name.rstrip("/").split("/")
        if name.startswith("/") or "\\" in name or _DRIVE.match(name) or ".." in parts:
            problems.append(f"{name}: unsafe path (absolute, '..' or backslashes).")
        elif entry.is_symlink:
            problems.append(f"{name}: symbolic links are not accepted.")
        elif entry.encrypted:
            problems.append(f"{name}: encrypted entries are not accepted.")
        elif name in seen:
            problems.append(f"{name}: the name appears twice in the archive.")
        elif entry.size > max_file:
            problems.append(f"{name}: larger than the {settings.CHESTNET_MAX_UPLOAD_MB} MB limit.")
        elif (
            entry.size > 1024 * 1024
            and entry.size > entry.compressed * settings.CHESTNET_IMPORT_MAX_RATIO
        ):
            problems.append(
                f"{name}: compressed more than {settings.CHESTNET_IMPORT_MAX_RATIO}:1 (zip bomb?)."
            )
        seen.add(name)
    return problems + _totals(entries)


def _totals(entries: list[Entry]) -> list[str]:
    files = [e for e in entries if not e.is_dir]
    total = sum(e.size for e in files)
    if len(files) > settings.CHESTNET_IMPORT_MAX_FILES:
        limit = settings.CHESTNET_IMPORT_MAX_FILES
        return [f"The archive has {len(files)} files; at most {limit} are accepted."]
    if total > settings.CHESTNET_IMPORT_MAX_MB * 1024 * 1024:
        return [f"The archive expands to more than {settings.CHESTNET_IMPORT_MAX_MB} MB."]
    return []


def _skip_reason(name: str) -> str:
    parts = PurePosixPath(name).parts
    if any(p.startswith(".") or p.lower() in SYSTEM_NAMES for p in parts):
        return "hidden or system file"
    if len(parts) < 2 or parts[-2].upper() not in LABELS:
        return "not inside a NORMAL/ or PNEUMONIA/ folder"
    return ""


def _check_structure(entries: list[Entry], items: list[Planned]) -> None:
    if not items:
        raise ImportRefused(
            [
                "No images found in NORMAL/ or PNEUMONIA/ folders (optionally inside train/, "
                "val/ or test/ folders)."
            ]
        )
    folders_with_files = {str(PurePosixPath(i.name).parent) for i in items}
    empty = [
        e.name
        for e in entries
        if e.is_dir
        and PurePosixPath(e.name).name.upper() in LABELS
        and str(PurePosixPath(e.name)) not in folders_with_files
    ]
    if empty:
        raise ImportRefused([f"{name}: the folder is empty." for name in sorted(empty)])
