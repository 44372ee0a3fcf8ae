"""Signed cases of a site, made fast (bulk rows, no files): what site calibration and
monitoring count. Each case has its images' AI results and, unless unsigned, one signed
report whose finding is the label. Imported by tests only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from diagnosis.models import Case, Image, Prediction, Review


@dataclass(frozen=True)
class SiteCase:
    """One case: a probability per analysed image (None: an image the AI refused)."""

    probabilities: tuple[float | None, ...]
    finding: str = "normal"  # a Review.Finding, or "" for a case not signed yet
    version: str = "base-1"
    threshold: float = 0.5
    source: str = Case.Source.UPLOAD
    source_ae: str = ""
    modality: str = "CR"
    manufacturer: str = "Acme"
    at: datetime | None = None  # when the AI's results were stored (default: now)


def site_cases(cases: list[SiteCase], *, owner, radiologist) -> list[int]:
    """Create the cases with their images, results and reports; returns the case ids."""
    created = Case.objects.bulk_create(
        [
            Case(
                owner=owner,
                patient_id=f"S{i:05d}",
                age=4,
                source=spec.source,
                source_ae=spec.source_ae,
                status=Case.Status.REPORTED if spec.finding else Case.Status.AWAITING_REVIEW,
            )
            for i, spec in enumerate(cases)
        ]
    )
    images = Image.objects.bulk_create(
        [
            _image(case, spec, probability)
            for case, spec in zip(created, cases, strict=True)
            for probability in spec.probabilities
        ]
    )
    specs = {case.pk: spec for case, spec in zip(created, cases, strict=True)}
    scores = [p for spec in cases for p in spec.probabilities]
    Prediction.objects.bulk_create(
        [
            _prediction(image, specs[image.case_id], probability)
            for image, probability in zip(images, scores, strict=True)
            if probability is not None
        ]
    )
    for at in {spec.at for spec in cases if spec.at}:  # auto_now_add: set afterwards
        ids = [case.pk for case, spec in zip(created, cases, strict=True) if spec.at == at]
        Prediction.objects.filter(image__case_id__in=ids).update(created_at=at)
    Review.objects.bulk_create(
        [
            Review(
                case=case,
                version=1,
                author=radiologist,
                agrees_with_ai=True,
                finding=spec.finding,
                report="Signed for a test.",
                signed_at=timezone.now(),
            )
            for case, spec in zip(created, cases, strict=True)
            if spec.finding
        ]
    )
    return [case.pk for case in created]


def _image(case: Case, spec: SiteCase, probability: float | None) -> Image:
    return Image(
        case=case,
        original="originals/test.bin",
        original_format="png",
        status=Image.Status.DONE if probability is not None else Image.Status.REFUSED,
        refusal_reason="" if probability is not None else "not_chest_radiograph",
        refusal_model_version="" if probability is not None else spec.version,
        modality=spec.modality,
        manufacturer=spec.manufacturer,
        claimed_at=spec.at or timezone.now(),
        result_at=spec.at or timezone.now(),
    )


def _prediction(image: Image, spec: SiteCase, probability: float) -> Prediction:
    return Prediction(
        image=image,
        probability=probability,
        label="PNEUMONIA" if probability >= spec.threshold else "NORMAL",
        threshold=spec.threshold,
        model_version=spec.version,
    )
