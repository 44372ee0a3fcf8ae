"""Uploads: the upload rules (how many files, the size before reading, a header that
reads), and creating a case of validated images: its files stored before its transaction,
its analysis queued once it commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile, File
from django.db import transaction
from django.utils import timezone

from chestnet_site.errors import ServiceError
from diagnosis.models import AuditEvent, Case, Image
from diagnosis.services.audit import audit_record
from diagnosis.services.files import delete_files, file_save
from diagnosis.services.inference_queue import image_enqueue_on_commit
from ml.preprocessing import ImageError, inspect


class ImageRejected(ValidationError):
    """An upload that is not a usable radiograph; the message says why."""


@dataclass(frozen=True)
class ValidatedImage:
    """An upload whose header was checked: the file (a large upload stays on disk where
    Django spooled it, and is stored from there in chunks), its format and declared size.
    Its pixels are decoded by the worker, never by the web process."""

    file: File
    format: str
    size: tuple[int, int]  # (width, height), as the header declares
    name: str = ""  # the file's name, as the reader will see it


def uploads_validate(files: Iterable[Any]) -> list[ValidatedImage]:
    """The upload rules, for the HTML form, the API and any other way in: at least one
    file, at most CHESTNET_MAX_FILES_PER_CASE, each within the size limit (checked before
    reading) and decodable. Every problem is reported at once; nothing is saved."""
    files = list(files)
    if not files:
        raise ImageRejected("Add at least one image (PNG, JPEG or DICOM).")
    if len(files) > settings.CHESTNET_MAX_FILES_PER_CASE:
        raise ImageRejected(f"At most {settings.CHESTNET_MAX_FILES_PER_CASE} images per case.")
    validated, errors = [], []
    for upload in files:
        try:
            if upload.size is not None and upload.size > upload_limit():
                raise ImageRejected(_too_large(upload.name))
            validated.append(image_validate(name=upload.name, data=upload))
        except ImageRejected as exc:
            errors.extend(exc.messages)
    if errors:
        raise ImageRejected(errors)
    return validated


def upload_limit() -> int:
    return settings.CHESTNET_MAX_UPLOAD_MB * 1024 * 1024


def _too_large(name: str) -> str:
    return f"{name}: the file is larger than the {settings.CHESTNET_MAX_UPLOAD_MB} MB limit."


def image_validate(*, name: str, data: bytes | File) -> ValidatedImage:
    """Check a file (its bytes, or an upload) from its header (format, size, frames, DICOM
    tags) before anything is saved. Only the header is read and the pixels are not
    decoded: a 50 MB upload spooled to disk costs the web process kilobytes, not its size
    nor a gigabyte of pixels. What only decoding finds, the worker reports as an image it
    could not read."""
    file = ContentFile(data) if isinstance(data, bytes) else data
    if file.size > upload_limit():
        raise ImageRejected(_too_large(name))
    try:
        header = inspect(file)
    except ImageError as exc:
        raise ImageRejected(f"{name}: {exc}") from exc
    return ValidatedImage(
        file=file, format=header.format, size=(header.width, header.height), name=_shown_name(name)
    )


def _shown_name(name: str) -> str:
    """The base name of an uploaded file, without control characters, for display."""
    base = str(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in base if ch.isprintable())[:120]


def case_create(
    *,
    owner,
    images: Sequence[ValidatedImage],
    patient_id: str = "",
    age: int | None = None,
    sex: str = Case.Sex.UNKNOWN,
    indication: str = "",
    urgency: str = Case.Urgency.ROUTINE,
) -> Case:
    """Save a case and its already validated images in one transaction; analysis is
    enqueued only once it commits. On failure no row and no file is left behind."""
    if not images:
        raise ServiceError("Add at least one image.")
    originals: list[str] = []
    try:
        # Stored before the transaction: no row (with SQLite, no database) is locked while
        # the files upload.
        for validated in images:
            originals.append(original_write(validated.file))
        with transaction.atomic():
            case = Case.objects.create(
                owner=owner,
                patient_id=patient_id,
                age=age,
                sex=sex or Case.Sex.UNKNOWN,
                indication=indication,
                urgency=urgency or Case.Urgency.ROUTINE,
            )
            for validated, original in zip(images, originals, strict=True):
                _image_create(case=case, validated=validated, original=original)
            audit_record(
                actor=owner,
                action=AuditEvent.Action.CREATED,
                case=case,
                detail=f"{len(images)} image(s)",
            )
    except Exception:
        delete_files(originals)
        raise
    return case


def original_write(data: bytes | File) -> str:
    return file_save(Image._meta.get_field("original"), "original", data)


def _image_create(*, case: Case, validated: ValidatedImage, original: str) -> None:
    image = Image(
        case=case,
        original_format=validated.format,
        name=validated.name,
        enqueued_at=timezone.now(),
    )
    image.original.name = original
    image.save()
    image_enqueue_on_commit(image_id=image.pk)
