"""What the benchmarks that measure a baseline tree beside this checkout share: an API
token made inside the measured tree, whichever token scheme that tree has."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Run in the measured tree, which may be a baseline from before hashed tokens (issue 21).
_TOKEN_CODE = """
import sys
import django
django.setup()
from diagnosis import roles
from tests.support import factories
u = factories.UserFactory(username="bench", role=roles.CLINICIAN)
try:
    from tests.support.tokens import token_for
except ImportError:
    from rest_framework.authtoken.models import Token
    print(Token.objects.create(user=u).key)
else:
    print(token_for(u, client=sys.argv[1]))
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
