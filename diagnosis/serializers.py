from __future__ import annotations

from typing import Any

from django.urls import reverse
from rest_framework import serializers

from diagnosis import selectors
from diagnosis.forms import validate_uploads
from diagnosis.models import Case, Image, Prediction, Review
from diagnosis.services import ValidatedImage


class PredictionSerializer(serializers.ModelSerializer):
    heatmap_url = serializers.SerializerMethodField()
    image_url = serializers.SerializerMethodField()

    class Meta:
        model = Prediction
        fields = [
            "probability",
            "label",
            "threshold",
            "model_version",
            "heatmap_url",
            "image_url",
            "timings",
        ]

    def get_heatmap_url(self, prediction: Prediction) -> str | None:
        if not prediction.heatmap:
            return None
        return reverse("image_file", args=[prediction.image_id, "heatmap"])

    def get_image_url(self, prediction: Prediction) -> str:
        return reverse("image_file", args=[prediction.image_id, "preview"])


class ImageSerializer(serializers.ModelSerializer):
    prediction = serializers.SerializerMethodField()
    preview_url = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = [
            "id",
            "status",
            "error",
            "preview_url",
            "preview_width",
            "preview_height",
            "prediction",
        ]

    def get_preview_url(self, image: Image) -> str:
        return reverse("image_file", args=[image.pk, "preview"])

    def get_prediction(self, image: Image) -> dict | None:
        prediction = (
            getattr(image, "prediction", None) if image.status == Image.Status.DONE else None
        )
        return PredictionSerializer(prediction).data if prediction else None


class ReviewSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author.username")

    class Meta:
        model = Review
        fields = [
            "version",
            "author",
            "agrees_with_ai",
            "finding",
            "report",
            "amendment_reason",
            "signed_at",
        ]


class CaseSerializer(serializers.ModelSerializer):
    images = ImageSerializer(many=True)
    review = serializers.SerializerMethodField()
    owner = serializers.CharField(source="owner.username")
    claimed_by = serializers.CharField(source="claimed_by.username", default=None)

    class Meta:
        model = Case
        fields = [
            "id",
            "status",
            "patient_id",
            "age",
            "sex",
            "indication",
            "urgency",
            "owner",
            "claimed_by",
            "max_probability",
            "ai_flagged",
            "created_at",
            "images",
            "review",
        ]

    def get_review(self, case: Case) -> dict | None:
        review = selectors.review_current(case=case)
        return ReviewSerializer(review).data if review else None


class WorklistCaseSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username")
    claimed_by = serializers.CharField(source="claimed_by.username", default=None)

    class Meta:
        model = Case
        fields = [
            "id",
            "status",
            "patient_id",
            "urgency",
            "max_probability",
            "ai_flagged",
            "owner",
            "claimed_by",
            "ready_at",
        ]


class CaseCreateSerializer(serializers.Serializer):
    images = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True), allow_empty=False
    )
    patient_id = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    age = serializers.IntegerField(
        min_value=0, max_value=130, required=False, allow_null=True, default=None
    )
    sex = serializers.ChoiceField(
        choices=Case.Sex.choices, required=False, default=Case.Sex.UNKNOWN
    )
    indication = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, default=""
    )
    urgency = serializers.ChoiceField(
        choices=Case.Urgency.choices, required=False, default=Case.Urgency.ROUTINE
    )

    def validate_images(self, files: list[Any]) -> list[ValidatedImage]:
        from django.conf import settings
        from django.core.exceptions import ValidationError

        if len(files) > settings.CHESTNET_MAX_FILES_PER_CASE:
            raise serializers.ValidationError(
                f"At most {settings.CHESTNET_MAX_FILES_PER_CASE} images per case."
            )
        try:
            return validate_uploads(files)
        except ValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc


class ReviewCreateSerializer(serializers.Serializer):
    agrees_with_ai = serializers.BooleanField()
    finding = serializers.ChoiceField(choices=Review.Finding.choices)
    report = serializers.CharField(max_length=10000)
    amendment_reason = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, default=""
    )
