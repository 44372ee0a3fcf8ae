from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # schema: describes the token scheme in the OpenAPI schema (drf-spectacular finds
        # extensions by import). Logins, failed logins and logouts; deactivations, role
        # changes and deletions of accounts, by any path: told to the audit trail
        # (accounts.signals.account_event).
        from accounts import people, schema, signals  # noqa: F401

        signals.connect_signals()
        people.connect_signals()
