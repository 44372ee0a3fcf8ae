"""`manage.py integration_account NAME [--client CLIENT] [--revoke-all]`: a service account
for a PACS, router or script that stores studies over STOW-RS and can do nothing else (it
reads no case and cannot sign in to the pages), and a new token for it, printed once, valid
CHESTNET_INTEGRATION_TOKEN_TTL_D days. Run again, it issues another token (one per client;
the earlier ones keep working); `--revoke-all` revokes every token of the account and
issues none. One token is revoked in the Django admin (API tokens)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts import roles, services, tokens


class Command(BaseCommand):
    help = "Create a STOW-RS service account, or issue it a new token; prints the token."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name", help="the account's user name, e.g. pacs-router")
        parser.add_argument(
            "--client", default="", help="what will use the token (default: the account's name)"
        )
        parser.add_argument(
            "--revoke-all", action="store_true", help="revoke all its tokens; issue none"
        )

    @transaction.atomic
    def handle(self, *args: Any, name: str, client: str, revoke_all: bool, **options: Any) -> None:
        User = get_user_model()
        if revoke_all:
            user = User.objects.filter(username=name).first()
            if user is None or not roles.is_integration(user):
                raise CommandError(f"{name} is not an integration account.")
            revoked = tokens.integration_tokens_revoke(user=user)
            self.stdout.write(f"Integration account {name}: {revoked} token(s) revoked.")
            return
        user = self._account(User, name)
        try:
            issued = tokens.integration_token_issue(user=user, client=client or name)
        except services.TokenLimitReached as refused:
            raise CommandError(str(refused)) from None
        token = issued.token
        # The secret is shown this once (only its digest is kept); the last word is the token.
        self.stdout.write(
            f"Integration account {name}, client {token.client}, expires "
            f"{token.expiry.date().isoformat()}: Authorization: Token {issued.secret}"
        )

    def _account(self, User: Any, name: str) -> Any:
        user, created = User.objects.get_or_create(username=name)
        if not created and not roles.is_integration(user):
            raise CommandError(f"{name} is a person's account, not an integration's.")
        if created:
            user.set_unusable_password()  # a token only: no sign-in to the pages
            user.save(update_fields=["password"])
        user.groups.set([Group.objects.get(name=roles.INTEGRATION)])
        return user
