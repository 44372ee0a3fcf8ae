"""Reports: claiming and releasing a case, signing its first report and amending it (one
rule for every screen and the API), reassigning a signed report, and deleting a case that
has none."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Required, TypedDict, Unpack

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from chestnet_site.errors import ServiceError
from chestnet_site.text import require_words
from diagnosis.models import AuditEvent, Case, Image, PriorPrediction, Review
from diagnosis.services.audit import audit_record
from diagnosis.services.files import delete_files


class ReviewFields(TypedDict, total=False):
    """A report as a radiologist sends it: the keyword arguments of `review_submit`,
    `review_sign` and `review_amend`. The finding and the text; whether they agree with the
    AI, per analysed image (`image_agreement`: image id -> bool) or, without it, one answer
    for every analysed image (`agrees_with_ai`); and why, for an amendment (`reason`; a
    first report keeps none)."""

    agrees_with_ai: Required[bool | None]
    finding: Required[str]
    report: Required[str]
    image_agreement: Mapping[int, bool] | None
    reason: str


def review_fields(data: Mapping[str, Any]) -> ReviewFields:
    """The report in a report form's or serializer's validated data, where the reason for
    an amendment is `amendment_reason`."""
    return ReviewFields(
        agrees_with_ai=data["agrees_with_ai"],
        image_agreement=data["image_agreement"],
        finding=data["finding"],
        report=data["report"],
        reason=data["amendment_reason"],
    )


def review_submit(*, case: Case, author, **review: Unpack[ReviewFields]) -> Review:
    """The one rule for a report sent from any screen or the API: the first signed report
    of a case, or, once the case is reported, an amendment (a new version)."""
    if Case.objects.filter(pk=case.pk, status=Case.Status.REPORTED).exists():
        return review_amend(case=case, author=author, **review)
    return review_sign(case=case, author=author, **review)


@transaction.atomic
def report_reassign(*, case: Case, to, reason: str, by) -> Case:
    """An administrator hands a signed report to another radiologist (the signer left, is
    away): from now on only they may amend it. Always with a reason; audited."""
    from accounts import roles

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
    transaction.on_commit(lambda: delete_files(names))


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
def review_sign(*, case: Case, author, **review: Unpack[ReviewFields]) -> Review:
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
    signed = _review_create(locked, author, version=1, review=review)
    locked.status = Case.Status.REPORTED
    locked.report_owner = author
    locked.save(update_fields=["status", "report_owner"])
    audit_record(actor=author, action=AuditEvent.Action.SIGNED, case=locked, detail="version 1")
    return signed


@transaction.atomic
def review_amend(*, case: Case, author, **review: Unpack[ReviewFields]) -> Review:
    """A new signed version by the report's owner (its signer, or whom an admin reassigned
    it to), always with a reason; earlier versions stay untouched."""
    locked = Case.objects.select_for_update().get(pk=case.pk)
    if locked.status != Case.Status.REPORTED:
        raise ServiceError("Only a signed report can be amended.")
    if locked.report_owner_id != author.pk:
        raise ServiceError(
            f"Only {locked.report_owner} may amend this report; an administrator can reassign it."
        )
    reason = require_words(review.get("reason", ""), field="the reason for the amendment")
    latest = locked.reviews.order_by("-version").first()
    version = (latest.version if latest else 0) + 1
    amended = _review_create(locked, author, version=version, review=review, reason=reason)
    audit_record(
        actor=author, action=AuditEvent.Action.AMENDED, case=locked, detail=f"version {version}"
    )
    return amended


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
    case: Case, author, *, version: int, review: ReviewFields, reason: str = ""
) -> Review:
    finding, report = review["finding"], review["report"]
    if finding not in Review.Finding.values:
        raise ServiceError(f"Unknown finding {finding!r}.")
    if not report.strip():
        raise ServiceError("The report text is empty.")
    agreement = review.get("image_agreement")
    agrees, per_image = _ai_opinion(case, review["agrees_with_ai"], agreement)
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
            entry.update(prediction.verdict())
            entry.update(prediction_id=prediction.pk, agrees=agreement.get(image.pk))
        elif image.status == Image.Status.REFUSED:
            entry.update(
                refusal_reason=image.refusal_reason,
                model_version=image.refusal_model_version,
            )
        results.append(entry)
    return results
