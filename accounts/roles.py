"""Roles are Django groups, so admins manage them in the Django admin. What each role may
do is decided in `accounts.permissions`."""

from __future__ import annotations

from typing import Final

CLINICIAN: Final = "clinician"
RADIOLOGIST: Final = "radiologist"
ADMIN: Final = "admin"
# A service account of a PACS, router or script: stores studies (STOW-RS) and nothing
# else; it reads no case, not even those it stored, and cannot sign in to the pages.
INTEGRATION: Final = "integration"
ALL_ROLES: Final = (CLINICIAN, RADIOLOGIST, ADMIN, INTEGRATION)


def _groups(user) -> set[str]:
    if not getattr(user, "is_authenticated", False):
        return set()
    cached = getattr(user, "_chestnet_groups", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))
        user._chestnet_groups = cached
    return cached


def is_admin(user) -> bool:
    return bool(getattr(user, "is_superuser", False)) or ADMIN in _groups(user)


def is_radiologist(user) -> bool:
    return RADIOLOGIST in _groups(user)


def is_clinician(user) -> bool:
    return CLINICIAN in _groups(user)


def is_integration(user) -> bool:
    return INTEGRATION in _groups(user)


def sees_all_cases(user) -> bool:
    return is_radiologist(user) or is_admin(user)


def sees_own_cases(user) -> bool:
    return is_clinician(user)


def may_store_studies(user) -> bool:
    """STOW-RS: clinicians (into their own cases), admins and integrations."""
    return is_clinician(user) or is_admin(user) or is_integration(user)


def role_names(user) -> str:
    """The user's roles as the audit trail keeps them, sorted and comma-separated
    ("admin,radiologist"; a superuser counts as admin); "" for no user."""
    names = _groups(user) & set(ALL_ROLES)
    if getattr(user, "is_superuser", False):
        names = names | {ADMIN}
    return ",".join(sorted(names))


def forget_roles(user) -> None:
    """Drop the roles cached on this user object (after its groups changed)."""
    user.__dict__.pop("_chestnet_groups", None)
