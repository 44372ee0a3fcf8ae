"""What the benchmarks that measure a baseline tree beside this checkout share: an API
token made inside the measured tree, whichever token scheme that tree has."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Run in the measured tree, which may be a baseline from before devtools/ (issue 22) or
# before hashed tokens (issue 21): then the same steps through what that tree has.
_TOKEN_CODE = """
import sys
import django
django.setup()
try:
    from accounts import roles
except ImportError:  # a tree from before accounts.roles (issue 22)
    from diagnosis import roles
try:
    from devtools.users import token_for, user_with_role
except ImportError:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    def user_with_role(username, role):
        user = get_user_model().objects.get_or_create(username=username)[0]
        user.groups.add(Group.objects.get_or_create(name=role)[0])
        return user

    try:
        from accounts import services
        from diagnosis import access
    except ImportError:
        from rest_framework.authtoken.models import Token

        def token_for(user, *, client):
            return Token.objects.create(user=user).key
    else:
        def token_for(user, *, client):
            lifetime = access.token_lifetime(user)
            return services.token_issue(user=user, client=client, lifetime=lifetime).secret
print(token_for(user_with_role("bench", roles.CLINICIAN), client=sys.argv[1]))
"""


def api_token(tree: Path, env: dict, *, client: str) -> str:
    """A clinician's API token in the tree at `tree`, with its settings from `env`."""
    out = subprocess.run(
        [sys.executable, "-c", _TOKEN_CODE, client],
        cwd=tree,
        env={**env, "DJANGO_SETTINGS_MODULE": "chestnet_site.settings"},
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]
