"""Admins see every object sent (or due) to the PACS and each attempt with its outcome;
nothing here is edited by hand."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages

from dicomnet import services
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
    """The outbox: failed objects (built or delivered in none of their tries) are retried
    from here, by the action or the button on an object's page."""

    list_display = [
        "key",
        "kind",
        "case",
        "status",
        "attempts",
        "last_error",
        "next_attempt_at",
        "sent_at",
    ]
    list_filter = ["status", "kind"]
    search_fields = ["key", "sop_instance_uid"]
    inlines = [SendAttemptInline]
    actions = ["retry"]
    change_form_template = "dicomnet/outbound_change_form.html"

    @admin.action(description="Retry sending the selected failed objects now")
    def retry(self, request: Any, queryset: Any) -> None:
        count = services.outbound_retry(
            outbound_ids=list(queryset.values_list("pk", flat=True)), user=request.user
        )
        messages.info(request, f"{count} failed object(s) queued to be sent again.")

    def get_urls(self) -> list[Any]:
        from django.urls import path

        retry = self.admin_site.admin_view(self._retry_one)
        own = [path("<int:object_id>/retry/", retry, name="dicomnet_outboundobject_retry")]
        return own + super().get_urls()

    def _retry_one(self, request: Any, object_id: int) -> Any:
        from django.shortcuts import redirect

        if request.method != "POST" or not self.has_view_permission(request):
            return redirect("admin:dicomnet_outboundobject_change", object_id)
        self.retry(request, OutboundObject.objects.filter(pk=object_id))
        return redirect("admin:dicomnet_outboundobject_change", object_id)


@admin.register(SendAttempt)
class SendAttemptAdmin(ReadOnlyAdmin):
    list_display = ["outbound", "outcome", "started_at", "finished_at", "detail"]
    list_filter = ["outcome"]
