"""People leave, the record of what they did stays: every row that records a person's act
(an audit event, a signed report, a model activation, a training run...) links them with
`on_delete=PROTECT_HISTORY`, so a user with history is never deleted, by any path (the
admin, `user.delete()`, `User.objects.filter(...).delete()`), only deactivated.

A refused deletion is announced (`delete_refused`) so that the clinical app, which owns
the audit trail, records the attempt: this floor knows nothing of it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import PROTECT
from django.db.models.deletion import Collector
from django.dispatch import Signal

# Sent once per refused deletion with `pks`: the ids of the users that have history.
delete_refused = Signal()


def PROTECT_HISTORY(collector: Collector, field: Any, sub_objs: Any, using: str) -> None:  # noqa: N802
    """Django's PROTECT (ProtectedError, before any row is touched), announcing the attempt.
    Only a deletion announces: the admin's preview of what a deletion would take
    (NestedObjects) and other subclasses that only look are not attempts."""
    if type(collector) is Collector:
        refused = set(sub_objs.values_list(field.attname, flat=True))
        # One announcement per attempt, however many relations refuse it.
        announced = collector.__dict__.setdefault("_history_refused", set())
        new = sorted(pk for pk in refused - announced if pk is not None)
        announced.update(new)
        if new:
            delete_refused.send(sender=field.related_model, pks=new, using=using)
    PROTECT(collector, field, sub_objs, using)


def history_of(obj: Any) -> list[str]:
    """What refers to `obj` through a protecting link (PROTECT_HISTORY or PROTECT): the
    plural names of those models with at least one row, e.g. ["audit events", "reviews"].
    Empty when it could be deleted without taking any record with it."""
    found = []
    # Hidden relations (related_name="+") included, as Django's deletion finds them.
    for relation in obj._meta.get_fields(include_hidden=True):
        reverse = relation.auto_created and not relation.concrete
        if not (reverse and (relation.one_to_many or relation.one_to_one)):
            continue
        if relation.on_delete not in (PROTECT_HISTORY, PROTECT):
            continue
        model = relation.related_model
        if model._base_manager.filter(**{relation.field.name: obj}).exists():
            found.append(str(model._meta.verbose_name_plural))
    return sorted(set(found))


def UNLINK(collector: Collector, field: Any, sub_objs: Any, using: str) -> None:  # noqa: N802
    """SET_NULL for a table that refuses updates (an append-only record): when the row it
    refers to is deleted, the link is cleared below the table's queryset (Django's batch
    update by primary key), the one change such a row accepts; what it recorded of the
    deleted row (an id kept beside the link) stays."""
    rows = list(sub_objs)
    if rows:
        collector.add_field_update(field, None, rows)


def person_field(*, null: bool = True, related_name: str = "+") -> models.ForeignKey:
    """The user who did what a row records (created, signed, activated...), kept with it:
    while the row exists the user is never deleted (PROTECT_HISTORY)."""
    return models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=PROTECT_HISTORY, null=null, related_name=related_name
    )
