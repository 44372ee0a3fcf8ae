from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from chestnet_site.text import require_words
from diagnosis import selectors, services
from diagnosis.models import Case, Image, Prediction, Review
from ml.outcome import REFUSAL_REASONS


def preview_url(image_id: int | None) -> str | None:
    """The API's address of an image's preview; None for no image."""
    return reverse("api_image_file", args=[image_id, "preview"]) if image_id else None


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
            "name",
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
        return preview_url(image.pk if image.preview else None)

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
    finding_display = serializers.CharField(
        source="get_finding_display", read_only=True, help_text="The finding in words."
    )

    class Meta:
        model = Review
        fields = [
            "version",
            "author",
            "agrees_with_ai",
            "finding",
            "finding_display",
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
            "same_study_as",
            "same_study_reason",
            "pacs_failure",
            "images",
            "review",
        ]

    def get_review(self, case: Case) -> dict | None:
        review = selectors.review_current(case=case)
        return ReviewSerializer(review).data if review else None


class WorklistCaseSerializer(serializers.ModelSerializer):
    """A worklist row: the columns the worklist page shows. Needs the annotations of
    `selectors.worklist_for`."""

    owner = serializers.CharField(source="owner.username")
    claimed_by = serializers.CharField(source="claimed_by.username", default=None)
    study_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="From the header's StudyDate and StudyTime; null for uploads.",
    )
    study_time = serializers.DateTimeField(
        read_only=True, help_text="The study's time, or, for an upload, when it was uploaded."
    )
    waiting_since = serializers.DateTimeField(
        read_only=True, help_text="Since when the case awaits review."
    )
    image_count = serializers.IntegerField(read_only=True)
    refused_images = serializers.IntegerField(
        read_only=True, help_text="How many of its images the AI did not analyse."
    )
    refusal_reason = serializers.CharField(
        read_only=True, allow_null=True, help_text="Why (a reason code), when it refused one."
    )
    refusal_explanation = serializers.CharField(
        read_only=True, help_text="The reason in plain words; empty when none was refused."
    )
    preview_url = serializers.SerializerMethodField()

    class Meta:
        model = Case
        fields = [
            "id",
            "status",
            "patient_id",
            "age",
            "sex",
            "urgency",
            "accession_number",
            "study_at",
            "study_time",
            "image_count",
            "max_probability",
            "ai_flagged",
            "refused_images",
            "refusal_reason",
            "refusal_explanation",
            "waiting_since",
            "ready_at",
            "owner",
            "claimed_by",
            "source",
            "source_ae",
            "study_instance_uid",
            "pacs_failure",
            "preview_url",
        ]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_preview_url(self, case: Case) -> str | None:
        """The case's first image with a preview, to look at before claiming it."""
        return preview_url(getattr(case, "preview_image", None))


class WorklistQuerySerializer(serializers.Serializer):
    """The worklist's filters, order and page (query parameters)."""

    urgency = serializers.ChoiceField(
        choices=Case.Urgency.choices, required=False, allow_blank=True, default=None
    )
    flagged = serializers.ChoiceField(
        choices=[("yes", "flagged by the AI"), ("no", "not flagged")],
        required=False,
        allow_blank=True,
        default=None,
    )
    claim = serializers.ChoiceField(
        choices=[("mine", "claimed by me"), ("unclaimed", "unclaimed")],
        required=False,
        allow_blank=True,
        default=None,
    )
    source = serializers.ChoiceField(
        choices=Case.Source.choices, required=False, allow_blank=True, default=None
    )
    sort = serializers.ChoiceField(
        choices=[(key, order.label) for key, order in selectors.WORKLIST_SORTS.items()],
        required=False,
        allow_blank=True,
        default=selectors.WORKLIST_DEFAULT_SORT,
    )
    after = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        help_text="The cursor of the page before (from the `Link` header); none: the first.",
    )
    limit = serializers.IntegerField(
        source="size", min_value=1, max_value=500, required=False, default=100
    )

    def validate_flagged(self, value: str | None) -> bool | None:
        return {"yes": True, "no": False}.get(value or "")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        blank = ("urgency", "claim", "source")
        attrs = {**attrs, **{name: attrs.get(name) or None for name in blank}}
        return {**attrs, "sort": attrs.get("sort") or selectors.WORKLIST_DEFAULT_SORT}


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
        help_text="One answer for every analysed image; or give `image_agreement`. Required "
        "(one or the other) when the AI analysed at least one image of the case. When it "
        "analysed none (every image refused) there is nothing to agree with: omit it, and "
        "it is stored as null whatever is sent.",
    )
    image_agreement = serializers.DictField(
        child=serializers.BooleanField(),
        required=False,
        default=dict,
        help_text='Agree (true) or disagree (false) per analysed image: {"<image id>": '
        "true, ...}, one entry for each image with an AI result. The case agrees only when "
        "every image does.",
    )
    finding = serializers.ChoiceField(choices=Review.Finding.choices)
    report = serializers.CharField(max_length=10000)
    amendment_reason = serializers.CharField(
        max_length=1000,
        required=False,
        allow_blank=True,
        default="",
        help_text="Required when the case is reported (an amendment): a reason in words, at "
        "least 3 letters once invisible characters are removed.",
    )

    def validate_amendment_reason(self, value: str) -> str:
        if self.context["case"].status != Case.Status.REPORTED:
            return value
        return require_words(value, field="the reason for the amendment")

    def validate_image_agreement(self, value: dict[str, bool]) -> dict[int, bool]:
        try:
            return {int(key): answer for key, answer in value.items()}
        except ValueError as exc:
            raise serializers.ValidationError("Keys are image ids.") from exc

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not self.context["case"].has_ai_result:
            return {**attrs, "agrees_with_ai": None, "image_agreement": {}}
        if attrs.get("agrees_with_ai") is None and not attrs.get("image_agreement"):
            raise serializers.ValidationError({"agrees_with_ai": "This field is required."})
        return attrs
