"""What ChestNet sends back to the PACS: one row per DICOM object (its UIDs chosen once, so
a re-send is the same object), and every attempt to deliver it with its outcome."""

from __future__ import annotations

from django.db import models


class OutboundObject(models.Model):
    class Kind(models.TextChoices):
        FINDINGS = "findings", "AI findings (SR)"
        OVERLAY = "overlay", "Heatmap overlay (secondary capture)"
        REPORT = "report", "Signed report (SR)"

    class Status(models.TextChoices):
        PENDING = "pending"  # due at next_attempt_at
        SENDING = "sending"  # claimed by a worker
        SENT = "sent"
        # The result it carried was replaced (a re-analysis) before it went out.
        SUPERSEDED = "superseded"
        # Not built or not delivered after CHESTNET_PACS_MAX_ATTEMPTS tries: shown on the
        # case, the worklist, the admin's outbox (with a retry) and /healthz.
        FAILED = "failed"

    # What it carries, once: "image-12-run-2-findings", "review-7".
    key = models.CharField(max_length=80, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    case = models.ForeignKey(
        "diagnosis.Case", on_delete=models.SET_NULL, null=True, related_name="+"
    )
    image = models.ForeignKey(
        "diagnosis.Image", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    review = models.ForeignKey(
        "diagnosis.Review", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    run = models.PositiveSmallIntegerField(default=0)  # the image's analysis attempt
    destination = models.CharField(max_length=120)  # AET@host:port when it was made
    study_instance_uid = models.CharField(max_length=64)
    series_instance_uid = models.CharField(max_length=64)
    sop_instance_uid = models.CharField(max_length=64, unique=True)
    series_number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for case {self.case_id}: {self.status}"


class SendAttempt(models.Model):
    class Outcome(models.TextChoices):
        SENT = "sent"
        FAILED = "failed"

    outbound = models.ForeignKey(OutboundObject, on_delete=models.CASCADE, related_name="tries")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(auto_now_add=True)
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    detail = models.CharField(max_length=300, blank=True)  # the peer's status, or the error

    class Meta:
        ordering = ["-finished_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.outcome} at {self.finished_at:%Y-%m-%d %H:%M:%S}"
