"""Demo users for a local run; only on an empty user table, never in production."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from accounts import roles

DEMO_PASSWORD = "chestnet-demo"  # noqa: S105 - documented demo password, local runs only
DEMO_USERS = {
    "clinician": [roles.CLINICIAN],
    "clinician2": [roles.CLINICIAN],
    "radiologist": [roles.RADIOLOGIST],
    "admin": [roles.ADMIN],
}


class Command(BaseCommand):
    help = "Create the demo users (password chestnet-demo) if there are no users yet."

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("Demo users are for local runs only.")
        User = get_user_model()
        if User.objects.exists():
            self.stdout.write("Users exist; demo users not created.")
            return
        for username, groups in DEMO_USERS.items():
            is_admin = username == "admin"
            user = User.objects.create_user(
                username=username,
                password=DEMO_PASSWORD,
                is_staff=is_admin,
                is_superuser=is_admin,
            )
            user.groups.set(Group.objects.filter(name__in=groups))
        self.stdout.write(f"Created demo users: {', '.join(DEMO_USERS)}.")
