from __future__ import annotations

import io
import os

from django.conf import settings
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chestnet_site.settings")
application = get_wsgi_application()
if settings.PRODUCTION:
    # gunicorn runs no system checks: in production any warning of `check --deploy` stops
    # the web process here (SystemCheckError), as it stops compose's `migrate` service.
    call_command("check", deploy=True, fail_level="WARNING", stdout=io.StringIO())
