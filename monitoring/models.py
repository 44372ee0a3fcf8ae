"""Alerts raised by monitoring. Written only by monitoring.alerts."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Alert(models.Model):
    """A monitored figure past its floor (or ceiling) for a model version. One open alert per
    kind and version: a re-check updates its value, a figure back in bounds clears it. An
    acknowledgement says a person has seen it (and is audited); it stays open until cleared."""

    class Kind(models.TextChoices):
        SENSITIVITY = "sensitivity", "Sensitivity below its floor"
        SPECIFICITY = "specificity", "Specificity below its floor"
        REFUSAL_RATE = "refusal_rate", "Refusal rate above its ceiling"
        SCORE_DRIFT = "score_drift", "Score distribution drifted"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    model_version = models.CharField(max_length=100)
    value = models.FloatField()
    limit = models.FloatField()
    window = models.PositiveIntegerField()  # how many images the value was computed on
    message = models.CharField(max_length=300)
    raised_at = models.DateTimeField(auto_now_add=True)
    checked_at = models.DateTimeField()
    cleared_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledgement = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-raised_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "model_version"],
                condition=Q(cleared_at__isnull=True),
                name="monitoring_one_open_alert_per_kind_and_version",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.model_version})"

    @property
    def is_open(self) -> bool:
        return self.cleared_at is None
