from __future__ import annotations

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from diagnosis.models import AuditEvent, Case, Image, Prediction, Review


class ImageInline(admin.TabularInline):
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
    extra = 0
    can_delete = False


class ReviewInline(admin.TabularInline):
    model = Review
    fields = readonly_fields = ("version", "author", "agrees_with_ai", "finding", "signed_at")
    extra = 0
    can_delete = False


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
    list_filter = ["status", "urgency", "ai_flagged"]
    search_fields = ["id", "owner__username"]
    readonly_fields = ["status", "max_probability", "ai_flagged", "ready_at", "created_at"]
    inlines = [ImageInline, ReviewInline]


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["image", "label", "probability", "model_version", "created_at"]
    readonly_fields = [f.name for f in Prediction._meta.fields]


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    """Signed reports are immutable, even here: amend from the review page."""

    list_display = ["case", "version", "author", "finding", "agrees_with_ai", "signed_at"]
    readonly_fields = [f.name for f in Review._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["at", "actor", "action", "case", "detail"]
    list_filter = ["action"]
    search_fields = ["actor__username", "case__id"]
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
