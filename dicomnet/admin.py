"""Admins see every object sent (or due) to the PACS and each attempt with its outcome;
nothing here is edited by hand."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from dicomnet.models import OutboundObject, SendAttempt


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


class SendAttemptInline(admin.TabularInline):
    model = SendAttempt
    extra = 0
    fields = readonly_fields = ("started_at", "finished_at", "outcome", "detail")
    can_delete = False

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(OutboundObject)
class OutboundObjectAdmin(ReadOnlyAdmin):
    list_display = ["key", "kind", "case", "status", "attempts", "next_attempt_at", "sent_at"]
    list_filter = ["status", "kind"]
    search_fields = ["key", "sop_instance_uid"]
    inlines = [SendAttemptInline]


@admin.register(SendAttempt)
class SendAttemptAdmin(ReadOnlyAdmin):
    list_display = ["outbound", "outcome", "started_at", "finished_at", "detail"]
    list_filter = ["outcome"]
