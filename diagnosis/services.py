"""Every write of the clinical workflow: validating uploads, creating cases, running and
recording inference, re-analysis with the active model, claiming, signing and amending
reports, and the audit trail. The HTML views, the API and the commands all call these."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile, File
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.http import Http404
from django.utils import timezone

from chestnet_site.errors import ServiceError
from chestnet_site.faults import TRANSIENT
from chestnet_site.queue import enqueue, enqueue_on_commit
from chestnet_site.rows import rows_update
from chestnet_site.text import require_words
from diagnosis.models import AuditEvent, Case, Image, Prediction, PriorPrediction, Review
from ml.header import element_text, read_header
from ml.outcome import Refusal
from ml.overlay import heatmap_png, heatmap_size
from ml.preprocessing import (
    Acquisition,
    ImageError,
    UnreadableImage,
    acquisition,
    inspect,
    preview_jpeg,
)

logger = logging.getLogger(__name__)

# An image 'processing' for longer than this was abandoned by a dead worker.
PROCESSING_LEASE = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 30)
INFERENCE_TASK = "diagnosis.tasks.inference_run_task"
FAILED_GENERIC = "The analysis failed because of an internal error. Retry, or contact support."
FAILED_STORAGE_FULL = (
    "The analysis could not be stored: the image store is full. Retry once space is freed."
)


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


# --- audit -----------------------------------------------------------------------------


def audit_record(
    *,
    actor,
    action: str,
    case: Case | None = None,
    detail: str = "",
    subjects: Sequence[int] = (),
    source: str | None = None,
    coalesce: bool = False,
) -> AuditEvent | None:
    """Append one event to the audit trail. `subjects`: the ids of the cases a list showed;
    `source`: the client's address (logins). With `coalesce`, an identical event by the
    same user within CHESTNET_AUDIT_COALESCE_S (a page polling a case, a list refreshing)
    is not written again; returns None then."""
    from diagnosis import roles

    actor = actor if getattr(actor, "pk", None) else None
    event = AuditEvent(
        actor=actor,
        # Who they were at the time: kept whatever later becomes of the account.
        actor_username=actor.get_username() if actor is not None else "",
        actor_role=roles.role_names(actor) if actor is not None else "",
        action=action,
        case=case,
        case_ref=case.pk if case is not None else None,
        detail=detail[:300],
        subjects=f",{','.join(str(pk) for pk in subjects)}," if subjects else "",
        source=source or None,
    )
    if coalesce and _recently_recorded(event):
        return None
    event.save()
    return event


def _recently_recorded(event: AuditEvent) -> bool:
    since = timezone.now() - timedelta(seconds=settings.CHESTNET_AUDIT_COALESCE_S)
    return AuditEvent.objects.filter(
        actor=event.actor,
        action=event.action,
        case_ref=event.case_ref,
        detail=event.detail,
        subjects=event.subjects,
        at__gte=since,
    ).exists()


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


def cases_listed_audit(*, user, cases: Sequence[Case], listing: str) -> None:
    """A list showing patient identifiers was shown: which cases, to whom (coalesced)."""
    audit_record(
        actor=user,
        action=AuditEvent.Action.LISTED,
        detail=listing,
        subjects=[case.pk for case in cases],
        coalesce=True,
    )


# --- upload ----------------------------------------------------------------------------


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
            if upload.size is not None and upload.size > _upload_limit():
                raise ImageRejected(_too_large(upload.name))
            validated.append(image_validate(name=upload.name, data=upload))
        except ImageRejected as exc:
            errors.extend(exc.messages)
    if errors:
        raise ImageRejected(errors)
    return validated


def _upload_limit() -> int:
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
    if file.size > _upload_limit():
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
            originals.append(_original_write(validated.file))
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
        _delete_files(originals)
        raise
    return case


def _original_write(data: bytes | File) -> str:
    return _file_save(Image._meta.get_field("original"), "original", data)


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


def image_enqueue(*, image_id: int) -> bool:
    """Publish the inference task. If the broker is down the image stays queued and the
    periodic requeue sweep publishes it again later; the upload still succeeds."""
    return enqueue(INFERENCE_TASK, image_id)


def image_enqueue_on_commit(*, image_id: int) -> None:
    enqueue_on_commit(INFERENCE_TASK, image_id)


# --- received over the DICOM network --------------------------------------------------


class InstanceRejected(ServiceError):
    """A DICOM instance that cannot become part of a case (no study or instance UID)."""


class StudyMismatch(InstanceRejected):
    """The instance belongs to another study than the one it was sent to (STOW-RS)."""


@dataclass(frozen=True)
class Received:
    """What became of a received instance. `case_id` and `image_id` are None when nothing
    was attached: an instance already held under another owner (the sender gets the same
    answer as for a new instance, and learns nothing of the other case)."""

    case_id: int | None
    image_id: int | None
    created: bool  # False: received before (or held by another owner) and not stored again


def instance_receive(
    *,
    data: bytes | Path,
    source: str,
    source_ae: str = "",
    owner=None,
    study_instance_uid: str = "",
) -> Received:
    """One DICOM instance sent by a modality or a PACS (C-STORE or STOW-RS): it joins the
    open case of its study, patient and owner (made on the first instance, with the
    header's patient and study facts) and goes through the same gate and analysis as an
    upload. An instance of a study whose case is of another patient or owner, or already
    reported, starts a new case linked to that one. An instance the gate refuses is still
    kept, marked not analysed with the reason, for the radiologist. `owner`: who sent it
    (STOW-RS); else the network account, so that a modality and the PACS forwarding parts
    of one study over C-STORE make one case. `study_instance_uid`: the study it was
    addressed to, if any. `data`: the Part 10 file's bytes, or its path (the listener's and
    STOW-RS's spooled file), read a header and a chunk at a time, never whole."""
    with _instance_file(data) as file:
        return _instance_store(
            file, source=source, source_ae=source_ae, owner=owner, study=study_instance_uid
        )


@contextmanager
def _instance_file(data: bytes | Path) -> Iterator[File]:
    if isinstance(data, bytes):
        yield ContentFile(data)
        return
    with data.open("rb") as handle:
        yield File(handle)


def _instance_store(file: File, *, source: str, source_ae: str, owner, study: str) -> Received:
    header = _network_header(file)
    if study and header.study_instance_uid != study:
        raise StudyMismatch("The instance belongs to another study.")
    owner = owner or _network_owner()
    existing = Image.objects.filter(sop_instance_uid=header.sop_instance_uid).first()
    if existing is not None:
        return _instance_again(existing, owner=owner, source=source)
    refusal = _header_refusal(file)
    original = _original_write(file)  # before the transaction, as for uploads
    try:
        with transaction.atomic():
            case = _study_case(header, source=source, source_ae=source_ae, owner=owner)
            image = _network_image(case, header, original, refusal)
            case_refresh_status(case_id=case.pk)
    except Exception as exc:
        _delete_files([original])  # no file without its row
        if not isinstance(exc, IntegrityError):
            raise
        # The same instance, stored meanwhile by another association.
        image = Image.objects.get(sop_instance_uid=header.sop_instance_uid)
        return _instance_again(image, owner=owner, source=source)
    return Received(case_id=case.pk, image_id=image.pk, created=True)


def _instance_again(image: Image, *, owner, source: str) -> Received:
    """An instance already held. The same owner re-sending it is told where it is; another
    owner gets the answer of a new instance and nothing is attached (audited on the case
    that holds it, without the sender learning of it)."""
    if image.case.owner_id == owner.pk:
        return Received(case_id=image.case_id, image_id=image.pk, created=False)
    audit_record(
        actor=owner,
        action=AuditEvent.Action.RECEIVED,
        case=image.case,
        detail=f"a copy of image {image.pk} sent by another account over "
        f"{Case.Source(source).label}: not attached",
    )
    return Received(case_id=None, image_id=None, created=False)


@dataclass(frozen=True)
class _StudyHeader:
    study_instance_uid: str
    sop_instance_uid: str
    patient_id: str
    issuer_of_patient_id: str
    age: int | None
    sex: str
    accession_number: str
    study_description: str
    view: str = ""  # "PA chest", or the series description
    study_at: datetime | None = None


def _network_header(file: File) -> _StudyHeader:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        file.seek(0)
        ds = pydicom.dcmread(file, stop_before_pixels=True)
    except (InvalidDicomError, ValueError, TypeError, EOFError, OSError) as exc:
        raise InstanceRejected("The data is not a readable DICOM instance.") from exc
    study, instance = element_text(ds, "StudyInstanceUID"), element_text(ds, "SOPInstanceUID")
    if not study or not instance or len(study) > 64 or len(instance) > 64:
        raise InstanceRejected("The instance has no valid Study or SOP Instance UID.")
    age = read_header(ds).age_years
    sex = element_text(ds, "PatientSex").upper()
    return _StudyHeader(
        study_instance_uid=study,
        sop_instance_uid=instance,
        patient_id=element_text(ds, "PatientID")[:64],
        issuer_of_patient_id=element_text(ds, "IssuerOfPatientID")[:64],
        age=None if age is None else int(age),
        sex=sex if sex in Case.Sex.values else Case.Sex.UNKNOWN,
        accession_number=element_text(ds, "AccessionNumber")[:16],
        study_description=element_text(ds, "StudyDescription")[:64],
        view=_view_name(ds),
        study_at=_dicom_study_at(ds),
    )


def _view_name(ds) -> str:
    facts = read_header(ds)
    view = " ".join(part for part in (facts.view_position, facts.body_part.lower()) if part)
    return (view or facts.series_description or facts.view_code)[:120]


def _header_refusal(file: File) -> Refusal | None:
    """The upload gate (size limit, header check); its refusal becomes the image's result."""
    if file.size > _upload_limit():
        message = f"The file is larger than the {settings.CHESTNET_MAX_UPLOAD_MB} MB limit."
        return Refusal(reason="unsupported", message=message)
    try:
        inspect(file)
    except UnreadableImage as exc:
        return Refusal(reason="unreadable", message=str(exc))
    except ImageError as exc:
        return Refusal(reason="unsupported", message=str(exc))
    return None


def _network_owner():
    """The account network-received cases belong to: it cannot log in."""
    from django.contrib.auth import get_user_model

    user, created = get_user_model().objects.get_or_create(
        username=settings.CHESTNET_DICOM_OWNER, defaults={"is_active": False}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def _study_case(study: _StudyHeader, *, source: str, source_ae: str, owner) -> Case:
    """The open case of this study, patient and owner; else a new one, linked to the
    latest other case of the study when there is one."""
    key = {
        "study_instance_uid": study.study_instance_uid,
        "owner": owner,
        "patient_id": study.patient_id,
        "issuer_of_patient_id": study.issuer_of_patient_id,
    }
    detail = f"instance received by {Case.Source(source).label}" + (
        f" from {source_ae}" if source_ae else ""
    )
    case = _open_study_case(key)
    if case is None:
        created = _study_case_create(study, key, source=source, source_ae=source_ae, detail=detail)
        if created is not None:
            return created
        case = _open_study_case(key)  # made meanwhile by another association
        if case is None:
            raise IntegrityError("no open case of the study after a conflict")
    audit_record(actor=owner, action=AuditEvent.Action.RECEIVED, case=case, detail=detail)
    return case


def _study_case_create(
    study: _StudyHeader, key: Mapping[str, Any], *, source: str, source_ae: str, detail: str
) -> Case | None:
    """A new case for the study, audited (and on the study's other case, if any); None if
    another association made the same one first."""
    others = Case.objects.filter(study_instance_uid=study.study_instance_uid)
    linked = others.order_by("-pk").first()
    reason = _study_link_reason(linked, key) if linked is not None else ""
    try:
        with transaction.atomic():  # a savepoint: the conflict fails alone
            case = Case.objects.create(
                **key,
                source=source,
                source_ae=source_ae[:16],
                age=study.age,
                sex=study.sex,
                accession_number=study.accession_number,
                study_description=study.study_description,
                study_at=study.study_at,
                same_study_as=linked,
                same_study_reason=reason,
            )
    except IntegrityError:
        return None
    owner = key["owner"]
    if linked is not None:
        detail += f"; same Study Instance UID as case {linked.pk} ({reason})"
        audit_record(
            actor=owner,
            action=AuditEvent.Action.RECEIVED,
            case=linked,
            detail=f"an instance of this study went to new case {case.pk} ({reason})",
        )
    audit_record(actor=owner, action=AuditEvent.Action.CREATED, case=case, detail=detail)
    return case


def _open_study_case(key: Mapping[str, Any]) -> Case | None:
    return Case.objects.filter(**key).exclude(status=Case.Status.REPORTED).first()


def _study_link_reason(linked: Case, key: Mapping[str, Any]) -> str:
    """Why an instance did not join the earlier case of its study (no identifiers)."""
    if (linked.patient_id, linked.issuer_of_patient_id) != (
        key["patient_id"],
        key["issuer_of_patient_id"],
    ):
        return "another patient"
    if linked.owner_id != key["owner"].pk:
        return "another sender"
    return "its report was signed"


def _network_image(
    case: Case, study: _StudyHeader, original: str, refusal: Refusal | None
) -> Image:
    image = Image(
        case=case,
        original_format="dicom",
        name=study.view,
        sop_instance_uid=study.sop_instance_uid,
        enqueued_at=timezone.now(),
    )
    if refusal is not None:
        image.status = Image.Status.REFUSED
        image.refusal_reason, image.refusal_message = refusal.reason, refusal.message[:2000]
    image.original.name = original
    with transaction.atomic():  # a savepoint: a duplicate instance fails alone
        image.save()
    if refusal is None:
        image_enqueue_on_commit(image_id=image.pk)
    return image


def case_pacs_failure_set(*, case_id: int, failure: str) -> None:
    """Note on the case what could not be sent back to the PACS (empty: nothing)."""
    Case.objects.filter(pk=case_id).exclude(pacs_failure=failure).update(pacs_failure=failure)


def case_pacs_retry_audit(*, case_id: int | None, user, what: str) -> None:
    """An admin sent a failed object of the case to the PACS again."""
    case = Case.objects.filter(pk=case_id).first() if case_id else None
    detail = f"retry sending {what} to the PACS"
    audit_record(actor=user, action=AuditEvent.Action.ADMIN_CHANGED, case=case, detail=detail)


# --- inference (runs in the worker) ----------------------------------------------------


def images_claim(*, image_id: int, token: str, extra: int) -> list[Image]:
    """Take an image for analysis, and up to `extra` more queued images for the same batch
    when the queue is deep; returns the images (with their cases) this task now holds. Each
    image is claimed on its own (its attempts counted, its lease started) under the task's
    token: a second delivery of the same task takes the same images again, any other task
    only once the lease of a dead worker expired. The queued images' own tasks later find
    them taken."""
    now = timezone.now()
    claimable = (
        Q(status=Image.Status.QUEUED)
        | Q(status=Image.Status.PROCESSING, claim_token=token)
        | Q(status=Image.Status.PROCESSING, claimed_at__lt=now - PROCESSING_LEASE)
    )
    redelivered = Q(status=Image.Status.PROCESSING, claim_token=token)  # its batch, again
    queued = Q(status=Image.Status.QUEUED) if extra else Q(pk__in=[])
    # Most tasks of a deep queue find their image taken by an earlier batch and nothing
    # left: one read says so, without the write transaction.
    if not Image.objects.filter((claimable & Q(pk=image_id)) | redelivered | queued).exists():
        return []
    with transaction.atomic():
        ids = list(
            Image.objects.filter((claimable & Q(pk=image_id)) | redelivered).values_list(
                "pk", flat=True
            )
        )
        more = extra - len(set(ids) - {image_id})
        if more > 0:
            waiting = (
                Image.objects.select_for_update(skip_locked=True)
                .filter(status=Image.Status.QUEUED)
                .exclude(pk__in=[*ids, image_id])
                .order_by("enqueued_at", "pk")
                .values_list("pk", flat=True)
            )
            ids += waiting[:more]
        if not ids:
            return []
        Image.objects.filter(claimable, pk__in=ids).update(
            status=Image.Status.PROCESSING,
            claimed_at=now,
            claim_token=token,
            attempts=F("attempts") + 1,
            error="",
            refusal_reason="",
            refusal_message="",
            refusal_model_version="",
        )
        held = list(
            Image.objects.select_related("case")
            .filter(pk__in=ids, status=Image.Status.PROCESSING, claim_token=token)
            .order_by("pk")
        )
        # An image in analysis makes its case 'processing' (a reported case stays so).
        Case.objects.filter(pk__in={image.case_id for image in held}).exclude(
            status__in=[Case.Status.PROCESSING, Case.Status.REPORTED]
        ).update(status=Case.Status.PROCESSING)
    return held


def inference_run(*, image_id: int, token: str, predictor_loader: Callable[[], Any]) -> str:
    """Analyse the task's image, with up to CHESTNET_INFERENCE_BATCH - 1 more queued images
    as one batch through the model when the queue is deep. Returns what happened to the
    task's own image, for logs."""
    started = time.perf_counter()
    extra = max(0, settings.CHESTNET_INFERENCE_BATCH - 1)
    images = images_claim(image_id=image_id, token=token, extra=extra)
    if not images:
        return "skipped"
    ids = [image.pk for image in images]
    # An original that cannot be read is that image's failure; the others go on.
    outcomes: dict[int, Any] = {image.pk: _read(image) for image in images}
    readable = [image for image in images if isinstance(outcomes[image.pk], bytes)]
    predicted = _predict_batch(
        predictor_loader,
        [outcomes[image.pk] for image in readable],
        ages=[image.case.age for image in readable],
    )
    facts = {image.pk: acquisition(outcomes[image.pk]) for image in readable}
    outcomes.update(zip([image.pk for image in readable], predicted, strict=True))
    results = [
        _analysed(
            image, outcomes[image.pk], started=started, batch=len(images), facts=facts.get(image.pk)
        )
        for image in images
    ]
    stored = analyses_store(token=token, results=results)
    mine = next((r for r in results if isinstance(r, Analysed) and r.image_id == image_id), None)
    if image_id not in ids:
        return f"skipped (analysed {len(stored)} queued images)"
    if mine is None:
        return "failed"
    if image_id not in stored:
        return "skipped"
    return mine.outcome_name + (f" (batch of {len(images)})" if len(images) > 1 else "")


@dataclass(frozen=True)
class Preview:
    data: bytes  # JPEG
    size: tuple[int, int]  # (width, height)


@dataclass(frozen=True)
class Analysed:
    """What the worker made of one image, ready to store."""

    image_id: int
    outcome: Any  # a Prediction or a Refusal (ml.outcome)
    preview: Preview | None
    heatmap: bytes | None = None
    timings: dict[str, float] | None = None
    has_preview: bool = False  # the image keeps the preview it has (a re-analysis)
    acquisition: Acquisition | None = None  # the header's facts, for monitoring

    @property
    def outcome_name(self) -> str:
        return "refused" if self.outcome.refused else "done"


def _read(image: Image) -> bytes | Exception:
    """The stored original; a file that is gone fails its own image, not the batch. A store
    that is down is a transient fault: the task is retried, with its whole batch."""
    try:
        with image.original.open("rb") as handle:
            return handle.read()
    except TRANSIENT:
        raise
    except Exception as exc:
        logger.exception("The original of image %s cannot be read", image.pk)
        return exc


def _predict_batch(
    predictor_loader: Callable[[], Any], datas: list[bytes], *, ages: list[int | None]
) -> list[Any]:
    """One pass of the model over the batch. If the batch as a whole fails, each image
    goes through alone, so one bad file cannot fail the others."""
    predictor = predictor_loader()
    if len(datas) > 1:
        try:
            return list(predictor.predict_batch(datas, heatmap=True, ages=ages))
        except Exception:
            logger.exception("A batch of %s images failed; analysing them one by one", len(datas))
    return [_predict_one(predictor, data, age) for data, age in zip(datas, ages, strict=True)]


def _predict_one(predictor: Any, data: bytes, age_years: int | None) -> Any:
    try:
        return predictor.predict(data, heatmap=True, age_years=age_years)
    except ImageError as exc:
        # The predictor returns unreadable input as a Refusal; one that still raises (the
        # earlier contract) means the same, and must not turn a result into a failure.
        return Refusal(reason="unreadable", message=str(exc))
    except Exception as exc:
        logger.exception("Inference of one image failed")
        return exc


def _analysed(
    image: Image, outcome: Any, *, started: float, batch: int, facts: Acquisition | None = None
) -> Analysed | Exception:
    """The preview and heatmap of one outcome, from the pixels the model read: the file is
    decoded once. An unreadable file has neither."""
    if isinstance(outcome, Exception):
        return outcome
    try:
        pixels = getattr(outcome, "image", None)
        preview = _preview(pixels) if pixels is not None else None
        kept = bool(image.preview)
        if outcome.refused:
            return Analysed(image.pk, outcome, preview, has_preview=kept, acquisition=facts)
        heatmap = None
        if preview is not None and outcome.heatmap is not None:
            heatmap = heatmap_png(outcome.heatmap, size=heatmap_size(preview.size))
        timings = {**outcome.timings, "worker_total": (time.perf_counter() - started) * 1000}
        if batch > 1:
            timings["batch"] = batch
        return Analysed(
            image.pk, outcome, preview, heatmap, timings, has_preview=kept, acquisition=facts
        )
    except Exception as exc:
        logger.exception("Rendering the result of image %s failed", image.pk)
        return exc


def _preview(pixels: Any) -> Preview:
    data, size = preview_jpeg(pixels)
    return Preview(data=data, size=size)


def analyses_store(*, token: str, results: Sequence[Analysed | Exception]) -> set[int]:
    """Store a batch's results: predictions, refusals, previews, and the status of each
    case once. An image is stored only while this task still holds it (a second delivery of
    the task stores nothing); an image whose analysis raised is marked failed. Returns the
    ids stored. The preview and heatmap files are written first, outside the transaction,
    so no row (and with SQLite, no database) stays locked while they upload; the files of
    results that are not recorded are deleted again."""
    files = _files_write(results)
    try:
        with transaction.atomic():
            stored = _analyses_store(token, results, files)
    except Exception:
        _delete_files([name for written in files.values() for name in written.names()])
        raise
    _delete_files(
        [
            name
            for image_id, written in files.items()
            if image_id not in stored
            for name in written.names()
        ]
    )
    return stored


@dataclass
class _Written:
    """What one result's files are called in storage, once written."""

    preview: str = ""
    heatmap: str = ""

    def names(self) -> list[str]:
        return [name for name in (self.preview, self.heatmap) if name]


def _files_write(results: Sequence[Analysed | Exception]) -> dict[int, _Written]:
    preview_field = Image._meta.get_field("preview")
    heatmap_field = Prediction._meta.get_field("heatmap")
    files: dict[int, _Written] = {}
    try:
        for result in results:
            if not isinstance(result, Analysed):
                continue
            written = files[result.image_id] = _Written()
            if result.preview is not None and not result.has_preview:
                written.preview = _file_save(preview_field, "preview", result.preview.data)
            if result.heatmap is not None and not result.outcome.refused:
                written.heatmap = _file_save(heatmap_field, "heatmap", result.heatmap)
    except Exception:
        _delete_files([name for written in files.values() for name in written.names()])
        raise
    return files


def _file_save(field: Any, name: str, data: bytes | File) -> str:
    """Write a file (bytes, or a File streamed in chunks) where `field` keeps its files (its
    upload_to names it without needing the row), as FieldFile.save would; returns the name
    it got. A write that fails leaves nothing behind (chestnet_site.storage)."""
    path = field.generate_filename(None, name)
    content = ContentFile(data) if isinstance(data, bytes) else File(data.file)
    return field.storage.save(path, content, max_length=field.max_length)


def _analyses_store(
    token: str, results: Sequence[Analysed | Exception], files: dict[int, _Written]
) -> set[int]:
    # Before the images: a model switch locks the version rows first, then images.
    withdrawn = _withdrawn_versions(results)
    held = {
        image.pk: image
        for image in Image.objects.select_for_update().filter(
            claim_token=token, status=Image.Status.PROCESSING
        )
    }
    predictions, changed, again = [], [], []
    for result in results:
        if isinstance(result, Exception):
            continue
        image = held.get(result.image_id)
        if image is None:
            continue
        if str(result.outcome.model_version) in withdrawn:
            again.append(image)
            continue
        written = files[result.image_id]
        if written.preview and not image.preview:
            image.preview.name = written.preview
            image.preview_width, image.preview_height = result.preview.size  # type: ignore[union-attr]
        elif written.preview:  # another task stored one meanwhile: keep it, drop this one
            _delete_files([written.preview])
        if result.acquisition is not None:
            _acquisition_apply(image, result.acquisition)
        if result.outcome.refused:
            _refusal_apply(image, result.outcome)
        else:
            predictions.append(_prediction(image, result, written.heatmap))
            image.status = Image.Status.DONE
        changed.append(image)
    failed = set(held) - {image.pk for image in changed} - {image.pk for image in again}
    _withdrawn_requeue(again, withdrawn)
    Prediction.objects.bulk_create(predictions)
    fields = ["status", "preview", "preview_width", "preview_height"]
    fields += ["refusal_reason", "refusal_message", "refusal_model_version", "error"]
    fields += ["modality", "manufacturer", "width", "height", "bits_stored"]
    rows_update(changed, fields)
    if failed:
        Image.objects.filter(pk__in=failed).update(status=Image.Status.FAILED, error=FAILED_GENERIC)
    _cases_refresh(case_ids={image.case_id for image in held.values()})
    return {image.pk for image in changed}


def _withdrawn_versions(results: Sequence[Analysed | Exception]) -> set[str]:
    """The registered versions among these results' that are no longer active. Their rows
    are locked: a switch that withdraws one either committed before (this store sees it
    and re-queues the image) or waits for this store to commit (and then re-queues the
    case with the other unreported results of the withdrawn version). A version the
    registry does not know (no registry yet: the shipped default) is served as it is."""
    from registry.models import ModelVersion

    versions = {
        str(result.outcome.model_version) for result in results if isinstance(result, Analysed)
    }
    if not versions:
        return set()
    rows = ModelVersion.objects.select_for_update().filter(version__in=versions).order_by("pk")
    return {version for version, active in rows.values_list("version", "is_active") if not active}


def _withdrawn_requeue(images: list[Image], withdrawn: set[str]) -> None:
    """Queue again images analysed by a version withdrawn while they were in analysis: the
    result is dropped (never shown), the attempt is not counted against the image."""
    if not images:
        return
    Image.objects.filter(pk__in=[image.pk for image in images]).update(
        status=Image.Status.QUEUED,
        claim_token="",
        enqueued_at=timezone.now(),
        attempts=F("attempts") - 1,
    )
    for image in images:
        image_enqueue_on_commit(image_id=image.pk)
    for case_id in sorted({image.case_id for image in images}):
        audit_record(
            actor=None,
            action=AuditEvent.Action.REANALYSED,
            case=Case(pk=case_id),
            detail=f"model {', '.join(sorted(withdrawn))} withdrawn during analysis: queued again",
        )
    logger.info("%s image(s) analysed by a withdrawn version queued again", len(images))


def _acquisition_apply(image: Image, facts: Acquisition) -> None:
    image.modality = facts.modality
    image.manufacturer = facts.manufacturer
    image.width = facts.width or None
    image.height = facts.height or None
    image.bits_stored = facts.bits_stored or None


def _refusal_apply(image: Image, refusal: Refusal) -> None:
    """Record that the model declined this input: a result, not a failure, so there is no
    prediction and nothing to retry, and the case still goes to a radiologist."""
    image.status = Image.Status.REFUSED
    image.refusal_reason = refusal.reason
    image.refusal_message = refusal.message[:2000]
    image.refusal_model_version = str(refusal.model_version)[:100]
    image.error = ""


def _prediction(image: Image, result: Analysed, heatmap: str) -> Prediction:
    outcome = result.outcome
    prediction = Prediction(
        image=image,
        probability=float(outcome.probability),
        label=str(outcome.label),
        threshold=float(outcome.threshold),
        model_version=str(outcome.model_version),
        uncertainty=None if outcome.uncertainty is None else float(outcome.uncertainty),
        warnings=[str(warning) for warning in outcome.warnings],
        timings={key: round(float(value), 2) for key, value in (result.timings or {}).items()},
    )
    prediction.heatmap.name = heatmap
    return prediction


@transaction.atomic
def images_fail(*, token: str, reason: str) -> int:
    """Mark failed every image a task still holds (its retries are spent, or it was
    stopped): each can be retried on its own."""
    held = Image.objects.select_for_update().filter(
        status=Image.Status.PROCESSING, claim_token=token
    )
    case_ids = set(held.values_list("case_id", flat=True))
    updated = held.update(status=Image.Status.FAILED, error=reason[:500])
    _cases_refresh(case_ids=case_ids)
    return updated


@transaction.atomic
def case_refresh_status(*, case_id: int) -> Case:
    """Derive the case status (and worklist keys) from its images; reported is final."""
    _cases_refresh(case_ids={case_id})
    return Case.objects.get(pk=case_id)


def _cases_refresh(*, case_ids: Iterable[int]) -> None:
    """`case_refresh_status` for several cases in four queries, whatever their number,
    inside a transaction its caller holds."""
    cases = list(
        Case.objects.select_for_update()
        .filter(pk__in=set(case_ids))
        .exclude(status=Case.Status.REPORTED)
        .order_by("pk")
    )
    if not cases:
        return
    statuses: dict[int, list[str]] = {case.pk: [] for case in cases}
    for case_id, status in Image.objects.filter(case__in=cases).values_list("case_id", "status"):
        statuses[case_id].append(status)
    # Only analysed images speak for the AI: a refused image adds no probability or flag.
    probabilities: dict[int, list[tuple[float, str]]] = {case.pk: [] for case in cases}
    for case_id, probability, label in Prediction.objects.filter(
        image__case__in=cases, image__status=Image.Status.DONE
    ).values_list("image__case_id", "probability", "label"):
        probabilities[case_id].append((probability, label))
    now = timezone.now()
    for case in cases:
        found = probabilities[case.pk]
        case.status = _case_status_from(statuses[case.pk])
        case.max_probability = max((p for p, _ in found), default=None)
        case.ai_flagged = any(label == "PNEUMONIA" for _, label in found)
        if case.status == Case.Status.AWAITING_REVIEW and case.ready_at is None:
            case.ready_at = now
    rows_update(cases, ["status", "max_probability", "ai_flagged", "ready_at"])


def _case_status_from(statuses: list[str]) -> str:
    """Done and refused images are both finished: a case of only those awaits review."""
    if any(s == Image.Status.PROCESSING for s in statuses):
        return Case.Status.PROCESSING
    if any(s == Image.Status.QUEUED for s in statuses):
        done = any(s != Image.Status.QUEUED for s in statuses)
        return Case.Status.PROCESSING if done else Case.Status.QUEUED
    if any(s == Image.Status.FAILED for s in statuses):
        return Case.Status.FAILED
    return Case.Status.AWAITING_REVIEW


def image_retry(*, image: Image, user) -> Image:
    with transaction.atomic():
        updated = Image.objects.filter(pk=image.pk, status=Image.Status.FAILED).update(
            status=Image.Status.QUEUED, error="", claim_token="", enqueued_at=timezone.now()
        )
        if not updated:
            raise ServiceError("Only a failed analysis can be retried.")
        case_refresh_status(case_id=image.case_id)
        audit_record(
            actor=user,
            action=AuditEvent.Action.RETRIED,
            case=image.case,
            detail=f"image {image.pk}",
        )
        image_enqueue_on_commit(image_id=image.pk)
    image.refresh_from_db()
    return image


def case_reanalyse(*, case: Case, user, reason: str = "re-run with the active model") -> int:
    """Analyse every finished image of a case again with the active model version. The
    current predictions are kept as PriorPrediction rows (a refusal leaves no row: it is
    only replaced); returns how many images were queued."""
    with transaction.atomic():
        # A refused image is a result too: the active version may analyse it, or refuse again.
        finished = [Image.Status.DONE, Image.Status.REFUSED]
        images = list(Image.objects.select_for_update().filter(case=case, status__in=finished))
        if not images:
            raise ServiceError("No analysed image to re-run.")
        for image in images:
            _prediction_supersede(image=image, user=user)
            Image.objects.filter(pk=image.pk).update(
                status=Image.Status.QUEUED,
                claim_token="",
                error="",
                refusal_reason="",
                refusal_message="",
                enqueued_at=timezone.now(),
            )
            image_enqueue_on_commit(image_id=image.pk)
        case_refresh_status(case_id=case.pk)
        audit_record(
            actor=user,
            action=AuditEvent.Action.REANALYSED,
            case=case,
            detail=f"{reason}: {len(images)} image(s)",
        )
    return len(images)


def reanalyse_unreported(*, model_version: str, user) -> int:
    """A model version was withdrawn: every case not yet reported that it analysed (or
    refused) goes through the active version again. Reported cases keep the result their
    report was signed against. Returns how many cases were queued."""
    analysed_by = Q(images__prediction__model_version=model_version) | Q(
        images__refusal_model_version=model_version, images__status=Image.Status.REFUSED
    )
    cases = Case.objects.filter(analysed_by).exclude(status=Case.Status.REPORTED).distinct()
    count = 0
    for case in cases:
        try:
            case_reanalyse(case=case, user=user, reason=f"model {model_version} withdrawn")
        except ServiceError:  # nothing finished to re-run (still queued or processing)
            continue
        count += 1
    return count


def _prediction_supersede(*, image: Image, user) -> None:
    prediction = Prediction.objects.filter(image=image).first()
    if prediction is None:
        return
    PriorPrediction.objects.create(
        image=image,
        probability=prediction.probability,
        label=prediction.label,
        threshold=prediction.threshold,
        model_version=prediction.model_version,
        heatmap=prediction.heatmap.name or "",
        timings=prediction.timings,
        predicted_at=prediction.created_at,
        superseded_by=user,
    )
    # The heatmap file now belongs to the prior row; delete only the row.
    Prediction.objects.filter(pk=prediction.pk).delete()


def requeue_stale(*, now=None) -> int:
    """Publish again images whose task was lost: queued while the broker was down, or
    left 'processing' by a worker that died. Duplicates are harmless (claiming)."""
    now = now or timezone.now()
    stale_queued = Q(
        status=Image.Status.QUEUED,
        enqueued_at__lt=now - timedelta(seconds=settings.CHESTNET_REQUEUE_AFTER_S),
    )
    abandoned = Q(status=Image.Status.PROCESSING, claimed_at__lt=now - PROCESSING_LEASE)
    count = 0
    for image_id in Image.objects.filter(stale_queued | abandoned).values_list("pk", flat=True):
        Image.objects.filter(pk=image_id).update(enqueued_at=now)
        count += image_enqueue(image_id=image_id)
    return count


# --- radiologist review ----------------------------------------------------------------


def review_submit(
    *,
    case: Case,
    author,
    agrees_with_ai: bool | None,
    finding: str,
    report: str,
    reason: str = "",
    image_agreement: Mapping[int, bool] | None = None,
) -> Review:
    """The one rule for a report sent from any screen or the API: the first signed report
    of a case, or, once the case is reported, an amendment (a new version).
    `image_agreement`: agree or disagree per analysed image (image id -> bool); without
    it, `agrees_with_ai` stands for every analysed image."""
    reported = Case.objects.filter(pk=case.pk, status=Case.Status.REPORTED).exists()
    fields = {
        "case": case,
        "author": author,
        "agrees_with_ai": agrees_with_ai,
        "image_agreement": image_agreement,
    }
    if reported:
        return review_amend(**fields, finding=finding, report=report, reason=reason)
    return review_sign(**fields, finding=finding, report=report)


@transaction.atomic
def report_reassign(*, case: Case, to, reason: str, by) -> Case:
    """An administrator hands a signed report to another radiologist (the signer left, is
    away): from now on only they may amend it. Always with a reason; audited."""
    from diagnosis import roles

    locked = Case.objects.select_for_update().get(pk=case.pk)
    if locked.status != Case.Status.REPORTED:
        raise ServiceError("Only a signed report can be reassigned.")
    if not roles.is_radiologist(to):
        raise ServiceError(f"{to} is not a radiologist.")
    reason = require_words(reason, field="the reason for the reassignment")
    previous = locked.report_owner
    locked.report_owner = to
    locked.save(update_fields=["report_owner"])
    audit_record(
        actor=by,
        action=AuditEvent.Action.REASSIGNED,
        case=locked,
        detail=f"report from {previous} to {to}: {reason}",
    )
    return locked


@transaction.atomic
def case_delete(*, case: Case, user) -> None:
    """Delete a case that has no signed report, with its files (an upload in error).
    A reported case is never deleted: retention is the hospital's policy, not a button.
    The audit trail keeps the case's id."""
    locked = Case.objects.select_for_update().get(pk=case.pk)
    if locked.status == Case.Status.REPORTED or locked.reviews.exists():
        raise ServiceError("A case with a signed report cannot be deleted.")
    audit_record(
        actor=user,
        action=AuditEvent.Action.ADMIN_DELETED,
        case=locked,
        detail=f"case {locked.pk} and {locked.images.count()} image(s)",
    )
    names = _stored_files(locked)
    locked.delete()
    transaction.on_commit(lambda: _delete_files(names))


def _stored_files(case: Case) -> list[str]:
    """Every file of the case's images: originals, previews, heatmaps current and prior."""
    names = []
    for image in case.images.select_related("prediction"):
        names += [image.original.name, image.preview.name if image.preview else ""]
        prediction = getattr(image, "prediction", None)
        if prediction is not None:
            names.append(prediction.heatmap.name)
    priors = PriorPrediction.objects.filter(image__case=case).values_list("heatmap", flat=True)
    return [name for name in [*names, *priors] if name]


def _delete_files(names: list[str]) -> None:
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


def case_claim(*, case: Case, user) -> Case:
    """Take a case for review; refuses if another radiologist holds it."""
    now = timezone.now()
    with transaction.atomic():
        updated = Case.objects.filter(
            Q(claimed_by__isnull=True) | Q(claimed_by=user),
            pk=case.pk,
            status=Case.Status.AWAITING_REVIEW,
        ).update(claimed_by=user, claimed_at=now)
        if not updated:
            raise ServiceError(_claim_refusal(case))
        audit_record(actor=user, action=AuditEvent.Action.CLAIMED, case=case)
    case.refresh_from_db()
    return case


def _claim_refusal(case: Case) -> str:
    case.refresh_from_db()
    if case.status != Case.Status.AWAITING_REVIEW:
        return "This case is not awaiting review."
    return f"This case is already claimed by {case.claimed_by}."


def case_release(*, case: Case, user) -> Case:
    with transaction.atomic():
        updated = Case.objects.filter(pk=case.pk, claimed_by=user).update(
            claimed_by=None, claimed_at=None
        )
        if not updated:
            raise ServiceError("You can only release a case you have claimed.")
        audit_record(actor=user, action=AuditEvent.Action.RELEASED, case=case)
    case.refresh_from_db()
    return case


@transaction.atomic
def review_sign(
    *,
    case: Case,
    author,
    agrees_with_ai: bool | None,
    finding: str,
    report: str,
    image_agreement: Mapping[int, bool] | None = None,
) -> Review:
    """Sign the first report. The case must await review and its claim be the author's.
    `agrees_with_ai` is required when the case has an AI result, and stored as None when
    it has none (see `Case.has_ai_result`)."""
    locked = Case.objects.select_for_update().get(pk=case.pk)
    if locked.status != Case.Status.AWAITING_REVIEW:
        raise ServiceError("This case is not awaiting review; amend the signed report instead.")
    if locked.claimed_by_id is None:
        raise ServiceError("Claim the case before signing its report.")
    if locked.claimed_by_id != author.pk:
        raise ServiceError(f"This case is claimed by {locked.claimed_by}.")
    review = _review_create(
        case=locked,
        author=author,
        version=1,
        agrees_with_ai=agrees_with_ai,
        image_agreement=image_agreement,
        finding=finding,
        report=report,
    )
    locked.status = Case.Status.REPORTED
    locked.report_owner = author
    locked.save(update_fields=["status", "report_owner"])
    audit_record(actor=author, action=AuditEvent.Action.SIGNED, case=locked, detail="version 1")
    return review


@transaction.atomic
def review_amend(
    *,
    case: Case,
    author,
    agrees_with_ai: bool | None,
    finding: str,
    report: str,
    reason: str = "",
    image_agreement: Mapping[int, bool] | None = None,
) -> Review:
    """A new signed version by the report's owner (its signer, or whom an admin reassigned
    it to), always with a reason; earlier versions stay untouched."""
    locked = Case.objects.select_for_update().get(pk=case.pk)
    if locked.status != Case.Status.REPORTED:
        raise ServiceError("Only a signed report can be amended.")
    if locked.report_owner_id != author.pk:
        raise ServiceError(
            f"Only {locked.report_owner} may amend this report; an administrator can reassign it."
        )
    reason = require_words(reason, field="the reason for the amendment")
    latest = locked.reviews.order_by("-version").first()
    version = (latest.version if latest else 0) + 1
    review = _review_create(
        case=locked,
        author=author,
        version=version,
        agrees_with_ai=agrees_with_ai,
        image_agreement=image_agreement,
        finding=finding,
        report=report,
        reason=reason,
    )
    audit_record(
        actor=author, action=AuditEvent.Action.AMENDED, case=locked, detail=f"version {version}"
    )
    return review


def _ai_opinion(
    case: Case, agrees_with_ai: bool | None, image_agreement: Mapping[int, bool] | None
) -> tuple[bool | None, dict[int, bool]]:
    """Whether the reviewer agrees with the AI, for the case and per analysed image:
    required when there is an AI result (per image, or one answer for all), and not
    applicable (None, whatever was sent) when the AI analysed no image. The case agrees
    only when every image does."""
    analysed = list(
        Image.objects.filter(case=case, status=Image.Status.DONE).values_list("pk", flat=True)
    )
    if not analysed:
        return None, {}
    if image_agreement:
        unknown = set(image_agreement) - set(analysed)
        if unknown:
            raise ServiceError(f"No AI result to agree with on image {min(unknown)}.")
        missing = [pk for pk in analysed if pk not in image_agreement]
        if missing:
            raise ServiceError(f"Say whether you agree with the AI on image {missing[0]}.")
        per_image = {pk: bool(image_agreement[pk]) for pk in analysed}
        return all(per_image.values()), per_image
    if agrees_with_ai is None:
        raise ServiceError("Say whether you agree with the AI.")
    return agrees_with_ai, {pk: agrees_with_ai for pk in analysed}


def _review_create(
    *,
    case: Case,
    author,
    version: int,
    agrees_with_ai: bool | None,
    finding: str,
    report: str,
    reason: str = "",
    image_agreement: Mapping[int, bool] | None = None,
) -> Review:
    if finding not in Review.Finding.values:
        raise ServiceError(f"Unknown finding {finding!r}.")
    if not report.strip():
        raise ServiceError("The report text is empty.")
    agrees, per_image = _ai_opinion(case, agrees_with_ai, image_agreement)
    return Review.objects.create(
        case=case,
        version=version,
        author=author,
        agrees_with_ai=agrees,
        finding=finding,
        report=report.strip(),
        amendment_reason=reason.strip(),
        ai_results=_ai_results(case, per_image),
        signed_at=timezone.now(),
    )


def _ai_results(case: Case, agreement: Mapping[int, bool]) -> list[dict[str, Any]]:
    """What the AI said about each image at the moment of signing, and whether the
    reviewer agreed with it (`agrees`, on analysed images)."""
    results = []
    for image in Image.objects.filter(case=case).select_related("prediction").order_by("pk"):
        entry: dict[str, Any] = {"image": image.pk, "status": image.status}
        prediction = getattr(image, "prediction", None)
        if image.status == Image.Status.DONE and prediction is not None:
            entry.update(
                probability=prediction.probability,
                label=prediction.label,
                threshold=prediction.threshold,
                uncertainty=prediction.uncertainty,
                model_version=prediction.model_version,
                prediction_id=prediction.pk,
                agrees=agreement.get(image.pk),
            )
        elif image.status == Image.Status.REFUSED:
            entry.update(
                refusal_reason=image.refusal_reason,
                model_version=image.refusal_model_version,
            )
        results.append(entry)
    return results


# --- DICOM header (the viewer's header panel) ------------------------------------------

HEADER_VALUE_CHARS = 256  # longer values are cut, the full length said
HEADER_MAX_ELEMENTS = 3000  # a fuzzed or vendor-bloated header still answers quickly
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})


def image_header_for_user(*, user, image_id: int) -> dict[str, Any]:
    """The DICOM header of an image's original, element by element, for a user who may see
    its case (else 404; 404 too for a PNG or JPEG original), without pixel data; audited
    (coalesced, like previews).

    Identifiers: radiologists and administrators see every case's patient ID anyway, and a
    clinician sees their own case's; they get the whole header. Anyone else would get it as
    the PS3.15 Basic Profile would leave it (every attribute the profile removes, empties or
    replaces, and private attributes, omitted and counted): defence in depth, since
    `selectors.case_list_for` gives users without a clinical role no case at all."""
    from diagnosis import roles, selectors

    image = selectors.image_get_for_user(user=user, image_id=image_id)
    if image.original_format != "dicom":
        raise Http404("The original is not a DICOM file: it has no header.")
    shows = roles.sees_all_cases(user) or (
        roles.is_clinician(user) and image.case.owner_id == user.pk
    )
    elements, omitted = _header_elements(_header_dataset(image), identifiers=shows)
    audit_record(
        actor=user,
        action=AuditEvent.Action.VIEWED_FILE,
        case=image.case,
        detail=f"header of image {image.pk}",
        coalesce=True,
    )
    return {"image": image.pk, "identifiers_shown": shows, "omitted": omitted, "elements": elements}


def _header_dataset(image: Image) -> Any:
    import pydicom

    try:
        with image.original.open("rb") as handle:
            # force: legacy files without preamble or file meta are DICOM too.
            return pydicom.dcmread(handle, stop_before_pixels=True, force=True)
    except Exception as exc:  # pydicom raises many kinds on a corrupt header
        raise ServiceError("The DICOM header could not be read.") from exc


def _header_elements(ds: Any, *, identifiers: bool) -> tuple[list[dict[str, Any]], int]:
    hidden: frozenset[int] = frozenset() if identifiers else _identifying_tags()
    rows: list[dict[str, Any]] = []
    omitted = 0
    for source in (getattr(ds, "file_meta", None) or [], ds):
        omitted += _header_rows(source, rows, hidden=hidden, depth=0)
    return rows, omitted


def _header_rows(ds: Any, rows: list[dict[str, Any]], *, hidden: frozenset[int], depth: int) -> int:
    """Appends ds's elements (and their sequences' items, one level deeper) to `rows`;
    returns how many were left out as identifying."""
    omitted = 0
    for element in ds:
        if element.tag in (0x7FE00010, 0x7FE00008, 0x7FE00009):  # pixel data of any kind
            continue
        if hidden and (element.tag.is_private or int(element.tag) in hidden):
            omitted += 1
            continue
        if len(rows) >= HEADER_MAX_ELEMENTS:
            break
        rows.append(_header_row(element, depth))
        if element.VR == "SQ":
            for item in element.value:
                omitted += _header_rows(item, rows, hidden=hidden, depth=depth + 1)
    return omitted


def _header_row(element: Any, depth: int) -> dict[str, Any]:
    tag = element.tag
    return {
        "tag": f"({tag.group:04X},{tag.element:04X})",
        "keyword": element.keyword or "",
        "name": element.name,
        "vr": element.VR,
        "value": _header_value(element),
        "depth": depth,
    }


def _header_value(element: Any) -> str:
    from pydicom.multival import MultiValue

    try:
        value = element.value
    except Exception:  # a raw value pydicom cannot convert
        return "(unreadable)"
    if element.VR == "SQ":
        return f"{len(value)} item{'' if len(value) == 1 else 's'}"
    if element.VR in _BINARY_VRS or isinstance(value, bytes):
        return f"(binary, {len(value or b'')} bytes)"
    if value is None:
        return ""
    if isinstance(value, list | tuple | MultiValue):
        text = "\\".join(str(item) for item in value)
    else:
        text = str(value)
    text = text.replace("\x00", " ").strip()
    if len(text) > HEADER_VALUE_CHARS:
        return f"{text[:HEADER_VALUE_CHARS]}… ({len(text)} characters)"
    return text


_IDENTIFYING_TAGS: list[frozenset[int]] = []  # read once per process


def _identifying_tags() -> frozenset[int]:
    """Every attribute the PS3.15 Basic Profile acts on (the table ml.deidentify applies),
    and the file meta's copy of the SOP Instance UID."""
    if not _IDENTIFYING_TAGS:
        from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

        from ml.deidentify import PROFILE_TABLE

        table = dicom_anonymization_database_selector(PROFILE_TABLE)
        rows = (row for code in table.values() for row in code if len(row) == 2)
        _IDENTIFYING_TAGS.append(frozenset({(r[0] << 16) | r[1] for r in rows} | {0x00020003}))
    return _IDENTIFYING_TAGS[0]


# --- the live worklist ------------------------------------------------------------------

_DICOM_DATE = re.compile(r"(\d{4})[.\-/]?(\d{2})[.\-/]?(\d{2})$")
_DICOM_TIME = re.compile(r"(\d{2}):?(\d{2})?:?(\d{2})?(?:\.(\d{1,6}))?$")
_DICOM_OFFSET = re.compile(r"([+-])(\d{2})(\d{2})$")


def _dicom_study_at(ds: Any) -> datetime | None:
    """StudyDate and StudyTime (DA "YYYYMMDD", TM "HHMMSS.FFFFFF" or a prefix of it; the
    older "YYYY.MM.DD" and "HH:MM:SS" too) as an aware time: in TimezoneOffsetFromUTC when
    the header gives it, else in the site's zone (a modality stamps its local time). None
    without a valid date; midnight without a time."""
    date = _DICOM_DATE.match(element_text(ds, "StudyDate"))
    if date is None:
        return None
    clock = _DICOM_TIME.match(element_text(ds, "StudyTime"))
    hour, minute, second, fraction = clock.groups() if clock else ("0", None, None, None)
    year, month, day = (int(part) for part in date.groups())
    try:
        naive = datetime(
            year,
            month,
            day,
            int(hour),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
        )
    except ValueError:  # month 13, hour 25: not a time
        return None
    return timezone.make_aware(naive, _dicom_zone(ds))


def _dicom_zone(ds: Any) -> Any:
    offset = _DICOM_OFFSET.match(element_text(ds, "TimezoneOffsetFromUTC"))
    if offset is None:
        return timezone.get_default_timezone()
    sign, hours, minutes = offset.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    return dt_timezone(-delta if sign == "-" else delta)


CLAIM_NEXT_TRIES = 5


def case_claim_next(
    *,
    user,
    urgency: str | None = None,
    flagged: bool | None = None,
    source: str | None = None,
    sort: str = "priority",
) -> Case | None:
    """Claim the top unclaimed case of the worklist in this ordering and these filters
    ("claim next"). Atomic: the candidate is locked (PostgreSQL, skipping rows another
    claim holds) and taken by a conditional update, so two radiologists at once get two
    different cases; if another took it first anyway, the next one is tried. None when no
    unclaimed case matches."""
    from diagnosis import selectors

    for _ in range(CLAIM_NEXT_TRIES):
        with transaction.atomic():
            case_id = selectors.worklist_next_unclaimed(
                user=user, urgency=urgency, flagged=flagged, source=source, sort=sort
            )
            if case_id is None:
                return None
            taken = Case.objects.filter(
                pk=case_id, claimed_by__isnull=True, status=Case.Status.AWAITING_REVIEW
            ).update(claimed_by=user, claimed_at=timezone.now())
            if taken:
                case = Case.objects.get(pk=case_id)
                audit_record(
                    actor=user, action=AuditEvent.Action.CLAIMED, case=case, detail="claim next"
                )
                return case
    return None
