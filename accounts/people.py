"""People leave, the record stays (issue 21). A user with any history (audit events,
cases, signed reports, model operations: every link made with
`chestnet_site.history.PROTECT_HISTORY`) is deactivated, never deleted; one without
history (an account made by mistake) may be. Deactivation, reactivation, renaming, role
changes (groups, superuser and staff flags) and every deletion, done or refused, go to the
audit trail, whichever way they were made: the Django admin, a service, a management
command or a shell, because the signals connected here see them all. Who made the change
is known where a person asked (`acting_as`, set by the admin and the services); otherwise
the event names no actor ("system")."""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save

from accounts import roles
from accounts.signals import AccountAction, account_event_send
from chestnet_site.errors import ServiceError
from chestnet_site.history import delete_refused, history_of

# The account fields whose change is audited; others (last_login, password) are not.
WATCHED = ("username", "is_active", "is_staff", "is_superuser")

_acting: contextvars.ContextVar[Any] = contextvars.ContextVar("chestnet_acting", default=None)


class UserHasHistory(ServiceError):
    """The user did things the record keeps: deactivate them instead."""


@contextmanager
def acting_as(user: Any) -> Iterator[None]:
    """Changes to accounts made inside are audited as made by `user`."""
    token = _acting.set(user)
    try:
        yield
    finally:
        _acting.reset(token)


def user_history(user: Any) -> list[str]:
    """What the record keeps of the user (e.g. ["audit events", "reviews"]); empty when
    the account could be deleted without losing anything."""
    return history_of(user)


def user_delete(*, user: Any, by: Any) -> None:
    """Delete an account without history (audited); refuse, audited too, with the reason
    and the way out (deactivation), when the record keeps anything of it."""
    history = user_history(user)
    if history:
        user_delete_refused(user=user, by=by, history=history)
        raise UserHasHistory(refusal_message(user, history))
    with acting_as(by), transaction.atomic():
        user.delete()


def user_deactivate(*, user: Any, by: Any) -> bool:
    """The account can no longer sign in (its sessions and API tokens stop working: Django
    and the token check refuse inactive users); everything it did stays, under its name.
    Returns False when it was inactive already."""
    if not user.is_active:
        return False
    user.is_active = False
    with acting_as(by):
        user.save(update_fields=["is_active"])
    return True


def refusal_message(user: Any, history: Iterable[str]) -> str:
    return (
        f"{user.get_username()} cannot be deleted: the record keeps what they did "
        f"({', '.join(history)}). Deactivate the account instead: they can no longer sign "
        "in, and the record keeps their name."
    )


def _named(user: Any) -> str:
    return f"user {user.get_username()} (id {user.pk})"


def user_delete_refused(*, user: Any, by: Any, history: Iterable[str]) -> None:
    """Record an attempt to delete an account the record keeps (`history`)."""
    account_event_send(
        actor=by,
        action=AccountAction.USER_DELETE_REFUSED,
        detail=f"{_named(user)}: the record keeps {', '.join(history)}",
    )


def _roles_now(user: Any) -> str:
    roles.forget_roles(user)
    return roles.role_names(user) or "none"


# --- signals: every path that changes an account --------------------------------------


def _before_save(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if instance.pk is None or instance._state.adding:
        return
    if update_fields is not None and not set(update_fields) & set(WATCHED):
        return  # a login's last_login, a password: not audited here
    before = sender._base_manager.filter(pk=instance.pk).values(*WATCHED).first()
    instance.__dict__["_people_before"] = before


def _after_save(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    by = _acting.get()
    if created:
        flags = [flag for flag in ("is_superuser", "is_staff") if getattr(instance, flag)]
        if flags:
            granted = ", ".join(flag.removeprefix("is_") for flag in flags)
            detail = f"{_named(instance)} created with {granted}"
            account_event_send(actor=by, action=AccountAction.ROLES_CHANGED, detail=detail)
        return
    before = instance.__dict__.pop("_people_before", None)
    if before is None:
        return
    for action, detail in _account_changes(instance, before):
        account_event_send(actor=by, action=action, detail=detail)


def _account_changes(user: Any, before: dict[str, Any]) -> list[tuple[str, str]]:
    changes: list[tuple[str, str]] = []
    if before["username"] != user.username:
        changes.append(
            (
                AccountAction.USER_RENAMED,
                f"user id {user.pk}: {before['username']} → {user.get_username()}",
            )
        )
    if before["is_active"] != user.is_active:
        action = (
            AccountAction.USER_REACTIVATED if user.is_active else AccountAction.USER_DEACTIVATED
        )
        changes.append((action, _named(user)))
    flags = [
        f"{flag.removeprefix('is_')} {'granted' if getattr(user, flag) else 'withdrawn'}"
        for flag in ("is_superuser", "is_staff")
        if before[flag] != getattr(user, flag)
    ]
    if flags:
        changes.append((AccountAction.ROLES_CHANGED, f"{_named(user)}: {', '.join(flags)}"))
    return changes


def _groups_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any
) -> None:
    """Group membership is the role: record each user's roles before and after."""
    if action.startswith("pre_"):
        users = _members(instance, reverse, pk_set)
        instance.__dict__["_people_roles"] = {user: _roles_now(user) for user in users}
        return
    by = _acting.get()
    for user, before in instance.__dict__.pop("_people_roles", {}).items():
        after = _roles_now(user)
        if after != before:
            detail = f"{_named(user)}: roles {before} → {after}"
            account_event_send(actor=by, action=AccountAction.ROLES_CHANGED, detail=detail)


def _members(instance: Any, reverse: bool, pk_set: Any) -> list[Any]:
    """The users whose groups change: the instance itself, or (a group's side) those
    named, or all its members when it is cleared."""
    if not reverse:
        return [instance]
    users = get_user_model()._base_manager.all()
    if pk_set is None:
        return list(users.filter(groups=instance))
    return list(users.filter(pk__in=pk_set))


def _group_deleting(sender: Any, instance: Any, **kwargs: Any) -> None:
    # Deleting a group takes its role from every member (no m2m signal is sent for that).
    _groups_changed(sender, instance, action="pre_clear", reverse=True, pk_set=None)


def _group_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    _groups_changed(sender, instance, action="post_clear", reverse=True, pk_set=None)


def _deleting(sender: Any, instance: Any, **kwargs: Any) -> None:
    # The roles as they were: the group links are deleted before the user.
    instance.__dict__["_people_roles_deleted"] = _roles_now(instance)


def _deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    held = instance.__dict__.pop("_people_roles_deleted", "none")
    detail = f"{_named(instance)}, roles {held}"
    account_event_send(actor=_acting.get(), action=AccountAction.USER_DELETED, detail=detail)


def _refused(sender: Any, pks: list[int], **kwargs: Any) -> None:
    """A deletion refused below the services (a shell, a command): recorded as well. Inside
    a transaction the caller then rolls back, the record goes with it."""
    for user in sender._base_manager.filter(pk__in=pks):
        user_delete_refused(user=user, by=_acting.get(), history=user_history(user))


def connect_signals() -> None:
    """Called once from AccountsConfig.ready."""
    user_model = get_user_model()
    pre_save.connect(_before_save, sender=user_model, dispatch_uid="chestnet-people-pre-save")
    post_save.connect(_after_save, sender=user_model, dispatch_uid="chestnet-people-post-save")
    pre_delete.connect(_deleting, sender=user_model, dispatch_uid="chestnet-people-deleting")
    post_delete.connect(_deleted, sender=user_model, dispatch_uid="chestnet-people-deleted")
    m2m_changed.connect(
        _groups_changed, sender=user_model.groups.through, dispatch_uid="chestnet-people-groups"
    )
    delete_refused.connect(_refused, sender=user_model, dispatch_uid="chestnet-people-refused")
    pre_delete.connect(_group_deleting, sender=Group, dispatch_uid="chestnet-people-group-del")
    post_delete.connect(_group_deleted, sender=Group, dispatch_uid="chestnet-people-group-gone")
