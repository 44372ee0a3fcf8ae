"""Roles are Django groups, so admins manage them in the Django admin."""

from __future__ import annotations

from typing import Final

CLINICIAN: Final = "clinician"
RADIOLOGIST: Final = "radiologist"
ADMIN: Final = "admin"
ALL_ROLES: Final = (CLINICIAN, RADIOLOGIST, ADMIN)


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


def sees_all_cases(user) -> bool:
    return is_radiologist(user) or is_admin(user)
