"""Instances received over the DICOM network (C-STORE and STOW-RS): the case of their
study, the upload's header gate, and what could not be sent back to the PACS."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.db import IntegrityError, transaction
from django.utils import timezone

from chestnet_site.errors import ServiceError
from diagnosis.models import AuditEvent, Case, Image
from diagnosis.services.audit import audit_record
from diagnosis.services.case_status import case_refresh_status
from diagnosis.services.files import delete_files
from diagnosis.services.inference_queue import image_enqueue_on_commit
from diagnosis.services.uploads import original_write, upload_limit
from ml.header import element_text, read_header, study_datetime
from ml.outcome import Refusal
from ml.preprocessing import ImageError, UnreadableImage, inspect


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
    original = original_write(file)  # before the transaction, as for uploads
    try:
        with transaction.atomic():
            case = _study_case(header, source=source, source_ae=source_ae, owner=owner)
            image = _network_image(case, header, original, refusal)
            case_refresh_status(case_id=case.pk)
    except Exception as exc:
        delete_files([original])  # no file without its row
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
        study_at=study_datetime(ds, timezone.get_default_timezone()),
    )


def _view_name(ds) -> str:
    facts = read_header(ds)
    view = " ".join(part for part in (facts.view_position, facts.body_part.lower()) if part)
    return (view or facts.series_description or facts.view_code)[:120]


def _header_refusal(file: File) -> Refusal | None:
    """The upload gate (size limit, header check); its refusal becomes the image's result."""
    if file.size > upload_limit():
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
        image.status, image.result_at = Image.Status.REFUSED, timezone.now()
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
