"""Stored files: opening an image's preview, heatmap or original for a user (audited; an
original with the name a browser saves it as), writing a file where a field keeps its
files, and deleting files that no row names."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.core.files.base import ContentFile, File
from django.http import Http404

from diagnosis.models import AuditEvent, Image
from diagnosis.services.audit import audit_record

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredFile:
    handle: Any  # open, binary
    content_type: str
    # What a browser saves it as: "case-12-image-2.dcm" for originals (storage names are
    # random and end in .bin); empty for previews and heatmaps, shown inline.
    download_name: str = ""


# (Content-Type, extension) of an original by its format; anything else is a JPEG.
_ORIGINAL_TYPES = {"dicom": ("application/dicom", "dcm"), "png": ("image/png", "png")}
_JPEG = ("image/jpeg", "jpg")


def image_file_open(*, user, image_id: int, kind: str) -> StoredFile:
    """An image's preview, heatmap or original, for a user who may see its case (else
    404), audited: every original download; previews and heatmaps coalesced (a page shows
    them at every visit)."""
    from diagnosis import selectors

    image = selectors.image_get_for_user(user=user, image_id=image_id)
    field, content_type = _image_file(image, kind)
    audit_record(
        actor=user,
        action=AuditEvent.Action.VIEWED_FILE,
        case=image.case,
        detail=f"{kind} of image {image.pk}",
        coalesce=kind != "original",
    )
    name = _original_download_name(image) if kind == "original" else ""
    return StoredFile(field.open("rb"), content_type, name)


def _original_download_name(image: Image) -> str:
    """case-<id>-image-<n>.<ext>: n counts the case's images from 1, in the order shown."""
    number = Image.objects.filter(case_id=image.case_id, pk__lte=image.pk).count()
    extension = _ORIGINAL_TYPES.get(image.original_format, _JPEG)[1]
    return f"case-{image.case_id}-image-{number}.{extension}"


def _image_file(image: Image, kind: str) -> tuple[Any, str]:
    if kind == "preview":
        if not image.preview:
            raise Http404("The image is shown once the worker has read it.")
        png = (image.preview.name or "").endswith(".png")
        return image.preview, "image/png" if png else "image/jpeg"
    if kind == "heatmap":
        prediction = getattr(image, "prediction", None)
        if prediction is None or not prediction.heatmap:
            raise Http404("No heatmap for this image yet.")
        return prediction.heatmap, "image/png"
    if kind == "original":
        return image.original, _ORIGINAL_TYPES.get(image.original_format, _JPEG)[0]
    raise Http404("No such file.")


def file_save(field: Any, name: str, data: bytes | File) -> str:
    """Write a file (bytes, or a File streamed in chunks) where `field` keeps its files (its
    upload_to names it without needing the row), as FieldFile.save would; returns the name
    it got. A write that fails leaves nothing behind (chestnet_site.storage)."""
    path = field.generate_filename(None, name)
    content = ContentFile(data) if isinstance(data, bytes) else File(data.file)
    return field.storage.save(path, content, max_length=field.max_length)


def delete_files(names: list[str]) -> None:
    """Delete stored files that no row names (any more): a file the storage cannot delete
    now (an object store that is down) is logged by name, never turned into an error for
    the deletion or rollback that made it an orphan."""
    from django.core.files.storage import default_storage

    for name in names:
        if not name:
            continue
        try:
            default_storage.delete(name)
        except Exception:
            logger.exception("Could not delete the stored file %s; delete it by hand", name)
