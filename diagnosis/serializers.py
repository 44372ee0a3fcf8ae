from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from diagnosis import selectors, services
from diagnosis.models import Case, Image, Prediction, Review
from ml.outcome import REFUSAL_REASONS


class PredictionSerializer(serializers.ModelSerializer):
    heatmap_url = serializers.SerializerMethodField()
    image_url = serializers.SerializerMethodField()
    uncertainty = serializers.FloatField(
        allow_null=True,
        read_only=True,
        help_text="Spread (standard deviation) of the ensemble members' probabilities; "
        "null for a single-network model and for results stored before it was recorded.",
    )
    warnings = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Things the reader should know about this result, in plain words.",
    )

    class Meta:
        model = Prediction
        fields = [
            "probability",
            "label",
            "threshold",
            "model_version",
            "uncertainty",
            "warnings",
            "heatmap_url",
            "image_url",
            "timings",
        ]

    def get_heatmap_url(self, prediction: Prediction) -> str | None:
        if not prediction.heatmap:
            return None
        return reverse("api_image_file", args=[prediction.image_id, "heatmap"])

    def get_image_url(self, prediction: Prediction) -> str:
        return reverse("api_image_file", args=[prediction.image_id, "preview"])


class RefusalSerializer(serializers.Serializer):
    """Why the AI did not analyse an image (status "refused"): a result, not a failure."""

    reason = serializers.ChoiceField(
        source="refusal_reason", choices=list(REFUSAL_REASONS), read_only=True
    )
    message = serializers.CharField(
        source="refusal_message", read_only=True, help_text="The specific reason."
    )
    explanation = serializers.CharField(
        source="refusal_explanation", read_only=True, help_text="What the reason code means."
    )
    model_version = serializers.CharField(
        source="refusal_model_version", read_only=True, help_text="The model that declined it."
    )


class ImageSerializer(serializers.ModelSerializer):
    prediction = serializers.SerializerMethodField()
    refusal = serializers.SerializerMethodField()
    preview_url = serializers.SerializerMethodField()
    original_url = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = [
            "id",
            "status",
            "error",
            "preview_url",
            "original_url",
            "preview_width",
            "preview_height",
            "prediction",
            "refusal",
        ]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_preview_url(self, image: Image) -> str | None:
        """Null until the worker has read the file (or when it could not)."""
        return reverse("api_image_file", args=[image.pk, "preview"]) if image.preview else None

    def get_original_url(self, image: Image) -> str:
        return reverse("api_image_file", args=[image.pk, "original"])

    @extend_schema_field(PredictionSerializer(allow_null=True))
    def get_prediction(self, image: Image) -> dict | None:
        prediction = (
            getattr(image, "prediction", None) if image.status == Image.Status.DONE else None
        )
        return PredictionSerializer(prediction).data if prediction else None

    @extend_schema_field(RefusalSerializer(allow_null=True))
    def get_refusal(self, image: Image) -> dict | None:
        if image.status != Image.Status.REFUSED:
            return None
        return RefusalSerializer(image).data


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
            "ai_results",
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
            "source",
            "source_ae",
            "study_instance_uid",
            "accession_number",
            "study_description",
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
            "source",
            "source_ae",
            "study_instance_uid",
            "accession_number",
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

    def validate_images(self, files: list[Any]) -> list[services.ValidatedImage]:
        try:
            return services.uploads_validate(files)
        except services.ImageRejected as exc:
            raise serializers.ValidationError(exc.messages) from exc


class ReviewCreateSerializer(serializers.Serializer):
    """Needs the case in its context ("case"): whether it asks for `agrees_with_ai`."""

    agrees_with_ai = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Required when the AI analysed at least one image of the case. When it "
        "analysed none (every image refused) there is nothing to agree with: omit it, and "
        "it is stored as null whatever is sent.",
    )
    finding = serializers.ChoiceField(choices=Review.Finding.choices)
    report = serializers.CharField(max_length=10000)
    amendment_reason = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, default=""
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not self.context["case"].has_ai_result:
            return {**attrs, "agrees_with_ai": None}
        if attrs.get("agrees_with_ai") is None:
            raise serializers.ValidationError({"agrees_with_ai": "This field is required."})
        return attrs
