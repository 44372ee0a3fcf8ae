from __future__ import annotations

from django.db import models
from django.utils import timezone
from knox.models import AbstractAuthToken
from knox.settings import CONSTANTS

# How much of the token's lookup key (its first characters, kept in clear by knox to find
# the row) names it to people, in the admin and the audit trail: enough to tell a user's
# tokens apart, far too little to guess the rest.
PREFIX_SHOWN = 8


class ApiToken(AbstractAuthToken):
    """An API token (django-rest-knox, KNOX_TOKEN_MODEL): the secret is shown once, when it
    is issued; the database keeps its SHA-512 digest and the first characters knox looks it
    up by. A user holds several, one per client, each with its expiry and last use."""

    # An integer key, not knox's digest: admin URLs and logs name the row, not its digest.
    id = models.BigAutoField(primary_key=True)
    digest = models.CharField(max_length=CONSTANTS.DIGEST_LENGTH, unique=True)
    client = models.CharField(max_length=100, help_text="the program that asked for it")
    last_used_at = models.DateTimeField("last used", null=True, blank=True)
    last_used_from = models.GenericIPAddressField("last used from", null=True, blank=True)

    class Meta:
        verbose_name = "API token"
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.client} ({self.prefix}…)"

    @property
    def prefix(self) -> str:
        return self.token_key[:PREFIX_SHOWN]

    @property
    def is_expired(self) -> bool:
        return self.expiry is not None and self.expiry <= timezone.now()
