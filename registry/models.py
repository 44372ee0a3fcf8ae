"""Model versions and their activation history. Writes happen in registry.services.

The tables keep the names they had when the registry was part of mlops (`mlops_*`): the
move was a change of code, not of data."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from chestnet_site.history import person_field
from ml.artifact import ModelCard


class ModelVersion(models.Model):
    class Origin(models.TextChoices):
        SHIPPED = "shipped", "Shipped default"
        TRAINED = "trained", "Trained here"
        # A base version's probabilities and threshold refitted on this site's signed
        # cases (mlops site calibration); the base version is on its card.
        CALIBRATED = "calibrated", "Calibrated to this site"

    version = models.CharField(max_length=100, unique=True)
    origin = models.CharField(max_length=10, choices=Origin.choices)
    artifact = models.CharField(max_length=255)  # storage name of the .keras file
    card_file = models.CharField(max_length=255)  # storage name of its card, beside it
    card = models.JSONField(default=dict)
    sha256 = models.CharField(max_length=64)
    is_active = models.BooleanField(default=False)
    active_threshold = models.FloatField(null=True, blank=True)
    operating_point = models.TextField(blank=True)  # whole: the card's rule is long
    activated_by = person_field()
    activated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "mlops_modelversion"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="mlops_one_active_version"
            )
        ]

    def __str__(self) -> str:
        return self.version

    @property
    def model_card(self) -> ModelCard:
        """The typed card of `card`; raises ml.artifact.ArtifactError on an incomplete one."""
        return ModelCard.from_dict(self.card, name=self.version)

    @property
    def validation(self) -> dict:
        # Read from the stored JSON, so a version page shows even an incomplete card.
        return self.card.get("validation") or {}


class Activation(models.Model):
    """Every activation, kept for review and rollback: the registry's audit trail."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="activations")
    threshold = models.FloatField()
    operating_point = models.TextField()
    actor = person_field()
    # Why the version was activated although its evidence fell below the activation floors
    # (mlops.rollout); empty for an activation that met them, or the first install's default.
    override_reason = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "mlops_activation"
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.version} at {self.threshold:.4f}"
