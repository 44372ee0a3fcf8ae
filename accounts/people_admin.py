"""Users in the Django admin: people leave, the record stays (accounts.people). An account
with history cannot be deleted here, one by one or by the bulk action: the delete page
says why (what the record keeps of it) and offers deactivation, and the attempt is
audited. An account without history is deleted as before, audited. Changes made here
(roles, flags, deactivation, renaming) are audited as made by the signed-in admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from accounts import people

User = get_user_model()


class PersonAdmin(UserAdmin):
    actions = ["deactivate_selected", "delete_selected"]
    refusal_template = "admin/auth/user/delete_refused.html"

    def get_urls(self) -> list[Any]:
        deactivate = self.admin_site.admin_view(require_POST(self.deactivate_view))
        own = [path("<path:object_id>/deactivate/", deactivate, name="auth_user_deactivate")]
        return own + super().get_urls()

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        with people.acting_as(request.user):
            return super().changeform_view(request, object_id, form_url, extra_context)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        with people.acting_as(request.user):  # the actions run in here
            return super().changelist_view(request, extra_context)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        user = self.get_object(request, unquote(object_id))
        if user is not None and self.has_delete_permission(request, user):
            history = people.user_history(user)
            if history:
                people.user_delete_refused(user=user, by=request.user, history=history)
                return self._refused_page(request, [(user, history)])
        with people.acting_as(request.user):
            return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        try:
            people.user_delete(user=obj, by=request.user)
        except people.UserHasHistory as exc:  # it acquired history since the page was shown
            messages.error(request, str(exc))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for user in queryset:
            self.delete_model(request, user)

    @admin.action(description="Deactivate selected users", permissions=["change"])
    def deactivate_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = sum(people.user_deactivate(user=user, by=request.user) for user in queryset)
        self.message_user(request, f"{done} account(s) deactivated.", messages.SUCCESS)

    @admin.action(
        description="Delete selected users (those without history)", permissions=["delete"]
    )
    def delete_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """Django's confirmation and deletion for the accounts without history; the others
        are refused (audited) and named, with deactivation offered."""
        kept = [(user, history) for user in queryset if (history := people.user_history(user))]
        for user, history in kept:
            people.user_delete_refused(user=user, by=request.user, history=history)
        rest = queryset.exclude(pk__in=[user.pk for user, _ in kept])
        if kept and not rest.exists():
            return self._refused_page(request, kept)
        if kept:
            names = ", ".join(user.get_username() for user, _ in kept)
            message = f"Not deleted, because the record keeps what they did: {names}. "
            self.message_user(request, message + "Deactivate them instead.", messages.WARNING)
        return django_delete_selected(self, request, rest)

    def deactivate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        user = self.get_object(request, unquote(object_id))
        if user is None or not self.has_change_permission(request, user):
            raise PermissionDenied
        if people.user_deactivate(user=user, by=request.user):
            self.message_user(request, f"{user.get_username()} is deactivated.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:auth_user_change", args=[user.pk]))

    def _refused_page(
        self, request: HttpRequest, refused: list[tuple[Any, list[str]]]
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Cannot delete: deactivate instead",
            "opts": self.opts,
            "refused": [
                {"user": user, "history": history, "message": people.refusal_message(user, history)}
                for user, history in refused
            ],
        }
        request.current_app = self.admin_site.name
        status = 409 if request.method == "POST" else 200
        return TemplateResponse(request, self.refusal_template, context, status=status)


admin.site.unregister(User)
admin.site.register(User, PersonAdmin)
