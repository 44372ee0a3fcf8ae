from __future__ import annotations

from typing import Any

from django import forms

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
