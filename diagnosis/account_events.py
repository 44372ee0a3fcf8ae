"""The audit trail's record of accounts: `accounts` tells (`accounts.signals.account_event`:
logins, logouts, API tokens issued and revoked, changes to people's accounts), the trail
keeps it, in the teller's transaction."""

from __future__ import annotations

from typing import Any

from accounts.signals import account_event
from diagnosis import services
from diagnosis.models import AuditEvent


def _record(
    sender: Any, *, actor: Any, action: str, detail: str, source: str | None, **kwargs: Any
) -> None:
    services.audit_record(
        actor=actor, action=AuditEvent.Action(action), detail=detail, source=source
    )


def connect_signals() -> None:
    """Called once from DiagnosisConfig.ready."""
    account_event.connect(_record, dispatch_uid="chestnet-audit-accounts")
