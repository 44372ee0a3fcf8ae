from __future__ import annotations

from django import forms

from mlops.models import Label
from mlops.training import ARCHS, DEFAULTS, MIN_WIDTH


class DatasetForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class ImportForm(forms.Form):
    archive = forms.FileField(label="Zip with NORMAL/ and PNEUMONIA/ folders")


class SplitForm(forms.Form):
    validation_percent = forms.IntegerField(min_value=1, max_value=80, initial=15)
    test_percent = forms.IntegerField(min_value=0, max_value=80, initial=15)
    seed = forms.IntegerField(initial=1337)


class TrainForm(forms.Form):
    epochs = forms.IntegerField(min_value=1, max_value=500, initial=DEFAULTS["epochs"])
    arch = forms.ChoiceField(choices=[(a, a) for a in ARCHS], initial=DEFAULTS["arch"])
    image_size = forms.IntegerField(min_value=32, max_value=512, initial=DEFAULTS["image_size"])
    width = forms.IntegerField(min_value=MIN_WIDTH, max_value=256, initial=DEFAULTS["width"])
    stages = forms.IntegerField(min_value=1, max_value=6, initial=DEFAULTS["stages"])
    seed = forms.IntegerField(initial=DEFAULTS["seed"])


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


class ActivateForm(forms.Form):
    operating_point = forms.ChoiceField(choices=OPERATING_POINTS, initial="card")
