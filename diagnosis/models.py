"""Cases, their images, the AI prediction per image, signed review versions and the audit
trail, and the predictions a re-analysis replaced. Status transitions happen only in
diagnosis.services."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce

from chestnet_site.history import PROTECT_HISTORY, UNLINK, person_field
from chestnet_site.storage import RandomName
from ml.outcome import REFUSAL_REASONS


class ImmutableRecord(Exception):
    """An attempt to change or delete a signed report or an audit event."""


class AppendOnlyQuerySet(models.QuerySet):
    """Rows are added, never updated or deleted in bulk: the admin, a shell or a bug in a
    service all meet the same refusal. The models using it make it their base manager too,
    so Django's deletion cascades (which use the base manager) meet it as well; the only
    change let through is `chestnet_site.history.UNLINK`, when an unreported case is
    deleted: its events lose the link and keep the case's id."""

    def update(self, **kwargs: Any) -> int:
        raise ImmutableRecord(f"{self.model.__name__} rows are never changed.")

    def _update(self, values: Any) -> int:
        raise ImmutableRecord(f"{self.model.__name__} rows are never changed.")

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        raise ImmutableRecord(f"{self.model.__name__} rows are never changed.")

    def update_or_create(self, *args: Any, **kwargs: Any) -> Any:
        raise ImmutableRecord(f"{self.model.__name__} rows are never changed.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise ImmutableRecord(f"{self.model.__name__} rows are never deleted.")

    def _raw_delete(self, using: str | None) -> int:
        raise ImmutableRecord(f"{self.model.__name__} rows are never deleted.")


class AppendOnlyModel(models.Model):
    """A record that is written once: saving it again or deleting it raises, and so do the
    bulk paths and deletion cascades (the append-only queryset is its base manager too)."""

    changed_message = "This record is never changed."
    deleted_message = "This record is never deleted."

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True
        base_manager_name = "objects"  # deletion cascades meet the append-only queryset

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ImmutableRecord(self.changed_message)
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ImmutableRecord(self.deleted_message)


original_path = RandomName("originals", ".bin")
# Previews are JPEG since issue 12 (those stored before stay PNG: served by their suffix).
preview_path = RandomName("previews", ".jpg")
heatmap_path = RandomName("heatmaps", ".png")


class Case(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        PROCESSING = "processing"
        AWAITING_REVIEW = "awaiting_review", "Awaiting review"
        REPORTED = "reported"
        FAILED = "failed"

    class Urgency(models.TextChoices):
        ROUTINE = "routine"
        URGENT = "urgent"
        STAT = "stat", "STAT"  # immediately: read before every urgent case

    class Source(models.TextChoices):
        UPLOAD = "upload", "Upload"
        DIMSE = "dimse", "DICOM network (C-STORE)"
        STOW = "stow", "DICOMweb (STOW-RS)"

    class Sex(models.TextChoices):
        FEMALE = "F", "Female"
        MALE = "M", "Male"
        OTHER = "O", "Other"
        UNKNOWN = "U", "Unknown"

    # PROTECT_HISTORY: a user with history is deactivated, never deleted (issue 21).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=PROTECT_HISTORY, related_name="cases"
    )
    patient_id = models.CharField("patient identifier", max_length=64, blank=True)
    age = models.PositiveSmallIntegerField(null=True, blank=True)
    sex = models.CharField(max_length=1, choices=Sex.choices, default=Sex.UNKNOWN)
    indication = models.TextField("clinical indication", blank=True)
    urgency = models.CharField(max_length=10, choices=Urgency.choices, default=Urgency.ROUTINE)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    # Highest AI probability over the case's images: the worklist sorts on it without joins.
    max_probability = models.FloatField(null=True, blank=True)
    ai_flagged = models.BooleanField(default=False)
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="claimed_cases",
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Who may amend the signed report: its signer, or the radiologist an admin reassigned
    # it to (with a reason, audited).
    report_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=PROTECT_HISTORY,
        null=True,
        blank=True,
        related_name="owned_reports",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    # Where the case came from. A study received over the network is one case: its later
    # instances join it when they carry its Study Instance UID (empty for browser uploads),
    # the same patient (Patient ID and Issuer of Patient ID) and come from the same owner,
    # and no report is signed yet. Any other instance of the study starts a new case that
    # names the earlier one (`same_study_as`), with the reason (`same_study_reason`).
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.UPLOAD)
    source_ae = models.CharField("calling AE title", max_length=16, blank=True)
    study_instance_uid = models.CharField(max_length=64, blank=True)
    issuer_of_patient_id = models.CharField(max_length=64, blank=True)
    same_study_as = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="same_study_cases"
    )
    same_study_reason = models.CharField(max_length=120, blank=True)
    # What of this case's findings could not be sent to the PACS after every try ("AI
    # findings (SR)"); empty when all went out. Set by the DICOM network's outbox.
    pacs_failure = models.CharField(max_length=200, blank=True)
    accession_number = models.CharField(max_length=16, blank=True)
    study_description = models.CharField(max_length=64, blank=True)
    # When the study was acquired, from the header's StudyDate and StudyTime (network cases;
    # None for uploads and for headers without a date).
    study_at = models.DateTimeField(null=True, blank=True)

    # The worklist's sort keys, computed by the database from the fields above and never
    # written by the application, so that every ordering is one ascending index and a page
    # is found by a keyset seek (diagnosis.selectors.worklist_page), at any depth.
    priority_rank = models.GeneratedField(  # STAT 0, urgent 1, routine 2
        expression=models.Case(
            models.When(urgency="stat", then=models.Value(0)),
            models.When(urgency="urgent", then=models.Value(1)),
            default=models.Value(2),
        ),
        output_field=models.SmallIntegerField(),
        db_persist=True,
    )
    ai_rank = models.GeneratedField(  # highest probability first; no AI result (1.0) last
        expression=models.Value(0.0) - Coalesce(models.F("max_probability"), models.Value(-1.0)),
        output_field=models.FloatField(),
        db_persist=True,
    )
    waiting_since = models.GeneratedField(  # ready for review (created, on older rows)
        expression=Coalesce(models.F("ready_at"), models.F("created_at")),
        output_field=models.DateTimeField(),
        db_persist=True,
    )
    study_time = models.GeneratedField(  # the study's time, or the upload's
        expression=Coalesce(models.F("study_at"), models.F("created_at")),
        output_field=models.DateTimeField(),
        db_persist=True,
    )

    class Meta:
        indexes = [
            models.Index(fields=["owner", "created_at"]),
            models.Index(
                fields=["status", "priority_rank", "ai_rank", "waiting_since", "id"],
                name="case_worklist_priority",
            ),
            models.Index(fields=["status", "waiting_since", "id"], name="case_worklist_waiting"),
            models.Index(fields=["status", "study_time", "id"], name="case_worklist_study"),
            # The review page's priors: the same patient from the same issuer, by time.
            models.Index(
                fields=["patient_id", "issuer_of_patient_id", "study_time", "id"],
                name="case_patient_priors",
            ),
        ]
        constraints = [
            # One open case per study, owner and patient: instances received at once by
            # two associations cannot make two.
            models.UniqueConstraint(
                fields=["study_instance_uid", "owner", "patient_id", "issuer_of_patient_id"],
                condition=~models.Q(study_instance_uid="") & ~models.Q(status="reported"),
                name="case_one_open_per_study_patient_owner",
            )
        ]

    def __str__(self) -> str:
        return f"Case {self.pk}"

    @property
    def is_reported(self) -> bool:
        return self.status == self.Status.REPORTED

    @property
    def is_urgent(self) -> bool:
        """Urgent or STAT."""
        return self.urgency in (self.Urgency.URGENT, self.Urgency.STAT)

    @property
    def has_ai_result(self) -> bool:
        """Whether the AI analysed at least one image. Without a result (every image
        refused) a reviewer has nothing to agree or disagree with."""
        return Prediction.objects.filter(image__case=self, image__status=Image.Status.DONE).exists()


# The statuses of an image that has a result (Image.Status.DONE and REFUSED), for the
# constraint on its result time (the enum is not yet defined inside the class's Meta).
RESULT_STATUSES = ["done", "refused"]


class Image(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        PROCESSING = "processing"
        DONE = "done"
        FAILED = "failed"
        # Read, and not analysed: the model was not made for this input. A result, not a
        # failure: the case still goes to a radiologist, and there is nothing to retry.
        REFUSED = "refused", "Not analysed"

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="images")
    original = models.FileField(upload_to=original_path)
    original_format = models.CharField(max_length=10)
    # Made by the worker from the decoded pixels (browsers cannot show DICOM); empty, and
    # its size unknown, until then.
    preview = models.FileField(upload_to=preview_path, blank=True)
    preview_width = models.PositiveIntegerField(null=True, blank=True)
    preview_height = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    refusal_reason = models.CharField(
        max_length=32, choices=[(code, code) for code in REFUSAL_REASONS], blank=True
    )
    refusal_message = models.TextField(blank=True)  # the specific reason, plain words
    # The artifact that declined the image: a refusal is a result, versioned like a prediction.
    refusal_model_version = models.CharField(max_length=100, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # When the latest result (analysed or refused) was stored: set exactly while the status
    # is done or refused (a constraint holds it). Indexed: monitoring reads a version's
    # results by it, latest first, as an index walk.
    result_at = models.DateTimeField(null=True, blank=True)
    # An instance received over the network, once: a re-sent instance is not stored again.
    sop_instance_uid = models.CharField(max_length=64, blank=True)
    # What the reader calls it: the uploaded file's name, or the DICOM view ("PA chest").
    name = models.CharField(max_length=120, blank=True)
    # Acquisition facts from the header, written when the worker reads the file: the input
    # mix that monitoring watches for drift ("" or None until read, or where not given).
    modality = models.CharField(max_length=16, blank=True)
    manufacturer = models.CharField(max_length=64, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    bits_stored = models.PositiveSmallIntegerField(null=True, blank=True)
    view_position = models.CharField(max_length=16, blank=True)  # PA, AP, LL...: "" unknown

    class Meta:
        ordering = ["pk"]
        indexes = [
            models.Index(fields=["status", "enqueued_at"]),
            models.Index(fields=["result_at", "id"], name="image_result_at"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["sop_instance_uid"],
                condition=~models.Q(sop_instance_uid=""),
                name="image_one_per_instance",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=RESULT_STATUSES, result_at__isnull=False)
                | (~models.Q(status__in=RESULT_STATUSES) & models.Q(result_at__isnull=True)),
                name="image_result_at_with_a_result",
            ),
        ]

    def __str__(self) -> str:
        return f"Image {self.pk} of case {self.case_id}"

    @property
    def refusal_explanation(self) -> str:
        """The reason in plain words for clinicians (never the bare code)."""
        return REFUSAL_REASONS.get(self.refusal_reason, "")


class ModelResult(models.Model):
    """What a model version said of an image: probability, label and the threshold that
    made it, with its heatmap and timings. A prediction, and a prior one kept unchanged."""

    probability = models.FloatField()
    label = models.CharField(max_length=12)
    threshold = models.FloatField()
    model_version = models.CharField(max_length=100)
    heatmap = models.FileField(upload_to=heatmap_path, blank=True)
    timings = models.JSONField(default=dict)  # milliseconds: decode, forward/heatmap, total

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.label} {self.probability:.2f} ({self.model_version})"


class Prediction(ModelResult):
    image = models.OneToOneField(Image, on_delete=models.CASCADE, related_name="prediction")
    # Spread (standard deviation) of the ensemble members' probabilities; None for a
    # single-network model and on rows stored before the model reported it.
    uncertainty = models.FloatField(null=True, blank=True)
    warnings = models.JSONField(default=list, blank=True)  # plain sentences for the reader
    created_at = models.DateTimeField(auto_now_add=True)

    @property
    def is_flagged(self) -> bool:
        return self.label == "PNEUMONIA"

    def verdict(self) -> dict[str, Any]:
        """What the AI said of the image, as a signed report keeps it and the PACS gets it."""
        return {
            "probability": self.probability,
            "label": self.label,
            "threshold": self.threshold,
            "uncertainty": self.uncertainty,
            "model_version": self.model_version,
        }


class PriorPrediction(ModelResult):
    """A prediction replaced by a re-run with another model version, kept unchanged."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+")
    predicted_at = models.DateTimeField()
    superseded_by = person_field()
    superseded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "mlops_priorprediction"  # created when re-runs were part of mlops
        ordering = ["-superseded_at"]


class Review(AppendOnlyModel):
    """A signed report. Never edited: an amendment is a new version that keeps the old."""

    changed_message = "A signed report is never changed: amend it."
    deleted_message = "A signed report is never deleted."

    class Finding(models.TextChoices):
        NORMAL = "normal"
        PNEUMONIA = "pneumonia"
        OTHER = "other"
        INDETERMINATE = "indeterminate"

    # PROTECT: a case with a signed report cannot be deleted, by any path.
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="reviews")
    version = models.PositiveSmallIntegerField()
    author = person_field(null=False)
    # None: the AI analysed no image of the case, so there was nothing to agree with.
    agrees_with_ai = models.BooleanField(null=True)
    finding = models.CharField(max_length=16, choices=Finding.choices)
    report = models.TextField()
    amendment_reason = models.TextField(blank=True)
    # The AI results this version was signed against, one entry per image (image id,
    # status, probability, label, threshold, model version; or the refusal): a later
    # re-analysis is shown beside them, never in their place. Empty on older rows.
    ai_results = models.JSONField(default=list, blank=True)
    signed_at = models.DateTimeField()

    class Meta(AppendOnlyModel.Meta):
        ordering = ["case", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["case", "version"], name="review_unique_version")
        ]

    def __str__(self) -> str:
        return f"Review v{self.version} of case {self.case_id}"


class AuditEvent(AppendOnlyModel):
    """Who did what to which case, when, from where. Written only by
    `services.audit_record`; never changed or deleted (the queryset refuses)."""

    changed_message = "An audit event is never changed."
    deleted_message = "An audit event is never deleted."

    class Action(models.TextChoices):
        CREATED = "created"
        RECEIVED = "received", "Instance received"
        VIEWED = "viewed"
        LISTED = "listed"  # a list showing patient identifiers; `subjects` names the cases
        CLAIMED = "claimed"
        RELEASED = "released"
        REASSIGNED = "reassigned"
        SIGNED = "signed"
        AMENDED = "amended"
        RETRIED = "retried"
        REANALYSED = "reanalysed"
        VIEWED_FILE = "viewed_file", "Viewed file"
        LOGIN = "login"
        LOGIN_FAILED = "login_failed", "Login failed"
        LOGOUT = "logout"
        ADMIN_CHANGED = "admin_changed", "Changed in the admin"
        ADMIN_DELETED = "admin_deleted", "Deleted in the admin"
        ACTIVATED = "activated", "Model activated"
        ACTIVATION_OVERRIDDEN = "activation_overridden", "Model activated below its floors"
        ALERT_ACKNOWLEDGED = "alert_acknowledged", "Monitoring alert acknowledged"
        # People's accounts (accounts.people): the account is named in `detail`.
        USER_DEACTIVATED = "user_deactivated", "Account deactivated"
        USER_REACTIVATED = "user_reactivated", "Account reactivated"
        ROLES_CHANGED = "roles_changed", "Roles changed"
        USER_RENAMED = "user_renamed", "Account renamed"
        USER_DELETED = "user_deleted", "Account deleted"
        USER_DELETE_REFUSED = "user_delete_refused", "Account deletion refused"

    # A user with events is never deleted (PROTECT_HISTORY), and the event keeps who they
    # were when it was written: a later rename, deactivation or role change alters nothing.
    actor = person_field()
    actor_username = models.CharField(max_length=150, blank=True)
    # The actor's roles then, comma-separated ("admin,radiologist"); "" for no user.
    actor_role = models.CharField(max_length=100, blank=True)
    action = models.CharField(max_length=32, choices=Action.choices)
    case = models.ForeignKey(Case, on_delete=UNLINK, null=True, related_name="audit_events")
    # The case's id as it was: kept when an unreported case is deleted (the FK goes null).
    case_ref = models.PositiveBigIntegerField(null=True, blank=True, db_index=True)
    # The cases a list showed, as ",3,5,9," (a portable "contains ,5," finds case 5).
    subjects = models.TextField(blank=True)
    detail = models.CharField(max_length=300, blank=True)
    source = models.GenericIPAddressField("source address", null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta(AppendOnlyModel.Meta):
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.actor_username or 'system'} {self.action} case {self.case_ref}"

    @property
    def subject_ids(self) -> list[int]:
        return [int(part) for part in self.subjects.split(",") if part]
