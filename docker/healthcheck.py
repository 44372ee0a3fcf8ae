"""HEALTHCHECK of the web container: GET /healthz on the local gunicorn.

Production rejects any Host header not in ALLOWED_HOSTS (Django answers 400), so the request
names the first allowed host instead of 127.0.0.1. /healthz is exempt from the HTTPS redirect.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

URL = "http://127.0.0.1:8000/healthz"


def host_header(allowed_hosts: str) -> str:
    """A Host that Django's ALLOWED_HOSTS matching accepts: '.example.org' matches
    'example.org', and '*' matches anything."""
    hosts = [host.strip() for host in allowed_hosts.split(",") if host.strip()]
    if not hosts or hosts[0] == "*":
        return "localhost"
    return hosts[0].lstrip(".")


def main() -> int:
    host = host_header(os.environ.get("ALLOWED_HOSTS", ""))
    request = urllib.request.Request(URL, headers={"Host": host})
    # No proxy: an HTTP_PROXY in the environment must not intercept a loopback probe.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=8) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthz: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
