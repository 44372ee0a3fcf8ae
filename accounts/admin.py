"""Accounts in the Django admin: users (`accounts.people_admin`) and API tokens: who holds
which (user, client, prefix), since when, until when and last used from where, never the
secret nor its digest. Admins revoke tokens here (audited); they issue none: a token is
issued by logging in to the API or, for a service account, by `manage.py
integration_account`."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils import timezone

import accounts.people_admin  # noqa: F401  (users: deactivated, never deleted with history)
from accounts import tokens
from accounts.models import ApiToken

SHOWN = ("user", "client", "prefix", "created", "expiry", "last_used_at", "last_used_from")


class TokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("live", "Live"), ("expired", "Expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "live":
            return queryset.filter(expiry__gt=timezone.now())
        if self.value() == "expired":
            return queryset.filter(expiry__lte=timezone.now())
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = SHOWN
    fields = SHOWN
    readonly_fields = SHOWN
    list_filter = [TokenStateFilter, "created"]
    search_fields = ["user__username", "client", "^token_key"]  # a prefix finds its token
    list_select_related = ["user"]
    actions = ["revoke"]

    @admin.display(description="prefix")
    def prefix(self, token: ApiToken) -> str:
        return f"{token.prefix}…"

    @admin.action(description="Revoke the selected tokens", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        revoked = list(queryset.select_related("user"))
        for token in revoked:
            tokens.token_revoke_by_admin(token=token, admin=request.user)
        self.message_user(request, f"{len(revoked)} token(s) revoked.", messages.SUCCESS)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.delete_apitoken")

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # tokens are issued by logging in, or by integration_account

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # revoke instead: audited, one by one
