"""`manage.py integration_account NAME`: a service account for a PACS, router or script
that stores studies over STOW-RS and can do nothing else (it reads no case and cannot sign
in to the pages), and a token of its own, printed once. Run again, it replaces the token
(the old one stops working)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from diagnosis import access, roles


class Command(BaseCommand):
    help = "Create (or renew the token of) a STOW-RS service account; prints its token."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name", help="the account's user name, e.g. pacs-router")

    @transaction.atomic
    def handle(self, *args: Any, name: str, **options: Any) -> None:
        User = get_user_model()
        user, created = User.objects.get_or_create(username=name)
        if not created and not roles.is_integration(user):
            raise CommandError(f"{name} is a person's account, not an integration's.")
        if created:
            user.set_unusable_password()  # a token only: no sign-in to the pages
            user.save(update_fields=["password"])
        user.groups.set([Group.objects.get(name=roles.INTEGRATION)])
        access.tokens_revoke(user=user)
        token = access.token_issue(user=user)
        self.stdout.write(f"Integration account {name}: Authorization: Token {token.key}")
