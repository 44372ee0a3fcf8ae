from __future__ import annotations

from django import forms
from django.conf import settings

from chestnet_site.text import require_words
from ml.config import ARCHS
from mlops.calibration import CalibrationFilters
from mlops.models import Label
from mlops.services import RUN_DEFAULTS, RUN_LIMITS


class DatasetForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class ImportForm(forms.Form):
    archive = forms.FileField(label="Zip with NORMAL/ and PNEUMONIA/ folders")


class SplitForm(forms.Form):
    validation_percent = forms.IntegerField(min_value=1, max_value=80, initial=15)
    test_percent = forms.IntegerField(min_value=0, max_value=80, initial=15)
    seed = forms.IntegerField(initial=1337)


def _bounded(key: str) -> forms.IntegerField:
    low, high = RUN_LIMITS[key]
    return forms.IntegerField(min_value=low, max_value=high, initial=RUN_DEFAULTS[key])


class TrainForm(forms.Form):
    epochs = _bounded("epochs")
    arch = forms.ChoiceField(choices=[(a, a) for a in ARCHS], initial=RUN_DEFAULTS["arch"])
    image_size = _bounded("image_size")
    width = _bounded("width")
    stages = _bounded("stages")
    seed = forms.IntegerField(initial=RUN_DEFAULTS["seed"])


class RelabelForm(forms.Form):
    label = forms.ChoiceField(choices=Label.choices)


class ExcludeForm(forms.Form):
    excluded = forms.BooleanField(required=False)
    reason = forms.CharField(max_length=200, required=False)


OPERATING_POINTS = [
    ("card", "As trained (the card's threshold)"),
    ("0.95", "Sensitivity ≥ 0.95"),
    ("0.97", "Sensitivity ≥ 0.97"),
    ("0.99", "Sensitivity ≥ 0.99"),
]


OVERRIDE_HELP = (
    "Why this version should serve clinical analyses although its evidence falls below the "
    "activation floors. Recorded with your name."
)


def _override_reason() -> forms.CharField:
    """Nothing sent is no override: the floors then decide. Anything typed, spaces
    included, must be a reason in words (`chestnet_site.text.require_words`)."""
    return forms.CharField(
        required=False,
        max_length=2000,
        strip=False,
        help_text=OVERRIDE_HELP,
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class _OverrideReasonForm(forms.Form):
    override_reason = _override_reason()

    def clean_override_reason(self) -> str:
        reason = self.cleaned_data["override_reason"]
        return require_words(reason, field="the override reason") if reason else ""


class ActivateForm(_OverrideReasonForm):
    operating_point = forms.ChoiceField(choices=OPERATING_POINTS, initial="card")
    field_order = ["operating_point", "override_reason"]


class RollbackForm(_OverrideReasonForm):
    pass


class CalibrationForm(forms.Form):
    """Which signed cases a site calibration uses, and how it is judged."""

    since = forms.DateField(
        required=False, label="Signed cases from", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label="to (inclusive)", widget=forms.DateInput(attrs={"type": "date"})
    )
    source = forms.CharField(
        required=False, max_length=64, help_text="upload, dimse, stow or a calling AE title"
    )
    modality = forms.CharField(required=False, max_length=16)
    manufacturer = forms.CharField(required=False, max_length=64)
    holdout_percent = forms.IntegerField(
        min_value=5, max_value=90, label="Held back to judge it (% of cases)"
    )
    target_sensitivity = forms.FloatField(min_value=0.5, max_value=0.999)
    site = forms.CharField(required=False, max_length=100, label="Site name (on the card)")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["holdout_percent"].initial = round(settings.CHESTNET_CALIBRATION_HOLDOUT * 100)
        self.fields["target_sensitivity"].initial = settings.CHESTNET_CALIBRATION_TARGET_SENSITIVITY
        for name in ("source", "modality", "manufacturer"):  # suggestions: the page's datalists
            self.fields[name].widget.attrs["list"] = f"calibration-{name}-choices"

    def clean(self) -> dict:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            raise forms.ValidationError("The first date is after the last.")
        return data

    def filters(self) -> CalibrationFilters:
        data = self.cleaned_data
        return CalibrationFilters(
            since=data.get("since"),
            until=data.get("until"),
            source=data.get("source", "").strip(),
            modality=data.get("modality", "").strip(),
            manufacturer=data.get("manufacturer", "").strip(),
        )

    def options(self) -> dict:
        data = self.cleaned_data
        return {
            "holdout": data["holdout_percent"] / 100,
            "target_sensitivity": data["target_sensitivity"],
            "site": data.get("site", ""),
        }
