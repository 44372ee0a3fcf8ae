from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model

from accounts import roles
from chestnet_site.text import require_words
from diagnosis import services
from diagnosis.models import Case, Review


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImageField(forms.FileField):
    """Several files in one field; each is decoded and refused with a reason if unusable."""

    widget = MultipleFileInput(
        attrs={"accept": ".png,.jpg,.jpeg,.dcm,image/png,image/jpeg,application/dicom"}
    )

    def clean(self, data: Any, initial: Any = None) -> list[services.ValidatedImage]:
        files = data if isinstance(data, list | tuple) else ([data] if data else [])
        return services.uploads_validate(files)  # ImageRejected is a ValidationError


class CaseForm(forms.Form):
    patient_id = forms.CharField(label="Patient identifier", max_length=64, required=False)
    age = forms.IntegerField(min_value=0, max_value=130, required=False)
    sex = forms.ChoiceField(choices=Case.Sex.choices, initial=Case.Sex.UNKNOWN, required=False)
    indication = forms.CharField(
        label="Clinical indication",
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        max_length=2000,
    )
    urgency = forms.ChoiceField(
        choices=Case.Urgency.choices, initial=Case.Urgency.ROUTINE, widget=forms.RadioSelect
    )
    images = MultipleImageField(label="Images")


AGREEMENT = [("yes", "Agree"), ("no", "Disagree")]


class ReviewForm(forms.Form):
    """The report, with one agree/disagree per image the AI analysed (`agrees_<image id>`).
    For an amendment it starts from the current version (finding, text, agreement)."""

    # One answer for every analysed image (not shown: scripts and older clients post it).
    agrees_with_ai = forms.TypedChoiceField(
        choices=AGREEMENT, coerce=lambda value: value == "yes", required=False, empty_value=None
    )
    finding = forms.ChoiceField(
        label="Final finding", choices=Review.Finding.choices, widget=forms.RadioSelect
    )
    report = forms.CharField(widget=forms.Textarea(attrs={"rows": 8}), max_length=10000)
    amendment_reason = forms.CharField(
        required=False, max_length=1000, strip=False, widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(
        self, *args: Any, case: Case, current: Review | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        # A signed report is amended: the reason is required, in words.
        self.amends = case.status == Case.Status.REPORTED
        # Nothing to agree with when the AI analysed no image of the case.
        self.analysed = [image for image in case.images.all() if image.status == "done"]
        self.asks_ai_opinion = bool(self.analysed)
        for number, image in enumerate(case.images.all(), start=1):
            if image.status == "done":
                self.fields[f"agrees_{image.pk}"] = forms.TypedChoiceField(
                    label=f"Do you agree with the AI on image {number}?",
                    choices=AGREEMENT,
                    coerce=lambda value: value == "yes",
                    empty_value=None,
                    required=False,
                    widget=forms.RadioSelect(attrs={"form": "review-form"}),
                )
        if current is not None and not self.is_bound:
            self.initial.update(_current_answers(current))

    def agreement_field(self, image) -> forms.BoundField | None:
        """The image's agree/disagree question, placed beside the image on the page."""
        name = f"agrees_{image.pk}"
        return self[name] if name in self.fields else None

    def clean_amendment_reason(self) -> str:
        reason = self.cleaned_data["amendment_reason"]
        if not self.amends:
            return reason.strip()
        return require_words(reason, field="the reason for the amendment")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for image in self.analysed:
            name = f"agrees_{image.pk}"
            if data.get(name) is None:
                if data.get("agrees_with_ai") is None:
                    self.add_error(name, "Say whether you agree with the AI on this image.")
                else:
                    data[name] = data["agrees_with_ai"]
        return data

    def image_agreement(self) -> dict[int, bool]:
        return {image.pk: self.cleaned_data[f"agrees_{image.pk}"] for image in self.analysed}

    def review_fields(self) -> services.ReviewFields:
        """The report for `services.review_submit`: one answer per analysed image (none
        when the AI analysed no image), never one for all."""
        answers = {"agrees_with_ai": None, "image_agreement": self.image_agreement()}
        return services.review_fields({**self.cleaned_data, **answers})


def _current_answers(review: Review) -> dict[str, Any]:
    answers: dict[str, Any] = {"finding": review.finding, "report": review.report}
    for entry in review.ai_results:
        agrees = entry.get("agrees", review.agrees_with_ai)
        if entry.get("status") == "done" and agrees is not None:
            answers[f"agrees_{entry['image']}"] = "yes" if agrees else "no"
    return answers


class AuditFilterForm(forms.Form):
    user = forms.CharField(required=False, max_length=150, label="User")
    case = forms.IntegerField(required=False, min_value=1, label="Case")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput({"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput({"type": "date"}))

    def filters(self) -> dict[str, Any]:
        """The selector's arguments; an invalid form filters nothing it could not read."""
        data = self.cleaned_data if self.is_valid() else {}
        return {
            "username": data.get("user") or "",
            "case_id": data.get("case"),
            "since": data.get("since"),
            "until": data.get("until"),
        }


class ReassignForm(forms.Form):
    radiologist = forms.ModelChoiceField(
        queryset=get_user_model()
        .objects.filter(groups__name=roles.RADIOLOGIST, is_active=True)
        .order_by("username"),
        label="Radiologist",
    )
    reason = forms.CharField(max_length=500, label="Reason", strip=False)

    def clean_reason(self) -> str:
        return require_words(self.cleaned_data["reason"], field="the reason for the reassignment")
