"""The Django admin, for administrators: what it may not do is what keeps the clinical
record defensible. Signed reports and audit events are read-only; a reported case's
clinical fields are read-only and the case cannot be deleted; every change and deletion
goes through a service and leaves an audit event; no bulk delete."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from diagnosis import services
from diagnosis.models import AuditEvent, Case, Image, Prediction, Review

CLINICAL_FIELDS = ("owner", "patient_id", "age", "sex", "indication", "urgency")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown, never added, changed or deleted here."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class ImageInline(ReadOnlyInline):
    model = Image
    fields = readonly_fields = (
        "status",
        "error",
        "refusal_reason",
        "refusal_message",
        "attempts",
        "original_format",
        "created_at",
    )


class ReviewInline(ReadOnlyInline):
    model = Review
    fields = readonly_fields = ("version", "author", "agrees_with_ai", "finding", "signed_at")


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "owner",
        "urgency",
        "status",
        "max_probability",
        "claimed_by",
        "created_at",
    ]
    search_fields = ["id", "owner__username"]
    readonly_fields = [
        "status",
        "max_probability",
        "ai_flagged",
        "ready_at",
        "created_at",
        "report_owner",
        # Where it came from: what the network said, never edited by hand.
        "source",
        "source_ae",
        "study_instance_uid",
        "accession_number",
        "study_description",
        "study_at",
    ]
    list_filter = ["status", "urgency", "ai_flagged", "source"]
    inlines = [ImageInline, ReviewInline]
    actions = None  # no bulk delete: a case is deleted one by one, through the service

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.is_reported:
            fields += [*CLINICAL_FIELDS, "claimed_by", "claimed_at"]
        return fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and (obj.is_reported or obj.reviews.exists()):
            return False
        return super().has_delete_permission(request, obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple:
        # The case's images and predictions go with it through `services.case_delete`;
        # their own admin pages may not delete them one by one.
        deleted, model_count, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, model_count, set(), protected

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and form.changed_data:
            # Field names only: the values may be patient identifiers.
            services.audit_record(
                actor=request.user,
                action=AuditEvent.Action.ADMIN_CHANGED,
                case=obj,
                detail="changed " + ", ".join(sorted(form.changed_data)),
            )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        try:
            services.case_delete(case=obj, user=request.user)
        except services.ServiceError as exc:
            messages.error(request, str(exc))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for case in queryset:
            self.delete_model(request, case)


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    list_display = ["image", "label", "probability", "model_version", "created_at"]


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    """Signed reports are immutable, even here: amend from the review page."""

    list_display = ["case", "version", "author", "finding", "agrees_with_ai", "signed_at"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    # The actor as they were when the event was written (renamed or deactivated since).
    list_display = ["at", "actor_username", "actor_role", "action", "case_ref", "detail", "source"]
    list_filter = ["action", "actor_role"]
    search_fields = ["actor_username", "case_ref"]
    date_hierarchy = "at"
