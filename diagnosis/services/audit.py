"""The audit trail: appending an event (coalescing a page that polls or a list that
refreshes), and the event for a list of cases shown to someone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from diagnosis.models import AuditEvent, Case


def audit_record(
    *,
    actor,
    action: str,
    case: Case | None = None,
    detail: str = "",
    subjects: Sequence[int] = (),
    source: str | None = None,
    coalesce: bool = False,
) -> AuditEvent | None:
    """Append one event to the audit trail. `subjects`: the ids of the cases a list showed;
    `source`: the client's address (logins). With `coalesce`, an identical event by the
    same user within CHESTNET_AUDIT_COALESCE_S (a page polling a case, a list refreshing)
    is not written again; returns None then."""
    from accounts import roles

    actor = actor if getattr(actor, "pk", None) else None
    event = AuditEvent(
        actor=actor,
        # Who they were at the time: kept whatever later becomes of the account.
        actor_username=actor.get_username() if actor is not None else "",
        actor_role=roles.role_names(actor) if actor is not None else "",
        action=action,
        case=case,
        case_ref=case.pk if case is not None else None,
        detail=detail[:300],
        subjects=f",{','.join(str(pk) for pk in subjects)}," if subjects else "",
        source=source or None,
    )
    if coalesce and _recently_recorded(event):
        return None
    event.save()
    return event


def _recently_recorded(event: AuditEvent) -> bool:
    since = timezone.now() - timedelta(seconds=settings.CHESTNET_AUDIT_COALESCE_S)
    same = {field: getattr(event, field) for field in _SAME_EVENT}
    return AuditEvent.objects.filter(**same, at__gte=since).exists()


# Two events are the same when these are: the later is coalesced into the earlier.
_SAME_EVENT = ("actor", "action", "case_ref", "detail", "subjects")


def case_viewed_audit(*, user, case: Case, detail: str = "", coalesce: bool = False) -> None:
    """A person looked at a case (a page, the API, a page's poll: `detail` says which);
    a polling page is recorded once per CHESTNET_AUDIT_COALESCE_S (`coalesce`)."""
    audit_record(
        actor=user, action=AuditEvent.Action.VIEWED, case=case, detail=detail, coalesce=coalesce
    )


def cases_listed_audit(*, user, cases: Sequence[Case], listing: str) -> None:
    """A list showing patient identifiers was shown: which cases, to whom (coalesced)."""
    audit_record(
        actor=user,
        action=AuditEvent.Action.LISTED,
        detail=listing,
        subjects=[case.pk for case in cases],
        coalesce=True,
    )
