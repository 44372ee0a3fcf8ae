from __future__ import annotations

from django.http import HttpRequest

from accounts import roles as role_rules


def roles(request: HttpRequest) -> dict[str, bool]:
    user = request.user
    return {
        "is_radiologist": role_rules.is_radiologist(user),
        "is_clinician": role_rules.is_clinician(user),
        "is_admin": role_rules.is_admin(user),
    }
