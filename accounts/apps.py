from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Describes the token scheme in the OpenAPI schema (drf-spectacular finds extensions
        # by import).
        from accounts import schema  # noqa: F401
