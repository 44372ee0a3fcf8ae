"""Who may do what, decided here and nowhere else (`accounts.roles` says who holds which
role): decorators for the HTML views, permission classes for the API (DRF) and the checks
that depend on an object. A refusal is a 403 with the sentence given here; an API request
without credentials is DRF's 401."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated

from accounts import roles

Rule = Callable[[Any], bool]
View = TypeVar("View", bound=Callable[..., Any])

# --- the rules that combine roles -------------------------------------------------------


def creates_cases(user: Any) -> bool:
    """Clinicians create cases (their own); administrators too."""
    return roles.is_clinician(user) or roles.is_admin(user)


def sees_monitoring(user: Any) -> bool:
    return roles.is_admin(user) or roles.is_radiologist(user)


def acts_on_case(user: Any, case: Any) -> bool:
    """The case's own clinician, or a user who sees every case (retrying its analysis)."""
    return case.owner_id == user.pk or roles.sees_all_cases(user)


# What the pages' refusals say; the API's are on its classes below (two are the same).
ONLY_RADIOLOGISTS = "Only radiologists can do this."
ONLY_CLINICIANS_CREATE = "Only clinicians can create cases."
ONLY_ADMINS_AUDIT = "Only administrators can read the audit trail."
ONLY_ADMINS_REASSIGN = "Only administrators can reassign a signed report."
ONLY_ADMINS_MODELS = "Only administrators can manage datasets and models."
ONLY_MONITORS = "Only administrators and radiologists see the monitoring."
ONLY_ADMINS_ACKNOWLEDGE = "Only administrators acknowledge alerts."

# --- HTML views ---------------------------------------------------------------------------


def role_required(rule: Rule, message: str) -> Callable[[View], View]:
    """A view decorator: PermissionDenied(message), the 403 page, unless
    `rule(request.user)`. Listed under require_GET/require_POST, a wrong method is a 405
    before any role is checked."""

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def wrapped(request: Any, *args: Any, **kwargs: Any) -> Any:
            if not rule(request.user):
                raise PermissionDenied(message)
            return view(request, *args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


radiologist_required = role_required(roles.is_radiologist, ONLY_RADIOLOGISTS)
case_creator_required = role_required(creates_cases, ONLY_CLINICIANS_CREATE)
audit_reader_required = role_required(roles.is_admin, ONLY_ADMINS_AUDIT)
report_reassigner_required = role_required(roles.is_admin, ONLY_ADMINS_REASSIGN)
model_operator_required = role_required(roles.is_admin, ONLY_ADMINS_MODELS)
monitoring_required = role_required(sees_monitoring, ONLY_MONITORS)
alert_acknowledger_required = role_required(roles.is_admin, ONLY_ADMINS_ACKNOWLEDGE)


def case_action_check(user: Any, case: Any) -> None:
    """PermissionDenied (a bare 403) unless `acts_on_case(user, case)`."""
    if not acts_on_case(user, case):
        raise PermissionDenied


# --- the API (DRF) ------------------------------------------------------------------------


class RolePermission(IsAuthenticated):
    """A signed-in user who passes `rule`, for the request methods in `methods` (the others
    pass: an unknown one stays a 405); refused with `message`."""

    methods: tuple[str, ...] = ("GET", "HEAD", "POST")
    message = "You do not have permission to perform this action."

    @staticmethod
    def rule(user: Any) -> bool:
        return False

    def has_permission(self, request: Any, view: Any) -> bool:
        if not super().has_permission(request, view):
            return False
        return request.method not in self.methods or self.rule(request.user)


class CreatesCases(RolePermission):
    """POST a case; anyone signed in lists cases."""

    methods = ("POST",)
    message = ONLY_CLINICIANS_CREATE
    rule = staticmethod(creates_cases)


class RadiologistPermission(RolePermission):
    """What only radiologists do: POST, unless said otherwise."""

    methods: tuple[str, ...] = ("POST",)
    rule = staticmethod(roles.is_radiologist)


class HasWorklist(RadiologistPermission):
    methods = ("GET", "HEAD")
    message = "Only radiologists have a worklist."


class ClaimsCases(RadiologistPermission):
    message = "Only radiologists can claim cases."


class SignsReports(RadiologistPermission):
    message = "Only radiologists can sign reports."


class StoresStudies(RolePermission):
    """STOW-RS: clinicians (into their own cases), administrators and integrations."""

    methods = ("POST",)
    message = "Only clinicians and integrations can store studies."
    rule = staticmethod(roles.may_store_studies)


class SeesMonitoring(RolePermission):
    methods = ("GET", "HEAD")
    message = ONLY_MONITORS
    rule = staticmethod(sees_monitoring)
