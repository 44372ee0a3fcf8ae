from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model

from diagnosis import roles, services
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


class ReviewForm(forms.Form):
    agrees_with_ai = forms.TypedChoiceField(
        label="Do you agree with the AI?",
        choices=[("yes", "Agree"), ("no", "Disagree")],
        coerce=lambda value: value == "yes",
        widget=forms.RadioSelect,
    )
    finding = forms.ChoiceField(
        label="Final finding", choices=Review.Finding.choices, widget=forms.RadioSelect
    )
    report = forms.CharField(widget=forms.Textarea(attrs={"rows": 8}), max_length=10000)
    amendment_reason = forms.CharField(
        required=False, max_length=1000, widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(self, *args: Any, case: Case, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Nothing to agree with when the AI analysed no image of the case.
        self.asks_ai_opinion = case.has_ai_result
        if not self.asks_ai_opinion:
            del self.fields["agrees_with_ai"]


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
    reason = forms.CharField(max_length=500, label="Reason")
