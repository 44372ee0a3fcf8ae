"""Reads of the registry: the versions and their activation history. What the active
version serves, and at which threshold, is registry.operating_point (its names are
re-exported here for the modules that read them from the registry's selectors)."""

from __future__ import annotations

from django.db.models import QuerySet

from registry.models import Activation, ModelVersion
from registry.operating_point import CARD_DEFAULT as CARD_DEFAULT
from registry.operating_point import active_model as active_model
from registry.operating_point import operating_points as operating_points


def active_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


def version_list() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.all()


def activation_history(*, version: ModelVersion | None = None) -> QuerySet[Activation]:
    activations = Activation.objects.select_related("version", "actor")
    return activations.filter(version=version) if version is not None else activations
