from __future__ import annotations

from functools import cache
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.utils import timezone

from accounts import roles
from diagnosis.models import RESULT_STATUSES, Case, Image, Prediction, Review
from tests.support.images import jpeg_bytes, png_bytes

TEST_PASSWORD = "pw-for-tests"


@cache
def _test_password_hash() -> str:
    """The hash of TEST_PASSWORD, made once per process with the site's own hasher (PBKDF2,
    about 0.3 s here): every case's owner is a new user, so hashing per user cost the suite
    minutes. A login checks it like any password; only the salt is shared."""
    return make_password(TEST_PASSWORD)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.LazyFunction(_test_password_hash)

    @factory.post_generation
    def role(user: Any, create: bool, extracted: str | None, **kwargs: Any) -> None:
        """`role=roles.CLINICIAN`: the user joins that group. Runs on the created user."""
        if extracted:
            user.groups.add(Group.objects.get_or_create(name=extracted)[0])
        user.save()


class CaseFactory(factory.django.DjangoModelFactory[Case]):
    class Meta:
        model = Case

    owner = factory.SubFactory(UserFactory, role=roles.CLINICIAN)
    patient_id = factory.Sequence(lambda n: f"P{n:05d}")
    age = 4  # inside the intended population (children aged 1 to 5)
    urgency = Case.Urgency.ROUTINE


class ImageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Image

    case = factory.SubFactory(CaseFactory)
    original = factory.LazyFunction(lambda: ContentFile(png_bytes(), name="x.png"))
    original_format = "png"
    preview = factory.LazyFunction(lambda: ContentFile(jpeg_bytes(), name="p.jpg"))
    preview_width = 96
    preview_height = 80
    enqueued_at = factory.LazyFunction(timezone.now)
    status = Image.Status.QUEUED
    # As the worker writes it: a finished image has the time of its result.
    result_at = factory.LazyAttribute(
        lambda image: timezone.now() if image.status in RESULT_STATUSES else None
    )


class PredictionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prediction

    image = factory.SubFactory(ImageFactory, status=Image.Status.DONE)
    probability = 0.8
    label = "PNEUMONIA"
    threshold = 0.5
    model_version = "test-1"
    heatmap = factory.LazyFunction(lambda: ContentFile(png_bytes(), name="h.png"))
    timings = factory.LazyFunction(lambda: {"decode": 1.0, "heatmap": 2.0})


class ReviewFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Review

    case = factory.SubFactory(CaseFactory, status=Case.Status.REPORTED)
    version = 1
    author = factory.SubFactory(UserFactory, role=roles.RADIOLOGIST)
    agrees_with_ai = True
    finding = Review.Finding.NORMAL
    report = "No consolidation."
    signed_at = factory.LazyFunction(timezone.now)


def awaiting_review_case(*, probability: float = 0.8, **kwargs) -> Case:
    """A case whose analysis is done, as the worker would leave it."""
    from diagnosis import services

    case = CaseFactory.create(**kwargs)
    PredictionFactory(
        image__case=case,
        probability=probability,
        label="PNEUMONIA" if probability >= 0.5 else "NORMAL",
    )
    return services.case_refresh_status(case_id=case.pk)


def refused_case(
    *,
    reason: str = "not_chest_radiograph",
    message: str = "The image looks like a photograph, not a radiograph.",
    **kwargs,
) -> Case:
    """A case whose only image the AI refused, as the worker would leave it."""
    from diagnosis import services

    case = CaseFactory.create(**kwargs)
    ImageFactory(
        case=case,
        status=Image.Status.REFUSED,
        refusal_reason=reason,
        refusal_message=message,
        refusal_model_version="fake-1",
    )
    return services.case_refresh_status(case_id=case.pk)
